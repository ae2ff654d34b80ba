"""A file answer (RFC 9110): an audio-only MP4 with a length, ranges and conditionals.

200 with Content-Length, Accept-Ranges, our ETag (derived from the origin's validator and the cut),
the origin's Last-Modified and its other end-to-end headers (CORS, caching, cookies); 304 when the
client's conditionals say it has this version (http_rules.not_modified: If-None-Match, else
If-Modified-Since); 206 for one range (`a-b`, `a-`, `-n`) with Content-Range; 416 with `bytes */N`
for a range past the end; several ranges get the whole 200; If-Range (our strong ETag, or our exact
date) decides between the range and the whole 200; HEAD gets the headers of the GET and reads no
media data.

The body is the audio of the bytes asked for, from the origin (origin_groups.py), several requests in
flight at once. A file replaced at the origin while a response is in flight ends that response
uncleanly (short of its Content-Length), with a warning; never two versions in one body (as far as
the validator can tell: an origin with only a Last-Modified date cannot tell two versions of one
second and length).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import tornado.iostream

from addon import http_rules, record
from addon.formats import BY_NAME
from addon.origin_version import FETCH_ERRORS, RangeRefused
from addon.server.job import SERVED_HEADER, Job, Services
from addon.server.origin_groups import WINDOW, OriginGroups
from addon.server.output_cache import Reader
from addon.server.plan_cache import AudioFile
from addon.server.sink import Sink

log = logging.getLogger("addon.audio_only")

WINDOW_LEAST = 2  # and at least, while there are more to make
WINDOW_BYTES = 8 << 20  # and the most bytes they may ask for together: the memory of a response
REQUEST_CPU = 0.002  # seconds of our CPU an answer of MULTI_RANGES small ranges takes
SMALL_GROUP = 256 << 10  # audio bytes of a request up to which its transfer is short beside that (body())
MP4 = BY_NAME["mp4"]  # (a file answer is an MP4's: file_source.py)


async def serve(sink: Sink, services: Services, job: Job, file: AudioFile) -> None:
    size = file.plan.size
    headers = sink.request_headers  # the client's, as it sent them
    sink.set_header("ETag", file.etag)  # (first: not_modified compares with it)
    unchanged = sink.not_modified(file.last_modified)
    for name, value in file.headers:
        if not unchanged or name.lower() in http_rules.KEPT_IN_304:
            sink.add_header(name, value)
    sink.set_header("Content-Type", MP4.output_type)
    sink.set_header("Accept-Ranges", "bytes")
    if file.last_modified:
        sink.set_header("Last-Modified", file.last_modified)
    sink.set_header(SERVED_HEADER, "file")
    if unchanged:
        sink.set_status(304)
        return
    # Range counts for GET only (RFC 9110, 14.2): a HEAD gets the headers of the whole file.
    wanted = http_rules.parse_range(headers["Range"], size) if "Range" in headers and job.method == "GET" else None
    if wanted is not None and "If-Range" in headers and \
            not http_rules.if_range_holds(headers["If-Range"], file.etag, file.last_modified):
        wanted = None  # another version than the client has: the whole file
    if wanted == "unsatisfiable":
        sink.set_status(416)
        sink.set_header("Content-Range", f"bytes */{size}")
        sink.set_header("Content-Length", "0")
        return
    first, last = wanted if wanted else (0, size - 1)
    if wanted:
        sink.set_status(206)
        sink.set_header("Content-Range", f"bytes {first}-{last}/{size}")
    sink.set_header("Content-Length", str(last + 1 - first))
    if job.method == "HEAD" or size == 0:
        return
    sent = 0
    part = f"bytes {first}-{last}/{size}" if wanted else f"{size} bytes"
    if (kept := services.outputs.get(file.key) if file.key and file.storable else None) is not None:
        return await serve_kept(sink, job, file, kept, first, last, part)
    groups = OriginGroups(services, job, file)
    # The whole output going out: kept for the next answers (output_cache.py), once all of it has gone.
    whole = file.key is not None and file.storable and (first, last) == (0, size - 1)
    filling = services.outputs.filling(file.key, size, job.settings.spool_dir) if whole else None
    try:
        async for piece in body(groups, first, last):
            sink.write(piece)
            if filling is not None:
                await filling.write(piece)
            sent += len(piece)
            await sink.flush()
        if filling is not None:
            await filling.commit()
            filling = None
    except tornado.iostream.StreamClosedError:  # an OSError too: before the origin's errors
        # The client left (a player seeking elsewhere does so all the time).
        log.info(f"audio-only: {job.url} file: {part}: the client left after {sent} bytes")
    except RangeRefused as e:
        log.warning(f"audio-only: {job.url}: response ended uncleanly after {sent} of {last + 1 - first} "
                    f"bytes: {e}")
        sink.cut()
    except FETCH_ERRORS as e:
        log.warning(f"audio-only: {job.url}: response ended uncleanly after {sent} bytes: the origin: {e!r}")
        sink.cut()
    else:
        record.conclude(job.record, record.EXTRACTED, origin_read=groups.read, sent=sent,
                        file_length=file.version.length)
        log.info(f"audio-only: {job.url} file: {part}: {groups.read} bytes read from the origin, {sent} sent")
    finally:
        if filling is not None:
            filling.abandon()


async def serve_kept(sink: Sink, job: Job, file: AudioFile, kept: Reader, first: int, last: int, part: str) -> None:
    """Bytes first..last of the output as an earlier answer sent it (output_cache.py)."""
    sent = 0
    try:
        async for piece in kept.pieces(first, last):
            sink.write(piece)
            sent += len(piece)
            await sink.flush()
    except tornado.iostream.StreamClosedError:
        log.info(f"audio-only: {job.url} file: {part}: the client left after {sent} bytes")
    except OSError as e:
        log.warning(f"audio-only: {job.url}: response ended uncleanly after {sent} bytes: the output cache: {e!r}")
        sink.cut()
    else:
        record.conclude(job.record, record.EXTRACTED, origin_read=0, sent=sent, file_length=file.version.length)
        log.info(f"audio-only: {job.url} file: {part}: from the output cache, {sent} sent")
    finally:
        kept.close()


async def body(groups: OriginGroups, first: int, last: int):
    """Output bytes first..last: head bytes, then the audio from the origin. Several requests are in
    flight at once (their answers held, at most WINDOW_BYTES, until their turn), so that thousands of
    small chunks do not each wait for a round trip; they leave in order.

    How many: of small answers (several ranges a request), enough to cover the origin's latency (its
    answer to this request's probe) while we work on the answers already in, each about REQUEST_CPU:
    from WINDOW_LEAST for an origin nearby up to WINDOW for one far away. Not more: each request more
    in flight costs CPU in httpcore's pool. (Whether the next answer is in when we come to it cannot
    tell: on a busy loop it is often not yet read though the origin sent it long ago.) Bigger answers
    (more than SMALL_GROUP of audio), and an origin that answers one range a request (read in spans
    of up to MAX_REQUEST), take longer to arrive than to work on: there the transfer, at a rate we do
    not know, is what requests in flight cover, and WINDOW go out. The probe's latency may also count
    a connection's handshake, or a wait for a free connection: an origin may look farther than it
    is, never nearer."""
    window: deque[asyncio.Future] = deque()
    job = groups.job
    held, nearby = 0, min(WINDOW, WINDOW_LEAST + int(job.latency / REQUEST_CPU))
    try:
        for kind, value in groups.requests(first, last):
            if kind == "head":  # bytes of our own: after what is in flight (a fragment's moof)
                if not window:
                    yield value
                    continue
                done = asyncio.get_running_loop().create_future()
                done.set_result((value, 0))
                window.append(done)
                continue
            size = value.size
            limit = nearby if groups.most() > 1 and size <= SMALL_GROUP else WINDOW
            while window and (len(window) >= limit or held + size > WINDOW_BYTES):
                piece = await window.popleft()
                held -= piece[1]
                yield piece[0]
            window.append(asyncio.ensure_future(groups.fetch(value.group, size, value.asked)))
            held += size
        while window:
            yield (await window.popleft())[0]
    finally:
        for task in window:
            task.cancel()
