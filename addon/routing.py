"""The mitmproxy side of our server: a request that asks for audio goes to it, its answer comes back.

requestheaders (divert, which fail_closed.py calls): a request that asked for audio (or for the CDN's
plain seeking; request_rules.py decided) is sent not to the origin but to our server on 127.0.0.1
(server/app.py), with a Job that says where the file is, what was asked and how to answer it; the
client's headers go as they are (Range and conditionals are our server's to answer; the Job's Target
drops them toward the origin).

responseheaders: our server's answer is already the client's answer: the flow's target is put back
as the client sent it (ClientTarget, for mitmweb and the log), the framing fitted to the client's
HTTP version, and the body streamed. Requests that did not ask for audio are left to mitmproxy,
streamed when they are media.

error: our reason named on the flow, and the client's connection ended so that a broken body never
looks whole.
"""

from __future__ import annotations

import logging

from mitmproxy import connection, ctx, http

from addon import formats, internals, options, record
from addon.origin_target import Target
from addon.request_rules import ask_for_the_whole_file
from addon.server.app import AudioServer
from addon.server.job import JOB_HEADER, SERVED_HEADER, Job, Settings
from addon.workers import WorkerPool

log = logging.getLogger("addon.audio_only")

# Passthrough bodies at least this large (or of unknown size, when media) are streamed, not buffered.
STREAM_PASSTHROUGH_ABOVE = 1 << 20
# Seconds the response and error hooks wait for a worker's record of the answer (it comes on the
# worker's control connection just after the answer's end, which mitmproxy may read first).
RECORD_WAIT = 5
RECORD_WAIT_AT_ERROR = 2  # (a client that left: the worker may only notice at its next write)


