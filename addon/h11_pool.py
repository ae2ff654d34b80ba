"""Keep-alive HTTP/1.1 connections to one plain-HTTP origin, on h11, for the file path's Range requests.

A GET of the 10-minute MP4 from nginx makes about 90 requests of 200 ranges each. Through httpx they
cost 0.24 s of CPU in one process (httpx, httpcore's pool, anyio's locks and cancel scopes, sniffio,
reads of 64 KiB: 2.6 ms a request of 110 KB); here (h11, the protocol library httpx itself speaks
HTTP/1.1 with, over an asyncio BufferedProtocol of our own reading 256 KiB at a time) 0.08 s. One
range a request: 2.2-2.5 ms a request through httpx, 0.21-0.28 ms here (docs/speed.md). Only plain
HTTP origins reached directly are asked this way: TLS origins may speak HTTP/2, and upstream proxies,
TLS and every other request (the probe, a relayed answer, a manifest's) stay with httpx. An answer is
read whole (several ranges: multipart, bounded by the ranges asked) or as it comes, the socket left
unread while HELD bytes wait for their reader (one range a request: spans of up to 4 MiB).

Failures are httpx's, as the callers expect them (origin_version.FETCH_ERRORS): ConnectError,
ConnectTimeout, PoolTimeout (no connection free for the timeout), ReadTimeout (the origin silent for
the read timeout), RemoteProtocolError (h11's words: a malformed answer, a body ended early),
ReadError (the connection broken). A request sent on a
kept connection that the origin had closed meanwhile (its keep-alive timeout) is sent again once on a
new one, as browsers do: a GET is safe to repeat, and nothing of the answer had come.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import h11
import httpx

BUFFER = 256 << 10  # bytes a socket read takes at most (asyncio's own transports read 256 KiB too)
HELD = 1 << 20  # body bytes received and not yet taken by a streaming reader, past which the socket waits
HEAD = 100 << 10  # the most an answer's head may take (httpcore's; h11's own default is 16 KiB)
HAPPY_EYEBALLS = 0.25  # seconds before the next address of a host is tried too (as httpcore's anyio does)...
# ...but not under a task factory of the loop's own (mitmproxy 12 sets asyncio's eager one): asyncio's happy
# eyeballs (staggered_race) then fails with an AssertionError on Python 3.13.0 (python/cpython#124309, seen
# here), whatever the address; addresses are then tried one after another, as asyncio does by default.


class Connection(asyncio.BufferedProtocol):
    """One connection: h11's state, and the answer being read (its events until EndOfMessage)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, buffer: bytearray):
        self.loop = loop
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD)
        self.buffer = buffer  # the pool's: each read is taken out of it at once (feed), before the next
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_read = loop.time()
        self.response: h11.Response | None = None
        self.body: list[bytes] = []
        self.received = 0  # body bytes of the answer so far
        self.held = 0  # of them, in `body` (not yet taken by a streaming reader)
        self.streaming = False  # a reader takes the body as it comes (woken at each piece)
        self.paused = False
        self.limit: int | None = None  # body bytes the answer may have (None: any)
        self.ended = True  # the answer's EndOfMessage came (or, between requests, no answer is awaited)
        self.failure: Exception | None = None
        self.waiter: asyncio.Future | None = None  # woken at the answer's head, its end, and a failure
        self.idle_since = loop.time()

    # asyncio's side
    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int):
        return self.buffer

    def buffer_updated(self, n: int) -> None:
        self.last_read = self.loop.time()
        self.feed(self.buffer[:n])

    def eof_received(self) -> None:
        self.feed(b"")  # h11 says whether the answer was complete (a body read to the close is)
        return None  # (the transport closes)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ended and self.failure is None:
            self.failure = httpx.ReadError(str(exc) if exc else "the origin closed the connection")
        self.wake()

    # h11's side
    def feed(self, data: bytes) -> None:
        if self.failure is not None:
            return
        if self.ended:  # bytes no request asked for (or the close of an idle connection): not used again
            self.close()
            return
        try:
            self.h11.receive_data(data)
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                kind = type(event)
                if kind is h11.Data:
                    self.body.append(event.data)
                    self.received += len(event.data)
                    self.held += len(event.data)
                    if self.streaming:
                        self.wake()
                        if self.held >= HELD and not self.paused:
                            self.paused = True  # (backpressure: a reader that waits keeps the origin waiting)
                            self.transport.pause_reading()
                    if self.limit is not None and self.received > self.limit:
                        self.fail(httpx.RemoteProtocolError(f"the origin's answer is longer than the {self.limit} "
                                                            f"bytes expected"))
                        return
                elif kind is h11.Response:
                    self.response = event
                    self.wake()
                elif kind is h11.EndOfMessage:
                    self.ended = True
                    self.wake()
                    return
                elif kind is h11.ConnectionClosed:
                    self.fail(httpx.RemoteProtocolError("the origin closed the connection before answering"))
                    return
                # (InformationalResponse, a 100 Continue: the final answer follows)
        except h11.RemoteProtocolError as e:
            self.fail(httpx.RemoteProtocolError(str(e)))

    def fail(self, failure: Exception) -> None:
        self.failure = failure
        self.wake()
        self.close()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # the request's side
    def start(self, request: bytes, limit: int | None) -> None:
        if self.closed or self.transport.is_closing():  # (closed by the origin since it was kept)
            raise httpx.ReadError("the origin closed the connection")
        self.response, self.body, self.received, self.held, self.ended, self.failure = None, [], 0, 0, False, None
        self.streaming = False
        self.limit = limit
        self.last_read = self.loop.time()
        self.transport.write(request)

    async def wait(self, until, timeout: float) -> None:
        """Until until() is true, a failure, or `timeout` seconds without a byte from the origin."""
        while not until():
            if self.failure is not None:
                raise self.failure
            self.waiter = self.loop.create_future()
            try:
                async with asyncio.timeout_at(self.last_read + timeout):
                    await self.waiter
            except TimeoutError:
                if self.loop.time() >= self.last_read + timeout:
                    self.close()
                    raise httpx.ReadTimeout(f"the origin sent nothing for {timeout} s") from None
            finally:
                self.waiter = None

    def take_body(self) -> list[bytes]:
        """The body's pieces received since the last take; the socket read again if it waited."""
        pieces, self.body, self.held = self.body, [], 0
        if self.paused and not self.closed:
            self.paused = False
            self.last_read = self.loop.time()  # (the silence was ours: the origin's is timed from now)
            self.transport.resume_reading()
        return pieces

    def ready_for_next(self) -> bool:
        """Whether the connection can carry another request, made ready for it if so (h11's next cycle)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        # (bytes past the answer's end would be taken for the next answer's: never used again then)
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE and not self.h11.trailing_data[0]:
            self.h11.start_next_cycle()
            return True
        return False


class Answer:
    """An answer's status and headers (as httpx.Headers, which the version checks read); its body
    read() whole or taken as it comes (pieces()), at most the request's `limit` bytes (a longer body
    is an error once `limit` bytes have come)."""

    def __init__(self, connection: Connection, timeout: float):
        self.connection, self.timeout = connection, timeout
        response = connection.response
        self.status_code = response.status_code
        self.headers = httpx.Headers(response.headers.raw_items())

    async def read(self) -> bytes:
        """The whole body."""
        connection = self.connection
        await connection.wait(lambda: connection.ended, self.timeout)
        return b"".join(connection.take_body())

    async def pieces(self):
        """The body as it arrives, in the pieces received since the last (at most HELD held at once);
        bytes-like (h11 gives bytearrays: joined or cut by the callers, as httpcore would copy them)."""
        connection = self.connection
        connection.streaming = True
        while True:
            await connection.wait(lambda: connection.body or connection.ended, self.timeout)
            if not connection.body:
                return
            for piece in connection.take_body():
                yield piece


class H11Pool:
    """Keep-alive connections to host:port: at most `most` open, `keep` of them kept idle for at most
    `expiry` seconds."""

    def __init__(self, host: str, port: int, most: int, keep: int, expiry: float, timeout: float):
        self.host, self.port = host, port
        self.most, self.keep, self.expiry, self.timeout = most, keep, expiry, timeout
        self.idle: collections.deque[Connection] = collections.deque()  # the most recently used last
        self.open = 0  # connections made and not yet given up
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.buffer = bytearray(BUFFER)  # every connection's socket reads (one loop: one read at a time)
        self.retired = False  # nothing kept any more (retire()); the requests made still go on
        self.closed = False  # nor any new request (close())

    @contextlib.asynccontextmanager
    async def get(self, request: h11.Request, limit: int | None):
        """The Answer to `request` (a GET, Host among its headers) once its head has come, whose body
        may be read (at most `limit` bytes; None: the caller counts). The connection is kept for others
        only when the answer was read to its end; else it is closed (an answer not wanted whole: a 200
        of the whole file)."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            connection, kept = await self.acquire(loop)
            try:
                connection.start(connection.h11.send(request) + connection.h11.send(h11.EndOfMessage()), limit)
                await connection.wait(lambda: connection.response is not None, self.timeout)
            except BaseException as e:
                self.give_back(connection, False)
                # A kept connection the origin closed meanwhile: nothing came; once more on a new one.
                if kept and attempt == 1 and connection.response is None \
                        and isinstance(e, (httpx.ReadError, httpx.RemoteProtocolError)):
                    continue
                raise
            break
        reusable = False
        try:
            yield Answer(connection, self.timeout)
            reusable = connection.ended and connection.failure is None
        finally:
            self.give_back(connection, reusable)

    async def acquire(self, loop) -> tuple[Connection, bool]:
        """A connection, and whether it was kept from an earlier request: a kept one, else a new one while
        fewer than `most` are open, else the next turn (at most the timeout: PoolTimeout)."""
        deadline = loop.time() + self.timeout
        while True:
            if self.closed:
                raise httpx.ConnectError("the pool is closed (mitmproxy is stopping)")
            if (connection := self.kept(loop)) is not None:
                return connection, True
            if self.open < self.most:
                return await self.connect(loop), False
            await self.next_turn(loop, deadline)

    def kept(self, loop) -> Connection | None:
        """The most recently used idle connection still open and not expired (those that are, closed)."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and loop.time() - connection.idle_since < self.expiry:
                return connection
            self.give_back(connection, False)
        return None

    async def next_turn(self, loop, deadline: float) -> None:
        """Until a connection is given back (or closed), at most until `deadline`."""
        waiter = loop.create_future()
        self.waiting.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as e:
            with contextlib.suppress(ValueError):
                self.waiting.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                self.next_waiter()  # (woken as we left: the turn goes to the next, never lost)
            if isinstance(e, TimeoutError):
                raise httpx.PoolTimeout(f"no connection to {self.host}:{self.port} free in {self.timeout} s") \
                    from None
            raise

    async def connect(self, loop) -> Connection:
        self.open += 1
        try:
            async with asyncio.timeout(self.timeout):
                eyeballs = {} if loop.get_task_factory() else {"happy_eyeballs_delay": HAPPY_EYEBALLS, "interleave": 1}
                _, connection = await loop.create_connection(lambda: Connection(loop, self.buffer), self.host,
                                                             self.port, **eyeballs)
            return connection
        except BaseException as e:
            self.open -= 1
            self.next_waiter()
            if isinstance(e, TimeoutError):  # (an OSError too: first)
                raise httpx.ConnectTimeout(f"no connection to {self.host}:{self.port} in {self.timeout} s") from None
            if isinstance(e, OSError):
                raise httpx.ConnectError(str(e)) from None
            raise

    def give_back(self, connection: Connection, reusable: bool) -> None:
        if reusable and not self.retired and len(self.idle) < self.keep and connection.ready_for_next():
            connection.idle_since = connection.loop.time()
            self.idle.append(connection)
        else:
            connection.close()
            self.open -= 1
        self.next_waiter()

    def next_waiter(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def retire(self) -> None:
        """The idle connections closed now, those in use when their answer is done; the requests waiting
        for a connection still made (a pool of an origin no longer among the most recently used)."""
        self.retired = True
        while self.idle:
            self.give_back(self.idle.pop(), False)

    def close(self) -> None:
        """As retire(), and no new requests (mitmproxy stops): those waiting for a connection fail."""
        self.closed = True
        self.retire()
        for waiter in self.waiting:
            if not waiter.done():
                waiter.set_result(None)
