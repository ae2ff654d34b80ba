"""Fragmented MP4 (moof + mdat pairs, CMAF, DASH): one moof in, an audio-only moof out.

Each audio traf keeps its samples; video trafs go. A trun's data is found by the rule the input used
(an explicit base_data_offset, default-base-is-moof, or the implicit rule: the moof for the first
traf, the end of the previous traf's data for the next). Every output traf uses default-base-is-moof
with an explicit data offset into the mdat that follows it, which holds only the audio, in input order.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from ..errors import MalformedInput, UnsupportedInput
from . import tables
from .boxes import Box, children, make_box, mdat_header
from .cut import MAX_CUT_SAMPLES, SeekNotPossible
from .ranges import Ranges, first_overlap

PASSED_ON = {b"styp", b"emsg", b"prft"}  # small boxes between fragments that players may want

# tfhd flags
BASE_DATA_OFFSET = 0x000001
SAMPLE_DESCRIPTION_INDEX = 0x000002
DEFAULT_DURATION = 0x000008
DEFAULT_SIZE = 0x000010
DEFAULT_FLAGS = 0x000020
DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags
DATA_OFFSET = 0x000001
FIRST_SAMPLE_FLAGS = 0x000004
SAMPLE_DURATION, SAMPLE_SIZE, SAMPLE_FLAGS, SAMPLE_CTO = 0x100, 0x200, 0x400, 0x800

_SWAP = sys.byteorder == "little"


def trex_defaults(data, mvex: Box, field: str = "size") -> dict[int, int]:
    """track_ID -> its default_sample_size (or, with field="duration", default_sample_duration) from
    the moov's mvex/trex boxes."""
    skipped = {"duration": 4, "size": 8}[field]  # after track_ID: the description index, the duration
    values = {}
    for box in children(data, mvex.payload, mvex.end):
        if box.type == b"trex" and box.size - box.header >= 24:
            track_id, value = struct.unpack_from(f">I{skipped}xI", data, box.payload + 4)
            values[track_id] = value
    return values


@dataclass
class _Run:
    box: Box
    flags: int
    count: int
    rest: int  # where the fields after data_offset start, in the moof buffer
    start: int  # absolute input offset of its data
    length: int
    out: int = 0  # its data's offset in the output mdat payload
    table: bytes | None = None  # a cut run's fields after data_offset (None: the input's, as they are)


def _tfhd(data, box: Box) -> tuple[int, int, int | None, int | None, int]:
    """(flags, track_id, base_data_offset, default_sample_size, end of the fixed fields)."""
    p = box.payload
    if box.size - box.header < 8:
        raise MalformedInput(f"tfhd at byte {box.start} of a moof is too short")
    flags = struct.unpack_from(">I", data, p)[0] & 0xFFFFFF
    track_id = struct.unpack_from(">I", data, p + 4)[0]
    pos, base, size = p + 8, None, None
    for flag, width in ((BASE_DATA_OFFSET, 8), (SAMPLE_DESCRIPTION_INDEX, 4), (DEFAULT_DURATION, 4),
                        (DEFAULT_SIZE, 4), (DEFAULT_FLAGS, 4)):
        if flags & flag:
            if pos + width > box.end:
                raise MalformedInput(f"tfhd at byte {box.start} of a moof is shorter than its flags say")
            value = struct.unpack_from(">Q" if width == 8 else ">I", data, pos)[0]
            base = value if flag == BASE_DATA_OFFSET else base
            size = value if flag == DEFAULT_SIZE else size
            pos += width
    return flags, track_id, base, size, pos


def _trun(data, box: Box, default_size: int | None, start_if_implicit: int, base: int) -> _Run:
    p = box.payload
    if box.size - box.header < 8:
        raise MalformedInput(f"trun at byte {box.start} of a moof is too short")
    flags = struct.unpack_from(">I", data, p)[0] & 0xFFFFFF
    count = struct.unpack_from(">I", data, p + 4)[0]
    pos = p + 8
    start = start_if_implicit
    if flags & DATA_OFFSET:
        start = base + struct.unpack_from(">i", data, pos)[0]
        pos += 4
    rest = pos
    if flags & FIRST_SAMPLE_FLAGS:
        pos += 4
    fields = bin(flags & 0xF00).count("1")
    if count * fields * 4 > box.end - pos:
        raise MalformedInput(f"trun at byte {box.start} of a moof claims {count} samples, more than it holds")
    if flags & SAMPLE_SIZE:
        table = array("I", bytes(data[pos : pos + count * fields * 4]))
        if _SWAP:
            table.byteswap()
        column = 1 if flags & SAMPLE_DURATION else 0
        length = sum(table[column::fields])
    elif default_size is None:
        raise MalformedInput(f"trun at byte {box.start} of a moof gives no sample sizes and there is no default")
    else:
        length = count * default_size
    return _Run(box, flags, count, rest, start, length)


