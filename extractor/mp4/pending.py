"""The input ranges a streaming filter still has to send (progressive.py's moov and moofs, segment.py's
moofs), and the sending itself: the ranges that fall in one input piece sliced out of it in bulk."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from itertools import repeat
from operator import sub

from ..errors import MalformedInput
from .ranges import Ranges


class Pending:
    """The input ranges still to send, in order: blocks of Ranges (the moov's plan, each moof's), the
    first read from index `i`, its range `i` begun at `start`. Millions of ranges cost their arrays,
    and the ranges that fall in one input piece are sliced out of it in bulk."""

    def __init__(self):
        self.blocks: deque[Ranges] = deque()
        self.i = 0
        self.start = 0
        self.last_end = 0  # the end of the last range added: blocks come in input order

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def add(self, ranges: Ranges) -> None:
        if len(ranges):
            if ranges.starts[0] < self.last_end:  # the input streams by: bytes already past are gone
                raise MalformedInput(f"audio at byte {ranges.starts[0]} comes before the end of audio already "
                                     f"planned (byte {self.last_end}): fragments out of order")
            self.last_end = ranges.ends[-1]
            self.blocks.append(ranges)
            if len(self.blocks) == 1:
                self.i, self.start = 0, ranges.starts[0]

    def first(self) -> tuple[int, int]:
        """The next (start, end) to send (there must be one)."""
        return self.start, self.blocks[0].ends[self.i]

    def _next(self, i: int) -> None:
        """Range i of the first block is next (past its end: the next block's first)."""
        block = self.blocks[0]
        if i < len(block):
            self.i, self.start = i, block.starts[i]
            return
        self.blocks.popleft()
        self.i, self.start = 0, (self.blocks[0].starts[0] if self.blocks else 0)

    def missing(self, position: int) -> int:
        """Bytes of the pending ranges at or after input offset `position`."""
        total = 0
        for n, block in enumerate(self.blocks):
            first = self.i if n == 0 else 0
            starts = block.starts[first:]
            if n == 0:
                starts[0] = self.start
            total += sum(block.ends[first:]) - sum(map(max, starts, repeat(position)))
        return total

    def send(self, view: memoryview, at: int, out: list) -> None:
        """Append to `out` the parts of the pending ranges that lie in `view`, the input from offset
        `at` on; what is sent is no longer pending."""
        end = at + len(view)
        while self.blocks and self.start < end:
            block, i = self.blocks[0], self.i
            range_end = block.ends[i]
            out.append(view[max(self.start, at) - at : min(range_end, end) - at])
            if range_end > end:
                self.start = end  # the rest comes with the next piece
                return
            # The ranges after it that end in this view, sliced out together.
            j = bisect_right(block.ends, end, i + 1)
            if j > i + 1:
                starts = map(sub, block.starts[i + 1 : j], repeat(at))
                ends = map(sub, block.ends[i + 1 : j], repeat(at))
                out.append(b"".join(map(view.__getitem__, map(slice, starts, ends))))
            self._next(j)
            if self.blocks and self.blocks[0] is block and self.start < end:
                out.append(view[self.start - at : end - at])  # begun here, ends in a later piece
                self.start = end
                return
