"""The packets TsAudioFilter makes: the PAT and PMTs, and the PCR of a dropped PID.

The PAT and PMTs go out as sections in packets of our own, their continuity counted anew (copies are
left out, repeats.py says which, so the counters of the input's packets would not follow on).

The PCR. Players and analysers need a PCR on the PID the PMT names; encoders (ffmpeg among them)
mostly put it on the video PID. We keep that PID's PCR-bearing packets as adaptation-field-only
packets (payload removed, adaptation_field_control '10') rather than moving the PCR to the audio PID:
moving it would mean inserting adaptation fields into audio packets, so repacketising the audio,
while this way the audio packets pass byte for byte, PCR values stay exactly as the encoder timed
them, and the PMT's PCR_PID stays true (13818-1 allows a PCR PID that carries no listed stream). A
packet without payload does not advance the continuity counter (13818-1 §2.4.3.3), so all of them
carry the counter of the first one. Video muxers send a PCR per frame or more often; only as many are
kept as keep the gaps within 13818-1's 100 ms. Those are the output's largest overhead (10 packets a
second, a tenth of a 128 kbit/s AAC stream's packets). Carrying the PCR in the stuffing that audio
packets already have instead saves nothing on ffmpeg's streams: only the last packet of each PES has
such room, about one every 170 ms at 128 kbit/s, too rarely for gaps within 100 ms; and the PCR of a
byte between two PCRs is known exactly only once the next PCR has come, so the audio would wait for it.
"""

from __future__ import annotations

from . import packets as tsp

PCR_SPACING = 100 * 27000  # 13818-1's longest gap between PCRs: 100 ms of the 27 MHz clock
MAX_WAITING_PSI = 64  # sections kept for the start of a seek (a PAT, a PMT per program)


class MadePackets:
    """Mixin of TsAudioFilter (which sets tables, repeats, seek, _state, _continuity, _last_pcr,
    _seen_pcr, _last_psi, _waiting_psi, _clock_pid, prefix and the counters)."""

    def _on_psi(self, buf, at: int, pid: int, out: list) -> bool:
        """A PAT or PMT packet: the sections it completes go out (the PMTs rewritten) when wanted
        (repeats.py); True when the tables changed."""
        sync = at + self.prefix
        payload = bytes(buf[sync + tsp.payload_start(buf, sync) : sync + tsp.TS_SIZE])
        unit_start = bool(buf[sync + 1] & 0x40)
        repeat = self._last_psi.get(pid)
        if repeat is not None and unit_start and repeat[0] == payload:
            changed, sections = False, repeat[1]  # the copy before this, again: as it was read then
        else:
            changed, sections = self.tables.push(pid, payload, unit_start)
            # A payload of whole sections leaves nothing behind in the section reader: the same payload
            # again gives the same sections, so they are taken as they were.
            self._last_psi[pid] = (payload, sections) if unit_start and self.tables.idle(pid) else None
        if pid in self.tables.pcr_pids:
            self._on_pcr(buf, at, pid, out)
        if self.seek and "on" not in self._state.values():
            for section in sections:  # sent when the audio starts (_start_output)
                key = (pid, section[:1] + section[3:5] + section[6:7])
                if key not in self._waiting_psi and len(self._waiting_psi) >= MAX_WAITING_PSI:
                    del self._waiting_psi[next(iter(self._waiting_psi))]
                self._waiting_psi[key] = section
            sections = []
        sections = [s for s in sections if self.repeats.wanted(pid, s)]
        if sections:
            # Back to back in one run of packets, as they came: a run each could make a packet of many
            # small sections many packets.
            self._send_section(b"".join(sections), pid, bytes(buf[at:sync]), out)
        if changed:
            self._rebuild()
        return changed

    def _send_section(self, section: bytes, pid: int, prefix: bytes, out: list) -> None:
        """Sections as packets of their PID, counted on from the last we made (copies are left out)."""
        made, self._continuity[pid] = tsp.section_packets(section, pid, prefix, self._continuity.get(pid, 15))
        out += made
        self.kept_packets += len(made)

    def _start_output(self, prefix: bytes, out: list) -> None:
        """Seeking: the first audio goes out; the PAT and PMTs last read go before it."""
        waiting, self._waiting_psi = self._waiting_psi, {}
        for (pid, _), section in waiting.items():
            if self.repeats.wanted(pid, section):
                self._send_section(section, pid, prefix, out)

    def _read_clock(self, buf, sync: int) -> None:
        value = tsp.pcr(buf, sync)
        if value is not None:
            self.repeats.now = value

    def _on_pcr(self, buf, at: int, pid: int, out: list) -> None:
        """A packet of a dropped PID that carries the PCR: sent as adaptation field only (see this module's top)."""
        sync = at + self.prefix
        value = tsp.pcr(buf, sync)
        if value is not None and pid == self._clock_pid:
            self.repeats.now = value
        if value is None or (self.seek and "on" not in self._state.values()):
            return
        last, previous = self._last_pcr.get(pid), self._seen_pcr.get(pid)
        self._seen_pcr[pid] = value
        fresh = buf[sync + 5] & 0x80 or last is None or previous is None or not 0 <= value - last < 2 * PCR_SPACING
        # Kept when the next one, as far apart as this from the one before, would be too late.
        if not fresh and (value - last) + (value - previous) <= PCR_SPACING:
            return
        self._last_pcr[pid] = value
        continuity = self._continuity.setdefault(pid, buf[sync + 3] & 0x0F)
        out.append(tsp.pcr_only_packet(buf, sync, bytes(buf[at:sync]), continuity))
        self.kept_packets += 1
