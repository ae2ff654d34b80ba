"""Audio extraction from MP4, FLV and MPEG-TS, sans IO: bytes in, bytes out.

    extractor = AudioExtractor(max_header=64 << 20)
    for piece in body:
        send(b"".join(extractor.feed(piece)))
    send(b"".join(extractor.finish()))     # raises if the input was bad or short

Errors are subclasses of ExtractError (see errors.py). The core knows no URL, header or socket.
"""

from __future__ import annotations

import importlib

from . import detect as _detect
from .errors import (ExtractError, LimitExceeded, MalformedInput, NoAudio, SeekPastEnd, SpoolFailed, TruncatedInput,
                     UnsupportedInput)
from .seek import SeekRange, parse_range

# The formats' modules are imported when first used (a command line run extracting one FLV never
# imports the MP4 and TS readers, nor construct's MP4 structures): name -> its module.
_LAZY = {
    "FlvAudioFilter": ".flv", "Mp4AudioFilter": ".mp4", "TsAudioFilter": ".ts", "SegmentFilter": ".mp4.segment",
    "Batch": ".mp4.file", "FilePlan": ".mp4.file", "Run": ".mp4.file", "SpanCutter": ".mp4.file",
    "plan_file": ".mp4.file", "plan_fragmented_file": ".mp4.file",
    "Plan": ".mp4.plan", "PlanRequest": ".mp4.plan", "make_plan": ".mp4.plan",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # once: later lookups find it at once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Formats the core extracts; the addon only announces extraction for these.
SUPPORTED_FORMATS = frozenset({_detect.FLV, _detect.MP4, _detect.TS})

DEFAULT_MAX_HEADER = 64 << 20

__all__ = [
    "AudioExtractor", "TsAudioFilter", "ExtractError", "LimitExceeded", "MalformedInput", "NoAudio", "SeekPastEnd", "SpoolFailed", "TruncatedInput",
    "UnsupportedInput", "Batch", "Run", "SpanCutter", "FilePlan", "plan_file", "plan_fragmented_file", "Plan", "PlanRequest", "make_plan", "SUPPORTED_FORMATS", "DEFAULT_MAX_HEADER", "SeekRange", "parse_range",
]


class AudioExtractor:
    """One per response: detects the container from the first bytes, then delegates to its filter.

    spool_factory(start_offset) -> Spool holds an MP4's media data that arrives before its moov, up to
    max_spool bytes (see spool.py); without one, such files are refused.
    """

    def __init__(self, max_header: int = DEFAULT_MAX_HEADER, spool_factory=None, max_spool: int = 0,
                 cdn_limits: bool = False, flv_seek: SeekRange | None = None, mp4_seek: SeekRange | None = None,
                 keep_video: bool = False, defer_plans: bool = False, replay_in_pieces: bool = False,
                 ts_seek: SeekRange | None = None, segment_tracks=None):
        self.max_header = max_header
        self.defer_plans = defer_plans  # MP4: see plan_wanted
        self.replay_in_pieces = replay_in_pieces  # MP4: see backlog
        self.flv_seek = flv_seek  # FLV: the part of the input wanted (seek.py)
        self.mp4_seek = mp4_seek  # MP4: the time range wanted, in milliseconds
        self.ts_seek = ts_seek  # MPEG-TS: the time range wanted, in milliseconds (by_time), by audio PTS
        # An fMP4 media segment (no moov of its own): the audio track IDs to keep, read from its init
        # segment (mp4/segment.py). Without them an MP4 body is read as a whole file.
        self.segment_tracks = tuple(segment_tracks or ())
        self.keep_video = keep_video  # the CDN's plain video seeking: cut, but keep the video
        self.cdn_limits = cdn_limits  # MP4: refuse the layouts the emulated CDN refuses
        self.spool_factory = spool_factory
        self.max_spool = max_spool
        self._head = b""
        self._impl = None

    @property
    def format(self) -> str | None:
        """'flv', 'mp4' or 'ts' once detected, else None."""
        return self._impl.format if self._impl else None

    @property
    def bytes_in(self) -> int:
        return self._impl.bytes_in if self._impl else len(self._head)

    @property
    def bytes_out(self) -> int:
        return self._impl.bytes_out if self._impl else 0

    @property
    def warnings(self) -> list[str]:
        return self._impl.warnings if self._impl else []

    def feed(self, data) -> list:
        if self._head or len(data) < _detect.TS_NEEDED:
            self._head += data  # only the first few bytes of a body ever wait here
            data, self._head = self._head, b""
            if _detect.detect(data[: _detect.TS_NEEDED]) is None:
                self._head = data
                return []
        self._start(data)
        self.feed = self._impl.feed  # from now on, pieces go straight to the filter: it is the hot path
        return self._impl.feed(data)

    def _start(self, head, final: bool = False) -> None:
        kind = _detect.detect(head[: _detect.TS_NEEDED], final)
        if kind == _detect.MP4 and self.segment_tracks:
            from .mp4.segment import SegmentFilter
            self._impl = SegmentFilter(self.segment_tracks, max_header=self.max_header)
        elif kind == _detect.MP4:
            from .mp4 import Mp4AudioFilter
            self._impl = Mp4AudioFilter(self.max_header, self.spool_factory, self.max_spool, self.cdn_limits, self.mp4_seek,
                                        self.keep_video, self.defer_plans, self.replay_in_pieces)
        elif kind == _detect.TS:
            from .ts import TsAudioFilter
            self._impl = TsAudioFilter(_detect.ts_packet_size(head, final), self.ts_seek)
        else:
            from .flv import FlvAudioFilter
            self._impl = FlvAudioFilter(self.max_header, self.flv_seek, self.keep_video)

    @property
    def done(self) -> bool:
        """Nothing more of the input can go out (a cut's end is passed): a caller may stop reading and
        call finish (a live stream with an end never ends by itself)."""
        return bool(getattr(self._impl, "done", False))

    @property
    def in_metadata(self) -> bool:
        """Inside metadata that is held whole before anything of it can go out (an MP4's moov or moof,
        an FLV script tag): a caller may bound how long that takes (a trickling origin)."""
        return self.metadata_start is not None

    @property
    def metadata_start(self) -> int | None:
        """Input offset where the metadata being held began (None: none is held): a new value is a new
        box, whose deadline starts anew."""
        return self._impl.metadata_start if self._impl else None

    @property
    def metadata_size(self) -> int | None:
        """Size of the metadata being held (None: none is): what a caller's memory budget counts."""
        return self._impl.metadata_size if self._impl else None

    @property
    def wants_tail(self) -> int | None:
        """An MP4 whose media data comes before its moov: the input offset where the data after it
        starts. Fetching from there (a Range request) and passing it to tail_moov, then its plan to
        provide_tail_plan, lets audio start before the whole file has passed."""
        return getattr(self._impl, "wants_tail", None)

    @property
    def plan_wanted(self) -> PlanRequest | None:
        """With defer_plans, after a feed that completed an MP4's moov: what to plan (make_plan, wherever
        the caller likes); the input stops there until provide_plan gets the result."""
        return getattr(self._impl, "plan_wanted", None)

    @property
    def backlog(self) -> bool:
        """With replay_in_pieces: audio read back from the spool waits; drain() it before the next feed."""
        return self.format == _detect.MP4 and self._impl.backlog

    def drain(self, most: int = 1 << 20) -> list:
        """The next output of the backlog, about `most` bytes (see backlog)."""
        return self._impl.drain(most) if self.format == _detect.MP4 else []

    def pop_plan_request(self) -> PlanRequest | None:
        """plan_wanted handed over (the filter lets go of the moov, and still waits for provide_plan)."""
        return self._impl.pop_plan_request() if self.format == _detect.MP4 else None

    def provide_plan(self, plan: Plan) -> list:
        return self._impl.provide_plan(plan)

    def tail_moov(self, offset: int, data: bytes) -> PlanRequest | None:
        """The moov in bytes fetched from wants_tail on, as a plan request (None: none, or too late); its
        plan then goes to provide_tail_plan."""
        return self._impl.tail_moov(offset, data) if self.format == _detect.MP4 else None

    def provide_tail_plan(self, request: PlanRequest, plan: Plan) -> bool:
        return self._impl.provide_tail_plan(request, plan)

    def close(self) -> None:
        """Release what the filter holds outside memory (an MP4 spool); safe to call at any time."""
        if self.format == _detect.MP4:
            self._impl.close()

    def finish(self) -> list:
        if not self._impl:
            if not self._head:
                raise TruncatedInput("the body is empty")
            try:
                whole_ts = _detect.detect(self._head, final=True) == _detect.TS  # one or two packets
            except UnsupportedInput:
                whole_ts = False
            if not whole_ts:
                raise TruncatedInput(f"the body is only {len(self._head)} bytes, too short to be a media file")
            self._start(self._head, final=True)
            out = self._impl.feed(self._head)
            return out + self._impl.finish()
        return self._impl.finish()
