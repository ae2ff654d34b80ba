"""A fragmented MP4 cut to a time range (seeking): the init's edit lists, and each fragment's audio cut.

The same rule as a moov file's cut (cut.py): the samples from the frame holding `start` (less the
pre-roll a decoder needs) to the frame holding `end` stay; fragments and the boxes between them that
hold none go. The output's timeline begins with the first sample kept: every kept traf's tfdt is its
first kept sample's decode time less that of the first sample kept (a tfdt is written where there
was none), because the players that read a fragmented file's duration from its samples (Chromium's
and ffmpeg's demuxers) ignore its edit list. Each audio track's edit list then skips the pre-roll
and the part of the first frame before start, and lasts end - start (0, to the end of the media, when
the end is not known: no end and no mehd). So the init is known once the first fragment of the cut
is read; the stream path sends it then, before that fragment. Sample auxiliary information (senc,
saiz; saio re-pointed by fragmented.py) and sample groups (sbgp) are cut with the samples, so that
every kept sample keeps its own IV and subsamples.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import replace
from itertools import accumulate

from ..errors import MalformedInput, SeekPastEnd
from ..seek import SeekRange
from .boxes import Box, children, find, make_box, versioned_value
from .cut import PREROLL_MS, SeekNotPossible, edit_offset, media_header, preroll_frames
from .fragment_tables import cut_aux, cut_runs, cut_sbgp, samples
from .fragmented import trex_defaults


# Smooth Streaming's tfxd (this fragment's time) and tfrf (the next ones'), uuid boxes in a traf
_SMOOTH_TIMES = {bytes.fromhex("6d1d9b0542d544e680e2141daff757b2"), bytes.fromhex("d4807ef2ca3946958e5426cb9e46a79f")}


def _u32(data, at: int) -> int:
    return struct.unpack_from(">I", data, at)[0]


def _full(kind: bytes, version_flags: int, body: bytes) -> bytes:
    return make_box(kind, struct.pack(">I", version_flags) + body)


def cut_fragmented_plan(plan, seek: SeekRange):
    """(the plan of a fragmented file's moov, planned without the seek, with no head: the cut's comes
    with its first fragment, FragmentCut.head; the FragmentCut for its fragments), or (the plan with a
    warning, None) when this file cannot be cut."""
    warnings = list(plan.warnings)
    if len(plan.ranges):
        warnings.append("a fragmented MP4 with samples in its moov too is not cut: the whole audio is sent")
        return replace(plan, warnings=warnings), None
    try:
        cut = FragmentCut(plan.head, seek)
    except SeekNotPossible as e:
        warnings.append(f"{e}: the whole audio is sent")
        return replace(plan, warnings=warnings), None
    return replace(plan, head=b"", warnings=warnings), cut  # the head comes with the first fragment of the cut


class TrackCut:
    """One audio track's cut, in its media timescale."""

    def __init__(self, track_id: int, timescale: int, first: int, end: int | None, roll: int, iv_size: int | None,
                 default_duration: int | None):
        self.track_id, self.timescale = track_id, timescale
        self.first, self.end = first, end  # media times: start's, and end's (None: to the end)
        self.roll = roll  # frames of pre-roll the file asks for (0: raw PCM)
        self.keep_from: int | None = None  # first - the pre-roll, once a frame's duration is seen
        self.iv_size = iv_size  # tenc's per-sample IV size (for a senc without saiz)
        self.default_duration = default_duration  # trex's
        self.rebase: int | None = None  # subtracted from every decode time out (see FragmentCut.traf)
        self.origin: int | None = None  # the decode time that is the track's time 0 (FragmentCut.traf)
        self.next_time = 0  # decode time after the last traf seen (for a traf without tfdt), from origin
        self.media_end = 0  # end of the last sample seen
        self.kept = 0  # samples kept so far


