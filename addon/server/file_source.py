"""An MP4 as a file: what the origin has, read with Range requests, planned once per version.

1. a probe (the first PROBE bytes): the status, the validator (strong ETag, else Last-Modified), the
   length, and the first box header. An origin without ranges or a validator, a body that is not an
   MP4 with its moov readable this way: the whole file is asked for, and streamed (None);
2. unless cached, the top level (the core's TopLevelReader says which bytes it needs: each box
   header, the ftyp, the moov, a fragmented file's moofs; of the media data only what follows an mdat
   header in a read), planned off the event loop into a FilePlan, and cached by (the URL we ask for,
   its route, the Host we send, validator, cut, gap), bounded in bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

import extractor
from addon import http_rules
from addon.formats import BY_NAME
from addon.origin_version import OriginVersion, RangeRefused
from addon.planner import PlannerFailed
from addon.server.job import Job, Services
from addon.server.origin_groups import learn_from_probe
from addon.server.plan_cache import AudioFile

log = logging.getLogger("addon.audio_only")

PROBE = 16  # the first read: the version of the file, and its first box header (no media data)
MP4 = BY_NAME["mp4"]
# Headers of the origin's answer that describe its bytes, or the connection: ours are set anew.
NOT_KEPT = http_rules.HOP_BY_HOP | {"content-length", "content-range", "content-type", "accept-ranges", "etag",
                                   "last-modified", "content-md5", "digest", "content-encoding", "date", "server"}


def kept_headers(headers) -> list[tuple[str, str]]:
    """The origin's end-to-end headers that hold for the audio-only file as well (CORS, caching,
    cookies, disposition...)."""
    return [(k, v) for k, v in headers.multi_items() if k.lower() not in NOT_KEPT]


async def audio_file(services: Services, job: Job) -> AudioFile | httpx.Response | None:
    """The planned file; or the origin's answer to the probe when that is the whole story (it ignored
    the range: its 200 is the file, to stream or relay); or None: ask for the whole file and stream it.
    SeekPastEnd when the cut starts past the audio; the origin's errors (FETCH_ERRORS) as they come."""
    timeout = job.settings.origin_timeout  # a 200 to the probe is the answer streamed
    sent = time.monotonic()
    response = await services.origin.open(job.target, headers=[("Range", f"bytes=0-{PROBE - 1}")],
                                          read_timeout=timeout)
    job.latency = time.monotonic() - sent
    learn_from_probe(services, job.target.route, response.headers)
    version = OriginVersion.of_probe(response.status_code, response.headers)
    if version is None:
        if response.status_code != 206 and job.method == "GET":
            return response  # the origin ignored the range (or failed): its answer is the whole story
        await response.aclose()  # a 206 without a validator or a length, a 416...: the whole file, streamed
        return None
    cut = job.cut(MP4)
    part = http_rules.seek_part(cut)
    # What the file is: where it was asked for (the route we connect to and the Host we send: the
    # client's Host alone could name a server of its own in regular mode, and poison the caches for
    # everyone), its version, the cut.
    target = job.target
    host = next((value for name, value in target.headers if name.lower() == "host"), None)
    key = (target.url, target.route, host, version, part, job.settings.gap)
    kept = kept_headers(response.headers)
    # The origin's date, kept beside its ETag too (caches and `wget -N` compare dates), as it is now.
    last_modified = response.headers.get("last-modified")
    # The output cache keeps only what a strong ETag names (a date cannot tell two versions of one second).
    storable = http_rules.storable(response.headers) and version.validator.startswith('"')
    if (entry := services.cache.get(key)) is not None:
        await response.aclose()
        return AudioFile(entry.plan, entry.version, entry.etag, last_modified, kept, key, storable)
    try:
        head = b"".join([piece async for piece in response.aiter_raw()])
    finally:  # (an answer left open would keep a retired pool from closing until the collector finds it)
        await response.aclose()
    try:
        plan = await planned(services, job, version, head, cut)
    except extractor.SeekPastEnd:
        raise
    except (extractor.ExtractError, RangeRefused, PlannerFailed) as e:
        log.info(f"audio-only: {job.url}: served as a stream, not as a file: {e}")
        return None
    for warning in plan.warnings:
        log.warning(f"audio-only: {job.url}: {warning}")
    # A file that keeps an audio sidx is not the stream's bytes (the stream cannot size one): its own ETag.
    index_part = "-sidx" if plan.index_range is not None else ""
    entry = AudioFile(plan, version, http_rules.file_etag(version.validator, version.length, part + index_part),
                      last_modified, kept, key, storable)
    services.cache.put(key, entry)
    return entry


async def planned(services: Services, job: Job, version: OriginVersion, head: bytes,
                  cut: extractor.SeekRange | None) -> extractor.FilePlan:
    """The file's top level read from the origin and planned, never on the event loop."""
    settings = job.settings
    # A fragmented file's sidx is rewritten for the audio (DASH on-demand players read it) when the
    # whole file is asked for; a cut's output starts elsewhere, and has none.
    top = await services.origin.read_top_level(job.target, version, settings.max_header, head, index=cut is None)
    # Counted against the metadata budget while it is planned (then the plan cache bounds it).
    with services.budgets.metadata(len(top.moov) + sum(len(box[2]) for box in top.after)):
        if any(kind == b"moof" for kind, _, _ in top.after):  # fragmented: many small boxes to plan
            return await asyncio.to_thread(extractor.plan_fragmented_file, top.ftyp, top.moov, top.after, top.mdats,
                                           version.length, cut, settings.gap, top.moov_at, cut is None)
        ftyp, holder, mdats, moov_at = top.ftyp, [top.moov], top.mdats, top.moov_at
        del top  # the moov handed over: the planner lets go of it as soon as it has passed it on
        return await services.planner.plan_file(ftyp, holder, mdats, version.length, cut, settings.gap, moov_at,
                                                settings.spool_dir)
