"""A fragmented file's moov made ready to plan: what ffmpeg writes in an encrypted track's empty
sample table (an empty senc, and a saio whose offset names no senc) describes no sample and is
dropped, so that its offsets, which point nowhere, do not get the file refused."""

from __future__ import annotations

import struct

from .boxes import Box, children, make_box

_AUX_BOXES = (b"senc", b"saio", b"saiz")


def without_empty_aux(moov: bytes) -> bytes:
    """A fragmented file's moov (the whole box) without the sample auxiliary information of sample
    tables that hold no sample (ffmpeg writes an empty senc, and a saio whose offset names no senc,
    in each encrypted track of an empty moov): it describes nothing, and its offsets, which point
    nowhere, would otherwise be refused. The moov as it is when there is none."""
    header = 16 if int.from_bytes(moov[:4], "big") == 1 else 8
    moov_box = Box(b"moov", 0, header, len(moov))
    if _empty_stbl_with_aux(moov, moov_box) is None:
        return moov

    def rebuilt(box: Box, path: tuple) -> bytes:
        if not path:  # the stbl: its aux boxes go when it has no sample
            inner = list(children(moov, box.payload, box.end))
            sizes = next((b for b in inner if b.type in (b"stsz", b"stz2")), None)
            if sizes is None or sizes.size - sizes.header < 12 or struct.unpack_from(">I", moov, sizes.payload + 8)[0]:
                return bytes(moov[box.start : box.end])
            return make_box(box.type, b"".join(bytes(moov[b.start : b.end]) for b in inner if b.type not in _AUX_BOXES))
        return make_box(box.type, b"".join(rebuilt(b, path[1:]) if b.type == path[0] else bytes(moov[b.start : b.end])
                                           for b in children(moov, box.payload, box.end)))

    return make_box(b"moov", b"".join(rebuilt(b, (b"mdia", b"minf", b"stbl")) if b.type == b"trak"
                                      else bytes(moov[b.start : b.end]) for b in children(moov, header, len(moov))))


def _empty_stbl_with_aux(moov: bytes, moov_box: Box) -> Box | None:
    """The first stbl of a trak (of a moov with an mvex) that holds aux boxes and no sample, or None."""
    if not any(b.type == b"mvex" for b in children(moov, moov_box.payload, moov_box.end)):
        return None
    for trak in (b for b in children(moov, moov_box.payload, moov_box.end) if b.type == b"trak"):
        box = trak
        for kind in (b"mdia", b"minf", b"stbl"):
            box = next((b for b in children(moov, box.payload, box.end) if b.type == kind), None) if box else None
        if box is None:
            continue
        inner = list(children(moov, box.payload, box.end))
        sizes = next((b for b in inner if b.type in (b"stsz", b"stz2")), None)
        if (sizes is not None and sizes.size - sizes.header >= 12 and not struct.unpack_from(">I", moov, sizes.payload + 8)[0]
                and any(b.type in _AUX_BOXES for b in inner)):
            return box
    return None
