"""Our server: its life inside mitmproxy, its table of routed requests, and the dispatch of each.

mitmproxy streams to its client only a body that comes from a server connection (a response an addon
makes is buffered whole, and a stream callable can neither wait nor add data of its own). So every
request that asks for audio is sent (addon/routing.py) not to the origin but to this server, on
127.0.0.1 inside mitmproxy's own event loop (tornado, which mitmproxy itself uses for mitmweb). This
server asks the origin itself and answers; mitmproxy streams our answer to the client like any
origin's, with its backpressure. How a request is answered is its Job's answer kind (ANSWERS), named
in the log and in the answer's SERVED_HEADER:

- file: a format served as a file (formats.py), whose origin serves ranges with a validator
  (file_source.py, file_answer.py); else as for stream;
- stream: the origin's answer to the request for the whole file, fed through the core as it arrives
  (origin_answer.py, stream_answer.py); relayed as it is when there is nothing to extract;
- manifest: an HLS playlist or DASH MPD fetched whole and rewritten (manifest_answer.py).

A plain error page (a 400, a 502, a 503) is a Refusal raised before the headers go out: tornado's
send_error calls our write_error.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import tornado.httpserver
import tornado.netutil
import tornado.web

import extractor
from addon import formats, internals, record
from addon.budgets import BudgetExceeded
from addon.origin_client import OriginClient
from addon.origin_version import FETCH_ERRORS, describe
from addon.server import file_answer, file_source, manifest_answer, origin_answer
from addon.server.job import JOB_HEADER, RETRY_AFTER, SERVED_HEADER, Job, Services
from addon.server.plan_cache import AudioFile
from addon.server.sink import Refusal, Sink

log = logging.getLogger("addon.audio_only")

JOB_TTL = 120  # seconds a routed request may take to reach us
RETIRED_POLL = 0.5  # seconds between two looks at whether a retired server's routed requests have come


async def refusing(job: Job, step):
    """`step` awaited; what keeps it from giving an answer, before the headers, as a plain page."""
    try:
        return await step
    except extractor.SeekPastEnd as e:
        raise Refusal(400, f"{e}\n") from None
    except BudgetExceeded as e:
        log.warning(f"audio-only: {job.url}: answered 503: {e}")
        record.conclude(job.record, record.ANSWERED, f"503: {e}")
        raise Refusal(503, f"{e}\n", retry_after=RETRY_AFTER) from None
    except FETCH_ERRORS as e:
        log.warning(f"audio-only: {job.url}: the origin could not be read: {describe(e)}")
        raise Refusal(502, f"the origin could not be read: {describe(e)}\n") from None


async def answer_from_origin(sink: Sink, services: Services, job: Job, response=None) -> None:
    """The origin's answer to the request for the whole file (asked for here unless given): streamed,
    a 400, or relayed."""
    if response is None:
        response = await refusing(job, origin_answer.whole_file(services, job, sink.request_headers))
    try:
        fmt = formats.of_answer(response.headers.get("content-type", ""), job.target.path)
        if fmt is not None and fmt.answer == "manifest" and job.method == "GET" and not job.plain:
            await manifest_answer.answer(sink, services, job, response)  # a playlist its path did not name
        else:
            await origin_answer.answer(sink, services, job, response)
    finally:
        await response.aclose()


async def answer_as_file(sink: Sink, services: Services, job: Job) -> None:
    """As a file where the origin allows, else from the origin's answer to the whole file."""
    found = await refusing(job, file_source.audio_file(services, job))
    if isinstance(found, AudioFile):
        return await file_answer.serve(sink, services, job, found)
    await answer_from_origin(sink, services, job, found)


async def answer_manifest(sink: Sink, services: Services, job: Job) -> None:
    """A playlist or MPD: fetched whole and rewritten (manifest_answer.py); the CDN's plain seeking
    has nothing to cut in one, so it goes as the origin sends it."""
    if job.plain:
        return await answer_from_origin(sink, services, job)
    response = await refusing(job, manifest_answer.fetch(services, job, sink.request_headers))
    try:
        await manifest_answer.answer(sink, services, job, response)
    finally:
        await response.aclose()


# The answer kinds (formats.Format.answer): a new kind is a function here.
ANSWERS = {"file": answer_as_file, "stream": answer_from_origin, "manifest": answer_manifest}


