"""The audio-only MP4 as a file: once the moov is known, its length and where each of its bytes comes from.

The output is the planned head (ftyp, the new moov, the mdat header) followed by the planned input
ranges (the audio chunks) in order. A byte range of the output is therefore a piece of the head and
a list of input byte ranges: `segments(first, last)` gives them, so that a file server can answer any
Range request by reading only those input bytes from wherever the input lies.

Sans-IO like the rest of the core: the caller reads the top-level box headers, the ftyp and the moov
(with Range requests, say) and hands them over; nothing here reads or waits.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from itertools import accumulate, compress, islice, repeat
from operator import gt, sub

from ..errors import MalformedInput, UnsupportedInput
from ..seek import SeekRange
from .boxes import Box
from .plan import plan
from .ranges import Ranges, inside, minus


@dataclass
class Batch:
    """Ranges i..j-1 of a plan, the first read from input offset lo, the last up to hi: one origin read
    from lo to hi gives them all (the bytes between them dropped)."""
    i: int
    j: int
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass
class FilePlan:
    head: bytes
    ranges: Ranges  # input ranges, in output order, after the head
    size: int  # the whole output's length
    warnings: list[str] = field(default_factory=list)
    gap: int = 0  # ranges closer than this are read together (batches)
    starts: array = field(default_factory=lambda: array("q"))  # output offset of each range
    breaks: array = field(default_factory=lambda: array("q"))  # ranges k whose gap from range k-1 is above `gap`

    def __post_init__(self):
        starts, ends = self.ranges.starts, self.ranges.ends
        self.starts = array("q", accumulate(minus(ends, starts), initial=len(self.head)))
        assert self.starts.pop() == self.size
        gaps_over = map(gt, map(sub, islice(starts, 1, None), ends), repeat(self.gap))
        self.breaks = array("q", compress(range(1, len(starts)), gaps_over))

    @property
    def memory(self) -> int:
        """About what this plan holds in memory, for a cache bounded in bytes."""
        return len(self.head) + self.ranges.memory + 8 * (len(self.starts) + len(self.breaks)) + 200

    def batches(self, first: int, last: int, most: int, most_ranges: int = 1 << 12):
        """('head', bytes) and ('batch', Batch) in order, that make output bytes first..last (inclusive):
        neighbouring ranges closer than `gap` in one batch, a batch spanning at most `most` input
        bytes (a single range longer than that is split) and holding at most `most_ranges` ranges (its
        cut is one C loop that holds the GIL: about 1 µs a range). Found with bisect on the arrays: the work is
        per batch, not per range."""
        head = self.head
        if first < len(head):
            yield "head", head[first : min(last + 1, len(head))]
        if last < len(head) or not len(self.ranges):
            return
        in_starts, in_ends, out_starts = self.ranges.starts, self.ranges.ends, self.starts
        i = max(0, bisect.bisect_right(out_starts, first) - 1)
        end = bisect.bisect_right(out_starts, last)  # ranges i..end-1 hold output bytes up to last
        lo = in_starts[i] + max(0, first - out_starts[i])
        while i < end:
            next_break = bisect.bisect_right(self.breaks, i)
            j = min(end, i + most_ranges, self.breaks[next_break] if next_break < len(self.breaks) else end)
            # Only the ranges that end within `most` of lo (at least range i, maybe cut).
            j = max(i + 1, min(j, bisect.bisect_right(in_ends, lo + most, i + 1, j)))
            k = j - 1
            hi = in_ends[k]
            if out_starts[k] + (hi - in_starts[k]) > last + 1:
                hi = in_starts[k] + (last + 1 - out_starts[k])  # the last output byte asked for
            if j == i + 1 and hi - lo > most:  # one range longer than a batch: in pieces
                yield "batch", Batch(i, j, lo, lo + most)
                lo += most
                continue
            yield "batch", Batch(i, j, lo, hi)
            i = j
            if i < end:
                lo = in_starts[i]

    def cut(self, batch: Batch, data, at: int) -> bytes:
        """The batch's output bytes out of `data`, the input from offset `at` on (its ranges' bytes, the
        gaps between them left out)."""
        view = memoryview(data)
        if batch.j == batch.i + 1:
            return bytes(view[batch.lo - at : batch.hi - at])
        starts = self.ranges.starts[batch.i : batch.j]
        ends = self.ranges.ends[batch.i : batch.j]
        starts[0], ends[-1] = batch.lo, batch.hi
        return b"".join(map(view.__getitem__, map(slice, map(sub, starts, repeat(at)), map(sub, ends, repeat(at)))))

    def segments(self, first: int, last: int):
        """('head', start, end) and ('input', start, end) pieces, in order, that make output bytes
        first..last (inclusive): head offsets for the first kind, input offsets for the second."""
        if first < len(self.head):
            yield "head", first, min(last + 1, len(self.head))
        i = max(0, bisect.bisect_right(self.starts, first) - 1)
        while i < len(self.ranges) and self.starts[i] <= last:
            s, e = self.ranges[i]
            out_start = self.starts[i]
            lo = s + max(0, first - out_start)
            hi = s + min(e - s, last + 1 - out_start)
            if hi > lo:
                yield "input", lo, hi
            i += 1


def plan_file(ftyp: bytes, moov: bytes, mdats: list[tuple[int, int]], length: int,
              seek: SeekRange | None = None, gap: int = 0) -> FilePlan:
    """The audio-only file of an MP4 whose top level is known: `ftyp` and `moov` are those boxes'
    bytes, `mdats` the (payload start, end) of every mdat box, `length` the input's size. Fragmented
    files are not files of this kind (their samples are in moofs): UnsupportedInput."""
    box = Box(b"moov", 0, 8 if int.from_bytes(moov[:4], "big") != 1 else 16, len(moov))
    result = plan(ftyp, moov, box, seek)
    if result.fragmented:
        raise UnsupportedInput("a fragmented MP4 (mvex): its audio is in the fragments, served as a stream")
    ranges = result.ranges
    if outside := inside(ranges, [(a, min(b, length)) for a, b in mdats]):
        raise MalformedInput(f"audio bytes {outside[0]}-{outside[1]} do not lie inside an mdat box of the "
                             f"{length}-byte file")
    size = len(result.head) + ranges.total
    return FilePlan(result.head, ranges, size, result.warnings, gap)
