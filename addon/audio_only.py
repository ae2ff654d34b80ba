"""mitmproxy addon: an audio-only edge. `video.flv?ali_audio_only=1` streams back only metadata and audio.

    mitmdump -s addon/audio_only.py [--mode reverse:http://origin] [--set audio_only_domains=*.example.com]

The extraction itself is the sans-IO core in `extractor/`; this file decides which requests and
responses it applies to, edits the headers, wires a core object to `flow.response.stream`, logs, and
turns a core error into an unclean end of the client's response.
"""

from __future__ import annotations

import asyncio
import collections.abc
import fcntl
import fnmatch
import logging
import re
import socket
import ssl
import struct
import sys
import termios
import time
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import h11
from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs
from mitmproxy.utils import human

try:
    import extractor
except ImportError:  # run as `mitmdump -s addon/audio_only.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import extractor
from extractor.errors import human_size
from extractor.spool import TempFileSpool

try:
    from addon.cdn_config import ConfigError, ConfigFile
except ImportError:  # addon/ run as a script folder of its own
    from cdn_config import ConfigError, ConfigFile

log = logging.getLogger(__name__)

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
# Output is held back while the origin is ahead of us and sent in chunks of about FLUSH_AT: each chunk
# costs a write and its framing, and a small chunk per piece made audio-only as slow as passing the
# whole video. The origin is ahead when mitmproxy's read came back full (more is buffered) or the
# kernel already holds more of its bytes (they will be handed over in this same loop pass). Otherwise
# we have caught up (a live stream, the end of a burst) and everything held leaves at once: no timer,
# and no delay for live audio.
ORIGIN_AHEAD = 32 << 10
FLUSH_AT = 64 << 10
# Passthrough bodies at least this large (or of unknown size, when media) are streamed, not buffered.
STREAM_PASSTHROUGH_ABOVE = 1 << 20
HOST_PATTERN = re.compile(r"^[a-z0-9*?\[\]._:-]+$")
META = "audio_only"  # flow.metadata key: the state of this feature for the flow
# Request headers not carried over to the tail fetch (hop-by-hop, conditionals, ranges, encodings).
TAIL_DROPPED_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
                        "range", "if-range", "if-none-match", "if-modified-since", "if-match",
                        "if-unmodified-since", "accept-encoding", "content-length", "host"}
TAIL_TIMEOUT = 10


def requested_format(flow: http.HTTPFlow) -> str | None:
    """'mp4' or 'flv' when the response's type (or, for generic types, the path) says media."""
    ctype = flow.response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in MEDIA_TYPES:
        return MEDIA_TYPES[ctype]
    if ctype in GENERIC_TYPES:
        return EXTENSIONS.get(Path(flow.request.path.split("?")[0]).suffix.lower())
    return None


def split_param(path: str, name: str) -> tuple[str | None, str]:
    """(the first value of query parameter `name` or None, the path with every `name` removed). Names
    and values are compared decoded: `ali%5Faudio%5Fonly=%31` is `ali_audio_only=1`, and is removed too."""
    base, sep, query = path.partition("?")
    if not sep:
        return None, path
    value, kept = None, []
    for part in query.split("&"):
        key, _, raw = part.partition("=")
        if urllib.parse.unquote_plus(key) == name:
            value = urllib.parse.unquote_plus(raw) if value is None else value
        else:
            kept.append(part)
    return value, base + ("?" + "&".join(kept) if kept else "")


def ask_for_the_whole_file(flow: http.HTTPFlow) -> None:
    """We cut the file ourselves: a Range would give us a slice of the video, an encoding a blob."""
    for name in ("range", "if-range"):
        flow.request.headers.pop(name, None)
    flow.request.headers["accept-encoding"] = "identity"


def derived_etag(etag: str, part: str = "", kind: str = "audio") -> str:
    """An ETag for our bytes, distinct from the origin's but stable for the same origin version (and
    the same seek range, `part`)."""
    weak, _, opaque = etag.rpartition('"')[0].partition('"')
    if not opaque and not weak:
        return ""
    return f'{weak}"{opaque}-{kind}{part}"'


