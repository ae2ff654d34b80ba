"""Which copies of the PAT and PMTs go out: muxers repeat them many times a second (ffmpeg every
100 ms), and on an audio-only stream of 128 kbit/s those copies alone would add a fifth to its size.

Kept: the first copy of each section in a response (an HLS segment is a response of its own, so each
starts with its PAT and PMT), every copy whose content changed (a new version), and otherwise one per
PSI_SPACING of stream time. Players that join a live stream or seek by byte need a PAT and PMT near
every point; 13818-1 sets no longest gap, DVB does (ETSI TR 101 290, PAT_error and PMT_error: at most
0.5 s between copies). The stream clock is the last PCR read, not a wall clock (the output may be read
faster or slower than real time); it lags the true time by at most one PCR interval, which 13818-1
keeps within 0.1 s, so copies kept 0.4 s apart by it are at most 0.5 s apart in fact.
"""

from __future__ import annotations

PSI_SPACING = 400 * 27000  # 27 MHz ticks: DVB's 0.5 s less the clock's lag of up to 0.1 s
CLOCK_WRAP = (1 << 33) * 300  # the PCR wraps after 2^33 ticks of its 90 kHz base
MAX_SKIPPED = 32  # copies dropped in a row, at most: a clock that stopped (PCRs lost) must not mute them
MAX_KEYS = 64  # sections followed (a PAT, a PMT per program); more are forgotten, so kept again


class PsiRepeats:
    def __init__(self):
        self.now: int | None = None  # the stream clock (27 MHz), None until the first PCR
        self._seen: dict[tuple, list] = {}  # section key -> [last kept content, its time, last copy's time, skipped]

    def wanted(self, pid: int, section: bytes) -> bool:
        """Whether this copy of a section (as it will be sent) goes out."""
        key = (pid, section[0], section[3:5], section[6])  # PID, table_id, table_id_extension, section_number
        state, now = self._seen.get(key), self.now
        if state is None or state[0] != section or now is None or state[1] is None:
            keep = True
        else:
            since, step = (now - state[1]) % CLOCK_WRAP, (now - state[2]) % CLOCK_WRAP
            # Kept when the next copy, as far from this one as this is from the last, would come too late;
            # a clock that went back or jumped (a new timebase) counts as a new start.
            keep = since >= 2 * PSI_SPACING or since + step > PSI_SPACING or state[3] >= MAX_SKIPPED
        if state is None:
            if len(self._seen) >= MAX_KEYS:
                self._seen.clear()
            state = self._seen[key] = [section, now, now, 0]
        if keep:
            state[0], state[1], state[3] = section, now, 0
        else:
            state[3] += 1
        state[2] = now
        return keep