def rewrite_moof(data: bytes, moof_start: int, audio_ids: set[int], trex: dict[int, int], cut=None):
    """(output moof + mdat header, sorted input ranges of the audio) for the moof in `data` (the whole
    box, header included, found at input offset moof_start); None when it carries no audio. With `cut`
    (fragment_cut.FragmentCut, seeking), each audio traf keeps only the samples of the cut; a traf
    left with none goes."""
    moof = Box(b"moof", 0, 8 if struct.unpack_from(">I", data)[0] != 1 else 16, len(data))
    kept: list[tuple] = []  # traf, tfhd flags, end of tfhd fields, runs, its encryption's aux info (or None),
    # and the boxes a cut replaced (by offset in the moof; see FragmentCut.traf)
    others: list[tuple[int, int]] = []  # data of the trafs that go
    previous_end = moof_start
    claimed = 0  # audio samples the moof's truns claim (a cut expands them into per-sample lists)
    for n, traf in enumerate(b for b in children(data, moof.payload, moof.end) if b.type == b"traf"):
        boxes_in = list(children(data, traf.payload, traf.end))
        tfhd = next((b for b in boxes_in if b.type == b"tfhd"), None)
        if tfhd is None:
            raise MalformedInput(f"traf at byte {moof_start + traf.start} has no tfhd")
        flags, track_id, base, default_size, fields_end = _tfhd(data, tfhd)
        explicit_base = base
        if base is None:
            base = moof_start if flags & DEFAULT_BASE_IS_MOOF or n == 0 else previous_end
        default_size = default_size if default_size is not None else trex.get(track_id)
        runs, next_start = [], base
        for box in boxes_in:
            if box.type == b"trun":
                run = _trun(data, box, default_size, next_start, base)
                runs.append(run)
                next_start = run.start + run.length
        previous_end = next_start
        if track_id in audio_ids:
            replaced = {}
            if cut is not None:
                claimed += sum(run.count for run in runs)
                if claimed > MAX_CUT_SAMPLES:  # a trun without per-sample fields claims any count in 20 bytes
                    raise SeekNotPossible(f"the fragment at byte {moof_start} claims {claimed} audio samples, more "
                                          f"than a cut handles in one fragment ({MAX_CUT_SAMPLES})")
                done = cut.traf(data, track_id, tfhd, boxes_in, runs, default_size)
                if done is None:
                    continue  # none of its samples is in the cut
                runs, replaced = done
            aux = _aux(data, boxes_in, moof_start, explicit_base, track_id)
            kept.append((traf, flags, fields_end, runs, aux, replaced))
        else:
            others += [(r.start, r.start + r.length) for r in runs]
    if not kept:
        return None

    runs = sorted((r for *_, rs, _aux_info, _replaced in kept for r in rs), key=lambda r: r.start)
    ranges, out, prev_end = [], 0, moof_start + len(data)
    for run in runs:
        if run.start < prev_end:
            raise MalformedInput(f"audio sample data at byte {run.start} overlaps the moof or other samples")
        run.out = out
        out += run.length
        if ranges and ranges[-1][1] == run.start:
            ranges[-1] = (ranges[-1][0], run.start + run.length)
        elif run.length:
            ranges.append((run.start, run.start + run.length))
        prev_end = run.start + run.length

    ranges = Ranges.of(ranges)
    if hit := first_overlap(ranges, array("q", (s for s, _ in others)), array("q", (e - s for s, e in others))):
        raise MalformedInput(f"audio data at byte {hit[0]} overlaps another track's samples at byte {hit[1]}")
    # Data offsets are relative to the output moof, whose size does not depend on their values.
    size = len(_moof(data, moof, kept, 0))
    header = mdat_header(out)
    if size + len(header) + out > 0x7FFFFFFF:
        raise UnsupportedInput(f"the fragment at byte {moof_start} holds over 2 GiB of audio, past a trun's data offset")
    new_moof = _moof(data, moof, kept, size + len(header))
    if any(k[4] for k in kept):
        new_moof = _move_aux(new_moof, kept, moof_start)
    return new_moof + header, ranges


