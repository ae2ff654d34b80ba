"""HTTP to the origin: every request that asks for audio is answered by our server from here.

The whole file for a streamed answer, and Range requests: the moov and audio of a file answer, the
moov of an MP4 whose moov comes after its media data (fetched from the tail so that audio starts at
once), and the moov before the headers leave (a seek start past the audio is a 400). On httpx: one pool of keep-alive connections per origin (and route), HTTP/1.1 or
HTTP/2 as TLS negotiates, TLS verified as mitmproxy verifies its own upstream connections
(`ssl_insecure`, `ssl_verify_upstream_trusted_ca`/`_confdir`, else certifi's roots), and through the
upstream proxy when mitmproxy runs in upstream mode (with `upstream_auth`).

Every answer is checked before use (OriginVersion.problem_with): many origins ignore If-Range, and
bytes of another version of the file must never complete a response.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
import ssl
import weakref
from http.cookiejar import CookieJar, DefaultCookiePolicy
from itertools import accumulate, chain
from operator import add, sub
from typing import NamedTuple

import certifi
import httpcore  # noqa: F401 (httpx imports it at its first client: 20-40 ms a tail fetch should not wait)
import httpx
from mitmproxy import ctx, http
from mitmproxy.net.http import url

import extractor
from extractor.mp4 import boxes
from extractor.mp4.boxes import Box
from extractor.mp4.fragmented import PASSED_ON

# httpx logs a line per request at INFO and httpcore traces each step at DEBUG; mitmproxy's handler
# takes every record its level lets through into its event log, an addon hook each: 91 requests of one
# audio-only GET cost about 30 ms that way (measured), and flooded the log. Their warnings still show.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Request headers not carried over to our requests (hop-by-hop, conditionals, ranges, encodings).
DROPPED_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
                   "range", "if-range", "if-none-match", "if-modified-since", "if-match",
                   "if-unmodified-since", "accept-encoding", "content-length", "host"}
TIMEOUT = 10  # seconds for a connection, and between two reads of an answer
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=8, keepalive_expiry=30)
MAX_POOLS = 64  # origins we keep pools for; the least recently used is retired past this
IDLE_POLL = 0.5  # seconds between two looks at whether a retired pool's answers are all read
MAX_HOPS = 64  # top-level boxes walked with Range requests before giving up on a file (and 3 more a fragment)
HEADER_READ = 4096  # bytes read where a box header is wanted in a fragmented file (a moof, most likely)
MAX_FRAGMENTS = 4096  # fragments read that way: a file with more is streamed


class OriginVersion(NamedTuple):
    """The version of the origin's file a response is made of: what an If-Range names (its strong
    ETag, else its Last-Modified) and its length. A Range answer may complete the response only if it
    comes from this same version."""
    validator: str
    length: int | None

    @classmethod
    def of(cls, headers) -> OriginVersion | None:
        """The version of an origin's 200, when the origin serves ranges at all; read before we edit
        the headers."""
        if headers.get("accept-ranges", "").lower() != "bytes":
            return None
        etag = headers.get("etag", "")
        validator = etag if etag.startswith('"') else headers.get("last-modified")
        if not validator:
            return None
        length = headers.get("content-length", "")
        return cls(validator, int(length) if length.isdigit() else None)

    def problem_with(self, status: int, headers, first: int, last: int) -> str | None:
        """Why the origin's answer to `Range: bytes=first-last` cannot be used (None: it can). Many
        origins ignore If-Range, so a file replaced at the origin shows only here: the status, the
        range, the total length and the validator must all be the ones asked for."""
        if status != 206:
            return f"the origin answered {status}, not 206"
        content_range = headers.get("content-range", "")
        m = re.fullmatch(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)", content_range.strip())
        if not m:
            return f"the origin's Content-Range {content_range!r} is not a byte range"
        start, end, total = int(m[1]), int(m[2]), m[3]
        if total != "*" and self.length is not None and int(total) != self.length:
            return f"the origin's file is now {total} bytes, not {self.length}: it was replaced"
        expected_end = last if self.length is None else min(last, self.length - 1)
        if (start, end) != (first, expected_end):
            return f"the origin sent bytes {start}-{end}, not the {first}-{expected_end} asked for"
        if self.validator.startswith('"'):
            if headers.get("etag") != self.validator:
                return f"the origin's ETag is now {headers.get('etag')!r}, not {self.validator}: the file was replaced"
        elif headers.get("last-modified") != self.validator:
            return (f"the origin's Last-Modified is now {headers.get('last-modified')!r}, not {self.validator!r}: "
                    f"the file was replaced")
        return None


class RangeRefused(Exception):
    """The origin's answer to a Range request cannot be used; the message says why."""


