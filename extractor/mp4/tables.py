"""Sample tables in bulk: one array construction per table, never a Python loop per sample.

A two-hour 60 fps video holds hundreds of thousands of entries per table, a hostile moov of 64 MiB
millions: tables stay arrays (8 bytes an entry at most) from parse to output.
"""

import struct
import sys
from array import array
from itertools import accumulate, chain, compress, repeat
from operator import gt, le, mul, or_, sub

from ..errors import MalformedInput, UnsupportedInput
from .boxes import make_box

_SWAP = sys.byteorder == "little"


class SeekNotPossible(UnsupportedInput):
    """This track's layout does not allow a cut (the whole audio is sent instead)."""

# Nibble tables for stz2's 4-bit sizes: high half first.
_HIGH = bytes(b >> 4 for b in range(256))
_LOW = bytes(b & 15 for b in range(256))


def _array(code: str, data, count: int, what: str) -> array:
    itemsize = array(code).itemsize
    if count * itemsize > len(data):
        raise MalformedInput(f"{what} claims {count} entries but holds room for {len(data) // itemsize}")
    a = array(code, bytes(data[: count * itemsize]))
    if _SWAP:
        a.byteswap()
    return a


def _full_box(payload, what: str, fixed: int) -> None:
    if len(payload) < 4 + fixed:
        raise MalformedInput(f"{what} is {len(payload)} bytes, too short for its fields")


