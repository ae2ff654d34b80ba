"""Beyond one machine: two edges (mitmdump with the addon, reverse mode in front of one origin) behind
a real load balancer, Debian's HAProxy, as the README tells operators to run them: URI-based
consistent hashing (so that a file's requests meet one edge and its plan cache) and a health check on
the edge's own endpoint. One edge killed mid-response: that response ends uncleanly, new requests go
to the other edge, nothing else fails."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

import pytest

from helpers import MEDIA, Proxy, extract, free_port, http_get, http_stream

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (scripts/bootstrap --test installs it)")]

HEALTH = "/.well-known/audio-only/health"
NAMES = [f"copy{i}.mp4" for i in range(8)]


def haproxy_config(port: int, edges: list[int]) -> str:
    servers = "\n".join(f"  server edge{i} 127.0.0.1:{p} check inter 200ms fall 2 rise 2" for i, p in enumerate(edges))
    return f"""global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  # A GET that met a dead edge (refused, or cut on a kept-alive connection) is tried again on another
  retry-on all-retryable-errors
  option redispatch 1
frontend edge
  bind 127.0.0.1:{port}
  default_backend edges
backend edges
  # The path (not the query) picks the edge, on a consistent hash ring: a file's range requests, with
  # or without the audio parameter, meet the edge that planned it; an edge gone moves only its files.
  balance uri
  hash-type consistent
  option httpchk GET {HEALTH}
  http-check expect status 200
{servers}
"""


@pytest.fixture(scope="module")
def cluster(origin, media_root, tmp_path_factory):
    for name in NAMES:
        shutil.copy(media_root / "h264_aac.mp4", media_root / name)
    logs = tmp_path_factory.mktemp("haproxy")
    edges = [Proxy(logs / f"edge{i}.log", "--mode", f"reverse:{origin.url}") for i in range(2)]
    port = free_port()
    (logs / "haproxy.cfg").write_text(haproxy_config(port, [e.port for e in edges]))
    balancer = subprocess.Popen(["haproxy", "-db", "-f", str(logs / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until both edges pass their health checks
        try:
            if all(http_get(port, f"/h264_aac.flv?probe={i}", timeout=5).status == 200 for i in range(4)):
                break
        except OSError:
            pass
        time.sleep(0.2)
    time.sleep(1)
    yield port, edges
    balancer.terminate()
    balancer.wait(10)
    for e in edges:
        e.stop()


def edge_of(edges, name: str) -> list[int]:
    """The edges whose log names an audio-only answer for `name`."""
    return [i for i, e in enumerate(edges) if re.search(rf"/{re.escape(name)}\S* (file|mp4 stream)", e.log())]


def test_the_health_check_is_the_edges_own(cluster, origin):
    port, edges = cluster
    before = len(origin.requests)
    reply = http_get(edges[0].port, HEALTH)
    assert reply.status == 200 and b'"ok"' in reply.body and reply.headers["cache-control"] == "no-store"
    assert not any(HEALTH in path for _, path, _ in origin.requests[before:])  # never forwarded


def test_a_files_requests_meet_one_edge(cluster):
    port, edges = cluster
    want = extract((MEDIA / "h264_aac.mp4").read_bytes())
    for name in NAMES:
        whole = http_get(port, f"/{name}?ali_audio_only=1")
        assert whole.status == 200 and whole.clean and whole.body == want
        for first in (0, 1000, 20000):  # a player's range requests
            part = http_get(port, f"/{name}?ali_audio_only=1", headers={"Range": f"bytes={first}-{first + 4999}"})
            assert part.status == 206 and part.body == whole.body[first : first + 5000]
    homes = {name: edge_of(edges, name) for name in NAMES}
    assert all(len(h) == 1 for h in homes.values()), homes  # one edge a file, every request of it there
    assert {h[0] for h in homes.values()} == {0, 1}, homes  # and both edges have files


def test_an_edge_killed_mid_response(cluster, origin):
    """The live stream's edge dies: its response ends uncleanly; the next requests for that stream go to
    the other edge and succeed; the other edge's own answers were never touched."""
    port, edges = cluster
    path = "/h264_aac.flv?ali_audio_only=1&live=1"
    status, headers, body = http_stream(port, path, timeout=30)
    assert status == 200
    received = len(next(body))
    time.sleep(0.5)
    # (which edge is answering it: its health check says so)
    home = [i for i, e in enumerate(edges) if b'"answering": 1' in http_get(e.port, HEALTH).body]
    assert len(home) == 1, home
    other = 1 - home[0]
    edges[home[0]].process.send_signal(signal.SIGKILL)
    clean = None
    while True:
        try:
            received += len(next(body))
        except StopIteration as end:
            clean = end.value
            break
    assert clean is False  # never a clean end of a cut stream
    # New requests: to the other edge (HAProxy redispatches at once, then its checks mark the edge down).
    want = extract((MEDIA / "h264_aac.flv").read_bytes())
    for attempt in range(5):
        reply = http_get(port, "/h264_aac.flv?ali_audio_only=1&after=kill")
        assert reply.status == 200 and reply.clean and reply.body == want
    assert "after=kill" in edges[other].log()
