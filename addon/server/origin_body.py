"""An origin's body read straight from its socket into a large buffer, for the stream path.

httpx asks the origin and reads the answer's headers (its pool, TLS, upstream proxies, timeouts);
for a big body over plain HTTP/1.1 with a Content-Length, the rest is read here: a BufferedProtocol
of our own on the same transport receives into a 1 MiB buffer, and the answer takes whatever has
arrived at each turn, whole. Reading so costs a fraction of httpx's per-read path (docs/speed.md), and
the pieces grow by themselves while the core is busy (the socket is read once per turn, into what is
free of the buffer), yet a live stream's few bytes still leave at once.

Backpressure holds: the buffer is never grown. Once it is full, or the body is complete, the socket
is no longer read (pause_reading) until the answer takes the data, so a paused client keeps the
origin waiting rather than our memory filling. Failures are httpx's, as the answer expects them:
ReadTimeout when the origin is silent for the read timeout, RemoteProtocolError when it closes before
the body's end (with httpx's words), ReadError when the connection breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from addon import internals

BUFFER = 1 << 20  # bytes received before the socket waits for the answer to take them
# The answer's code keeps the piece before the last (its loop variables, the core's output views of it):
# a buffer is used again two pieces later. At most BUFFER * (1 + SPARES) a body.
SPARES = 2
HAND_OVER = 64 << 10  # a fill this big is handed over as it is (a new buffer takes its place); smaller ones are copied


class BodyProtocol(asyncio.BufferedProtocol):
    """Receives the rest of one body (`remaining` bytes) into a buffer that the answer empties."""

    def __init__(self, transport: asyncio.Transport, remaining: int, length: int):
        self.transport = transport
        self.remaining = remaining  # bytes still to come from the socket
        self.length = length  # the whole body's (for the message when it ends early)
        self.buffer = bytearray(BUFFER)
        self.spares: list[bytearray] = []  # buffers handed over, used again once no one holds them
        self.filled = 0
        self.paused = True  # (set from the transport's state once it is ours)
        self.waiter: asyncio.Future | None = None
        self.failure: Exception | None = None  # why no more will come, before the body's end

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)[self.filled:]  # never empty: reading pauses when the buffer is full

    def buffer_updated(self, n: int) -> None:
        n = min(n, self.remaining)  # (bytes past the body's end belong to no one)
        self.filled += n
        self.remaining -= n
        if self.filled == len(self.buffer) or self.remaining <= 0:
            self.pause()
        self.wake()

    def eof_received(self) -> None:
        if self.remaining > 0:
            received = self.length - self.remaining
            self.failure = httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body "
                f"(received {received} bytes, expected {self.length})")
        self.wake()  # (returning None: the transport closes)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remaining > 0 and self.failure is None:
            self.failure = httpx.ReadError(str(exc) if exc else "the origin's connection was closed")
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.remaining > 0 and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()

    async def read(self, timeout: float | None) -> memoryview | bytes | None:
        """What has arrived since the last read (waiting for some, at most `timeout` seconds of the
        origin's silence); None at the body's end."""
        while not self.filled:
            if self.remaining <= 0:
                return None
            if self.failure is not None:
                raise self.failure
            self.resume()
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self.waiter
            except TimeoutError:
                raise httpx.ReadTimeout(f"the origin sent nothing for {timeout} s") from None
            finally:
                self.waiter = None
        if self.filled >= HAND_OVER:
            piece = memoryview(self.buffer)[: self.filled]  # nothing writes to it while it is held
            free = next((spare for spare in self.spares if not held(spare)), None)
            if free is not None:
                self.spares.remove(free)
            self.spares = [*self.spares[-(SPARES - 1):], self.buffer]
            self.buffer = free if free is not None else bytearray(BUFFER)
        else:
            piece = bytes(memoryview(self.buffer)[: self.filled])
        self.filled = 0
        self.resume()
        return piece


def held(buffer: bytearray) -> bool:
    """Whether a view of `buffer` is still alive somewhere (the core may keep one of a piece it was fed):
    a bytearray with views cannot change its size. (A new buffer costs more than the check: zeroing
    1 MiB is about the core's time for it.)"""
    try:
        buffer.append(0)
    except BufferError:
        return True
    del buffer[-1]
    return False


async def pieces(response: httpx.Response) -> AsyncIterator[memoryview | bytes]:
    """The body of `response` (whose headers httpx has read) as it arrives: from the socket itself when
    it can be taken (internals.take_origin_socket), else through httpx. The read timeout is the one
    httpx was given for the request (httpcore's `timeout` extension)."""
    timeout = response.request.extensions.get("timeout", {}).get("read")
    length = response.headers.get("content-length", "")
    taken = internals.take_origin_socket(response) if length.isdigit() else None
    if taken is None:
        async for piece in response.aiter_raw():
            yield piece
        return
    # Ours from now on, before anything is handed out: bytes arriving meanwhile land in our buffer (anyio
    # leaves the transport paused between its reads, but that is its affair, not a promise).
    protocol = BodyProtocol(taken.transport, taken.remaining, int(length))
    taken.transport.set_protocol(protocol)
    protocol.paused = not taken.transport.is_reading()
    for piece in taken.received:
        yield piece
    while (piece := await protocol.read(timeout)) is not None:
        yield piece
