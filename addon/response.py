"""The response side: extract, answer 400, or pass through; and the header edits for the audio.

Decided in `responseheaders`, when the origin's status and headers are known and before they leave
for the client: header edits in the `response` hook would be too late for a streamed body.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import human

import extractor
from addon import internals
from addon.origin_client import FETCH_ERRORS, OriginClient, OriginVersion, Target
from addon.file_server import FILE_HEADER, JOB_HEADER
from addon.request_rules import META
from addon.stream import TAIL_TIMEOUT, ExtractionStream
from extractor.errors import human_size
from extractor.spool import TempFileSpool

log = logging.getLogger("addon.audio_only")

# Content types of the media we extract, and the generic ones for which the path's extension decides.
MEDIA_TYPES = {
    "video/mp4": "mp4", "audio/mp4": "mp4", "video/quicktime": "mp4", "video/x-m4v": "mp4",
    "audio/x-m4a": "mp4", "video/x-f4v": "mp4",
    "video/x-flv": "flv", "video/flv": "flv", "application/x-flv": "flv",
}
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/x-octet-stream"}
EXTENSIONS = {".mp4": "mp4", ".mov": "mp4", ".m4a": "mp4", ".m4v": "mp4", ".f4v": "mp4", ".flv": "flv"}
OUTPUT_TYPES = {"mp4": "audio/mp4", "flv": "video/x-flv"}
# Headers that describe the origin's bytes, not ours.
DROPPED_RESPONSE_HEADERS = ("content-length", "accept-ranges", "content-range", "content-md5", "digest",
                            "transfer-encoding")
# Passthrough bodies at least this large (or of unknown size, when media) are streamed, not buffered.
STREAM_PASSTHROUGH_ABOVE = 1 << 20


def requested_format(flow: http.HTTPFlow) -> str | None:
    """'mp4' or 'flv' when the response's type (or, for generic types, the path) says media."""
    ctype = flow.response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in MEDIA_TYPES:
        return MEDIA_TYPES[ctype]
    if ctype in GENERIC_TYPES:
        return EXTENSIONS.get(Path(flow.request.path.split("?")[0]).suffix.lower())
    return None


def derived_etag(etag: str, part: str = "", kind: str = "audio") -> str:
    """An ETag for our bytes, distinct from the origin's but stable for the same origin version (and
    the same seek range, `part`)."""
    weak, _, opaque = etag.rpartition('"')[0].partition('"')
    if not opaque and not weak:
        return ""
    return f'{weak}"{opaque}-{kind}{part}"'


def why_not(flow: http.HTTPFlow, fmt: str | None) -> str:
    """Why an asked-for extraction does not happen, for the log."""
    response = flow.response
    if response.status_code != 200:
        return f"origin answered {response.status_code}"
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return f"origin body is {response.headers['content-encoding']}-encoded"
    if fmt is None:
        return f"content type {response.headers.get('content-type', '(none)')!r} is not MP4 or FLV"
    return f"{fmt.upper()} extraction is not available in this version"


def seek_range(flow: http.HTTPFlow, fmt: str, state: dict) -> extractor.SeekRange | None:
    """The part the request asks for (None: all of it): MP4 in seconds, FLV in bytes or seconds."""
    seek = state.get("seek")
    if not seek:
        return None
    v = seek["values"]
    if fmt == "mp4":
        wanted = extractor.parse_range(v["mp4_seek_start"], v["mp4_seek_end"], True)
    else:
        wanted = extractor.parse_range(v["flv_seek_start"], v["flv_seek_end"], seek["by_time"])
        length = flow.response.headers.get("content-length", "")
        if wanted and not wanted.by_time and length.isdigit() and wanted.start >= int(length):
            log.info(f"audio-only: {flow.request.pretty_url}: seek start {wanted.start} is past the file's "
                     f"{length} bytes: the whole file is sent (the CDN's rule for FLV)")
            return None
    if wanted:
        state["seek_range"] = wanted.describe()
    return wanted


