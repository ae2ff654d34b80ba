"""Seeking (the CDN's video_seek): which part of the input the output covers.

The parameter rules are the CDN's: both values invalid -> the whole file; only start -> start to the
end; only end -> 0 to end; start=0&end=0 -> the whole file; start >= end -> start to the end. Seconds
take up to 3 decimals; byte offsets are whole numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SECONDS = re.compile(r"^\d+(\.\d{1,3})?$")
BYTES = re.compile(r"^\d+$")


@dataclass(frozen=True)
class SeekRange:
    """Where the output starts and ends: input byte offsets (by_time False) or milliseconds (True).
    end None: to the end of the input."""

    start: int
    end: int | None
    by_time: bool

    def describe(self) -> str:
        unit = "ms" if self.by_time else "bytes"
        return f"{self.start}-{'' if self.end is None else self.end} {unit}"


def parse_range(start: str | None, end: str | None, by_time: bool) -> SeekRange | None:
    """The range the request's start/end values ask for, or None for the whole file."""
    pattern = SECONDS if by_time else BYTES

    def value(raw: str | None) -> int | None:
        if raw is None or not pattern.match(raw):
            return None
        return round(float(raw) * 1000) if by_time else int(raw)

    s, e = value(start), value(end)
    if s is None and e is None:
        return None
    if e is None:
        return SeekRange(s, None, by_time) if s else None
    if s is None:
        s = 0
    if s == 0 and e == 0:
        return None
    if s >= e:
        return SeekRange(s, None, by_time) if s else None
    return SeekRange(s, e, by_time)
