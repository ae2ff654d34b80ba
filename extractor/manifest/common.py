"""What the HLS and DASH rewriters share: the URL contract of the segments they name, and codecs.

The URL contract (the addon honours it): every URI a player fetches for media gets the client's audio
parameter, appended as the client wrote it (`param_text`, e.g. `ali_audio_only=1`), so the segment
comes back audio only. Two more parameters, named after the audio parameter and stripped by our server
before it asks the origin:
  <name>_track=<id>[,<id>]   an fMP4 media segment (no moov of its own): the audio track IDs to keep
  <name>_range=<first>-<last> the segment is bytes first..last (inclusive) of the URI (a byte-range
                             playlist); `<first>-` runs to the end of the resource.

URIs stay relative when they were: a relative reference that carries its own query resolves against
the playlist's (or MPD's) URL to the same path with that query (RFC 3986 §5.2.2), so nothing needs to
be made absolute to carry the parameter; the query of the playlist's own URL is never inherited.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# RFC 6381 sample entry codes (the part before the first dot) of audio codecs.
AUDIO_CODECS = {"mp4a", "ac-3", "ec-3", "ac-4", "opus", "Opus", "fLaC", "flac", "alac", "dtsc", "dtse", "dtsh",
                "dtsl", "dtsx", "mha1", "mhm1", "mp3", ".mp3", "ulaw", "alaw", "ipcm", "fpcm", "vorbis"}

# What a BANDWIDTH may honestly say for an audio stream when nothing in the playlist measures it: the
# common ceiling of the codec's deployed bitrates (bits/s). A player's ABR only compares variants, so
# an upper bound never makes it choose a stream the link cannot carry.
AUDIO_BANDWIDTH = {"mp4a.40.2": 192_000, "mp4a.40.5": 96_000, "mp4a.40.29": 64_000, "mp4a.40.34": 320_000,
                   "mp4a.69": 320_000, "mp4a.6b": 320_000, "mp4a.6B": 320_000, "ac-3": 640_000, "ec-3": 768_000,
                   "ac-4": 320_000, "opus": 256_000, "Opus": 256_000, "fLaC": 1_600_000, "flac": 1_600_000,
                   "alac": 1_600_000}
DEFAULT_AUDIO_BANDWIDTH = 192_000


def split_codecs(codecs: str | None) -> list[str]:
    return [c.strip() for c in (codecs or "").split(",") if c.strip()]


def is_audio_codec(codec: str) -> bool:
    return codec.split(".", 1)[0] in AUDIO_CODECS


def audio_codecs(codecs: str | None) -> list[str]:
    return [c for c in split_codecs(codecs) if is_audio_codec(c)]


def audio_bandwidth(codecs: list[str], ceiling: int | None = None) -> int:
    """An honest BANDWIDTH for audio of these codecs: the sum of each one's ceiling (the exact code,
    then its sample entry, then a default), never above `ceiling` (the variant's own figure, which
    covered the audio too)."""
    total = sum(AUDIO_BANDWIDTH.get(c, AUDIO_BANDWIDTH.get(c.split(".", 1)[0], DEFAULT_AUDIO_BANDWIDTH))
                for c in codecs) or DEFAULT_AUDIO_BANDWIDTH
    return min(total, ceiling) if ceiling else total


def has_param(uri: str, name: str) -> bool:
    query = urlsplit(uri).query
    return any(part.split("=", 1)[0] == name for part in query.split("&"))


def with_params(uri: str, params: list[str]) -> str:
    """`uri` with `params` (each `name=value` text, already encoded) appended to its query, before any
    fragment; a data: URI is returned as it is (it is fetched from nowhere)."""
    if uri.startswith("data:"):
        return uri
    head, hash_, fragment = uri.partition("#")
    params = [p for p in params if not has_param(head, p.split("=", 1)[0])]
    if not params:
        return uri
    joiner = "&" if "?" in head else "?"
    if head.endswith(("?", "&")):
        joiner = ""
    return head + joiner + "&".join(params) + hash_ + fragment


def range_param(name: str, first: int, last: int | None) -> str:
    return f"{name}_range={first}-{'' if last is None else last}"


def track_param(name: str, track_ids) -> str:
    return f"{name}_track={','.join(str(t) for t in track_ids)}"


@dataclass(frozen=True)
class InitSegment:
    """An init segment a playlist or MPD names: its absolute URL and byte range (first, last inclusive;
    None: the whole resource). The addon reads its audio track IDs (extractor.mp4.sidx.audio_track_ids) and
    hands them to the rewriter, keyed by this, so that the media segments name them."""
    url: str
    first: int | None = None
    last: int | None = None
