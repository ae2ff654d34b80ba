"""The stream path's origin body read from the socket itself (addon/server/origin_body.py): the bytes as
sent, httpx's failures as the answer expects them, and the origin held back by a consumer that waits."""

import asyncio
import hashlib
import os

import httpx
import pytest

from addon import internals
from addon.server import origin_body

BODY = os.urandom(5 << 20) + b"the end"


@pytest.fixture
def taken(monkeypatch):
    """What internals.take_origin_socket gave each answer read (None: read through httpx)."""
    results = []

    def spy(response):
        results.append(internals.take_origin_socket.__wrapped__(response))
        return results[-1]
    spy.__wrapped__ = internals.take_origin_socket
    monkeypatch.setattr(internals, "take_origin_socket", spy)
    return results


async def origin(handle):
    """An HTTP/1.1 origin on 127.0.0.1 answering every request with `handle(writer)`; its URL."""
    async def on_connection(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        try:
            await handle(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def answering(body: bytes, send: int | None = None, then=None, chunked=False):
    async def handle(writer):
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n" + framing + b"\r\n\r\n")
        data = body[:send] if send is not None else body
        if chunked:
            data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        for at in range(0, len(data), 300_000):
            writer.write(data[at : at + 300_000])
            await writer.drain()
        if then is not None:
            await then()
    return handle


async def read_all(handle, timeout=5.0):
    server, url = await origin(handle)
    async with server, httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=timeout)) as client:
        async with client.stream("GET", url) as response:
            sizes = [len(piece) async for piece in origin_body.pieces(response)]
        return sizes, response


def test_the_body_comes_whole_and_in_large_pieces():
    async def run():
        kept = []  # views kept past their turn, as a core may keep one: their bytes must never change

        async def collect(handle):
            server, url = await origin(handle)
            async with server, httpx.AsyncClient() as client:
                async with client.stream("GET", url) as response:
                    assert internals.take_origin_socket(response) is not None, "the socket was not taken"
                async with client.stream("GET", url) as response:
                    pieces = []
                    async for piece in origin_body.pieces(response):
                        pieces.append(bytes(piece))
                        kept.append((piece, bytes(piece)))
                        await asyncio.sleep(0.002)  # (the origin gets ahead: the pieces grow)
            return pieces
        pieces = await collect(answering(BODY))
        assert hashlib.sha256(b"".join(pieces)).digest() == hashlib.sha256(BODY).digest()
        assert max(map(len, pieces)) > 256 << 10, [len(p) for p in pieces]
        assert max(map(len, pieces)) <= origin_body.BUFFER
        assert all(bytes(view) == copy for view, copy in kept), "a buffer still held was written to again"
    asyncio.run(run())


def test_an_answer_that_cannot_be_taken_is_read_through_httpx(taken):
    sizes, _ = asyncio.run(read_all(answering(BODY, chunked=True)))
    assert sum(sizes) == len(BODY) and taken == []  # (no Content-Length: not even tried)


def test_an_origin_closing_early_is_httpx_s_error_with_its_words(taken):
    with pytest.raises(httpx.RemoteProtocolError, match=f"received 3000000 bytes, expected {len(BODY)}"):
        asyncio.run(read_all(answering(BODY, send=3_000_000)))
    assert taken and taken[0] is not None


def test_a_silent_origin_is_a_read_timeout(taken):
    async def stall():
        await asyncio.sleep(10)
    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(read_all(answering(BODY, send=2_000_000, then=stall), timeout=0.3))
    assert taken and taken[0] is not None


def test_a_consumer_that_waits_holds_the_origin_back(taken):
    """Backpressure: what the origin could send while nobody reads is one buffer and the sockets'
    buffers, never the body."""
    big = b"\0" * (200 << 20)
    sent = 0

    async def handle(writer):
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
        for at in range(0, len(big), 1 << 20):
            writer.write(big[at : at + (1 << 20)])
            await writer.drain()
            sent = at + (1 << 20)

    async def run():
        server, url = await origin(handle)
        async with server, httpx.AsyncClient() as client:
            async with client.stream("GET", url) as response:
                body = origin_body.pieces(response)
                got = 0
                while got < 8 << 20:  # (past what httpx had read: our protocol is the one receiving now)
                    got += len(await anext(body))
                before = sent
                await asyncio.sleep(1.0)  # a paused client: we do not read
                assert sent - before < 16 << 20, f"the origin sent {(sent - before) >> 20} MiB more while nobody read"
                async for piece in body:  # and once read again, the whole body comes, nothing lost
                    got += len(piece)
                assert got == len(big)
    asyncio.run(run())
    assert taken and taken[0] is not None


def test_buffers_are_used_again_once_no_one_holds_them():
    """A new 1 MiB buffer a read (zeroed) costs about what the core spends on it: released ones come back."""
    class Transport:
        def pause_reading(self): pass
        def resume_reading(self): pass
        def is_closing(self): return False

    async def run():
        protocol = origin_body.BodyProtocol(Transport(), 20 << 20, 20 << 20)
        buffers, kept = set(), None
        for n in range(12):
            view = protocol.get_buffer(-1)
            view[: 1 << 20] = bytes([n]) * (1 << 20)
            del view
            protocol.buffer_updated(1 << 20)
            piece = await protocol.read(1)
            buffers.add(id(piece.obj))
            if n == 3:
                kept = piece  # held for good, as a core might: never written to again
        assert len(buffers) <= 2 + origin_body.SPARES, len(buffers)
        assert bytes(kept) == bytes([3]) * (1 << 20)
    asyncio.run(run())
