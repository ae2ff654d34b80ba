"""Where moovs are planned: never on mitmproxy's event loop.

A small moov (most files: a few hundred kilobytes for an hour) is planned in a worker thread. A big
one goes to a process of its own: planning 64 MiB of tables takes seconds of bulk C loops (map,
accumulate, bisect over millions of entries), each of which holds the GIL from start to end, so in a
thread it would still stall every other client for a few hundred milliseconds at a time; and a
process that exits returns all the memory the planning took to the system. Measured on 2 cores with a
61 MiB moov of 8 million samples (tests/test_hostile.py): see the README's *Hostile files*.

The processes come from a forkserver (a clean, single-threaded parent that has imported only the
core), one per plan (max_tasks_per_child=1), at most two at once; a third big plan waits its turn.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

PROCESS_ABOVE = 4 << 20  # moov bytes from which a plan goes to a process
PROCESSES = 2


class PlannerFailed(Exception):
    """The planning process died (killed, out of memory): the message says so."""


class Planner:
    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["extractor"])
            self.pool = ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context, max_tasks_per_child=1)
        return self.pool

    async def run(self, size: int, function, *args):
        """function(*args), in a thread when `size` (the moov's bytes) is small, else in a process."""
        if size < PROCESS_ABOVE:
            return await asyncio.to_thread(function, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), function, *args)
        except BrokenProcessPool as e:
            self.pool = None  # the next plan gets a new pool
            raise PlannerFailed(f"the process planning a {size >> 20} MiB moov died ({e})") from None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
