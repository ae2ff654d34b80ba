"""Worker processes: our server (addon/server/) in N processes beside mitmdump, one a core.

mitmdump runs our server inside its own event loop, on one core. With audio_only_workers = N > 0,
mitmproxy keeps what only it can do (client connections, TLS, the flow, its hooks, our marks) and the
router (addon/routing.py) sends each audio request to one of N worker processes on 127.0.0.1 (each a
`sys.executable` running addon/server/worker_main.py: its own loop, port, origin pools, planner and
plan cache), chosen by placement.py: the least busy worker when a file is first asked for (its URL's
rendezvous hash breaking ties, and preferred while it is at most one answer busier), and every later
request of the file where the first went, so that a player's requests meet its plan where it was made.

How a request crosses (addon/worker_link.py): the job goes on the worker's control connection (a
socketpair: JSON lines both ways) under a secret token, the request to the worker's port names the
token; the worker's log records come back on the same connection, re-emitted in mitmdump's log with
their logger and level, and then the job's record once its answer has ended. The router's response
and error hooks wait (a bounded time) for that record before the marks read it.

Budgets hold for the whole edge: the counts are in shared memory (budgets.SharedCounts), one slot a
process, taken from a free list at each start; a worker's slot is cleared and freed only once its
process is reaped (a retired worker may still answer beside its successor: never the same slot).

Life: the pool is made once per mitmdump process and kept in this module, which a reload of the
script (audio_only.py) does not execute again: the reloaded addon adopts the running workers. A
worker that dies is started again (its answers in flight end uncleanly: mitmproxy sees their
connections drop; a warning names them). mitmproxy stopping stops them (SIGTERM); should mitmdump be
killed, each exits at the end of its control connection, or by the kernel (PR_SET_PDEATHSIG).
A smaller audio_only_workers retires the extra workers (they end after their last answer), as does
a script unloaded (take(), release()). One worker's process and connection: worker_process.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from addon import record, worker_link
from addon.budgets import SLOTS, SharedCounts
from addon.placement import Placement
from addon.record import FlowRecord
from addon.server.job import Job
from addon.worker_process import WORKER_MAIN, Worker, kill_group

log = logging.getLogger("addon.audio_only")

READY_WAIT = 15  # seconds a request waits for its worker to be (re)started before another takes it
QUICK_DEATH = 5  # seconds: a worker that dies this soon after its start is started again only after RESTART_PAUSE
RESTART_PAUSE = 1.0
STOP_WAIT = 2  # seconds a worker has to exit at SIGTERM before SIGKILL
# A worker is pinged on its control connection every PING_EVERY seconds; one that has sent nothing for
# HUNG_AFTER (stopped, or its loop stuck) is killed and started again, as one that died; the health
# check counts as answering only those heard within HEARD_WITHIN.
PING_EVERY = 1.0
HUNG_AFTER = 10.0
HEARD_WITHIN = 3.0
# Seconds a reloaded script has to adopt the workers (its new addon's load calls take()) before they are retired:
# a script taken off `scripts`, or whose new version fails to load, never adopts them.
ADOPT_WAIT = 5.0


@dataclass
class Pending:
    """A job sent to a worker, until its record comes back."""
    token: str
    worker: Worker
    url: str
    record: FlowRecord
    done: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    def __init__(self):
        self.workers: list[Worker] = []  # index i: the worker for hashes i (retired ones are not listed)
        self.retired: list[Worker] = []
        self.counts: SharedCounts | None = None
        self.free_slots = list(range(SLOTS - 1, 0, -1))  # (slot 0 is mitmdump's own server's)
        self.pending: dict[str, Pending] = {}  # by token
        self.of_flow: dict[str, Pending] = {}  # by flow id, until the router's response or error hook
        self.placement = Placement()
        self.settings: dict | None = None  # worker_link.settings_message, sent at each start and configure
        self.stopping = False
        self.live = False  # workers were started (on a running loop): requests go to them
        self.announced = 0  # how many workers the log last said answer
        self.owners: set[int] = set()  # loaded addons that took this pool (take()) and did not release it
        self.adopt_timer: asyncio.TimerHandle | None = None  # (release(): retires the workers unless taken)

    @property
    def size(self) -> int:
        return len(self.workers)

    def in_use(self) -> bool:
        return self.live and bool(self.workers)

    def answering(self, flow_id: str) -> bool:
        """Whether the flow's request went to a worker (its record is to come back)."""
        return flow_id in self.of_flow

    def alive(self) -> int:
        return sum(1 for w in self.workers if w.ready.is_set())

    def answering_workers(self) -> int:
        """Those that answer and were heard from lately (a hung one is not, until it is killed)."""
        now = time.monotonic()
        return sum(1 for w in self.workers if w.ready.is_set() and now - w.heard < HEARD_WITHIN)

    def configure(self, wanted: int, settings: dict) -> None:
        """The settings to every worker; as many workers as wanted (started on the running loop)."""
        self.settings = settings
        self.stopping = False
        for worker in self.workers:
            worker.send(settings)
        while len(self.workers) > wanted:
            self.retire(self.workers.pop())
        while len(self.workers) < wanted:
            worker = Worker(len(self.workers))
            self.workers.append(worker)
            self.start(worker)

    def start_waiting(self) -> None:
        """Those wanted before the loop ran (mitmdump's first configure, in a harness without a loop)."""
        for worker in self.workers:
            if worker.process is None:
                self.start(worker)

    def start(self, worker: Worker) -> None:
        """Its process, and the task that reads its control connection (on the running loop: with none,
        a test harness's, nothing starts)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.live = True
        if self.counts is None:
            self.counts = SharedCounts.make()
        ours, theirs = socket.socketpair()
        worker.slot = self.free_slots.pop()
        # On the loop's thread (mitmdump's main thread): PR_SET_PDEATHSIG follows the thread that forked.
        worker.process = subprocess.Popen(
            [sys.executable, WORKER_MAIN, str(theirs.fileno()), str(self.counts.fd), str(worker.slot),
             str(os.getpid()), str(worker.index)],
            pass_fds=(theirs.fileno(), self.counts.fd), stdin=subprocess.DEVNULL,
            start_new_session=True)  # (its own process group: its planner's processes go with it, kill_group)
        theirs.close()
        worker.started, worker.port = time.monotonic(), None
        worker.ready.clear()
        worker.task = loop.create_task(self.serve(worker, ours))

    async def serve(self, worker: Worker, sock: socket.socket) -> None:
        reader, worker.writer = await asyncio.open_unix_connection(sock=sock, limit=worker_link.LINE_LIMIT)
        if self.settings is not None:
            worker.send(self.settings)
        if worker.retiring:  # (retired before its connection was made: retire() could not tell it then)
            worker.send({"retire": True})
        watchdog = asyncio.get_running_loop().create_task(self.watch(worker))
        try:
            await self.read(worker, reader)
        finally:
            watchdog.cancel()
        worker.writer.close()
        await self.ended(worker)

    async def watch(self, worker: Worker) -> None:
        """Pings the worker once it answers; one silent for HUNG_AFTER gets SIGKILL (ended() then starts
        it again). A stopped worker's connection stays open: without this its files would wait forever."""
        process = worker.process
        while process.poll() is None:
            await asyncio.sleep(PING_EVERY)
            if not worker.ready.is_set():
                continue
            silent = time.monotonic() - worker.heard
            if silent > HUNG_AFTER:
                log.warning(f"audio-only: worker {worker.index} (pid {process.pid}) has not answered for "
                            f"{silent:.0f} s: killed")
                process.kill()
                return
            worker.send({"ping": True})

    async def read(self, worker: Worker, reader: asyncio.StreamReader) -> None:
        async for message in worker_link.lines(reader):
            worker.heard = time.monotonic()
            if "log" in message:
                logging.getLogger(message["name"]).log(message["log"], message["text"])
            elif "record" in message:
                if (pending := self.pending.pop(message["record"], None)) is not None:
                    pending.record.update({k: v for k, v in message["fields"].items() if k != "client"})
                    pending.done.set()
            elif "ready" in message:
                worker.port = message["ready"]
                worker.ready.set()
                log.debug(f"audio-only: worker {worker.index} (pid {worker.pid}) answers on port {worker.port}")
                if self.alive() == len(self.workers) != self.announced:
                    self.announced = len(self.workers)
                    log.info(f"audio-only: {self.announced} worker processes answer (pids "
                             f"{', '.join(str(w.pid) for w in self.workers)})")

    async def ended(self, worker: Worker) -> None:
        """The worker's control connection ended: it exited, or died. Its answers in flight are failed,
        its budget slot freed, and unless it was meant to go, it is started again."""
        worker.ready.clear()
        worker.port = None
        process = worker.process
        code = await asyncio.to_thread(process.wait)
        kill_group(process)
        await asyncio.to_thread(self.counts.clear, worker.slot)  # (its own slot; a file lock: off the loop)
        self.free_slots.append(worker.slot)
        lost = [(token, p) for token, p in self.pending.items() if p.worker is worker]
        for token, p in lost:
            del self.pending[token]  # (of_flow keeps it for the router's hooks)
            record.conclude(p.record, record.FAILED, f"worker {worker.index} (pid {process.pid}) died")
            p.done.set()
        if worker.retiring or self.stopping:
            if worker in self.retired:
                self.retired.remove(worker)
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        urls = ", ".join(p.url for _, p in lost[:5]) + (", ..." if len(lost) > 5 else "")
        log.warning(f"audio-only: worker {worker.index} (pid {process.pid}) died ({how}): "
                    f"{len(lost)} answers in flight ended uncleanly{': ' + urls if lost else ''}; starting it again")
        if time.monotonic() - worker.started < QUICK_DEATH:
            await asyncio.sleep(RESTART_PAUSE)  # (a worker that cannot start must not be forked in a loop)
        if worker in self.workers and not self.stopping:
            self.start(worker)

    def retire(self, worker: Worker) -> None:
        """No new requests for it; it exits after its last answer."""
        worker.retiring = True
        self.retired.append(worker)
        worker.send({"retire": True})

    async def worker_for(self, url: str) -> Worker | None:
        """The worker that a file's requests go to (place()), once it answers; another if it is not back
        within READY_WAIT; None when none is."""
        if not self.workers:
            return None
        worker = self.place(url)
        if not worker.ready.is_set():
            try:
                await asyncio.wait_for(worker.ready.wait(), READY_WAIT)
            except asyncio.TimeoutError:
                return next((w for w in self.workers if w.ready.is_set()), None)
        return worker

    def place(self, url: str) -> Worker:
        """The file's worker (placement.py), by the answers in flight of each."""
        return self.placement.place(url, self.workers, self.answers_in_flight)

    def answers_in_flight(self) -> list[int]:
        """Each worker's answers in flight (a retired worker's not counted for its successor)."""
        busy = [0] * len(self.workers)
        for pending in self.pending.values():
            if pending.worker.index < len(busy) and self.workers[pending.worker.index] is pending.worker:
                busy[pending.worker.index] += 1
        return busy

    def send(self, worker: Worker, job: Job, flow_id: str) -> str:
        """The job to the worker; the token the request names it with."""
        token = secrets.token_hex(12)
        self.pending[token] = self.of_flow[flow_id] = Pending(token, worker, job.url, job.record)
        worker.send(worker_link.job_message(token, job))
        return token

    async def final_record(self, flow_id: str, wait: float) -> None:
        """Until the flow's job's record is back in its flow (at most `wait` seconds); then the job is
        forgotten."""
        pending = self.of_flow.pop(flow_id, None)
        if pending is None:
            return
        if not pending.done.is_set():
            try:
                await asyncio.wait_for(pending.done.wait(), wait)
            except asyncio.TimeoutError:
                pass
        self.pending.pop(pending.token, None)

    def take(self, owner: object) -> None:
        """Our addon's load hook (an addon mitmproxy loaded, not one merely made: a script's module may
        be executed twice in one load)."""
        self.owners.add(id(owner))
        if self.adopt_timer is not None:
            self.adopt_timer.cancel()
            self.adopt_timer = None

    def release(self, owner: object) -> None:
        """Our addon's done hook when mitmproxy is not stopping. A reload's new addon takes the pool at
        once (take()); when none has after ADOPT_WAIT (the script taken off `scripts`, or its new version
        failed to load), the workers are retired: they exit after their last answer, and no process of
        ours is left idle beside mitmdump. A later load of the script then starts a new pool."""
        self.owners.discard(id(owner))
        if self.owners:
            return
        if self.adopt_timer is not None:
            self.adopt_timer.cancel()
        try:
            self.adopt_timer = asyncio.get_running_loop().call_later(ADOPT_WAIT, self.retire_unless_adopted)
        except RuntimeError:  # (a test harness without a loop: nothing was started)
            pass

    def retire_unless_adopted(self) -> None:
        global _pool
        self.adopt_timer = None
        if self.owners or self.stopping:
            return
        if self.workers:
            log.info(f"audio-only: the script was unloaded: its {len(self.workers)} worker processes end "
                     f"after their last answer")
        self.live = False
        while self.workers:
            self.retire(self.workers.pop())
        if _pool is self:
            _pool = None

    def stop(self) -> None:
        """mitmproxy stops: every worker with it (those retired too)."""
        self.stopping, self.live = True, False
        everyone = self.workers + self.retired
        self.workers, self.retired = [], []
        for worker in everyone:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.terminate()
        deadline = time.monotonic() + STOP_WAIT  # (one for them all: they exit at the same time)
        for worker in everyone:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            kill_group(worker.process)
        if stopped := [w.process.returncode for w in everyone if w.process is not None]:
            log.debug(f"audio-only: {len(stopped)} worker processes stopped (exit statuses "
                      f"{', '.join(map(str, stopped))})")


_pool: WorkerPool | None = None


def pool() -> WorkerPool:
    """This process's pool, made once: a reload of the script finds the same one."""
    global _pool
    if _pool is None:
        _pool = WorkerPool()
    return _pool