class AudioRouter:
    def __init__(self, server: AudioServer, workers: WorkerPool):
        self.server = server
        self.workers = workers  # empty: our server in mitmdump's process answers
        self.settings: Settings | None = None  # made at each configure (AudioOnly.configure)
        self.stream_passthrough = True  # audio_only_stream_passthrough (AudioOnly.configure)

    # The hooks below are plain functions that return a coroutine, for mitmproxy to await, only where
    # they must wait (for a worker): without workers they stay synchronous as they were.
    def divert(self, flow: http.HTTPFlow):
        """A request that asked for audio (or the CDN's plain seeking): send it to us instead of the
        origin, keeping what it asked for the handler (to a worker process, or our server here). Called in
        requestheaders, after the request rules, by FailClosed (fail_closed.py), which answers 502 when
        this raises."""
        rec = record.of(flow)
        if not rec or not (rec.get("requested") or rec.get("plain")):
            return
        if self.server.port is None and rec.get("requested"):
            # Our server is not listening yet (mitmproxy opens its ports before the running hook starts
            # it): the origin's answer would be the whole video. Not ready: 503.
            log.warning(f"audio-only: {flow.request.pretty_url}: our server is not listening yet: answered 503")
            record.conclude(rec, record.FAILED, "our server was not listening yet: answered 503")
            flow.response = http.Response.make(
                503, b"audio-only: the edge is starting; try again\n",
                {"content-type": "text/plain; charset=utf-8", "retry-after": "1"})
            return
        if self.server.port is None or flow.request.method.upper() not in ("GET", "HEAD"):
            # (plain seeking on other methods, a CORS preflight say: to the origin, for the whole file)
            ask_for_the_whole_file(flow)
            return
        settings = self.settings or options.settings(ctx.options, ())
        found = formats.by_path(flow.request.path)
        kind = found.answer if found else "stream"
        if rec.get("segment_tracks") or rec.get("byte_range"):
            kind = "stream"  # a playlist's segment (a moof without its moov, a piece of a file): streamed
        if kind == "file" and not (settings.file and not rec.get("plain")):
            kind = "stream"
        job = Job(Target.of(flow), flow.request.method.upper(), flow.request.pretty_url, rec, settings, kind,
                  seek=rec.get("seek"), plain=bool(rec.get("plain")))
        if self.workers.in_use():
            return self.to_worker(flow, job)
        self.route(flow, self.server.add(job), self.server.port)

    async def to_worker(self, flow: http.HTTPFlow, job: Job) -> None:
        """To the worker the file's URL hashes to (a stable hash: a player's requests for one file meet
        its plan there); to our server here when no worker answers. It fails closed: a request that
        asked for audio must never reach the origin unchanged (its answer would be the whole video),
        so any error here answers 502."""
        try:
            await self.send_to_worker(flow, job)
        except Exception as e:
            log.exception(f"audio-only: {job.url}: could not be routed to a worker: answered 502")
            record.conclude(record.of(flow), record.FAILED, f"could not be routed to a worker: {e!r}")
            flow.response = http.Response.make(
                502, b"audio-only: the request could not be routed to a worker (see the proxy's log)\n",
                {"content-type": "text/plain; charset=utf-8"})

    async def send_to_worker(self, flow: http.HTTPFlow, job: Job) -> None:
        worker = await self.workers.worker_for(job.target.url)
        if worker is None or (port := worker.port) is None:
            log.warning(f"audio-only: {job.url}: no worker answers: answered in mitmdump's own process")
            return self.route(flow, self.server.add(job), self.server.port)
        log.debug(f"audio-only: {job.url}: to worker {worker.index}")
        self.route(flow, self.workers.send(worker, job, flow.id), port)

    def route(self, flow: http.HTTPFlow, token: str, port: int) -> None:
        """The request sent to our server at `port`, naming its job."""
        rec = record.of(flow)
        flow.request.headers[JOB_HEADER] = token
        rec["client"] = record.ClientTarget.of(flow)
        flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", port
        # We answer with chunked framing whatever the client speaks (responseheaders fits it to the
        # client again): an HTTP/1.0 close-delimited body could not tell mitmproxy of a failure. (Only
        # HTTP/1.0 is changed: mitmproxy turns an HTTP/2 or 3 request into HTTP/1.1 for us itself, with
        # its Host, which mitmproxy 12 leaves out for a request that already says HTTP/1.1.)
        if flow.request.http_version == "HTTP/1.0":
            flow.request.http_version = "HTTP/1.1"
        # A Server of its own, direct (no upstream proxy: ours is on this machine), so that this flow's
        # detour changes nothing for the client connection's other requests.
        flow.server_conn = connection.Server(address=("127.0.0.1", port))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        rec = record.of(flow)
        if not (rec and "client" in rec):
            if self.stream_passthrough:
                stream_passthrough(flow)
            return
        # Our server's answer: show (mitmweb, the log) where the request was for, as the client sent it.
        client = record.ClientTarget(*rec["client"])
        client.restore(flow)
        flow.request.headers.pop(JOB_HEADER, None)
        response = flow.response
        rec["served"] = response.headers.pop(SERVED_HEADER, "relay")
        if rec["served"] == "stream" and flow.request.method.upper() == "HEAD" and response.status_code == 200:
            # What a GET's answer has (tornado gives a HEAD's answer a Content-Length of 0 instead).
            response.headers.pop("content-length", None)
            response.headers["transfer-encoding"] = "chunked"
        if client.http_version != "HTTP/1.1":
            # Only HTTP/1.1 has chunked framing: an HTTP/1.0 body ends with the connection, and HTTP/2
            # and 3 frame it themselves. (mitmproxy reads our server's body by the framing it announced.)
            response.headers.pop("transfer-encoding", None)
            if client.http_version.startswith("HTTP/1"):
                response.http_version = client.http_version
        response.stream = True

    def response(self, flow: http.HTTPFlow):
        """A worker's record of the answer, in the flow before the marks read it."""
        if self.workers.answering(flow.id):
            return self.workers.final_record(flow.id, RECORD_WAIT)

    def error(self, flow: http.HTTPFlow):
        """mitmproxy's error hook: name our reason on the flow (mitmweb shows it), not just the
        connection's fate; and make sure the client can tell the body is incomplete."""
        rec = record.of(flow)
        if not rec:
            return
        if "client" in rec and flow.response is not None:  # (at once: the client must not wait for the record)
            if unframed(flow):
                internals.reset_client_on_close(flow)
            internals.close_client_connection(flow)
        if self.workers.answering(flow.id):
            return self.name_the_failure_once_known(flow, rec)
        name_the_failure(flow, rec)

    async def name_the_failure_once_known(self, flow: http.HTTPFlow, rec: record.FlowRecord) -> None:
        await self.workers.final_record(flow.id, RECORD_WAIT_AT_ERROR)
        name_the_failure(flow, rec)


def name_the_failure(flow: http.HTTPFlow, rec: record.FlowRecord) -> None:
    if rec.get("outcome") == record.FAILED:
        flow.error.msg = f"audio-only: {rec['why']}"
        flow.comment = f"audio-only: {rec['why']}"


def stream_passthrough(flow: http.HTTPFlow) -> None:
    """A CDN edge never holds a whole video in memory: stream what we pass on untouched."""
    if flow.response.stream:
        return
    length = flow.response.headers.get("content-length", "")
    big = int(length) > STREAM_PASSTHROUGH_ABOVE if length.isdigit() else False
    media = formats.of_answer(flow.response.headers.get("content-type", ""), flow.request.path) is not None \
        or formats.by_path(flow.request.path) is not None
    if big or media:
        flow.response.stream = True


def unframed(flow: http.HTTPFlow) -> bool:
    """An HTTP/1 response whose end is the connection's close (an HTTP/1.0 client: no chunked framing)."""
    return (flow.request.http_version.startswith("HTTP/1") and flow.response is not None
            and "chunked" not in flow.response.headers.get("transfer-encoding", "").lower()
            and "content-length" not in flow.response.headers)
