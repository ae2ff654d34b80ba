"""Seeking in an MPEG-TS (start/end in ms, by PTS from the first audio PES's): the part of TsAudioFilter
that decides which audio goes out.

Audio whose frames say their own length (ADTS AAC, MPEG audio, AC-3: frames.py) is cut at frame
boundaries, as an MP4 is: a frame goes out when its time t is start <= t < end. The PES where a cut
may fall is held until it is whole, then sent as it came, cut (cut.py) or dropped: before start, every
PES (the first that reaches start is only known once read); with an end, every PES until the end (the
last is only known once read): at most one PES a PID is held, and the packets of other PIDs go on.
Other audio (LATM, E-AC-3, DTS, private streams, ...) and timed data are cut at PES boundaries: a PES
goes out when its PTS is start <= PTS < end.
"""

from __future__ import annotations

from .cut import HeldPes, cut
from .tables import AUDIO, DATA

PTS_WRAP = 1 << 33
MAX_HELD = 1 << 18  # bytes of one held PES (audio PES are a few KiB): past it, the PES is decided whole


class Seeking:
    """Mixin of TsAudioFilter (which sets seek, tables, _state, _origin, _private, _held,
    _frame_readers, _waiting_psi, _ended and the counters)."""

    def _seek_packet(self, buf, at: int, pid: int, role: str, pts: int | None, unit_start: int, out: list) -> bool:
        """Whether the packet goes out as it is (False: dropped, or held in a PES)."""
        read = self._frame_readers.get(pid) if role is AUDIO else None
        if read is None:
            if pts is not None:
                self._seek_step(pid, pts, role)
            state = self._state.get(pid)
            # A data PID without PES (SCTE-35 sections) goes along with the audio.
            live = state == "on" or (state is None and role is DATA and "on" in self._state.values())
            if live and self._waiting_psi:
                self._start_output(bytes(buf[at : at + self.prefix]), out)
            return live
        if unit_start:
            held = self._held.pop(pid, None)
            if held is not None:
                self._resolve(pid, held, out)
            ticks = self._ticks(pts, role)
            state = self._state.get(pid, "wait")
            if ticks is not None and state != "off":
                start, end = self.seek.start * 90, self.seek.end
                if state == "on" and end is not None and ticks >= end * 90:
                    self._set_state(pid, "off")
                elif state == "wait" and end is None and ticks >= start:
                    self._set_state(pid, "on")
                elif state == "wait" or end is not None:
                    self._held[pid] = HeldPes(ticks, self.prefix)
        held = self._held.get(pid)
        if held is None:
            live = self._state.get(pid) == "on"
            if live and self._waiting_psi:
                self._start_output(bytes(buf[at : at + self.prefix]), out)
            return live
        if held.add(bytes(buf[at : at + self.size])) or len(held.payload) > MAX_HELD:
            self._resolve(pid, self._held.pop(pid), out)
        return False

    def _resolve(self, pid: int, held: HeldPes, out: list) -> None:
        """A held PES is whole (or the input ended): it goes out as it came, cut, or not at all."""
        start, end = self.seek.start * 90, self.seek.end
        done = cut(held, self._frame_readers[pid], start, None if end is None else end * 90)
        if done is None:  # not a clean chain of frames: decided by its PTS, whole
            kept = held.ticks >= start and (end is None or held.ticks < end * 90)
            made, past_end = list(held.packets) if kept else [], False
        else:
            made, kept, past_end = done
        if kept:
            if self._state.get(pid, "wait") == "wait":
                self._set_state(pid, "on")
            if self._waiting_psi:
                self._start_output(made[0][: self.prefix], out)
            out += made
            self.kept_packets += len(made)
            self.audio_packets += len(made)
        if past_end:
            self._set_state(pid, "off")

    def _flush_held(self, out: list) -> None:
        for pid in sorted(self._held):
            self._resolve(pid, self._held.pop(pid), out)

    def _ticks(self, pts: int | None, role: str) -> int | None:
        """90 kHz ticks from the first audio PTS (set by the first audio PES), or None."""
        if pts is None:
            return None
        if self._origin is None:
            if role is not AUDIO:
                return None
            self._origin = pts
        ticks = (pts - self._origin) % PTS_WRAP
        return 0 if ticks >= PTS_WRAP // 2 else ticks  # a little before the first audio PTS: 0

    def _seek_step(self, pid: int, pts: int, role: str) -> None:
        """A PES start of a stream cut at PES boundaries."""
        ticks = self._ticks(pts, role)
        if ticks is None:
            return
        state = self._state.get(pid, "wait")
        if state == "wait" and ticks >= self.seek.start * 90:
            state = "on"
        if state == "on" and self.seek.end is not None and ticks >= self.seek.end * 90:
            state = "off"
        self._set_state(pid, state)

    def _set_state(self, pid: int, state: str) -> None:
        self._state[pid] = state
        audio = [p for p, r in self.tables.roles.items() if r is AUDIO or self._private.get(p)]
        if state == "off" and audio and all(self._state.get(p) == "off" for p in audio):
            self._ended = True  # every audio stream is past the end: nothing more goes out

