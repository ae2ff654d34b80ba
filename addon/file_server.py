"""The audio-only MP4 served as a file: a length, Range requests, conditionals, only audio from the origin.

mitmproxy streams to its client only a body that comes from a server connection (a response an
addon makes is buffered whole, and a stream callable can neither wait nor add data of its own). So
every request that asks for audio is sent (`FileServer.route`, in requestheaders) not to the origin
but to this server, on 127.0.0.1 inside mitmproxy's own event loop (tornado, which mitmproxy itself
uses for mitmweb). This server asks the origin itself (origin_client.py) and answers; mitmproxy
streams our answer to the client like any origin's, with its backpressure. Three ways to answer, named
in the log and in the answer's SERVED_HEADER (response.py takes it off):

- file: an MP4 (extended mode, audio_only_origin_ranges, an MP4 path) whose origin serves ranges
  with a validator, served as a file as below;
- stream: the origin's whole answer fed through the core as it arrives (stream.py): FLV, live,
  fragmented MP4, an origin without ranges, cdn mode;
- relay: the origin's answer as it is, when there is nothing to extract (a 404, HTML, a 304, a gzip
  body...).

For a file this server asks the origin, with Range requests on the origin client's pooled
connections, for what it needs and nothing more:

1. a probe (the first 16 bytes): the status, the validator (strong ETag, else Last-Modified), the
   length, and the first box header. An origin without ranges or a validator, a body that is not
   an MP4 with its moov readable this way, or a fragmented file: the origin's answer to a request
   for the whole file is streamed;
2. unless cached, the top level (each box header read with a 16-byte Range request, then the ftyp
   and the moov; of the media data only what follows an 8-byte mdat header in those 16 bytes), planned into a FilePlan in
   a worker thread, off the event loop, and cached (by URL, validator and cut, bounded in bytes);
3. for a GET, the audio of the bytes asked for: neighbouring chunks joined into one request when the
   bytes between them are fewer than audio_only_range_gap, each answer checked (206, the range asked
   for, the same length and validator). Up to WINDOW requests (WINDOW_BYTES of the input; fewer from an
   origin nearby, whose latency needs no more) are read ahead of what the client has taken; beyond
   that the client's pace holds the origin back. A file
   replaced at the origin while a response is in flight ends that response uncleanly (short of its
   Content-Length), with a warning; never two versions in one body (as far as the validator can
   tell: an origin with only a Last-Modified date cannot tell two versions of one second and length).

The answer follows RFC 9110: 200 with Content-Length, Accept-Ranges, an ETag derived from the
origin's validator (and the cut), and the origin's other end-to-end headers (CORS, caching, cookies); 206 for one range (`a-b`, `a-`, `-n`) with Content-Range; 416
with `bytes */N` for a range past the end; several ranges get the whole 200; If-Range (our ETag, or
the origin's Last-Modified date) decides between the range and the whole 200; If-None-Match with our
ETag gives 304; HEAD gives the headers of the GET and reads no media data.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace
from itertools import islice

import httpx
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
from mitmproxy import connection, http

import extractor
from addon import http_rules
from addon import response as decisions
from addon.budgets import BudgetExceeded, Budgets
from addon.planner import Planner, PlannerFailed, moov_digest
from addon.origin_client import FETCH_ERRORS, MultiRangeRefused, OriginClient, OriginVersion, RangeRefused, Target
from addon.request_rules import JOB_HEADER, META, SERVED_HEADER, ask_for_the_whole_file
from addon.stream import RETRY_AFTER, TAIL_TIMEOUT, StreamedAnswer, describe

log = logging.getLogger("addon.audio_only")

PROBE = 16  # the first read: the version of the file, and its first box header (no media data)
MAX_REQUEST = 4 << 20  # the most one origin request of the body asks for
WINDOW = 16  # origin requests of one response in flight at once, at most (body())
WINDOW_LEAST = 2  # and at least, while there are more to make
REQUEST_CPU = 0.002  # seconds of our CPU an answer of MULTI_RANGES small ranges takes (measured: 2.2 ms)
SMALL_GROUP = 256 << 10  # audio bytes of a request up to which its transfer is short beside that (body())
MULTI_RANGES = 200  # ranges in one origin request, where the origin answers several (Apache's default limit)
ONE_BY_ONE_GAP = 256 << 10  # the least range gap for an origin that answers one range per request
CUT_IN_THREAD = 256  # ranges in a batch from which it is cut in a worker thread (cut_apart)
CUTTER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-only-cut")
WINDOW_BYTES = 8 << 20  # and the most bytes they may ask for together: the memory of a response
JOB_TTL = 120  # seconds a routed request may take to reach us
RETIRED_POLL = 0.5  # seconds between two looks at whether a retired server's routed requests have come
MP4_PATHS = re.compile(r"\.(mp4|m4a|m4v|mov|f4v)$", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """The options a routed request is answered with, as they were when it arrived."""
    file: bool  # try to serve an MP4 as a file (extended mode, audio_only_origin_ranges, an MP4 path)
    cdn: bool  # audio_only_compat=cdn
    max_header: int
    max_spool: int
    spool_dir: str | None
    fetch_moov: bool
    origin_timeout: float  # 0: none
    metadata_deadline: float  # 0: none
    gap: int  # audio_only_range_gap


@dataclass
class Job:
    """A request routed to us: where the file is, what was asked."""
    target: Target
    method: str
    seek: extractor.SeekRange | None  # MP4's cut, for the file path
    seek_part: str  # the cut as the ETag names it, "" for none
    settings: Settings
    url: str
    state: dict  # the flow's metadata["audio_only"]: what was served is written back there
    plain: bool = False  # the CDN's plain video seeking: cut, but keep the video
    version: OriginVersion | None = None  # of the origin's file, once its answer is in
    # The client's If-None-Match as the origin knows it (request_rules.py translates our ETag back):
    # a streamed answer asks the origin with it, so that a 304 can come back.
    revalidate: tuple = ()
    known_plan: tuple | None = None  # (moov_digest of a moov, where it lies, its plan) made before the answer (the seek check)
    made: float = field(default_factory=time.monotonic)
    latency: float = 0.0  # seconds the origin took to answer our probe (the headers of a 16-byte range)


@dataclass
class AudioFile:
    plan: extractor.FilePlan
    version: OriginVersion
    etag: str
    last_modified: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)  # the origin's, that hold for our bytes too


class PlanCache:
    """Planned files by (URL, validator, cut), least recently used first out, bounded in bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.entries: OrderedDict[tuple, AudioFile] = OrderedDict()
        self.used = 0

    def get(self, key: tuple) -> AudioFile | None:
        if (entry := self.entries.get(key)) is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: AudioFile) -> None:
        if key in self.entries or entry.plan.memory > self.limit:
            return
        self.entries[key] = entry
        self.used += entry.plan.memory
        while self.used > self.limit:
            _, old = self.entries.popitem(last=False)
            self.used -= old.plan.memory


