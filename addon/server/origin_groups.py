"""The audio of a file answer's byte range as origin requests: grouped, fetched, and cut.

A FilePlan says which ranges of the origin's file hold the audio of output bytes first..last. They
are asked for in as few requests as the origin allows: several ranges in one request (up to
MULTI_RANGES, MAX_REQUEST bytes) where it answers multipart/byteranges; else one range a request,
neighbours closer than the origin's speed makes worth it (origin_speed.py) read as one span and the
bytes between dropped as they come. How many ranges an origin answers in one request is learnt per route (Services.multirange:
route -> that count, 1 for one range a request): Alibaba OSS (known by its headers on the probe's
answer) answers at most OSS_RANGES; an origin that refuses a count (416, 400, a 200 with the whole
file: nginx's max_ranges, OSS past its limit) is asked for half as many before one range a request.
Cutting thousands of tiny ranges is done in one worker thread (CUTTER), off the event loop. The
requests of an answer (requests()) are made once per plan and kept with it where the origin answers
several ranges a request (kept_groups.py): the next GETs of the same bytes only send them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from itertools import islice

import extractor
from addon.multipart import AskedRanges
from addon.origin_target import asks_on_h11
from addon.origin_version import MultiRangeRefused, RangeRefused
from addon.server import kept_groups
from addon.server.job import Job, Services
from addon.server.origin_speed import H11_CPU, HTTPX_CPU, speed_of
from addon.server.plan_cache import AudioFile

log = logging.getLogger("addon.audio_only")

MAX_REQUEST = 4 << 20  # the most one origin request of the body asks for
MULTI_RANGES = 200  # ranges in one origin request, where the origin answers several (Apache's default limit)
OSS_RANGES = 50  # Alibaba OSS's limit (its answers say `Server: AliyunOSS`, `x-oss-request-id`)
WINDOW = 16  # origin requests of one response in flight at once, at most (file_answer.body())
CUT_IN_THREAD = 256  # ranges in a batch from which it is cut in a worker thread (cut_apart)
CUTTER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audio-only-cut")


def is_oss(headers) -> bool:
    """Whether an origin's answer comes from Alibaba OSS (which then answers at most OSS_RANGES)."""
    return headers.get("server", "").lower().startswith("aliyunoss") or "x-oss-request-id" in headers


def learn_from_probe(services: Services, route, headers) -> None:
    """What the probe's answer tells of the ranges the origin answers in one request (OSS's limit)."""
    if route not in services.multirange and is_oss(headers):
        services.multirange[route] = OSS_RANGES


