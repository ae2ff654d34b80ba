"""Budgets across responses: metadata held in memory, and media data spooled on disk.

One response is bounded by audio_only_max_header (its moov) and audio_only_max_spool (its spool);
these bound all of them together, so that many legal requests at once cannot take the machine's
memory or disk. Past a budget a response is refused: a 503 with Retry-After while its headers have
not gone out, else an unclean end; the log names the budget's option.

With worker processes (addon/workers.py) the budgets hold for the whole edge, not per worker: the
counts live in SharedCounts, a small unnamed file in shared memory that mitmdump makes and hands to
every worker (its descriptor). Each process adds to its own slot and checks the sum of all slots,
under an fcntl lock of the file; a worker that dies has its slot zeroed by mitmdump, so what it held
is not counted for ever.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import threading

from extractor.errors import human_size
from extractor.spool import TempFileSpool

# What holding and planning a moov of n bytes costs in memory, as a multiple of n (the box itself, its
# tables as arrays, the new moov), measured by scripts/bench_moov.py's --memory.
PLAN_COST = 3
METADATA, SPOOL = 0, 1  # the two counts of a slot
SLOTS = 257  # slot 0: mitmdump's own server; 1..256: workers


class BudgetExceeded(Exception):
    """A budget across responses is spent; the message names its option."""


class LocalCounts:
    """The counts of one process (the in-process server)."""

    def __init__(self):
        self.used = [0, 0]

    @contextlib.contextmanager
    def locked(self):
        yield

    def total(self, kind: int) -> int:
        return self.used[kind]

    def add(self, kind: int, delta: int) -> None:
        self.used[kind] = max(0, self.used[kind] + delta)


class SharedCounts:
    """The counts of every process of the edge, in a file in shared memory (/dev/shm where there is
    one): SLOTS slots of two signed 64-bit counts, one slot per process."""

    def __init__(self, fd: int, slot: int):
        self.fd, self.slot = fd, slot
        self.map = mmap.mmap(fd, SLOTS * 16)
        self.counts = memoryview(self.map).cast("q")

    @classmethod
    def make(cls) -> SharedCounts:
        """A new file, unnamed (nothing is left behind, whoever is killed), for mitmdump's slot 0."""
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        file = tempfile.TemporaryFile(dir=folder)
        fd = os.dup(file.fileno())
        file.close()
        os.ftruncate(fd, SLOTS * 16)
        return cls(fd, 0)

    @contextlib.contextmanager
    def locked(self):
        import fcntl  # (POSIX only, as worker processes are: mitmdump on Windows never gets here)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)  # (between processes; a process's threads take Budgets.lock first)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def total(self, kind: int) -> int:
        return sum(self.counts[kind::2])

    def add(self, kind: int, delta: int) -> None:
        i = self.slot * 2 + kind
        self.counts[i] = max(0, self.counts[i] + delta)

    def clear(self, slot: int) -> None:
        """A dead worker's slot: what it held is free again."""
        with self.locked():
            self.counts[slot * 2] = self.counts[slot * 2 + 1] = 0


class Budgets:
    def __init__(self, metadata: int = 1 << 30, spool: int = 16 << 30, counts: LocalCounts | SharedCounts | None = None):
        self.metadata_limit = metadata
        self.spool_limit = spool
        self.counts = counts or LocalCounts()
        self.lock = threading.Lock()  # spools are written from worker threads too (server/stream_answer.py)

    @property
    def metadata_used(self) -> int:
        return self.counts.total(METADATA)

    @property
    def spool_used(self) -> int:
        return self.counts.total(SPOOL)

    def _reserve(self, kind: int, cost: int, limit: int) -> int | None:
        """Adds cost to the count unless that passes the limit: None, else the count in use before."""
        with self.lock, self.counts.locked():
            used = self.counts.total(kind)
            if used + cost > limit:
                return used
            self.counts.add(kind, cost)
            return None

    def _release(self, kind: int, cost: int) -> None:
        with self.lock, self.counts.locked():
            self.counts.add(kind, -cost)

    def reserve_metadata(self, size: int) -> None:
        used = self._reserve(METADATA, size * PLAN_COST, self.metadata_limit)
        if used is not None:
            raise BudgetExceeded(
                f"metadata of {human_size(size)} would take the metadata held by all responses past "
                f"{human_size(self.metadata_limit)} ({human_size(used)} in use; audio_only_metadata_budget)")

    def release_metadata(self, size: int) -> None:
        self._release(METADATA, size * PLAN_COST)

    @contextlib.contextmanager
    def metadata(self, size: int):
        """`size` bytes of metadata counted while the block runs (a moov read with Range requests, say)."""
        self.reserve_metadata(size)
        try:
            yield
        finally:
            self.release_metadata(size)

    def reserve_spool(self, size: int) -> None:
        used = self._reserve(SPOOL, size, self.spool_limit)
        if used is not None:
            raise BudgetExceeded(
                f"the spools of all responses would pass {human_size(self.spool_limit)} "
                f"({human_size(used)} in use; audio_only_spool_budget)")

    def spool(self, start: int, directory: str | None) -> BudgetedSpool:
        return BudgetedSpool(self, start, directory)


class BudgetedSpool(TempFileSpool):
    """A spool whose bytes count against the spool budget until it is closed."""

    def __init__(self, budgets: Budgets, start: int, directory: str | None):
        self.budgets = budgets
        self.counted = 0
        super().__init__(start, directory)

    def write(self, data) -> None:
        self.budgets.reserve_spool(len(data))
        self.counted += len(data)
        super().write(data)

    def close(self) -> None:
        self.budgets._release(SPOOL, self.counted)
        self.counted = 0
        super().close()
