"""The origin's answer to the request for the whole file: streamed as audio only, a 400, or relayed.

From the origin's status and headers: extract (a 200 of identity bytes in a format of formats.py),
answer 400 (a seek start past an MP4's audio, as the CDN does), or relay the answer as it is.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx

import extractor
from addon import formats, http_rules, record
from addon.budgets import BudgetExceeded
from addon.formats import Format
from addon.origin_version import FETCH_ERRORS, OriginVersion, describe
from addon.planner import PlannerFailed, moov_digest
from addon.server.job import SERVED_HEADER, Job, KnownPlan, Services
from addon.server.relay import relay
from addon.server.sink import Refusal, Sink
from addon.server.stream_answer import TAIL_TIMEOUT, StreamedAnswer

log = logging.getLogger("addon.audio_only")

FORMAT_NAMES = " or ".join(", ".join(f.name.upper() for f in formats.FORMATS if f.answer != "manifest").rsplit(", ", 1))  # "MP4 or FLV"


async def whole_file(services: Services, job: Job, request_headers) -> httpx.Response:
    """The origin's answer to the client's request for the whole file, its body to be streamed or
    relayed; with the client's If-None-Match as the origin knows its ETags, so that its 304 comes back."""
    asked = request_headers.get("If-None-Match")
    headers = [("If-None-Match", http_rules.origin_if_none_match(asked))] if asked else []
    rec = job.record
    if (tracks := rec.get("segment_tracks")) and not re.fullmatch(r"\d+(,\d+)*", tracks):
        raise Refusal(400, f"the segment's track list {tracks!r} is not track IDs\n", served="stream")
    if byte_range := rec.get("byte_range"):  # a byte-range playlist's segment: those bytes only
        if not (m := re.fullmatch(r"(\d+)-(\d*)", byte_range)) or (m[2] and int(m[2]) < int(m[1])):
            raise Refusal(400, f"the segment's byte range {byte_range!r} is not first-last\n", served="stream")
        headers = [("Range", f"bytes={byte_range}")]
    return await services.origin.open(job.target, method=job.method, headers=headers,
                                      read_timeout=job.settings.origin_timeout)


def why_not(status: int, headers, fmt: Format | None) -> str | None:
    """Why an asked-for extraction does not happen (None: it does)."""
    if status != 200:
        return f"origin answered {status}"
    if headers.get("content-encoding", "identity").lower() != "identity":
        return f"origin body is {headers['content-encoding']}-encoded"
    if fmt is None:
        return f"content type {headers.get('content-type', '(none)')!r} is not {FORMAT_NAMES}"
    if fmt.name not in extractor.SUPPORTED_FORMATS:
        return f"{fmt.name.upper()} extraction is not available in this version"
    return None


def not_for(job: Job, fmt: Format) -> str | None:
    """Why this request does not get the format's extraction or cut, though the format has one."""
    if job.plain and not fmt.plain_seek:
        return f"plain seeking (start/end without the audio parameter) does not cut {fmt.name.upper()}"
    if job.settings.cdn and not fmt.cdn:
        return f"the CDN does not extract audio from {fmt.name.upper()} (audio_only_compat=cdn)"
    return None


def audio_headers(origin_headers: list[tuple[str, str]], fmt: Format, seek: extractor.SeekRange | None,
                  plain: bool) -> list[tuple[str, str]]:
    """The origin's headers made ours: no length or ranges (the body is streamed), our type, an ETag
    derived from the origin's (or none)."""
    out = []
    for name, value in origin_headers:
        lower = name.lower()
        if lower in http_rules.ORIGIN_BYTES or (lower == "content-type" and not plain):
            continue
        if lower == "etag":
            value = http_rules.derived_etag(value, http_rules.seek_part(seek), "seek" if plain else "audio")
            if not value:
                continue
        out.append((name, value))
    if not plain:
        out.append(("Content-Type", fmt.output_type))
    return out


def cut_of(job: Job, fmt: Format, headers) -> extractor.SeekRange | None:
    """The part the request asks for (None: all of it). A cut in bytes that starts past the file's
    length is no cut: the whole file is sent (the CDN's rule for FLV)."""
    wanted = job.cut(fmt)
    length = headers.get("content-length", "")
    if wanted and not wanted.by_time and length.isdigit() and wanted.start >= int(length):
        log.info(f"audio-only: {job.url}: seek start {wanted.start} is past the file's {length} bytes: the whole "
                 f"file is sent (the CDN's rule for FLV)")
        return None
    if wanted:
        job.record["seek_range"] = wanted.describe()
    return wanted


