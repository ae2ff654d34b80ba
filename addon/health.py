"""The edge's health, for a load balancer in front of several edges (HAProxy's `option httpchk`,
nginx's, Envoy's): `GET /.well-known/audio-only/health` on the edge's own port is answered by the edge
itself, never forwarded to an origin, in every mode.

200 while our server takes requests; 503 while it does not (not started yet, or stopping; with worker
processes, audio_only_workers, while none of them answers), so that a balancer sends new requests
elsewhere. The body says what the edge is doing, for a person reading it (with workers: how many
answer, of how many).
"""

from __future__ import annotations

import json

from mitmproxy import http

from addon.server.app import AudioServer
from addon.workers import WorkerPool

HEALTH_PATH = "/.well-known/audio-only/health"


class Health:
    def __init__(self, server: AudioServer, workers: WorkerPool | None = None):
        self.server = server
        self.workers = workers

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.request.path.split("?")[0] != HEALTH_PATH or flow.request.method.upper() not in ("GET", "HEAD"):
            return
        up = self.server.port is not None and self.server.server is not None and not self.server.retired
        state = {"answering": self.server.answering, "routed": len(self.server.jobs)}
        if self.workers is not None and self.workers.in_use():
            alive = self.workers.answering_workers()
            up = up and alive > 0
            state.update(answering=len(self.workers.of_flow), workers=self.workers.size, workers_answering=alive)
        state = {"status": "ok" if up else "unavailable", **state}
        flow.response = http.Response.make(200 if up else 503, json.dumps(state).encode() + b"\n",
                                           {"Content-Type": "application/json", "Cache-Control": "no-store"})
        flow.metadata["audio_only_health"] = True
