"""`python -m extractor check`: what a file is, whether the CDN would extract its audio, whether we do.

Works on the whole file as one buffer (the command line maps it, so only the structures are read).
The CDN's documented limits: an MP4 must have its metadata (moov) before the media data and 8-byte
box headers for it (no 64-bit mdat); FLV has no requirement; MPEG-TS it does not extract at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import AudioExtractor, ExtractError, NoAudio
from . import detect as _detect
from .mp4 import boxes
from .spool import BufferSpool, SourceFileSpool
from .ts import TsAudioFilter
from .ts.streams import codec_name, is_hdmv
from .ts.streams import kind as stream_kind

FLV_AUDIO = {0: "pcm", 1: "adpcm", 2: "mp3", 3: "pcm_le", 4: "nellymoser16", 5: "nellymoser8", 6: "nellymoser",
             7: "g711a", 8: "g711u", 10: "aac", 11: "speex", 14: "mp3_8k"}
FLV_VIDEO = {2: "sorenson", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2", 7: "h264", 12: "hevc", 13: "av1"}


@dataclass
class Report:
    path: str
    container: str = "?"
    tracks: list[str] = field(default_factory=list)  # "audio mp4a", "video avc1", ...
    layout: list[str] = field(default_factory=list)  # facts about the structure
    cdn_ok: bool = False
    cdn_why: str = ""
    ours_ok: bool = False
    ours_why: str = ""
    output_size: int = 0
    input_size: int = 0
    tree: list[str] = field(default_factory=list)  # MP4: the box tree with sizes
    kept: list[str] = field(default_factory=list)  # what audio extraction keeps
    dropped: list[str] = field(default_factory=list)  # and what it drops

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.container}, {self.input_size} bytes",
               f"  tracks: {', '.join(self.tracks) or 'none found'}"]
        out += [f"  {fact}" for fact in self.layout]
        out.append(f"  CDN audio extraction: {'yes' if self.cdn_ok else 'no'}{': ' + self.cdn_why if self.cdn_why else ''}")
        if self.ours_ok:
            saved = 1 - self.output_size / self.input_size if self.input_size else 0
            out.append(f"  this product: yes, {self.output_size} bytes of output ({saved:.1%} saved)")
        else:
            out.append(f"  this product: no: {self.ours_why}")
        return out


def describe(data, name: str = "body") -> list[str]:
    """A report on a body held in memory (a content view in mitmproxy): what `check` says, what
    extraction keeps and drops, and for MP4 the box tree with sizes."""
    report = check(name, data, in_memory=True)
    out = report.lines()
    if report.kept or report.dropped:
        out.append(f"  audio extraction keeps: {', '.join(report.kept) or 'nothing'}")
        out.append(f"  and drops: {', '.join(report.dropped) or 'nothing'}")
    if report.tree:
        out.append("  boxes (bytes):")
        out += [f"    {line}" for line in report.tree]
    return out


# Containers the box tree opens (the rest are shown as leaves).
TREE_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"mvex", b"moof", b"traf", b"dinf",
                   b"sinf", b"schi"}
TREE_LINES = 80


def box_tree(data, start: int = 0, end: int | None = None, depth: int = 0, lines: list | None = None) -> list[str]:
    """'moov 6421' lines, indented by depth, for the first TREE_LINES boxes."""
    lines = [] if lines is None else lines
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end and len(lines) < TREE_LINES:
        try:
            box = boxes.parse_header(data, pos, end)
        except ExtractError as e:
            lines.append(f"{'  ' * depth}(unreadable: {e})")
            break
        size = box.end - box.start
        lines.append(f"{'  ' * depth}{box.type.decode('latin-1')} {size}")
        if box.type in TREE_CONTAINERS:
            box_tree(data, box.payload, min(box.end, end), depth + 1, lines)
        pos = box.end
    if len(lines) >= TREE_LINES and depth == 0:
        lines.append("...")
    return lines


def check(path: str, data, source=None, in_memory: bool = False) -> Report:
    """Report on one file; `data` is its content (a memory map), `source` the open file (for moov-last),
    or `in_memory` when data is the whole body and no file is behind it."""
    report = Report(path, input_size=len(data))
    try:
        kind = _detect.detect(bytes(data[: _detect.TS_NEEDED]), final=len(data) <= _detect.TS_NEEDED)
    except ExtractError as e:
        report.ours_why = report.cdn_why = str(e)
        return report
    try:
        if kind == _detect.MP4:
            _describe_mp4(data, report)
        elif kind == _detect.FLV:
            _describe_flv(data, report)
        elif kind == _detect.TS:
            _describe_ts(data, report)
    except ExtractError as e:  # a broken structure is a fact about the file, not a crash of the report
        report.layout.append(f"structure: {e}")
    _run(data, source, report, in_memory)
    return report


def _run(data, source, report: Report, in_memory: bool = False) -> None:
    spool_factory = None
    if source:
        spool_factory = lambda start: SourceFileSpool(source)  # noqa: E731
    elif in_memory:
        spool_factory = lambda start: BufferSpool(data)  # noqa: E731
    x = AudioExtractor(spool_factory=spool_factory, max_spool=1 << 62)
    try:
        report.output_size = sum(map(len, x.feed(data))) + sum(map(len, x.finish()))
        report.ours_ok = True
    except ExtractError as e:
        report.ours_why = str(e)
    finally:
        x.close()


def _stsd(data, trak: boxes.Box) -> boxes.Box | None:
    box = trak
    for kind in (b"mdia", b"minf", b"stbl", b"stsd"):
        box = boxes.find(data, box, kind)
        if box is None:
            return None
    return box


def _stsd_codec(data, trak: boxes.Box) -> str:
    box = _stsd(data, trak)
    if box is None:
        return "?"
    entry = box.payload + 8
    return bytes(data[entry + 4 : entry + 8]).decode("latin-1") if entry + 8 <= box.end else "?"


# pssh system IDs of the DRM systems people meet (https://dashif.org/identifiers/content_protection/).
DRM_SYSTEMS = {
    "edef8ba979d64acea3c827dcd51d21ed": "Widevine", "9a04f07998404286ab92e65be0885f95": "PlayReady",
    "94ce86fb07ff4f43adb893d2fa968ca2": "FairPlay", "1077efecc0b24d02ace33c1e52e2fb4b": "ClearKey",
    "e2719d58a985b3c9781ab030af78d30e": "ClearKey (DASH-IF)",
}


def _encryption(data, trak: boxes.Box) -> str:
    """' (encrypted: cenc, key ID ...)' for a trak whose sample entry is protected (sinf), else ''."""
    stsd = _stsd(data, trak)
    if stsd is None:
        return ""
    entries = bytes(data[stsd.payload + 8 : stsd.end])
    at = entries.find(b"sinf")
    if at < 4:
        return ""
    sinf = entries[at - 4 : at - 4 + int.from_bytes(entries[at - 4 : at], "big")]
    schm, tenc = sinf.find(b"schm"), sinf.find(b"tenc")
    scheme = sinf[schm + 8 : schm + 12].decode("latin-1") if schm > 0 else "?"
    kid = sinf[tenc + 12 : tenc + 28].hex() if tenc > 0 and len(sinf) >= tenc + 28 else "?"
    return f" (encrypted: {scheme}, key ID {kid})"


def _pssh_systems(data, boxes_found: list[boxes.Box]) -> list[str]:
    names = []
    for box in boxes_found:
        system = bytes(data[box.payload + 4 : box.payload + 20]).hex()
        name = DRM_SYSTEMS.get(system, system)
        if name not in names:
            names.append(name)
    return names


def _mdhd_duration(data, mdia: boxes.Box | None) -> str:
    """' 6.02 s' from the track's mdhd (version 0 or 1), or '' when it cannot be read."""
    mdhd = boxes.find(data, mdia, b"mdhd") if mdia else None
    if mdhd is None or mdhd.payload + (32 if mdhd.payload < len(data) and data[mdhd.payload] == 1 else 20) > mdhd.end:
        return ""
    if data[mdhd.payload] == 1:
        timescale, duration = struct.unpack_from(">IQ", data, mdhd.payload + 20)
    else:
        timescale, duration = struct.unpack_from(">II", data, mdhd.payload + 12)
    return f" {duration / timescale:.2f} s" if timescale else ""


