"""The output of an MP4: which tracks stay, the new moov, and the input byte ranges to copy.

Output layout: the input's ftyp, a new moov holding only the audio traks, one mdat holding the audio
chunks in input order. Boxes are rebuilt bottom-up only along the paths that change (moov > trak >
mdia > minf > stbl > stco); everything else is copied as the input had it.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import ExtractError, MalformedInput, NoAudio, UnsupportedInput
from . import tables
from .boxes import U32_MAX, Box, children, find, make_box, mdat_header
from ..seek import SeekRange
from .cut import SeekNotPossible, cut_track, keyframe_time
from .fragmented import trex_defaults
from .ranges import Ranges, first_overlap, is_ascending, merge_sorted, out_positions, shift

AUDIO_HANDLER = b"soun"
VIDEO_HANDLER = b"vide"


@dataclass
class Track:
    box: Box
    track_id: int
    handler: bytes
    duration: int  # tkhd, in the movie timescale
    offsets: array = field(default_factory=lambda: array("q"))  # input chunk offsets
    sizes: array = field(default_factory=lambda: array("q"))  # and the bytes in each chunk
    aux: tuple[Box, Box | None] | None = None  # encrypted: its saio and senc boxes (sample auxiliary information)
    aux_blocks: Track | None = None  # its aux information when in the media data: copied like chunks (box: saio)
    aux_kept: tuple[array, array] | None = None  # cut: input offset and size of each aux block its new saio names
    aux_dropped: int = 0  # cut: bytes of its senc's entries before the kept samples'


@dataclass
class Plan:
    head: bytes  # ftyp + moov (+ mdat header when the moov has samples): the first bytes out
    ranges: Ranges  # sorted, merged input ranges that make up the mdat payload
    audio_bytes: int
    tracks: list[Track]
    dropped: list[Track]
    warnings: list[str] = field(default_factory=list)
    fragmented: bool = False  # the moov has an mvex: moof fragments follow
    trex: dict[int, int] = field(default_factory=dict)  # fragmented: track_ID -> default sample size

    @property
    def audio_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}


class PlanRequest(NamedTuple):
    """Everything plan() needs, in plain values: a caller may run it where it likes (a thread, another
    process) and hand the Plan back (Mp4AudioFilter.provide_plan)."""
    ftyp: bytes
    moov: bytes  # the whole moov box, header included
    seek: SeekRange | None
    keep_video: bool
    moov_offset: int | None = None  # where the moov lies in the input (saio offsets are absolute)

    @property
    def size(self) -> int:
        return len(self.moov)


def make_plan(request: PlanRequest) -> Plan:
    moov = request.moov
    header = 16 if int.from_bytes(moov[:4], "big") == 1 else 8
    return plan(request.ftyp, moov, Box(b"moov", 0, header, len(moov)), request.seek, request.keep_video,
                request.moov_offset)


def _payload(data, box: Box):
    return data[box.payload : box.end]


def _track(data, trak: Box) -> Track:
    tkhd = find(data, trak, b"tkhd")
    mdia = find(data, trak, b"mdia")
    hdlr = find(data, mdia, b"hdlr") if mdia else None
    if not tkhd or not hdlr:
        raise MalformedInput(f"trak at byte {trak.start} has no {'tkhd' if not tkhd else 'mdia/hdlr'}")
    p = _payload(data, tkhd)
    if len(p) < 32 or len(_payload(data, hdlr)) < 12:
        raise MalformedInput(f"tkhd or hdlr of the trak at byte {trak.start} is too short")
    if p[0] == 1:
        track_id, duration = struct.unpack_from(">I4xQ", p, 20)
    else:
        track_id, duration = struct.unpack_from(">I4xI", p, 12)
    handler = bytes(_payload(data, hdlr)[8:12])
    return Track(trak, track_id, handler, duration)


def _stbl(data, trak: Box) -> Box:
    box = trak
    for kind in (b"mdia", b"minf", b"stbl"):
        box = find(data, box, kind)
        if box is None:
            raise MalformedInput(f"audio trak at byte {trak.start} has no {kind.decode()}")
    return box


def _read_chunks(data, track: Track) -> None:
    stbl = _stbl(data, track.box)
    boxes_in = list(children(data, stbl.payload, stbl.end))
    found = {b.type: b for b in boxes_in}
    track.aux = (found.get(b"saio"), found.get(b"senc")) if b"saio" in found else None
    track.aux_kept, track.aux_dropped = None, 0  # (a cut sets them)
    for kind in (b"saio", b"saiz"):
        if sum(b.type == kind for b in boxes_in) > 1:  # one per aux_info_type: which pairs with which?
            raise UnsupportedInput(f"track {track.track_id} has several {kind.decode()} boxes (sample auxiliary "
                                   f"information of several types): not supported")
    sizes_box = found.get(b"stsz") or found.get(b"stz2")
    offsets_box = found.get(b"stco") or found.get(b"co64")
    if not (sizes_box and offsets_box and b"stsc" in found):
        raise MalformedInput(f"track {track.track_id} lacks stsz/stz2, stsc or stco/co64")
    constant, count, sizes = tables.sample_sizes(sizes_box.type, _payload(data, sizes_box))
    offsets = tables.chunk_offsets(offsets_box.type, _payload(data, offsets_box))
    firsts, per_chunk = tables.sample_to_chunk(_payload(data, found[b"stsc"]))
    if len(firsts) == 1 and per_chunk[0] == 1 and firsts[0] == 1 and len(offsets) == count and sizes is not None:
        track.sizes = array("q", sizes)  # one sample a chunk: chunk sizes are the sample sizes
    else:
        counts = tables.samples_per_chunk(firsts, per_chunk, len(offsets))
        track.sizes = tables.chunk_sizes(counts, constant, sizes, count)
    try:
        track.offsets = array("q", offsets)
    except OverflowError:
        raise MalformedInput(f"track {track.track_id} has a chunk offset past 2^63") from None


def _ranges(tracks: list[Track]) -> tuple[Ranges, dict[int, array]]:
    """Sorted, merged input ranges, and for each track where each of its chunks lands in the mdat payload
    (chunks go out in input order)."""
    if len(tracks) == 1 and is_ascending(tracks[0].offsets):  # nearly always: all in bulk
        track = tracks[0]
        return merge_sorted(track.offsets, track.sizes), {0: out_positions(track.sizes)}
    if len(tracks) == 2 and (found := _with_aux_blocks(*tracks)):  # a track and its aux blocks, or two alternating
        return found
    # Several audio tracks, chunks out of order: one order for all, by input offset (an empty chunk
    # before a chunk at the same offset: sorted by size first, the sort being stable).
    offsets, sizes = array("q"), array("q")
    for track in tracks:
        offsets += track.offsets
        sizes += track.sizes
    order = sorted(range(len(offsets)), key=sizes.__getitem__)
    order.sort(key=offsets.__getitem__)
    in_order = array("q", map(sizes.__getitem__, order))
    merged = merge_sorted(array("q", map(offsets.__getitem__, order)), in_order)
    placed_in_order = out_positions(in_order)
    placed_all = array("q", bytes(8 * len(offsets)))
    for position, chunk in zip(placed_in_order, order):
        placed_all[chunk] = position
    placed, first = {}, 0
    for t, track in enumerate(tracks):
        placed[t] = placed_all[first : first + len(track.offsets)]
        first += len(track.offsets)
    return merged, placed


def _with_aux_blocks(track: Track, blocks: Track) -> tuple[Ranges, dict[int, array]] | None:
    """_ranges in bulk for a track and the blocks of its aux information in the media data, laid out as
    packagers do: a block before (or after) each chunk, or one block for the track; None otherwise (the
    general path decides). Any two tracks whose chunks alternate take it too, with the same result."""
    n = len(track.offsets)
    if not is_ascending(track.offsets):
        return None
    if len(blocks.offsets) == 1:
        k = bisect.bisect_left(track.offsets, blocks.offsets[0])
        layouts = [(track.offsets[:k] + blocks.offsets + track.offsets[k:], track.sizes[:k] + blocks.sizes + track.sizes[k:],
                    lambda a: a[:k] + a[k + 1 :], lambda a: a[k : k + 1])]
    elif len(blocks.offsets) == n:
        layouts = []
        for block_first in (True, False):  # each block before its chunk, or after it
            offsets, sizes = array("q", bytes(16 * n)), array("q", bytes(16 * n))
            b, c = (0, 1) if block_first else (1, 0)
            offsets[b::2], offsets[c::2], sizes[b::2], sizes[c::2] = blocks.offsets, track.offsets, blocks.sizes, track.sizes
            layouts.append((offsets, sizes, lambda a, c=c: a[c::2], lambda a, b=b: a[b::2]))
    else:
        return None
    for offsets, sizes, chunks_of, blocks_of in layouts:
        if is_ascending(offsets):
            try:
                merged = merge_sorted(offsets, sizes)
            except MalformedInput:  # an empty item after a full one at the same offset: the general path sorts them
                return None
            placed = out_positions(sizes)
            return merged, {0: chunks_of(placed), 1: blocks_of(placed)}
    return None


def _tref(data, box: Box, kept_ids: set[int]) -> bytes | None:
    """tref with the references to dropped tracks removed; None when nothing is left."""
    parts = []
    for ref in children(data, box.payload, box.end):
        ids = struct.unpack(f">{(ref.size - ref.header) // 4}I", _payload(data, ref)[: (ref.size - ref.header) // 4 * 4])
        ids = [i for i in ids if i in kept_ids]
        if ids:
            parts.append(make_box(ref.type, struct.pack(f">{len(ids)}I", *ids)))
    return make_box(b"tref", b"".join(parts)) if parts else None


def _rebuild(data, box: Box, visit) -> bytes:
    """The container `box` with each child replaced by visit(child): bytes, or None to drop it."""
    parts = (visit(child) for child in children(data, box.payload, box.end))
    return make_box(box.type, b"".join(p for p in parts if p is not None))


def _mvhd(data, box: Box, duration: int) -> bytes:
    p = bytearray(_payload(data, box))
    if p and p[0] == 1 and len(p) >= 32:
        struct.pack_into(">Q", p, 24, duration)
    elif len(p) >= 20:
        struct.pack_into(">I", p, 16, min(duration, U32_MAX))
    else:
        raise MalformedInput(f"mvhd is {len(p)} bytes, too short")
    return make_box(b"mvhd", bytes(p))


def _moov(data, moov: Box, kept: list[Track], out_offsets: dict[int, array], wide: bool,
          replacements: dict[int, dict[bytes, bytes | None]]) -> bytes:
    """The output moov: the kept traks (audio; video too for plain seeking) with new chunk offsets (and,
    when seeking, the boxes the cut replaced, by type: None drops one); references to dropped tracks
    removed."""
    kept_ids = {t.track_id for t in kept}
    by_start = {t.box.start: n for n, t in enumerate(kept)}
    duration = max(t.duration for t in kept)
    current = {"offsets": array("q")}  # those of the trak being rebuilt
    replace: dict[bytes, bytes | None] = {}  # and its replaced boxes

    def copy(b: Box):
        if b.type in replace:
            new = replace[b.type]  # a list: one for each box of that type, in order (sbgp: roll, seig)
            return new.pop(0) if isinstance(new, list) else new
        return data[b.start : b.end]

    def descend(kind: bytes, visit_children):
        return lambda b: _rebuild(data, b, visit_children) if b.type == kind else copy(b)

    def stbl_child(b: Box):
        if b.type in (b"stco", b"co64"):
            return make_box(b"co64" if wide else b"stco", tables.build_chunk_offsets(current["offsets"], wide))
        return copy(b)

    trak_path = descend(b"mdia", descend(b"minf", descend(b"stbl", stbl_child)))

    def trak_child(b: Box):
        return _tref(data, b, kept_ids) if b.type == b"tref" else trak_path(b)

    def trex_child(b: Box):
        return None if b.type == b"trex" and _trex_track(data, b) not in kept_ids else data[b.start : b.end]

    def moov_child(b: Box):
        if b.type == b"trak":
            if b.start not in by_start:
                return None
            n = by_start[b.start]
            current["offsets"] = out_offsets[n]
            replace.clear()
            replace.update({k: list(v) if isinstance(v, list) else v for k, v in replacements.get(n, {}).items()})
            return _rebuild(data, b, trak_child)
        if b.type == b"mvhd":
            return _mvhd(data, b, duration)
        if b.type == b"iods":  # describes the video's elementary streams; players do without it
            return None
        if b.type == b"mvex":
            return _rebuild(data, b, trex_child)
        return data[b.start : b.end]

    return _rebuild(data, moov, moov_child)


def _trex_track(data, box: Box) -> int:
    p = _payload(data, box)
    return struct.unpack_from(">I", p, 4)[0] if len(p) >= 8 else -1


def plan(ftyp: bytes, moov_data, moov: Box, seek: SeekRange | None = None, keep_video: bool = False,
         moov_offset: int | None = None) -> Plan:
    """Plan the output from the moov (moov_data holds it, at moov.start) and the input's ftyp; with
    `seek` (milliseconds), only the audio from start to end. keep_video: the CDN's plain video
    seeking, video tracks stay too and every track starts at the video's keyframe at or before start."""
    tracks = [_track(moov_data, b) for b in children(moov_data, moov.payload, moov.end) if b.type == b"trak"]
    kept_handlers = (AUDIO_HANDLER, VIDEO_HANDLER) if keep_video else (AUDIO_HANDLER,)
    kept = [t for t in tracks if t.handler in kept_handlers]
    dropped = [t for t in tracks if t.handler not in kept_handlers]
    if not kept:
        kinds = ", ".join(t.handler.decode("latin-1") for t in tracks) or "none"
        raise NoAudio(f"the MP4 has no audio track (tracks: {kinds}): nothing to extract")
    for t in kept:
        _read_chunks(moov_data, t)
    mvex = find(moov_data, moov, b"mvex")
    replacements, warnings = {}, []
    if seek is not None and mvex is not None and keep_video:  # (only audio is cut in fragments: fragment_cut.py)
        warnings.append("plain video seeking of a fragmented MP4 is not supported: the whole file is sent")
    if seek is not None and mvex is None:  # (a fragmented file's samples are in its fragments: fragment_cut.py cuts them)
        movie_timescale = _movie_timescale(moov_data, moov)
        try:
            video = next((t for t in kept if t.handler == VIDEO_HANDLER), None)
            if video is not None:  # every track starts where the picture can: the keyframe
                seek = SeekRange(keyframe_time(moov_data, video, seek, movie_timescale), seek.end, True)
            for n, t in enumerate(kept):
                replacements[n], t.duration = cut_track(moov_data, t, seek, movie_timescale, t.handler == VIDEO_HANDLER)
        except SeekNotPossible as e:
            warnings.append(f"{e}: the whole audio is sent")
            replacements = {}
            for t in kept:
                _read_chunks(moov_data, t)
    for t in kept:
        if t.aux:
            t.aux_blocks = _aux_in_media(moov_data, moov, t, moov_offset)
    media_aux = [(n, t.aux_blocks) for n, t in enumerate(kept) if t.aux_blocks]
    ranges, placed = _ranges(kept + [blocks for _, blocks in media_aux])
    for t in kept + [blocks for _, blocks in media_aux]:  # in the ranges and placements now: freed
        t.offsets = t.sizes = array("q")  # before the other tracks are read
    audio_bytes = ranges.total
    warnings += _check_other_tracks(moov_data, ranges, dropped)

    # The moov's size depends on stco vs co64, not on the offsets' values: size it, then fill it.
    wide = False

    def with_saio(moved):  # the replacements, and each saio of aux in the media data given `moved` offsets
        out = {n: dict(r) for n, r in replacements.items()}
        for j, (n, blocks) in enumerate(media_aux):
            out.setdefault(n, {})[b"saio"] = _saio(moov_data, blocks.box, moved(len(kept) + j), wide)
        return out

    for _ in range(2):
        zeros = {n: array("q", bytes(8 * len(placed[n]))) for n in placed}
        trial = _moov(moov_data, moov, kept, zeros, wide, with_saio(zeros.__getitem__))
        header = mdat_header(audio_bytes)
        base = len(ftyp) + len(trial) + len(header)
        if wide or base + audio_bytes <= U32_MAX:
            break
        wide = True
    out_offsets = {n: shift(placed[n], base) for n in placed}
    moov_out = _moov(moov_data, moov, kept, out_offsets, wide, with_saio(out_offsets.__getitem__))
    if any(t.aux and not t.aux_blocks for t in kept):
        moov_out = _aux_offsets(moov_data, moov_out, kept, moov_offset, len(ftyp))
    if mvex and not ranges:
        header = b""  # an init segment: the fragments that follow bring their own mdat
    trex = trex_defaults(moov_data, mvex) if mvex else {}
    return Plan(ftyp + moov_out + header, ranges, audio_bytes, kept, dropped, warnings, mvex is not None, trex)