class MultiRangeRefused(Exception):
    """The origin does not answer several ranges in one request (a 200, one range only, or a
    multipart answer we cannot read): ask for them one by one."""


PART_RANGE = re.compile(rb"(?im)^content-range:[ \t]*bytes (\d{1,19})-(\d{1,19})/(\d{1,19})[ \t]*\r?$")


def parse_byteranges(body: bytes, boundary: bytes) -> list[tuple[int, int, int, bytes]]:
    """The parts of a multipart/byteranges body: (first, last, total length, bytes) each. Raises
    RangeRefused on anything that is not such a body."""
    delimiter = b"--" + boundary
    closing = b"\r\n" + delimiter  # what follows each part's bytes
    parts, pos = [], body.find(delimiter)
    if pos < 0:
        raise RangeRefused("the origin's multipart answer has no boundary")
    find, search, startswith, append = body.find, PART_RANGE.search, body.startswith, parts.append
    while True:
        pos += len(delimiter)
        if startswith(b"--", pos):
            return parts
        header_end = find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise RangeRefused("a part of the origin's multipart answer is cut short")
        m = search(body, pos, header_end)
        if not m:
            raise RangeRefused("a part of the origin's multipart answer has no Content-Range")
        first, last, total = map(int, m.groups())
        start = header_end + 4
        end = start + last + 1 - first
        if last < first or not startswith(closing, end):
            raise RangeRefused(f"the part for bytes {first}-{last} of the origin's multipart answer is malformed")
        append((first, last, total, body[start:end]))
        pos = end + 2


PART_HEADERS = 512  # bytes of headers a part of a multipart answer may have, at most


def pieces_as_asked(body: bytes, boundary: bytes, spans: list[tuple[int, int]], length: int | None) -> list[bytes] | None:
    """The bytes of each span from a multipart answer in the common form: one part per span, in the
    order asked, all with the first part's headers but for a `Content-Range: bytes first-last/length`
    that says exactly that span of this length. None as soon as anything differs (other order, merged
    parts, another length, other headers or line endings...): parse_byteranges then reads it carefully.

    How: the answer the origin would have sent in that form is made again from the first part's
    headers and the pieces cut where that form puts them, and compared with the answer, whole. Bulk
    steps (map, join, one comparison) instead of a walk part by part: a GET of the test file has
    18,001 parts."""
    if length is None or not spans:
        return None
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    header_end = body.find(b"\r\n\r\n", pos) if pos >= 0 else -1
    if header_end < 0:
        return None
    header = body[pos + len(delimiter) : header_end + 4]  # the first part's, from its delimiter's line end
    if len(header) > PART_HEADERS:  # (made again for every part below: a long one is the careful walk's)
        return None
    line = b"bytes %d-%d/%d\r\n" % (spans[0][0], spans[0][1], length)
    at = header.find(line)
    name_at = header.rfind(b"\n", 0, at) + 1
    if (at < 0 or header.lower().count(b"content-range:") != 1  # (two: the careful walk takes the first)
            or header[name_at : name_at + 14].lower() != b"content-range:" or header[name_at + 14 : at].strip(b" \t")):
        return None
    escape = lambda text: text.replace(b"%", b"%%")  # noqa: E731
    form = escape(b"\r\n" + delimiter + header[:at]) + b"bytes %d-%d/" + b"%d" % length + b"\r\n" + escape(header[at + len(line) :])
    heads = list(map(form.__mod__, spans))
    heads[0] = heads[0][2:]  # the first delimiter has no line end before it of its own
    sizes = [last + 1 - first for first, last in spans]
    # Where each piece starts and ends in the answer: after its headers, then the next part's.
    ends = list(accumulate(map(add, map(len, heads), sizes), initial=pos))
    pieces = list(map(body.__getitem__, map(slice, map(sub, ends[1:], sizes), ends[1:])))
    closing = ends[-1]
    remade = b"".join(chain.from_iterable(zip(heads, pieces)))
    if body[pos:closing] != remade or not body.startswith(b"\r\n" + delimiter + b"--", closing):
        return None
    return pieces


