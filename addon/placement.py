"""Which worker process a file's requests go to (addon/workers.py).

The hash orders the workers, the load chooses: a file not placed lately goes to the first worker in
its URL's order (rendezvous hashing with blake2b, never Python's salted hash()) unless that one has
more answers in flight than the least busy plus SLACK, then to the least busy (the first of those in
the URL's order); the file's later requests follow it there, however busy, to meet the plan (and the
output cache's entry) made there. The places of the last REMEMBERED files are kept; a file forgotten
goes back to its hash's first worker on an edge that is not lopsided, where its plan most likely still
is. By the hash alone, eight files on two workers put six or more on one worker 29% of the time (a
binomial draw), whose clients waited while the other idled; with this, at most SLACK + 1 apart.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Protocol, Sequence

SLACK = 1  # answers in flight a file's first worker may have above the least busy and still take it
REMEMBERED = 50_000  # files whose worker is kept (a bounded LRU: 10-30 MB with long signed URLs)


class Place(Protocol):
    index: int
    retiring: bool

    def answers(self) -> bool: ...


class Placement:
    def __init__(self):
        self.placed: OrderedDict[str, Place] = OrderedDict()  # a file's URL -> its worker

    def place(self, url: str, workers: Sequence[Place], load: Callable[[], Sequence[int]]) -> Place:
        """The worker for the file at `url`, among `workers`: where it was placed, while that worker is
        one of them (restarted or not: a retired one's files are placed again); else by its hash order
        and the load (load()[i]: worker i's answers in flight, counted only then: not for every request
        of a file already placed), among those that answer (all of them when none does)."""
        worker = self.placed.get(url)
        if worker is not None and not worker.retiring and worker.index < len(workers) \
                and workers[worker.index] is worker:
            self.placed.move_to_end(url)
            return worker
        busy = load()
        order = [workers[place] for place in places_of(url, len(workers))]
        ready = [w for w in order if w.answers()] or order
        least = min(busy[w.index] for w in ready)
        worker = ready[0] if busy[ready[0].index] <= least + SLACK else \
            next(w for w in ready if busy[w.index] == least)
        self.placed[url] = worker
        if len(self.placed) > REMEMBERED:
            self.placed.popitem(last=False)
        return worker


def places_of(url: str, count: int) -> list[int]:
    """The workers (of `count`) in the URL's order: by the score of their hash with the URL, highest
    first (rendezvous hashing: going from N to N+1 workers moves only the files the new one wins, about
    1/(N+1), where a hash modulo N would move almost all). The URL's bytes as they came: mitmproxy keeps a
    byte that is not UTF-8 (legal on the wire) as a lone surrogate, which a plain encode() refuses."""
    key = url.encode("utf-8", "surrogateescape")
    return sorted(range(count), reverse=True,
                  key=lambda place: hashlib.blake2b(key, digest_size=8, salt=place.to_bytes(16, "big")).digest())


def place_of(url: str, count: int) -> int:
    """The URL's first worker, where an idle edge sends it."""
    return places_of(url, count)[0]
