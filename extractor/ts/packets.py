"""Transport stream packets (ISO/IEC 13818-1 §2.4.3): their headers, read for a whole piece at once.

A packet is 188 bytes from its 0x47 sync byte; M2TS (Blu-ray, AVCHD) puts a 4-byte arrival
timestamp before each, making 192. The filter looks at the few header bytes of every packet and
at nothing else of the packets it drops: `header_codes` lifts those bytes out of a whole piece with
strided slices and maps them with bytes.translate, so that one regular expression finds the packets
to keep without a Python step per packet.
"""

from __future__ import annotations

import re
import struct

SYNC = 0x47
TS_SIZE, M2TS_SIZE = 188, 192
NULL_PID = 0x1FFF
PAT_PID = 0

# Per packet, header_codes gives 5 bytes, each from a range no other of the five uses, so that a
# match can only start at a packet's first code byte:
#   0x80 | PID bits 12-8, 0x40 | PID bits 7-4, 0x50 | PID bits 3-0,
#   0x20 if an adaptation field is present else 0x00, 0x10 if the PCR flag byte has it set else 0x00.
CODE = 5
_HIGH = bytes(0x80 | (b & 0x1F) for b in range(256))
_MID = bytes(0x40 | (b >> 4) for b in range(256))
_LOW = bytes(0x50 | (b & 0x0F) for b in range(256))
_AF = bytes(b & 0x20 for b in range(256))
_PCR_FLAG = bytes(b & 0x10 for b in range(256))


def pid_code(pid: int) -> bytes:
    return bytes((0x80 | pid >> 8, 0x40 | (pid >> 4) & 0x0F, 0x50 | pid & 0x0F))


def code_pid(code: bytes) -> int:
    return (code[0] & 0x1F) << 8 | (code[1] & 0x0F) << 4 | code[2] & 0x0F


def header_codes(buf, start: int, count: int, size: int) -> bytearray:
    """The codes of `count` packets of `size` bytes whose sync bytes are at buf[start::size]."""
    end = start + (count - 1) * size + 6
    code = bytearray(CODE * count)
    second = bytes(buf[start + 2 : end : size])
    code[0::CODE] = bytes(buf[start + 1 : end : size]).translate(_HIGH)
    code[1::CODE] = second.translate(_MID)
    code[2::CODE] = second.translate(_LOW)
    code[3::CODE] = bytes(buf[start + 3 : end : size]).translate(_AF)
    code[4::CODE] = bytes(buf[start + 5 : end : size]).translate(_PCR_FLAG)
    return code


def matcher(kept: set[int], pcr_only: set[int]) -> re.Pattern:
    """Finds, in header codes, the packets of the kept PIDs, and those of the pcr_only PIDs that carry
    an adaptation field whose flags say PCR (to be checked: the flags byte is only one when the
    adaptation field is not empty)."""
    choices = [re.escape(pid_code(p)) for p in sorted(kept)]
    choices += [re.escape(pid_code(p)) + b"\x20\x10" for p in sorted(pcr_only - kept)]
    return re.compile(b"|".join(choices) if choices else b"(?!)")


def pid(packet, at: int = 0) -> int:
    return (packet[at + 1] & 0x1F) << 8 | packet[at + 2]


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


def section_packets(section: bytes, header: bytes, prefix: bytes, continuity: int) -> tuple[list[bytes], int]:
    """A PSI section as packets of the PID whose header bytes 1-2 are `header` (pointer_field 0, stuffed
    with 0xFF); returns them and the last continuity counter used."""
    packets = []
    data = b"\x00" + section
    for at in range(0, len(data), 184):
        continuity = (continuity + 1) & 0x0F
        unit_start = 0x40 if at == 0 else 0
        chunk = data[at : at + 184]
        packets.append(prefix + bytes((SYNC, header[0] & 0x1F | unit_start, header[1], 0x10 | continuity))
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
