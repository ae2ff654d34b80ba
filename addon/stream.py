"""The stream callable set as `flow.response.stream`: the core fed as the origin's body passes.

It joins the core's output into few, large chunks, fetches an MP4's moov from the tail when the
origin offers it, watches the origin for silence, and turns any failure into an unclean end of the
client's response with one warning line naming the URL and the reason.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
import time
from collections.abc import Awaitable, Callable

from mitmproxy import http

import extractor
from addon import internals
from addon.origin_client import FETCH_ERRORS, RangeRefused
from addon.request_rules import META

log = logging.getLogger("addon.audio_only")

# Output is held back while the origin is ahead of us and sent in chunks of about FLUSH_AT: each chunk
# costs a write and its framing, and a small chunk per piece made audio-only as slow as passing the
# whole video. The origin is ahead when mitmproxy's read came back full (more is buffered) or the
# kernel already holds more of its bytes (they will be handed over in this same loop pass). Otherwise
# we have caught up (a live stream, the end of a burst) and everything held leaves at once: no timer,
# and no delay for live audio.
ORIGIN_AHEAD = 32 << 10
FLUSH_AT = 64 << 10
TAIL_TIMEOUT = 10  # seconds for the whole tail fetch; the stream goes on meanwhile

# fetch_tail(offset, limit) -> the origin file's bytes from offset on (at most limit), of the same version
TailFetch = Callable[[int, int], Awaitable[bytes]]


class ExtractionStream:
    """The callable set as `flow.response.stream`: feeds the core, joins its output, ends badly on errors."""

    def __init__(self, flow: http.HTTPFlow, fmt: str, core_options: dict, fetch_tail: TailFetch | None = None,
                 origin_timeout: float = 0, metadata_deadline: float = 0):
        self.flow = flow
        self.format = fmt
        self.extractor = extractor.AudioExtractor(**core_options)
        self.started = self.last_data = time.monotonic()
        self.failed = False
        self.format_checked = False
        self.held = bytearray()  # output not sent yet (see ORIGIN_AHEAD)
        self.origin_fd: int | None = None  # the origin connection's socket, once looked up (-1: none)
        self.fetch_tail = fetch_tail  # set when the moov may be fetched from the tail (see moov_from_tail)
        self.tail_task: asyncio.Task | None = None
        self.idle_check: asyncio.TimerHandle | None = None
        self.metadata_deadline = metadata_deadline
        self.metadata_since: float | None = None  # when the metadata now arriving began
        self.metadata_box: int | None = None  # and where in the input (a new box starts a new deadline)
        if origin_timeout:
            self.watch_origin(origin_timeout)

    def __call__(self, data: bytes) -> list[bytes]:
        if self.failed:
            return []  # swallow the rest of the origin's body; the client's response is already ending
        self.last_data = time.monotonic()
        try:
            if data:
                pieces = self.extractor.feed(data)
                if self.fetch_tail and self.tail_task is None and self.extractor.wants_tail is not None:
                    self.tail_task = asyncio.get_running_loop().create_task(self.moov_from_tail(self.extractor.wants_tail))
                if self.metadata_deadline and (late := self.metadata_late()):
                    self.abort(late)
                    return []
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

    def metadata_late(self) -> str | None:
        """Why the response must end (None: it need not): a moov (or script tag) must arrive within the
        deadline once begun; an origin trickling it, never silent for long, would otherwise hold the
        response open for ever."""
        start = self.extractor.metadata_start
        if start is None:
            self.metadata_since = None
        elif self.metadata_since is None or start != self.metadata_box:
            self.metadata_since, self.metadata_box = self.last_data, start  # a new box: its own deadline
        elif self.last_data - self.metadata_since > self.metadata_deadline:
            what = "moov or moof" if self.format == "mp4" else "script tag"
            return (f"the {what} had not arrived {self.last_data - self.metadata_since:.1f} s after it began "
                    f"(audio_only_metadata_deadline)")
        return None

    def origin_has_more(self) -> bool:
        """Whether bytes from the origin already wait in the kernel's socket buffer."""
        if self.origin_fd is None:
            self.origin_fd = internals.server_socket_fd(self.flow)
        if self.origin_fd < 0:
            return False
        try:
            waiting = fcntl.ioctl(self.origin_fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return int.from_bytes(waiting, sys.byteorder) > 0

    def summary(self, path: str = "") -> str:
        x = self.extractor
        saved = 1 - x.bytes_out / x.bytes_in if x.bytes_in else 0.0
        return (f"{self.format}{' ' + path if path else ''}: {x.bytes_in} bytes in, {x.bytes_out} out, {saved:.1%} saved, "
                f"{time.monotonic() - self.started:.2f}s")

    def log_done(self) -> None:
        x = self.extractor
        self.flow.metadata.setdefault(META, {}).update(bytes_in=x.bytes_in, bytes_out=x.bytes_out)
        for warning in self.extractor.warnings:
            log.warning(f"audio-only: {self.flow.request.pretty_url}: {warning}")
        log.info(f"audio-only: {self.flow.request.pretty_url} {self.summary('stream')}")

    def watch_origin(self, timeout: float) -> None:
        """End the response if the origin sends nothing for `timeout` seconds: mitmproxy itself would
        wait ten minutes, and a client of an edge should not. Only time spent waiting for the origin
        counts: not a client that does not read, nor a loop busy elsewhere. One timer, moved on only
        when it fires."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not inside mitmproxy's event loop (unit tests)
            return

        def check() -> None:
            if self.failed:
                return
            # (On HTTP/2 other streams share the connection's buffer, and mitmproxy reads the origin on
            # regardless: only an HTTP/1 client's backlog says we wait for the client.)
            waiting_for_client = self.flow.request.http_version.startswith("HTTP/1") and internals.client_backlog(self.flow)
            if self.origin_has_more() or waiting_for_client:
                # Not the origin's silence: its bytes wait for us (the loop was busy), or we wait for
                # the client (a paused player holds the origin back). The clock starts again.
                self.last_data = time.monotonic()
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
        request of our own), so audio starts now instead of after the whole download. Any failure
        leaves the spool to do its work."""
        started = time.monotonic()
        url = self.flow.request.pretty_url
        try:
            data = await asyncio.wait_for(self.fetch_tail(offset, self.extractor.max_header), TAIL_TIMEOUT)
        except RangeRefused as e:
            log.warning(f"audio-only: {url}: the tail's answer was discarded ({e}); waiting for the moov in the stream")
            return
        except FETCH_ERRORS as e:
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
        end_uncleanly(self.flow)

    def ended_by_others(self) -> None:
        """mitmproxy's error hook: the origin or the client ended the response, not us."""
        if self.failed:
            return
        self.release()
        log.warning(f"audio-only: {self.flow.request.pretty_url}: response ended uncleanly: {self.flow.error.msg} "
                    f"({self.summary()})")
        if unframed(self.flow):
            internals.reset_client_on_close(self.flow)


def unframed(flow: http.HTTPFlow) -> bool:
    """An HTTP/1 response whose end is the connection's close (an HTTP/1.0 client: no chunked framing)."""
    return (flow.request.http_version.startswith("HTTP/1")
            and "chunked" not in flow.response.headers.get("transfer-encoding", "").lower())


def end_uncleanly(flow: http.HTTPFlow) -> None:
    """End the client's response now, in a way the client can tell from a complete body."""
    if flow.killable:
        flow.kill()
    if unframed(flow):
        internals.reset_client_on_close(flow)
    internals.close_server_connection(flow)
    internals.close_client_connection(flow)
