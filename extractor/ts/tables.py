"""The PAT and PMTs a TS filter has read, and what each PID is to the audio-only output.

Muxers repeat the same sections many times a second (ffmpeg: every 100 ms): each distinct section is
checked (CRC), read and rewritten once, then recognised by its bytes.
"""

from __future__ import annotations

from ..errors import UnsupportedInput
from .packets import NULL_PID, PAT_PID
from .psi import PAT_TABLE, PMT_TABLE, Pmt, SectionReader, parse_pat, parse_pmt, rewrite_pmt, section_ok
from .streams import is_hdmv, kind

# What a PID is to the output.
PSI, AUDIO, DATA, PRIVATE, PCR_ONLY = "psi", "audio", "data", "private", "pcr"
KEPT_KINDS = {"audio": AUDIO, "data": DATA, "private": PRIVATE}
MAX_KNOWN = 64  # distinct sections remembered (a PAT, a PMT per program, a version or two of each)
# PIDs given a role, and streams one PMT may list. Each PID that matters costs the filter a search per
# piece; broadcast muxes carry a few dozen at most, so more is refused rather than slowly followed.
MAX_ROLES = 64
MAX_STREAMS = 128  # a Blu-ray PMT may list 32 audio, 32 subtitle and 32 menu streams besides its video
MAX_LAYOUTS = 16  # roles remembered per distinct set of tables: a PMT flipping between versions is a lookup


class Tables:
    def __init__(self, warn):
        self.warn = warn  # called with a message for a section that fails its CRC
        self.programs: dict[int, int] = {}  # program_number -> PMT PID (the PAT)
        self.pmts: dict[tuple[int, int], Pmt] = {}  # (PMT PID, program_number) -> its PMT
        self.roles: dict[int, str] = {PAT_PID: PSI}
        self.pcr_pids: set[int] = set()
        self._raw_pmts: dict[tuple[int, int], bytes] = {}
        self._known: dict[bytes, object] = {}
        self._readers: dict[int, SectionReader] = {}
        self._layouts: dict[tuple, tuple] = {}  # the tables' sections -> (roles, PCR PIDs)
        self.layout: tuple = ()  # the key of the current roles: equal tables give an equal key

    def push(self, pid: int, payload: bytes, unit_start: bool) -> tuple[bool, list[bytes]]:
        """A packet payload of a PSI PID: (whether the roles changed, the sections it completes as they
        go out: a PAT section as it came, a PMT section rewritten; those failing their CRC or not yet in force
        left out)."""
        sections = self._readers.setdefault(pid, SectionReader()).push(payload, unit_start)
        changed, rewritten = False, []
        for section in sections:
            if len(section) > 5 and not section[5] & 1:
                continue  # current_next_indicator 0: a table not yet in force (13818-1 §2.4.4.5, §2.4.4.9)
            if pid == PAT_PID:
                programs = self._parsed(section, pid, PAT_TABLE)
                if programs is not None:
                    rewritten.append(section)
                if programs is not None and programs != self.programs:
                    self.programs = programs
                    for key in [k for k in self.pmts if self.programs.get(k[1]) != k[0]]:
                        del self.pmts[key], self._raw_pmts[key]
                    changed = True
                continue
            if section[0] != PMT_TABLE or self.programs.get(int.from_bytes(section[3:5], "big")) != pid:
                continue  # another table, or a PMT of a program the PAT does not list on this PID
            parsed = self._parsed(section, pid, PMT_TABLE)
            if parsed is None:
                continue
            pmt, out = parsed
            rewritten.append(out)
            key = (pid, pmt.program)
            if self._raw_pmts.get(key) != section:
                self._raw_pmts[key], self.pmts[key] = section, pmt
                changed = True
        if changed:
            self._assign_roles()
        return changed, rewritten

    def idle(self, pid: int) -> bool:
        """No section of this PID is half read."""
        reader = self._readers.get(pid)
        return reader is None or not reader.active

    def _parsed(self, section: bytes, pid: int, table: int):
        """A PAT section's programs, or a PMT section's (Pmt, rewritten section); None when the section
        is another table or fails its CRC."""
        if section[0] != table:
            return None
        done = self._known.get(section)
        if done is not None:
            return done
        if not section_ok(section):
            self.warn(f"section with table_id 0x{section[0]:02x} on PID {pid} fails its CRC: ignored")
            return None
        if table == PAT_TABLE:
            done = parse_pat(section)
        else:
            pmt = parse_pmt(section)
            if len(pmt.streams) > MAX_STREAMS:
                raise UnsupportedInput(f"the PMT of program {pmt.program} on PID {pid} lists {len(pmt.streams)} "
                                       f"streams: more than {MAX_STREAMS} are not followed")
            hdmv = is_hdmv(pmt)
            done = (pmt, rewrite_pmt(section, {s.pid for s in pmt.streams if kind(s, hdmv) in KEPT_KINDS}))
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()
        self._known[section] = done
        return done

    def _assign_roles(self) -> None:
        self.layout = (tuple(self.programs.items()), tuple(self._raw_pmts.items()))
        known = self._layouts.get(self.layout)
        if known is None:
            if len(self._layouts) >= MAX_LAYOUTS:
                self._layouts.clear()
            known = self._layouts[self.layout] = self._roles()
        self.roles, self.pcr_pids = known
        self._readers = {p: r for p, r in self._readers.items() if self.roles.get(p) is PSI}

    def _roles(self) -> tuple[dict[int, str], set[int]]:
        """What each PID is, and the PCR PIDs, by the PAT and PMTs held."""
        roles = {PAT_PID: PSI}
        roles.update((pmt_pid, PSI) for pmt_pid in self.programs.values())
        for pmt in self.pmts.values():
            hdmv = is_hdmv(pmt)
            for stream in pmt.streams:
                role = KEPT_KINDS.get(kind(stream, hdmv))
                if role and stream.pid not in roles:
                    roles[stream.pid] = role
        pcr_pids = {pmt.pcr_pid for pmt in self.pmts.values() if pmt.pcr_pid != NULL_PID}
        for pid in pcr_pids - roles.keys():
            roles[pid] = PCR_ONLY
        if len(roles) > MAX_ROLES:
            raise UnsupportedInput(f"the PAT and PMTs give {len(roles)} PIDs to follow ({len(self.programs)} "
                                   f"programs): more than {MAX_ROLES} are not followed")
        return roles, pcr_pids
