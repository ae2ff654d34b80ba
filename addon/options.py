"""The addon's options, declared once as data, and the settings made of them at each configure.

`OPTIONS` is what `mitmdump --options` lists (declare() adds them at load). At each configure they are
read once and checked (an OptionsError names the option): `request_settings()` makes what the request
side decides with, `settings()` the Settings every routed request is answered with, and `limit()` sets
the limits shared across responses. Nothing reads the options per flow.
"""

from __future__ import annotations

import collections.abc
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, NamedTuple

from mitmproxy import exceptions
from mitmproxy.utils import human

from addon.cdn_config import HOST_PATTERN
from addon.formats import SEEK_KEYS
from addon.server.job import Services, Settings
from addon.worker_link import Limits
from extractor.errors import human_size


# audio_only_workers: a worker process a core, where there are worker processes (POSIX: descriptors handed
# to them, fcntl locks); elsewhere our server answers inside mitmdump's process.
DEFAULT_WORKERS = (os.cpu_count() or 1) if os.name == "posix" else 0


class Option(NamedTuple):
    name: str
    type: Any
    default: Any
    help: str
    choices: list[str] | None = None


OPTIONS = (
    Option(
        "audio_only_param", str, "ali_audio_only",
        "Query parameter that asks for audio only; only the value 1 turns it on.",
    ),
    Option(
        "audio_only_domains", collections.abc.Sequence[str], ["*"],
        "Host patterns (the host the client asked for, e.g. *.example.com) on which audio "
        "extraction is on. May be passed multiple times.",
    ),
    Option(
        "audio_only_max_header", str, "64m",
        "Most metadata (MP4 moov, FLV script tag) one response may hold in memory, e.g. 64m.",
    ),
    Option(
        "audio_only_config", str, "",
        "A JSON file in the CDN API's domain configuration shape (DomainNames, Functions with "
        "ali_video_split and video_seek); when set it decides per domain instead of audio_only_domains. "
        "Re-read when it changes.",
    ),
    Option(
        "audio_only_compat", str, "extended",
        "extended: everything this product supports; cdn: exactly the CDN's documented limits (no MP4 "
        "with the moov at the end or a 64-bit mdat header, no Range requests).",
        choices=["extended", "cdn"],
    ),
    Option(
        "audio_only_seek", bool, True,
        "Seeking with audio only (the CDN's video_seek): start/end parameters cut the output.",
    ),
    Option(
        "audio_only_plain_seek", bool, False,
        "The CDN's plain video seeking too: start/end on requests without the audio parameter cut the "
        "video itself (MP4 from the keyframe at or before start). Off unless asked, since start/end "
        "are common parameter names; a domain's video_seek in audio_only_config turns it on as well.",
    ),
    Option(
        "audio_only_flv_seek_by_time", bool, False,
        "FLV start/end are seconds (on) or byte offsets (off, the CDN's default).",
    ),
    *(Option(f"audio_only_{key}", str, key.rpartition("_")[2], f"Query parameter name of the {key.replace('_', ' ')}.")
      for key in SEEK_KEYS),
    Option(
        "audio_only_origin_host", str, "origin",
        "Reverse mode: the Host the origin gets, 'origin' (its own address, mitmproxy's default) or "
        "'client' (the Host the client sent). Domain patterns need the client's Host, so the addon "
        "keeps it (keep_host_header) and applies this choice itself.",
        choices=["origin", "client"],
    ),
    Option(
        "audio_only_spool_dir", str, "",
        "Folder for MP4 media data that arrives before its moov (moov at the end); empty: the "
        "system's temporary folder. Spool files have no name on disk and vanish with the response.",
    ),
    Option(
        "audio_only_max_spool", str, "4g",
        "Most media data one response may spool while waiting for a moov at the end, e.g. 4g; 0 refuses such files.",
    ),
    Option(
        "audio_only_metadata_budget", str, "1g",
        "Most memory the metadata of all responses together may take (moovs, script tags and their "
        "plans, counted as 3 times their size), e.g. 1g: past it a new extraction is refused with a 503 "
        "and Retry-After, or ends uncleanly if its headers have gone out.",
    ),
    Option(
        "audio_only_spool_budget", str, "16g",
        "Most disk the spools of all responses together may take, e.g. 16g: past it a response is "
        "refused as for audio_only_metadata_budget.",
    ),
    Option(
        "audio_only_fetch_moov", bool, True,
        "For an MP4 whose moov comes after its media data, fetch the moov from the origin with a "
        "Range request so audio starts at once (else it starts when the whole file has arrived).",
    ),
    Option(
        "audio_only_origin_timeout", int, 30,
        "End an extracted response uncleanly when the origin sends nothing for this many seconds "
        "(0: wait as long as mitmproxy does).",
    ),
    Option(
        "audio_only_metadata_deadline", int, 60,
        "End an extracted response uncleanly when the metadata held before output (an MP4's moov or "
        "a fragment's moof, an FLV script tag) takes longer than this many seconds to arrive once "
        "begun: an origin that trickles it would hold the response open forever (0: no deadline).",
    ),
    Option(
        "audio_only_origin_ranges", bool, True,
        "extended mode: serve an audio-only MP4 as a file (Content-Length, Range requests, conditionals) "
        "when its origin serves ranges with a validator, reading only the moov and the audio from it; "
        "off: every response is streamed.",
    ),
    Option(
        "audio_only_file_cache", str, "64m",
        "Memory for planned audio-only files (new moov and chunk map) kept between requests, e.g. 64m: "
        "a player's range requests read the moov from the origin once per file version.",
    ),
    Option(
        "audio_only_output_cache", str, "256m",
        "Space in the spool folder (disk, or memory on a tmpfs) for audio-only MP4 files as sent, e.g. "
        "256m for the edge, split among the workers (mitmdump's own server, answering while no worker "
        "does, has a share too); the files vanish with the process. A file answer that sent the whole "
        "file keeps it, and later requests for that version (the origin is still "
        "asked which version it has, with the client's headers) are answered from it instead of the "
        "origin's ranges. Only files named by a strong ETag; never an answer the origin marks no-store "
        "or private. 0: none.",
    ),
    Option(
        "audio_only_range_gap", str, "16k",
        "Audio chunks closer than this in the origin's file are fetched as one range, the bytes between "
        "them read and dropped (up to 200 ranges go in one request where the origin answers several; "
        "an origin that answers one range per request gets at least 256k).",
    ),
    Option(
        "audio_only_workers", int, DEFAULT_WORKERS,
        "Worker processes that answer the audio-only requests (default: the machine's cores, "
        f"{os.cpu_count()} here), each with its own origin pools, planner and audio_only_file_cache; a "
        "file's requests all go to one worker (chosen when it is first asked for: by a hash of its URL "
        "unless that worker is busier than another by more than one answer). 0: answered inside "
        "mitmdump's own process. The budgets (audio_only_metadata_budget, audio_only_spool_budget) hold for all "
        "workers together, counted in shared memory.",
    ),
    Option(
        "audio_only_stream_passthrough", bool, True,
        "Stream media (and bodies above 1 MiB) that are not extracted instead of buffering them.",
    ),
)


