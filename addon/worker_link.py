"""What crosses between mitmdump and a worker process (addon/workers.py, addon/server/worker_main.py):
JSON lines on the worker's control connection (a socketpair, the worker's end its descriptor).

mitmdump to a worker:
    {"settings": {...}}          at start and at each configure: the origin pools' options
                                 (OriginOptions), the limits shared by all answers (Limits), the log level
    {"job": token, ...}          a routed request's Job, before mitmproxy connects to the worker's port
    {"retire": true}             fewer workers wanted: take no new request, end after the last answer
a worker to mitmdump:
    {"ready": port, "pid": pid}  its server listens
    {"log": level, "name": logger, "text": text}  a log record, re-emitted in mitmdump's log as it is
    {"record": token, "fields": {...}}  the job's record once its answer has ended (outcome, why, bytes...)

Why a control connection and not the job in the request's headers: the job's token is the only thing
the request carries, so no other local process can have a worker fetch what it likes; and the
worker's log and records come back on it in order, log lines before the record that ends a job.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import NamedTuple

from addon.origin_client import OriginOptions
from addon.origin_target import Route, Target
from addon.server.job import Job, Services, Settings

LINE_LIMIT = 64 << 20  # bytes of one message at most (a job carries the client's headers)


class Limits(NamedTuple):
    """The limits shared by all answers (options.limits), in bytes: each worker gets them whole; the
    budgets are counted for the edge (budgets.SharedCounts), the plan cache is each worker's own, the
    output cache each worker's share of the edge's."""
    file_cache: int
    metadata_budget: int
    spool_budget: int
    output_cache: int = 0

    def apply(self, services: Services) -> None:
        services.cache.limit = self.file_cache
        services.outputs.limit = self.output_cache
        services.outputs.shrink()
        services.budgets.metadata_limit = self.metadata_budget
        services.budgets.spool_limit = self.spool_budget


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict:
    return json.loads(line)


def settings_message(origin: OriginOptions, limits: Limits, log_level: int) -> dict:
    return {"settings": {"origin": origin._asdict(), "limits": limits._asdict(), "log_level": log_level}}


def read_settings(message: dict) -> tuple[OriginOptions, Limits, int]:
    s = message["settings"]
    return OriginOptions(**s["origin"]), Limits(**s["limits"]), s["log_level"]


def job_message(token: str, job: Job) -> dict:
    """The parts of a job a worker answers with (the record without the client's target: mitmdump's)."""
    t = job.target
    record = {k: v for k, v in job.record.items() if k != "client"}
    return {"job": token, "target": [list(t.route), t.path, [list(h) for h in t.headers], t.sni],
            "method": job.method, "url": job.url, "record": record, "settings": asdict(job.settings),
            "answer": job.answer, "seek": job.seek, "plain": job.plain}


def job_of(message: dict) -> Job:
    route, path, headers, sni = message["target"]
    target = Target(Route(*route), path, tuple(tuple(h) for h in headers), sni)
    return Job(target, message["method"], message["url"], message["record"], Settings(**message["settings"]),
               message["answer"], seek=message["seek"], plain=message["plain"])


async def lines(reader: asyncio.StreamReader):
    """The messages read, until the other end closes."""
    while True:
        try:
            line = await reader.readline()
        except (ConnectionError, ValueError):  # (ValueError: a line past LINE_LIMIT, which we never send)
            return
        if not line.endswith(b"\n"):
            return
        yield decode(line)