def _aux_offsets(data, moov_out: bytes, kept: list[Track], moov_offset: int | None, at: int) -> bytes:
    """Encrypted tracks: each saio offset (absolute, in a file without fragments) pointed at the sample
    auxiliary information (IVs, subsamples) of the input; the output moov (at byte `at` of the output)
    holds the same senc box elsewhere, so each offset is moved with it. Aux information elsewhere (in
    the media data, as some packagers put it) is not carried yet: refused, never sent wrong."""
    out = bytearray(moov_out)
    out_traks = [b for b in children(out, 8 if int.from_bytes(out[:4], "big") != 1 else 16, len(out)) if b.type == b"trak"]
    for track, out_trak in zip(kept, out_traks):
        if not track.aux or track.aux_blocks:
            continue
        saio, senc = track.aux
        out_stbl = _stbl(out, out_trak)
        out_boxes = {b.type: b for b in children(out, out_stbl.payload, out_stbl.end)}
        if senc is None or moov_offset is None or b"senc" not in out_boxes:
            raise UnsupportedInput(f"track {track.track_id} is encrypted with its sample auxiliary information "
                                   f"outside a senc box of its own: not supported yet")
        what = f"track {track.track_id}"
        offsets = track.aux_kept[0] if track.aux_kept else tables.aux_offsets(_payload(data, saio), what)[2]
        out_saio, out_senc = out_boxes[b"saio"], out_boxes[b"senc"]
        code, at_offsets, _ = tables.aux_offsets(_payload(out, out_saio), what)  # (a cut's has its own count)
        senc_in = moov_offset + senc.start  # absolute, in the input
        senc_out = at + out_senc.start  # absolute, in the output
        moved = []
        for offset in offsets:  # (a cut's senc lost track.aux_dropped bytes of entries before the kept ones)
            if not senc_in <= offset < senc_in + senc.size or not 0 <= offset - senc_in - track.aux_dropped < out_senc.size:
                raise UnsupportedInput(f"track {track.track_id} is encrypted with sample auxiliary information at "
                                       f"byte {offset}, outside its senc box: not supported yet")
            moved.append(senc_out + offset - senc_in - track.aux_dropped)
        struct.pack_into(f">{len(moved)}{code}", out, out_saio.payload + at_offsets, *moved)
    return bytes(out)


