"""Program-specific information: PAT and PMT sections (ISO/IEC 13818-1 §2.4.4).

Sections arrive in the payloads of a PID's packets, may span packets and may share one (a
pointer_field says where the first new section starts). A section is at most 1024 bytes (13818-1
caps section_length at 1021 for the PAT and PMT), so assembling one costs bounded memory. Each is
checked against its CRC-32/MPEG-2 before it is believed: a packet lost or damaged on the way would
otherwise make us keep or drop the wrong PIDs.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

from ..errors import MalformedInput

PAT_TABLE, PMT_TABLE = 0x00, 0x02
MAX_SECTION = 1024

# CRC-32/MPEG-2 is CRC-32 without bit reflection and without the final inversion. zlib's crc32 is the
# reflected variant: fed bit-reversed bytes, its (un-inverted) result is the bit-reversed MPEG-2 CRC.
# This keeps the per-byte work in C.
_REVERSED_BYTES = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_mpeg2(data) -> int:
    reflected = binascii.crc32(bytes(data).translate(_REVERSED_BYTES)) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def section_ok(section: bytes) -> bool:
    """The section's last 4 bytes are the CRC of the rest (then the CRC over all of it is 0)."""
    return len(section) >= 12 and crc32_mpeg2(section) == 0


class SectionReader:
    """Assembles the sections of one PID from its packets' payloads."""

    def __init__(self):
        self._buf = bytearray()
        self._active = False  # inside a section (else: waiting for a payload_unit_start)

    @property
    def active(self) -> bool:
        return self._active

    def push(self, payload, unit_start: bool) -> list[bytes]:
        """Take one packet's payload; return the sections it completes."""
        done: list[bytes] = []
        if unit_start:
            if not payload:
                return done
            pointer = payload[0]
            if self._active:
                self._buf += payload[1 : 1 + pointer]
                done += self._take()
            self._buf = bytearray(payload[1 + pointer :])
            self._active = True
        elif self._active:
            self._buf += payload
        else:
            return done  # the middle of a section whose start we never saw
        done += self._take()
        return done

    def _take(self) -> list[bytes]:
        done = []
        buf = self._buf
        while self._active and len(buf) >= 3:
            if buf[0] == 0xFF:  # stuffing: no more sections in this packet
                buf.clear()
                self._active = False
                break
            size = 3 + (((buf[1] & 0x0F) << 8) | buf[2])
            if size > MAX_SECTION:  # not a PSI section: drop it and wait for the next unit start
                buf.clear()
                self._active = False
                break
            if len(buf) < size:
                break
            done.append(bytes(buf[:size]))
            del buf[:size]
        if not buf:
            self._active = False  # a section ended with the payload: the next one opens a new unit
        return done


def parse_pat(section: bytes) -> dict[int, int]:
    """program_number -> PMT PID (program 0, the network PID, left out)."""
    programs = {}
    for at in range(8, len(section) - 4 - 3, 4):
        number, pid = struct.unpack_from(">HH", section, at)
        if number:
            programs[number] = pid & 0x1FFF
    return programs


@dataclass
class Stream:
    pid: int
    stream_type: int
    descriptors: bytes  # the ES_info loop as it came


@dataclass
class Pmt:
    program: int
    version: int
    pcr_pid: int
    program_info: bytes
    streams: list[Stream] = field(default_factory=list)


def parse_pmt(section: bytes) -> Pmt:
    """A PMT section whose CRC has been checked."""
    if section[0] != PMT_TABLE or len(section) < 16:
        raise MalformedInput(f"PMT section with table_id 0x{section[0]:02x} and {len(section)} bytes")
    program, version_byte, pcr, info_length = struct.unpack_from(">HBxxHH", section, 3)
    info_length &= 0x0FFF
    end = len(section) - 4
    at = 12 + info_length
    pmt = Pmt(program, (version_byte >> 1) & 0x1F, pcr & 0x1FFF, bytes(section[12:at]))
    while at + 5 <= end:
        stream_type, pid, es_length = struct.unpack_from(">BHH", section, at)
        es_length &= 0x0FFF
        pmt.streams.append(Stream(pid & 0x1FFF, stream_type, bytes(section[at + 5 : at + 5 + es_length])))
        at += 5 + es_length
    return pmt


def rewrite_pmt(section: bytes, keep: set[int]) -> bytes:
    """The same PMT section listing only the streams whose PID is in `keep`, with its section_length
    and CRC made anew; everything else (version, PCR_PID, descriptors) as it came."""
    info_length = struct.unpack_from(">H", section, 10)[0] & 0x0FFF
    end = len(section) - 4
    at = 12 + info_length
    body = bytearray(section[:at])
    while at + 5 <= end:
        pid = struct.unpack_from(">H", section, at + 1)[0] & 0x1FFF
        size = 5 + (struct.unpack_from(">H", section, at + 3)[0] & 0x0FFF)
        if pid in keep:
            body += section[at : at + size]
        at += size
    length = len(body) + 4 - 3
    body[1] = (body[1] & 0xF0) | (length >> 8)
    body[2] = length & 0xFF
    return bytes(body) + struct.pack(">I", crc32_mpeg2(body))


def descriptors(data: bytes):
    """(tag, body) of each descriptor in a descriptor loop."""
    at = 0
    while at + 2 <= len(data):
        tag, size = data[at], data[at + 1]
        yield tag, data[at + 2 : at + 2 + size]
        at += 2 + size
