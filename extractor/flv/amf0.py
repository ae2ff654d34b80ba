"""onMetaData: find the video fields in an AMF0 script tag and write the tag again without them.

Only the top-level properties are decoded; every value is kept or dropped as its raw bytes, so what
we do not touch comes out bit for bit. Values are skipped, not decoded, with a depth bound so a
hostile nesting cannot recurse without end, and every length is checked against the tag's end.
Construct is not used here: a keyframe index holds thousands of numbers and a per-element parser
would stall the proxy's event loop on a long file.
"""

import struct

from ..errors import MalformedInput

NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED, REFERENCE = range(8)
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING, UNSUPPORTED, RECORDSET, XML, TYPED_OBJECT = range(8, 17)
AVMPLUS = 0x11

MAX_DEPTH = 32
_END_MARKER = b"\x00\x00\x09"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

# Properties that describe the video, or sizes and indexes that no longer hold once it is gone.
DROPPED_KEYS = frozenset(
    k.lower()
    for k in (
        "width", "height", "framerate", "fps", "displayWidth", "displayHeight", "keyframes",
        "hasKeyframes", "lastkeyframetimestamp", "lastkeyframelocation", "canSeekToEnd",
        "filesize", "datasize", "lasttimestamp", "times", "filepositions", "seekpoints",
    )
)
DROPPED_PREFIXES = ("video", "avc", "hevc", "keyframe")
HAS_VIDEO = b"hasVideo"

# Names of script tags whose second value is the metadata object.
METADATA_NAMES = (b"onMetaData", b"onMetadata")


def _need(buf: memoryview, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise MalformedInput(f"AMF0 value at byte {pos} of the script tag runs past its end")


def _string_end(buf: memoryview, pos: int) -> int:
    """End of a u16-length string body starting at pos."""
    _need(buf, pos, 2)
    (n,) = _U16.unpack_from(buf, pos)
    _need(buf, pos + 2, n)
    return pos + 2 + n


def _properties_end(buf: memoryview, pos: int, depth: int) -> int:
    """End of a name/value property list closed by 00 00 09."""
    while True:
        if buf[pos : pos + 3] == _END_MARKER:
            return pos + 3
        pos = skip_value(buf, _string_end(buf, pos), depth)


def skip_value(buf: memoryview, pos: int, depth: int = 0) -> int:
    """Return the offset just past the AMF0 value at pos."""
    if depth > MAX_DEPTH:
        raise MalformedInput(f"AMF0 values nest deeper than {MAX_DEPTH} levels")
    _need(buf, pos, 1)
    marker = buf[pos]
    pos += 1
    if marker == NUMBER:
        end = pos + 8
    elif marker == BOOLEAN:
        end = pos + 1
    elif marker == STRING:
        return _string_end(buf, pos)
    elif marker in (NULL, UNDEFINED, UNSUPPORTED):
        return pos
    elif marker == REFERENCE:
        end = pos + 2
    elif marker == DATE:
        end = pos + 10
    elif marker in (LONG_STRING, XML):
        _need(buf, pos, 4)
        end = pos + 4 + _U32.unpack_from(buf, pos)[0]
    elif marker == OBJECT:
        return _properties_end(buf, pos, depth + 1)
    elif marker == TYPED_OBJECT:
        return _properties_end(buf, _string_end(buf, pos), depth + 1)
    elif marker == ECMA_ARRAY:
        _need(buf, pos, 4)
        return _properties_end(buf, pos + 4, depth + 1)
    elif marker == STRICT_ARRAY:
        _need(buf, pos, 4)
        (count,) = _U32.unpack_from(buf, pos)
        pos += 4
        if count > len(buf) - pos:  # every value takes at least one byte
            raise MalformedInput(f"AMF0 strict array claims {count} values in {len(buf) - pos} bytes")
        for _ in range(count):
            pos = skip_value(buf, pos, depth + 1)
        return pos
    else:
        raise MalformedInput(f"AMF0 type marker 0x{marker:02x} at byte {pos - 1} is not supported")
    _need(buf, pos, end - pos)
    return end


def _is_video_key(key: bytes) -> bool:
    k = key.decode("latin-1").lower()
    return k in DROPPED_KEYS or k.startswith(DROPPED_PREFIXES)


def _encode_key(key: bytes) -> bytes:
    return _U16.pack(len(key)) + key


def rewrite_metadata(data: bytes) -> tuple[bytes, float | None]:
    """(script tag data with the video properties of onMetaData removed and hasVideo false, the
    duration it gives in seconds or None).

    Script tags with another name (cue points, text) come back unchanged. Raises MalformedInput
    when the AMF0 cannot be walked.
    """
    buf = memoryview(data)
    if not buf or buf[0] != STRING:
        raise MalformedInput("script tag does not start with an AMF0 string name")
    name_end = _string_end(buf, 1)
    if bytes(buf[3:name_end]) not in METADATA_NAMES:
        return data, None
    pos = name_end
    _need(buf, pos, 1)
    container = buf[pos]
    if container not in (ECMA_ARRAY, OBJECT):
        raise MalformedInput(f"onMetaData holds AMF0 type 0x{container:02x}, not an object or ECMA array")
    pos += 5 if container == ECMA_ARRAY else 1
    _need(buf, pos, 0)

    kept: list[bytes | memoryview] = []
    count = 0
    has_video_seen = False
    duration = None
    while pos < len(buf) and buf[pos : pos + 3] != _END_MARKER:
        key_end = _string_end(buf, pos)
        key = bytes(buf[pos + 2 : key_end])
        value_end = skip_value(buf, key_end, 1)
        if key == b"duration" and buf[key_end] == NUMBER:
            duration = struct.unpack_from(">d", buf, key_end + 1)[0]
        if key == HAS_VIDEO:
            kept.append(_encode_key(key) + bytes((BOOLEAN, 0)))
            has_video_seen = True
            count += 1
        elif not _is_video_key(key):
            kept.append(buf[pos:value_end])
            count += 1
        pos = value_end
    # Some writers end the ECMA array at the tag's end without the marker; accept both.
    rest = buf[pos + 3 :] if pos < len(buf) else b""
    if not has_video_seen:
        kept.append(_encode_key(HAS_VIDEO) + bytes((BOOLEAN, 0)))
        count += 1

    head = bytes(buf[:name_end]) + (bytes((ECMA_ARRAY,)) + _U32.pack(count) if container == ECMA_ARRAY else bytes((OBJECT,)))
    return b"".join((head, *kept, _END_MARKER, rest)), duration