class AudioServer:
    """The server, its routed requests (jobs) and the services its answers share. A part of the
    addon (AudioOnly.addons): it starts when mitmproxy runs, and stops (or winds down) at done."""

    def __init__(self, origin: OriginClient):
        self.services = Services(origin)
        self.jobs: dict[str, Job] = {}
        self.port: int | None = None
        self.server: tornado.httpserver.HTTPServer | None = None
        self.answering = 0  # requests our server is answering now
        self.retired = False  # our script was reloaded: a new addon takes the new requests
        self.closing: asyncio.Task | None = None
        # The last bytes of a body with a Content-Length leave at the answer's end, after its log line
        # and record: a worker process's (addon/server/worker_main.py) reach mitmdump on another
        # connection, and must be there before the client has its whole body (tests read the log then).
        self.last_bytes_at_the_end = False

    def running(self) -> None:
        self.start()

    def done(self) -> None:
        if internals.mitmproxy_is_stopping():
            self.stop()
        else:
            self.retire()  # a reload of our script: what is in flight runs to its end

    def start(self) -> None:
        if self.server is not None:
            return
        app = tornado.web.Application([(r".*", Handler, {"server": self})], compress_response=False)
        self.server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        """mitmproxy stops: no new connections (those open end with mitmproxy), no more plans, and the
        origin pools close at once."""
        self._stop_listening()
        self._close()

    def retire(self) -> None:
        """Our script is reloaded (mitmproxy calls the old addon's done, then the new one's load): the
        requests routed to us still come here and every answer runs to its end, a live stream's too;
        then the server, the planner and the origin pools close. (Closing the pools at once cut every
        answer in flight, mid-stream.)"""
        self.retired = True
        self._stop_listening_once_routed()

    def add(self, job: Job) -> str:
        """A routed request's job; the token that names it in the request (JOB_HEADER)."""
        self._forget_lost_jobs()
        token = secrets.token_hex(12)
        self.jobs[token] = job
        return token

    async def take(self, token: str) -> Job | None:
        """The routed request's job, taken out of the table (a worker process's server waits a moment
        for a job still on its way: addon/server/worker_main.py)."""
        return self.jobs.pop(token, None)

    def answered(self, token: str, job: Job) -> None:
        """The job's answer has ended: its record is final (a worker sends it back to mitmdump)."""

    def _stop_listening(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _close(self) -> None:
        """The planner, and the origin pools (on the loop, which goes on for a while after mitmproxy's
        done hooks)."""
        self.services.planner.close()
        self.services.outputs.clear()  # (its files vanish once no answer reads them)
        try:
            self.closing = asyncio.get_running_loop().create_task(self.services.origin.close())
        except RuntimeError:  # no loop (a test harness): nothing was opened
            pass

    def _forget_lost_jobs(self) -> None:
        """Jobs whose request never reached us (its client left first)."""
        now = time.monotonic()
        for token in [t for t, job in self.jobs.items() if now - job.made > JOB_TTL]:
            del self.jobs[token]

    def _stop_listening_once_routed(self) -> None:
        self._forget_lost_jobs()
        if self.jobs:  # routed to our port by the old addon, not arrived yet: mitmproxy connects soon
            try:
                asyncio.get_running_loop().call_later(RETIRED_POLL, self._stop_listening_once_routed)
                return
            except RuntimeError:  # no loop (a test harness): no request is coming
                pass
        self._stop_listening()
        self._close_when_answered()

    def _close_when_answered(self) -> None:
        """Once retired, not listening and answering nothing: the planner and the pools close."""
        if self.retired and self.server is None and not self.answering and self.closing is None:
            self._close()


class Handler(tornado.web.RequestHandler):
    """One routed request: its job taken back, and answered as the job's kind says."""
    server: AudioServer

    def initialize(self, server: AudioServer) -> None:
        self.server = server
        self.body_written = 0

    def write(self, chunk) -> None:
        self.body_written += len(chunk)
        super().write(chunk)

    def flush(self, include_footers: bool = False):
        """As tornado's, except that with last_bytes_at_the_end the body's last bytes wait for finish()."""
        if not include_footers and self.server.last_bytes_at_the_end:
            length = self._headers.get("Content-Length")
            if length is not None and self.body_written >= int(length):
                done = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
        return super().flush(include_footers)

    def compute_etag(self):
        return None  # ours are set by the answers; tornado's would hash the body

    def set_default_headers(self) -> None:
        self.clear_header("Content-Type")
        self.clear_header("Server")

    async def head(self) -> None:
        await self.serve()

    async def get(self) -> None:
        await self.serve()

    async def serve(self) -> None:
        self.server.answering += 1
        token, job = self.request.headers.get(JOB_HEADER, ""), None
        try:
            job = await self.server.take(token)
            if job is None:
                self.set_status(404)
                return
            await ANSWERS[job.answer](Sink(self), self.server.services, job)
        finally:
            if job is not None:
                self.server.answered(token, job)
            self.server.answering -= 1
            self.server._close_when_answered()

    def write_error(self, status_code: int, **kwargs) -> None:
        """A Refusal's plain text page; anything else (a bug) a bare 500."""
        refusal = kwargs.get("exc_info", (None, None))[1]
        if not isinstance(refusal, Refusal):
            return super().write_error(status_code, **kwargs)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header(SERVED_HEADER, refusal.served)
        if refusal.retry_after is not None:
            self.set_header("Retry-After", str(refusal.retry_after))
        self.finish(refusal.text.encode())
