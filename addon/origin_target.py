"""What our own requests to the origin ask for: the file (Target), and the way to its origin (Route).

Made from the client's flow as mitmproxy routes it (its server connection's address, the upstream proxy
in upstream mode, the TLS server name), and sent as plain values to worker processes (worker_link.py).
"""

from __future__ import annotations

from typing import NamedTuple

from mitmproxy import http
from mitmproxy.net.http import url

from addon import http_rules

# Request headers not carried over to our requests (hop-by-hop, conditionals, ranges, encodings): the
# client's conditionals are our server's to answer; our own requests carry ours.
DROPPED_HEADERS = http_rules.HOP_BY_HOP | {"range", "if-range", "if-none-match", "if-modified-since", "if-match",
                                           "if-unmodified-since", "accept-encoding", "content-length", "host"}


class Route(NamedTuple):
    """What a pool of connections is for: the origin, and how it is reached."""
    scheme: str
    host: str
    port: int
    proxy: str | None  # the upstream proxy's URL in upstream mode
    # The TLS server name: sites on one address (a CDN's) get pools of their own, so that a connection
    # whose certificate was checked for one name never carries another's requests.
    sni: str | None = None


def route_of(flow: http.HTTPFlow) -> Route:
    """Where mitmproxy sends (or sent) the flow's request: its own server connection's address when it
    has one, else the request's target; through the upstream proxy in upstream mode."""
    host, port = flow.server_conn.address or (flow.request.host, flow.request.port)
    proxy = None
    if flow.server_conn.via:  # upstream mode: ("http" or "https", (host, port))
        scheme, (proxy_host, proxy_port) = flow.server_conn.via
        proxy = f"{scheme}://{url.hostport(scheme, proxy_host, proxy_port)}"
    sni = (flow.server_conn.sni or flow.request.host) if flow.request.scheme == "https" else None
    return Route(flow.request.scheme, host, port, proxy, sni)


def asks_on_h11(route: Route) -> bool:
    """Whether our Range requests to this origin go on h11 (a plain HTTP origin reached directly: h11_pool.py)."""
    return route.scheme == "http" and not route.proxy


class Target(NamedTuple):
    """One file at the origin, as our own requests ask for it: the route, the path, the Host, the
    client's end-to-end headers (cookies, authorization, user agent...) and the TLS server name."""
    route: Route
    path: str
    headers: tuple[tuple[str, str], ...]
    sni: str | None

    @classmethod
    def of(cls, flow: http.HTTPFlow) -> Target:
        route = route_of(flow)
        headers = [(k, v) for k, v in flow.request.headers.items(multi=True)
                   if k.lower() not in DROPPED_HEADERS and not k.startswith(":")]
        headers.append(("Host", flow.request.host_header or url.hostport(route.scheme, route.host, route.port)))
        return cls(route, flow.request.path, tuple(headers), route.sni)

    @property
    def url(self) -> str:
        r = self.route
        return f"{r.scheme}://{url.hostport(r.scheme, r.host, r.port)}{ascii_path(self.path)}"


def ascii_path(path: str) -> str:
    """The path in ASCII, as httpx takes it: each byte of a non-ASCII character percent-encoded, and so
    a byte that is not UTF-8 (legal on the wire; mitmproxy keeps it as a lone surrogate, which httpx
    cannot encode: our answer was a 500) goes to the origin as %XX."""
    if path.isascii():
        return path
    return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in path.encode("utf-8", "surrogateescape"))