def spans_from_parts(parts: list[tuple[int, int, int, bytes]], spans: list[tuple[int, int]], length: int | None) -> list[bytes]:
    """The bytes of each (first, last) span out of a multipart answer's parts (parse_byteranges), which
    origins give in the order asked, sorted, or with neighbours merged into one part. RangeRefused when
    a span has no part or a part names another file length."""
    out, by_first = [], sorted(parts, key=lambda p: p[0])
    firsts = [p[0] for p in by_first]
    for first, last in spans:
        i = bisect.bisect_right(firsts, first) - 1  # the last part starting at or before `first`
        part = by_first[i] if i >= 0 and last <= by_first[i][1] else \
            next((p for p in parts if p[0] <= first and last <= p[1]), None)  # parts that overlap
        if part is None:
            raise RangeRefused(f"the origin's multipart answer has no part for bytes {first}-{last}")
        if part[2] != length:
            raise RangeRefused(f"the origin's file is now {part[2]} bytes, not {length}: it was replaced")
        out.append(part[3][first - part[0] : last + 1 - part[0]])
    return out


# What a fetch can meet besides a refused answer: the network, TLS, the HTTP framing, our timeout.
FETCH_ERRORS = (RangeRefused, httpx.HTTPError, OSError, ssl.SSLError, TimeoutError)


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
        return f"{r.scheme}://{url.hostport(r.scheme, r.host, r.port)}{self.path}"


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing. A pool serves every client of an origin: a jar that kept the
    Set-Cookie of one client's answer would send that session to the origin on the requests of every
    other client after it (who then gets what the origin gives that session). Each request carries
    only its own client's Cookie header (Target.headers), and each Set-Cookie goes back to its client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def tls_context() -> ssl.SSLContext:
    """Upstream TLS as mitmproxy does it for its own connections to the origin."""
    if ctx.options.ssl_insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    cafile = ctx.options.ssl_verify_upstream_trusted_ca
    capath = ctx.options.ssl_verify_upstream_trusted_confdir
    return ssl.create_default_context(cafile=cafile or (None if capath else certifi.where()), capath=capath or None)


class Use:
    """What is reading from one pool: requests waiting for their answer's headers, and answers open."""

    def __init__(self):
        self.sending = 0
        self.answers: weakref.WeakSet[httpx.Response] = weakref.WeakSet()  # (one never closed goes with its last reference)

    def busy(self) -> bool:
        return self.sending > 0 or any(not answer.is_closed for answer in list(self.answers))