def _describe_mp4(data, report: Report) -> None:
    report.container = "MP4"
    top, pos, moov = [], 0, None
    try:
        while pos + 8 <= len(data):
            box = boxes.parse_header(data, pos, len(data))
            top.append(box)
            moov = moov or (box if box.type == b"moov" else None)
            pos = box.end
    except ExtractError as e:
        report.layout.append(f"structure: {e}")
    kinds = [b.type for b in top]
    mdats = [b for b in top if b.type == b"mdat"]
    brand = bytes(data[8:12]).decode("latin-1") if kinds[:1] == [b"ftyp"] else "none"
    report.layout.append(f"top level: {' '.join(k.decode('latin-1') for k in kinds[:12])}"
                         f"{' ...' if len(kinds) > 12 else ''} (brand {brand})")
    fragmented = b"moof" in kinds or (moov is not None and boxes.find(data, moov, b"mvex") is not None)
    moov_first = moov is not None and all(m.start > moov.start for m in mdats)
    wide = [m for m in mdats if m.header == 16]
    if moov is not None:
        for trak in (b for b in boxes.children(data, moov.payload, moov.end) if b.type == b"trak"):
            mdia = boxes.find(data, trak, b"mdia")
            hdlr = boxes.find(data, mdia, b"hdlr") if mdia else None
            handler = bytes(data[hdlr.payload + 8 : hdlr.payload + 12]).decode("latin-1") if hdlr else "?"
            name = {"soun": "audio", "vide": "video", "text": "text", "sbtl": "subtitles", "tmcd": "timecode"}
            track = f"{name.get(handler, handler)} {_stsd_codec(data, trak)}"
            encryption = _encryption(data, trak)
            report.tracks.append(track + _mdhd_duration(data, mdia) + encryption)
            (report.kept if handler == "soun" else report.dropped).append(track)
        pssh = [b for b in boxes.children(data, moov.payload, moov.end) if b.type == b"pssh"]
        if any("encrypted" in t for t in report.tracks):
            systems = _pssh_systems(data, pssh)
            report.layout.append(f"encryption: the samples are copied as they are, no key needed; pssh: "
                                 f"{', '.join(systems) if systems else 'none in the moov'} (kept)")
    report.tree = box_tree(data)
    report.layout.append(f"moov: {'before the media data' if moov_first else 'after the media data' if moov else 'missing'}")
    report.layout.append(f"mdat header: {', '.join(f'{m.header} bytes' for m in mdats) or 'no mdat'}")
    report.layout.append(f"fragmented: {'yes (moof)' if fragmented else 'no'}")
    if moov is None:
        report.cdn_why = "no moov"
    elif not moov_first:
        report.cdn_why = "the moov comes after the media data; the CDN needs the metadata in the file header"
    elif wide:
        report.cdn_why = "an mdat has a 16-byte (64-bit) header; the CDN supports only 8-byte box headers"
    else:
        report.cdn_ok = True


