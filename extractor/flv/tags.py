"""The FLV file header and tag header layout.

The file header is read once per response, so it is described declaratively with construct. The tag
header is read once per tag on the hot path (tens of thousands per file), so it uses one precompiled
`struct` call that also takes the PreviousTagSize in front of it.
"""

import struct

from construct import Const, ConstructError, Int8ub, Int32ub, Struct

from ..errors import MalformedInput

FILE_HEADER = Struct(
    "signature" / Const(b"FLV"),
    "version" / Int8ub,
    "flags" / Int8ub,  # 0x04 audio present, 0x01 video present
    "data_offset" / Int32ub,  # size of this header; tags start after it plus PreviousTagSize0
)
FILE_HEADER_SIZE = 9
FLAG_AUDIO = 0x04

AUDIO, VIDEO, SCRIPT = 8, 9, 18

TAG_HEADER_SIZE = 11
PREVIOUS_TAG_SIZE = 4
# One unit on the wire: PreviousTagSize of the tag before, then this tag's header.
UNIT_SIZE = PREVIOUS_TAG_SIZE + TAG_HEADER_SIZE
# >I previous tag size, >I (type byte << 24 | data size), >I (timestamp << 8 | extended timestamp);
# the 3-byte stream id that ends the header is not needed.
UNIT = struct.Struct(">III")
_U32 = struct.Struct(">I")


def parse_file_header(data: bytes) -> tuple[int, int, int]:
    """(version, flags, data_offset) of the 9-byte FLV header."""
    try:
        header = FILE_HEADER.parse(data)
    except ConstructError as e:
        raise MalformedInput(f"FLV header is invalid: {e}") from None
    if header.data_offset < FILE_HEADER_SIZE:
        raise MalformedInput(f"FLV header gives a data offset of {header.data_offset}, below its own 9 bytes")
    return header.version, header.flags, header.data_offset


def build_file_header(version: int, flags: int = FLAG_AUDIO) -> bytes:
    """A header (audio only unless told) followed by PreviousTagSize0."""
    return FILE_HEADER.build(dict(version=version, flags=flags, data_offset=FILE_HEADER_SIZE)) + bytes(4)


def previous_tag_size(data_size: int) -> bytes:
    return _U32.pack(TAG_HEADER_SIZE + data_size)


def tag_header(tag_type: int, data_size: int, rest: bytes) -> bytes:
    """A tag header for `data_size` bytes; `rest` is the original timestamp and stream id (7 bytes)."""
    return _U32.pack(tag_type << 24 | data_size) + rest
