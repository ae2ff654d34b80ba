"""Which container a body is, from its first bytes (never from headers: the core knows none)."""

from .errors import UnsupportedInput

FLV = "flv"
MP4 = "mp4"

# Box types that may open an ISO BMFF / QuickTime file.
_MP4_FIRST_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin",
                    b"sidx", b"moof", b"uuid", b"junk", b"pnot"}

# Bytes needed before `detect` can answer for any input.
NEEDED = 8


def detect(head: bytes) -> str | None:
    """Return FLV or MP4, None if more bytes are needed, or raise UnsupportedInput."""
    if bytes(head[:3]) == b"FLV":
        return FLV
    if len(head) < NEEDED:
        return None
    if bytes(head[4:8]) in _MP4_FIRST_BOXES:
        return MP4
    raise UnsupportedInput(f"body is neither FLV nor MP4: it starts with {bytes(head[:16])!r}")
