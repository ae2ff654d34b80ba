"""The request side's hook, which fails closed: a request that asked for audio never reaches the origin
as it is, whatever goes wrong on our side.

mitmproxy logs an exception raised in a hook and goes on with the next addon, then with the flow: an
exception after the request rules took our parameter off, or before the router sent the request to
our server, would send the origin a plain request for the video, and the client would get the whole
video as its "audio". So the request rules and the router run here, in one hook: an exception in
either, for a request that asked for audio (or for the CDN's plain seeking), is logged and answered
502; other requests are left to mitmproxy, as before. (The router's wait for a worker fails closed on
its own: AudioRouter.to_worker.)
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addon import record
from addon.request_rules import RequestRules, raw_param
from addon.routing import AudioRouter

log = logging.getLogger("addon.audio_only")


class FailClosed:
    """A part of the addon (AudioOnly.addons): the request rules decide, then the router routes."""

    def __init__(self, rules: RequestRules, router: AudioRouter):
        self.rules = rules
        self.router = router

    def requestheaders(self, flow: http.HTTPFlow):
        asked = may_ask_for_audio(flow, self.rules)  # (before the rules take our parameter off)
        try:
            self.rules.decide(flow)
            return self.router.divert(flow)
        except Exception as e:
            rec = record.of(flow)
            if not (asked or (rec and (rec.get("requested") or rec.get("plain")))):
                raise  # (not ours to refuse: mitmproxy logs it, as any addon's error)
            refuse(flow, f"{type(e).__name__}: {e}")


def may_ask_for_audio(flow: http.HTTPFlow, rules: RequestRules) -> bool:
    """Does the request carry our parameter, in any spelling? When even that cannot be told, it may."""
    try:
        return raw_param(flow.request.path, rules.now.param) is not None
    except Exception:
        return True


def refuse(flow: http.HTTPFlow, why: str) -> None:
    log.exception(f"audio-only: {flow.request.pretty_url}: failed before it could be answered: answered 502")
    rec = record.of(flow) or record.begin(flow)
    record.conclude(rec, record.FAILED, f"failed before it could be answered: {why}")
    flow.response = http.Response.make(
        502, b"audio-only: the request failed before it could be answered (see the proxy's log)\n",
        {"content-type": "text/plain; charset=utf-8"})
