"""An audio track cut to a time range (seeking): which samples stay, and the tables that say so.

Every audio frame is a sync point, so the cut is precise to one frame: from the frame holding `start`
to the frame holding `end`. A decoder needs the frames before the first one it plays (AAC's overlap,
MP3's bit reservoir, Opus's pre-roll), so those stay too and the new edit list hides them, together
with the part of the first frame before `start`: playback begins at `start` exactly. How many: the
'roll' sample group's distance, and at least PREROLL_MS of frames. Measured with ffmpeg against a full
decode trimmed at the same time: AAC is exact with one frame; MP3 needed 3 (78 ms) and Opus 8 (160 ms),
with fewer ffmpeg's playback came out 50 ms early. A few kilobytes buy a start that is right everywhere. Sample tables (stts, stsz, stsc, stco, and ctts, stss, sdtp, sbgp when present)
are cut to the kept samples; chunks that the cut crosses are shortened.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from itertools import accumulate, chain, groupby, repeat

from ..errors import MalformedInput, SeekPastEnd
from ..seek import SeekRange
from . import tables
from .boxes import Box, children, find, make_box
from .tables import SeekNotPossible  # (plan and the fragmented cut import it from here)

PREROLL_MS = 200
# Cutting works on per-sample lists; above this many samples (24 hours of AAC; raw PCM counts every
# sample) the whole audio is sent instead of holding lists that large for one response.
MAX_CUT_SAMPLES = 4_000_000
PCM = {b"lpcm", b"sowt", b"twos", b"in24", b"in32", b"fl32", b"fl64", b"ipcm", b"fpcm", b"raw "}


def _payload(data, box: Box):
    return data[box.payload : box.end]


def _full(kind: bytes, version_flags: int, body: bytes) -> bytes:
    return make_box(kind, struct.pack(">I", version_flags) + body)


def _runs(values) -> tuple[list[int], list[int]]:
    """Run-length encoding: (counts, values)."""
    counts, kept = [], []
    for value, run in groupby(values):
        counts.append(sum(1 for _ in run))
        kept.append(value)
    return counts, kept


def _expand(counts, values, total: int | None = None, what: str = "table") -> list[int]:
    """Runs to one value per sample, after checking they cover `total` samples (never expanding
    counts that a hostile file made up)."""
    covered = sum(counts)
    if total is not None and covered != total:
        raise MalformedInput(f"{what} covers {covered} samples, the sample table has {total}")
    if covered > MAX_CUT_SAMPLES:
        raise SeekNotPossible(f"{covered} samples are too many to cut")
    return list(chain.from_iterable(map(repeat, values, counts)))


def _count(payload, offset: int, what: str) -> int:
    """The u32 at `offset` (an entry count), or MalformedInput for a box too short to hold it."""
    if len(payload) < offset + 4:
        raise MalformedInput(f"{what} is {len(payload)} bytes, too short for its fields")
    return struct.unpack_from(">I", payload, offset)[0]


def _pairs(payload, offset: int, what: str) -> tuple[list[int], list[int]]:
    """The (count, value) u32 pairs of a table whose entry count sits at `offset`."""
    n = _count(payload, offset, what)
    entries = tables._array("I", payload[offset + 4 :], 2 * n, what)
    return list(entries[0::2]), list(entries[1::2])


def media_header(data, trak: Box) -> tuple[int, Box]:
    mdia = find(data, trak, b"mdia")
    mdhd = find(data, mdia, b"mdhd") if mdia else None
    if mdhd is None:
        raise MalformedInput(f"trak at byte {trak.start} has no mdhd")
    p = _payload(data, mdhd)
    if len(p) < (24 if p[:1] == b"\x01" else 16):
        raise MalformedInput(f"mdhd of the trak at byte {trak.start} is {len(p)} bytes, too short")
    timescale = struct.unpack_from(">I", p, 20 if p[0] == 1 else 12)[0]
    if not timescale:
        raise MalformedInput(f"mdhd of the trak at byte {trak.start} has a timescale of 0")
    return timescale, mdhd


def edit_offset(data, trak: Box, movie_timescale: int, media_timescale: int) -> tuple[int, int]:
    """(presentation delay in media units, media time where presentation starts) from the edit list:
    an optional empty edit, then one normal edit at rate 1; anything else is refused."""
    edts = find(data, trak, b"edts")
    elst = find(data, edts, b"elst") if edts else None
    if elst is None:
        return 0, 0
    p = _payload(data, elst)
    if len(p) < 8:
        raise MalformedInput(f"elst is {len(p)} bytes, too short for its fields")
    version, count = p[0], _count(p, 4, "elst")
    width = 20 if version == 1 else 12
    fmt = ">Qqhh" if version == 1 else ">Iihh"
    if 8 + count * width > len(p):
        raise MalformedInput("elst claims more entries than it holds")
    edits = [struct.unpack_from(fmt, p, 8 + i * width) for i in range(count)]
    delay = 0
    while edits and edits[0][1] == -1:
        delay += edits.pop(0)[0] * media_timescale // movie_timescale
    if len(edits) > 1 or (edits and edits[0][2] != 1):
        raise SeekNotPossible(f"an edit list of {count} entries: seeking needs at most an empty edit and one at rate 1")
    return delay, edits[0][1] if edits else 0


def _video_times(data, track, found: dict, durations: list[int]) -> tuple[list[int], list[int]]:
    """(presentation times in media units, sync sample indexes) of a video track."""
    dts = list(accumulate(durations, initial=0))[:-1]
    if box := found.get(b"ctts"):
        counts, offsets = _pairs(_payload(data, box), 4, "ctts")
        shifts = _expand(counts, offsets, len(dts), "ctts")
        shifts = [o - (1 << 32) if o >= 1 << 31 else o for o in shifts]  # version 1 offsets are signed
        pts = list(map(int.__add__, dts, shifts))
    else:
        pts = dts
    if box := found.get(b"stss"):
        p = _payload(data, box)
        n = _count(p, 4, "stss")
        syncs = [s - 1 for s in tables._array("I", p[8:], n, "stss") if 0 < s <= len(dts)]
    else:
        syncs = list(range(len(dts)))
    return pts, syncs


def keyframe_time(data, track, seek: SeekRange, movie_timescale: int) -> int:
    """The presentation time (ms) of the video's keyframe at or before `seek.start`: where plain video
    seeking starts every track, so that they stay in step."""
    timescale, _ = media_header(data, track.box)
    delay, media_start = edit_offset(data, track.box, movie_timescale, timescale)
    found = _stbl_boxes(data, track.box)
    counts, deltas = _pairs(_payload(data, found[b"stts"]), 4, "stts")
    pts, syncs = _video_times(data, track, found, _expand(counts, deltas, None, "stts"))
    target = seek.start * timescale // 1000 - delay + media_start
    before = [pts[i] for i in syncs if pts[i] <= target]
    when = max(before) if before else min((pts[i] for i in syncs), default=0)
    return max(0, (when - media_start + delay) * 1000 // timescale)


def _stbl(data, trak: Box) -> Box:
    return find(data, find(data, find(data, trak, b"mdia"), b"minf"), b"stbl")


def _all(data, trak: Box, kind: bytes) -> list[Box]:
    """Every box of one type in the sample table (sbgp, sgpd: one per grouping type, roll and seig)."""
    stbl = _stbl(data, trak)
    return [b for b in children(data, stbl.payload, stbl.end) if b.type == kind]


def _stbl_boxes(data, trak: Box) -> dict:
    """The sample table's boxes by type (the planner has already checked the path to it)."""
    stbl = _stbl(data, trak)
    found = {b.type: b for b in children(data, stbl.payload, stbl.end)}
    if b"stts" not in found:
        raise MalformedInput(f"the trak at byte {trak.start} has no stts: its samples have no times")
    return found


