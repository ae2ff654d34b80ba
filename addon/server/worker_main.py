"""A worker process: our server (app.py) on its own asyncio loop and port, answering the requests
mitmdump routes to it (addon/workers.py starts it, with the command line below).

    python addon/server/worker_main.py CONTROL_FD COUNTS_FD SLOT MITMDUMP_PID INDEX

CONTROL_FD is its end of the control connection (addon/worker_link.py has what crosses it), COUNTS_FD
the shared budgets' file (budgets.SharedCounts), SLOT its slot there, INDEX its place among the
workers (its log's name). Its own origin pools, planner and
plan cache; its log records go to mitmdump, which writes them in its own log.

It never outlives mitmdump: it exits when the control connection reaches its end (mitmdump stopped,
or was killed: the kernel closes its end), and on Linux the kernel also kills it when mitmdump's
process dies (PR_SET_PDEATHSIG), should the end of the connection not be read in time.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

if __name__ == "__main__":  # (run as a file: the checkout first on the path, not this folder)
    sys.path[0] = str(Path(__file__).resolve().parent.parent.parent)

from addon import internals, worker_link  # noqa: E402
from addon.budgets import Budgets, SharedCounts  # noqa: E402
from addon.origin_client import OriginClient  # noqa: E402
from addon.server.app import AudioServer  # noqa: E402
from addon.server.job import Job  # noqa: E402
from addon.server.plan_cache import AudioFile, PlanCache  # noqa: E402
from addon.warm_up import warm_up  # noqa: E402

log = logging.getLogger("addon.audio_only")

JOB_WAIT = 10  # seconds a request may wait for its job, still on its way on the control connection
RETIRE_POLL = 0.2  # seconds between two looks at whether a retired worker's last answer has ended
PR_SET_PDEATHSIG = 1


class Link:
    """This worker's end of the control connection."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()

    def send(self, message: dict) -> None:
        """From any thread (a log record may come from a worker thread: the transport is the loop's only)."""
        line = worker_link.encode(message)
        if threading.get_ident() == self.loop_thread:
            self.write(line)
        else:
            try:
                self.loop.call_soon_threadsafe(self.write, line)
            except RuntimeError:  # (the loop is closed: we are exiting)
                pass

    def write(self, line: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(line)


class LinkHandler(logging.Handler):
    """Every log record, to mitmdump (formatted here: an exception's traceback goes as text)."""

    def __init__(self, link: Link):
        super().__init__()
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.link.send({"log": record.levelno, "name": record.name, "text": self.format(record)})
        except Exception:
            self.handleError(record)


class NamedPlanCache(PlanCache):
    """The plan cache, whose log says which worker planned which file (a file's requests all come to
    one worker: its plan is made once)."""

    def __init__(self, limit: int, worker: int):
        super().__init__(limit)
        self.worker = worker

    def put(self, key: tuple, entry: AudioFile) -> None:
        log.debug(f"audio-only: {key[0]}: planned as a file by worker {self.worker}")
        super().put(key, entry)


class WorkerServer(AudioServer):
    """Our server, its jobs sent by mitmdump under the tokens their requests carry."""

    def __init__(self, origin: OriginClient, link: Link, budgets: Budgets, index: int):
        super().__init__(origin)
        self.services.budgets = budgets
        self.services.cache = NamedPlanCache(self.services.cache.limit, index)
        self.last_bytes_at_the_end = True  # (after the log line and the record: AudioServer says why)
        self.link = link
        self.arriving: dict[str, asyncio.Future] = {}

    def receive(self, token: str, job: Job) -> None:
        self._forget_lost_jobs()
        self.jobs[token] = job
        if (waiting := self.arriving.get(token)) is not None and not waiting.done():
            waiting.set_result(None)

    async def take(self, token: str) -> Job | None:
        if token and token not in self.jobs:  # (mitmdump sent it first; a busy loop may read it after)
            waiting = self.arriving.setdefault(token, asyncio.get_running_loop().create_future())
            try:
                await asyncio.wait_for(waiting, JOB_WAIT)
            except asyncio.TimeoutError:
                pass
            finally:
                self.arriving.pop(token, None)
        return self.jobs.pop(token, None)

    def answered(self, token: str, job: Job) -> None:
        self.link.send({"record": token, "fields": dict(job.record)})


def die_with_parent() -> None:
    """The kernel sends us SIGKILL when mitmdump's process ends (Linux; elsewhere the control
    connection's end alone stops us)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


async def serve(control_fd: int, counts_fd: int, slot: int, index: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=control_fd),
                                                        limit=worker_link.LINE_LIMIT)
    link = Link(writer)
    root = logging.getLogger()
    root.addHandler(LinkHandler(link))
    root.setLevel(logging.DEBUG)
    for name in ("tornado", "asyncio", "hpack", "quic"):  # (as mitmdump sets them)
        logging.getLogger(name).setLevel(logging.WARNING)
    server = WorkerServer(OriginClient(), link, Budgets(counts=SharedCounts(counts_fd, slot)), index)
    # mitmdump stops us (SIGTERM): the planner closed first, so that its processes end with us.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_now, server)
    retiring = False
    async for message in worker_link.lines(reader):
        if "job" in message:
            server.receive(message["job"], worker_link.job_of(message))
        elif "settings" in message:
            origin, limits, level = worker_link.read_settings(message)
            server.services.origin.use_options(origin)
            limits.apply(server.services)
            root.setLevel(level)
            if server.port is None:
                internals.read_origin_bodies_in_bigger_pieces()  # (as mitmdump's running hook does)
                server.start()
                warm_up("running")
                link.send({"ready": server.port, "pid": os.getpid()})
        elif "ping" in message:  # (mitmdump's watchdog: an answer says this loop still runs)
            link.send({"pong": True})
        elif message.get("retire") and not retiring:
            retiring = True
            server.retire()  # (new requests go to the other workers; ours run to their end)
            asyncio.get_running_loop().create_task(exit_once_answered(server, writer))
    # mitmdump is gone, or stops us: what is in flight ends with us (mitmproxy sees the connections drop).
    server.services.planner.close()
    os._exit(0)


def stop_now(server: WorkerServer) -> None:
    """What is in flight ends with us (mitmproxy sees the connections drop)."""
    try:
        server.services.planner.close()
    finally:
        os._exit(0)


async def exit_once_answered(server: WorkerServer, writer: asyncio.StreamWriter) -> None:
    while server.answering or server.jobs:
        await asyncio.sleep(RETIRE_POLL)
    server.services.planner.close()
    try:
        await writer.drain()
    finally:
        os._exit(0)


def main(argv: list[str]) -> None:
    die_with_parent()
    control_fd, counts_fd, slot, parent, index = map(int, argv[1:6])
    if os.getppid() != parent:  # mitmdump died before the line above: nothing to work for
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a ^C in mitmdump's terminal is mitmdump's to handle)
    asyncio.run(serve(control_fd, counts_fd, slot, index))


if __name__ == "__main__":
    main(sys.argv)
