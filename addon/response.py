"""What an audio-only request is answered with, and the mitmproxy side of that answer.

Every request that asks for audio (or for the CDN's plain seeking) is routed by `file_server.py` to
our own server on 127.0.0.1, which asks the origin itself: the decisions below are made there, from
the origin's status and headers (extract, answer 400, or relay the origin's answer as it is). What
comes back to mitmproxy is already the answer; `ResponseRules.decide` (responseheaders) only puts
the flow back to how the client sent it, fits the framing to the client's HTTP version, and streams
the body. Requests that did not ask for audio are left to mitmproxy, streamed when they are media.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.utils import human

import extractor
from addon import internals
from addon.origin_client import OriginClient
from addon.request_rules import JOB_HEADER, META, SERVED_HEADER
from extractor.errors import human_size

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
# Headers that describe the origin's bytes (or its connection), not ours.
DROPPED_RESPONSE_HEADERS = {"content-length", "accept-ranges", "content-range", "content-md5", "digest",
                            "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer",
                            "upgrade", "proxy-authenticate"}
# Passthrough bodies at least this large (or of unknown size, when media) are streamed, not buffered.
STREAM_PASSTHROUGH_ABOVE = 1 << 20


def requested_format(content_type: str, path: str) -> str | None:
    """'mp4' or 'flv' when the response's type (or, for generic types, the path) says media."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in MEDIA_TYPES:
        return MEDIA_TYPES[ctype]
    if ctype in GENERIC_TYPES:
        return EXTENSIONS.get(Path(path.split("?")[0]).suffix.lower())
    return None


def derived_etag(etag: str, part: str = "", kind: str = "audio") -> str:
    """An ETag for our bytes, distinct from the origin's but stable for the same origin version (and
    the same seek range, `part`)."""
    weak, _, opaque = etag.rpartition('"')[0].partition('"')
    if not opaque and not weak:
        return ""
    return f'{weak}"{opaque}-{kind}{part}"'


def why_not(status: int, headers, fmt: str | None) -> str | None:
    """Why an asked-for extraction does not happen (None: it does)."""
    if status != 200:
        return f"origin answered {status}"
    if headers.get("content-encoding", "identity").lower() != "identity":
        return f"origin body is {headers['content-encoding']}-encoded"
    if fmt is None:
        return f"content type {headers.get('content-type', '(none)')!r} is not MP4 or FLV"
    if fmt not in extractor.SUPPORTED_FORMATS:
        return f"{fmt.upper()} extraction is not available in this version"
    return None


def seek_range(fmt: str, state: dict, headers, url: str) -> extractor.SeekRange | None:
    """The part the request asks for (None: all of it): MP4 in seconds, FLV in bytes or seconds."""
    seek = state.get("seek")
    if not seek:
        return None
    v = seek["values"]
    if fmt == "mp4":
        wanted = extractor.parse_range(v["mp4_seek_start"], v["mp4_seek_end"], True)
    else:
        wanted = extractor.parse_range(v["flv_seek_start"], v["flv_seek_end"], seek["by_time"])
        length = headers.get("content-length", "")
        if wanted and not wanted.by_time and length.isdigit() and wanted.start >= int(length):
            log.info(f"audio-only: {url}: seek start {wanted.start} is past the file's {length} bytes: the whole "
                     f"file is sent (the CDN's rule for FLV)")
            return None
    if wanted:
        state["seek_range"] = wanted.describe()
    return wanted


def audio_headers(origin_headers: list[tuple[str, str]], fmt: str, seek: extractor.SeekRange | None,
                  plain: bool) -> list[tuple[str, str]]:
    """The origin's headers made ours: no length or ranges (the body is streamed), our type, an ETag
    derived from the origin's (or none)."""
    out = []
    for name, value in origin_headers:
        lower = name.lower()
        if lower in DROPPED_RESPONSE_HEADERS or (lower == "content-type" and not plain):
            continue
        if lower == "etag":
            part = f"-{seek.start}-{seek.end or ''}" if seek else ""
            value = derived_etag(value, part, "seek" if plain else "audio")
            if not value:
                continue
        out.append((name, value))
    if not plain:
        out.append(("Content-Type", OUTPUT_TYPES[fmt]))
    return out


def stream_passthrough(flow: http.HTTPFlow) -> None:
    """A CDN edge never holds a whole video in memory: stream what we pass on untouched."""
    if not ctx.options.audio_only_stream_passthrough or flow.response.stream:
        return
    length = flow.response.headers.get("content-length", "")
    big = int(length) > STREAM_PASSTHROUGH_ABOVE if length.isdigit() else False
    fmt = requested_format(flow.response.headers.get("content-type", ""), flow.request.path)
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


def unframed(flow: http.HTTPFlow) -> bool:
    """An HTTP/1 response whose end is the connection's close (an HTTP/1.0 client: no chunked framing)."""
    return (flow.request.http_version.startswith("HTTP/1") and flow.response is not None
            and "chunked" not in flow.response.headers.get("transfer-encoding", "").lower()
            and "content-length" not in flow.response.headers)


class ResponseRules:
    """The response side's settings, and the mitmproxy side of routed answers."""

    def __init__(self):
        self.max_header = extractor.DEFAULT_MAX_HEADER
        self.max_spool = 4 << 30
        self.origin = OriginClient()

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

    def decide(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META)
        if not (state and state.get("routed")):
            stream_passthrough(flow)
            return
        # Our server's answer: show (mitmweb, the log) where the request was for, as the client sent it.
        scheme, host, port, host_header, http_version = state["origin"]
        flow.request.scheme, flow.request.host, flow.request.port = scheme, host, port
        flow.request.host_header = host_header
        flow.request.http_version = http_version
        flow.request.headers.pop(JOB_HEADER, None)
        response = flow.response
        state["served"] = response.headers.pop(SERVED_HEADER, "relay")
        if state["served"] == "stream" and flow.request.method.upper() == "HEAD" and response.status_code == 200:
            # What a GET's answer has (tornado gives a HEAD's answer a Content-Length of 0 instead).
            response.headers.pop("content-length", None)
            response.headers["transfer-encoding"] = "chunked"
        if http_version != "HTTP/1.1":
            # Only HTTP/1.1 has chunked framing: an HTTP/1.0 body ends with the connection, and HTTP/2
            # and 3 frame it themselves. (mitmproxy reads our server's body by the framing it announced.)
            response.headers.pop("transfer-encoding", None)
            if http_version.startswith("HTTP/1"):
                response.http_version = http_version
        response.stream = True

    @staticmethod
    def failed(flow: http.HTTPFlow) -> None:
        """mitmproxy's error hook: name our reason on the flow (mitmweb shows it), not just the
        connection's fate; and make sure the client can tell the body is incomplete."""
        state = flow.metadata.get(META)
        if not state:
            return
        if "error" in state:
            flow.error.msg = f"audio-only: {state['error']}"
            flow.comment = f"audio-only: {state['error']}"
        if state.get("routed") and flow.response is not None:
            if unframed(flow):
                internals.reset_client_on_close(flow)
            internals.close_client_connection(flow)