def _aux_in_media(data, moov: Box, track: Track, moov_offset: int | None) -> Track | None:
    """An encrypted track's aux information when it lies in the media data (as some packagers put it):
    its blocks (one for the whole track, or one a chunk, by saio's count; each as long as saiz's sizes of
    the samples it covers) to copy like chunks; None when every saio offset points inside the track's
    own senc in the moov (the senc then travels with the moov: _aux_offsets). Offsets into the moov
    elsewhere are refused."""
    saio, senc = track.aux
    what = f"track {track.track_id}"
    offsets = track.aux_kept[0] if track.aux_kept else tables.aux_offsets(_payload(data, saio), what)[2]
    if moov_offset is None:
        raise UnsupportedInput(f"{what} is encrypted and where its moov lies in the input is not known: its "
                               f"sample auxiliary information cannot be located")
    moov_start, moov_end = moov_offset + moov.start, moov_offset + moov.end
    outside = not offsets or max(offsets) < moov_start or min(offsets) >= moov_end  # (in bulk, nearly always)
    in_moov = [] if outside else [o for o in offsets if moov_start <= o < moov_end]
    if in_moov:
        if senc is not None and len(in_moov) == len(offsets):
            return None  # in its senc, or refused by _aux_offsets with the byte named
        raise UnsupportedInput(f"{what} is encrypted with sample auxiliary information at byte {in_moov[0]}, "
                               f"inside the moov but outside its senc box: not supported yet")
    stbl = _stbl(data, track.box)
    found = {b.type: b for b in children(data, stbl.payload, stbl.end)}
    if b"saiz" not in found:
        raise MalformedInput(f"{what} has a saio but no saiz: the size of its aux information is unknown")
    default, count, sizes = tables.aux_sizes(_payload(data, found[b"saiz"]), what)
    sizes_box = found.get(b"stsz") or found.get(b"stz2")
    samples = tables.sample_sizes(sizes_box.type, _payload(data, sizes_box))[1]
    if count != samples:
        raise MalformedInput(f"saiz of {what} describes {count} samples, the track has {samples}")
    chunks = len(track.offsets)
    if track.aux_kept:  # cut: the kept samples' part of each block, as the cut found them
        return Track(saio, track.track_id, b"aux ", 0, track.aux_kept[0], track.aux_kept[1])
    if len(offsets) == 1:
        block_sizes = array("q", [default * count if default else sum(sizes)])
    elif len(offsets) == chunks:
        counts = tables.samples_per_chunk(*tables.sample_to_chunk(_payload(data, found[b"stsc"])), chunks)
        block_sizes = tables.chunk_sizes(counts, default, sizes, count)
    else:
        raise MalformedInput(f"saio of {what} has {len(offsets)} offsets for {chunks} chunks: it needs one, "
                             f"or one a chunk")
    try:
        offsets = array("q", offsets)
    except OverflowError:
        raise MalformedInput(f"saio of {what} has an offset past 2^63") from None
    return Track(saio, track.track_id, b"aux ", 0, offsets, block_sizes)


