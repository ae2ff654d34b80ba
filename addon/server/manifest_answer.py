"""An HLS playlist or DASH MPD answered audio only: fetched whole, rewritten, answered with its length.

The core rewrites (extractor/manifest): only audio variants, renditions or AdaptationSets remain, and
every URI a player fetches for media carries the client's audio parameter, so that each segment comes
back through this proxy audio only. fMP4 media segments carry no moov: their audio track IDs are read
here from the init segments the playlist names (fetched once, with a Range when the playlist gives
one, and remembered by URL and range), and the rewritten URIs name them (`<name>_track`). A DASH
Representation served as one muxed file (SegmentBase) gets the byte ranges of our audio-only file,
from the same plan a request for that file will use (file_source.py), or is dropped.

What cannot be rewritten passes through as the origin sent it, with a warning in the log and on the
flow: a playlist encrypted whole (AES-128: we hold no key), a body that is not a playlist. The
origin's caching headers are kept (a live playlist is never cached longer than the origin says); the
ETag is ours, weak, derived from the origin's.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse

import httpx

import extractor
from addon import formats, http_rules, record
from addon.origin_target import Route, Target
from addon.origin_version import FETCH_ERRORS, describe
from addon.request_rules import split_param
from addon.server import file_source
from addon.server.job import SERVED_HEADER, Job, Services
from addon.server.plan_cache import AudioFile
from addon.server.relay import relay
from addon.server.sink import Refusal, Sink
from extractor.manifest import dash, hls
from extractor.manifest.common import InitSegment
from extractor.mp4.sidx import audio_track_ids

log = logging.getLogger("addon.audio_only")

# Headers of the origin's answer that describe its bytes (ours are others) or its connection.
DROPPED = http_rules.ORIGIN_BYTES | {"etag"}  # (ours is derived from it, weak)
MAX_INITS = 32  # init segments read for one playlist (a playlist names one or a few)
INIT_TIMEOUT = 10  # seconds for each
INIT_MOST = 4 << 20  # bytes of an init segment read, at most (an init is kilobytes; audio_only_max_header if less)
INITS_AT_ONCE = 4  # init segments read at once for one playlist
MAX_FILE_PLANS = 8  # muxed on-demand files (SegmentBase) of one MPD given their audio-only index (each a plan)


async def fetch(services: Services, job: Job, request_headers) -> httpx.Response:
    """The origin's playlist (a GET even for a HEAD: our length is the rewritten text's), with the
    client's If-None-Match as the origin knows its ETags. LL-HLS `_HLS_*` parameters stay on the path."""
    asked = request_headers.get("If-None-Match")
    headers = [("If-None-Match", http_rules.origin_if_none_match(asked.replace("W/", "")))] if asked else []
    return await services.origin.open(job.target, headers=headers, read_timeout=job.settings.origin_timeout)


async def answer(sink: Sink, services: Services, job: Job, response: httpx.Response) -> None:
    rec, headers = job.record, response.headers
    fmt = formats.of_answer(headers.get("content-type", ""), job.target.path)
    if fmt is None or fmt.answer != "manifest":
        fmt = formats.by_path(job.target.path)  # a playlist served as text/plain, say: its path says
    encoding = headers.get("content-encoding", "identity").lower()
    if (response.status_code != 200 or encoding != "identity" or fmt is None or fmt.answer != "manifest"
            or (job.settings.cdn and not fmt.cdn)):
        why = (f"origin answered {response.status_code}" if response.status_code != 200
               else f"origin body is {encoding}-encoded" if encoding != "identity"
               else "neither its type nor its path names a playlist" if fmt is None or fmt.answer != "manifest"
               else f"the CDN rewrites no {fmt.name.upper()} {fmt.metadata} (audio_only_compat=cdn)")
        record.conclude(rec, record.PASSED, why)
        log.info(f"audio-only: {job.url}: not rewritten: {why}")
        if response.status_code == 304 and (etag := headers.get("etag")):
            headers["etag"] = weak(http_rules.derived_etag(etag))
        return await relay(sink, job, response)
    body = await read_bounded(response, job.settings.max_header, "the playlist")
    param_text = rec.get("param_text") or "ali_audio_only=1"
    name = urllib.parse.unquote_plus(param_text.partition("=")[0])
    try:
        text, warnings = await rewritten(services, job, fmt, body, name, param_text)
    except extractor.ExtractError as e:
        text, warnings = None, [f"not an {fmt.name.upper()} {fmt.metadata} we can rewrite ({e})"]
    for warning in warnings:
        log.warning(f"audio-only: {job.url}: {warning}")
    if text is None:
        record.conclude(rec, record.PASSED, f"the origin's {fmt.metadata} passed through: {warnings[-1]}", format=fmt.name)
        return send(sink, job, headers, body, headers.get("etag"))
    out = text.encode()
    record.conclude(rec, record.EXTRACTED, format=fmt.name, bytes_in=len(body), bytes_out=len(out))
    log.info(f"audio-only: {job.url}: {fmt.name} {fmt.metadata} rewritten to audio only ({len(body)} -> {len(out)} bytes)")
    etag = headers.get("etag")
    send(sink, job, headers, out, weak(http_rules.derived_etag(etag)) if etag else None)


