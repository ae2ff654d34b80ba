"""HTTP to the origin: every request that asks for audio is answered by our server from here.

The whole file for a streamed answer, and Range requests: the moov and audio of a file answer, the
moov of an MP4 whose moov comes after its media data (fetched from the tail so that audio starts at
once), and the moov before the headers leave (a seek start past the audio is a 400). On httpx: one
pool of keep-alive connections per origin (and route), HTTP/1.1 or HTTP/2 as TLS negotiates, TLS verified
as mitmproxy verifies its own upstream connections (`ssl_insecure`, `ssl_verify_upstream_trusted_ca`/
`_confdir`, else certifi's roots), and through the upstream proxy when mitmproxy runs in upstream mode
(with `upstream_auth`). The file path's Range requests to a plain HTTP origin reached directly (a
file answer's many, a top level's, a moov at the end; not the probe) go on h11 instead (h11_pool.py: a
third of httpx's CPU, and a tenth for one range a request), in a pool of their own beside httpx's (up to
LIMITS each).

Every answer to a Range request is checked before use (origin_version.py): many origins ignore
If-Range, and bytes of another version of the file must never complete a response. The multipart
answers to several ranges are read in multipart.py; an MP4's top level by the core's reader
(extractor/mp4/toplevel.py), this client fetching what it says it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import weakref
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import NamedTuple

import certifi
import h11
import httpcore  # noqa: F401 (httpx imports it at its first client: 20-40 ms a tail fetch should not wait)
import httpx
from mitmproxy import ctx

from addon.h11_pool import H11Pool
from addon.multipart import PART_HEADERS, AskedRanges, parse_byteranges, pieces_as_asked, spans_from_parts
from addon.origin_target import Route, Target, ascii_path, asks_on_h11
from addon.origin_version import MultiRangeRefused, OriginVersion, RangeRefused
from extractor.mp4.toplevel import TopLevel, TopLevelReader

# httpx logs a line per request at INFO and httpcore traces each step at DEBUG; mitmproxy's handler
# takes every record its level lets through into its event log, an addon hook each: the many requests
# of one audio-only GET cost CPU that way, and flooded the log. Their warnings still show.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Alibaba OSS answers several ranges in one request only when asked this way (else 416); other origins
# ignore a header they do not know (RFC 9110, 5.1), so every request of several ranges carries it.
MULTI_RANGE_HEADERS = (("x-oss-multi-range-behavior", "multi-range"),)
TIMEOUT = 10  # seconds for a connection, and between two reads of an answer
# Kept alive: as many as one response has requests in flight (origin_groups.WINDOW); fewer made the
# window close and open connections all along from an origin that answers one range a request.
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=30)
MAX_POOLS = 64  # origins we keep pools for; the least recently used is retired past this
IDLE_POLL = 0.5  # seconds between two looks at whether a retired pool's answers are all read


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing. A pool serves every client of an origin: a jar that kept the
    Set-Cookie of one client's answer would send that session to the origin on the requests of every
    other client after it (who then gets what the origin gives that session). Each request carries
    only its own client's Cookie header (Target.headers), and each Set-Cookie goes back to its client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class OriginOptions(NamedTuple):
    """mitmproxy's options the origin pools are made with (OriginClient.OPTIONS), as plain values: read
    from ctx.options in mitmdump, sent as they are to worker processes (addon/workers.py)."""
    ssl_insecure: bool = False
    ssl_verify_upstream_trusted_ca: str | None = None
    ssl_verify_upstream_trusted_confdir: str | None = None
    upstream_auth: str | None = None

    @classmethod
    def of(cls, options) -> OriginOptions:
        # (an option mitmproxy lacks here, upstream_auth in a test harness without its addon: the default)
        return cls(*(getattr(options, name, default) for name, default in cls._field_defaults.items()))


def tls_context(options: OriginOptions | None = None) -> ssl.SSLContext:
    """Upstream TLS as mitmproxy does it for its own connections to the origin."""
    options = options or OriginOptions.of(ctx.options)
    if options.ssl_insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    cafile = options.ssl_verify_upstream_trusted_ca
    capath = options.ssl_verify_upstream_trusted_confdir
    return ssl.create_default_context(cafile=cafile or (None if capath else certifi.where()), capath=capath or None)


class Use:
    """What is reading from one pool: requests waiting for their answer's headers, and answers open."""

    def __init__(self):
        self.sending = 0
        self.answers: weakref.WeakSet[httpx.Response] = weakref.WeakSet()  # (one never closed goes with its last reference)

    def busy(self) -> bool:
        return self.sending > 0 or any(not answer.is_closed for answer in list(self.answers))