class OriginClient:
    """Pools of keep-alive connections to origins, made on first use and closed when mitmproxy stops
    (or, once what reads from them is done, when the TLS or upstream options they were made with change,
    or when more than MAX_POOLS origins are in use)."""

    # Options the pools are made with: a change retires them, the next request makes new ones.
    OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir", "upstream_auth"}

    def __init__(self):
        self.pools: dict[Route, httpx.AsyncClient] = {}
        self.uses: weakref.WeakKeyDictionary[httpx.AsyncClient, Use] = weakref.WeakKeyDictionary()
        self.closing: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()  # set by close(): the retired pools close at once
        self.tls: ssl.SSLContext | None = None

    def configure(self, updated) -> None:
        if self.OPTIONS & set(updated) or self.tls is None:
            # Made here, not per request: loading the trusted roots takes about 25 ms.
            self.tls = tls_context()
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
        if (client := self.pools.pop(route, None)) is not None:
            self.pools[route] = client  # the most recently used last: eviction takes the first
        else:
            if len(self.pools) >= MAX_POOLS:
                self._close_later(self.pools.pop(next(iter(self.pools))))
            proxy = None
            if route.proxy:
                auth = None
                if ctx.options.upstream_auth and ":" in ctx.options.upstream_auth:
                    user, _, password = ctx.options.upstream_auth.partition(":")
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
            self.pools[route] = client
        return client

    async def close(self) -> None:
        """mitmproxy stops: every pool's connections are closed, the retired ones' too, read or not."""
        self.stopping.set()  # the retired pools' tasks close them now
        pools, self.pools = list(self.pools.values()), {}
        for client in pools:
            await client.aclose()
        while self.closing:  # (those retired meanwhile too)
            await asyncio.gather(*self.closing, return_exceptions=True)
        self.stopping.clear()

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
        response = await self.open(target, headers=[("Range", f"bytes={first}-{last}"), ("If-Range", version.validator)])
        try:
            if problem := version.problem_with(response.status_code, response.headers, first, last):
                raise RangeRefused(problem)
            expected = (last if version.length is None else min(last, version.length - 1)) + 1 - first
            got = 0
            async for piece in response.aiter_raw():
                got += len(piece)
                if got > expected:
                    raise RangeRefused(f"the origin sent more than the {expected} bytes asked for")
                yield piece
            if got < expected:
                raise RangeRefused(f"the origin sent {got} of the {expected} bytes asked for")
        finally:
            await response.aclose()

    async def fetch_spans(self, target: Target, spans: list[tuple[int, int]], version: OriginVersion) -> list[bytes]:
        """The bytes of each (first, last) span, asked for in one request of several ranges (RFC 9110,
        14.6: a multipart/byteranges answer), each part checked against the version."""
        spec = ",".join(map("%d-%d".__mod__, spans))
        response = await self.open(target, headers=[("Range", f"bytes={spec}"), ("If-Range", version.validator)])
        try:
            ctype = response.headers.get("content-type", "")
            if response.status_code != 206 or not ctype.lower().startswith("multipart/byteranges"):
                raise MultiRangeRefused(f"the origin answered {response.status_code} {ctype or ''}".rstrip())
            m = re.search(r'(?i)boundary\s*=\s*"?([^";\s]+)"?', ctype)
            if not m:
                raise MultiRangeRefused("the origin's multipart answer names no boundary")
            named = response.headers.get("etag") if version.validator.startswith('"') else response.headers.get("last-modified")
            if named != version.validator:
                raise RangeRefused(f"the origin's validator is now {named!r}, not {version.validator}: the file was replaced")
            wanted = sum(last + 1 - first for first, last in spans)
            limit = wanted + PART_HEADERS * len(spans) + 4096  # the parts' own headers, at most
            body = bytearray()
            async for piece in response.aiter_raw():
                body += piece
                if len(body) > limit:
                    raise RangeRefused(f"the origin's multipart answer is longer than the {limit} bytes expected")
        finally:
            await response.aclose()
        body, boundary = bytes(body), m[1].encode()
        if (pieces := pieces_as_asked(body, boundary, spans, version.length)) is not None:
            return pieces
        try:
            parts = parse_byteranges(body, boundary)
        except RangeRefused as e:  # a dialect of multipart we do not read: one range at a time will do
            raise MultiRangeRefused(str(e)) from None
        return spans_from_parts(parts, spans, version.length)

    async def fetch_range(self, target: Target, offset: int, limit: int, version: OriginVersion) -> bytes:
        """Up to `limit` bytes of the target file from `offset` on, only if they come from the same
        version of the file (RangeRefused otherwise)."""
        return b"".join([piece async for piece in self.stream_range(target, offset, offset + limit - 1, version)])

    async def read_top_level(self, target: Target, version: OriginVersion, limit: int, head: bytes = b"",
                             until_moov: bool = False):
        """An MP4's top level read with Range requests: (ftyp, moov, moov offset, mdats, after) where mdats
        are every mdat's payload (start, end) and `after` the boxes after the moov a fragmented file's output is
        made of, as (type, offset, bytes): its moofs, and the small boxes passed on between fragments.
        Each box header is a 16-byte read where the file's first bytes (`head`) or the previous read do
        not hold it (a moof is read with the next box's header); with until_moov, no further than the
        moov. ExtractError when the file is not such an MP4 (no moov, a box above `limit`, too many
        boxes)."""
        length = version.length
        ftyp = moov = None
        moov_at, mdats, after, pos = 0, [], [], 0
        ahead_at, ahead = 0, head  # bytes of the file already read, from offset ahead_at
        hops, allowed, fragments = 0, MAX_HOPS, 0
        while hops < allowed:
            hops += 1
            if (length is not None and pos >= length) or (until_moov and moov is not None):
                break
            if not (ahead_at <= pos and pos + min(16, (length or pos + 16) - pos) <= ahead_at + len(ahead)):
                # A header; once fragments have begun, with what follows it: the next moof (usually
                # under 4 KiB) comes whole with its header (and, after a small moof, up to 4 KiB of
                # its mdat: the price of one request a fragment instead of two).
                want = HEADER_READ if fragments else 16
                ahead_at, ahead = pos, await self.fetch_range(target, pos, want if length is None
                                                              else min(want, length - pos), version)
            header = ahead[pos - ahead_at : pos - ahead_at + 16]
            box = box_at(header, pos, length)
            if box.size < 0:
                break  # a box to the end of a file of unknown length: nothing follows it
            if box.type in (b"ftyp", b"moov", b"moof") or (box.type in PASSED_ON and moov):
                if box.size > limit:
                    raise extractor.LimitExceeded(f"{box.name()} is {box.size} bytes, above audio_only_max_header")
                if ahead_at <= box.start and box.end <= ahead_at + len(ahead):
                    data = ahead[box.start - ahead_at : box.end - ahead_at]
                else:  # with the next box's header, when there is one
                    more = 16 if length is None else min(16, length - box.end)
                    ahead_at, ahead = box.start, await self.fetch_range(target, box.start, box.size + more, version)
                    data = ahead[: box.size]
                if box.type == b"ftyp":
                    ftyp = data
                elif box.type == b"moov":
                    moov, moov_at = data, box.start
                else:
                    if moov is None:
                        raise extractor.MalformedInput(f"{box.name()} at byte {box.start} before the moov")
                    after.append((box.type, box.start, data))
                    if box.type == b"moof":
                        fragments += 1
                        if fragments > MAX_FRAGMENTS:
                            raise extractor.UnsupportedInput(f"more than {MAX_FRAGMENTS} fragments")
                        allowed = MAX_HOPS + 8 * MAX_FRAGMENTS  # a fragment's boxes: styp, sidx, emsg, moof, mdat...
            elif box.type == b"mdat":
                mdats.append((box.payload, box.end))
            pos = box.end
        else:
            raise extractor.UnsupportedInput(f"more than {allowed} top-level boxes")
        if moov is None:
            raise extractor.MalformedInput("no moov box")
        return ftyp or b"", moov, moov_at, mdats, after


def box_at(header: bytes, pos: int, length: int | None) -> Box:
    """The top-level box whose first bytes (up to 16) are `header`, at byte `pos` of a `length`-byte
    file (None: unknown, and a box running to the end has size -1)."""
    box = boxes.parse_header(header, 0, None if length is None else length - pos)
    return Box(box.type, pos, box.header, box.size)
