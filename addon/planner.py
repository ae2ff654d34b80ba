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
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import extractor

PROCESS_ABOVE = 4 << 20  # moov bytes from which a plan goes to a process
PROCESSES = 2


class PlannerFailed(Exception):
    """The planning process died (killed, out of memory): the message says so."""


class Planner:
    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        """The pool, its forkserver running (starting it takes a few hundred milliseconds: call this in
        a thread, not on the loop)."""
        if self.pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["extractor"])
            from multiprocessing import forkserver
            forkserver.ensure_running()
            self.pool = ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context, max_tasks_per_child=1)
        return self.pool

    async def run(self, size: int, function, *args):
        """function(*args), in a thread when `size` (the moov's bytes) is small, else in a process."""
        if size < PROCESS_ABOVE:
            return await asyncio.to_thread(function, *args)
        try:
            pool = self.pool or await asyncio.to_thread(self._pool)
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool as e:
            self.pool = None  # the next plan gets a new pool
            raise PlannerFailed(f"the process planning a {size >> 20} MiB moov died ({e})") from None

    async def plan(self, request: extractor.PlanRequest) -> extractor.Plan:
        """make_plan(request) off the loop. For a process the moov goes through a temporary file, not a
        pickle (which would copy it twice on each side), and nothing here keeps it meanwhile: the
        caller hands the request over (AudioExtractor.pop_plan_request)."""
        size = request.size
        if size < PROCESS_ABOVE:
            return await asyncio.to_thread(extractor.make_plan, request)
        with tempfile.NamedTemporaryFile(prefix="audio-only-moov-") as f:
            await asyncio.to_thread(f.write, request.moov)  # 64 MiB take tens of milliseconds
            light = request._replace(moov=b"")
            del request
            await asyncio.to_thread(f.flush)
            return await self.run(size, plan_from_file, f.name, light)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def plan_from_file(path: str, request: extractor.PlanRequest) -> extractor.Plan:
    """In the planning process: the request's moov read from `path`."""
    with open(path, "rb") as f:
        moov = f.read()
    return extractor.make_plan(request._replace(moov=moov))