class ExtractionStream:
    """The callable set as `flow.response.stream`: feeds the core, joins its output, ends badly on errors."""

    def __init__(self, flow: http.HTTPFlow, fmt: str, core_options: dict, tail_version: OriginVersion | None = None,
                 origin_timeout: float = 0):
        self.flow = flow
        self.format = fmt
        self.extractor = extractor.AudioExtractor(**core_options)
        self.started = self.last_data = time.monotonic()
        self.failed = False
        self.format_checked = False
        self.held = bytearray()  # output not sent yet (see ORIGIN_AHEAD)
        self.origin_fd: int | None = None  # the origin connection's socket, once looked up (-1: none)
        self.tail_version = tail_version  # set when the moov may be fetched from the tail (see moov_from_tail)
        self.tail_task: asyncio.Task | None = None
        self.idle_check: asyncio.TimerHandle | None = None
        if origin_timeout:
            self.watch_origin(origin_timeout)

    def __call__(self, data: bytes) -> list[bytes]:
        if self.failed:
            return []  # swallow the rest of the origin's body; the client's response is already ending
        self.last_data = time.monotonic()
        try:
            if data:
                pieces = self.extractor.feed(data)
                if self.tail_version and self.tail_task is None and self.extractor.wants_tail is not None:
                    self.tail_task = asyncio.get_running_loop().create_task(self.moov_from_tail(self.extractor.wants_tail))
                if not self.format_checked and self.extractor.format:
                    self.format_checked = True
                    if self.extractor.format != self.format:
                        raise extractor.UnsupportedInput(
                            f"the origin announced {self.format.upper()} but the body is {self.extractor.format.upper()}"
                        )
            else:
                pieces = self.extractor.finish()
        except extractor.ExtractError as e:
            self.abort(str(e))
            return []
        except Exception as e:  # a bug in the core must still end the response uncleanly
            log.exception("audio-only: internal error")
            self.abort(f"internal error: {e!r}")
            return []
        if not data:
            self.log_done()
            self.stop_timers()
        self.held += b"".join(pieces)
        if data and len(self.held) < FLUSH_AT and (len(data) >= ORIGIN_AHEAD or self.origin_has_more()):
            return []
        out, self.held = bytes(self.held), bytearray()
        # Never hand mitmproxy an empty piece before the end: it would frame it as the last chunk.
        return [out] if out else []

    def origin_has_more(self) -> bool:
        """Whether bytes from the origin already wait in the kernel's socket buffer."""
        if self.origin_fd is None:
            self.origin_fd = server_socket_fd(self.flow)
        if self.origin_fd < 0:
            return False
        try:
            waiting = fcntl.ioctl(self.origin_fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(waiting, sys.byteorder) > 0

    def summary(self) -> str:
        x = self.extractor
        saved = 1 - x.bytes_out / x.bytes_in if x.bytes_in else 0.0
        return (f"{self.format}: {x.bytes_in} bytes in, {x.bytes_out} out, {saved:.1%} saved, "
                f"{time.monotonic() - self.started:.2f}s")

    def log_done(self) -> None:
        for warning in self.extractor.warnings:
            log.warning(f"audio-only: {self.flow.request.pretty_url}: {warning}")
        log.info(f"audio-only: {self.flow.request.pretty_url} {self.summary()}")

    def watch_origin(self, timeout: float) -> None:
        """End the response if the origin sends nothing for `timeout` seconds: mitmproxy itself would
        wait ten minutes, and a client of an edge should not. One timer, moved on only when it fires."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside mitmproxy's event loop (unit tests)
            return

        def check() -> None:
            if self.failed:
                return
            idle = time.monotonic() - self.last_data
            if idle >= timeout:
                self.abort(f"the origin sent nothing for {idle:.1f} s (audio_only_origin_timeout)")
            else:
                self.idle_check = loop.call_later(timeout - idle, check)

        self.idle_check = loop.call_later(timeout, check)

    def release(self) -> None:
        """The response is over one way or another: drop the spool, ignore what still comes."""
        self.failed = True
        self.extractor.close()
        self.stop_timers()

    def stop_timers(self) -> None:
        if self.tail_task is not None:
            self.tail_task.cancel()
        if self.idle_check is not None:
            self.idle_check.cancel()

    async def moov_from_tail(self, offset: int) -> None:
        """The moov comes after the media data: ask the origin for what follows the mdat (a Range
        request on a connection of our own), so audio starts now instead of after the whole download.
        Any failure leaves the spool to do its work."""
        started = time.monotonic()
        url = self.flow.request.pretty_url
        try:
            data = await asyncio.wait_for(
                fetch_range(self.flow, offset, self.extractor.max_header, self.tail_version), TAIL_TIMEOUT)
        except RangeRefused as e:
            log.warning(f"audio-only: {url}: the tail's answer was discarded ({e}); waiting for the moov in the stream")
            return
        except (OSError, asyncio.TimeoutError, h11.ProtocolError, ssl.SSLError, ValueError) as e:
            log.info(f"audio-only: {url}: no moov from the tail ({e!r}); waiting for it in the stream")
            return
        if self.failed:
            return
        try:
            used = self.extractor.provide_tail(offset, data)
        except extractor.ExtractError as e:
            self.abort(str(e))
            return
        if used:
            log.info(f"audio-only: {url}: moov fetched from the tail ({len(data)} bytes from byte {offset}) in "
                     f"{(time.monotonic() - started) * 1000:.0f} ms: audio starts before the download ends")

    def abort(self, reason: str) -> None:
        self.release()
        self.flow.metadata.setdefault(META, {})["error"] = reason
        self.flow.comment = f"audio-only: {reason}"
        log.warning(f"audio-only: {self.flow.request.pretty_url}: {reason}; response ended uncleanly "
                    f"({self.summary()})")
        if self.flow.killable:
            self.flow.kill()
        if unframed(self.flow):
            reset_client_on_close(self.flow)
        close_server_connection(self.flow)


class OriginVersion(NamedTuple):
    """The version of the origin's file a response is made of: what an If-Range names (its strong
    ETag, else its Last-Modified) and its length. A Range answer may complete the response only if it
    comes from this same version."""
    validator: str
    length: int | None

    @classmethod
    def of(cls, headers) -> OriginVersion | None:
        """The version of an origin's 200, when the origin serves ranges at all; read before we edit
        the headers."""
        if headers.get("accept-ranges", "").lower() != "bytes":
            return None
        etag = headers.get("etag", "")
        validator = etag if etag.startswith('"') else headers.get("last-modified")
        if not validator:
            return None
        length = headers.get("content-length", "")
        return cls(validator, int(length) if length.isdigit() else None)

    def problem_with(self, status: int, headers, first: int, last: int) -> str | None:
        """Why the origin's answer to `Range: bytes=first-last` cannot be used (None: it can). Many
        origins ignore If-Range, so a file replaced at the origin shows only here: the status, the
        range, the total length and the validator must all be the ones asked for."""
        if status != 206:
            return f"the origin answered {status}, not 206"
        content_range = headers.get("content-range", "")
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range.strip())
        if not m:
            return f"the origin's Content-Range {content_range!r} is not a byte range"
        start, end, total = int(m[1]), int(m[2]), m[3]
        if total != "*" and self.length is not None and int(total) != self.length:
            return f"the origin's file is now {total} bytes, not {self.length}: it was replaced"
        expected_end = last if self.length is None else min(last, self.length - 1)
        if (start, end) != (first, expected_end):
            return f"the origin sent bytes {start}-{end}, not the {first}-{expected_end} asked for"
        if self.validator.startswith('"'):
            if headers.get("etag") != self.validator:
                return f"the origin's ETag is now {headers.get('etag')!r}, not {self.validator}: the file was replaced"
        elif headers.get("last-modified") != self.validator:
            return (f"the origin's Last-Modified is now {headers.get('last-modified')!r}, not {self.validator!r}: "
                    f"the file was replaced")
        return None


class RangeRefused(Exception):
    """The origin's answer to a Range request cannot be used; the message says why."""


