"""The segment index (sidx, ISO/IEC 14496-12 §8.16.3) of an audio-only fragmented output, and what an
init segment says about its tracks.

A sidx names, for each subsegment (a run of fragments), its size in bytes and its duration. Once video
is removed, every size shrinks: the new size of a reference is the sum of the output made from the
input boxes it covered (each moof: its new moof, mdat header and audio; small boxes passed on), and
its duration is the audio's own (from the trun sample durations, tfhd or trex defaults), in the audio
track's timescale, indexed by the audio track's ID. So the sidx can be written only once every
fragment it covers has been read: the file plan (file.plan_fragmented_file) and the segment filter
(segment.py, which holds a segment's output until then) can; a stream of a whole file cannot without
holding the whole file, so the streamed answer leaves the sidx out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import MalformedInput
from .boxes import Box, children, find, make_box, parse_header, versioned_value

SOUND = b"soun"
# tfhd / trun flags (as fragmented.py)
_BASE_DATA_OFFSET, _DESCRIPTION, _DEFAULT_DURATION = 0x01, 0x02, 0x08
_SAMPLE_DURATION, _DATA_OFFSET, _FIRST_FLAGS = 0x100, 0x01, 0x04
SAP_AUDIO = 0x90000000  # starts_with_SAP 1, SAP_type 1: every audio frame is a sync point


@dataclass
class InitInfo:
    """What an init segment's moov says: its audio tracks, their timescales, trex defaults."""
    audio_ids: tuple[int, ...]
    timescales: dict[int, int] = field(default_factory=dict)  # track ID -> mdhd timescale (audio tracks)
    default_sizes: dict[int, int] = field(default_factory=dict)  # trex default_sample_size
    default_durations: dict[int, int] = field(default_factory=dict)  # trex default_sample_duration


def read_moov(data, moov: Box) -> InitInfo:
    info = InitInfo(())
    audio = []
    for trak in (b for b in children(data, moov.payload, moov.end) if b.type == b"trak"):
        tkhd, mdia = find(data, trak, b"tkhd"), find(data, trak, b"mdia")
        hdlr = find(data, mdia, b"hdlr") if mdia else None
        mdhd = find(data, mdia, b"mdhd") if mdia else None
        if not (tkhd and hdlr and mdhd) or tkhd.size - tkhd.header < 24 or mdhd.size - mdhd.header < 24:
            raise MalformedInput(f"trak at byte {trak.start} lacks a whole tkhd, mdia/hdlr or mdia/mdhd")
        track_id = struct.unpack_from(">I", data, tkhd.payload + (20 if data[tkhd.payload] == 1 else 12))[0]
        if bytes(data[hdlr.payload + 8 : hdlr.payload + 12]) == SOUND:
            audio.append(track_id)
            at = mdhd.payload + (20 if data[mdhd.payload] == 1 else 12)
            info.timescales[track_id] = struct.unpack_from(">I", data, at)[0]
    info.audio_ids = tuple(audio)
    mvex = find(data, moov, b"mvex")
    for trex in (b for b in children(data, mvex.payload, mvex.end) if b.type == b"trex") if mvex else ():
        if trex.size - trex.header >= 24:
            track_id, duration, size = struct.unpack_from(">I4xII", data, trex.payload + 4)
            info.default_durations[track_id], info.default_sizes[track_id] = duration, size
    return info


def read_init(init) -> InitInfo:
    """The InitInfo of an init segment (ftyp + moov, or any file that holds a moov at its top level)."""
    pos = 0
    while pos + 8 <= len(init):
        box = parse_header(init, pos, len(init))
        if box.type == b"moov":
            return read_moov(init, box)
        pos = box.end
    raise MalformedInput(f"the init segment ({len(init)} bytes) holds no moov box")


def audio_track_ids(init) -> tuple[int, ...]:
    """The audio track IDs of an init segment: what `<name>_track` names for its media segments."""
    return read_init(init).audio_ids


def audio_timing(moof, track_id: int, default_duration: int | None) -> tuple[int | None, int] | None:
    """(baseMediaDecodeTime or None, duration) of the track's samples in a moof (the whole box, header
    included); None when the moof carries no traf of that track."""
    header = 16 if struct.unpack_from(">I", moof)[0] == 1 else 8
    found = None
    for traf in (b for b in children(moof, header, len(moof)) if b.type == b"traf"):
        inner = list(children(moof, traf.payload, traf.end))
        tfhd = next((b for b in inner if b.type == b"tfhd"), None)
        if tfhd is None or struct.unpack_from(">I", moof, tfhd.payload + 4)[0] != track_id:
            continue
        flags = struct.unpack_from(">I", moof, tfhd.payload)[0] & 0xFFFFFF
        duration_default = default_duration
        if flags & _DEFAULT_DURATION:
            at = tfhd.payload + 8 + (8 if flags & _BASE_DATA_OFFSET else 0) + (4 if flags & _DESCRIPTION else 0)
            duration_default = struct.unpack_from(">I", moof, at)[0]
        base = None
        tfdt = next((b for b in inner if b.type == b"tfdt"), None)
        if tfdt is not None:
            base = versioned_value(moof, tfdt, "of a moof")
        total = 0
        for trun in (b for b in inner if b.type == b"trun"):
            total += _trun_duration(moof, trun, duration_default, track_id)
        found = (base if found is None else found[0], total + (found[1] if found else 0))
    return found