@dataclass(frozen=True)
class RequestSettings:
    """What the request side decides with (request_rules.py)."""
    param: str  # audio_only_param
    domains: tuple[str, ...]  # audio_only_domains, lowercase patterns
    cdn: bool  # audio_only_compat=cdn
    seek: bool  # audio_only_seek
    plain_seek: bool  # audio_only_plain_seek
    flv_seek_by_time: bool
    seek_names: tuple[tuple[str, str], ...]  # (key of formats.SEEK_KEYS, the parameter's name)
    origin_host: str  # audio_only_origin_host
    stream_passthrough: bool  # audio_only_stream_passthrough (the router's, for what is not ours)


def declare(loader) -> None:
    for option in OPTIONS:
        loader.add_option(option.name, option.type, option.default, option.help, choices=option.choices)


def size(options, name: str, minimum: int) -> int:
    """A size option's value in bytes (`64m`), or OptionsError naming the option."""
    value = getattr(options, name)
    try:
        n = human.parse_size(value) or 0
    except ValueError as e:
        raise exceptions.OptionsError(f"{name}: {e}") from None
    if n < minimum:
        raise exceptions.OptionsError(f"{name}: {value!r} is below {human_size(minimum)}")
    return n


def request_settings(options) -> RequestSettings:
    if not options.audio_only_param:
        raise exceptions.OptionsError("audio_only_param must not be empty")
    domains = tuple(p.strip().lower() for p in options.audio_only_domains)
    for p in domains:
        if not HOST_PATTERN.match(p):
            raise exceptions.OptionsError(f"audio_only_domains: {p!r} is not a host pattern")
    return RequestSettings(
        param=options.audio_only_param, domains=domains, cdn=options.audio_only_compat == "cdn",
        seek=options.audio_only_seek, plain_seek=options.audio_only_plain_seek,
        flv_seek_by_time=options.audio_only_flv_seek_by_time,
        seek_names=tuple((key, getattr(options, f"audio_only_{key}")) for key in SEEK_KEYS),
        origin_host=options.audio_only_origin_host, stream_passthrough=options.audio_only_stream_passthrough)


