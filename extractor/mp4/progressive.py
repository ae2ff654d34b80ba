"""The streaming MP4 filter: top-level boxes walked as they arrive, for every layout.

States:
  box     gather a box header (8, 16, or +16 for uuid)
  keep    gather the ftyp (sent again as it was)
  moov    gather the moov (bounded by max_header), plan, send ftyp + new moov (+ mdat header)
  moof    gather a moof (fragmented files), send the audio-only moof + its mdat header
  media   an mdat whose audio ranges are known: send them as zero-copy slices, skip the rest
  copy    a box passed on whole (styp, emsg, prft between fragments)
  passed  with a cut of a fragmented file: such a box held until the next moof says whether its
          fragment is in the cut (then it goes out before it; else it goes, and so do those after
          the last fragment of the cut)
  skip    any other box: step over it (free, wide, sidx, mfra...; an mdat before the moov is
          skipped too, but the spool keeps it)

Every byte that must be sent is an input range in one queue, filled by the moov's plan and by each
moof; a range must lie inside an mdat. Media data before the moov goes to the spool the caller
gave, and its audio is read back from there once the moov has said where it is. At the end every
range must have been sent, or the input was short and that is an error, not a short file.
"""

from __future__ import annotations

from ..buffer import Gather
from ..errors import LimitExceeded, MalformedInput, TruncatedInput, UnsupportedInput, human_size
from . import boxes
from .fragment_cut import cut_fragmented_plan
from .fragmented import PASSED_ON, rewrite_moof
from .fragmented_init import without_empty_aux
from .pending import Pending
from .plan import Plan, PlanRequest, make_plan

TO_THE_END = -1  # a size-0 box: it runs to the end of the input
REPLAY_PIECE = 1 << 20


