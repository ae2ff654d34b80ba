"""The streaming filter of an fMP4 media segment (HLS `.m4s`, DASH, CMAF `.cmfa`/`.cmfv`): `styp`,
`sidx`, `moof` + `mdat` pairs and no moov of its own, so the audio track IDs to keep are told (read
from the init segment: sidx.audio_track_ids; the URL contract's `<name>_track`).

A segment that holds only the kept tracks comes out byte for byte as it came in (so the byte ranges
and the sidx that name it still hold: an HLS byte range, a DASH index): each moof whose trafs are all
kept goes out as it is with the mdat after it, when that mdat holds exactly its samples. From the
first moof that is not so on, each moof is rewritten by fragmented.rewrite_moof (only the kept
tracks' trafs, default-base-is-moof) and its audio sent as the mdat passes; styp/emsg/prft pass on,
other boxes are left out. A sidx is kept: as it was when every fragment it covers went out
unchanged, else rewritten for the audio (sidx.py); its sizes are known only once the fragments it
covers are read, so the output from the sidx on is held until then (a segment's audio, bounded by
max_held) and sent after it.
"""

from __future__ import annotations

from ..buffer import Gather
from ..errors import LimitExceeded, NoAudio, TruncatedInput, UnsupportedInput, human_size
from . import boxes
from .fragmented import PASSED_ON, rewrite_moof
from .pending import Pending
from .progressive import TO_THE_END
from .sidx import InitInfo, Made, audio_timing, indexes_to_keep, parse_sidx, rewrite_sidx