async def fetch_range(flow: http.HTTPFlow, offset: int, limit: int, version: OriginVersion) -> bytes:
    """Up to `limit` bytes of the response's body from `offset` on, fetched from the origin on a new
    HTTP/1.1 connection, only if they come from the same version of the file (RangeRefused otherwise)."""
    if flow.server_conn.via:
        raise RangeRefused("an upstream proxy is in between")
    host, port = flow.server_conn.address
    context = None
    if flow.request.scheme == "https":
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        if ctx.options.ssl_insecure:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=(flow.server_conn.sni or host) if context else None)
    last = offset + limit - 1
    try:
        conn = h11.Connection(h11.CLIENT)
        headers = [(k, v) for k, v in flow.request.headers.items(multi=True)
                   if k.lower() not in TAIL_DROPPED_HEADERS and not k.startswith(":")]
        headers += [("Host", flow.request.host_header or url.hostport(flow.request.scheme, host, port)),
                    ("Range", f"bytes={offset}-{last}"), ("If-Range", version.validator),
                    ("Accept-Encoding", "identity"), ("Connection", "close")]
        writer.write(conn.send(h11.Request(method="GET", target=flow.request.path, headers=headers))
                     + conn.send(h11.EndOfMessage()))
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                answer = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                if problem := version.problem_with(event.status_code, answer, offset, last):
                    raise RangeRefused(problem)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise RangeRefused(f"the origin sent more than the {limit} bytes asked for")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                raise RangeRefused(f"the origin closed the connection after {len(body)} bytes")
    finally:
        writer.close()


