"""An MP4's top level read from a file it does not hold: it says which bytes it needs next.

Sans-IO, as h11 says NEED_DATA: `TopLevelReader.need` is the (offset, size) of the bytes it wants
next, or None once it is done (`result`); the caller fetches them (Range requests, a file, anything)
and gives them to `feed`. What it reads: each top-level box header (16 bytes, where the bytes it was
given first or the previous read do not hold it), the ftyp and the moov whole, and after the moov the
boxes a fragmented file's output is made of (its moofs, each read with the next box's header, and the
small boxes passed on between fragments); of an mdat only where its payload lies. With until_moov, no
further than the moov.

Errors name the box and its offset: ExtractError when the file is not such an MP4 (no moov, a box
above `limit`, too many boxes).
"""

from __future__ import annotations

from typing import Generator, NamedTuple

from ..errors import LimitExceeded, MalformedInput, UnsupportedInput
from . import boxes
from .boxes import Box
from .fragmented import PASSED_ON

MAX_HOPS = 64  # top-level boxes read before giving up on a file (and 8 more a fragment)
HEADER_READ = 4096  # bytes read where a box header is wanted in a fragmented file (a moof, most likely)
MAX_FRAGMENTS = 4096  # fragments read that way: a file with more is not read so

Need = tuple[int, int]  # (offset, size) of the bytes wanted next


class TopLevel(NamedTuple):
    ftyp: bytes
    moov: bytes
    moov_at: int  # the moov's offset in the file
    mdats: list[tuple[int, int]]  # every mdat's payload, (start, end)
    after: list[tuple[bytes, int, bytes]]  # boxes after the moov a fragmented output is made of: (type, offset, bytes)


class TopLevelReader:
    """Feed it what `need` asks for until `need` is None; then `result` holds the top level."""

    def __init__(self, length: int | None, limit: int, head: bytes = b"", until_moov: bool = False,
                 index: bool = False):
        """length: the file's (None: unknown, and a box running to the end has size -1); limit: the
        largest box read whole; head: the file's first bytes, already read; index: the sidx boxes after
        the moov are kept too (a fragmented file's plan with `index` rewrites them for the audio)."""
        self.need: Need | None = None
        self.result: TopLevel | None = None
        self._steps = _walk(length, limit, head, until_moov, index)
        self._advance(None)

    def feed(self, data: bytes) -> None:
        """The bytes `need` asked for (fewer only where the file ends first)."""
        if self.need is None:
            raise RuntimeError("the top level is read: nothing more is needed")
        self._advance(data)

    def _advance(self, data: bytes | None) -> None:
        try:
            self.need = self._steps.send(data)
        except StopIteration as done:
            self.need, self.result = None, done.value


def box_at(header: bytes, pos: int, length: int | None) -> Box:
    """The top-level box whose first bytes (up to 16) are `header`, at byte `pos` of a `length`-byte
    file (None: unknown, and a box running to the end has size -1)."""
    box = boxes.parse_header(header, 0, None if length is None else length - pos)
    return Box(box.type, pos, box.header, box.size)


def _walk(length: int | None, limit: int, head: bytes, until_moov: bool, index: bool = False) -> Generator[Need, bytes, TopLevel]:
    ftyp = moov = None
    moov_at, mdats, after, pos = 0, [], [], 0
    ahead_at, ahead = 0, head  # bytes of the file already read, from offset ahead_at
    hops, allowed, fragments = 0, MAX_HOPS, 0
    while hops < allowed:
        hops += 1
        if (length is not None and pos >= length) or (until_moov and moov is not None):
            break
        if not (ahead_at <= pos and pos + min(16, (length or pos + 16) - pos) <= ahead_at + len(ahead)):
            # A header; once fragments have begun, with what follows it: the next moof (usually under
            # 4 KiB) comes whole with its header (and, after a small moof, up to 4 KiB of its mdat: the
            # price of one read a fragment instead of two).
            want = HEADER_READ if fragments else 16
            ahead_at, ahead = pos, (yield (pos, want if length is None else min(want, length - pos)))
        box = box_at(ahead[pos - ahead_at : pos - ahead_at + 16], pos, length)
        if box.size < 0:
            break  # a box to the end of a file of unknown length: nothing follows it
        if box.type in (b"ftyp", b"moov", b"moof") or (moov and (box.type in PASSED_ON or (index and box.type == b"sidx"))):
            if box.size > limit:
                raise LimitExceeded(f"{box.name()} is {box.size} bytes, above audio_only_max_header")
            if ahead_at <= box.start and box.end <= ahead_at + len(ahead):
                data = ahead[box.start - ahead_at : box.end - ahead_at]
            else:  # with the next box's header, when there is one
                more = 16 if length is None else min(16, length - box.end)
                ahead_at, ahead = box.start, (yield (box.start, box.size + more))
                data = ahead[: box.size]
            if box.type == b"ftyp":
                ftyp = data
            elif box.type == b"moov":
                moov, moov_at = data, box.start
            else:
                if moov is None:
                    raise MalformedInput(f"{box.name()} at byte {box.start} before the moov")
                after.append((box.type, box.start, data))
                if box.type == b"moof":
                    fragments += 1
                    if fragments > MAX_FRAGMENTS:
                        raise UnsupportedInput(f"more than {MAX_FRAGMENTS} fragments")
                    allowed = MAX_HOPS + 8 * MAX_FRAGMENTS  # a fragment's boxes: styp, sidx, emsg, moof, mdat...
        elif box.type == b"mdat":
            mdats.append((box.payload, box.end))
        pos = box.end
    else:
        raise UnsupportedInput(f"more than {allowed} top-level boxes")
    if moov is None:
        raise MalformedInput("no moov box")
    return TopLevel(ftyp or b"", moov, moov_at, mdats, after)