class FileServer:
    """The server, its pending jobs, its cache and budgets; made by the addon, started when mitmproxy runs."""

    def __init__(self, origin: OriginClient):
        self.origin = origin
        self.jobs: dict[str, Job] = {}
        self.multirange: dict = {}  # route -> False once its origin answered several ranges otherwise
        self.cache = PlanCache(64 << 20)
        self.budgets = Budgets()
        self.planner = Planner()
        self.port: int | None = None
        self.server: tornado.httpserver.HTTPServer | None = None
        self.answering = 0  # requests our server is answering now
        self.retired = False  # our script was reloaded: a new addon takes the new requests
        self.closing: asyncio.Task | None = None

    def start(self) -> None:
        if self.server is not None:
            return
        app = tornado.web.Application([(r".*", FileHandler, {"files": self})], compress_response=False)
        self.server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    def stop(self) -> None:
        """mitmproxy stops: no new connections (those open end with mitmproxy), no more plans, and the
        origin pools close at once."""
        self._stop_listening()
        self._close()

    def _stop_listening(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _close(self) -> None:
        """The planner, and the origin pools (on the loop, which goes on for a while after mitmproxy's
        done hooks)."""
        self.planner.close()
        try:
            self.closing = asyncio.get_running_loop().create_task(self.origin.close())
        except RuntimeError:  # no loop (a test harness): nothing was opened
            pass

    def retire(self) -> None:
        """Our script is reloaded (mitmproxy calls the old addon's done, then the new one's load): the
        requests routed to us still come here and every answer runs to its end, a live stream's too;
        then the server, the planner and the origin pools close. (Closing the pools at once cut every
        answer in flight, mid-stream.)"""
        self.retired = True
        self._stop_listening_once_routed()

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

    def route(self, flow: http.HTTPFlow, settings: Settings) -> None:
        """A request that asked for audio (or the CDN's plain seeking): send it to us instead of the
        origin, keeping what it asked for the handler."""
        state = flow.metadata.get(META) or {}
        if not (state.get("requested") or state.get("plain")):
            return
        if self.port is None or flow.request.method.upper() not in ("GET", "HEAD"):
            # (plain seeking on other methods, a CORS preflight say: to the origin, for the whole file)
            ask_for_the_whole_file(flow)
            return
        seek = None
        values = (state.get("seek") or {}).get("values")
        if values and state.get("requested"):
            seek = extractor.parse_range(values["mp4_seek_start"], values["mp4_seek_end"], True)
        self._forget_lost_jobs()
        token = secrets.token_hex(12)
        seek_part = f"-{seek.start}-{seek.end or ''}" if seek else ""
        wants_file = settings.file and not state.get("plain") and bool(MP4_PATHS.search(flow.request.path.split("?")[0]))
        # The client's conditionals go to us as they are (Target drops them toward the origin); a
        # streamed answer asks the origin with its If-None-Match as the origin knows its ETags.
        revalidate = (("If-None-Match", http_rules.origin_if_none_match(flow.request.headers["if-none-match"])),) \
            if "if-none-match" in flow.request.headers else ()
        self.jobs[token] = Job(Target.of(flow), flow.request.method.upper(), seek, seek_part,
                               replace(settings, file=wants_file),
                               flow.request.pretty_url, state, plain=bool(state.get("plain")), revalidate=revalidate)
        flow.request.headers[JOB_HEADER] = token
        state["origin"] = (flow.request.scheme, flow.request.host, flow.request.port, flow.request.host_header,
                           flow.request.http_version)
        state["routed"] = True
        flow.request.scheme, flow.request.host, flow.request.port = "http", "127.0.0.1", self.port
        # We answer with chunked framing whatever the client speaks (ResponseRules.decide fits it to the
        # client again): an HTTP/1.0 close-delimited body could not tell mitmproxy of a failure. (Only
        # HTTP/1.0 is changed: mitmproxy turns an HTTP/2 or 3 request into HTTP/1.1 for us itself, with
        # its Host, which mitmproxy 12 leaves out for a request that already says HTTP/1.1.)
        if flow.request.http_version == "HTTP/1.0":
            flow.request.http_version = "HTTP/1.1"
        # A Server of its own, direct (no upstream proxy: ours is on this machine), so that this flow's
        # detour changes nothing for the client connection's other requests.
        flow.server_conn = connection.Server(address=("127.0.0.1", self.port))


    # -- what a request needs from the origin -------------------------------------------------------

    async def whole_file(self, job: Job) -> httpx.Response:
        """The origin's answer to the client's request for the whole file (with its If-None-Match as the
        origin knows it), its body to be streamed or relayed."""
        return await self.origin.open(job.target, method=job.method, headers=job.revalidate,
                                      read_timeout=job.settings.origin_timeout)

    async def audio_file(self, job: Job) -> AudioFile | httpx.Response:
        """The planned file, or the origin's answer to relay when the file cannot be served as one."""
        timeout = job.settings.origin_timeout  # a 200 to the probe is the answer streamed
        sent = time.monotonic()
        response = await self.origin.open(job.target, headers=[("Range", f"bytes=0-{PROBE - 1}")], read_timeout=timeout)
        job.latency = time.monotonic() - sent
        version = probe_version(response)
        if version is None:
            if response.status_code != 206 and job.method == "GET":
                return response  # the origin ignored the range (or failed): its answer is the whole story
            # A 206 without a validator or a length, a 416...: the whole file, asked for anew, is streamed.
            await response.aclose()
            return await self.whole_file(job)
        key = (job.url, version, job.seek_part, job.settings.gap)
        kept = kept_headers(response.headers)
        # The origin's date, kept beside its ETag too (caches and `wget -N` compare dates), as it is now.
        last_modified = response.headers.get("last-modified")
        if (entry := self.cache.get(key)) is not None:
            await response.aclose()
            return AudioFile(entry.plan, entry.version, entry.etag, last_modified, kept)
        try:
            head = b"".join([piece async for piece in response.aiter_raw()])
        finally:  # (an answer left open would keep a retired pool from closing until the collector finds it)
            await response.aclose()
        try:
            ftyp, moov, moov_at, mdats, after = await self.origin.read_top_level(
                job.target, version, job.settings.max_header, head)
            # Counted against the metadata budget while it is planned (then the plan cache bounds it).
            with self.budgets.metadata(len(moov) + sum(len(box[2]) for box in after)):
                if any(kind == b"moof" for kind, _, _ in after):  # fragmented: many small boxes to plan
                    plan = await asyncio.to_thread(extractor.plan_fragmented_file, ftyp, moov, after, mdats,
                                                   version.length, job.seek, job.settings.gap, moov_at)
                else:
                    holder = [moov]
                    del moov  # handed over: the planner lets go of it as soon as it has passed it on
                    plan = await self.planner.plan_file(ftyp, holder, mdats, version.length, job.seek, job.settings.gap,
                                                        moov_at, job.settings.spool_dir)
        except extractor.SeekPastEnd:
            raise
        except (extractor.ExtractError, RangeRefused, PlannerFailed) as e:
            log.info(f"audio-only: {job.url}: served as a stream, not as a file: {e}")
            return await self.whole_file(job)
        for warning in plan.warnings:
            log.warning(f"audio-only: {job.url}: {warning}")
        entry = AudioFile(plan, version, http_rules.file_etag(version.validator, version.length, job.seek_part),
                          last_modified, kept)
        self.cache.put(key, entry)
        return entry



# Headers of the origin's answer that describe its bytes, or the connection: ours are set anew.
NOT_KEPT = http_rules.HOP_BY_HOP | {"content-length", "content-range", "content-type", "accept-ranges", "etag", "last-modified",
                         "content-md5", "digest", "content-encoding", "date", "server"}


def kept_headers(headers) -> list[tuple[str, str]]:
    """The origin's end-to-end headers that hold for the audio-only file as well (CORS, caching,
    cookies, disposition...)."""
    return [(k, v) for k, v in headers.multi_items() if k.lower() not in NOT_KEPT]


def probe_version(response) -> OriginVersion | None:
    """The file's version from the answer to our probe, when the origin serves it as a file: a 206
    with a Content-Range giving the whole length, and a strong ETag or a Last-Modified."""
    if response.status_code != 206 or response.headers.get("content-encoding", "identity") != "identity":
        return None
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("content-range", "").strip())
    etag = response.headers.get("etag", "")
    validator = etag if etag.startswith('"') else response.headers.get("last-modified")
    if not m or not validator:
        return None
    return OriginVersion(validator, int(m[3]))


