"""Rewrites MP4 files into layouts ffmpeg does not write, for tests. Independent of the product's code.

Why not the core's box walker (extractor/mp4/boxes.py): these are the tests' judge and their input
builder. A walker shared with the product would share its misreadings (a size field taken from the
wrong place, a largesize missed) and the tests would agree with the bug. So the tests read boxes
with this small walker of their own, and ffmpeg judges the media; where a test patches a field by
searching for its four-character code (`data.rindex(b"stco")`), it builds a hostile input, it does
not judge one.

Only what the tests need: a faststart file whose top level is ftyp, moov, (free...), mdat.
"""

import struct


def boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, start, header, size) of the boxes that fill data[start:end]; a box may run past the end of
    `data` when only the file's head is at hand."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            return  # a broken size (the fuzzers make them): nothing past it can be walked
        yield kind, pos, header, size
        pos += size


def trafs(data: bytes):
    """(its moof's start, then the traf's start, header, size) for every traf of every top-level moof,
    in file order."""
    for kind, pos, header, size in boxes(data):
        if kind == b"moof":
            for k, p, h, s in boxes(data, pos + header, pos + size):
                if k == b"traf":
                    yield pos, p, h, s


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _rewrite(data: bytes, start: int, end: int, shift: int) -> bytes:
    """The boxes in data[start:end] with every stco turned into a co64 and offsets moved by shift."""
    out = []
    for kind, pos, header, size in boxes(data, start, end):
        if kind in CONTAINERS:
            out.append(box(kind, _rewrite(data, pos + header, pos + size, shift)))
        elif kind == b"stco":
            count = struct.unpack_from(">I", data, pos + 12)[0]
            offsets = struct.unpack_from(f">{count}I", data, pos + 16)
            out.append(box(b"co64", struct.pack(">II", 0, count) + struct.pack(f">{count}Q", *(o + shift for o in offsets))))
        else:
            out.append(data[pos : pos + size])
    return b"".join(out)


def to_64bit(data: bytes) -> bytes:
    """The same file with co64 chunk offsets and an mdat with a 64-bit (largesize) header."""
    top = list(boxes(data))
    moov = next(b for b in top if b[0] == b"moov")
    mdat = next(b for b in top if b[0] == b"mdat")
    assert moov[1] < mdat[1], "faststart input expected"
    # co64 grows the moov by 4 bytes an entry and the largesize header adds 8: size it, then shift.
    grown = len(_rewrite(data, moov[1], moov[1] + moov[3], 0)) - moov[3]
    new_moov = _rewrite(data, moov[1], moov[1] + moov[3], grown + 8)
    payload = data[mdat[1] + mdat[2] : mdat[1] + mdat[3]]
    head = data[: moov[1]] + new_moov + data[moov[1] + moov[3] : mdat[1]]
    return head + struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload + data[mdat[1] + mdat[3] :]