def sample_sizes(kind: bytes, payload) -> tuple[int, int, array | None]:
    """(constant size or 0, sample count, per-sample sizes or None) from stsz or stz2."""
    what = kind.decode()
    _full_box(payload, what, 8)
    if kind == b"stsz":
        constant, count = struct.unpack_from(">II", payload, 4)
        if constant:
            return constant, count, None
        return 0, count, _array("I", payload[12:], count, what)
    field_size = payload[7]
    (count,) = struct.unpack_from(">I", payload, 8)
    body = payload[12:]
    if field_size == 16:
        return 0, count, _array("H", body, count, what)
    if field_size == 8:
        return 0, count, _array("B", body, count, what)
    if field_size == 4:
        packed = bytes(body[: (count + 1) // 2])
        if len(packed) * 2 < count:
            raise MalformedInput(f"stz2 claims {count} 4-bit entries but holds room for {len(body) * 2}")
        nibbles = bytearray(2 * len(packed))
        nibbles[0::2] = packed.translate(_HIGH)
        nibbles[1::2] = packed.translate(_LOW)
        return 0, count, array("B", nibbles[:count])
    raise MalformedInput(f"stz2 field size is {field_size}, not 4, 8 or 16")


def sample_to_chunk(payload) -> tuple[array, array]:
    """(first chunk numbers, samples per chunk) of each stsc run."""
    _full_box(payload, "stsc", 4)
    (count,) = struct.unpack_from(">I", payload, 4)
    entries = _array("I", payload[8:], count * 3, "stsc")
    return entries[0::3], entries[1::3]


def chunk_offsets(kind: bytes, payload) -> array:
    _full_box(payload, kind.decode(), 4)
    (count,) = struct.unpack_from(">I", payload, 4)
    return _array("I" if kind == b"stco" else "Q", payload[8:], count, kind.decode())


def samples_per_chunk(first_chunks: array, per_chunk: array, chunk_count: int) -> array:
    """How many samples each chunk holds, expanded from the stsc runs."""
    if chunk_count and (not first_chunks or first_chunks[0] != 1):
        raise MalformedInput("stsc does not start at chunk 1")
    bounds = array("q", first_chunks[1:])
    bounds.append(chunk_count + 1)
    lengths = array("q", map(sub, bounds, first_chunks))  # chunks in each run
    # (bulk: an stsc of a run per chunk, as interleaved files have, is tens of thousands of runs)
    if any(map(le, lengths, repeat(0))) or any(map(gt, bounds, repeat(chunk_count + 1))):
        bad = next(compress(first_chunks, map(or_, map(le, lengths, repeat(0)), map(gt, bounds, repeat(chunk_count + 1)))))
        raise MalformedInput(f"stsc run at chunk {bad} is out of order or past the {chunk_count} chunks")
    return array("q", chain.from_iterable(map(repeat, per_chunk, lengths)))


def chunk_sizes(counts: array, constant: int, sizes: array | None, sample_count: int) -> array:
    """Bytes in each chunk: the sum of the sizes of the samples it holds."""
    total = sum(counts)
    if total != sample_count:
        raise MalformedInput(f"stsc places {total} samples in chunks but the sample size table has {sample_count}")
    if constant:
        return array("q", map(mul, counts, repeat(constant)))
    if len(counts) == sample_count and all(counts):  # one sample a chunk
        return array("q", sizes)
    ends = array("q", accumulate(sizes, initial=0))  # ends[i]: bytes before sample i
    at_firsts = array("q", map(ends.__getitem__, accumulate(counts, initial=0)))
    return array("q", map(sub, at_firsts[1:], at_firsts[:-1]))


def build_chunk_offsets(offsets, wide: bool) -> bytes:
    """An stco (or co64 when wide) box payload."""
    code = "Q" if wide else "I"
    a = array(code, offsets)
    if _SWAP:
        a.byteswap()
    return struct.pack(">II", 0, len(offsets)) + a.tobytes()


def aux_offsets(payload, what: str) -> tuple[str, int, array]:
    """A saio box's offsets: (their struct code, 'I' or 'Q' by version; where they start in the payload,
    after aux_info_type and its parameter when flagged; the offsets). Patch them in place with
    struct.pack_into(f">{n}{code}", ..., payload start + at, *new)."""
    version, flags = (payload[0], int.from_bytes(payload[1:4], "big")) if len(payload) >= 4 else (0, 0)
    count_at = 4 + (8 if flags & 1 else 0)
    if len(payload) < count_at + 4:
        raise MalformedInput(f"saio of {what} is {len(payload)} bytes, too short for its fields")
    (count,) = struct.unpack_from(">I", payload, count_at)
    code = "Q" if version else "I"  # (_array refuses a count the box has no room for)
    return code, count_at + 4, _array(code, payload[count_at + 4 :], count, f"saio of {what}")


def aux_sizes(payload, what: str) -> tuple[int, int, array | None]:
    """A saiz box: (default size or 0, sample count, per-sample sizes or None), as sample_sizes."""
    flags = int.from_bytes(payload[1:4], "big") if len(payload) >= 4 else 0
    at = 4 + (8 if flags & 1 else 0)
    if len(payload) < at + 5:
        raise MalformedInput(f"saiz of {what} is {len(payload)} bytes, too short for its fields")
    default, count = payload[at], int.from_bytes(payload[at + 1 : at + 5], "big")
    if default:
        return default, count, None
    return 0, count, _array("B", payload[at + 5 :], count, f"saiz of {what}")


def cut_aux(saiz, saio, senc, samples: int, first: int, last: int, kept_chunks: list, chunks: int,
            what: str) -> tuple[dict[bytes, bytes], array, array, int]:
    """Sample auxiliary information (CENC: each sample's IV and subsamples) cut to samples [first, last),
    from the payloads of saiz, saio and senc (None when absent). kept_chunks: (input chunk, its first
    sample, first and end kept sample) of each output chunk. Returns the new saiz, saio (its offsets
    zero: the planner places them) and senc, the input offset and size of each aux block the new saio
    points at (one for the track when the input had one, else one an output chunk), and the bytes of
    senc entries dropped before the kept ones. Every kept sample keeps its own aux bytes: the entries
    are sliced, in bulk, at saiz's cumulative sizes."""
    if saiz is None:
        raise SeekNotPossible(f"{what} has sample auxiliary information without a saiz: the size of each "
                              f"sample's is unknown, so it is not cut")
    default, count, sizes = aux_sizes(saiz, what)
    if count != samples:
        raise MalformedInput(f"saiz of {what} describes {count} samples, the track has {samples}")
    ends = array("q", accumulate(sizes, initial=0)) if sizes is not None else None

    def end(i: int) -> int:  # aux bytes of the samples before sample i
        return ends[i] if ends is not None else i * default

    at = 4 + (8 if int.from_bytes(saiz[1:4], "big") & 1 else 0)  # after aux_info_type and its parameter
    out = {b"saiz": make_box(b"saiz", bytes(saiz[: at + 1]) + struct.pack(">I", last - first)
                             + (sizes[first:last].tobytes() if sizes is not None else b""))}
    offsets, lengths = array("q"), array("q")
    if saio is not None:
        code, count_at, inputs = aux_offsets(saio, what)
        try:
            if len(inputs) == 1:  # one block for the track: the kept samples' part of it
                offsets.append(inputs[0] + end(first))
                lengths.append(end(last) - end(first))
            elif len(inputs) == chunks:  # one a chunk: the kept part of each kept chunk's
                for chunk, chunk_first, a, b in kept_chunks:
                    offsets.append(inputs[chunk] + end(a) - end(chunk_first))
                    lengths.append(end(b) - end(a))
            else:
                raise SeekNotPossible(f"saio of {what} has {len(inputs)} offsets for {chunks} chunks: it needs one, "
                                      f"or one a chunk, to be cut")
        except OverflowError:
            raise MalformedInput(f"saio of {what} points past byte 2^63") from None
        width = 8 if code == "Q" else 4
        out[b"saio"] = make_box(b"saio", bytes(saio[: count_at - 4]) + struct.pack(">I", len(offsets))
                                + bytes(width * len(offsets)))
    dropped = 0
    if senc is not None:
        fixed = 4 + (20 if len(senc) >= 4 and senc[3] & 1 else 0)  # flag 1: PIFF's algorithm, IV size, KID
        if len(senc) < fixed + 4:
            raise MalformedInput(f"senc of {what} is {len(senc)} bytes, too short for its fields")
        (entries,) = struct.unpack_from(">I", senc, fixed)
        body = fixed + 4
        if entries != samples or len(senc) - body != end(samples):
            raise SeekNotPossible(f"senc of {what} holds {entries} entries in {len(senc) - body} bytes where saiz "
                                  f"gives {samples} samples {end(samples)} bytes: which entry is whose is unclear, so "
                                  f"it is not cut")
        out[b"senc"] = make_box(b"senc", bytes(senc[:fixed]) + struct.pack(">I", last - first)
                                + bytes(senc[body + end(first) : body + end(last)]))
        dropped = end(first)
    return out, offsets, lengths, dropped