def weak(etag: str) -> str:
    """Ours names the same text only while the rewrite is the same: never byte for byte promised."""
    return etag if not etag or etag.startswith("W/") else f"W/{etag}"


def send(sink: Sink, job: Job, origin_headers: httpx.Headers, body: bytes, etag: str | None) -> None:
    sink.set_status(200)
    for name, value in origin_headers.multi_items():
        if name.lower() not in DROPPED:
            sink.add_header(name, value)  # Cache-Control, Expires, Age, Date, CORS... as the origin said
    if etag:
        sink.set_header("ETag", etag)
    sink.set_header("Content-Length", str(len(body)))
    sink.set_header(SERVED_HEADER, "manifest")
    if job.method != "HEAD":
        sink.write(body)


async def read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole body, refused (a 502) past `limit` bytes (audio_only_max_header)."""
    body = bytearray()
    try:
        async for piece in response.aiter_raw():
            body += piece
            if len(body) > limit:
                raise Refusal(502, f"{what} is larger than audio_only_max_header ({limit} bytes)\n", served="manifest")
    except FETCH_ERRORS as e:
        raise Refusal(502, f"the origin's answer ended early: {describe(e)}\n", served="manifest") from None
    return bytes(body)


async def rewritten(services: Services, job: Job, fmt: formats.Format, body: bytes, name: str,
                    param_text: str) -> tuple[str | None, list[str]]:
    """(the audio-only text, or None to pass the origin's through; warnings). Parsed and rewritten in
    worker threads: a big playlist takes a quarter second."""
    url = job.url
    if fmt.name == "hls":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise extractor.MalformedInput(f"the playlist is not UTF-8 ({e})") from None
        tracks = await init_tracks(services, job, hls.init_maps(text, url))
        result = await asyncio.to_thread(hls.rewrite, text, url, name, param_text, tracks)
        return result.text, result.warnings
    inits = await asyncio.to_thread(dash.init_segments, body, url)
    tracks = await init_tracks(services, job, inits)
    result = await asyncio.to_thread(dash.rewrite, body, url, name, param_text, tracks)
    text = result.text
    for n, need in enumerate(result.needs_file_plan):
        if n < MAX_FILE_PLANS:
            text = await with_file_index(services, job, text, need, name)
            continue
        log.warning(f"audio-only: {job.url}: Representation {need.representation} dropped: more than {MAX_FILE_PLANS} "
                    f"muxed files in one MPD are not planned")
        text = await asyncio.to_thread(dash.drop_representation, text, need.period, need.representation)
    return text, result.warnings


async def init_tracks(services: Services, job: Job, inits: list[InitSegment]) -> dict[InitSegment, tuple[int, ...]]:
    """The audio track IDs of each init segment: read from the origin, or remembered while the origin
    says (a 304 to our conditional request) that the init is the one they were read from."""
    cache = services.inits
    found = {}
    reading = asyncio.Semaphore(INITS_AT_ONCE)  # (each read holds up to INIT_MOST bytes)

    async def one(init: InitSegment) -> None:
        known = cache.get(init)
        try:
            async with reading:
                data, conditions = await asyncio.wait_for(read_init(services, job, init, known), INIT_TIMEOUT)
            ids = known[0] if data is None else await asyncio.to_thread(audio_track_ids, data)
        except (*FETCH_ERRORS, asyncio.TimeoutError, extractor.ExtractError, Refusal) as e:
            why = e.text.strip() if isinstance(e, Refusal) else describe(e) if isinstance(e, FETCH_ERRORS) else str(e)
            log.warning(f"audio-only: {job.url}: the init segment {init.url} could not be read: {why}")
            return
        cache.put(init, ids, conditions)
        found[init] = ids

    await asyncio.gather(*(one(init) for init in inits[:MAX_INITS]))
    return found


async def read_init(services: Services, job: Job, init: InitSegment, known) -> tuple[bytes | None, tuple]:
    """(the init's bytes, or None when the origin says the one `known` was read from still holds; the
    conditional headers that will ask so next time). At most INIT_MOST bytes of it are kept: the bytes
    an origin that ignores the Range sends before the init are dropped as they come, not held."""
    headers = list(known[1]) if known else []
    if init.first is not None:
        headers.append(("Range", f"bytes={init.first}-{'' if init.last is None else init.last}"))
    response = await services.origin.open(target_for(job, init.url), headers=headers)
    try:
        if response.status_code == 304 and known:
            return None, known[1]
        if response.status_code not in (200, 206):
            raise extractor.UnsupportedInput(f"the origin answered {response.status_code}")
        validator = response.headers.get("etag") or response.headers.get("last-modified")
        conditions = ((("If-None-Match", validator),) if validator.startswith(('"', "W/")) else
                      (("If-Modified-Since", validator),)) if validator else ()
        skip = init.first if init.first is not None and response.status_code == 200 else 0  # the range ignored
        most = min(job.settings.max_header, INIT_MOST)
        if init.last is not None:
            most = min(most, init.last + 1 - (init.first or 0))
        data = bytearray()
        try:
            async for piece in response.aiter_raw():
                if skip:
                    cut = min(skip, len(piece))
                    piece, skip = piece[cut:], skip - cut
                data += piece[: most + 1 - len(data)]
                if len(data) >= most:
                    break  # (an init is the ftyp and moov of a fragmented file: kilobytes)
        except FETCH_ERRORS as e:
            raise Refusal(502, f"the origin's answer ended early: {describe(e)}\n", served="manifest") from None
        if len(data) > most and init.last is None:
            raise extractor.LimitExceeded(f"the init segment is larger than {most} bytes")
    finally:
        await response.aclose()
    return bytes(data[:most]), conditions


async def with_file_index(services: Services, job: Job, text: str, need: dash.NeedsFilePlan, name: str) -> str:
    """A SegmentBase Representation's ranges set to our audio-only file's, from the plan a request for
    that file uses; the Representation dropped when there is none (a streamed file has no index)."""
    _, file_url = split_param(need.url, name)
    if not job.settings.file:
        why = "audio-only files are streamed here (audio_only_origin_ranges off, or audio_only_compat=cdn)"
    else:
        file_job = Job(target_for(job, file_url), "GET", file_url, record.FlowRecord(), job.settings, "file")
        why = "it cannot be served as a file (the origin gives no ranges with a validator)"
        try:
            found = await file_source.audio_file(services, file_job)
        except (*FETCH_ERRORS, extractor.ExtractError) as e:
            found, why = None, describe(e) if isinstance(e, FETCH_ERRORS) else str(e)
        if isinstance(found, httpx.Response):
            why = f"the origin answered {found.status_code} without ranges"
            await found.aclose()
        elif isinstance(found, AudioFile):
            if found.plan.index_range is not None:
                first, last = found.plan.index_range
                return await asyncio.to_thread(dash.set_index_ranges, text, need.period, need.representation,
                                               len(found.plan.head), first, last)
            why = "the file has no sidx"
    log.warning(f"audio-only: {job.url}: Representation {need.representation} dropped: its audio-only file's "
                f"index ranges are not known ({why})")
    return await asyncio.to_thread(dash.drop_representation, text, need.period, need.representation)


def target_for(job: Job, url: str) -> Target:
    """The origin's target for a URL a playlist names: the playlist's own origin, or another one."""
    base, new = urllib.parse.urlsplit(job.url), urllib.parse.urlsplit(url)
    path = (new.path or "/") + (f"?{new.query}" if new.query else "")
    if (new.scheme, new.netloc) == (base.scheme, base.netloc):
        return job.target._replace(path=path)
    port = new.port or (443 if new.scheme == "https" else 80)
    sni = new.hostname if new.scheme == "https" else None
    route = Route(new.scheme, new.hostname or "", port, job.target.route.proxy, sni)
    # The client's credentials are for the playlist's origin, never sent to another.
    headers = tuple((k, v) for k, v in job.target.headers if k.lower() not in ("host", "cookie", "authorization"))
    return Target(route, path, (*headers, ("Host", new.netloc)), sni)
