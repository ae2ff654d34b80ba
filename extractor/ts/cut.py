"""One audio PES cut at frame boundaries (seeking): the frames before start, or from end on, dropped,
the PES written anew and packetised again.

Only the PES where a cut falls is touched; every other packet passes as it came. The new PES keeps its
header but for the PTS (and DTS), moved on by the dropped frames' duration, and PES_packet_length. Its
packets keep the PID, the first packet's adaptation field (random access flag, a PCR if the audio
carries it) and the M2TS prefixes of the packets they replace; the last is filled with stuffing in its
adaptation field (13818-1 §2.4.3.5: PES packets do not share a TS packet, and stuffing bytes in an
adaptation field are how a packet is filled). Continuity counters: when the stream goes on after the
PES (a cut at start) they end where the old packets ended, so the next packet follows on; when it
stops there (a cut at end) they start where the old packets started.
"""

from __future__ import annotations

from . import packets as tsp
from .frames import frame_ticks

PTS_WRAP = 1 << 33
PES_CRC_FLAG = 0x02


class HeldPes:
    """The packets of one PES, held until it is whole (PES_packet_length, or the next PES start)."""

    def __init__(self, ticks: int, prefix: int):
        self.ticks = ticks  # its PTS, in 90 kHz ticks from the seek's origin
        self.prefix = prefix  # M2TS: 4
        self.packets: list[bytes] = []
        self.payload = bytearray()
        self.expected: int | None = None  # whole PES size, when PES_packet_length says

    def add(self, packet: bytes) -> bool:
        """Take one packet; True when the PES is whole."""
        self.packets.append(packet)
        sync = self.prefix
        self.payload += packet[sync + tsp.payload_start(packet, sync) :]
        if self.expected is None and len(self.payload) >= 6 and len(self.packets) == 1:
            length = self.payload[4] << 8 | self.payload[5]
            self.expected = 6 + length if length else 0
        return bool(self.expected) and len(self.payload) >= self.expected


def cut(held: HeldPes, read, start: int, end: int | None) -> tuple[list[bytes], bool, bool] | None:
    """(packets to send, whether any frame was kept, whether frames at or after `end` were met) for a
    held PES, keeping its frames whose time t (ticks from the origin) is start <= t < end; None when the
    PES is not a clean chain of frames with a PTS (the caller decides for the whole PES)."""
    pes = bytes(held.payload[: held.expected] if held.expected else held.payload)
    if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or not pes[7] & 0x80 or pes[7] & PES_CRC_FLAG:
        return None
    body = 9 + pes[8]
    frames = frame_ticks(memoryview(pes)[body:], read) if body <= len(pes) else None
    if frames is None:
        return None
    times = [held.ticks + ticks for _, ticks in frames[:-1]]
    first = next((i for i, t in enumerate(times) if t >= start), len(times))
    last = len(times) if end is None else next((i for i, t in enumerate(times) if t >= end), len(times))
    past_end = last < len(times)
    if first >= last:
        return [], False, past_end
    if first == 0 and last == len(times):
        return list(held.packets), True, past_end
    head = bytearray(pes[:body])
    move = frames[first][1]
    _move_timestamp(head, 9, move)
    if pes[7] & 0x40:  # a DTS as well
        _move_timestamp(head, 14, move)
    data = pes[body + frames[first][0] : body + frames[last][0]]
    if pes[4] or pes[5]:  # PES_packet_length: what follows it
        length = len(head) - 6 + len(data)
        head[4:6] = length.to_bytes(2, "big")
    return packetise(bytes(head) + data, held, align_end=not past_end), True, past_end


def _move_timestamp(head: bytearray, at: int, ticks: int) -> None:
    """A PTS or DTS field (13818-1 §2.4.3.7: 4 bits of prefix, 33 bits among marker bits) moved on."""
    b = head[at : at + 5]
    value = (b[0] >> 1 & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
    value = (value + ticks) % PTS_WRAP
    head[at : at + 5] = bytes((b[0] & 0xF0 | (value >> 29) & 0x0E | 1, value >> 22 & 0xFF,
                               (value >> 14) & 0xFE | 1, value >> 7 & 0xFF, (value << 1) & 0xFE | 1))


def packetise(pes: bytes, held: HeldPes, align_end: bool) -> list[bytes]:
    """The PES as packets in the held packets' places; align_end: the stream goes on after it (see the
    top)."""
    sync = held.prefix
    first = held.packets[0]
    control = first[sync + 3] >> 4 & 3
    field = first[sync + 4 : sync + 5 + first[sync + 4]] if control & 2 and 0 < first[sync + 4] <= 182 else b""
    count, room = 1, 184 - len(field)
    if len(pes) > room:
        count += -(-(len(pes) - room) // 184)
    slots = held.packets[len(held.packets) - count :] if align_end and count <= len(held.packets) else held.packets
    last_cc = held.packets[-1][sync + 3] & 0x0F
    cc = (last_cc - count + 1) & 0x0F if align_end else first[sync + 3] & 0x0F
    made, at = [], 0
    for index in range(count):
        own = field if index == 0 else b""
        chunk = pes[at : at + 184 - len(own)]
        at += len(chunk)
        gap = 184 - len(own) - len(chunk)
        if gap:  # the last packet: the rest is stuffing in its adaptation field
            own = _stuffed(own, gap)
        slot = slots[index] if index < len(slots) else slots[-1]
        head = bytes((tsp.SYNC, first[sync + 1] & 0xBF | (0x40 if index == 0 else 0), first[sync + 2],
                      first[sync + 3] & 0xC0 | (0x30 if own else 0x10) | cc))
        made.append(slot[:sync] + head + own + chunk)
        cc = (cc + 1) & 0x0F
    return made


def _stuffed(field: bytes, gap: int) -> bytes:
    """An adaptation field (length byte first) made `gap` bytes longer with stuffing, or a new one of
    `gap` bytes (one byte: length 0; more: no flags set, then 0xFF)."""
    if field:
        body = field[1:] + b"\xff" * gap
        return bytes((len(body),)) + body
    if gap == 1:
        return b"\x00"
    return bytes((gap - 1, 0)) + b"\xff" * (gap - 2)