class FileHandler(tornado.web.RequestHandler):
    files: FileServer

    def initialize(self, files: FileServer) -> None:
        self.files = files

    def compute_etag(self):
        return None  # ours are set by hand; tornado's would hash the body

    def set_default_headers(self) -> None:
        self.clear_header("Content-Type")
        self.clear_header("Server")

    async def head(self) -> None:
        await self.serve()

    async def get(self) -> None:
        await self.serve()

    async def serve(self) -> None:
        self.files.answering += 1
        try:
            await self.serve_job()
        finally:
            self.files.answering -= 1
            self.files._close_when_answered()

    async def serve_job(self) -> None:
        job = self.files.jobs.pop(self.request.headers.get(JOB_HEADER, ""), None)
        if job is None:
            self.set_status(404)
            return
        try:
            if job.settings.file:
                found = await self.files.audio_file(job)
            else:
                found = await self.files.whole_file(job)
        except extractor.SeekPastEnd as e:
            return self.plain(400, f"{e}\n")
        except BudgetExceeded as e:
            log.warning(f"audio-only: {job.url}: answered 503: {e}")
            job.state["answered"] = f"503: {e}"
            self.set_header("Retry-After", str(RETRY_AFTER))
            return self.plain(503, f"{e}\n")
        except FETCH_ERRORS as e:
            log.warning(f"audio-only: {job.url}: the origin could not be read: {describe(e)}")
            return self.plain(502, f"the origin could not be read: {describe(e)}\n")
        if isinstance(found, AudioFile):
            await self.serve_file(job, found)
            return
        try:
            await self.answer(job, found)
        finally:
            await found.aclose()

    origin_bytes = 0

    def plain(self, status: int, text: str, served: str = "file") -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header(SERVED_HEADER, served)
        self.finish(text.encode())

    async def answer(self, job: Job, response: httpx.Response) -> None:
        """The origin's answer to the request for the whole file: streamed as audio only, a 400 (a
        seek start past an MP4's audio), or relayed as it is."""
        state, headers = job.state, response.headers
        fmt = decisions.requested_format(headers.get("content-type", ""), job.target.path)
        if why := decisions.why_not(response.status_code, headers, fmt):
            if state.get("requested"):
                state["passthrough"] = why
                log.info(f"audio-only: {job.url}: not extracted: {why}")
            if response.status_code == 304 and (etag := headers.get("etag")):
                headers["etag"] = decisions.derived_etag(etag)
            return await self.relay(job, response)
        job.version = OriginVersion.of(headers)
        seek = decisions.seek_range(fmt, state, headers, job.url)
        if job.plain and seek is None:
            state["passthrough"] = "nothing to cut"
            return await self.relay(job, response)  # plain seeking with nothing to cut: the file as it is
        if fmt == "mp4" and seek and seek.start and job.version and await self.seek_past_end(job, seek):
            state["answered"] = f"400: seek start {seek.start / 1000:g} s is past the end of the audio"
            log.info(f"audio-only: {job.url}: answered {state['answered']} (as the CDN does)")
            return self.plain(400, f"seek start {seek.start / 1000:g} s is past the end of the audio\n", "stream")
        state["format"] = fmt
        out_headers = decisions.audio_headers(headers.multi_items(), fmt, seek, job.plain)
        if job.method == "HEAD":
            for name, value in out_headers:
                self.add_header(name, value)
            self.set_header(SERVED_HEADER, "stream")
            return
        await StreamedAnswer(self, job, response, fmt, out_headers, seek, self.files.budgets).run()

    async def seek_past_end(self, job: Job, seek: extractor.SeekRange) -> bool:
        """The CDN answers 400 when an MP4's seek start lies past the audio. The moov is needed to know
        that, so it is read first with Range requests and planned (off the loop) with the cut; the plan
        is kept for the stream, which uses it when its moov is the same bytes (one parse, not two). If
        the moov cannot be had, extraction goes on and a start past the end ends the response uncleanly
        instead."""
        try:
            ftyp, moov, moov_at, _, _ = await asyncio.wait_for(
                self.files.origin.read_top_level(job.target, job.version, job.settings.max_header, until_moov=True),
                TAIL_TIMEOUT)
        except (*FETCH_ERRORS, extractor.ExtractError) as e:
            log.info(f"audio-only: {job.url}: could not read the moov before answering ({describe(e)})")
            return False
        request = extractor.PlanRequest(ftyp, moov, seek, job.plain, moov_at)
        del moov
        try:
            with self.files.budgets.metadata(request.size):
                digest = await asyncio.to_thread(moov_digest, request.moov)
                plan = await self.files.planner.plan(request, job.settings.spool_dir)
        except extractor.SeekPastEnd:
            return True
        except (extractor.ExtractError, PlannerFailed, BudgetExceeded) as e:
            log.info(f"audio-only: {job.url}: the seek start is not checked before answering ({e})")
            return False
        job.known_plan = (digest, moov_at, plan)
        return False

    async def relay(self, job: Job, response: httpx.Response) -> None:
        """The origin's answer as it is (not for extraction: a 404, a 206, HTML...)."""
        try:
            self.set_status(response.status_code, response.reason_phrase or None)
            for name, value in response.headers.multi_items():
                if name.lower() not in http_rules.HOP_BY_HOP:
                    self.add_header(name, value)
            self.set_header(SERVED_HEADER, "relay")
            if job.method == "HEAD" or response.status_code in (204, 304):
                return
            async for piece in response.aiter_raw():
                self.write(piece)
                await self.flush()
        except tornado.iostream.StreamClosedError:
            pass  # the client left
        except FETCH_ERRORS as e:
            log.warning(f"audio-only: {job.url}: the origin's answer ended early: {describe(e)}")
            self.request.connection.close()

    async def serve_file(self, job: Job, file: AudioFile) -> None:
        size = file.plan.size
        headers = self.request.headers  # the client's, as it sent them
        self.set_header("ETag", file.etag)  # (first: not_modified compares with it)
        unchanged = http_rules.not_modified(self, file.last_modified)
        for name, value in file.headers:
            if not unchanged or name.lower() in http_rules.KEPT_IN_304:
                self.add_header(name, value)
        self.set_header("Content-Type", "audio/mp4")
        self.set_header("Accept-Ranges", "bytes")
        if file.last_modified:
            self.set_header("Last-Modified", file.last_modified)
        self.set_header(SERVED_HEADER, "file")
        if unchanged:
            self.set_status(304)
            return
        # Range counts for GET only (RFC 9110, 14.2): a HEAD gets the headers of the whole file.
        wanted = http_rules.parse_range(headers["Range"], size) if "Range" in headers and job.method == "GET" else None
        if wanted is not None and "If-Range" in headers and \
                not http_rules.if_range_holds(headers["If-Range"], file.etag, file.last_modified):
            wanted = None  # another version than the client has: the whole file
        if wanted == "unsatisfiable":
            self.set_status(416)
            self.set_header("Content-Range", f"bytes */{size}")
            self.set_header("Content-Length", "0")
            return
        first, last = wanted if wanted else (0, size - 1)
        if wanted:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.set_header("Content-Length", str(last + 1 - first))
        if job.method == "HEAD" or size == 0:
            return
        sent = 0
        self.origin_bytes = 0
        part = f"bytes {first}-{last}/{size}" if wanted else f"{size} bytes"
        try:
            async for piece in self.body(job, file, first, last):
                self.write(piece)
                sent += len(piece)
                await self.flush()
        except tornado.iostream.StreamClosedError:  # an OSError too: before the origin's errors
            # The client left (a player seeking elsewhere does so all the time).
            log.info(f"audio-only: {job.url} file: {part}: the client left after {sent} bytes")
        except RangeRefused as e:
            log.warning(f"audio-only: {job.url}: response ended uncleanly after {sent} of {last + 1 - first} "
                        f"bytes: {e}")
            self.request.connection.close()
        except FETCH_ERRORS as e:
            log.warning(f"audio-only: {job.url}: response ended uncleanly after {sent} bytes: the origin: {e!r}")
            self.request.connection.close()
        else:
            job.state.update(origin_read=self.origin_bytes, sent=sent, file_length=file.version.length)
            log.info(f"audio-only: {job.url} file: {part}: {self.origin_bytes} bytes read from the origin, "
                     f"{sent} sent")

    async def body(self, job: Job, file: AudioFile, first: int, last: int):
        """Output bytes first..last: head bytes, then the audio from the origin. Several requests are in
        flight at once (their answers held, at most WINDOW_BYTES, until their turn), so that thousands
        of small chunks do not each wait for a round trip; they leave in order.

        How many: of small answers (several ranges a request), enough to cover the origin's latency
        (its answer to this request's probe) while we work on the answers already in, each about
        REQUEST_CPU: from WINDOW_LEAST for an origin nearby up to WINDOW for one far away. Not more:
        each request more in flight costs CPU in httpcore's pool (measured on loopback with nginx: 16
        in flight 207-219 ms a GET, 4 in flight 172-176 ms). (Whether the next answer is in when we
        come to it cannot tell: on a busy loop it is often not yet read though the origin sent it long
        ago.) Bigger answers (more than SMALL_GROUP of audio), and an origin that answers one range a
        request (read in spans of up to MAX_REQUEST), take longer to arrive than to work on: there the
        transfer, at a rate we do not know, is what requests in flight cover, and WINDOW go out (one by
        one from an origin sending 40 MB/s a connection: 1.0 s a GET; 6 s with 2-3 in flight). The
        probe's latency may also count a connection's handshake, or a wait for a free connection: an
        origin may look farther than it is, never nearer."""
        window: deque[asyncio.Task] = deque()
        held, nearby = 0, min(WINDOW, WINDOW_LEAST + int(job.latency / REQUEST_CPU))
        try:
            for kind, value in self.requests(job, file, first, last):
                if kind == "head":  # bytes of our own: after what is in flight (a fragment's moof)
                    if not window:
                        yield value
                        continue
                    done = asyncio.get_running_loop().create_future()
                    done.set_result((value, 0))
                    window.append(done)
                    continue
                size = sum(b.size for b in value if isinstance(b, extractor.Batch))  # (a Run is one too)
                limit = nearby if self.files.multirange.get(job.target.route, True) and size <= SMALL_GROUP else WINDOW
                while window and (len(window) >= limit or held + size > WINDOW_BYTES):
                    piece = await window.popleft()
                    held -= piece[1]
                    yield piece[0]
                window.append(asyncio.ensure_future(self.fetch_group(job, file, value, size)))
                held += size
            while window:
                yield (await window.popleft())[0]
        finally:
            for task in window:
                task.cancel()

    def requests(self, job: Job, file: AudioFile, first: int, last: int):
        """('head', bytes) and ('fetch', group for one origin request): several batches go in one
        request of several ranges (up to MULTI_RANGES, MAX_REQUEST bytes) where the origin answers those.
        Bytes of our own between batches (a fragment's moof) ride in the group, in their place. The
        plan's gap (audio_only_range_gap when it was planned) joins neighbouring ranges into a batch;
        for an origin that answers one range a request, batches less than ONE_BY_ONE_GAP apart go in one
        request's span (at most MAX_REQUEST), a Run written out as its batches (FilePlan.ones)."""
        route, plan = job.target.route, file.plan
        group: list = []  # Batch (or Run), and bytes between them
        batches, span, previous = 0, 0, None  # (previous: the group's last Batch)
        for kind, value in plan.batches(first, last, MAX_REQUEST, runs=self.files.multirange.get(route, True)):
            if kind == "head":
                if group:
                    group.append(value)
                else:
                    yield kind, value
                continue
            singles = (value,)
            if kind == "run":  # one-range batches (several-range requests only): as many at once as fit
                run = value
                # (asked again at each request: the origin may turn out to answer one range a request)
                while run is not None and self.files.multirange.get(route, True):
                    taken, run = plan.take(run, MULTI_RANGES - batches, MAX_REQUEST - span)
                    if taken is None:  # the request is full
                        if group:
                            yield "fetch", group
                            group, batches, span = [], 0, 0
                            continue
                        taken, run = run, None  # (never: each range of a run is at most MAX_REQUEST)
                    group.append(taken)
                    previous = taken
                    batches += taken.j - taken.i
                    span += taken.size
                if run is None:
                    continue
                singles = plan.ones(run)  # the rest, for an origin found to answer one range a request
            for value in singles:
                several = self.files.multirange.get(route, True)
                size = value.hi - value.lo
                if group:
                    if several:
                        full = batches >= MULTI_RANGES or span + size > MAX_REQUEST
                    else:  # one range a request costs a round trip each: reading the video between is cheaper
                        full = value.lo - previous.hi > ONE_BY_ONE_GAP or value.hi - group[0].lo > MAX_REQUEST
                    if full:
                        yield "fetch", group
                        group, batches, span = [], 0, 0
                group.append(value)
                previous = value
                batches += 1
                span += size
        if group:
            yield "fetch", group

    async def fetch_group(self, job: Job, file: AudioFile, group: list, size: int) -> tuple[bytes, int]:
        """The output of a group: one request of several ranges, or (one batch, or an origin that does not
        answer several ranges) one request for the span of them all."""
        route = job.target.route
        batches = [b for b in group if isinstance(b, extractor.Batch)]
        spans = []
        for b in batches:
            if isinstance(b, extractor.Run):
                spans += file.plan.spans(b)
            else:
                spans.append((b.lo, b.hi - 1))
        if len(spans) > 1 and self.files.multirange.get(route, True):
            try:
                pieces = await self.files.origin.fetch_spans(job.target, spans, file.version)
            except MultiRangeRefused as e:
                if self.files.multirange.get(route, True):
                    log.info(f"audio-only: {job.url}: the origin does not answer several ranges in one request "
                             f"({e}): asking for them one by one")
                self.files.multirange[route] = False
            else:
                self.origin_bytes += sum(map(len, pieces))
                return await cut_apart(file.plan, group, pieces), size
        # One range from the group's first byte to its last (at most MAX_REQUEST and the gaps between,
        # but for the groups made before the origin was found to answer one range a request): the bytes
        # between its batches are read and dropped as they come, as a coarser gap would have had it
        # (only the audio is held: the window's bytes are the memory a response takes).
        start, end = batches[0].lo, batches[-1].hi
        cutter, output = extractor.SpanCutter(file.plan, group, start), []
        # A span of thousands of tiny ranges (a hostile interleave) is cut in the cutting thread, piece by
        # piece, as cut_apart does: on the loop, each piece's cut held every other client for tens of ms.
        loop = asyncio.get_running_loop() if sum(b.j - b.i for b in batches) > CUT_IN_THREAD else None
        # (aclosing: a cancel that lands in the cut closes the origin's answer now, not when collected)
        async with contextlib.aclosing(self.files.origin.stream_range(job.target, start, end - 1, file.version)) as pieces:
            async for piece in pieces:
                self.origin_bytes += len(piece)
                output += cutter.feed(piece) if loop is None else await loop.run_in_executor(CUTTER, cutter.feed, piece)
        if not cutter.done:  # (stream_range checks the length: never)
            raise RangeRefused(f"the origin's answer for bytes {start}-{end - 1} ended short")
        return b"".join(output), size


