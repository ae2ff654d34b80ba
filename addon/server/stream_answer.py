"""A streamed audio-only answer: the origin's body fed through the core as it arrives, in our server.

This is the CDN's way (FLV, live, an origin without ranges, `audio_only_compat=cdn`): no length,
chunked framing. It runs in our server, not in a mitmproxy stream callable, because a callable can neither wait nor add data of its own: here the feed that completes a
big moov (or script tag) runs in a worker thread while mitmproxy serves everyone else, and the moov
fetched from the tail of a file is planned there too.

Time limits blame the right party: the origin's read timeout (httpx) runs only while we wait to read
from it, not while we wait for the client to take what we wrote (a paused player) or for a worker;
and the metadata deadline bounds how long a moov, moof or script tag may take to arrive once begun.
Every failure ends the answer uncleanly (our connection to mitmproxy closes before the last chunk, and
mitmproxy ends the client's response so), with one warning line naming the URL and the reason;
the headers go out once the first piece of the body has been fed (before the output is known, as the
CDN's), so a budget refusal met at that first piece is a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import tornado.iostream

import extractor
from addon import record
from addon.budgets import BudgetExceeded
from addon.formats import Format
from addon.origin_version import FETCH_ERRORS, RangeRefused, describe
from addon.planner import PlannerFailed, moov_digest
from addon.server import origin_body
from addon.server.job import RETRY_AFTER, SERVED_HEADER, Job, Services
from addon.server.sink import Refusal, Sink

log = logging.getLogger("addon.audio_only")

# Output is held back while the origin is ahead of us and sent in chunks of about FLUSH_AT: each chunk
# costs a write and its framing. The origin is ahead when a read came back full; otherwise we have
# caught up (a live stream, the end of a burst) and everything held leaves at once, with no delay.
ORIGIN_AHEAD = 32 << 10
FEED_PIECE = 64 << 10  # the most of the origin's body fed to the core between two turns of the loop...
SLOW_FEED = 0.004  # ...once a feed has taken more than these seconds of CPU on the loop for SLOW_FEED_BYTES
SLOW_FEED_BYTES = 256 << 10  # (or fewer), and until a first feed of FEED_PIECE says the file is not such
FLUSH_AT = 64 << 10  # (256 KiB held a bursty origin's audio back for seconds: one write more per 64 KiB costs little)
TAIL_TIMEOUT = 10  # seconds for the whole tail fetch; the stream goes on meanwhile
DRAIN_PIECE = 1 << 20  # audio read back from the spool per piece


class Failed(Exception):
    """The answer cannot go on; the message says why."""


class StreamedAnswer:
    """One origin answer (a 200 the origin announced as `fmt`) streamed to our client as audio only.
    It knows the format only as the core's name for it: the core says what the body is."""

    def __init__(self, sink: Sink, services: Services, job: Job, response: httpx.Response, fmt: Format,
                 headers: list, seek: extractor.SeekRange | None):
        self.sink = sink
        self.job = job
        self.response = response
        self.format = fmt
        self.headers = headers
        self.budgets = budgets = services.budgets
        self.origin = services.origin
        self.planner = services.planner
        settings = job.settings
        cut = {fmt.seek_argument: seek} if seek else {}
        if tracks := job.record.get("segment_tracks"):  # an fMP4 media segment: its audio tracks, by ID
            cut["segment_tracks"] = tuple(map(int, tracks.split(",")))  # (checked: origin_answer.whole_file)
        self.extractor = extractor.AudioExtractor(
            max_header=settings.max_header, max_spool=settings.max_spool,
            spool_factory=lambda start: budgets.spool(start, settings.spool_dir),
            cdn_limits=settings.cdn, keep_video=job.plain, defer_plans=True, replay_in_pieces=True, **cut,
        )
        self.lock = asyncio.Lock()  # one caller of the core at a time: the body, or the tail's moov
        self.started = time.monotonic()
        self.headers_sent = False
        self.held = 0  # output written to tornado and not flushed yet
        self.metadata_reserved = 0  # our share of the metadata budget
        self.metadata_since: float | None = None
        self.metadata_box: int | None = None
        self.tail_task: asyncio.Task | None = None
        self.slow_feeds = False  # a feed was slow (SLOW_FEED): the next pieces are fed in slices
        self.fast_feeds = False  # a feed of FEED_PIECE or more was not: pieces may be fed whole

    async def run(self) -> None:
        x = self.extractor
        try:
            async for piece, full_read in self.body_pieces():
                await self.drain_backlog()  # audio the tail's moov found in the spool goes first
                out = await self.feed(piece)
                if not self.headers_sent:
                    # The first piece is read before the headers go out: it says how much metadata
                    # will be held, so that a spent budget can still be a 503 rather than a broken body.
                    self.send_headers()
                    await self.sink.flush()
                if x.format and x.format.partition("-")[0] != self.format.name:  # ("mp4-segment": a moof without its moov)
                    raise extractor.UnsupportedInput(
                        f"the origin announced {self.format.name.upper()} but the body is {x.format.upper()}")
                # (The new moov waits for the first audio the spool gives back: one chunk, not two.)
                await self.write(out, ahead=full_read or x.backlog)
                await self.drain_backlog()
                self.check_metadata()
                if self.tail_task is None and x.wants_tail is not None and self.job.version and self.job.settings.fetch_moov:
                    self.tail_task = asyncio.create_task(self.moov_from_tail(x.wants_tail))
                if x.done:  # past a cut's end: nothing more goes out (a live stream would never end)
                    break
            await self.drain_backlog()
            async with self.lock:
                out = await self.in_worker(x.finish) if x.in_metadata else x.finish()
            await self.write(out, ahead=False)
        except tornado.iostream.StreamClosedError:
            log.info(f"audio-only: {self.job.url}: the client left ({self.summary()})")
            return
        except BudgetExceeded as e:
            return await self.fail(str(e), budget=True)
        except extractor.ExtractError as e:
            return await self.fail(str(e))
        except httpx.ReadTimeout:
            return await self.fail(f"the origin sent nothing for {float(self.job.settings.origin_timeout):.1f} s "
                                   f"(audio_only_origin_timeout)")
        except FETCH_ERRORS as e:
            return await self.fail(f"the origin's body ended early: {describe(e)}")
        except (Failed, PlannerFailed) as e:
            return await self.fail(str(e))
        except Exception as e:  # a bug must still end the answer uncleanly, never as a whole file
            log.exception("audio-only: internal error")
            return await self.fail(f"internal error: {e!r}")
        finally:
            self.release()
        self.done()

    async def body_pieces(self):
        """The origin's body as read, each piece with whether its read was full (the origin is ahead of
        us: output may wait to leave in bigger writes). The body is read from the origin's socket into
        a large buffer where it can be (origin_body.py), else through httpx; each piece is what arrived
        since the last, up to 1 MiB. The core's work on a
        piece grows with the ranges in it: once a feed has taken more than SLOW_FEED a SLOW_FEED_BYTES (a
        file dense with tiny chunks), the pieces are fed FEED_PIECE bytes at a time, the loop serving the
        others between them (so that small requests beside a hostile file are not held back); so too the
        first piece, until a feed says which file this is. An ordinary file is fed whole: slicing it
        costs CPU for nothing."""
        async for piece in origin_body.pieces(self.response):
            full_read = len(piece) >= ORIGIN_AHEAD
            view, at = memoryview(piece), 0
            while at < len(piece):
                size = len(piece) - at
                if size > FEED_PIECE and (self.slow_feeds or not self.fast_feeds):
                    size = FEED_PIECE
                if at:
                    await asyncio.sleep(0)
                yield (piece if size == len(piece) else view[at : at + size]), full_read
                at += size

    async def feed(self, piece: bytes) -> list:
        """The core's output for one piece. A piece that completes a moov leaves its planning to the
        planner (a worker thread, or a process for a big one: planner.py), and a piece fed while other
        metadata is being held (a moof, a script tag, whose parse may take a while) is fed in a worker
        thread: mitmproxy's event loop goes on serving the others."""
        x = self.extractor
        async with self.lock:
            if self.completes_metadata(len(piece)):
                out = await self.in_worker(x.feed, piece)
            else:
                out = self.on_loop(x.feed, piece, size=len(piece))
            self.reserve_metadata()
            if x.plan_wanted is not None:  # a moov is complete: planned off the loop
                plan = await self.plan(x.pop_plan_request())
                out += self.on_loop(x.provide_plan, plan)  # (the rest of the piece is fed now)
        return out

    def on_loop(self, feed, *args, size: int = 0) -> list:
        """feed(*args) (of `size` bytes) on the loop, timed: once one takes more than SLOW_FEED of CPU a
        SLOW_FEED_BYTES (CPU time: a busy machine's preemption is not the file's doing), the next pieces
        are fed in slices."""
        started = time.thread_time()
        out = feed(*args)
        if time.thread_time() - started > SLOW_FEED * max(1.0, size / SLOW_FEED_BYTES):
            self.slow_feeds = True
        elif size >= FEED_PIECE:
            self.fast_feeds = True
        return out

    async def plan(self, request: extractor.PlanRequest) -> extractor.Plan:
        """The moov's plan: the one made before the answer (the seek check) if this is the same moov,
        else one made now by the planner."""
        known = self.job.known_plan
        if known is not None and request.moov_offset == known.moov_at:  # (saio offsets depend on where it lies)
            if await asyncio.to_thread(moov_digest, request.moov) == known.digest:
                log.info(f"audio-only: {self.job.url}: the moov was planned once, before the answer")
                return known.plan
        return await self.planner.plan(request, self.job.settings.spool_dir)

    def completes_metadata(self, n: int) -> bool:
        """Whether n more bytes complete the metadata box being held: that feed may take a while (the box
        is copied whole, a script tag or moof parsed), the ones before only append to it."""
        x = self.extractor
        start, size = x.metadata_start, x.metadata_size
        return start is not None and size is not None and x.bytes_in + n >= start + size

    async def drain_backlog(self) -> None:
        """Audio read back from the spool (the moov came after it) goes out a bounded piece at a time,
        each flushed before the next is read: memory holds one piece, whatever was spooled."""
        x = self.extractor
        while x.backlog:
            async with self.lock:
                part = x.drain(DRAIN_PIECE)
            await self.write(part, ahead=False)

    async def in_worker(self, call, *args):
        """`call` in a worker thread, outside the origin's read timeout and the metadata deadline's view."""
        return await asyncio.to_thread(call, *args)

    def reserve_metadata(self) -> None:
        """The metadata the core holds counts against the budget across responses: its whole size as
        soon as its header says it (the box is held whole, and its plan costs a few times that)."""
        size = self.extractor.metadata_size or 0
        if size > self.metadata_reserved:
            self.budgets.reserve_metadata(size - self.metadata_reserved)
            self.metadata_reserved = size

    def check_metadata(self) -> None:
        """A moov (or moof, or script tag) must arrive within the deadline once begun: an origin that
        trickles it, never silent for long, would otherwise hold the answer open for ever."""
        deadline = self.job.settings.metadata_deadline
        start = self.extractor.metadata_start
        now = time.monotonic()
        if not deadline or start is None:
            self.metadata_since = None
        elif self.metadata_since is None or start != self.metadata_box:
            self.metadata_since, self.metadata_box = now, start  # a new box: its own deadline
        elif now - self.metadata_since > deadline:
            raise Failed(f"the {self.format.metadata} had not arrived {now - self.metadata_since:.1f} s after it began "
                         f"(audio_only_metadata_deadline)")

    async def write(self, pieces: list, ahead: bool) -> None:
        sink = self.sink
        if not self.headers_sent:
            self.send_headers()
        if data := b"".join(pieces):  # (one write a feed, not one a tag: each costs tornado's checks)
            sink.write(data)
            self.held += len(data)
        if self.held >= FLUSH_AT or (not ahead and self.held):
            self.held = 0
            waited = time.monotonic()
            await sink.flush()
            if self.metadata_since is not None:
                # Time the client (a paused player) held us back is not the origin's: the deadline moves.
                self.metadata_since += time.monotonic() - waited

    def send_headers(self) -> None:
        self.headers_sent = True
        self.sink.set_status(200)
        for name, value in self.headers:
            self.sink.add_header(name, value)
        self.sink.set_header(SERVED_HEADER, "stream")

    async def moov_from_tail(self, offset: int) -> None:
        """The moov comes after the media data: ask the origin for what follows the mdat (a Range
        request of our own), so audio starts now instead of after the whole download. Any failure
        leaves the spool to do its work."""
        started = time.monotonic()
        url, x = self.job.url, self.extractor
        try:
            data = await asyncio.wait_for(
                self.origin.fetch_range(self.job.target, offset, x.max_header, self.job.version), TAIL_TIMEOUT)
        except RangeRefused as e:
            log.warning(f"audio-only: {url}: the tail's answer was discarded ({e}); waiting for the moov in the stream")
            return
        except FETCH_ERRORS as e:
            log.info(f"audio-only: {url}: no moov from the tail ({describe(e)}); waiting for it in the stream")
            return
        try:
            async with self.lock:
                request = x.tail_moov(offset, data)
            del data
            if request is None:
                return
            with self.budgets.metadata(request.size):  # counted while it is planned
                plan = await self.plan(request)
        except (extractor.ExtractError, PlannerFailed, BudgetExceeded) as e:
            log.info(f"audio-only: {url}: the tail's moov cannot be used ({e}); waiting for it in the stream")
            return
        async with self.lock:
            used = x.provide_tail_plan(request, plan)
        if used:
            log.info(f"audio-only: {url}: moov fetched from the tail ({request.size} bytes, read from byte {offset}) in "
                     f"{(time.monotonic() - started) * 1000:.0f} ms: audio starts before the download ends")

    def summary(self) -> str:
        x = self.extractor
        saved = 1 - x.bytes_out / x.bytes_in if x.bytes_in else 0.0
        return (f"{self.format.name} stream: {x.bytes_in} bytes in, {x.bytes_out} out, {saved:.1%} saved, "
                f"{time.monotonic() - self.started:.2f}s")

    def done(self) -> None:
        x = self.extractor
        record.conclude(self.job.record, record.EXTRACTED, format=self.format.name, bytes_in=x.bytes_in,
                        bytes_out=x.bytes_out)
        for warning in x.warnings:
            log.warning(f"audio-only: {self.job.url}: {warning}")
        log.info(f"audio-only: {self.job.url} {self.summary()}")
        self.sink.finish()

    async def fail(self, reason: str, budget: bool = False) -> None:
        """End the answer uncleanly, after the headers if they had not gone out yet (the client must see
        a broken body, never a clean end); a spent budget met before the headers went out is a 503."""
        rec = self.job.record
        rec["format"] = self.format.name
        if budget and not self.headers_sent:
            log.warning(f"audio-only: {self.job.url}: answered 503: {reason} ({self.summary()})")
            record.conclude(rec, record.ANSWERED, f"503: {reason}")
            raise Refusal(503, f"{reason}\n", served="stream", retry_after=RETRY_AFTER)
        record.conclude(rec, record.FAILED, reason)
        log.warning(f"audio-only: {self.job.url}: {reason}; response ended uncleanly ({self.summary()})")
        try:
            if not self.headers_sent:
                self.send_headers()
            await self.sink.flush()
        except tornado.iostream.StreamClosedError:
            pass
        self.sink.cut()

    def release(self) -> None:
        if self.tail_task is not None:
            self.tail_task.cancel()
        self.extractor.close()
        self.budgets.release_metadata(self.metadata_reserved)
        self.metadata_reserved = 0

