"""Input byte ranges in bulk: the audio to copy, and the check that no audio byte is another track's.

A moov can describe millions of chunks. Ranges are therefore two arrays (starts, ends) rather than a
list of tuples (8 bytes an entry rather than about 130), and every operation on them is a C loop
(`map`, `accumulate`, `compress`, `bisect`) rather than a Python loop per chunk.

A moov or moof that places audio samples inside another track's chunks would make us send that
track's bytes (video) as audio; such a file is refused instead.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import accumulate, compress, islice, repeat
from operator import add, gt, ne, sub

from ..errors import MalformedInput


class Ranges:
    """Sorted, disjoint (start, end) input ranges, end exclusive, none empty."""

    __slots__ = ("starts", "ends")

    def __init__(self, starts: array | None = None, ends: array | None = None):
        self.starts = starts if starts is not None else array("q")
        self.ends = ends if ends is not None else array("q")

    @classmethod
    def of(cls, pairs) -> Ranges:
        pairs = list(pairs)
        return cls(array("q", (s for s, _ in pairs)), array("q", (e for _, e in pairs)))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.starts[i], self.ends[i]

    def __iter__(self):
        return zip(self.starts, self.ends)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"Ranges({list(self)[:4]}{'...' if len(self) > 4 else ''}, {len(self)} in all)"

    @property
    def total(self) -> int:
        """Bytes in all the ranges."""
        return sum(self.ends) - sum(self.starts)

    @property
    def memory(self) -> int:
        return 16 * len(self)


def chunk_ends(offsets: array, sizes: array) -> array:
    try:
        return array("q", map(add, offsets, sizes))
    except OverflowError:
        raise MalformedInput("a chunk (or sample auxiliary information) ends past byte 2^63") from None


def merge_sorted(offsets: array, sizes: array) -> Ranges:
    """The ranges of chunks given in ascending, non-overlapping order (checked: MalformedInput
    otherwise), neighbours joined, empty chunks left out."""
    ends = chunk_ends(offsets, sizes)
    n = len(offsets)
    # (Comparisons pair each entry with the next through islice: no copies of arrays of millions.)
    if n > 1 and any(map(gt, ends, islice(offsets, 1, None))):
        i = next(i for i in range(n - 1) if ends[i] > offsets[i + 1])
        raise MalformedInput(f"audio chunks overlap at byte {offsets[i + 1]} (the previous one ends at byte {ends[i]})")
    if n and not all(sizes):
        keep = bytes(map(bool, sizes))
        offsets, ends = array("q", compress(offsets, keep)), array("q", compress(ends, keep))
        n = len(offsets)
    if not n:
        return Ranges()
    # A range breaks where a chunk does not start where the previous one ended.
    breaks = bytes(map(ne, ends, islice(offsets, 1, None)))
    starts = array("q", offsets[:1])
    starts.extend(compress(islice(offsets, 1, None), breaks))
    new_ends = array("q", compress(ends, breaks))  # breaks is one shorter: the last end is not taken
    new_ends.append(ends[-1])
    return Ranges(starts, new_ends)


def out_positions(sizes: array) -> array:
    """Where each chunk lands in the output's media data, chunks placed one after the other."""
    placed = array("q", accumulate(sizes, initial=0))
    placed.pop()
    return placed


def is_ascending(offsets: array) -> bool:
    return not any(map(gt, offsets, islice(offsets, 1, None)))


def first_overlap(audio: Ranges, other_offsets: array, other_sizes: array) -> tuple[int, int] | None:
    """An (audio start, other chunk start) pair that share a byte, or None. The other chunks may come in
    any order."""
    if not len(audio) or not len(other_offsets):
        return None
    other_ends = chunk_ends(other_offsets, other_sizes)
    if not all(other_sizes):  # an empty chunk holds no byte
        keep = bytes(map(bool, other_sizes))
        other_offsets, other_ends = array("q", compress(other_offsets, keep)), array("q", compress(other_ends, keep))
    # For a chunk [s, e): j = the number of audio ranges starting before e (a sentinel first makes it
    # at least 1); the last of them, the one with the furthest end (they are sorted and disjoint), is
    # ends_by_count[j]. The chunk overlaps the audio exactly when that end lies past s.
    ends_by_count = array("q", [-1]) + audio.ends
    if _hits(audio.starts, ends_by_count, other_offsets, other_ends):
        for s, e in zip(other_offsets, other_ends):  # only to name the place: the file is refused
            j = bisect_left(audio.starts, e)
            if ends_by_count[j] > s:
                return audio.starts[j - 1], s
    return None


BLOCK = 256  # other chunks looked up together when they come in order


def _hits(starts: array, ends_by_count: array, offsets: array, ends: array) -> bool:
    """Whether a chunk [s, e) overlaps the audio: j = the number of audio ranges starting before e; the
    last of them, the one with the furthest end (they are sorted and disjoint), ends at
    ends_by_count[j] (-1 for none), and the chunk overlaps exactly when that lies past s.
    Chunks in order (nearly always) are looked up a block at a time, each lookup searching only the
    audio ranges the block spans: a few probes each rather than log2 of millions."""
    def overlaps(block_offsets, block_ends, lo: int, hi: int) -> bool:
        counts = map(bisect_left, repeat(starts), block_ends, repeat(lo), repeat(hi))
        return any(map(gt, map(ends_by_count.__getitem__, counts), block_offsets))

    if not is_ascending(ends):
        return overlaps(offsets, ends, 0, len(starts))
    for first in range(0, len(ends), BLOCK):
        block_ends = ends[first : first + BLOCK]
        lo = bisect_left(starts, block_ends[0])
        hi = bisect_left(starts, block_ends[-1], lo)
        if overlaps(offsets[first : first + BLOCK], block_ends, lo, hi):
            return True
    return False


def inside(ranges: Ranges, extents: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first range not inside one of the extents ((start, end) of the mdat payloads), or None."""
    covered = 0
    for a, b in sorted(extents):
        lo, hi = bisect_left(ranges.starts, a), bisect_left(ranges.starts, b)
        if hi > lo and ranges.ends[hi - 1] > b:  # the last range starting inside runs past the end
            return ranges[hi - 1]
        covered += hi - lo
    if covered == len(ranges):
        return None
    seen = array("b", bytes(len(ranges)))
    for a, b in sorted(extents):
        lo, hi = bisect_left(ranges.starts, a), bisect_left(ranges.starts, b)
        seen[lo:hi] = array("b", b"\x01" * (hi - lo))
    return ranges[seen.index(0)]


def shift(values: array, by: int) -> array:
    return array("q", map(add, values, repeat(by)))


def minus(a: array, b: array) -> array:
    return array("q", map(sub, a, b))
