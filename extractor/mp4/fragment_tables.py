"""The per-sample tables of a traf cut to samples [a, b) (fragment_cut.py decides a and b): the trun
runs, the sample auxiliary information (senc entries sliced at saiz's sizes, so that every kept
sample keeps its own IV and subsamples; saiz) and the sample-to-group runs (sbgp)."""

from __future__ import annotations

import struct
from array import array
from itertools import accumulate, chain, repeat

from ..errors import MalformedInput, UnsupportedInput
from . import tables
from .boxes import Box, make_box
from .fragmented import _senc

# tfhd / trun flags (as fragmented.py)
_BASE_DATA_OFFSET, _DESCRIPTION, _DEFAULT_DURATION = 0x01, 0x02, 0x08
_FIRST_FLAGS, _SAMPLE_DURATION, _SAMPLE_SIZE = 0x04, 0x100, 0x200
_SUBSAMPLES = 0x02  # senc: each entry carries its subsample map
_PIFF_OVERRIDE = 0x01  # PIFF senc: AlgorithmID, IV size and KID before the sample count


def _u32(data, at: int) -> int:
    return struct.unpack_from(">I", data, at)[0]


def _same_kind(data, box: Box, payload: bytes) -> bytes:
    """A box of `box`'s kind (a uuid box keeps its user type) with a new payload."""
    if box.type == b"uuid":
        usertype = bytes(data[box.payload - 16 : box.payload])
        return struct.pack(">I4s", 24 + len(payload), b"uuid") + usertype + payload
    return make_box(box.type, payload)


def samples(data, tfhd: Box, runs: list, default_size: int | None, track):
    """(durations, sizes, [(run, its first sample, fields, where its table starts)]) of a traf's samples."""
    flags = _u32(data, tfhd.payload) & 0xFFFFFF
    at = tfhd.payload + 8 + (8 if flags & _BASE_DATA_OFFSET else 0) + (4 if flags & _DESCRIPTION else 0)
    default_duration = _u32(data, at) if flags & _DEFAULT_DURATION else track.default_duration
    durations, sizes, layout = [], [], []
    for run in runs:
        fields = bin(run.flags & 0xF00).count("1")
        table_at = run.rest + (4 if run.flags & _FIRST_FLAGS else 0)
        layout.append((run, len(durations), fields, table_at))
        values = struct.unpack_from(f">{run.count * fields}I", data, table_at) if fields else ()
        column = 0
        if run.flags & _SAMPLE_DURATION:
            durations += values[column::fields]
            column += 1
        elif default_duration is None:
            raise MalformedInput(f"trun at byte {run.box.start} of a moof gives track {track.track_id}'s samples no "
                                 f"duration and there is no default")
        else:
            durations += repeat(default_duration, run.count)
        if run.flags & _SAMPLE_SIZE:
            sizes += values[column::fields]
        else:
            sizes += repeat(default_size or 0, run.count)
    return durations, sizes, layout


def cut_runs(data, layout: list, sizes: list, a: int, b: int) -> list:
    """The runs' parts that hold samples [a, b) of the traf, each with its new start, count, length and
    table (the first-sample flags, if any, then the kept samples' fields)."""
    kept = []
    for run, first, fields, table_at in layout:
        lo, hi = max(a, first), min(b, first + run.count)
        if lo >= hi:
            continue
        run.table = bytes(data[run.rest : table_at]) + bytes(data[table_at + (lo - first) * fields * 4 :
                                                                  table_at + (hi - first) * fields * 4])
        run.start += sum(sizes[first:lo])
        run.count, run.length = hi - lo, sum(sizes[lo:hi])
        kept.append(run)
    return kept


