"""Budgets across responses: metadata held in memory, and media data spooled on disk.

One response is bounded by audio_only_max_header (its moov) and audio_only_max_spool (its spool);
these bound all of them together, so that many legal requests at once cannot take the machine's
memory or disk. Past a budget a response is refused: a 503 with Retry-After while its headers have
not gone out, else an unclean end; the log names the budget's option.
"""

from __future__ import annotations

import contextlib
import threading

from extractor.errors import human_size
from extractor.spool import TempFileSpool

# What holding and planning a moov of n bytes costs in memory, as a multiple of n (the box itself, its
# tables as arrays, the new moov), measured by scripts/bench_moov.py's --memory.
PLAN_COST = 3


class BudgetExceeded(Exception):
    """A budget across responses is spent; the message names its option."""


class Budgets:
    def __init__(self, metadata: int = 1 << 30, spool: int = 16 << 30):
        self.metadata_limit = metadata
        self.spool_limit = spool
        self.metadata_used = 0
        self.spool_used = 0
        self.lock = threading.Lock()  # spools are written from worker threads too (server/stream_answer.py)

    def reserve_metadata(self, size: int) -> None:
        cost = size * PLAN_COST
        with self.lock:
            if self.metadata_used + cost > self.metadata_limit:
                raise BudgetExceeded(
                    f"metadata of {human_size(size)} would take the metadata held by all responses past "
                    f"{human_size(self.metadata_limit)} ({human_size(self.metadata_used)} in use; "
                    f"audio_only_metadata_budget)")
            self.metadata_used += cost

    def release_metadata(self, size: int) -> None:
        with self.lock:
            self.metadata_used = max(0, self.metadata_used - size * PLAN_COST)

    @contextlib.contextmanager
    def metadata(self, size: int):
        """`size` bytes of metadata counted while the block runs (a moov read with Range requests, say)."""
        self.reserve_metadata(size)
        try:
            yield
        finally:
            self.release_metadata(size)

    def spool(self, start: int, directory: str | None) -> BudgetedSpool:
        return BudgetedSpool(self, start, directory)


class BudgetedSpool(TempFileSpool):
    """A spool whose bytes count against the spool budget until it is closed."""

    def __init__(self, budgets: Budgets, start: int, directory: str | None):
        self.budgets = budgets
        self.counted = 0
        super().__init__(start, directory)

    def write(self, data) -> None:
        b = self.budgets
        with b.lock:
            if b.spool_used + len(data) > b.spool_limit:
                raise BudgetExceeded(
                    f"the spools of all responses would pass {human_size(b.spool_limit)} "
                    f"({human_size(b.spool_used)} in use; audio_only_spool_budget)")
            b.spool_used += len(data)
        self.counted += len(data)
        super().write(data)

    def close(self) -> None:
        with self.budgets.lock:
            self.budgets.spool_used -= self.counted
        self.counted = 0
        super().close()