def audio_headers(flow: http.HTTPFlow, fmt: str, seek: extractor.SeekRange | None, plain: bool) -> None:
    """The origin's headers made ours: no length or ranges (the body is streamed), our type, an ETag
    derived from the origin's, chunked framing for HTTP/1.1."""
    response = flow.response
    for name in DROPPED_RESPONSE_HEADERS:
        response.headers.pop(name, None)
    if not plain:
        response.headers["content-type"] = OUTPUT_TYPES[fmt]
    if etag := response.headers.get("etag"):
        part = f"-{seek.start}-{seek.end or ''}" if seek else ""
        if new_etag := derived_etag(etag, part, "seek" if plain else "audio"):
            response.headers["etag"] = new_etag
        else:
            response.headers.pop("etag")
    if flow.request.http_version == "HTTP/1.1":
        # Only HTTP/1.1 has chunked framing; mitmproxy frames when this header says so.
        response.headers["transfer-encoding"] = "chunked"


def answer_400(flow: http.HTTPFlow, reason: str) -> None:
    """Turn the origin's 200 into the 400 the CDN gives, before any header has left; the origin's body
    is not wanted, so its connection is closed once the 400 is out."""
    body = f"{reason}\n".encode()
    response = flow.response
    response.status_code, response.reason = 400, "Bad Request"
    response.headers.clear()
    response.headers["content-type"] = "text/plain; charset=utf-8"
    response.headers["content-length"] = str(len(body))
    sent = []

    def stream(data: bytes) -> list[bytes]:
        if sent:
            return []
        sent.append(True)
        if data:
            internals.close_server_connection(flow)
        return [body]

    response.stream = stream
    flow.metadata.setdefault(META, {})["answered"] = f"400: {reason}"
    log.info(f"audio-only: {flow.request.pretty_url}: answered 400: {reason} (as the CDN does)")


def stream_passthrough(flow: http.HTTPFlow, fmt: str | None) -> None:
    """A CDN edge never holds a whole video in memory: stream what we pass on untouched."""
    if not ctx.options.audio_only_stream_passthrough or flow.response.stream:
        return
    length = flow.response.headers.get("content-length", "")
    big = int(length) > STREAM_PASSTHROUGH_ABOVE if length.isdigit() else False
    media = fmt is not None or Path(flow.request.path.split("?")[0]).suffix.lower() in EXTENSIONS
    if big or media:
        flow.response.stream = True


def parse_size(option: str, minimum: int) -> int:
    """A size option's value in bytes (`64m`), or OptionsError naming the option."""
    value = getattr(ctx.options, option)
    try:
        size = human.parse_size(value) or 0
    except ValueError as e:
        raise exceptions.OptionsError(f"{option}: {e}") from None
    if size < minimum:
        raise exceptions.OptionsError(f"{option}: {value!r} is below {human_size(minimum)}")
    return size