class FragmentCut:
    """The cut of a fragmented MP4: `head` is the planned head (ftyp, moov) with the edit lists of the
    cut; `traf` cuts each audio traf of the fragments that follow, in order."""

    def __init__(self, head: bytes, seek: SeekRange):
        if seek.end is not None and seek.end <= seek.start:
            seek = SeekRange(seek.start, None, seek.by_time)  # the CDN's rule: start >= end means to the end
        self.seek = seek
        moov = next((b for b in children(head, 0, len(head)) if b.type == b"moov"), None)
        if moov is None:
            raise MalformedInput("the planned head of a fragmented MP4 holds no moov")
        mvhd = find(head, moov, b"mvhd")
        if mvhd is None or mvhd.size - mvhd.header < 20:
            raise MalformedInput("the moov has no usable mvhd")
        self.movie_timescale = _u32(head, mvhd.payload + (20 if head[mvhd.payload] == 1 else 12)) or 1
        mvex = find(head, moov, b"mvex")
        mehd = find(head, mvex, b"mehd") if mvex else None
        total_ms = None
        if mehd is not None:
            duration = versioned_value(head, mehd, "of the moov")
            total_ms = duration * 1000 // self.movie_timescale if duration else None
        if total_ms is not None and seek.start >= total_ms:
            raise SeekPastEnd(f"start {seek.start / 1000:g} s is past the audio's duration of {total_ms / 1000:g} s "
                              f"(mehd)")
        end_ms = seek.end if total_ms is None or seek.end is None else min(seek.end, total_ms)
        if end_ms is None and total_ms is not None:
            end_ms = total_ms
        defaults = trex_defaults(head, mvex, "duration") if mvex else {}
        self.tracks: dict[int, TrackCut] = {}
        lengths: dict[int, int | None] = {}  # movie units, by trak offset
        for trak in (b for b in children(head, moov.payload, moov.end) if b.type == b"trak"):
            track_id = _track_id(head, trak)
            timescale, _ = media_header(head, trak)
            delay, media_start = edit_offset(head, trak, self.movie_timescale, timescale)

            def media_time(ms: int) -> int:
                return ms * timescale // 1000 - delay + media_start

            first = max(0, media_time(seek.start))
            end = None if seek.end is None else media_time(seek.end)
            stbl = find(head, find(head, find(head, trak, b"mdia"), b"minf"), b"stbl")
            in_stbl = list(children(head, stbl.payload, stbl.end)) if stbl else []
            found = {b.type: b for b in in_stbl}
            if any(found.get(k) is not None and _u32(head, found[k].payload + 4) for k in (b"stsz", b"stz2")
                   if found.get(k) is not None and found[k].size - found[k].header >= 12):
                raise SeekNotPossible(f"track {track_id} has samples in the moov as well as in fragments")
            self.tracks[track_id] = TrackCut(track_id, timescale, first, end, preroll_frames(head, found, [b for b in in_stbl if b.type == b"sgpd"]),
                                             _iv_size(head, trak), defaults.get(track_id))
            lengths[trak.start] = None if end_ms is None else max(0, media_time(end_ms) - first) * self.movie_timescale // timescale
        # Without mehd the input's end is not known when the head goes out (with the first fragment of
        # the cut): the edit lists still end the cut at `end` (an edit past the media just ends with
        # it), but tkhd and mvhd say 0, unknown, as the input's do, not end - start.
        self._init = (head, moov, lengths, total_ms is not None)
        self._head: bytes | None = None
        self._anchor: tuple[int, int] | None = None  # (first - rebase, timescale) of the first track kept
        self._origin: tuple[int, int] | None = None  # (decode time, timescale) of the first audio traf

    @property
    def head(self) -> bytes:
        """The head of the cut: known once the first fragment of the cut has been read (the edit lists
        name where the kept samples begin)."""
        if self._head is None:
            if self._anchor is None:
                raise RuntimeError("the head of a cut is known once a fragment of it is read")
            self._head = _cut_head(*self._init, self.tracks)
        return self._head

    # -- the fragments ------------------------------------------------------------------------------

    def traf(self, data, track_id: int, tfhd: Box, boxes_in: list[Box], runs: list, default_size: int | None):
        """An audio traf's samples cut: None when none stays, else (the runs that stay, each with its
        new start, count, length and `table`; the traf's boxes replaced, by their offset in the moof
        (None drops one; the key 'tfdt' holds a tfdt to put after the tfhd where there was none))."""
        track = self.tracks.get(track_id)
        if track is None:
            raise MalformedInput(f"a traf of track {track_id}, which the init does not describe")
        durations, sizes, layout = samples(data, tfhd, runs, default_size, track)
        tfdt = next((b for b in boxes_in if b.type == b"tfdt"), None)
        if track.origin is None:
            self._set_origin(track, versioned_value(data, tfdt, "of a moof") if tfdt is not None else 0)
        base = versioned_value(data, tfdt, "of a moof") - track.origin if tfdt is not None else track.next_time
        starts = list(accumulate(durations, initial=base))
        track.next_time = starts[-1]
        track.media_end = max(track.media_end, starts[-1])
        if not durations:
            return None
        if track.keep_from is None:  # the pre-roll (cut.py's rule), in the track's usual frame duration
            # (the most common of the first traf's: ffmpeg gives a fragmented AAC track's first one 3528)
            frame = Counter(durations).most_common(1)[0][0] or 1  # (one pass: durations may all differ)
            frames = max(track.roll, -(-PREROLL_MS * track.timescale // (1000 * frame))) if track.roll else 0
            track.keep_from = track.first - frames * frame
        a = bisect_right(starts, track.keep_from, 1) - 1  # the first sample that ends after keep_from
        b = len(durations) if track.end is None else min(len(durations), bisect_right(starts, track.end, 0, len(durations)))
        if a >= b:
            return None
        if track.rebase is None and self._anchor is None:
            self._rebase(track, starts[a])
        a = max(a, bisect_left(starts, track.rebase, 0, len(durations)))  # never before the track's time 0
        if a >= b:
            return None
        track.kept += b - a
        replaced: dict = {}
        new_tfdt = _full(b"tfdt", 0x01000000, struct.pack(">Q", starts[a] - track.rebase))
        if tfdt is not None:
            replaced[tfdt.start] = new_tfdt
        else:
            replaced["tfdt"] = new_tfdt
        kept_runs = cut_runs(data, layout, sizes, a, b)
        n = len(durations)
        cut_aux(data, boxes_in, n, a, b, track, replaced, [first for _, first, _, _ in layout])
        for box in boxes_in:
            if box.type == b"sbgp":
                replaced[box.start] = cut_sbgp(data, box, n, a, b)
            elif box.type == b"sdtp":
                p = bytes(data[box.payload : box.end])
                replaced[box.start] = make_box(b"sdtp", p[:4] + p[4 + a : 4 + b])
            elif box.type in (b"subs", b"trik"):
                replaced[box.start] = None  # per-sample tables not cut: dropped rather than left wrong
            elif box.type == b"uuid" and bytes(data[box.payload - 16 : box.payload]) in _SMOOTH_TIMES:
                replaced[box.start] = None  # Smooth's tfxd/tfrf: the uncut fragment's times, wrong for the cut
        return kept_runs, replaced

    def _set_origin(self, track: TrackCut, decode_time: int) -> None:
        """start and end count from the first audio traf's decode time, not from 0: fragments packaged
        from a TS or a live source keep its clock (Shaka's from a TS begin at its PTS), and ffmpeg's
        -ss and a player's seek bar count from the file's first sample too. Every track takes the same
        origin in presentation time, so that they stay in step; all times of the cut (and mehd's
        duration) are then measured from it."""
        if self._origin is None:
            self._origin = (decode_time, track.timescale)
        time, timescale = self._origin
        track.origin = time * track.timescale // timescale

    def _rebase(self, track: TrackCut, first_kept: int) -> None:
        """The output's timeline begins with the first sample kept: its fragments' decode times start at
        0 (players that read a fragmented file's duration from its samples, Chromium's and ffmpeg's
        demuxers, ignore its edit list), and the edit list skips the pre-roll. Every track is moved by
        the same presentation time as the first one kept, so that they stay in step (a sample of
        another track before its new time 0 goes)."""
        self._anchor = (track.first - first_kept, track.timescale)
        skip, timescale = self._anchor
        for other in self.tracks.values():
            other.rebase = max(0, other.first - skip * other.timescale // timescale)
        track.rebase = first_kept

    @property
    def past_end(self) -> bool:
        """Every track's fragments have reached past the cut's end: no later sample is kept."""
        return all(t.end is not None and t.origin is not None and t.next_time > t.end for t in self.tracks.values())

    def check_end(self) -> None:
        """After the last fragment: SeekPastEnd when no sample of any track was kept."""
        if not any(t.kept for t in self.tracks.values()):
            duration = max((t.media_end / t.timescale for t in self.tracks.values()), default=0)
            raise SeekPastEnd(f"start {self.seek.start / 1000:g} s is past the audio's duration of {duration:g} s "
                              f"(the CDN answers 400)")


def _track_id(data, trak: Box) -> int:
    tkhd = find(data, trak, b"tkhd")
    if tkhd is None or tkhd.size - tkhd.header < 24:
        raise MalformedInput(f"trak at byte {trak.start} has no usable tkhd")
    return _u32(data, tkhd.payload + (20 if data[tkhd.payload] == 1 else 12))


def _iv_size(data, trak: Box) -> int | None:
    """tenc's default per-sample IV size in the track's sample entry (None: not encrypted, or not found)."""
    at = bytes(data[trak.start : trak.end]).find(b"tenc")
    if at < 4:
        return None
    payload = trak.start + at + 4
    return data[payload + 7] if payload + 8 <= trak.end else None


def _cut_head(head: bytes, moov: Box, lengths: dict, known_end: bool, tracks: dict) -> bytes:
    """The head with each audio trak's edit list set to the cut (tkhd's duration with it) and the
    movie's durations (mvhd, mehd) to the longest; 0 where the end is not known (no end asked; or
    tkhd's and mvhd's, without mehd)."""
    movie = max((x for x in lengths.values() if x is not None), default=None)
    if any(x is None for x in lengths.values()) or not known_end:
        movie = None

    def trak(box: Box) -> bytes:
        track = tracks[_track_id(head, box)]
        length = lengths[box.start]
        edit = _full(b"elst", 0x01000000, struct.pack(">IQqhh", 1, length or 0, track.first - track.rebase, 1, 0))
        parts = []
        for child in children(head, box.payload, box.end):
            if child.type == b"edts":
                continue
            parts.append(_with_duration(head, child, (length or 0) if known_end else 0, 20, 28) if child.type == b"tkhd"
                         else bytes(head[child.start : child.end]))
            if child.type == b"tkhd":
                parts.append(make_box(b"edts", edit))
        return make_box(b"trak", b"".join(parts))

    def mvex(box: Box) -> bytes:
        return make_box(b"mvex", b"".join(_with_duration(head, c, movie or 0, 4, 4) if c.type == b"mehd"
                                          else bytes(head[c.start : c.end]) for c in children(head, box.payload, box.end)))

    parts = []
    for child in children(head, moov.payload, moov.end):
        if child.type == b"trak":
            parts.append(trak(child))
        elif child.type == b"mvhd":
            parts.append(_with_duration(head, child, movie or 0, 16, 24))
        elif child.type == b"mvex":
            parts.append(mvex(child))
        else:
            parts.append(bytes(head[child.start : child.end]))
    return bytes(head[: moov.start]) + make_box(b"moov", b"".join(parts)) + bytes(head[moov.end :])


def _with_duration(data, box: Box, duration: int, at_v0: int, at_v1: int) -> bytes:
    p = bytearray(data[box.payload : box.end])
    if len(p) < (at_v1 + 8 if p[:1] == b"\x01" else at_v0 + 4):
        raise MalformedInput(f"{box.name()} at byte {box.start} is too short for its duration")
    if p[0] == 1:
        struct.pack_into(">Q", p, at_v1, duration)
    else:
        struct.pack_into(">I", p, at_v0, min(duration, 0xFFFFFFFF))
    return make_box(box.type, bytes(p))
