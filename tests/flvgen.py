"""Builds small FLV byte strings by hand, for cases ffmpeg will not write."""

import struct


def amf_string(s: str) -> bytes:
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_number(x: float) -> bytes:
    return b"\x00" + struct.pack(">d", x)


def amf_bool(v: bool) -> bytes:
    return b"\x01" + bytes((v,))


def amf_ecma(props: dict[str, bytes]) -> bytes:
    body = b"".join(struct.pack(">H", len(k)) + k.encode() + v for k, v in props.items())
    return b"\x08" + struct.pack(">I", len(props)) + body + b"\x00\x00\x09"


def tag(tag_type: int, data: bytes, ts: int = 0, previous_size: int | None = None) -> bytes:
    header = struct.pack(">I", tag_type << 24 | len(data)) + struct.pack(">I", (ts & 0xFFFFFF) << 8 | ts >> 24) + b"\0\0\0"
    return header + data + struct.pack(">I", 11 + len(data) if previous_size is None else previous_size)


def flv(*tags: bytes, flags: int = 5, data_offset: int = 9) -> bytes:
    header = b"FLV\x01" + bytes((flags,)) + struct.pack(">I", data_offset) + bytes(data_offset - 9)
    return header + b"\0\0\0\0" + b"".join(tags)


METADATA = amf_string("onMetaData") + amf_ecma({
    "duration": amf_number(1.5), "width": amf_number(320), "height": amf_number(240),
    "videocodecid": amf_number(7), "audiocodecid": amf_number(10), "framerate": amf_number(25),
    "hasVideo": amf_bool(True), "filesize": amf_number(12345), "encoder": amf_string("test"),
})


def small_flv() -> bytes:
    """Metadata, an AAC sequence header, then interleaved video and audio: a few hundred bytes."""
    tags = [tag(18, METADATA), tag(8, b"\xaf\x00\x12\x10"), tag(9, b"\x17\x00\x00\x00\x00" + b"V" * 40)]
    for i in range(1, 6):
        tags.append(tag(9, b"\x27\x01" + bytes([i]) * 30, ts=40 * i))
        tags.append(tag(8, b"\xaf\x01" + bytes([i]) * (7 + i), ts=23 * i))
    return flv(*tags)