def _describe_flv(data, report: Report) -> None:
    report.container = "FLV"
    flags = data[4] if len(data) > 4 else 0
    report.layout.append(f"header flags: {'audio ' if flags & 4 else ''}{'video' if flags & 1 else ''}".rstrip())
    audio = video = None
    pos = struct.unpack_from(">I", data, 5)[0] + 4 if len(data) >= 9 else len(data)
    scanned = 0
    while pos + 12 <= len(data) and (audio is None or video is None) and scanned < 10000:
        kind, size = data[pos] & 0x1F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        first = data[pos + 11] if size else 0
        if kind == 8 and audio is None:
            audio = (bytes(data[pos + 12 : pos + 16]).decode("latin-1") if first >> 4 == 9
                     else FLV_AUDIO.get(first >> 4, f"format {first >> 4}"))
        elif kind == 9 and video is None:
            video = (bytes(data[pos + 12 : pos + 16]).decode("latin-1") if first & 0x80
                     else FLV_VIDEO.get(first & 0x0F, f"codec {first & 0x0F}"))
        pos += 11 + size + 4
        scanned += 1
    report.tracks = [t for t in (f"audio {audio}" if audio else "", f"video {video}" if video else "") if t]
    report.kept = ["the header (flags: audio)", "onMetaData without its video fields"] + (
        [f"audio tags ({audio})"] if audio else [])
    report.dropped = [f"video tags ({video})"] if video else []
    report.cdn_ok = True  # the CDN documents no requirement for FLV


def _describe_ts(data, report: Report) -> None:
    """Programs, PIDs, stream types, PCR PIDs and the audio's duration, from one pass of the filter
    itself (reading the PTS of each kept PES)."""
    size = _detect.ts_packet_size(bytes(data[: _detect.TS_NEEDED]), final=True) or 188
    report.container = "MPEG-TS" if size == 188 else f"M2TS ({size}-byte packets)"
    ts = TsAudioFilter(size, timing=True)
    try:
        ts.feed(data)
        ts.finish()
    except NoAudio:
        pass  # the verdict says it
    except ExtractError as e:
        report.layout.append(f"structure: {e}")
    report.layout.append(f"packets: {ts.packets} ({ts.kept_packets} kept)")
    for (pmt_pid, number), pmt in sorted(ts.pmts.items()):
        hdmv = is_hdmv(pmt)
        kinds = {s.pid: stream_kind(s, hdmv) for s in pmt.streams}
        pcr_kind = kinds.get(pmt.pcr_pid, "no stream")
        pcr_fate = "kept" if pcr_kind in ("audio", "data", "private") else "kept as PCR-only packets"
        report.layout.append(f"program {number}: PMT PID {pmt_pid} (version {pmt.version}), PCR PID {pmt.pcr_pid} "
                             f"({pcr_kind}: {pcr_fate})")
        for stream in pmt.streams:
            role = kinds[stream.pid]
            label = "audio" if role == "private" else role
            track = f"{label} {codec_name(stream, hdmv)} (PID {stream.pid}, type 0x{stream.stream_type:02x})"
            if stream.pid in ts.first_pts:
                span = (ts.last_pts[stream.pid] - ts.first_pts[stream.pid]) % (1 << 33) / 90000
                track += f" {span:.2f} s"
            report.tracks.append(track)
            (report.kept if role in ("audio", "data", "private") else report.dropped).append(track)
    report.kept = ["the PAT", "each PMT without the dropped streams"] + report.kept
    for warning in ts.warnings:
        report.layout.append(f"warning: {warning}")
    report.cdn_why = "the CDN extracts audio from MP4 and FLV only"
