"""The media formats the edge answers for, in one table: a new format is one row here.

A row says how to know the format (path extensions; content types, and for a generic content type
the path's extension), what our answer's Content-Type is, and how a request for it is answered:

- "file": served as a file (a length, Range requests, conditionals) when the origin serves ranges
  with a validator (extended mode, audio_only_origin_ranges), else streamed;
- "stream": the origin's whole answer fed through the core as it arrives, chunked;
- "manifest": the origin's playlist or manifest fetched whole and rewritten (HLS, DASH:
  addon/server/manifest_answer.py), so that every segment it names comes back audio only.

The answer kinds are our server's (addon/server/app.py, ANSWERS); the core decides what a body is
(the stream answer asks it, and never tells one format from another itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Format:
    name: str  # the core's name for it (extractor.detect), and its seek argument's: `<name>_seek`
    extensions: tuple[str, ...]  # of a path, lowercase, with the dot
    content_types: tuple[str, ...]  # of an origin's answer, lowercase
    output_type: str  # the Content-Type of our audio-only answer
    answer: str  # "file", "stream" or "manifest": how a request for it is answered (above)
    metadata: str  # what the core holds before output, in words for the log (the metadata deadline)
    # A cut's start and end are seconds (True), or as the host's FLV setting says (None: bytes, or
    # seconds with audio_only_flv_seek_by_time or video_seek's flv_seek_by_time).
    seek_in_seconds: bool | None = True
    cdn: bool = True  # the emulated CDN extracts it too (audio_only_compat=cdn leaves the others alone)
    plain_seek: bool = True  # the CDN's plain video seeking cuts it too (with the video kept)

    @property
    def seek_argument(self) -> str:
        """The core's keyword for a cut of this format (extractor.AudioExtractor)."""
        return f"{self.name}_seek"

    @property
    def seek_keys(self) -> tuple[str, str]:
        """The names of its cut's start and end parameters' settings (audio_only_<key>, video_seek's)."""
        return f"{self.name}_seek_start", f"{self.name}_seek_end"


FORMATS = (
    Format("mp4", (".mp4", ".m4a", ".m4v", ".mov", ".f4v"),
           ("video/mp4", "audio/mp4", "video/quicktime", "video/x-m4v", "audio/x-m4a", "video/x-f4v",
            "video/iso.segment", "audio/iso.segment"),
           "audio/mp4", "file", "moov or moof"),
    Format("flv", (".flv",), ("video/x-flv", "video/flv", "application/x-flv"), "video/x-flv", "stream", "script tag",
           seek_in_seconds=None),
    # An audio-only TS is still MPEG-TS (HLS serves its audio-only segments so); its length is never
    # known before the input ends, so it is always streamed, live or not.
    # The CDN extracts no TS, and its plain seeking cuts MP4 and FLV only (the TS filter drops video).
    Format("ts", (".ts", ".m2ts", ".mts"), ("video/mp2t", "video/vnd.dlna.mpeg-tts", "audio/mp2t"), "video/mp2t",
           "stream", "PAT/PMT section", cdn=False, plain_seek=False),
    # Playlists and manifests: rewritten whole (no seek parameters: a player seeks by segments).
    Format("hls", (".m3u8",), ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                               "audio/x-mpegurl"), "", "manifest", "playlist", cdn=False),
    Format("dash", (".mpd",), ("application/dash+xml",), "", "manifest", "MPD", cdn=False),
)
# fMP4 segments of HLS and DASH: MP4 bodies without a moov, answered by streaming (their audio tracks
# are named by the rewritten playlist: `<name>_track`); an init segment is an MP4 like any other.
SEGMENT_EXTENSIONS = (".m4s", ".cmfa", ".cmfv")
BY_NAME = {f.name: f for f in FORMATS}
BY_EXTENSION = {ext: f for f in FORMATS for ext in f.extensions} | {ext: BY_NAME["mp4"] for ext in SEGMENT_EXTENSIONS}
BY_CONTENT_TYPE = {ctype: f for f in FORMATS for ctype in f.content_types}
# The cut's parameter settings of every format (audio_only_mp4_seek_start, video_seek's flv_seek_end...).
SEEK_KEYS = tuple(key for f in FORMATS if f.answer != "manifest" for key in f.seek_keys)
# Content types that say nothing of the body: the path's extension decides.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "application/x-octet-stream"})


def by_path(path: str) -> Format | None:
    """The format a request's path names by its extension (the query aside)."""
    return BY_EXTENSION.get(PurePosixPath(path.split("?")[0]).suffix.lower())


def of_answer(content_type: str, path: str) -> Format | None:
    """The format an origin's answer is, by its content type (or, for a generic one, the path)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in BY_CONTENT_TYPE:
        return BY_CONTENT_TYPE[ctype]
    if ctype in GENERIC_TYPES:
        return by_path(path)
    return None