def settings(options, updated) -> Settings:
    """The Settings of the options as they are now (OptionsError for a value that cannot be)."""
    for name in ("audio_only_origin_timeout", "audio_only_metadata_deadline"):
        if getattr(options, name) < 0:
            raise exceptions.OptionsError(f"{name} must be 0 (off) or a number of seconds")
    folder = options.audio_only_spool_dir
    if "audio_only_spool_dir" in updated and folder and not Path(folder).is_dir():
        raise exceptions.OptionsError(f"audio_only_spool_dir: {folder!r} is not a folder")
    cdn = options.audio_only_compat == "cdn"
    return Settings(
        file=options.audio_only_origin_ranges and not cdn, cdn=cdn,
        max_header=size(options, "audio_only_max_header", minimum=1024),
        max_spool=size(options, "audio_only_max_spool", minimum=0),
        spool_dir=folder or None, fetch_moov=options.audio_only_fetch_moov,
        origin_timeout=options.audio_only_origin_timeout, metadata_deadline=options.audio_only_metadata_deadline,
        gap=size(options, "audio_only_range_gap", minimum=0))


MAX_WORKERS = 256  # (budgets.SLOTS: one slot each, and mitmdump's)


def limits(options) -> Limits:
    """The limits shared by all responses: the plan cache, the metadata and spool budgets."""
    return Limits(file_cache=size(options, "audio_only_file_cache", minimum=0),
                  metadata_budget=size(options, "audio_only_metadata_budget", minimum=1 << 20),
                  spool_budget=size(options, "audio_only_spool_budget", minimum=0),
                  # (split among the worker processes: each keeps the files placed on it)
                  output_cache=size(options, "audio_only_output_cache", minimum=0) // max(1, workers(options)))


def limit(services: Services, options) -> None:
    limits(options).apply(services)


def workers(options) -> int:
    n = options.audio_only_workers
    if not 0 <= n <= MAX_WORKERS:
        raise exceptions.OptionsError(f"audio_only_workers: {n} is not 0 (none) to {MAX_WORKERS}")
    if n and os.name != "posix":  # (descriptors handed to the workers, fcntl locks: addon/workers.py)
        raise exceptions.OptionsError("audio_only_workers: worker processes need a POSIX system (Linux, macOS)")
    return n
