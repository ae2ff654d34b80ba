"""The origin's answer as it is, when there is nothing to extract (a 404, HTML, a 304, a gzip body...)."""

from __future__ import annotations

import logging

import httpx
import tornado.iostream

from addon import http_rules
from addon.origin_version import FETCH_ERRORS, describe
from addon.server.job import SERVED_HEADER, Job
from addon.server.sink import Sink

log = logging.getLogger("addon.audio_only")


async def relay(sink: Sink, job: Job, response: httpx.Response) -> None:
    try:
        sink.set_status(response.status_code, response.reason_phrase or None)
        for name, value in response.headers.multi_items():
            if name.lower() not in http_rules.HOP_BY_HOP:
                sink.add_header(name, value)
        sink.set_header(SERVED_HEADER, "relay")
        if job.method == "HEAD" or response.status_code in (204, 304):
            return
        async for piece in response.aiter_raw():
            sink.write(piece)
            await sink.flush()
    except tornado.iostream.StreamClosedError:
        pass  # the client left
    except FETCH_ERRORS as e:
        log.warning(f"audio-only: {job.url}: the origin's answer ended early: {describe(e)}")
        sink.cut()