def range_problem(job: Job, response: httpx.Response) -> str | None:
    """A segment named by a byte range (`<name>_range`): the origin's 206 must be those bytes."""
    first, _, last = job.record["byte_range"].partition("-")
    if response.status_code == 206:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("content-range", "").strip())
        # (`first-`: to the end, which a length of "*" cannot confirm: an LL-HLS part still being written)
        to_the_end = not last and (m is not None and (m[3] == "*" or int(m[2]) == int(m[3]) - 1))
        if m and int(m[1]) == int(first) and (to_the_end or (last and int(m[2]) == int(last))):
            return None
        return f"the origin's 206 is bytes {response.headers.get('content-range')!r}, not the {first}-{last} asked for"
    return f"the origin answered {response.status_code} to the request for bytes {first}-{last}"


async def answer(sink: Sink, services: Services, job: Job, response: httpx.Response) -> None:
    rec, headers = job.record, response.headers
    fmt = formats.of_answer(headers.get("content-type", ""), job.target.path)
    status = response.status_code
    if rec.get("byte_range") and status < 300:
        if problem := range_problem(job, response):
            record.conclude(rec, record.ANSWERED, f"502: {problem}")
            log.warning(f"audio-only: {job.url}: answered 502: {problem}")
            raise Refusal(502, f"{problem}\n", served="stream")
        status = 200  # those bytes are the segment: ours is the whole of it
    if why := why_not(status, headers, fmt) or not_for(job, fmt):
        if rec.get("requested"):
            record.conclude(rec, record.PASSED, why)
            log.info(f"audio-only: {job.url}: not extracted: {why}")
        if response.status_code == 304 and (etag := headers.get("etag")):
            headers["etag"] = http_rules.derived_etag(etag)
        return await relay(sink, job, response)
    job.version = OriginVersion.of(headers)
    seek = cut_of(job, fmt, headers)
    if job.plain and seek is None:
        record.conclude(rec, record.PASSED, "nothing to cut")
        return await relay(sink, job, response)  # plain seeking with nothing to cut: the file as it is
    # (an MP4's audio end is in its moov, read ahead with Range requests: other formats find out as they go)
    if fmt.name == "mp4" and seek and seek.start and job.version and await seek_past_end(services, job, seek):
        text = f"seek start {seek.start / 1000:g} s is past the end of the audio"
        record.conclude(rec, record.ANSWERED, f"400: {text}")
        log.info(f"audio-only: {job.url}: answered 400: {text} (as the CDN does)")
        raise Refusal(400, f"{text}\n", served="stream")
    rec["format"] = fmt.name
    out_headers = audio_headers(headers.multi_items(), fmt, seek, job.plain)
    if job.method == "HEAD":
        for name, value in out_headers:
            sink.add_header(name, value)
        sink.set_header(SERVED_HEADER, "stream")
        return
    await StreamedAnswer(sink, services, job, response, fmt, out_headers, seek).run()


async def seek_past_end(services: Services, job: Job, seek: extractor.SeekRange) -> bool:
    """The CDN answers 400 when an MP4's seek start lies past the audio. The moov is needed to know
    that, so it is read first with Range requests and planned (off the loop) with the cut; the plan is
    kept for the stream, which uses it when its moov is the same bytes (one parse, not two). If the
    moov cannot be had, extraction goes on and a start past the end ends the response uncleanly
    instead."""
    try:
        top = await asyncio.wait_for(
            services.origin.read_top_level(job.target, job.version, job.settings.max_header, until_moov=True),
            TAIL_TIMEOUT)
    except (*FETCH_ERRORS, extractor.ExtractError) as e:
        log.info(f"audio-only: {job.url}: could not read the moov before answering ({describe(e)})")
        return False
    request = extractor.PlanRequest(top.ftyp, top.moov, seek, job.plain, top.moov_at)
    del top
    try:
        with services.budgets.metadata(request.size):
            digest = await asyncio.to_thread(moov_digest, request.moov)
            plan = await services.planner.plan(request, job.settings.spool_dir)
    except extractor.SeekPastEnd:
        return True
    except (extractor.ExtractError, PlannerFailed, BudgetExceeded) as e:
        log.info(f"audio-only: {job.url}: the seek start is not checked before answering ({e})")
        return False
    job.known_plan = KnownPlan(digest, request.moov_offset, plan)
    return False