class ResponseRules:
    """The response side's settings and its decision per response."""

    def __init__(self):
        self.max_header = extractor.DEFAULT_MAX_HEADER
        self.max_spool = 4 << 30
        self.origin = OriginClient()
        # Relayed flows' jobs by flow id (file_server.py): their server connection is our own server,
        # the job knows where their origin file is.
        self.relayed: dict = {}

    def configure(self, updated) -> None:
        if "audio_only_max_header" in updated:
            self.max_header = parse_size("audio_only_max_header", minimum=1024)
        for option in ("audio_only_origin_timeout", "audio_only_metadata_deadline"):
            if option in updated and getattr(ctx.options, option) < 0:
                raise exceptions.OptionsError(f"{option} must be 0 (off) or a number of seconds")
        if "audio_only_max_spool" in updated:
            self.max_spool = parse_size("audio_only_max_spool", minimum=0)
        if "audio_only_spool_dir" in updated and ctx.options.audio_only_spool_dir:
            if not Path(ctx.options.audio_only_spool_dir).is_dir():
                raise exceptions.OptionsError(
                    f"audio_only_spool_dir: {ctx.options.audio_only_spool_dir!r} is not a folder")
        self.origin.configure(updated)

    def decide(self, flow: http.HTTPFlow):
        """Extract, pass through, or (an awaitable) read the moov first to decide between a 400 and
        extraction: mitmproxy awaits what a hook returns, so the headers wait until it is done."""
        response = flow.response
        state = flow.metadata.get(META)
        fmt = requested_format(flow)
        if state and "passthrough" in state:  # decided on the request already
            stream_passthrough(flow, fmt)
            return None
        if state and state.get("file"):  # the answer of our file server (file_server.py)
            # The request went to us; what it shows (mitmweb, the log) is where it was for.
            scheme, host, port, host_header = state["origin"]
            flow.request.scheme, flow.request.host, flow.request.port = scheme, host, port
            flow.request.host_header = host_header
            flow.request.headers.pop(JOB_HEADER, None)
            served = response.headers.pop(FILE_HEADER, "relay")
            state["served"] = served
            if served == "file":  # already the audio, and headers as they should be
                flow.response.stream = True
                return None
        if state and response.status_code == 304 and (etag := response.headers.get("etag")):
            response.headers["etag"] = derived_etag(etag)
        eligible = (
            state is not None
            and response.status_code == 200
            and fmt in extractor.SUPPORTED_FORMATS
            and response.headers.get("content-encoding", "identity").lower() == "identity"
        )
        if not eligible:
            if state is not None:
                state["passthrough"] = why_not(flow, fmt)
                log.info(f"audio-only: {flow.request.pretty_url}: not extracted: {state['passthrough']}")
            stream_passthrough(flow, fmt)
            return None
        # Read from the origin's headers before they are edited.
        version = OriginVersion.of(response.headers)
        seek = seek_range(flow, fmt, state)
        if state.get("plain") and seek is None:
            stream_passthrough(flow, fmt)  # plain seeking with nothing to cut: the file as it is
            return None
        if fmt == "mp4" and seek and seek.start and version:
            return self.check_seek_then_extract(flow, fmt, state, seek, version)
        self.start_extraction(flow, fmt, state, seek, version)
        return None

    def target(self, flow: http.HTTPFlow) -> Target:
        """The origin file of a flow, for our own Range requests."""
        job = self.relayed.get(flow.id)
        return job.target if job is not None else Target.of(flow)

    async def check_seek_then_extract(self, flow: http.HTTPFlow, fmt: str, state: dict, seek: extractor.SeekRange,
                                      version: OriginVersion) -> None:
        """The CDN answers 400 when an MP4's seek start lies past the audio. The moov is needed to know
        that, so it is read first with Range requests; if it cannot be had, extraction goes on and a
        start past the end ends the response uncleanly instead."""
        try:
            moov = await asyncio.wait_for(self.origin.fetch_moov(self.target(flow), version, self.max_header), TAIL_TIMEOUT)
        except FETCH_ERRORS as e:
            log.info(f"audio-only: {flow.request.pretty_url}: could not read the moov before answering ({e!r})")
            moov = None
        # Parsing a moov takes a while when it is big: a worker thread does it, not the event loop.
        if moov is not None and await asyncio.to_thread(extractor.mp4_seek_past_end, moov, seek):
            answer_400(flow, f"seek start {seek.start / 1000:g} s is past the end of the audio")
            return
        self.start_extraction(flow, fmt, state, seek, version)

    def start_extraction(self, flow: http.HTTPFlow, fmt: str, state: dict, seek: extractor.SeekRange | None,
                         version: OriginVersion | None) -> None:
        """Edit the headers for the audio and wire the core to the body."""
        plain = bool(state.get("plain"))
        audio_headers(flow, fmt, seek, plain)
        state["format"] = fmt
        if flow.request.method.upper() == "HEAD":
            return
        spool_dir = ctx.options.audio_only_spool_dir or None
        core_options = dict(
            max_header=self.max_header, max_spool=self.max_spool, spool_factory=lambda start: TempFileSpool(start, spool_dir),
            cdn_limits=ctx.options.audio_only_compat == "cdn",
            flv_seek=seek if fmt == "flv" else None, mp4_seek=seek if fmt == "mp4" else None, keep_video=plain,
        )
        fetch_tail = None
        if version and ctx.options.audio_only_fetch_moov:
            target = self.target(flow)

            def fetch_tail(offset: int, limit: int):
                return self.origin.fetch_range(target, offset, limit, version)
        flow.response.stream = ExtractionStream(flow, fmt, core_options, fetch_tail, ctx.options.audio_only_origin_timeout,
                                                ctx.options.audio_only_metadata_deadline)

    @staticmethod
    def failed(flow: http.HTTPFlow) -> None:
        """mitmproxy's error hook: free what the response held, and name our reason on the flow
        (mitmweb shows it), not just the connection's fate."""
        stream = flow.response.stream if flow.response else None
        if isinstance(stream, ExtractionStream):
            stream.ended_by_others()
        state = flow.metadata.get(META)
        if state and "error" in state:
            flow.error.msg = f"audio-only: {state['error']}"
