"""The streaming MPEG-TS filter: PAT kept, PMTs rewritten, audio and timed metadata kept, video dropped.

Pieces of any size go in; whole packets come out once the sync bytes of the two packets after them
are in (sync.py: what a lost sync costs). Per piece, the packets' header bytes are lifted out in bulk
(packets.header_codes) and a bytes.find per PID that matters finds its packets, so a dropped video
packet costs no Python step. Memory: the packets not yet judged (three at most), the sections being
assembled (at most 1 KiB each) and the tables (64 PIDs followed at most); while seeking, one PES per
audio PID (seeking.MAX_HELD at most).

The PAT, PMTs and PCR that go out: made.py.

Seeking (start/end in ms, by PTS relative to the first audio PTS): seeking.py.
"""

from __future__ import annotations

from ..errors import MalformedInput, NoAudio, SeekPastEnd, TruncatedInput
from ..seek import SeekRange
from . import packets as tsp
from .frames import READERS
from .made import MadePackets
from .repeats import PsiRepeats
from .seeking import Seeking
from .sync import LOOKAHEAD, MAX_RESYNC, RESYNC_PACKETS, PacketSync  # noqa: F401 (MAX_RESYNC: the tests')
from .streams import codec_name, describe, is_hdmv
from .tables import AUDIO, DATA, MAX_LAYOUTS, PCR_ONLY, PRIVATE, PSI, Tables

AUDIO_STREAM_IDS = range(0xC0, 0xE0)  # PES stream_id of MPEG audio (13818-1 table 2-22)
CLOCKED = {AUDIO: "audio+clock", DATA: "data+clock", PRIVATE: "private+clock"}  # see _rebuild
MAX_WARNINGS = 20
MAX_LISTED = 8  # streams named in the NoAudio message
# After the tables changed mid-piece, the packets are taken in windows that double from 1: up to this
# many are looked up one by one (a dict lookup each), larger windows searched per PID. A PMT that
# changes every few packets must not cost a search of the whole rest of the piece per PID each time.
RESTART_WINDOW = 16