async def fetch_moov(flow: http.HTTPFlow, version: OriginVersion, limit: int) -> bytes | None:
    """The MP4's moov box, found by reading top-level box headers with Range requests (a few hops:
    ftyp, free, mdat...) and then the moov itself; None if it cannot be had within `limit` bytes."""
    pos = 0
    for _ in range(8):
        head = await fetch_range(flow, pos, 16, version)
        if len(head) < 8:
            return None
        size, kind = struct.unpack_from(">I4s", head)
        header = 8
        if size == 1 and len(head) >= 16:
            size, header = struct.unpack_from(">Q", head, 8)[0], 16
        if size < header:
            return None  # size 0 (to the end) or broken: the moov is not after it
        if kind == b"moov":
            if size > limit:
                return None
            moov = await fetch_range(flow, pos, size, version)
            return moov if len(moov) == size else None
        pos += size
    return None


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
            close_server_connection(flow)
        return [body]

    response.stream = stream
    flow.metadata.setdefault(META, {})["answered"] = f"400: {reason}"
    log.info(f"audio-only: {flow.request.pretty_url}: answered 400: {reason} (as the CDN does)")


def _server_io(flow: http.HTTPFlow):
    """mitmproxy's reader/writer pair for the flow's origin connection, or None (e.g. in unit tests)."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
    return handler.transports.get(flow.server_conn) if handler else None


def server_socket_fd(flow: http.HTTPFlow) -> int:
    io = _server_io(flow)
    sock = io.writer.get_extra_info("socket") if io and io.writer else None
    return sock.fileno() if sock is not None else -1


def unframed(flow: http.HTTPFlow) -> bool:
    """An HTTP/1 response whose end is the connection's close (an HTTP/1.0 client: no chunked framing)."""
    return (flow.request.http_version.startswith("HTTP/1")
            and "chunked" not in flow.response.headers.get("transfer-encoding", "").lower())