async def cut_apart(plan: extractor.FilePlan, group: list, pieces: list[bytes]) -> bytes:
    """The output of a group asked for in one request of several ranges: each batch out of its piece
    (which starts at the batch's lo; a Run has a piece a range), and the bytes between batches as they
    are. A batch of thousands of tiny ranges (about 1 µs each) is cut in a worker thread: the loop then
    waits at most for one such cut (the GIL), not for all of them. One thread for all cuts: several
    would take turns at the GIL with the loop, each turn a wait."""
    if len(pieces) == sum(b.j - b.i for b in group if not isinstance(b, bytes)) and \
            not any(isinstance(b, bytes) for b in group):
        return b"".join(pieces)  # (runs of) batches of one range each, nothing between them: the pieces as they are
    out, next_piece = [], iter(pieces)
    for element in group:
        if not isinstance(element, extractor.Batch):
            out.append(element)
            continue
        if isinstance(element, extractor.Run):  # a piece a range: its output, as it is
            out += islice(next_piece, element.j - element.i)
            continue
        piece = next(next_piece)
        if element.j - element.i == 1:  # one range: its piece is its output, as it is
            out.append(piece)
        elif element.j - element.i > CUT_IN_THREAD:
            out.append(await asyncio.get_running_loop().run_in_executor(CUTTER, plan.cut, element, piece, element.lo))
        else:
            out.append(plan.cut(element, piece, element.lo))
    return b"".join(out)
