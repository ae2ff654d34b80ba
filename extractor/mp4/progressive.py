"""The streaming MP4 filter for classic (non-fragmented) files whose moov comes before the media.

Top-level boxes are walked as they arrive:
  box     gather a box header (8, 16 or +16 for uuid)
  keep    gather the ftyp (it is sent again as it was)
  moov    gather the moov (bounded by max_header), plan, and send ftyp + new moov + mdat header
  media   an mdat after the moov: send the planned audio ranges as zero-copy slices, skip the rest
  skip    any other box: step over it
Every audio range must lie inside an mdat; at the end every planned byte must have been sent, or
the input was short and that is an error, not a short file.
"""

from __future__ import annotations

from ..buffer import Gather
from ..errors import LimitExceeded, MalformedInput, TruncatedInput, UnsupportedInput, human_size
from . import boxes
from .plan import Plan, plan

TO_THE_END = -1  # a size-0 box: it runs to the end of the input


class Mp4AudioFilter:
    format = "mp4"

    def __init__(self, max_header: int = 64 << 20):
        self.max_header = max_header
        self.bytes_in = 0
        self.bytes_out = 0
        self.warnings: list[str] = []
        self.plan: Plan | None = None
        self._state = "box"
        self._gather = Gather()
        self._box: boxes.Box | None = None  # the top-level box being read
        self._remaining = 0  # payload bytes of it still to come (TO_THE_END: unknown)
        self._held = bytearray()  # ftyp or moov being gathered
        self._ftyp = b""
        self._next = 0  # index of the next planned range not wholly sent

    def feed(self, data) -> list:
        out: list = []
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._state == "box":
                pos = self._read_header(view, pos)
                continue
            n = end - pos if self._remaining == TO_THE_END else min(self._remaining, end - pos)
            if self._state == "media":
                self._send(view, pos, n, out)
            elif self._state in ("keep", "moov"):
                self._held += view[pos : pos + n]
            pos += n
            if self._remaining != TO_THE_END:
                self._remaining -= n
                if not self._remaining:
                    self._box_done(out)
        self.bytes_in += end
        self.bytes_out += sum(map(len, out))
        return out

    def finish(self) -> list:
        out: list = []
        if self._remaining == TO_THE_END:
            self._box_done(out)
        if self.plan is None:
            if self._state == "moov":
                raise TruncatedInput(
                    f"input ends inside the moov ({len(self._held)} of {self._box.size - self._box.header} bytes)"
                )
            raise MalformedInput("the input has no moov box: not an MP4 with metadata")
        if self._next < len(self.plan.ranges):
            missing = sum(e - max(s, self.bytes_in) for s, e in self.plan.ranges[self._next :])
            raise TruncatedInput(
                f"input ends at byte {self.bytes_in} before the audio chunk at byte "
                f"{self.plan.ranges[self._next][0]} ({missing} bytes of audio missing)"
            )
        if self._state != "box" or len(self._gather):
            self.warnings.append(f"input ends inside a '{self._box.name() if self._box else '?'}' box after all the audio")
        self.bytes_out += sum(map(len, out))
        return out

    # -- states ---------------------------------------------------------------------------------

    def _read_header(self, view: memoryview, pos: int) -> int:
        first = self._gather.peek(view, pos, 8)
        if first is None:
            return self._gather.take(view, pos, 8)[2]
        start = self.bytes_in + pos - len(self._gather)
        buf, at, pos = self._gather.take(view, pos, boxes.header_length(first))
        if buf is None:
            return pos
        box = boxes.parse_header(buf, at, None)
        box.start = start
        self._box = box
        self._remaining = TO_THE_END if box.size == -1 else box.size - box.header
        self._state = self._state_for(box)
        if self._remaining == 0:
            self._box_done([])
        return pos

    def _state_for(self, box: boxes.Box) -> str:
        if box.type == b"moov":
            if self.plan is not None:
                raise MalformedInput(f"a second moov at byte {box.start}")
            if box.size == -1 or box.size > self.max_header:
                size = "unbounded (size 0)" if box.size == -1 else human_size(box.size)
                raise LimitExceeded(
                    f"moov is {size}, above the {human_size(self.max_header)} limit (audio_only_max_header)"
                )
            return "moov"
        if box.type == b"ftyp" and self.plan is None and not self._ftyp:
            if box.size > 4096 or box.size == -1:
                raise MalformedInput(f"ftyp is {box.size} bytes, not a file type box")
            return "keep"
        if box.type == b"mdat":
            if self.plan is None:
                raise UnsupportedInput(
                    f"the media data (mdat at byte {box.start}) comes before the moov: not supported yet"
                )
            if self._next < len(self.plan.ranges) and self.plan.ranges[self._next][0] < box.start + box.header:
                self._outside(self.plan.ranges[self._next][0])
            return "media"
        return "skip"

    def _box_done(self, out: list) -> None:
        box = self._box
        end = self.bytes_in if self._remaining == TO_THE_END else box.end
        if self._state == "keep":
            self._ftyp = boxes.make_box(box.type, bytes(self._held))
        elif self._state == "moov":
            self.plan = plan(self._ftyp, self._moov_bytes(), boxes.Box(b"moov", 0, box.header, box.size))
            if self.plan.ranges and self.plan.ranges[0][0] < box.end:
                self._outside(self.plan.ranges[0][0])
            out.append(self.plan.head)
        elif self._state == "media":
            if self._next < len(self.plan.ranges) and self.plan.ranges[self._next][0] < end:
                s, e = self.plan.ranges[self._next]
                raise MalformedInput(f"audio chunk at bytes {s}-{e} runs past the end of the mdat at byte {end}")
        elif self.plan and self._next < len(self.plan.ranges) and self.plan.ranges[self._next][0] < end:
            self._outside(self.plan.ranges[self._next][0])
        self._held = bytearray()
        self._state = "box"
        self._remaining = 0

    def _moov_bytes(self) -> bytes:
        """The moov as one buffer with its header, so box offsets inside it are plain indexes."""
        box = self._box
        if box.header == 8:
            header = box.size.to_bytes(4, "big") + b"moov"
        else:
            header = (1).to_bytes(4, "big") + b"moov" + box.size.to_bytes(8, "big")
        return header + bytes(self._held)

    def _outside(self, offset: int) -> None:
        raise MalformedInput(f"audio chunk offset {offset} does not point into an mdat box")

    def _send(self, view: memoryview, pos: int, n: int, out: list) -> None:
        """Send the parts of the planned ranges that fall in view[pos:pos+n]."""
        ranges = self.plan.ranges
        a = self.bytes_in + pos
        b = a + n
        i = self._next
        while i < len(ranges):
            s, e = ranges[i]
            if s >= b:
                break
            lo, hi = max(s, a), min(e, b)
            out.append(view[pos + lo - a : pos + hi - a])
            if e > b:
                break
            i += 1
        self._next = i
