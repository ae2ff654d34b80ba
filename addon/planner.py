"""Where moovs are planned: never on mitmproxy's event loop.

A small moov (most files: a few hundred kilobytes for an hour) is planned in a worker thread. A big
one goes to a process of its own: planning 64 MiB of tables takes seconds of bulk C loops (map,
accumulate, bisect over millions of entries), each of which holds the GIL from start to end, so in a
thread it would still stall every other client for a few hundred milliseconds at a time; and a
process that exits returns all the memory the planning took to the system (tests/test_hostile.py
plans a 61 MiB moov of 8 million samples beside other clients; docs/speed.md has the figures).

The processes come from a forkserver (a clean, single-threaded parent that has imported only the
core), one per plan (max_tasks_per_child=1), at most two at once; a third big plan waits its turn.
Each plan is submitted from a worker thread: submitting starts the process.

The process is Linux's only: the forkserver start method (not on Windows), and /proc/<pid>/fd through
which the process opens our unnamed temporary files (not on macOS or the BSDs). Elsewhere a big moov
is planned in a worker thread as a small one is (IN_PROCESS): correct, but the GIL then holds the
other clients back for a while at a time, and the memory the planning took stays with mitmproxy's
process.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import select
import sys
import tempfile
import threading
from array import array
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import extractor

PROCESS_ABOVE = 4 << 20  # moov bytes from which a plan goes to a process
PROCESSES = 2
NICENESS = 10  # planning yields the cores to the proxy itself: others' requests first, the big plan after
IDLE_SHUTDOWN = 5  # seconds without a process plan after which the planning processes exit
IN_PROCESS = sys.platform.startswith("linux")  # big moovs planned in a process (Linux only: see above)


class PlannerFailed(Exception):
    """The planning process died (killed, out of memory): the message says so."""


class Planner:
    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None
        self.planning = 0  # plans in processes now
        self.pool_made: asyncio.Lock | None = None  # (made on the loop, at the first big plan)
        self.idle_timer: asyncio.TimerHandle | None = None

    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        """A pool, its forkserver running (starting it takes a few hundred milliseconds: call this in a
        thread, not on the loop)."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["extractor"])
        from multiprocessing import forkserver
        forkserver.ensure_running()
        return ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context, max_tasks_per_child=1,
                                   initializer=start_planning_process, initargs=(os.getpid(),))

    async def _pool(self) -> ProcessPoolExecutor:
        """The pool, made once however many plans ask for it at the same time (two pools would mean more
        planning processes than PROCESSES, and one that close() never reaches)."""
        if self.pool_made is None:
            self.pool_made = asyncio.Lock()
        async with self.pool_made:
            if self.pool is None:
                self.pool = await asyncio.to_thread(self._new_pool)
            return self.pool

    async def run(self, size: int, function, *args):
        """function(*args), in a thread when `size` (the moov's bytes) is small, else in a process."""
        if size < PROCESS_ABOVE:
            return await asyncio.to_thread(function, *args)
        self.planning += 1
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        try:
            pool = self.pool or await self._pool()
            # Submitted from a thread: submit starts the planning process there and then (a fork by the
            # forkserver, and a wait for its pid): on the event loop, every client would wait for it.
            return await asyncio.wrap_future(await asyncio.to_thread(pool.submit, function, *args))
        except BrokenProcessPool as e:
            self.pool = None  # the next plan gets a new pool
            raise PlannerFailed(f"the process planning a {size >> 20} MiB moov died ({e})") from None
        finally:
            self.planning -= 1
            if not self.planning and self.pool is not None:
                # A worker waits for the next plan with a Python and the core loaded (tens of MiB): an
                # edge that plans a big moov now and then gives that back when it has been idle a while.
                self.idle_timer = asyncio.get_running_loop().call_later(IDLE_SHUTDOWN, self.close_if_idle)

    def close_if_idle(self) -> None:
        self.idle_timer = None
        if not self.planning:
            self.close()

    async def plan(self, request: extractor.PlanRequest, directory: str | None = None) -> extractor.Plan:
        """make_plan(request) off the loop. The caller hands the request over
        (AudioExtractor.pop_plan_request), so that nothing here keeps the moov while it is planned."""
        if request.size < PROCESS_ABOVE or not IN_PROCESS:
            return await asyncio.to_thread(extractor.make_plan, request)
        holder, light = [request.moov], request._replace(moov=b"")
        del request
        return await self.in_process(holder, directory, plan_in_process, light)

    async def plan_file(self, ftyp: bytes, holder: list[bytes], mdats, length: int, seek, gap: int,
                        moov_offset: int, directory: str | None = None) -> extractor.FilePlan:
        """extractor.plan_file off the loop; the moov handed over in `holder` (emptied here)."""
        if len(holder[0]) < PROCESS_ABOVE or not IN_PROCESS:
            return await asyncio.to_thread(extractor.plan_file, ftyp, holder.pop(), mdats, length, seek, gap, moov_offset)
        return await self.in_process(holder, directory, plan_file_in_process, ftyp, mdats, length, seek, gap,
                                     moov_offset)

    async def in_process(self, holder: list[bytes], directory: str | None, function, *args):
        """function(moov path, result path, *args) in a planning process, the moov taken out of
        `holder` (so that once written, nothing holds it). It goes in through a temporary file and the
        plan's big arrays come back through another, not through pickles (which would copy tens of
        megabytes twice on each side); the files are written and read off the loop. They are unnamed
        files in `directory` (audio_only_spool_dir): the process opens them as /proc/<pid>/fd/<n>, and
        nothing is left on disk whatever happens."""
        moov = holder.pop()
        size = len(moov)
        with tempfile.TemporaryFile(dir=directory) as moov_file, tempfile.TemporaryFile(dir=directory) as plan_file:
            await asyncio.to_thread(write_all, moov_file, moov)
            del moov
            plan, manifest = await self.run(size, function, fd_path(moov_file), fd_path(plan_file), *args)
            await asyncio.to_thread(read_arrays, plan, manifest, plan_file)
            return plan

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def start_planning_process(owner: int) -> None:
    """In each planning process, first: it yields the cores (NICENESS), and it exits when its owner
    (the process whose planner made the pool) ends, however it ends. Its parent is the forkserver,
    which stays as long as a planning process holds its end of the forkserver's "alive" pipe, so a
    PR_SET_PDEATHSIG here would never fire: a thread waits on the owner's pidfd instead. Once the
    planning processes are gone, the forkserver and the resource tracker see their pipes end and exit."""
    os.nice(NICENESS)
    if hasattr(os, "pidfd_open"):
        try:
            owner_fd = os.pidfd_open(owner)
        except OSError:  # (already gone)
            os._exit(1)
        threading.Thread(target=exit_when_readable, args=(owner_fd,), daemon=True).start()


