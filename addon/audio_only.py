"""mitmproxy addon: an audio-only edge. `video.mp4?ali_audio_only=1` streams back only metadata and audio.

    mitmdump -s addon/audio_only.py [--mode reverse:http://origin] [--set audio_only_domains=*.example.com]

This file is what `mitmdump -s` loads: the options, and hooks that call the rooms next to it.

    request_rules.py   what the client asked for: the parameter, domains, seek parameters (requestheaders)
    response.py        what an answer is made of (type, headers), and its mitmproxy side (responseheaders)
    file_server.py     our server on 127.0.0.1 that answers every audio request: as a file, streamed, or relayed
    stream.py          a streamed answer: the core fed as the origin's body arrives, planning in a worker
    origin_client.py   HTTP to the origin on httpx (whole files, and Range requests)
    budgets.py         metadata memory and spool disk across responses
    internals.py       every reach into mitmproxy's private parts, with why and since when
    marks.py           marks and comments on flows for mitmweb and the console, a summary at the end
    warm_up.py         what is done once at start, so that the first client does not wait for it
    contentview.py     a content view of MP4 and FLV bodies (mitmproxy 11 and 12 APIs)
    cdn_config.py      the CDN API's domain configuration (audio_only_config)

The extraction itself is the sans-IO core in `extractor/`.
"""

from __future__ import annotations

import collections.abc
import logging
import sys
from pathlib import Path

from mitmproxy import ctx, http

# The rooms beside this file, and the core, come from this file's own checkout: first on the path, so
# that another copy installed in the environment is not mixed in.
CHECKOUT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [CHECKOUT]:
    sys.path.insert(0, CHECKOUT)
from addon import contentview, internals  # noqa: E402
from addon.file_server import FileServer, Settings  # noqa: E402
from addon.marks import Marks  # noqa: E402
from addon.request_rules import RequestRules  # noqa: E402
from addon.response import ResponseRules, parse_size  # noqa: E402
from addon.warm_up import cool_down, warm_up  # noqa: E402

log = logging.getLogger("addon.audio_only")