class Mp4AudioFilter:
    format = "mp4"

    def __init__(self, max_header: int = 64 << 20, spool_factory=None, max_spool: int = 0, cdn_limits: bool = False,
                 seek=None, keep_video: bool = False, defer_plans: bool = False, replay_in_pieces: bool = False):
        self.max_header = max_header
        self.seek = seek  # SeekRange in milliseconds: only that part of the audio
        self.keep_video = keep_video  # the CDN's plain video seeking: video tracks stay
        self.cdn_limits = cdn_limits  # refuse what the CDN we emulate refuses (see _state_for)
        self.spool_factory = spool_factory  # start offset -> Spool, for media data before the moov
        self.max_spool = max_spool
        self.bytes_in = 0
        self.bytes_out = 0
        self.warnings: list[str] = []
        self.plan: Plan | None = None
        # defer_plans: a complete moov is not planned here; feed stops there, plan_wanted says what to
        # plan, and provide_plan(plan) goes on (the caller plans where it likes: a big moov takes seconds).
        self.defer_plans = defer_plans
        self.plan_wanted: PlanRequest | None = None
        self._waiting = b""  # the rest of the piece that completed the moov, fed once the plan is here
        self._moov_box: boxes.Box | None = None
        self._tail_candidate: tuple[int, int, int] | None = None  # (start, header, size) of tail_moov's moov
        self.fragments = 0  # moofs sent on
        self.dropped_fragments = 0  # moofs with no audio
        self.spooled = 0  # bytes written to the spool
        self._state = "box"
        self._gather = Gather()
        self._box: boxes.Box | None = None  # the top-level box being read
        self._remaining = 0  # payload bytes of it still to come (TO_THE_END: unknown)
        self._held = bytearray()  # ftyp, moov or moof being gathered
        self._ftyp = b""
        self._pending = Pending()  # input ranges still to send, in order
        self._early_mdats: list[tuple[int, int]] = []  # payload extents of mdats before the moov
        self._spool = None
        self.wants_tail: int | None = None  # where the data after the first early mdat starts (see tail_moov)
        self._tail_moov: int | None = None  # input offset of a moov that came out of band
        self._early_out: list = []  # output made between feeds (by provide_tail_plan)
        # replay_in_pieces: the spooled audio is not read back all at once when the moov arrives, but by
        # drain(), a bounded piece at a time (backlog says whether some is left; feed waits for it).
        self.replay_in_pieces = replay_in_pieces
        self._replay: tuple[int, int | None] | None = None  # (limit, moov end to check, or None)
        self._cut = None  # a fragmented file's seek: fragment_cut.FragmentCut
        self._passed: list[bytes] = []  # with a cut: boxes between fragments, held (state passed)

    # -- the sans-IO interface ------------------------------------------------------------------

    @property
    def in_metadata(self) -> bool:
        return self._state in ("keep", "moov", "moof", "passed")

    @property
    def metadata_start(self) -> int | None:
        """Input offset of the metadata box being held (None: none is)."""
        return self._box.start if self.in_metadata and self._box is not None else None

    @property
    def metadata_size(self) -> int | None:
        """Size of the metadata box being held (None: none is)."""
        return self._box.size if self.in_metadata and self._box is not None else None

    @property
    def backlog(self) -> bool:
        """Spooled audio waits to be read back by drain() (replay_in_pieces)."""
        return self._replay is not None

    def drain(self, most: int) -> list:
        """The next spooled audio, about `most` bytes of it (one spool read at least); when it is all
        out, also what the rest of the input held back meanwhile gives."""
        out, self._early_out = self._early_out, []  # the new moov (provide_tail_plan) goes first
        out += self._drain(most)
        self.bytes_out += sum(map(len, out))
        if self._replay is None and self._waiting:
            rest, self._waiting = self._waiting, b""
            out += self.feed(rest)
        return out

    def _drain(self, most: int) -> list:
        out: list = []
        if self._replay is None:
            return out
        limit, moov_end = self._replay
        pending, got = self._pending, 0
        while pending and pending.first()[0] < limit and got < most:
            got += self._replay_piece(limit, out)
        if not (pending and pending.first()[0] < limit):
            self._replay = None
            if moov_end is not None and pending and pending.first()[0] < moov_end:
                self._outside(pending.first()[0])
            self.close()
        return out

    def feed(self, data) -> list:
        if self.plan_wanted is not None:
            raise RuntimeError("feed() while a plan is wanted: provide_plan() first")
        if self._replay is not None:
            raise RuntimeError("feed() while spooled audio waits: drain() first")
        out, self._early_out = self._early_out, []
        view = memoryview(data)
        if self._spool is not None and self.plan is None:
            self._spool_write(view)
        pos, end = 0, len(view)
        while pos < end:
            if self.plan_wanted is not None:  # the moov is complete: the rest waits for its plan
                self._waiting = bytes(view[pos:])
                end = pos
                break
            if self._state == "box":
                pos = self._read_header(view, pos, out)
                continue
            n = end - pos if self._remaining == TO_THE_END else min(self._remaining, end - pos)
            if self._state == "media":
                self._send(view, pos, n, out)
            elif self._state == "copy":
                out.append(view[pos : pos + n])
            elif self._state in ("keep", "moov", "moof", "passed"):
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
        try:
            return self._finish()
        finally:
            self.close()

    def close(self) -> None:
        """Release the spool (also when the response is abandoned half way)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _finish(self) -> list:
        out, self._early_out = self._early_out, []
        fed: list = []  # counted by feed itself
        while self._replay is not None:
            out += self._drain(1 << 62)
            if self._replay is None and self._waiting:  # what the piece held after the moov, now
                rest, self._waiting = self._waiting, b""
                self.bytes_out += sum(map(len, out))
                out, fed = [], out + self.feed(rest)
        if self._remaining == TO_THE_END:
            self._box_done(out)
        if self.plan is None:
            if self._state == "moov":
                raise TruncatedInput(
                    f"input ends inside the moov ({len(self._held)} of {self._box.size - self._box.header} bytes)"
                )
            spooled = f" after {human_size(self.spooled)} of media data" if self.spooled else ""
            raise MalformedInput(f"the input has no moov box{spooled}: not an MP4 with metadata")
        if self._pending:
            start = self._pending.first()[0]
            missing = self._pending.missing(self.bytes_in)
            raise TruncatedInput(
                f"input ends at byte {self.bytes_in} before the audio at byte {start} ({missing} bytes of audio missing)"
            )
        if self._cut is not None:
            self._passed = []  # after the last fragment of the cut
            self._cut.check_end()
        if self._state != "box" or len(self._gather):
            self.warnings.append(f"input ends inside a '{self._box.name() if self._box else '?'}' box after all the audio")
        self.bytes_out += sum(map(len, out))
        return fed + out

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
        self._box = box
        self._remaining = TO_THE_END if box.size == -1 else box.size - box.header
        self._state = self._state_for(box, view)
        if self._state == "copy":
            out.append(bytes(buf[at : at + box.header]))
        if self._remaining == 0:
            self._box_done(out)
        return pos

    def _state_for(self, box: boxes.Box, view: memoryview) -> str:
        kind = box.type
        if kind in (b"moov", b"moof"):
            return self._bounded(box)
        if kind == b"ftyp" and self.plan is None and not self._ftyp:
            if box.size > 4096 or box.size == -1:
                raise MalformedInput(f"ftyp is {box.size} bytes, not a file type box")
            return "keep"
        if kind == b"mdat" and self.cdn_limits:
            if self.plan is None:
                raise UnsupportedInput("the moov comes after the media data: the CDN extracts audio only from MP4s "
                                       "with their metadata in the file header (audio_only_compat=cdn)")
            if box.header != 8:
                raise UnsupportedInput(f"the mdat at byte {box.start} has a {box.header}-byte header: the CDN supports "
                                       f"only 8-byte box headers (audio_only_compat=cdn)")
        if kind == b"mdat" and self.plan is None:
            self._early_mdats.append((box.payload, TO_THE_END if box.size == -1 else box.end))
            if self._spool is None:
                self._start_spool(box, view)
                self.wants_tail = None if box.size == -1 else box.end
            return "skip"
        if kind == b"mdat":
            if self._pending and self._pending.first()[0] < box.payload:
                self._outside(self._pending.first()[0])
            return "media"
        if kind in PASSED_ON and self.plan is not None and self.plan.fragmented and box.size != -1:
            if self._cut is None:
                return "copy"
            if self._cut.past_end:
                return "skip"  # no fragment of the cut follows: they would be held for nothing
            held = sum(map(len, self._passed))
            if held + box.size > self.max_header:  # held until the next moof: bounded like one
                raise LimitExceeded(f"the boxes between two fragments held for a cut, {human_size(held + box.size)} "
                                    f"at byte {box.start}, are above the {human_size(self.max_header)} limit "
                                    f"(audio_only_max_header)")
            return self._bounded(box, "passed")
        return "skip"

    def _bounded(self, box: boxes.Box, state: str | None = None) -> str:
        """moov and moof (and boxes held for a cut) are held whole, so their size is checked against the
        limit first."""
        name = state or box.name()
        if box.type == b"moov" and box.start == self._tail_moov:
            return "skip"  # already read from the tail
        if box.type == b"moov" and self.plan is not None:
            raise MalformedInput(f"a second moov at byte {box.start}")
        if box.type == b"moof" and (self.plan is None or not self.plan.fragmented):
            raise MalformedInput(f"moof at byte {box.start} without a moov that announces fragments (mvex)")
        if box.size == -1 or box.size > self.max_header:
            size = "unbounded (size 0)" if box.size == -1 else human_size(box.size)
            raise LimitExceeded(f"{name} is {size}, above the {human_size(self.max_header)} limit (audio_only_max_header)")
        return name

    def _box_done(self, out: list) -> None:
        box = self._box
        end = self.bytes_in if self._remaining == TO_THE_END else box.end
        if self._state == "keep":
            self._ftyp = boxes.make_box(box.type, bytes(self._held))
        elif self._state == "moov":
            moov = self._whole_box()
            fragmented = _has_mvex(moov)
            if fragmented:
                moov = without_empty_aux(moov)
            # A fragmented file's cut is made here (fragment_cut), its moov planned whole.
            seek = None if fragmented and not self.keep_video else self.seek
            request = PlanRequest(self._ftyp, moov, seek, self.keep_video, box.start)
            self._moov_box = box
            if self.defer_plans:
                self.plan_wanted = request
            else:
                self._use_plan(make_plan(request), out)
        elif self._state == "moof":
            self._fragment(box, out)
        elif self._state == "passed":
            self._passed.append(self._whole_box())
        elif self._state == "media":
            if self._pending and self._pending.first()[0] < end:
                s, e = self._pending.first()
                raise MalformedInput(f"audio at bytes {s}-{e} runs past the end of the mdat at byte {end}")
        elif self.plan is not None and self._pending and self._pending.first()[0] < end:
            self._outside(self._pending.first()[0])
        self._held = bytearray()
        self._state = "box"
        self._remaining = 0

    def _use_plan(self, plan: Plan, out: list) -> None:
        if plan.fragmented and self.seek is not None and not self.keep_video:
            plan, self._cut = cut_fragmented_plan(plan, self.seek)
        self.plan = plan
        self.warnings += plan.warnings
        if plan.head:  # (a cut's head comes with its first fragment)
            out.append(plan.head)
        self._pending.add(plan.ranges)
        self._replay_early(self._moov_box, out)

    def pop_plan_request(self) -> PlanRequest | None:
        """plan_wanted, handed over: the filter no longer holds the moov while it is planned elsewhere
        (it still waits for provide_plan)."""
        request = self.plan_wanted
        if request is not None and request.moov:
            self.plan_wanted = request._replace(moov=b"")
            return request
        return None

    def provide_plan(self, plan: Plan) -> list:
        """The plan of plan_wanted (make_plan's result): the output it starts, and that of the rest of
        the piece that completed the moov."""
        if self.plan_wanted is None:
            raise RuntimeError("provide_plan() without a plan wanted")
        self.plan_wanted = None
        out = []
        self._use_plan(plan, out)
        self.bytes_out += sum(map(len, out))
        if self._replay is not None:
            return out  # the rest of the piece follows the spooled audio (drain)
        rest, self._waiting = self._waiting, b""
        return out + (self.feed(rest) if rest else [])

    def _whole_box(self) -> bytes:
        """The held moov or moof with its header, so box offsets inside it are plain indexes."""
        box = self._box
        if box.header == 8:
            header = box.size.to_bytes(4, "big") + box.type
        else:
            header = (1).to_bytes(4, "big") + box.type + box.size.to_bytes(8, "big")
        whole = b"".join((header, self._held))  # one copy (a moov may be 64 MiB), and the held one goes
        self._held = bytearray()
        return whole

    def _fragment(self, box: boxes.Box, out: list) -> None:
        result = rewrite_moof(self._whole_box(), box.start, self.plan.audio_ids, self.plan.trex, self._cut)
        passed, self._passed = self._passed, []
        if result is None:
            self.dropped_fragments += 1
            return
        if self._cut is not None and not self.fragments:
            out.append(self._cut.head)  # known now: where the first fragment of the cut begins
        out += passed
        head, ranges = result
        out.append(head)
        self._pending.add(ranges)
        self.fragments += 1

    # -- media data before the moov -------------------------------------------------------------

    def _start_spool(self, box: boxes.Box, view: memoryview) -> None:
        if self.spool_factory is None or not self.max_spool:
            raise UnsupportedInput(
                f"the media data (mdat at byte {box.start}) comes before the moov and no spool is configured"
            )
        # The spool takes whole pieces from this one on; the mdat's payload starts inside it or later.
        self._spool = self.spool_factory(self.bytes_in)
        self._spool_write(view)

    def _spool_write(self, view: memoryview) -> None:
        self.spooled += len(view)
        if self.spooled > self.max_spool:
            raise LimitExceeded(
                f"the media data before the moov passed the {human_size(self.max_spool)} limit (audio_only_max_spool)"
            )
        self._spool.write(view)

    def tail_moov(self, offset: int, data: bytes) -> PlanRequest | None:
        """The input's bytes from `offset` on, fetched out of band (a Range request) while the media data
        before them still streams: the plan request of the moov they hold (None: they hold none, or it
        is too late to use one). Plan it, then hand both to provide_tail_plan."""
        if self.plan is not None or self._spool is None or self._state == "moov" or self.plan_wanted is not None:
            return None  # too late: the moov is here, or already arriving in band
        pos = 0
        while pos + 8 <= len(data):
            box = boxes.parse_header(data, pos, None)
            if box.size == -1 or box.end > len(data):
                return None
            if box.type == b"moov":
                if box.size > self.max_header:
                    return None
                self._tail_candidate = (offset + box.start, box.header, box.size)
                return PlanRequest(self._ftyp, bytes(data[box.start : box.end]), self.seek, self.keep_video,
                                   offset + box.start)
            pos = box.end
        return None

    def provide_tail_plan(self, request: PlanRequest, plan: Plan) -> bool:
        """Use the plan of tail_moov's request, if it is still of use: then audio starts now rather than
        when the whole file has passed (what is spooled is sent with the next feed, the rest as it
        arrives, and spooling stops). Returns whether it was used."""
        if self.plan is not None or self._spool is None or self._state == "moov" or self.plan_wanted is not None:
            return False
        start, header, size = self._tail_candidate
        self.plan = plan
        self.warnings += plan.warnings
        self._tail_moov = start
        out = [plan.head]
        self._pending.add(plan.ranges)
        self._replay_early(boxes.Box(b"moov", start, header, size), out, until=self.bytes_in)
        if self._state == "skip" and self._box is not None and self._box.type == b"mdat":
            self._state = "media"  # the rest of the mdat now passing is sent as it comes
        self._early_out = out
        return True

    def _replay_early(self, moov: boxes.Box, out: list, until: int | None = None) -> None:
        """Send the audio that arrived before the moov (or before `until`, where the input now is), read
        back from the spool a piece at a time; the bytes between ranges far apart are not read. With
        replay_in_pieces, only note what to send: drain() sends it."""
        limit = moov.start if until is None else min(until, moov.start)
        self._replay = (limit, moov.end if until is None else None)
        if not self.replay_in_pieces:
            out += self._drain(1 << 62)

    def _replay_piece(self, limit: int, out: list) -> int:
        """One spool read's audio appended to `out`; its size."""
        s, e = self._pending.first()
        mdat_end = next((b for a, b in self._early_mdats if a <= s and (b == TO_THE_END or e <= b)), None)
        if mdat_end is None:
            self._outside(s)
        # Never past the end of that mdat: a later range of the same read must be checked in its turn
        # (the bytes after an mdat may be a box that is not media at all).
        most = limit - s if mdat_end == TO_THE_END else min(limit, mdat_end) - s
        piece = self._spool.read_at(s, min(REPLAY_PIECE, most))
        audio: list = []
        self._pending.send(memoryview(piece), s, audio)
        joined = b"".join(audio)  # a copy of the audio only: the piece read (video too) goes
        out.append(joined)
        return len(joined)

    def _outside(self, offset: int) -> None:
        raise MalformedInput(f"audio chunk offset {offset} does not point into an mdat box")

    def _send(self, view: memoryview, pos: int, n: int, out: list) -> None:
        """Send the parts of the pending ranges that fall in view[pos:pos+n]."""
        self._pending.send(view[pos : pos + n], self.bytes_in + pos, out)


def _has_mvex(moov: bytes) -> bool:
    """Whether a moov (the whole box) announces fragments."""
    box = boxes.Box(b"moov", 0, 16 if int.from_bytes(moov[:4], "big") == 1 else 8, len(moov))
    return boxes.find(moov, box, b"mvex") is not None