class TsAudioFilter(PacketSync, MadePackets, Seeking):
    format = "ts"

    def __init__(self, packet_size: int = tsp.TS_SIZE, seek: SeekRange | None = None, timing: bool = False):
        self.size = packet_size
        self.prefix = packet_size - tsp.TS_SIZE  # M2TS: the 4-byte arrival timestamp, kept
        self.seek = seek if seek and seek.by_time else None
        self.timing = timing or self.seek is not None  # read the PTS of each kept PES
        self.bytes_in = self.bytes_out = 0
        self.packets = self.audio_packets = self.kept_packets = 0
        self.warnings: list[str] = []
        self.tables = Tables(self._warn)
        self.repeats = PsiRepeats()  # which PAT/PMT copies go out (repeats.py), timed by _clock_pid's PCR
        self._clock_pid: int | None = None
        self._waiting_psi: dict[tuple[int, bytes], bytes] = {}  # seeking, before the start: the last sections
        self._last_psi: dict[int, tuple | None] = {}  # PSI PID -> its last payload and the sections it gave
        self.first_pts: dict[int, int] = {}  # timing: PID -> first and last PTS of its PES
        self.last_pts: dict[int, int] = {}
        self._continuity: dict[int, int] = {}  # PIDs whose packets we make: the last counter sent
        self._sent_counter: dict[int, int] = {}  # kept PIDs: the counter of the last input packet sent
        self._kept_pids: frozenset = frozenset()
        self._last_pcr: dict[int, int] = {}  # PID -> the last PCR sent, and the last seen
        self._seen_pcr: dict[int, int] = {}
        self._carry = bytearray()  # a packet cut by the piece's end, or the bytes searched for sync
        self._hunting = False
        self._lost_at = 0  # input offset where sync was lost
        self._hunt_from = 0  # input offset where the search for sync started (the damaged packet's)
        self._carry_at = 0  # input offset of _carry[0]
        self._origin: int | None = None  # seeking: the first audio PTS
        self._state: dict[int, str] = {}  # seeking: PID -> "wait", "on", "off"
        self._private: dict[int, bool] = {}  # private stream PID -> whether its current PES is audio
        self._held: dict = {}  # seeking: PID -> the PES held until whole (cut.HeldPes)
        self._frame_readers: dict = {}  # PID -> frames.READERS entry, for audio cut at frame boundaries
        self._ended = False
        self._plans: dict[tuple, tuple] = {}  # Tables.layout -> what _rebuild made of it
        self._rebuild()

    # -- the sans-IO interface (as FlvAudioFilter) ----------------------------------------------

    @property
    def programs(self) -> dict[int, int]:
        """program_number -> PMT PID, as the PAT says."""
        return self.tables.programs

    @property
    def pmts(self) -> dict:
        """(PMT PID, program_number) -> psi.Pmt, the last version of each."""
        return self.tables.pmts

    in_metadata = False
    metadata_start = None  # a TS holds nothing back but a section (1 KiB at most)
    metadata_size = None

    @property
    def done(self) -> bool:
        """Seeking: every audio stream is past the end; nothing more of the input can go out."""
        return self._ended

    def feed(self, data) -> list:
        out: list = []
        if not self._ended:
            self._consume(memoryview(data), self.bytes_in, out)
        self.bytes_in += len(data)
        for piece in out:
            self.bytes_out += len(piece)
        return out

    def finish(self) -> list:
        out: list = []
        size = self.size
        if not (self._ended or self._hunting) and len(self._carry) >= size:
            # The last packets: judged by the sync bytes there are (none after the input's end).
            whole = len(self._carry) // size
            good = self._judge(bytes(self._carry) + b"G" * (LOOKAHEAD * size), 0, whole, self._carry_at, out, True)
            if good == whole:
                del self._carry[: whole * size]
                self._carry_at += whole * size
        if self._held:
            self._flush_held(out)
        self.bytes_out += sum(len(piece) for piece in out)
        if self._ended:  # seeking: what came after the end was not looked at
            return out
        if self._hunting:
            raise MalformedInput(f"lost packet sync at byte {self._lost_at}: the input ended before "
                                 f"{RESYNC_PACKETS} packets in a row were found again")
        if self._carry:
            raise TruncatedInput(f"input ends inside a packet at byte {self._carry_at} "
                                 f"({len(self._carry)} of {self.size} bytes)")
        if not self.audio_packets:
            if self.seek and self._origin is not None:
                raise SeekPastEnd(f"seek start {self.seek.start / 1000:g} s is past the end of the audio")
            listed = [s for p in self.pmts.values() for s in p.streams]
            streams = ", ".join(describe(s) for s in listed[:MAX_LISTED]) or "no PMT found"
            if len(listed) > MAX_LISTED:
                streams += f" and {len(listed) - MAX_LISTED} more"
            raise NoAudio(f"the MPEG-TS has no audio packets ({self.packets} packets; streams: {streams}): "
                          f"nothing to extract")
        return out

    # -- packets --------------------------------------------------------------------------------

    def _block(self, buf, start: int, count: int, out: list) -> int:
        """Filter `count` packets from buf[start:]; return how many had their sync byte (the rest wait)."""
        size = self.size
        code = tsp.header_codes(buf, start, count, size)
        if isinstance(code, int):  # the index of the first packet without its sync byte
            count = code
            if not count:
                return 0
            code = tsp.header_codes(buf, start, count, size)
        self.packets += count
        first, window, run_start, run_end = 0, count, -1, -1
        sent: dict[int, int] = {}  # kept PID -> offset of its last packet sent from buf
        while first < count:
            last = min(count, first + window)
            restart, passed = None, self._passed
            search = self._step if last - first <= RESTART_WINDOW else self._find
            for i, pid, role in search(code, first * tsp.CODE, last * tsp.CODE):
                index = i >> 2  # CODE is 4
                at = start + index * size
                if role in passed:
                    if at != run_end:
                        if run_end > 0:
                            out.append(buf[run_start:run_end])
                        run_start = at
                    run_end = at + size
                    sent[pid] = at
                    self.kept_packets += 1
                    self.audio_packets += role is AUDIO
                    continue
                if run_end > 0:
                    out.append(buf[run_start:run_end])
                    run_start = run_end = -1
                if role is PSI:
                    if sent:
                        self._note_sent(buf, sent)  # before the tables may change
                    if self._on_psi(buf, at, pid, out):
                        restart = index + 1  # the tables changed: the packets after this follow the new ones
                        break
                elif role is PCR_ONLY:
                    self._on_pcr(buf, at, pid, out)
                elif role in self._clocked:  # a kept packet of the clock's PID with an adaptation field
                    self._read_clock(buf, at + self.prefix)
                    role = self._clocked[role]
                    if role in passed:
                        out.append(buf[at : at + size])
                        sent[pid] = at
                        self.kept_packets += 1
                        self.audio_packets += role is AUDIO
                    else:
                        self._on_es(buf, at, pid, role, out)
                else:
                    self._on_es(buf, at, pid, role, out)
                if self._ended:
                    self._note_sent(buf, sent)
                    return count
            first, window = (last, 2 * window) if restart is None else (restart, 1)
        if run_end > 0:
            out.append(buf[run_start:run_end])
        self._note_sent(buf, sent)
        return count

    def _note_sent(self, buf, sent: dict) -> None:
        """Remember the continuity counter of each kept PID's last packet sent: should the PID carry only
        the PCR later (a new PMT makes it video), its PCR-only packets continue that counter."""
        for pid, at in sent.items():
            self._sent_counter[pid] = buf[at + self.prefix + 3] & 0x0F
        sent.clear()

    def _find(self, code: bytes, pos: int, end: int) -> list:
        """(code offset, PID, role) of the packets in code[pos:end] to look at, in order: a bytes.find per
        wanted PID (a C search, and the codes are made so that a match is always a packet's)."""
        found = []
        for needle, pid, role in self._needles:
            i = code.find(needle, pos, end)
            while i != -1:
                found.append((i, pid, role))
                i = code.find(needle, i + tsp.CODE, end)
        found.sort()
        return found

    def _step(self, code: bytes, pos: int, end: int) -> list:
        """What _find gives, by a lookup of each packet's code: for a few packets, cheaper than a search per PID."""
        wanted = self._by_code
        return [(i, *hit) for i in range(pos, end, tsp.CODE) if (hit := wanted.get(code[i : i + tsp.CODE]))]

    def _warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def _on_es(self, buf, at: int, pid: int, role: str, out: list) -> None:
        """A kept stream's packet when timing or seeking (the PTS of each PES start read), or a private
        stream's (kept while its PES are audio)."""
        sync = at + self.prefix
        unit_start = buf[sync + 1] & 0x40
        if role is PRIVATE:
            if unit_start:
                start = sync + tsp.payload_start(buf, sync)
                pes = bytes(buf[start : min(start + 4, sync + tsp.TS_SIZE)])
                self._private[pid] = pes[:3] == b"\x00\x00\x01" and len(pes) == 4 and pes[3] in AUDIO_STREAM_IDS
            if not self._private.get(pid):
                return
            role = AUDIO
        pts = tsp.pes_pts(buf, sync) if unit_start else None
        if pts is not None:
            self.first_pts.setdefault(pid, pts)
            self.last_pts[pid] = pts
        if self.seek and not self._seek_packet(buf, at, pid, role, pts, unit_start, out):
            return
        out.append(buf[at : at + self.size])
        self._sent_counter[pid] = buf[sync + 3] & 0x0F
        self.kept_packets += 1
        self.audio_packets += role is AUDIO

    def _rebuild(self) -> None:
        """What finds the packets of each PID that matters, from the tables."""
        self._last_psi = {}  # what a payload means may change with the tables (a PMT the PAT let go)
        plan = self._plans.get(self.tables.layout)
        if plan is None:
            if len(self._plans) >= MAX_LAYOUTS:
                self._plans.clear()
            self._plan()
            roles = self.tables.roles
            plan = self._plans[self.tables.layout] = (
                self._passed, self._frame_readers, self._needles, self._by_code, self._clock_pid, self._clocked,
                frozenset(p for p, r in roles.items() if r in (AUDIO, DATA, PRIVATE)),
                frozenset(p for p, r in roles.items() if r is PCR_ONLY))
        kept_before = self._kept_pids
        (self._passed, self._frame_readers, self._needles, self._by_code, self._clock_pid, self._clocked,
         self._kept_pids, pcr_only) = plan
        # A PID kept until now that carries only the PCR from here: its packets without payload carry the
        # counter of the last packet sent on it (13818-1 §2.4.3.3), not the dropped packets' counters.
        for pid in pcr_only & kept_before:
            if pid in self._sent_counter:
                self._continuity[pid] = self._sent_counter[pid]

    def _plan(self) -> None:
        """_rebuild's work for tables not seen before."""
        # With timing or seeking, each kept packet is looked at; else they pass in runs untouched.
        self._passed = () if self.timing else (AUDIO, DATA)
        roles = sorted(self.tables.roles.items())
        self._frame_readers = {s.pid: READERS[name] for pmt in self.tables.pmts.values() for s in pmt.streams
                               if self.tables.roles.get(s.pid) is AUDIO
                               for name in [codec_name(s, is_hdmv(pmt))] if name in READERS}
        self._needles = [(tsp.needle(pid, role is PCR_ONLY), pid, role) for pid, role in roles]
        # The stream clock (repeats.py) is the PCR of one PID. When a kept stream carries it, that PID's
        # packets with an adaptation field are found apart (as clocked roles) and their PCR read.
        pcr_pids = self.tables.pcr_pids
        self._clock_pid = min(pcr_pids) if pcr_pids else None
        role = self.tables.roles.get(self._clock_pid)
        self._clocked = {}
        if role in (AUDIO, DATA, PRIVATE):
            clocked = CLOCKED[role]
            self._clocked[clocked] = role
            self._needles = [(n + b"\x00", p, r) if p == self._clock_pid else (n, p, r) for n, p, r in self._needles]
            self._needles.append((tsp.needle(self._clock_pid, True), self._clock_pid, clocked))
        # A 3-byte needle matches both codes of its PID (with and without an adaptation field).
        self._by_code = {}
        for needle, pid, role in self._needles:
            for code in [needle] if len(needle) == tsp.CODE else [needle + b"\x00", needle + b"\x20"]:
                self._by_code[code] = (pid, role)