class SegmentFilter:
    format = "mp4-segment"

    def __init__(self, track_ids, info: InitInfo | None = None, max_header: int = 64 << 20,
                 max_held: int = 64 << 20):
        self.track_ids = set(track_ids)
        if not self.track_ids:
            raise ValueError("a segment filter needs the track IDs to keep")
        self.info = info or InitInfo(tuple(self.track_ids))
        self.max_header = max_header
        self.max_held = max_held
        self.indexed = min(self.track_ids)  # the track a kept sidx indexes
        self.bytes_in = self.bytes_out = 0
        self.fragments = self.dropped_fragments = 0
        self.warnings: list[str] = []
        self._state = "box"
        self._gather = Gather()
        self._box: boxes.Box | None = None
        self._remaining = 0
        self._held_box = bytearray()  # a moof or sidx being gathered
        self._pending = Pending()
        self._index: list = []  # sidx boxes found, while their fragments are read
        self._index_end = 0  # where the last of their subsegments ends in the input
        self._made: list[Made] = []
        self._held: list | None = None  # output held from the first sidx on (a Sidx marks where each goes)
        self._held_size = 0
        self._seen_tracks: set[int] = set()
        self._identical = True  # every byte so far went out as it came
        self._candidate: tuple | None = None  # a moof of kept tracks only, waiting to see its mdat
        self._copy_mdat = False  # the next mdat goes out whole (its moof went out unchanged)
        self._raw_index: dict[int, bytes] = {}  # id of a held Sidx -> its bytes as they came

    @property
    def metadata_start(self) -> int | None:
        """Input offset of the moof or sidx being gathered (held whole before it can go out)."""
        return self._box.start if self._state in ("moof", "sidx") else None

    @property
    def metadata_size(self) -> int | None:
        return self._box.size if self._state in ("moof", "sidx") else None

    def feed(self, data) -> list:
        out: list = []
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._state == "box":
                pos = self._read_header(view, pos, out)
                continue
            n = end - pos if self._remaining == TO_THE_END else min(self._remaining, end - pos)
            if self._state == "media":
                self._emit(out, self._slices(view, pos, n))
            elif self._state == "copy":
                self._emit(out, [view[pos : pos + n]])
            elif self._state in ("moof", "sidx"):
                self._held_box += view[pos : pos + n]
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
        if self._state != "box" or len(self._gather):
            raise TruncatedInput(f"the segment ends inside a '{self._box.name() if self._box else '?'}' box at byte "
                                 f"{self.bytes_in}")
        if self._candidate is not None:
            raise TruncatedInput(f"the segment ends at byte {self.bytes_in}, before the mdat of the moof at byte "
                                 f"{self._candidate[1]}")
        if self._pending:
            raise TruncatedInput(f"the segment ends at byte {self.bytes_in} before the audio at byte "
                                 f"{self._pending.first()[0]}")
        if self._held is not None:
            if self.bytes_in < self._index_end:
                raise TruncatedInput(f"the segment ends at byte {self.bytes_in}, before the end of what its sidx "
                                     f"indexes (byte {self._index_end})")
            self._release(out)
        if not self.fragments:
            tracks = ", ".join(map(str, sorted(self._seen_tracks))) or "none"
            raise NoAudio(f"no fragment of the segment carries track {', '.join(map(str, sorted(self.track_ids)))} "
                          f"(its tracks: {tracks}): nothing to send")
        self.bytes_out += sum(map(len, out))
        return out

    # -- states ---------------------------------------------------------------------------------

    def _read_header(self, view: memoryview, pos: int, out: list) -> int:
        first = self._gather.peek(view, pos, 8)
        if first is None:
            return self._gather.take(view, pos, 8)[2]
        start = self.bytes_in + pos - len(self._gather)
        buf, at, pos = self._gather.take(view, pos, boxes.header_length(first))
        if buf is None:
            return pos
        box = boxes.parse_header(buf, at, None)
        box.start = start
        if self._candidate is not None:
            self._settle(box, out)
        if self._held is not None and start >= self._index_end:
            self._release(out)  # every subsegment the sidx covers is read
        self._box = box
        self._remaining = TO_THE_END if box.size == -1 else box.size - box.header
        self._state = self._state_for(box)
        if self._state in ("moof", "sidx"):
            self._held_box = bytearray(buf[at : at + box.header])
        elif self._state == "copy":
            self._emit(out, [bytes(buf[at : at + box.header])])
            if self._held is not None:
                self._made.append(Made(start, box.size))
        if self._remaining == 0:
            self._box_done(out)
        return pos

    def _state_for(self, box: boxes.Box) -> str:
        kind = box.type
        if kind in (b"moov", b"ftyp"):
            raise UnsupportedInput(f"a {box.name()} at byte {box.start}: not a media segment (the MP4 filter reads "
                                   f"files with a moov)")
        if kind in (b"moof", b"sidx"):
            if box.size == -1 or box.size > self.max_header:
                raise LimitExceeded(f"{box.name()} at byte {box.start} is {human_size(box.size)}, above the "
                                    f"{human_size(self.max_header)} limit (audio_only_max_header)")
            return kind.decode()
        if kind == b"mdat":
            copy, self._copy_mdat = self._copy_mdat, False
            return "copy" if copy else "media"
        if kind in PASSED_ON and box.size != -1 or self._identical:
            return "copy"
        self._identical = False  # a box left out: what follows moves
        return "skip"

    def _box_done(self, out: list) -> None:
        if self._state == "moof":
            self._fragment(bytes(self._held_box), out)
        elif self._state == "sidx":
            raw = bytes(self._held_box)
            sidx = parse_sidx(raw, self._box.start)
            self._index.append(sidx)
            self._raw_index[id(sidx)] = raw
            self._index_end = max(self._index_end, sidx.spans()[-1][1] if sidx.references else sidx.end)
            if self._held is None:
                self._held, self._held_size = [], 0
            self._held.append(sidx)
        self._held_box = bytearray()
        self._state = "box"

    def _fragment(self, moof: bytes, out: list) -> None:
        start = self._box.start
        tracks = _track_ids(moof)
        self._seen_tracks |= tracks
        result = rewrite_moof(moof, start, self.track_ids, self.info.default_sizes)
        if result is None:
            self.dropped_fragments += 1
            self._identical = False
            return
        self.fragments += 1
        timing = None
        if self._held is not None:
            timing = audio_timing(moof, self.indexed, self.info.default_durations.get(self.indexed)) or (None, 0)
        if self._identical and tracks <= self.track_ids:
            self._candidate = (moof, start, result, timing)  # unchanged, if its mdat holds just its samples
        else:
            self._rewritten(start, result, timing, out)

    def _settle(self, box: boxes.Box, out: list) -> None:
        """The waiting moof goes out as it came when `box` is the mdat right after it and holds exactly
        its samples (then the mdat goes out whole); else rewritten, as every moof from now on."""
        moof, start, result, timing = self._candidate
        self._candidate = None
        ranges = result[1]
        if (box.type == b"mdat" and box.size != -1 and len(ranges) == 1
                and (ranges.starts[0], ranges.ends[0]) == (box.payload, box.end)):
            self._emit(out, [moof])
            self._copy_mdat = True
            if self._held is not None:
                self._made.append(Made(start, len(moof), timing))
        else:
            self._rewritten(start, result, timing, out)

    def _rewritten(self, start: int, result, timing, out: list) -> None:
        self._identical = False
        head, ranges = result
        self._emit(out, [head])
        self._pending.add(ranges)
        if self._held is not None:
            self._made.append(Made(start, len(head) + ranges.total, timing))

    def _slices(self, view: memoryview, pos: int, n: int) -> list:
        pieces: list = []
        self._pending.send(view[pos : pos + n], self.bytes_in + pos, pieces)
        return pieces

    def _emit(self, out: list, pieces: list) -> None:
        if self._held is None:
            out += pieces
            return
        for piece in pieces:
            self._held.append(bytes(piece))  # the input piece it is a view of will not stay
            self._held_size += len(piece)
        if self._held_size > self.max_held:
            raise LimitExceeded(f"the segment's sidx covers more than {human_size(self.max_held)} of audio, all "
                                f"held until its sizes are known")

    def _release(self, out: list) -> None:
        """The held output, each sidx in its place: as it came when every byte it indexes went out as it
        came, else the kept ones rewritten and the others left out."""
        kept = {id(s) for s in indexes_to_keep(self._index, self.track_ids)}
        for piece in self._held:
            if isinstance(piece, bytes):
                out.append(piece)
            elif self._identical:
                out.append(self._raw_index[id(piece)])
            elif id(piece) in kept:
                new, why = rewrite_sidx(piece, self._made, self.indexed, self.info.timescales.get(self.indexed))
                if why:
                    self.warnings.append(why)
                elif new:
                    out.append(new)
        self._held, self._held_size, self._index, self._made, self._raw_index = None, 0, [], [], {}


def _track_ids(moof: bytes) -> set[int]:
    header = 16 if int.from_bytes(moof[:4], "big") == 1 else 8
    found = set()
    for traf in (b for b in boxes.children(moof, header, len(moof)) if b.type == b"traf"):
        tfhd = boxes.find(moof, traf, b"tfhd")
        if tfhd is not None and tfhd.size - tfhd.header >= 8:
            found.add(int.from_bytes(moof[tfhd.payload + 4 : tfhd.payload + 8], "big"))
    return found
