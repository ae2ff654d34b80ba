"""mitmproxy addon: an audio-only edge. `video.mp4?ali_audio_only=1` streams back only metadata and audio.

    mitmdump -s addon/audio_only.py [--mode reverse:http://origin] [--set audio_only_domains=*.example.com]

This file is what `mitmdump -s` loads: the options, and the parts whose hooks mitmproxy calls in turn
(AudioOnly.addons). The path of one request:

    fail_closed.py     requestheaders: the two below in one hook; a request that asked for audio and met
                       an exception is answered 502, never sent to the origin as it is
    request_rules.py   our parameter, the domains, the seek parameters; the flow's record
    routing.py         the request sent to our server with a Job; responseheaders: the
                       flow put back as the client sent it, the answer streamed; error: the reason named
    server/            our server on 127.0.0.1: the answer, as a file, streamed, or relayed
    marks.py           response, error: marks and comments on flows, a summary at the end

and beside them: options.py (the options, the settings made of them), formats.py (the table of
formats), record.py (the flow's record), http_rules.py (validators, ranges, conditionals),
origin_client.py with origin_version.py and multipart.py (HTTP to the origin), planner.py (moovs
planned off the loop), budgets.py, internals.py (every reach into mitmproxy's private parts),
warm_up.py, contentview.py, cdn_config.py, health.py (the health check a load balancer asks), workers.py
with worker_link.py (our server in worker processes, audio_only_workers). The extraction itself is the
sans-IO core in `extractor/`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from mitmproxy import ctx

# The rooms beside this file, and the core, come from this file's own checkout: first on the path, so
# that another copy installed in the environment is not mixed in.
CHECKOUT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [CHECKOUT]:
    sys.path.insert(0, CHECKOUT)
from addon import contentview, internals, options, worker_link, workers  # noqa: E402
from addon.fail_closed import FailClosed  # noqa: E402
from addon.health import Health  # noqa: E402
from addon.marks import Marks  # noqa: E402
from addon.origin_client import OriginClient, OriginOptions  # noqa: E402
from addon.request_rules import RequestRules  # noqa: E402
from addon.routing import AudioRouter  # noqa: E402
from addon.server.app import AudioServer  # noqa: E402
from addon.warm_up import cool_down, warm_up  # noqa: E402

log = logging.getLogger("addon.audio_only")


class AudioOnly:
    def __init__(self):
        self.origin = OriginClient()
        self.server = AudioServer(self.origin)
        # The worker processes outlive a reload of this script (their module is not executed again): the
        # new addon adopts them.
        self.workers = workers.pool()
        self.router = AudioRouter(self.server, self.workers)
        self.requests = RequestRules()
        self.marks = Marks()
        # mitmproxy calls each part's hooks after this one's, in this order (the health check is answered
        # before anything else looks at it; in FailClosed's hook the request rules decide, then the router routes).
        self.addons = [Health(self.server, self.workers), self.requests, FailClosed(self.requests, self.router),
                       self.router, self.server, self.origin, self.marks]
        self.view = None  # the content view, while loaded

    def load(self, loader):
        self.workers.take(self)  # (first: the done hook releases it, whatever fails below)
        self.view = contentview.register()
        options.declare(loader)
        # Here as well as in `running`: mitmproxy opens its ports before the running hooks, so a client
        # that came at once waited for the warm-up; a script is loaded before that, in the running loop
        # (a test harness may have none: then nothing is warmed up).
        warm_up("load")

    def configure(self, updated):
        # Once per configure (before the parts' own configure hooks), never per flow.
        if any(name.startswith("audio_only_") for name in updated):
            self.requests.settings = request = options.request_settings(ctx.options)
            self.router.settings = options.settings(ctx.options, updated)
            self.router.stream_passthrough = request.stream_passthrough
            options.limit(self.server.services, ctx.options)
        if any(name.startswith("audio_only_") or name in OriginClient.OPTIONS for name in updated):
            settings = worker_link.settings_message(OriginOptions.of(ctx.options), options.limits(ctx.options),
                                                    logging.getLogger("addon.audio_only").getEffectiveLevel())
            self.workers.configure(options.workers(ctx.options), settings)
            if self.workers.counts is not None:  # (a request no worker took counts in the edge's budgets too)
                self.server.services.budgets.counts = self.workers.counts

    def running(self):
        # Hooks stay synchronous: mitmproxy calls running and done without awaiting when it reloads
        # an edited script, and refuses coroutines there.
        if broken := internals.reaches_that_broke():
            log.warning(f"audio-only: this mitmproxy lacks {', '.join(broken)}: an HTTP/1.0 client may take a failed "
                        f"body for a whole one (see addon/internals.py)")
        if not internals.read_origin_bodies_in_bigger_pieces():
            log.warning("audio-only: this httpcore lacks AsyncHTTP11Connection.READ_NUM_BYTES: origin bodies are read "
                        "64 KiB at a time, which costs more CPU (see addon/internals.py)")
        self.workers.start_waiting()
        warm_up("running")

    def done(self):
        if internals.mitmproxy_is_stopping():
            self.workers.stop()
        else:  # a reload keeps them (its new addon takes them); an unload retires them
            self.workers.release(self)
        if self.view is not None:
            contentview.unregister(self.view)
            self.view = None
        cool_down()


addons = [AudioOnly()]