def _moof(data, moof: Box, kept, first_data: int) -> bytes:
    parts = []
    for box in children(data, moof.payload, moof.end):
        if box.type != b"traf":
            parts.append(data[box.start : box.end])
            continue
        match = next((k for k in kept if k[0].start == box.start), None)
        if match is None:
            continue
        traf, flags, fields_end, runs, _aux_info, replaced = match
        by_start = {r.box.start: r for r in runs}
        inner = []
        for child in children(data, traf.payload, traf.end):
            if child.start in replaced:
                if replaced[child.start] is not None:
                    inner.append(replaced[child.start])
            elif child.type == b"tfhd":
                new_flags = (flags & ~BASE_DATA_OFFSET) | DEFAULT_BASE_IS_MOOF
                version = data[child.payload]
                fields = data[child.payload + 4 : fields_end]
                if flags & BASE_DATA_OFFSET:
                    fields = fields[:4] + fields[12:]  # track_ID, then drop the 8-byte base
                inner.append(make_box(b"tfhd", struct.pack(">I", version << 24 | new_flags) + bytes(fields)
                                      + bytes(data[fields_end : child.end])))
                if "tfdt" in replaced:  # a cut traf that had no tfdt: its decode time, after the tfhd
                    inner.append(replaced["tfdt"])
            elif child.type == b"trun":
                run = by_start.get(child.start)
                if run is None:
                    continue  # a cut left none of its samples
                version = data[child.payload]
                table = bytes(data[run.rest : child.end]) if run.table is None else run.table
                inner.append(make_box(b"trun", struct.pack(">IIi", version << 24 | run.flags | DATA_OFFSET, run.count,
                                                           first_data + run.out) + table))
            else:
                inner.append(data[child.start : child.end])
        parts.append(make_box(b"traf", b"".join(inner)))
    return make_box(b"moof", b"".join(parts))


PIFF_SENC = bytes.fromhex("a2394f525a9b4f14a2446c427c648df4")  # PIFF's senc, in a uuid box


def _senc(data, boxes_in: list[Box]) -> Box | None:
    """A traf's senc box, or PIFF's senc (a uuid box: Box.payload starts after its 16-byte user type)."""
    return next((b for b in boxes_in if b.type == b"senc"
                 or (b.type == b"uuid" and bytes(data[b.payload - 16 : b.payload]) == PIFF_SENC)), None)


@dataclass
class _Aux:
    """Where an encrypted traf's sample auxiliary information is: its saio's offsets (absolute in the
    input) and the senc box (in the moof) they point into."""
    offsets: list[int]
    senc_start: int  # in the moof's bytes


def _aux(data, boxes_in: list[Box], moof_start: int, explicit_base: int | None, track_id: int) -> _Aux | None:
    """An audio traf's aux info, checked to lie in its own senc (or PIFF senc); None without a saio
    (clear, or PIFF without saio: the senc then simply travels with the traf)."""
    saio = next((b for b in boxes_in if b.type == b"saio"), None)
    if saio is None:
        return None
    if sum(b.type == b"saio" for b in boxes_in) > 1 or sum(b.type == b"saiz" for b in boxes_in) > 1:
        raise UnsupportedInput(f"audio track {track_id} has several saio or saiz boxes in a traf (sample auxiliary "
                               f"information of several types): not supported")
    senc = _senc(data, boxes_in)
    _, _, offsets = tables.aux_offsets(data[saio.payload : saio.end], f"track {track_id}")
    # saio offsets in a traf count from the base data offset when tfhd gives one, else from the moof.
    base = explicit_base if explicit_base is not None else moof_start
    absolute = [base + o for o in offsets]
    if senc is None or not all(moof_start + senc.start <= o < moof_start + senc.end for o in absolute):
        raise UnsupportedInput(f"audio track {track_id} is encrypted with sample auxiliary information outside "
                               f"the senc box of its traf: not supported yet")
    return _Aux(absolute, senc.start)


def _move_aux(new_moof: bytes, kept: list, moof_start: int) -> bytes:
    """Each kept traf's saio offsets moved with its senc to the new moof: they count from the new moof's
    first byte (every output traf is default-base-is-moof, with no base data offset)."""
    out = bytearray(new_moof)
    header = 8 if struct.unpack_from(">I", out)[0] != 1 else 16
    new_trafs = [b for b in children(out, header, len(out)) if b.type == b"traf"]
    for (*_, aux, replaced), traf in zip(kept, new_trafs):
        if aux is None:
            continue
        inner = list(children(out, traf.payload, traf.end))
        senc = _senc(out, inner)
        saio = next(b for b in inner if b.type == b"saio")
        code, at_offsets, _ = tables.aux_offsets(out[saio.payload : saio.end], "a traf")
        if "saio_at" in replaced:  # a cut senc: each offset names a kept run's first kept entry
            moved = [senc.payload + at for at in replaced["saio_at"]]
        else:
            moved = [senc.start + (o - (moof_start + aux.senc_start)) for o in aux.offsets]
        struct.pack_into(f">{len(moved)}{code}", out, saio.payload + at_offsets, *moved)
    return bytes(out)

