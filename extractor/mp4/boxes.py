"""ISO BMFF boxes: headers (32-bit, 64-bit largesize, size 0 = to the end, uuid), walking and building."""

import struct
from dataclasses import dataclass

from construct import Bytes, ConstructError, Int32ub, Int64ub, If, Struct, this

from ..errors import MalformedInput, human_size

HEADER = Struct(
    "size" / Int32ub,  # 1: a 64-bit largesize follows; 0: the box runs to the end of its parent
    "type" / Bytes(4),
    "largesize" / If(this.size == 1, Int64ub),
)
MIN_HEADER = 8
U32_MAX = 0xFFFFFFFF


@dataclass(slots=True)
class Box:
    type: bytes
    start: int  # offset of the header
    header: int  # header length: 8, 16, +16 for uuid
    size: int  # whole box, header included

    @property
    def payload(self) -> int:
        return self.start + self.header

    @property
    def end(self) -> int:
        return self.start + self.size

    def name(self) -> str:
        return self.type.decode("latin-1")


def header_length(first8: bytes) -> int:
    """How many bytes the header that starts with these 8 bytes takes."""
    size, kind = struct.unpack(">I4s", first8)
    return (16 if size == 1 else 8) + (16 if kind == b"uuid" else 0)


def parse_header(data, pos: int, limit: int | None) -> Box:
    """The box whose header is at data[pos:]; `limit` is where its parent ends (None: unknown, as for a
    file still streaming, where a size-0 box gets size -1 meaning 'to the end')."""
    try:
        h = HEADER.parse(bytes(data[pos : pos + 16]))
    except ConstructError:
        raise MalformedInput(f"box header at byte {pos} is cut short") from None
    length = (16 if h.size == 1 else 8) + (16 if h.type == b"uuid" else 0)
    size = h.largesize if h.size == 1 else h.size
    if h.size == 0:
        size = limit - pos if limit is not None else -1
    elif size < length:
        raise MalformedInput(f"box '{_name(h.type)}' at byte {pos} has size {size}, less than its {length}-byte header")
    elif limit is not None and pos + size > limit:
        raise MalformedInput(
            f"box '{_name(h.type)}' at byte {pos} is {human_size(size)}, past the end of its parent at byte {limit}"
        )
    return Box(h.type, pos, length, size)


def children(data, start: int, end: int):
    """The boxes that fill data[start:end] exactly."""
    pos = start
    while pos < end:
        if end - pos < MIN_HEADER:
            raise MalformedInput(f"{end - pos} stray bytes at byte {pos}, too few for a box header")
        box = parse_header(data, pos, end)
        yield box
        pos = box.end


def find(data, parent: Box, kind: bytes) -> Box | None:
    return next((b for b in children(data, parent.payload, parent.end) if b.type == kind), None)


def versioned_value(data, box: Box, where: str) -> int:
    """The value a full box keeps right after its version and flags, 32 bits in version 0 and 64 in
    version 1 (tfdt's decode time, mehd's duration); MalformedInput when the box is too short for its
    version. `where` names the box's place in the message ("of a moof")."""
    v1 = box.size > box.header and data[box.payload] == 1
    if box.size - box.header < (12 if v1 else 8):
        raise MalformedInput(f"{box.type.decode('latin-1')} at byte {box.start} {where} holds {box.size - box.header} "
                             f"bytes, its version {int(v1)} needs {12 if v1 else 8}")
    return struct.unpack_from(">Q" if v1 else ">I", data, box.payload + 4)[0]


def make_box(kind: bytes, payload) -> bytes:
    size = 8 + len(payload)
    if size <= U32_MAX:
        return struct.pack(">I4s", size, kind) + payload
    return struct.pack(">I4sQ", 1, kind, size + 8) + payload


def mdat_header(payload_size: int) -> bytes:
    if payload_size + 8 <= U32_MAX:
        return struct.pack(">I4s", payload_size + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", payload_size + 16)


def _name(kind: bytes) -> str:
    return kind.decode("latin-1")