def _trun_duration(moof, trun: Box, default: int | None, track_id: int) -> int:
    flags, count = struct.unpack_from(">II", moof, trun.payload)
    flags &= 0xFFFFFF
    if not flags & _SAMPLE_DURATION:
        if default is None:
            raise MalformedInput(f"trun at byte {trun.start} of a moof gives track {track_id}'s samples no duration "
                                 f"and there is no default")
        return count * default
    pos = trun.payload + 8 + (4 if flags & _DATA_OFFSET else 0) + (4 if flags & _FIRST_FLAGS else 0)
    fields = bin(flags & 0xF00).count("1")
    if pos + count * fields * 4 > trun.end:
        raise MalformedInput(f"trun at byte {trun.start} of a moof claims {count} samples, more than it holds")
    values = struct.unpack_from(f">{count * fields}I", moof, pos)
    return sum(values[::fields])  # the duration is each sample's first field


@dataclass
class Sidx:
    start: int  # input offset of the box
    end: int
    version: int
    reference_id: int
    timescale: int
    earliest: int
    first_offset: int
    references: list[tuple[int, int, int, int]]  # (type, size, duration, SAP word)

    @property
    def hierarchical(self) -> bool:
        return any(kind for kind, *_ in self.references)

    def spans(self) -> list[tuple[int, int]]:
        """The input bytes each reference covers."""
        out, at = [], self.end + self.first_offset
        for _, size, _, _ in self.references:
            out.append((at, at + size))
            at += size
        return out


def parse_sidx(data, start: int) -> Sidx:
    """The sidx box whose bytes are `data` (header included), found at input offset `start`."""
    box = parse_header(data, 0, len(data))
    p = box.payload
    version = data[p]
    fixed = 20 if version == 0 else 28
    if box.size - box.header < fixed + 4:
        raise MalformedInput(f"sidx at byte {start} is too short")
    reference_id, timescale = struct.unpack_from(">II", data, p + 4)
    earliest, first_offset = struct.unpack_from(">II" if version == 0 else ">QQ", data, p + 12)
    count = struct.unpack_from(">H", data, p + fixed + 2)[0]
    if p + fixed + 4 + 12 * count > box.end:
        raise MalformedInput(f"sidx at byte {start} claims {count} references, more than it holds")
    raw = struct.unpack_from(f">{3 * count}I", data, p + fixed + 4)
    references = [(raw[i] >> 31, raw[i] & 0x7FFFFFFF, raw[i + 1], raw[i + 2]) for i in range(0, 3 * count, 3)]
    return Sidx(start, start + box.size, version, reference_id, timescale, earliest, first_offset, references)


def build_sidx(version: int, reference_id: int, timescale: int, earliest: int, first_offset: int,
               references: list[tuple[int, int, int, int]]) -> bytes:
    if version == 0 and max(earliest, first_offset) > 0xFFFFFFFF:
        version = 1
    times = struct.pack(">II" if version == 0 else ">QQ", earliest, first_offset)
    body = b"".join(struct.pack(">III", kind << 31 | size, duration, sap) for kind, size, duration, sap in references)
    return make_box(b"sidx", struct.pack(">III", version << 24, reference_id, timescale) + times
                    + struct.pack(">HH", 0, len(references)) + body)


@dataclass
class Made:
    """What one input box after a sidx became: its input offset, the bytes it made in the output, and
    for a moof its audio's (baseMediaDecodeTime or None, duration), None otherwise."""
    start: int
    size: int
    timing: tuple[int | None, int] | None = None


def indexes_to_keep(found: list[Sidx], audio_ids) -> list[Sidx]:
    """The input sidx boxes the output keeps (rewritten): those of audio tracks; with none, the first
    (an index of the video, rewritten for the audio). One per track: ffmpeg's global_sidx writes one
    for each track, each covering every fragment."""
    return [s for s in found if s.reference_id in audio_ids] or found[:1]


def rewrite_sidx(sidx: Sidx, made: list[Made], track_id: int, timescale: int | None) -> tuple[bytes | None, str | None]:
    """(the audio's sidx, None) from an input sidx and what the boxes after it made; (None, why) when it
    cannot be rewritten (then the output has none: a wrong index is worse than none). `timescale`: the
    audio track's (None: unknown, usable only when the sidx already indexes that track)."""
    if sidx.hierarchical:
        return None, f"the sidx at byte {sidx.start} indexes other sidx boxes (a hierarchy): left out"
    if timescale is None:
        if sidx.reference_id != track_id:
            return None, (f"the sidx at byte {sidx.start} indexes track {sidx.reference_id}, and the timescale of "
                          f"audio track {track_id} is unknown (no moov): left out")
        timescale = sidx.timescale
    spans = sidx.spans()
    references, earliest, lead = [], None, 0
    for kind, _, _, sap in sidx.references:
        references.append([kind, 0, 0, sap if sidx.reference_id == track_id else SAP_AUDIO])
    for box in made:
        if sidx.end <= box.start < spans[0][0]:
            lead += box.size  # between the sidx and its first subsegment
            continue
        n = next((i for i, (a, b) in enumerate(spans) if a <= box.start < b), None)
        if n is None:
            continue
        references[n][1] += box.size
        if box.timing is not None:
            base, duration = box.timing
            references[n][2] += duration
            if earliest is None and base is not None:
                earliest = base
    if any(size > 0x7FFFFFFF or duration > 0xFFFFFFFF for _, size, duration, _ in references):
        return None, (f"a subsegment of the sidx at byte {sidx.start} is over 2 GiB or 2^32 ticks long, past what a "
                      f"sidx reference holds: left out")
    return build_sidx(sidx.version, track_id, timescale, earliest or 0, lead, [tuple(r) for r in references]), None