def exit_when_readable(fd: int) -> None:
    select.select([fd], [], [])
    os._exit(1)


def moov_digest(moov: bytes) -> bytes:
    """What tells two moovs apart (hashlib works outside the GIL: call it in a thread)."""
    return hashlib.sha256(moov).digest()


def fd_path(f) -> str:
    """A path by which another process of ours opens this open file, even unnamed."""
    return f"/proc/{os.getpid()}/fd/{f.fileno()}"


def write_all(f, data: bytes) -> None:
    f.write(data)
    f.flush()


# The big parts of a Plan or FilePlan: written to the result file by the planning process.
BIG_PARTS = ("head", "ranges.starts", "ranges.ends", "starts", "breaks")


def _parts(plan):
    for path in BIG_PARTS:
        owner_path, _, name = path.rpartition(".")
        owner = getattr(plan, owner_path) if owner_path else plan
        if hasattr(owner, name):
            yield path, owner, name


def write_arrays(plan, path: str) -> list:
    """In the planning process: the plan's big parts to `path`, emptied in the plan; what was written."""
    manifest = []
    with open(path, "wb") as f:
        for part, owner, name in _parts(plan):
            value = getattr(owner, name)
            if isinstance(value, bytes):
                f.write(value)
                manifest.append((part, None, len(value)))
                setattr(owner, name, b"")
            else:
                value.tofile(f)
                manifest.append((part, value.typecode, len(value)))
                setattr(owner, name, array(value.typecode))
    return manifest


def read_arrays(plan, manifest: list, f) -> None:
    """The big parts back into the plan, from the result file."""
    f.seek(0)
    by_path = {part: (owner, name) for part, owner, name in _parts(plan)}
    for part, code, count in manifest:
        owner, name = by_path[part]
        if code is None:
            setattr(owner, name, f.read(count))
        else:
            value = array(code)
            value.fromfile(f, count)
            setattr(owner, name, value)


def plan_in_process(moov_path: str, plan_path: str, request: extractor.PlanRequest):
    with open(moov_path, "rb") as f:
        request = request._replace(moov=f.read())
    plan = extractor.make_plan(request)
    del request
    return plan, write_arrays(plan, plan_path)


def plan_file_in_process(moov_path: str, plan_path: str, ftyp: bytes, mdats, length: int, seek, gap: int,
                         moov_offset: int):
    with open(moov_path, "rb") as f:
        moov = f.read()
    plan = extractor.plan_file(ftyp, moov, mdats, length, seek, gap, moov_offset)
    del moov
    return plan, write_arrays(plan, plan_path)
