"""What a request routed to our server carries, what it is answered with, and what an answer may use.

The router (addon/routing.py) makes a Job of each request that asks for audio and names it in the
request it sends us (JOB_HEADER); our handler takes the Job back when the request arrives and answers
it with the Job's settings (the options as they were when it arrived) and the server's Services.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import extractor
from addon.budgets import Budgets
from addon.formats import Format
from addon.origin_client import OriginClient
from addon.origin_target import Target
from addon.origin_version import OriginVersion
from addon.planner import Planner
from addon.record import FlowRecord, SeekParams
from addon.server.output_cache import OutputCache
from addon.server.plan_cache import InitCache, PlanCache

JOB_HEADER = "x-audio-only-job"  # request header naming a routed flow's job at our server
SERVED_HEADER = "x-audio-only-served"  # our server's answer says how it answered: file, stream or relay
RETRY_AFTER = 5  # seconds a client refused by a budget is asked to wait


@dataclass(frozen=True)
class Settings:
    """The options a routed request is answered with (addon/options.py makes them at each configure)."""
    file: bool  # serve a "file" format as a file where the origin allows (extended mode, audio_only_origin_ranges)
    cdn: bool  # audio_only_compat=cdn
    max_header: int
    max_spool: int
    spool_dir: str | None
    fetch_moov: bool
    origin_timeout: float  # 0: none
    metadata_deadline: float  # 0: none
    gap: int  # audio_only_range_gap


class KnownPlan(NamedTuple):
    """A moov planned before the answer (the seek check), for the stream to use if its moov is the same."""
    digest: bytes  # planner.moov_digest of the moov
    moov_at: int  # where it lies (saio offsets depend on it)
    plan: extractor.Plan


@dataclass
class Job:
    """A request routed to us: where the file is, what was asked, how to answer it."""
    target: Target
    method: str  # GET or HEAD
    url: str  # as the client asked (for the log)
    record: FlowRecord  # the flow's record: what was served is written back there
    settings: Settings
    answer: str = "stream"  # the answer kind tried first (formats.Format.answer, server/app.py's ANSWERS)
    seek: SeekParams | None = None  # the raw cut parameters, None: seeking off
    plain: bool = False  # the CDN's plain video seeking: cut, but keep the video
    version: OriginVersion | None = None  # of the origin's file, once its answer is in
    known_plan: KnownPlan | None = None
    made: float = field(default_factory=time.monotonic)
    latency: float = 0.0  # seconds the origin took to answer our probe (the headers of a 16-byte range)
    cuts: dict = field(default_factory=dict)  # cut() by format name

    def cut(self, fmt: Format) -> extractor.SeekRange | None:
        """The part of the file the request asks for in this format (None: all of it), read from its
        parameters once a format: seconds, or for FLV bytes or seconds as the host says."""
        if fmt.name not in self.cuts:
            cut = None
            if self.seek:
                start, end = (self.seek["values"].get(key) for key in fmt.seek_keys)
                seconds = self.seek["by_time"] if fmt.seek_in_seconds is None else fmt.seek_in_seconds
                cut = extractor.parse_range(start, end, seconds)
            self.cuts[fmt.name] = cut
        return self.cuts[fmt.name]


@dataclass
class Services:
    """What every answer of our server shares: the origin, the planner, the budgets, the plan and output caches,
    and what has been learnt of origins (route -> the ranges it answers in one request, 1: one a request)."""
    origin: OriginClient
    planner: Planner = field(default_factory=Planner)
    budgets: Budgets = field(default_factory=Budgets)
    cache: PlanCache = field(default_factory=lambda: PlanCache(64 << 20))
    outputs: OutputCache = field(default_factory=OutputCache)  # (its limit set at configure: Limits)
    multirange: dict = field(default_factory=dict)
    speeds: dict = field(default_factory=dict)  # route -> origin_speed.OriginSpeed, as last measured
    inits: InitCache = field(default_factory=InitCache)  # init segments' audio track IDs (manifest_answer.py)
