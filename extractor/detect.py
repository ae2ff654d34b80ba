"""Which container a body is, from its first bytes (never from headers: the core knows none)."""

from .errors import UnsupportedInput

FLV = "flv"
MP4 = "mp4"
TS = "ts"

# Box types that may open an ISO BMFF / QuickTime file.
_MP4_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin",
                    b"sidx", b"moof", b"uuid", b"junk", b"pnot"}

# Bytes needed before `detect` can answer for FLV and MP4; MPEG-TS needs TS_SYNCS packets' sync bytes.
NEEDED = 8
TS_SIZE, M2TS_SIZE = 188, 192
TS_SYNCS = 3
TS_NEEDED = (TS_SYNCS - 1) * M2TS_SIZE + 5


def ts_packet_size(head: bytes, final: bool = False) -> int | None:
    """188 (MPEG-TS) or 192 (M2TS: a 4-byte prefix before each packet) when the head has sync bytes
    0x47 one packet apart TS_SYNCS times in a row (fewer when `final` and the input is that short);
    0 when it is not TS; None when more bytes are needed to tell."""
    head = bytes(head[:TS_NEEDED])
    undecided = False
    for size, offset in ((TS_SIZE, 0), (M2TS_SIZE, 4)):
        if len(head) <= offset or head[offset] != 0x47:
            continue
        syncs = head[offset : offset + (TS_SYNCS - 1) * size + 1 : size]
        if syncs.count(b"G") == len(syncs) and (len(syncs) == TS_SYNCS or (final and len(head) % size == 0)):
            return size
        if syncs.count(b"G") == len(syncs):
            undecided = True
    return None if undecided else 0


def detect(head: bytes, final: bool = False) -> str | None:
    """Return FLV, MP4 or TS, None if more bytes are needed, or raise UnsupportedInput. `final`: the
    head is the whole input."""
    if bytes(head[:3]) == b"FLV":
        return FLV
    if len(head) < NEEDED and not final:
        return None
    if bytes(head[4:8]) in _MP4_FIRST_BOXES:
        return MP4
    size = ts_packet_size(head, final)
    if size is None:
        return None
    if size:
        return TS
    raise UnsupportedInput(f"body is neither FLV, MP4 nor MPEG-TS: it starts with {bytes(head[:16])!r}")