def reset_client_on_close(flow: http.HTTPFlow) -> None:
    """Make the close of the client's connection a reset (SO_LINGER 0). For a body that ends with the
    connection, a normal close says "complete": a failed extraction must not look like a whole file."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
    io = handler.transports.get(flow.client_conn) if handler else None
    sock = io.writer.get_extra_info("socket") if io and io.writer else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_server_connection(flow: http.HTTPFlow) -> None:
    """End the origin connection now, so the client's response ends now (a kill alone waits, #4711).

    The server connection's reader task is cancelled; mitmproxy then sees the origin gone and, the
    response having started, closes the client connection (HTTP/1.1) or resets the stream (HTTP/2).
    """
    io = _server_io(flow)
    if io and io.handler:
        io.handler.cancel()


class AudioOnly:
    def __init__(self):
        self.patterns: list[str] = ["*"]
        self.max_header = extractor.DEFAULT_MAX_HEADER
        self.max_spool = 4 << 30
        self.config: ConfigFile | None = None  # audio_only_config, when set

    def load(self, loader):
        loader.add_option(
            "audio_only_param", str, "ali_audio_only",
            "Query parameter that asks for audio only; only the value 1 turns it on.",
        )
        loader.add_option(
            "audio_only_domains", collections.abc.Sequence[str], ["*"],
            "Host patterns (the host the client asked for, e.g. *.example.com) on which audio "
            "extraction is on. May be passed multiple times.",
        )
        loader.add_option(
            "audio_only_max_header", str, "64m",
            "Most metadata (MP4 moov, FLV script tag) one response may hold in memory, e.g. 64m.",
        )
        loader.add_option(
            "audio_only_config", str, "",
            "A JSON file in the CDN API's domain configuration shape (DomainNames, Functions with "
            "ali_video_split and video_seek); when set it decides per domain instead of audio_only_domains. "
            "Re-read when it changes.",
        )
        loader.add_option(
            "audio_only_compat", str, "extended",
            "extended: everything this product supports; cdn: exactly the CDN's documented limits (no MP4 "
            "with the moov at the end or a 64-bit mdat header, no Range requests).",
            choices=["extended", "cdn"],
        )
        loader.add_option(
            "audio_only_seek", bool, True,
            "Seeking with audio only (the CDN's video_seek): start/end parameters cut the output.",
        )
        loader.add_option(
            "audio_only_plain_seek", bool, False,
            "The CDN's plain video seeking too: start/end on requests without the audio parameter cut the "
            "video itself (MP4 from the keyframe at or before start). Off unless asked, since start/end "
            "are common parameter names; a domain's video_seek in audio_only_config turns it on as well.",
        )
        loader.add_option(
            "audio_only_flv_seek_by_time", bool, False,
            "FLV start/end are seconds (on) or byte offsets (off, the CDN's default).",
        )
        for name, default in (("mp4_seek_start", "start"), ("mp4_seek_end", "end"),
                              ("flv_seek_start", "start"), ("flv_seek_end", "end")):
            loader.add_option(f"audio_only_{name}", str, default, f"Query parameter name of the {name.replace('_', ' ')}.")
        loader.add_option(
            "audio_only_origin_host", str, "origin",
            "Reverse mode: the Host the origin gets, 'origin' (its own address, mitmproxy's default) or "
            "'client' (the Host the client sent). Domain patterns need the client's Host, so the addon "
            "keeps it (keep_host_header) and applies this choice itself.",
            choices=["origin", "client"],
        )
        loader.add_option(
            "audio_only_spool_dir", str, "",
            "Folder for MP4 media data that arrives before its moov (moov at the end); empty: the "
            "system's temporary folder. Spool files have no name on disk and vanish with the response.",
        )
        loader.add_option(
            "audio_only_max_spool", str, "4g",
            "Most media data one response may spool while waiting for a moov at the end, e.g. 4g; 0 refuses such files.",
        )
        loader.add_option(
            "audio_only_fetch_moov", bool, True,
            "For an MP4 whose moov comes after its media data, fetch the moov from the origin with a "
            "Range request so audio starts at once (else it starts when the whole file has arrived).",
        )
        loader.add_option(
            "audio_only_origin_timeout", int, 30,
            "End an extracted response uncleanly when the origin sends nothing for this many seconds "
            "(0: wait as long as mitmproxy does).",
        )
        loader.add_option(
            "audio_only_stream_passthrough", bool, True,
            "Stream media (and bodies above 1 MiB) that are not extracted instead of buffering them.",
        )

    def configure(self, updated):
        if "audio_only_param" in updated and not ctx.options.audio_only_param:
            raise exceptions.OptionsError("audio_only_param must not be empty")
        if "audio_only_domains" in updated:
            patterns = [p.strip().lower() for p in ctx.options.audio_only_domains]
            for p in patterns:
                if not HOST_PATTERN.match(p):
                    raise exceptions.OptionsError(f"audio_only_domains: {p!r} is not a host pattern")
            self.patterns = patterns
        if "audio_only_max_header" in updated:
            self.max_header = self._size("audio_only_max_header", minimum=1024)
        if "audio_only_config" in updated:
            try:
                self.config = ConfigFile(ctx.options.audio_only_config) if ctx.options.audio_only_config else None
            except ConfigError as e:
                raise exceptions.OptionsError(f"audio_only_config: {e}") from None
        if "audio_only_origin_timeout" in updated and ctx.options.audio_only_origin_timeout < 0:
            raise exceptions.OptionsError("audio_only_origin_timeout must be 0 (off) or a number of seconds")
        if "audio_only_max_spool" in updated:
            self.max_spool = self._size("audio_only_max_spool", minimum=0)
        if "audio_only_spool_dir" in updated and ctx.options.audio_only_spool_dir:
            if not Path(ctx.options.audio_only_spool_dir).is_dir():
                raise exceptions.OptionsError(
                    f"audio_only_spool_dir: {ctx.options.audio_only_spool_dir!r} is not a folder")
        if "mode" in updated or "keep_host_header" in updated:
            self._keep_client_host()

    @staticmethod
    def _size(option: str, minimum: int) -> int:
        value = getattr(ctx.options, option)
        try:
            size = human.parse_size(value) or 0
        except ValueError as e:
            raise exceptions.OptionsError(f"{option}: {e}") from None
        if size < minimum:
            raise exceptions.OptionsError(f"{option}: {value!r} is below {human_size(minimum)}")
        return size

    @staticmethod
    def _keep_client_host() -> None:
        """In reverse mode mitmproxy replaces Host before any hook sees it; domain patterns need the
        client's. So keep it (keep_host_header), and rewrite it in requestheaders as
        audio_only_origin_host says. The choice lives in options, not in this object, so it holds
        across a reload of the script."""
        reverse = any(mode_specs.ProxyMode.parse(m).type_name == "reverse" for m in ctx.options.mode)
        if reverse and not ctx.options.keep_host_header:
            ctx.options.keep_host_header = True

    def in_domains(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, p) for p in self.patterns)

    def host_enabled(self, host: str) -> bool:
        """Is audio extraction on for the host the client asked for (a hostname, lowercase)?
        audio_only_config decides when set, else audio_only_domains."""
        if self.config is not None:
            if message := self.config.maybe_reload():
                (log.warning if message.startswith("kept") else log.info)(f"audio-only: audio_only_config: {message}")
            settings = self.config.for_host(host)
            return settings is not None and settings.audio_only
        return self.in_domains(host)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        authority = flow.request.host_header or flow.request.host
        host = url.parse_authority(authority, check=False)[0].lower() if authority else ""
        if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode) and ctx.options.audio_only_origin_host == "origin":
            flow.request.host_header = url.hostport(flow.request.scheme, flow.request.host, flow.request.port)
        value, stripped = split_param(flow.request.path, ctx.options.audio_only_param)
        # The origin never sees our parameter, whatever its value.
        flow.request.path = stripped
        if value != "1" or not self.host_enabled(host):
            self.maybe_plain_seek(flow, host)
            return
        if flow.request.method.upper() not in ("GET", "HEAD"):
            log.info(f"audio-only: {flow.request.pretty_url}: not extracted: only GET and HEAD are, not "
                     f"{flow.request.method}")
            return
        if ctx.options.audio_only_compat == "cdn" and "range" in flow.request.headers:
            log.info(f"audio-only: {flow.request.pretty_url}: not extracted (audio_only_compat=cdn): the CDN does not "
                     f"extract audio for Range requests, so the origin's answer to the range passes through")
            return
        flow.metadata[META] = {"requested": True, "seek": self.take_seek_params(flow, host)}
        ask_for_the_whole_file(flow)
        if (inm := flow.request.headers.get("if-none-match")) and "-audio\"" in inm:
            flow.request.headers["if-none-match"] = inm.replace('-audio"', '"')

    def maybe_plain_seek(self, flow: http.HTTPFlow, host: str) -> None:
        """The CDN's plain video seeking (no audio extraction): on for a host by its video_seek in
        audio_only_config, or by audio_only_plain_seek on the audio_only_domains."""
        settings = self.config.for_host(host) if self.config is not None else None
        if settings is not None:
            enabled = settings.seek.get("enable") == "on"
        else:
            enabled = ctx.options.audio_only_plain_seek and self.in_domains(host)
        if not enabled:
            return
        names = set(self.seek_settings(host)[2].values())
        if not any(split_param(flow.request.path, name)[0] is not None for name in names):
            return
        flow.metadata[META] = {"plain": True, "seek": self.take_seek_params(flow, host)}
        ask_for_the_whole_file(flow)

    def seek_settings(self, host: str) -> tuple[bool, bool, dict[str, str]]:
        """(seeking on, FLV by time, parameter names) for a host: the configuration's video_seek when it
        names the host, else the options."""
        names = {k: getattr(ctx.options, f"audio_only_{k}") for k in ("mp4_seek_start", "mp4_seek_end",
                                                                      "flv_seek_start", "flv_seek_end")}
        enabled, by_time = ctx.options.audio_only_seek, ctx.options.audio_only_flv_seek_by_time
        settings = self.config.for_host(host) if self.config is not None else None
        if settings is not None and settings.seek:
            enabled = settings.seek.get("enable", "on" if enabled else "off") == "on"
            by_time = settings.seek.get("flv_seek_by_time", "on" if by_time else "off") == "on"
            names.update({k: v for k, v in settings.seek.items() if k in names})
        return enabled, by_time, names

    def take_seek_params(self, flow: http.HTTPFlow, host: str) -> dict | None:
        """The raw start/end values of a request, removed from what the origin gets (it would seek
        too); None when seeking is off."""
        enabled, by_time, names = self.seek_settings(host)
        if not enabled:
            return None
        raw = {}
        for name in set(names.values()):  # MP4 and FLV share the default names: each is taken once
            raw[name], flow.request.path = split_param(flow.request.path, name)
        return {"values": {key: raw[name] for key, name in names.items()}, "by_time": by_time}

    def seek_range(self, flow: http.HTTPFlow, fmt: str, state: dict):
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

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        state = flow.metadata.get(META)
        fmt = requested_format(flow)
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
                state["passthrough"] = self.why_not(flow, fmt)
                log.info(f"audio-only: {flow.request.pretty_url}: not extracted: {state['passthrough']}")
            self.stream_passthrough(flow, fmt)
            return
        # Read from the origin's headers before they are edited.
        ranges = OriginVersion.of(response.headers)
        tail_version = ranges if ctx.options.audio_only_fetch_moov else None
        seek = self.seek_range(flow, fmt, state)
        if state.get("plain") and seek is None:
            self.stream_passthrough(flow, fmt)  # plain seeking with nothing to cut: the file as it is
            return
        if fmt == "mp4" and seek and seek.start and ranges:
            # mitmproxy awaits what a hook returns: the headers wait until the moov has been checked.
            return self.check_seek_then_extract(flow, fmt, state, seek, ranges, tail_version)
        self.start_extraction(flow, fmt, state, seek, tail_version)

    async def check_seek_then_extract(self, flow: http.HTTPFlow, fmt: str, state: dict, seek, ranges: OriginVersion,
                                      tail_version: OriginVersion | None) -> None:
        """The CDN answers 400 when an MP4's seek start lies past the audio. The moov is needed to know
        that, so it is read first with Range requests; if it cannot be had, extraction goes on and a
        start past the end ends the response uncleanly instead."""
        try:
            moov = await asyncio.wait_for(fetch_moov(flow, ranges, self.max_header), TAIL_TIMEOUT)
        except (RangeRefused, OSError, asyncio.TimeoutError, h11.ProtocolError, ssl.SSLError, ValueError) as e:
            log.info(f"audio-only: {flow.request.pretty_url}: could not read the moov before answering ({e})")
            moov = None
        if moov is not None and extractor.mp4_seek_past_end(moov, seek):
            answer_400(flow, f"seek start {seek.start / 1000:g} s is past the end of the audio")
            return
        self.start_extraction(flow, fmt, state, seek, tail_version)

    def start_extraction(self, flow: http.HTTPFlow, fmt: str, state: dict, seek,
                         tail_version: OriginVersion | None) -> None:
        """Edit the headers for the audio and wire the core to the body."""
        response = flow.response
        plain = bool(state.get("plain"))
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
        state["format"] = fmt
        if flow.request.method.upper() == "HEAD":
            return
        spool_dir = ctx.options.audio_only_spool_dir or None
        core_options = dict(
            max_header=self.max_header, max_spool=self.max_spool, spool_factory=lambda start: TempFileSpool(start, spool_dir),
            cdn_limits=ctx.options.audio_only_compat == "cdn",
            flv_seek=seek if fmt == "flv" else None, mp4_seek=seek if fmt == "mp4" else None, keep_video=plain,
        )
        response.stream = ExtractionStream(flow, fmt, core_options, tail_version, ctx.options.audio_only_origin_timeout)

    @staticmethod
    def why_not(flow: http.HTTPFlow, fmt: str | None) -> str:
        response = flow.response
        if response.status_code != 200:
            return f"origin answered {response.status_code}"
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            return f"origin body is {response.headers['content-encoding']}-encoded"
        if fmt is None:
            return f"content type {response.headers.get('content-type', '(none)')!r} is not MP4 or FLV"
        return f"{fmt.upper()} extraction is not available in this version"

    def stream_passthrough(self, flow: http.HTTPFlow, fmt: str | None) -> None:
        """A CDN edge never holds a whole video in memory: stream what we pass on untouched."""
        if not ctx.options.audio_only_stream_passthrough or flow.response.stream:
            return
        length = flow.response.headers.get("content-length", "")
        big = int(length) > STREAM_PASSTHROUGH_ABOVE if length.isdigit() else False
        media = fmt is not None or Path(flow.request.path.split("?")[0]).suffix.lower() in EXTENSIONS
        if big or media:
            flow.response.stream = True

    def error(self, flow: http.HTTPFlow) -> None:
        """The response failed (our abort, the origin, or the client leaving): free what it held, and
        name our reason on the flow (mitmweb shows it), not just the connection's fate."""
        stream = flow.response.stream if flow.response else None
        if isinstance(stream, ExtractionStream):
            if not stream.failed:  # not our abort: the origin or the client ended it
                stream.release()
                log.warning(f"audio-only: {flow.request.pretty_url}: response ended uncleanly: {flow.error.msg} "
                            f"({stream.summary()})")
                if unframed(flow):
                    reset_client_on_close(flow)
            else:
                stream.release()
        state = flow.metadata.get(META)
        if state and "error" in state:
            flow.error.msg = f"audio-only: {state['error']}"


addons = [AudioOnly()]