def cut_track(data, track, seek: SeekRange, movie_timescale: int, video: bool = False) -> tuple[dict[bytes, bytes], int]:
    """Cut `track` (its chunk offsets and sizes are replaced) to the seek range, in milliseconds.
    Returns the boxes that replace the track's own (by type) and its new duration in movie units.
    A video track starts at its sync sample at or before start (plain video seeking passes the
    keyframe's own time as start)."""
    trak = track.box
    if seek.end is not None and seek.end <= seek.start:
        seek = SeekRange(seek.start, None, seek.by_time)  # the CDN's rule: start >= end means to the end
    timescale, mdhd = media_header(data, trak)
    delay, media_start = edit_offset(data, trak, movie_timescale, timescale)
    found = _stbl_boxes(data, trak)

    sizes_box = found.get(b"stsz") or found.get(b"stz2")
    constant, n_samples, sizes = tables.sample_sizes(sizes_box.type, _payload(data, sizes_box))
    counts, deltas = _pairs(_payload(data, found[b"stts"]), 4, "stts")
    durations = _expand(counts, deltas, n_samples, "stts")
    dts = list(accumulate(durations, initial=0))  # dts[i]: start of sample i; dts[-1]: the end

    def media_time(ms: int) -> int:
        return ms * timescale // 1000 - delay + media_start

    first_time = media_time(seek.start)
    if first_time >= dts[-1]:
        raise SeekPastEnd(
            f"start {seek.start / 1000:g} s is past the audio's duration of {(dts[-1] - media_start) / timescale:g} s "
            f"(the CDN answers 400; this response had already begun)"
        )
    first = max(0, bisect_right(dts, max(first_time, 0)) - 1)
    last = n_samples if seek.end is None else min(n_samples, bisect_right(dts, media_time(seek.end)))
    if video:
        pts, syncs = _video_times(data, track, found, durations)
        at = [i for i in syncs if pts[i] <= max(first_time, 0)]
        keep_from = max(at, key=lambda i: pts[i]) if at else (syncs[0] if syncs else 0)
        first_time = max(first_time, pts[keep_from])  # the picture shown first is the keyframe
    else:
        frame = durations[first] or 1
        preroll = preroll_frames(data, found, _all(data, trak, b"sgpd"))
        if preroll:
            preroll = max(preroll, -(-PREROLL_MS * timescale // (1000 * frame)))
        keep_from = max(0, first - preroll)

    # Chunks: the kept part of each, with its input offset and size.
    firsts, per_chunk, descriptions = _stsc(_payload(data, found[b"stsc"]))
    offsets = tables.chunk_offsets((found.get(b"stco") or found.get(b"co64")).type,
                                   _payload(data, found.get(b"stco") or found.get(b"co64")))
    samples_in = tables.samples_per_chunk(firsts, per_chunk, len(offsets))
    description_of = _expand([b - a for a, b in zip(firsts, list(firsts[1:]) + [len(offsets) + 1])], descriptions)
    ends = list(accumulate(sizes, initial=0)) if sizes is not None else None

    def byte_at(i: int) -> int:  # bytes before sample i within the whole track's sample sequence
        return ends[i] if ends is not None else i * constant

    new_offsets, new_sizes, new_counts, new_descriptions = [], [], [], []
    kept_chunks = []  # (input chunk, its first sample, first and end kept sample) of each output chunk
    start_sample = 0
    for chunk, (offset, n) in enumerate(zip(offsets, samples_in)):
        a, b = max(start_sample, keep_from), min(start_sample + n, last)
        if a < b:
            new_offsets.append(offset + byte_at(a) - byte_at(start_sample))
            new_sizes.append(byte_at(b) - byte_at(a))
            new_counts.append(b - a)
            new_descriptions.append(description_of[chunk])
            kept_chunks.append((chunk, start_sample, a, b))
        start_sample += n
    track.offsets, track.sizes = array("q", new_offsets), array("q", new_sizes)

    kept_durations = durations[keep_from:last]
    # The pre-roll and the part of the first frame before start (never negative: a video's first
    # picture can come before its decode time, and then it is simply shown from the start).
    skip = max(0, max(first_time, 0) - dts[keep_from])
    length = sum(kept_durations) - skip
    if seek.end is not None:
        length = min(length, media_time(seek.end) - max(first_time, 0))
    length = max(0, length)
    movie_length = length * movie_timescale // timescale

    replace = {
        b"stts": _full(b"stts", 0, _table(*_runs(kept_durations))),
        b"stsc": _full(b"stsc", 0, _stsc_table(new_counts, new_descriptions)),
        b"stsz": _full(b"stsz", 0, struct.pack(">II", constant, last - keep_from)
                       + (b"" if constant else _u32s(sizes[keep_from:last]))),
        b"stz2": None,
        b"mdhd": _with_duration(_payload(data, mdhd), b"mdhd", sum(kept_durations), 16, 24),
    }
    if b"stz2" in found:  # an stz2 became an stsz: put it where the stz2 was
        replace[b"stz2"], replace[b"stsz"] = replace[b"stsz"], None
    replace.update(_optional_tables(data, found, keep_from, last, _all(data, trak, b"sbgp")))
    if b"saio" in found or b"senc" in found or b"saiz" in found:
        replace.update(_cut_aux(data, found, track, n_samples, keep_from, last, kept_chunks, len(offsets)))
    edts = make_box(b"edts", _full(b"elst", 0x01000000, struct.pack(">IQqhh", 1, movie_length, skip, 1, 0)))
    tkhd = find(data, trak, b"tkhd")
    replace[b"tkhd"] = _with_duration(_payload(data, tkhd), b"tkhd", movie_length, 20, 28)
    if find(data, trak, b"edts") is None:
        replace[b"tkhd"] += edts  # the edit list goes right after the track header
    else:
        replace[b"edts"] = edts
    return replace, movie_length


def _cut_aux(data, found: dict, track, samples: int, first: int, last: int, kept_chunks: list, chunks: int) -> dict:
    """An encrypted track's sample auxiliary information (IVs, subsamples) cut with its samples: the
    boxes that replace saiz, saio and senc; the track learns where the kept aux information lies in the
    input (aux_kept: offset and size of each block the new saio points at, found through the input's
    saio) and how many bytes of senc entries went before it (aux_dropped), for the planner to place."""
    def payload(kind):
        return _payload(data, found[kind]) if kind in found else None
    replace, offsets, sizes, dropped = tables.cut_aux(payload(b"saiz"), payload(b"saio"), payload(b"senc"), samples,
                                                      first, last, kept_chunks, chunks, f"track {track.track_id}")
    track.aux_kept, track.aux_dropped = (offsets, sizes), dropped
    return replace


def preroll_frames(data, found: dict, groups: list[Box]) -> int:
    """Frames a decoder needs before the first one played by the file's own account: the roll group's
    distance, else one (none for raw PCM)."""
    stsd = found.get(b"stsd")
    entry = bytes(data[stsd.payload + 12 : stsd.payload + 16]) if stsd and stsd.size - stsd.header >= 16 else b""
    if entry in PCM:
        return 0
    for sgpd in groups:  # (a seig group of an encrypted track may sit beside the roll group)
        p = _payload(data, sgpd)
        if len(p) >= 18 and bytes(p[4:8]) == b"roll":
            entry_at = 16 if p[0] >= 1 else 12  # version 1 adds default_length
            if len(p) >= entry_at + 2:
                return max(1, -struct.unpack_from(">h", p, entry_at)[0])
    return 1


def _stsc(payload):
    n = _count(payload, 4, "stsc")
    entries = tables._array("I", payload[8:], n * 3, "stsc")
    return entries[0::3], entries[1::3], list(entries[2::3])


def _stsc_table(counts: list[int], descriptions: list[int]) -> bytes:
    runs = []
    for chunk, (count, description) in enumerate(zip(counts, descriptions), start=1):
        if not runs or runs[-1][1:] != (count, description):
            runs.append((chunk, count, description))
    return struct.pack(">I", len(runs)) + b"".join(struct.pack(">III", *r) for r in runs)


def _table(counts: list[int], values: list[int]) -> bytes:
    return struct.pack(">I", len(counts)) + _u32s(chain.from_iterable(zip(counts, values)))


def _u32s(values) -> bytes:
    values = list(values)
    return struct.pack(f">{len(values)}I", *values)


def _with_duration(payload, kind: bytes, duration: int, at_v0: int, at_v1: int) -> bytes:
    """A full box (mdhd, tkhd) with its duration field, at one offset in version 0 and another in 1, set."""
    p = bytearray(payload)
    if p[0] == 1:
        struct.pack_into(">Q", p, at_v1, duration)
    else:
        struct.pack_into(">I", p, at_v0, min(duration, 0xFFFFFFFF))
    return make_box(kind, bytes(p))


def _optional_tables(data, found: dict, a: int, b: int, groupings: list[Box]) -> dict[bytes, bytes | list | None]:
    """ctts, stss, sdtp and each sbgp (`groupings`: roll, seig...) cut to samples [a, b); other per-sample
    tables cannot be kept. Several boxes of one type are replaced by a list, one for each in order."""
    out: dict[bytes, bytes | None] = {}
    if box := found.get(b"ctts"):
        p = _payload(data, box)
        counts, offsets = _pairs(p, 4, "ctts")
        out[b"ctts"] = _full(b"ctts", struct.unpack_from(">I", p)[0],
                             _table(*_runs(_expand(counts, offsets, None, "ctts")[a:b])))
    if box := found.get(b"stss"):
        p = _payload(data, box)
        n = _count(p, 4, "stss")
        syncs = [s - a for s in tables._array("I", p[8:], n, "stss") if a < s <= b]
        out[b"stss"] = _full(b"stss", 0, struct.pack(">I", len(syncs)) + _u32s(syncs))
    if box := found.get(b"sdtp"):
        p = _payload(data, box)
        out[b"sdtp"] = make_box(b"sdtp", bytes(p[:4]) + bytes(p[4 + a : 4 + b]))
    if groupings:
        out[b"sbgp"] = [_cut_sbgp(_payload(data, box), a, b) for box in groupings]
    for kind in (b"stps", b"subs", b"saiz", b"saio", b"senc", b"padb", b"stdp"):  # (aux information: cut_aux)
        if kind in found:
            out[kind] = None  # per-sample tables we do not cut: dropped rather than left wrong
    return out


def _cut_sbgp(p, a: int, b: int) -> bytes:
    """An sbgp's runs (group of each sample) cut to samples [a, b): its descriptions (sgpd) stay."""
    head = 12 if p[:1] == b"\x01" else 8  # version 1 carries a grouping_type_parameter
    counts, groups = _pairs(p, head, "sbgp")
    if sum(counts) > b + MAX_CUT_SAMPLES:
        raise MalformedInput(f"sbgp covers {sum(counts)} samples, far past the track's")
    cut = _expand(counts, groups)[a:b]
    return make_box(b"sbgp", bytes(p[:head]) + _table(*_runs(cut)))