class HttpxAnswer:
    """An httpx answer whose body is read whole or as it comes, at most `limit` bytes (as
    h11_pool.Answer)."""

    def __init__(self, response: httpx.Response, limit: int | None):
        self.response, self.limit = response, limit
        self.status_code, self.headers = response.status_code, response.headers

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.pieces()])

    async def pieces(self):
        got = 0
        async for piece in self.response.aiter_raw():
            got += len(piece)
            if self.limit is not None and got > self.limit:
                raise httpx.RemoteProtocolError(f"the origin's answer is longer than the {self.limit} bytes expected")
            yield piece


def most_recent(pools: dict, route: Route, make, retire):
    """pools[route], made by make() the first time, now the most recently used (last); past MAX_POOLS
    the least recently used (first) is taken out and retire()d."""
    if (pool := pools.pop(route, None)) is None:
        if len(pools) >= MAX_POOLS:
            retire(pools.pop(next(iter(pools))))
        pool = make()
    pools[route] = pool
    return pool


class OriginClient:
    """Pools of keep-alive connections to origins, made on first use and closed when mitmproxy stops
    (or, once what reads from them is done, when the TLS or upstream options they were made with change,
    or when more than MAX_POOLS origins are in use)."""

    # Options the pools are made with: a change retires them, the next request makes new ones.
    OPTIONS = set(OriginOptions._fields)

    def __init__(self):
        self.pools: dict[Route, httpx.AsyncClient] = {}
        self.h11_pools: dict[Route, H11Pool] = {}  # plain HTTP origins reached directly: ranged()
        self.uses: weakref.WeakKeyDictionary[httpx.AsyncClient, Use] = weakref.WeakKeyDictionary()
        self.closing: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()  # set by close(): the retired pools close at once
        self.tls: ssl.SSLContext | None = None
        self.options = OriginOptions()

    def configure(self, updated) -> None:
        if self.OPTIONS & set(updated) or self.tls is None:
            self.use_options(OriginOptions.of(ctx.options))

    def use_options(self, options: OriginOptions) -> None:
        """New pools are made with these (a worker process is given them by mitmdump at each configure);
        the pools made with others are retired."""
        self.options = options
        # Made here, not per request: loading the trusted roots takes about 25 ms.
        self.tls = tls_context(options)
        for route in list(self.pools):
            self._close_later(self.pools.pop(route))

    def _close_later(self, client: httpx.AsyncClient) -> None:
        """Close a pool we no longer hand out, once the answers still reading from it are done: httpx's
        aclose closes the connections in use too, which would cut those answers (a client's response
        ending short of its length). The pool's idle connections wait with it."""
        try:
            task = asyncio.get_running_loop().create_task(self._close_when_idle(client))
        except RuntimeError:  # no loop (mitmproxy not running yet): nothing was opened
            return
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def _close_when_idle(self, client: httpx.AsyncClient) -> None:
        # (Never cancelled: a cancel inside httpx's aclose would stop it partway, with connections left
        # open that nothing closes any more. close() ends the wait instead.)
        while (use := self.uses.get(client)) is not None and use.busy() and not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), IDLE_POLL)
            except asyncio.TimeoutError:
                pass
        await client.aclose()

    def pool(self, route: Route) -> httpx.AsyncClient:
        return most_recent(self.pools, route, lambda: self._new_client(route), self._close_later)

    def _new_client(self, route: Route) -> httpx.AsyncClient:
        proxy = None
        if route.proxy:
            auth = None
            if self.options.upstream_auth and ":" in self.options.upstream_auth:
                user, _, password = self.options.upstream_auth.partition(":")
                auth = (user, password)
            proxy = httpx.Proxy(route.proxy, auth=auth)
        client = httpx.AsyncClient(verify=self.tls or tls_context(), http2=True, limits=LIMITS, proxy=proxy,
                                   timeout=httpx.Timeout(TIMEOUT), trust_env=False, follow_redirects=False,
                                   cookies=no_cookie_jar())
        # httpx's own defaults: a client that sent no User-Agent or Accept would reach the origin as
        # python-httpx (which some origins' firewalls refuse) asking for */*; mitmproxy relays a
        # request's headers as the client sent them, and so do we (Target.headers).
        for name in ("User-Agent", "Accept"):
            client.headers.pop(name, None)
        return client

    async def close(self) -> None:
        """mitmproxy stops: every httpx pool's connections are closed, the retired ones' too, read or not;
        the h11 pools' idle ones, and those in use once their answer ends (mitmproxy cancels what reads
        them)."""
        self.stopping.set()  # the retired pools' tasks close them now
        for pool in self.h11_pools.values():
            pool.close()  # (its connections in use close when their answer is done or cancelled)
        self.h11_pools = {}
        pools, self.pools = list(self.pools.values()), {}
        for client in pools:
            await client.aclose()
        while self.closing:  # (those retired meanwhile too)
            await asyncio.gather(*self.closing, return_exceptions=True)
        self.stopping.clear()

    def h11_pool(self, route: Route) -> H11Pool | None:
        """The h11 pool of a plain HTTP origin reached directly (h11_pool.py), else None (httpx's)."""
        if not asks_on_h11(route):
            return None
        return most_recent(self.h11_pools, route,
                           lambda: H11Pool(route.host, route.port, LIMITS.max_connections,
                                           LIMITS.max_keepalive_connections, LIMITS.keepalive_expiry, TIMEOUT),
                           H11Pool.retire)

    @contextlib.asynccontextmanager
    async def ranged(self, target: Target, headers: list, limit: int | None):
        """A GET of the target with `headers` added (a Range among them), whose answer's body is then read
        whole (`await answer.read()`) or as it comes (`answer.pieces()`), at most `limit` bytes (None:
        the caller counts them): on h11 from a plain HTTP origin reached directly (h11_pool.py), unless
        a header is one h11 refuses; else on httpx."""
        pool, request = self.h11_pool(target.route), None
        if pool is not None:
            try:
                request = h11.Request(method="GET", target=ascii_path(target.path),
                                      headers=[*target.headers, *headers, ("Accept-Encoding", "identity")])
            except (h11.LocalProtocolError, UnicodeError):  # (a header httpx encodes its own way, if at all)
                pool = None
        if pool is not None:
            async with pool.get(request, limit) as answer:
                yield answer
            return
        response = await self.open(target, headers=headers)
        try:
            yield HttpxAnswer(response, limit)
        finally:
            await response.aclose()

    async def open(self, target: Target, method: str = "GET", headers=(), read_timeout: float | None = None) -> httpx.Response:
        """A request for the target with `headers` added; the answer's body is not read yet (the caller
        reads it, and closes the answer with aclose). read_timeout: the most seconds between two reads
        of the answer (0: none; None: the pool's TIMEOUT); it runs only while we wait to read."""
        client = self.pool(target.route)
        extensions = {"sni_hostname": target.sni} if target.sni else {}
        timeout = httpx.Timeout(TIMEOUT, read=read_timeout or None) if read_timeout is not None else httpx.USE_CLIENT_DEFAULT
        request = client.build_request(method, target.url, headers=[*target.headers, *headers,
                                                                     ("Accept-Encoding", "identity")],
                                       extensions=extensions, timeout=timeout)
        use = self.uses.get(client)
        if use is None:
            use = self.uses[client] = Use()
        use.sending += 1  # (a pool retired meanwhile waits for this answer too)
        try:
            response = await client.send(request, stream=True)
        finally:
            use.sending -= 1
        use.answers.add(response)
        return response

    async def stream_range(self, target: Target, first: int, last: int, version: OriginVersion):
        """Bytes first..last of the target file, piece by piece as they arrive, only if they come from
        `version` of it (RangeRefused otherwise, before any piece, or after the last if the origin sent
        fewer bytes than it announced)."""
        expected = (last if version.length is None else min(last, version.length - 1)) + 1 - first
        headers = [("Range", f"bytes={first}-{last}"), ("If-Range", version.validator)]
        async with self.ranged(target, headers, None) as response:  # (the bytes are counted here)
            if problem := version.problem_with(response.status_code, response.headers, first, last):
                raise RangeRefused(problem)
            got = 0
            async for piece in response.pieces():
                got += len(piece)
                if got > expected:
                    raise RangeRefused(f"the origin sent more than the {expected} bytes asked for")
                yield piece
            if got < expected:
                raise RangeRefused(f"the origin sent {got} of the {expected} bytes asked for")

    async def fetch_spans(self, target: Target, spans: list[tuple[int, int]] | None, version: OriginVersion,
                          asked: AskedRanges | None = None) -> list[bytes]:
        """The bytes of each (first, last) span, asked for in one request of several ranges (RFC 9110,
        14.6: a multipart/byteranges answer), each part checked against the version. Or, with `asked`
        (the spans laid out in advance, `spans` then None), of each of its ranges."""
        asked = asked or AskedRanges(*zip(*spans))
        count = len(asked)
        limit = asked.wanted + PART_HEADERS * count + 4096  # the parts' own headers, at most
        headers = [("Range", b"bytes=" + asked.spec), ("If-Range", version.validator), *MULTI_RANGE_HEADERS]
        async with self.ranged(target, headers, limit) as response:
            ctype = response.headers.get("content-type", "")
            status = response.status_code
            if status == 200 and (problem := version.replaced(response.headers)):
                raise RangeRefused(problem)  # (If-Range did not match: a 200 of another version, not a refusal)
            if status not in (200, 206, 400, 416):  # (a 5xx, a 403...: the request failed, the count taught nothing)
                raise RangeRefused(f"the origin answered {status} to a request for {count} ranges")
            if status != 206 or not ctype.lower().startswith("multipart/byteranges"):
                # (a 206 of one range: it never answers several; a 416, 400, or a 200 of this version: maybe fewer)
                raise MultiRangeRefused(f"the origin answered {status} {ctype or ''}".rstrip(), count=status != 206)
            m = re.search(r'(?i)boundary\s*=\s*"?([^";\s]+)"?', ctype)
            if not m:
                raise MultiRangeRefused("the origin's multipart answer names no boundary", count=False)
            if problem := version.replaced(response.headers):
                raise RangeRefused(problem)
            body = await response.read()
        boundary = m[1].encode()
        if (pieces := asked.pieces(body, boundary, version.length)) is not None:
            return pieces
        spans = spans or [tuple(map(int, span.split(b"-"))) for span in asked.spec.split(b",")]
        if (pieces := pieces_as_asked(body, boundary, spans, version.length)) is not None:
            return pieces  # (the common form, with a part header the quick layout does not take: a NUL)
        try:
            parts = parse_byteranges(body, boundary)
        except RangeRefused as e:  # a dialect of multipart we do not read: one range at a time will do
            raise MultiRangeRefused(str(e), count=False) from None
        return spans_from_parts(parts, spans, version.length)

    async def fetch_range(self, target: Target, offset: int, limit: int, version: OriginVersion) -> bytes:
        """Up to `limit` bytes of the target file from `offset` on, only if they come from the same
        version of the file (RangeRefused otherwise)."""
        return b"".join([piece async for piece in self.stream_range(target, offset, offset + limit - 1, version)])

    async def read_top_level(self, target: Target, version: OriginVersion, limit: int, head: bytes = b"",
                             until_moov: bool = False, index: bool = False) -> TopLevel:
        """An MP4's top level (extractor/mp4/toplevel.py), each piece it needs read with a Range request
        of this version of the file. ExtractError when the file is not such an MP4."""
        reader = TopLevelReader(version.length, limit, head, until_moov, index)
        while reader.need is not None:
            offset, size = reader.need
            reader.feed(await self.fetch_range(target, offset, size, version))
        return reader.result