def _saio(data, saio: Box, offsets, wide: bool) -> bytes:
    """The saio box with new offsets: 64-bit (version 1) when the output needs them or the input had them."""
    p = _payload(data, saio)
    _, at, _ = tables.aux_offsets(p, "an audio track")
    version = 1 if wide else p[0]
    # (The payload up to the entry count, then the count and the offsets as a chunk offset table has them.)
    return make_box(b"saio", bytes([version]) + bytes(p[1 : at - 4]) + tables.build_chunk_offsets(offsets, version != 0)[4:])


def _movie_timescale(data, moov: Box) -> int:
    mvhd = find(data, moov, b"mvhd")
    p = _payload(data, mvhd) if mvhd else b""
    if len(p) < 20:
        raise MalformedInput("the moov has no usable mvhd")
    timescale = struct.unpack_from(">I", p, 20 if p[0] == 1 else 12)[0]
    if not timescale:
        raise MalformedInput("mvhd has a timescale of 0")
    return timescale


def _check_other_tracks(data, ranges: Ranges, others: list[Track]) -> list[str]:
    """Refuse a moov whose audio chunks share bytes with another track's; warn for tracks whose tables
    cannot be read (they are dropped anyway, so that alone is no reason to refuse the file)."""
    warnings = []
    for track in others:
        try:
            _read_chunks(data, track)
        except ExtractError as e:
            warnings.append(f"the {track.handler.decode('latin-1')} track {track.track_id} could not be checked "
                            f"for overlap with the audio: {e}")
            continue
        hit = first_overlap(ranges, track.offsets, track.sizes)
        track.offsets = track.sizes = array("q")  # a dropped track's tables are not needed again
        if hit:
            raise MalformedInput(f"audio data at byte {hit[0]} overlaps a chunk of another track at byte {hit[1]}: "
                                 f"refusing to send it as audio")
    return warnings
