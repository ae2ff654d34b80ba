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
from itertools import accumulate
from dataclasses import dataclass, field

from ..errors import MalformedInput, UnsupportedInput
from ..seek import SeekRange
from .boxes import Box
from .plan import plan
from .ranges import Ranges, inside, minus


@dataclass
class FilePlan:
    head: bytes
    ranges: Ranges  # input ranges, in output order, after the head
    size: int  # the whole output's length
    warnings: list[str] = field(default_factory=list)
    starts: array = field(default_factory=lambda: array("q"))  # output offset of each range

    def __post_init__(self):
        self.starts = array("q", accumulate(minus(self.ranges.ends, self.ranges.starts), initial=len(self.head)))
        assert self.starts.pop() == self.size

    @property
    def memory(self) -> int:
        """About what this plan holds in memory, for a cache bounded in bytes."""
        return len(self.head) + self.ranges.memory + 8 * len(self.starts) + 200

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
              seek: SeekRange | None = None) -> FilePlan:
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
    return FilePlan(result.head, result.ranges, size, result.warnings)