class AudioOnly:
    def __init__(self):
        self.requests = RequestRules()
        self.responses = ResponseRules()
        self.marks = Marks()
        self.files = FileServer(self.responses.origin)
        self.range_gap = 16 << 10
        self.view = None  # the content view, while loaded

    def load(self, loader):
        self.view = contentview.register()
        loader.add_option(
            "audio_only_param", str, "ali_audio_only",
            "Query parameter that asks for audio only; only the value 1 turns it on.",
        )
        loader.add_option(
            "audio_only_domains", collections.abc.Sequence[str], ["*"],
            "Host patterns (the host the client asked for, e.g. *.example.com) on which audio "
            "extraction is on. May be passed multiple times.",
        )
        loader.add_option(
            "audio_only_max_header", str, "64m",
            "Most metadata (MP4 moov, FLV script tag) one response may hold in memory, e.g. 64m.",
        )
        loader.add_option(
            "audio_only_config", str, "",
            "A JSON file in the CDN API's domain configuration shape (DomainNames, Functions with "
            "ali_video_split and video_seek); when set it decides per domain instead of audio_only_domains. "
            "Re-read when it changes.",
        )
        loader.add_option(
            "audio_only_compat", str, "extended",
            "extended: everything this product supports; cdn: exactly the CDN's documented limits (no MP4 "
            "with the moov at the end or a 64-bit mdat header, no Range requests).",
            choices=["extended", "cdn"],
        )
        loader.add_option(
            "audio_only_seek", bool, True,
            "Seeking with audio only (the CDN's video_seek): start/end parameters cut the output.",
        )
        loader.add_option(
            "audio_only_plain_seek", bool, False,
            "The CDN's plain video seeking too: start/end on requests without the audio parameter cut the "
            "video itself (MP4 from the keyframe at or before start). Off unless asked, since start/end "
            "are common parameter names; a domain's video_seek in audio_only_config turns it on as well.",
        )
        loader.add_option(
            "audio_only_flv_seek_by_time", bool, False,
            "FLV start/end are seconds (on) or byte offsets (off, the CDN's default).",
        )
        for name, default in (("mp4_seek_start", "start"), ("mp4_seek_end", "end"),
                              ("flv_seek_start", "start"), ("flv_seek_end", "end")):
            loader.add_option(f"audio_only_{name}", str, default, f"Query parameter name of the {name.replace('_', ' ')}.")
        loader.add_option(
            "audio_only_origin_host", str, "origin",
            "Reverse mode: the Host the origin gets, 'origin' (its own address, mitmproxy's default) or "
            "'client' (the Host the client sent). Domain patterns need the client's Host, so the addon "
            "keeps it (keep_host_header) and applies this choice itself.",
            choices=["origin", "client"],
        )
        loader.add_option(
            "audio_only_spool_dir", str, "",
            "Folder for MP4 media data that arrives before its moov (moov at the end); empty: the "
            "system's temporary folder. Spool files have no name on disk and vanish with the response.",
        )
        loader.add_option(
            "audio_only_max_spool", str, "4g",
            "Most media data one response may spool while waiting for a moov at the end, e.g. 4g; 0 refuses such files.",
        )
        loader.add_option(
            "audio_only_metadata_budget", str, "1g",
            "Most memory the metadata of all responses together may take (moovs, script tags and their "
            "plans, counted as 3 times their size), e.g. 1g: past it a new extraction is refused with a 503 "
            "and Retry-After, or ends uncleanly if its headers have gone out.",
        )
        loader.add_option(
            "audio_only_spool_budget", str, "16g",
            "Most disk the spools of all responses together may take, e.g. 16g: past it a response is "
            "refused as for audio_only_metadata_budget.",
        )
        loader.add_option(
            "audio_only_fetch_moov", bool, True,
            "For an MP4 whose moov comes after its media data, fetch the moov from the origin with a "
            "Range request so audio starts at once (else it starts when the whole file has arrived).",
        )
        loader.add_option(
            "audio_only_origin_timeout", int, 30,
            "End an extracted response uncleanly when the origin sends nothing for this many seconds "
            "(0: wait as long as mitmproxy does).",
        )
        loader.add_option(
            "audio_only_metadata_deadline", int, 60,
            "End an extracted response uncleanly when the metadata held before output (an MP4's moov or "
            "a fragment's moof, an FLV script tag) takes longer than this many seconds to arrive once "
            "begun: an origin that trickles it would hold the response open forever (0: no deadline).",
        )
        loader.add_option(
            "audio_only_origin_ranges", bool, True,
            "extended mode: serve an audio-only MP4 as a file (Content-Length, Range requests, conditionals) "
            "when its origin serves ranges with a validator, reading only the moov and the audio from it; "
            "off: every response is streamed.",
        )
        loader.add_option(
            "audio_only_file_cache", str, "64m",
            "Memory for planned audio-only files (new moov and chunk map) kept between requests, e.g. 64m: "
            "a player's range requests read the moov from the origin once per file version.",
        )
        loader.add_option(
            "audio_only_range_gap", str, "16k",
            "Audio chunks closer than this in the origin's file are fetched as one range, the bytes between "
            "them read and dropped (up to 200 ranges go in one request where the origin answers several; "
            "an origin that answers one range per request gets at least 256k).",
        )
        loader.add_option(
            "audio_only_stream_passthrough", bool, True,
            "Stream media (and bodies above 1 MiB) that are not extracted instead of buffering them.",
        )
        # Here as well as in `running`: mitmproxy opens its ports before the running hooks, so a client
        # that came at once waited for the warm-up (64 ms on 2 cores); a script is loaded before that,
        # in the running loop (a test harness may have none: then nothing is warmed up).
        warm_up("load")

    def configure(self, updated):
        self.requests.configure(updated)
        self.responses.configure(updated)
        if "audio_only_file_cache" in updated:
            self.files.cache.limit = parse_size("audio_only_file_cache", minimum=0)
        if "audio_only_metadata_budget" in updated:
            self.files.budgets.metadata_limit = parse_size("audio_only_metadata_budget", minimum=1 << 20)
        if "audio_only_spool_budget" in updated:
            self.files.budgets.spool_limit = parse_size("audio_only_spool_budget", minimum=0)
        if "audio_only_range_gap" in updated:
            self.range_gap = parse_size("audio_only_range_gap", minimum=0)

    def running(self):
        # Hooks stay synchronous: mitmproxy calls running and done without awaiting when it reloads
        # an edited script, and refuses coroutines there.
        self.files.start()
        if broken := internals.reaches_that_broke():
            log.warning(f"audio-only: this mitmproxy lacks {', '.join(broken)}: an HTTP/1.0 client may take a failed "
                        f"body for a whole one (see addon/internals.py)")
        if not internals.read_origin_bodies_in_bigger_pieces():
            log.warning("audio-only: this httpcore lacks AsyncHTTP11Connection.READ_NUM_BYTES: origin bodies are read "
                        "64 KiB at a time, which costs more CPU (see addon/internals.py)")
        warm_up("running")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.requests.decide(flow)
        o = ctx.options
        cdn = o.audio_only_compat == "cdn"
        self.files.route(flow, Settings(
            file=o.audio_only_origin_ranges and not cdn, cdn=cdn, max_header=self.responses.max_header,
            max_spool=self.responses.max_spool, spool_dir=o.audio_only_spool_dir or None, fetch_moov=o.audio_only_fetch_moov,
            origin_timeout=o.audio_only_origin_timeout, metadata_deadline=o.audio_only_metadata_deadline, gap=self.range_gap))

    def responseheaders(self, flow: http.HTTPFlow):
        return self.responses.decide(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self.marks.response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.responses.failed(flow)
        self.marks.error(flow)

    def done(self):
        if self.view is not None:
            contentview.unregister(self.view)
            self.view = None
        self.marks.done()
        cool_down()
        if not internals.mitmproxy_is_stopping():
            self.files.retire()  # a reload of this script: what is in flight runs to its end
            return
        self.files.stop()


addons = [AudioOnly()]