def cut_aux(data, boxes_in: list[Box], n: int, a: int, b: int, track, replaced: dict, run_firsts: list[int]) -> None:
    """senc and saiz cut to samples [a, b); saio must name the senc's first entry, or (one offset a
    trun, as ISO 23001-7 allows) each trun's first entry: it then names the first kept one of each run
    kept once fragmented.py has moved it. run_firsts: the traf's first sample of each trun."""
    senc = _senc(data, boxes_in)
    saiz = next((x for x in boxes_in if x.type == b"saiz"), None)
    saio = next((x for x in boxes_in if x.type == b"saio"), None)
    if senc is None and saiz is None:
        return
    sizes = None
    if saiz is not None:
        p = bytes(data[saiz.payload : saiz.end])
        flags = int.from_bytes(p[1:4], "big") if len(p) >= 4 else 0
        at = 4 + (8 if flags & 1 else 0)
        if len(p) < at + 5:
            raise MalformedInput(f"saiz at byte {saiz.start} of a moof is too short for its fields")
        default, count = p[at], _u32(p, at + 1)
        if count != n:
            raise MalformedInput(f"saiz at byte {saiz.start} of a moof describes {count} samples, its traf has {n}")
        if default:
            sizes = [default] * n
            replaced[saiz.start] = make_box(b"saiz", p[: at + 1] + struct.pack(">I", b - a))
        else:
            if len(p) < at + 5 + n:
                raise MalformedInput(f"saiz at byte {saiz.start} of a moof claims {n} sizes, more than it holds")
            sizes = list(p[at + 5 : at + 5 + n])
            replaced[saiz.start] = make_box(b"saiz", p[: at + 1] + struct.pack(">I", b - a) + p[at + 5 + a : at + 5 + b])
    if senc is None:
        raise UnsupportedInput(f"track {track.track_id} is encrypted with sample auxiliary information outside the "
                               f"senc box of its traf: not cut")
    p = bytes(data[senc.payload : senc.end])  # (PIFF's: after its user type, a full box's fields)
    if len(p) < 8:
        raise MalformedInput(f"senc at byte {senc.start} of a moof is too short for its fields")
    flags = int.from_bytes(p[1:4], "big")
    count_at = 4 + (20 if senc.type == b"uuid" and flags & _PIFF_OVERRIDE else 0)
    if len(p) < count_at + 4:
        raise MalformedInput(f"PIFF senc at byte {senc.start} of a moof is too short for its override fields")
    iv_size = p[count_at - 1 - 16] if count_at > 4 else track.iv_size
    count = _u32(p, count_at)
    if count != n:
        raise MalformedInput(f"senc at byte {senc.start} of a moof describes {count} samples, its traf has {n}")
    entries = count_at + 4
    walked = sizes is None
    if walked:
        sizes = _senc_sizes(p, entries, n, flags, iv_size, senc.start)
    ends = list(accumulate(sizes, initial=entries))
    if ends[-1] > len(p):
        raise MalformedInput(f"senc at byte {senc.start} of a moof holds {len(p)} bytes, its {n} samples' aux "
                             f"information needs {ends[-1]}")
    if not walked and flags & _SUBSAMPLES and iv_size is not None:
        _check_subsample_counts(p, ends, sizes, iv_size, senc.start)
    body = p[:count_at] + struct.pack(">I", b - a) + p[ends[a] : ends[b]]
    replaced[senc.start] = _same_kind(data, senc, body)
    if saio is not None:
        payload = bytes(data[saio.payload : saio.end])
        code, at, offsets = tables.aux_offsets(payload, f"track {track.track_id}")
        firsts = [0] if len(offsets) == 1 else run_firsts
        if len(offsets) != len(firsts) or any(o - offsets[0] != ends[f] - entries for o, f in zip(offsets, firsts)):
            raise UnsupportedInput(f"track {track.track_id}'s saio at byte {saio.start} of a moof has {len(offsets)} "
                                   f"offsets for {len(run_firsts)} truns, not at their first samples' entries in the "
                                   f"senc: the file is not cut (it is extracted without start/end)")
        # Where each kept run's first kept entry begins in the new senc's payload (its header may be
        # shorter than the input's: a 64-bit size is written as 32); the saio gets one offset a kept run.
        kept_firsts = [max(a, f) for f, end in zip(firsts, firsts[1:] + [n]) if max(a, f) < min(b, end)]
        replaced["saio_at"] = [entries + ends[f] - ends[a] for f in kept_firsts]
        if len(offsets) > 1:
            replaced[saio.start] = make_box(b"saio", payload[: at - 4] + struct.pack(f">I{len(kept_firsts)}{code}",
                                                                                   len(kept_firsts), *[0] * len(kept_firsts)))


def _check_subsample_counts(p: bytes, ends: list[int], sizes: list[int], iv_size: int, where: int) -> None:
    """Each senc entry that saiz sizes holds the IV and the subsample map its own count says: a saiz
    that disagrees would hand samples other samples' IVs."""
    for i, (at, size) in enumerate(zip(ends, sizes)):
        if size < iv_size + 2 or size != iv_size + 2 + 6 * int.from_bytes(p[at + iv_size : at + iv_size + 2], "big"):
            raise MalformedInput(f"senc at byte {where} of a moof: sample {i}'s entry is {size} bytes by saiz, its "
                                 f"subsample count says otherwise")


def _senc_sizes(p: bytes, at: int, n: int, flags: int, iv_size: int | None, where: int) -> list[int]:
    """Each senc entry's size, walked (no saiz says them): the IV, then the subsample map when flagged."""
    if iv_size is None:
        raise UnsupportedInput(f"senc at byte {where} of a moof: its IV size is unknown (no saiz, no tenc)")
    if not flags & _SUBSAMPLES:
        return [iv_size] * n
    sizes, pos = [], at
    for _ in range(n):
        if pos + iv_size + 2 > len(p):
            raise MalformedInput(f"senc at byte {where} of a moof ends inside its entries")
        size = iv_size + 2 + 6 * int.from_bytes(p[pos + iv_size : pos + iv_size + 2], "big")
        sizes.append(size)
        pos += size
    return sizes


def cut_sbgp(data, box: Box, n: int, a: int, b: int) -> bytes:
    """A traf's sample-to-group runs cut to samples [a, b) (samples past its runs are in no group)."""
    p = bytes(data[box.payload : box.end])
    head = 12 if p[:1] == b"\x01" else 8  # version 1 carries a grouping_type_parameter
    if len(p) < head + 4:
        raise MalformedInput(f"sbgp at byte {box.start} of a moof is too short for its fields")
    count = _u32(p, head)
    if head + 4 + 8 * count > len(p):
        raise MalformedInput(f"sbgp at byte {box.start} of a moof claims {count} entries, more than it holds")
    pairs = array("I", p[head + 4 : head + 4 + 8 * count])
    if struct.pack("=I", 1) != struct.pack(">I", 1):
        pairs.byteswap()
    counts, groups = pairs[0::2], pairs[1::2]
    if sum(counts) > n:
        raise MalformedInput(f"sbgp at byte {box.start} of a moof covers {sum(counts)} samples, its traf has {n}")
    per_sample = list(chain.from_iterable(map(repeat, groups, counts)))
    per_sample += [0] * (n - len(per_sample))
    kept = per_sample[a:b]
    runs: list[list[int]] = []
    for group in kept:
        if runs and runs[-1][1] == group:
            runs[-1][0] += 1
        else:
            runs.append([1, group])
    return make_box(b"sbgp", p[:head] + struct.pack(f">I{2 * len(runs)}I", len(runs), *chain.from_iterable(runs)))
