"""Transport stream packets (ISO/IEC 13818-1 §2.4.3): their headers, read for a whole piece at once.

A packet is 188 bytes from its 0x47 sync byte; M2TS (Blu-ray, AVCHD) puts a 4-byte arrival
timestamp before each, making 192. The filter looks at the few header bytes of every packet and
at nothing else of the packets it drops: `header_codes` lifts those bytes out of a whole piece with
strided slices and big-integer masks, so that bytes.find finds the packets to keep without a
Python step per packet.
"""

from __future__ import annotations

import struct

SYNC = 0x47
TS_SIZE, M2TS_SIZE = 188, 192
NULL_PID = 0x1FFF
PAT_PID = 0

# Per packet, header_codes gives 4 bytes: 0x80; 0x40 | PID bits 12-8; PID bits 7-0; 0x20 if an
# adaptation field is present. No byte but the first can be 0x80 when the second is 0x40-0x5F and the
# fourth 0x00 or 0x20, so a match of 0x80 0x4? .. can only start at a packet's first code byte.
CODE = 4
_WORDS = {TS_SIZE: TS_SIZE // 4, M2TS_SIZE: M2TS_SIZE // 4}
_masks: dict[tuple[int, int], int] = {}


def _mask(unit: int, count: int) -> int:
    """`unit` (4 bytes) repeated `count` times, as one integer."""
    key = (unit, count)
    mask = _masks.get(key)
    if mask is None:
        if len(_masks) > 32:
            _masks.clear()
        mask = _masks[key] = int.from_bytes(unit.to_bytes(4, "big") * count, "big")
    return mask


def header_codes(buf, start: int, count: int, size: int) -> bytes | int:
    """The codes of `count` packets of `size` bytes from buf[start:], or the index of the first packet
    whose sync byte is wrong.

    Bytes 0-3 of every packet come out in one strided copy of 4-byte words; their bits are picked
    and put in place with big-integer masks: each step is one C loop over the piece's headers, none a
    Python step per packet."""
    words = memoryview(buf)[start : start + count * size].cast("I")
    first = (size - TS_SIZE) // 4  # M2TS: the packet follows a 4-byte word
    head = int.from_bytes(bytes(words[first :: _WORDS[size]]), "big")  # sync, PID with 3 flags, control
    if head & _mask(0xFF000000, count) != _mask(0x47000000, count):
        syncs = bytes(buf[start + size - TS_SIZE : start + count * size : size])
        return len(syncs) - len(syncs.lstrip(b"G"))
    return (head & _mask(0x001FFF20, count) | _mask(0x80400000, count)).to_bytes(count * CODE, "big")


def pid_code(pid: int) -> bytes:
    return bytes((0x80, 0x40 | pid >> 8, pid & 0xFF))


def needle(pid: int, pcr_only: bool = False) -> bytes:
    """What header_codes gives for the packets of a PID; pcr_only: for those that carry an adaptation
    field (whether it holds a PCR is for the caller to see: a few per video frame)."""
    return pid_code(pid) + (b"\x20" if pcr_only else b"")


def find_sync(buf: bytearray, size: int, run: int) -> tuple[int | None, int]:
    """(offset in buf of a packet followed by `run` sync bytes one packet apart, None if none yet;
    how many bytes at buf's start cannot hold such a packet). buf's first byte is where sync was
    lost: the search starts after it."""
    prefix, want = size - TS_SIZE, b"G" * run
    span = (run - 1) * size + 1
    i = buf.find(b"G", prefix + 1)
    while i != -1 and i + span <= len(buf):
        if buf[i : i + span : size] == want:
            return i - prefix, 0
        i = buf.find(b"G", i + 1)
    # What stays: the candidate not yet checkable, put where the next search starts from.
    return None, max(0, (len(buf) if i == -1 else i) - prefix - 1)


def payload_start(packet, at: int = 0) -> int:
    """Offset (from the sync byte) of the payload, or 188 when there is none."""
    control = packet[at + 3] >> 4 & 3
    if control == 1:
        return 4
    if control == 3:
        return min(5 + packet[at + 4], TS_SIZE)
    return TS_SIZE


def pcr(packet, at: int = 0) -> int | None:
    """The PCR (27 MHz) of a packet, or None."""
    if not packet[at + 3] & 0x20 or packet[at + 4] < 7 or not packet[at + 5] & 0x10:
        return None
    base_high, low = struct.unpack_from(">IH", packet, at + 6)
    return ((base_high << 1 | low >> 15) * 300) + (low & 0x1FF)


def pcr_only_packet(packet, at: int, prefix: bytes, continuity: int) -> bytes:
    """The packet's header and PCR without its payload (adaptation_field_control '10'): the PCR with
    the discontinuity indicator (a new timebase), nothing else of the adaptation field, stuffed to fill
    the packet. The payload_unit_start and scrambling bits go with the payload."""
    head = bytes((SYNC, packet[at + 1] & 0x1F, packet[at + 2], 0x20 | continuity, 183, packet[at + 5] & 0x80 | 0x10))
    return prefix + head + bytes(packet[at + 6 : at + 12]) + b"\xff" * 176


def section_packets(section: bytes, pid: int, prefix: bytes, continuity: int) -> tuple[list[bytes], int]:
    """PSI sections as packets of a PID (pointer_field 0, stuffed with 0xFF), counted on from
    `continuity`; returns them and the last continuity counter used."""
    packets = []
    data = b"\x00" + section
    for at in range(0, len(data), 184):
        continuity = (continuity + 1) & 0x0F
        unit_start = 0x40 if at == 0 else 0
        chunk = data[at : at + 184]
        packets.append(prefix + bytes((SYNC, pid >> 8 | unit_start, pid & 0xFF, 0x10 | continuity))
                       + chunk + b"\xff" * (184 - len(chunk)))
    return packets, continuity


def pes_pts(packet, at: int = 0) -> int | None:
    """The PTS (90 kHz) of the PES that starts in this packet (payload_unit_start set), or None."""
    if not packet[at + 1] & 0x40:
        return None
    p = at + payload_start(packet, at)
    if p + 14 > at + TS_SIZE or packet[p : p + 3] != b"\x00\x00\x01" or not packet[p + 7] & 0x80:
        return None
    b = packet[p + 9 : p + 14]
    return (b[0] >> 1 & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