class OriginGroups:
    """The origin requests of one file answer; `read` counts the bytes they read."""

    def __init__(self, services: Services, job: Job, file: AudioFile):
        self.services, self.job, self.file = services, job, file
        self.read = 0
        route = job.target.route
        self.speed = speed_of(services.speeds, route, job.latency, H11_CPU if asks_on_h11(route) else HTTPX_CPU)
        self.gap = self.speed.join_gap(WINDOW, MAX_REQUEST)  # for one-range requests: origin_speed.py

    def most(self) -> int:
        """Ranges the origin answers in one request, as far as we know now (1: one range a request)."""
        return self.services.multirange.get(self.job.target.route, MULTI_RANGES)

    def refused(self, count: int, why: MultiRangeRefused) -> None:
        """The origin refused `count` ranges in one request: half as many from now on, at most, and
        one range a request once that is fewer than two, or at once when it never answers several (several requests in flight may each be
        refused: the count only goes down, from the count each asked for)."""
        job, before = self.job, self.most()
        most = min(before, count // 2) if why.count else 1
        most = most if most >= 2 else 1
        self.services.multirange[job.target.route] = most
        if most == 1 and before > 1:
            log.info(f"audio-only: {job.url}: the origin does not answer several ranges in one request "
                     f"({why}): asking for them one by one")
        elif most < before:
            log.info(f"audio-only: {job.url}: the origin refused {count} ranges in one request ({why}): "
                     f"asking for {most} at most")

    def groups(self, first: int, last: int):
        """('head', bytes) and ('fetch', group for one origin request): several batches go in one
        request of several ranges (up to most(), MAX_REQUEST bytes) where the origin answers those.
        Bytes of our own between batches (a fragment's moof) ride in the group, in their place. The
        plan's gap (audio_only_range_gap when it was planned) joins neighbouring ranges into a batch;
        for an origin that answers one range a request, batches less than the speed's join_gap apart (as
        measured when the group begins) go in one request's span (at most MAX_REQUEST), a Run written out as its batches (FilePlan.ones)."""
        plan = self.file.plan
        group: list = []  # Batch (or Run), and bytes between them
        batches, span, previous = 0, 0, None  # (previous: the group's last Batch)
        for kind, value in plan.batches(first, last, MAX_REQUEST, runs=self.most() > 1):
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
                while run is not None and (most := self.most()) > 1:
                    taken, run = plan.take(run, most - batches, MAX_REQUEST - span)
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
                most = self.most()
                size = value.hi - value.lo
                if group:
                    if most > 1:
                        full = batches >= most or span + size > MAX_REQUEST
                    else:  # a round trip a request, against the transfer of the video between
                        full = value.lo - previous.hi > self.gap or value.hi - group[0].lo > MAX_REQUEST
                    if full:
                        yield "fetch", group
                        group, batches, span = [], 0, 0
                        self.gap = self.speed.join_gap(WINDOW, MAX_REQUEST)
                group.append(value)
                previous = value
                batches += 1
                span += size
        if group:
            yield "fetch", group

    def requests(self, first: int, last: int):
        """('head', bytes) and ('fetch', kept_groups.Request), as groups() makes them: kept with the
        plan once made in full for an origin that answers several ranges a request, and taken from
        there the next times (kept_groups.py)."""
        plan, most = self.file.plan, self.most()
        key = (first, last, most)
        if most > 1 and (items := kept_groups.kept(plan, key)) is not None:
            yield from items
            return
        items = []
        for kind, value in self.groups(first, last):
            item = (kind, value if kind == "head" else kept_groups.request_of(plan, value))
            items.append(item)
            yield item
        if most > 1 and self.most() == most:
            kept_groups.keep(plan, key, items)

    async def fetch(self, group: list, size: int, asked: AskedRanges | None = None) -> tuple[bytes, int]:
        """The output of a group: one request of several ranges (`asked`, when laid out in advance), or
        (one batch, or an origin that does not answer several ranges) one request for the span of them all."""
        job, file = self.job, self.file
        if asked is not None and len(asked) <= self.most():
            try:
                pieces = await self.services.origin.fetch_spans(job.target, None, file.version, asked)
            except MultiRangeRefused as e:
                self.refused(len(asked), e)  # (then as below: in fewer ranges a request, or one span)
            else:
                self.read += asked.wanted
                return await cut_apart(file.plan, group, pieces), size
        batches = [b for b in group if isinstance(b, extractor.Batch)]
        spans = []
        for b in batches:
            if isinstance(b, extractor.Run):
                spans += file.plan.spans(b)
            else:
                spans.append((b.lo, b.hi - 1))
        if len(spans) > 1 and self.most() > 1 and (pieces := await self.several(spans)) is not None:
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
        sent = first_bytes = time.monotonic()
        got = 0
        async with contextlib.aclosing(self.services.origin.stream_range(job.target, start, end - 1, file.version)) as pieces:
            async for piece in pieces:
                if not got:
                    first_bytes = time.monotonic()
                got += len(piece)
                output += cutter.feed(piece) if loop is None else await loop.run_in_executor(CUTTER, cutter.feed, piece)
        self.read += got
        self.speed.observe(first_bytes - sent, got, time.monotonic() - first_bytes)
        if not cutter.done:  # (stream_range checks the length: never)
            raise RangeRefused(f"the origin's answer for bytes {start}-{end - 1} ended short")
        return b"".join(output), size

    async def several(self, spans: list[tuple[int, int]]) -> list[bytes] | None:
        """The bytes of each span, in requests of at most most() ranges (fewer when the origin refuses
        a count: refused()); None once it is found to answer one range a request."""
        job, version, origin = self.job, self.file.version, self.services.origin
        pieces, at = [], 0
        while at < len(spans):
            if (most := self.most()) < 2:
                return None
            some = spans[at : at + most]
            try:
                if len(some) == 1:
                    got = [await origin.fetch_range(job.target, some[0][0], some[0][1] + 1 - some[0][0], version)]
                else:
                    got = await origin.fetch_spans(job.target, some, version)
            except MultiRangeRefused as e:
                self.refused(len(some), e)
                continue
            self.read += sum(map(len, got))
            pieces += got
            at += len(some)
        return pieces


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
