"""The h11 pool of the file path's requests (addon/h11_pool.py), against origins on 127.0.0.1 that
misbehave as origins do: the bytes as sent or one of httpx's failures, never a short or foreign body;
connections kept only when the answer was read to its end, and no more than the pool allows."""

import asyncio
import os

import h11
import httpx
import pytest

from addon.h11_pool import H11Pool

BODY = os.urandom(3 << 20)


class Origin:
    """An HTTP/1.1 origin answering each request with `answer(n, writer)` (n: the request's number,
    from 0); it counts the connections made and those open at once."""

    def __init__(self, answer):
        self.answer, self.requests, self.connections, self.open, self.most_open = answer, 0, 0, 0, 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                n, self.requests = self.requests, self.requests + 1
                if await self.answer(n, writer) == "close":
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


def head(length: int) -> bytes:
    return b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n" % length


def request(port: int) -> h11.Request:
    return h11.Request(method="GET", target="/a.mp4",
                       headers=[("Host", f"127.0.0.1:{port}"), ("Range", "bytes=0-9,20-29")])


def run(answer, body, most=4, timeout=5.0, limit=len(BODY) + 100):
    """body(pool, port) with a pool in front of an origin answering with `answer`; the origin."""
    async def main():
        origin = Origin(answer)
        port = await origin.start()
        pool = H11Pool("127.0.0.1", port, most=most, keep=most, expiry=30, timeout=timeout)
        try:
            await body(pool, port, limit)
            assert pool.open == len(pool.idle)  # every connection given back, once
        finally:
            pool.close()
            origin.server.close()
        return origin
    return asyncio.run(asyncio.wait_for(main(), 30))


async def get(pool, port, limit):
    async with pool.get(request(port), limit) as answer:
        assert answer.status_code == 206
        return await answer.read()


def test_answers_are_read_whole_on_one_kept_connection():
    async def answer(n, writer):
        if n % 2:  # chunked, in pieces
            writer.write(b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n")
            for at in range(0, len(BODY), 1 << 20):
                piece = BODY[at : at + (1 << 20)]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(head(len(BODY)) + BODY)

    async def body(pool, port, limit):
        for _ in range(4):
            assert await get(pool, port, limit) == BODY
    origin = run(answer, body)
    assert origin.requests == 4 and origin.connections == 1


def test_a_kept_connection_the_origin_closed_is_not_used_again():
    """An origin that closes each connection after its answer (its keep-alive timeout, or
    `Connection: close` left out): each request after the first goes on a new connection."""
    async def answer(n, writer):
        writer.write(head(len(BODY)) + BODY)
        await writer.drain()
        await asyncio.sleep(0.05)
        return "close"

    async def body(pool, port, limit):
        for _ in range(3):
            assert await get(pool, port, limit) == BODY
            await asyncio.sleep(0.1)  # (the close has come)
    origin = run(answer, body)
    assert origin.requests == 3 and origin.connections == 3


def test_a_request_on_a_kept_connection_closed_unanswered_is_sent_again_once():
    """The keep-alive race: the origin closes a kept connection as the request arrives (its idle timeout
    at that moment); the GET is sent again on a new connection, once."""
    async def answer(n, writer):
        if n == 1:
            return "close"
        writer.write(head(len(BODY)) + BODY)

    async def body(pool, port, limit):
        assert await get(pool, port, limit) == BODY
        assert await get(pool, port, limit) == BODY
    origin = run(answer, body)
    assert origin.requests == 3 and origin.connections == 2


def test_a_new_connection_that_fails_is_not_tried_again():
    async def answer(n, writer):
        return "close"  # the request read, nothing answered

    async def body(pool, port, limit):
        with pytest.raises(httpx.RemoteProtocolError):
            await get(pool, port, limit)
    origin = run(answer, body)
    assert origin.requests == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_cut_short_is_an_error_never_a_short_body(framing):
    async def answer(n, writer):
        if framing == "length":
            writer.write(head(len(BODY)) + BODY[: len(BODY) // 2])
        else:
            writer.write(b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s"
                         % (len(BODY), BODY[: len(BODY) // 2]))
        return "close"

    async def body(pool, port, limit):
        with pytest.raises(httpx.RemoteProtocolError, match="complete|incomplete|closed"):
            await get(pool, port, limit)
    run(answer, body)


def test_a_silent_origin_is_a_read_timeout():
    async def answer(n, writer):
        writer.write(head(len(BODY)) + BODY[:1000])
        await writer.drain()
        await asyncio.sleep(3)

    async def body(pool, port, limit):
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await get(pool, port, limit)
        assert asyncio.get_running_loop().time() - started < 2
    run(answer, body, timeout=0.3)


def test_an_origin_slow_but_never_silent_for_the_timeout_is_read():
    async def answer(n, writer):
        writer.write(head(len(BODY)))
        for at in range(0, len(BODY), len(BODY) // 8):
            writer.write(BODY[at : at + len(BODY) // 8])
            await writer.drain()
            await asyncio.sleep(0.1)  # 0.8 s in all, twice the timeout, never near it silent

    async def body(pool, port, limit):
        assert await get(pool, port, limit) == BODY
    run(answer, body, timeout=0.4)


def test_a_body_past_the_limit_is_an_error_and_the_connection_is_not_kept():
    async def body(pool, port, limit):
        with pytest.raises(httpx.RemoteProtocolError, match="longer than the 1000 bytes"):
            await get(pool, port, 1000)
        assert await get(pool, port, limit) == BODY
    origin = run(whole_answer, body)
    assert origin.connections == 2


async def whole_answer(n, writer):
    writer.write(head(len(BODY)) + BODY)


def test_an_answer_left_unread_closes_its_connection():
    """A caller that wants only the head (a 200 of the whole file, refused) leaves the body: the
    connection is closed, never kept with the rest of that body in it."""
    async def body(pool, port, limit):
        async with pool.get(request(port), limit) as answer:
            assert answer.status_code == 206
        assert await get(pool, port, limit) == BODY
    origin = run(whole_answer, body)
    assert origin.connections == 2


def test_no_more_connections_than_the_pool_allows():
    async def answer(n, writer):
        await asyncio.sleep(0.02)
        writer.write(head(len(BODY)) + BODY)

    async def body(pool, port, limit):
        got = await asyncio.gather(*(get(pool, port, limit) for _ in range(12)))
        assert got == [BODY] * 12
    origin = run(answer, body, most=3)
    assert origin.most_open == 3 and origin.connections == 3 and origin.requests == 12


def test_a_closed_pool_asks_nothing_more():
    async def body(pool, port, limit):
        assert await get(pool, port, limit) == BODY
        pool.close()
        with pytest.raises(httpx.ConnectError):
            await get(pool, port, limit)
    origin = run(whole_answer, body)
    assert origin.requests == 1


def test_no_origin_is_a_connect_error():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = H11Pool("127.0.0.1", port, most=2, keep=2, expiry=30, timeout=5)
        with pytest.raises(httpx.ConnectError):
            await get(pool, port, 100)
        assert pool.open == 0
    asyncio.run(main())


def test_only_plain_http_origins_reached_directly_go_through_it():
    from addon.origin_client import OriginClient, Route
    client = OriginClient()
    assert client.h11_pool(Route("http", "o", 80, None)) is not None
    assert client.h11_pool(Route("https", "o", 443, None, "o")) is None  # (HTTP/2 maybe, TLS: httpx)
    assert client.h11_pool(Route("http", "o", 80, "http://proxy:3128")) is None  # (upstream mode: httpx)


def test_a_body_taken_as_it_comes_holds_the_origin_back_while_its_reader_waits():
    """pieces(): the bytes as sent; while the reader does not take them, the socket is not read (the
    origin's writes wait) and at most HELD bytes, and a socket read, are held; the time the reader
    took is not the origin's silence."""
    from addon import h11_pool
    big = os.urandom(32 << 20)
    sent = []

    async def answer(n, writer):
        writer.write(head(len(big)))
        for at in range(0, len(big), 1 << 20):
            writer.write(big[at : at + (1 << 20)])
            await writer.drain()
            sent.append(at + (1 << 20))

    async def body(pool, port, limit):
        got, held = [], []
        async with pool.get(request(port), len(big)) as answer:
            async for piece in answer.pieces():
                got.append(piece)
                if len(got) == 2:
                    await asyncio.sleep(0.6)  # a reader that waits, twice the read timeout
                    held.append(answer.connection.held)
                    at_pause = sent[-1] if sent else 0
                    await asyncio.sleep(0.3)
                    assert (sent[-1] if sent else 0) == at_pause  # the origin waits for us
        assert b"".join(got) == big
        assert held[0] <= h11_pool.HELD + h11_pool.BUFFER
        assert sent[-1] == len(big)
    run(answer, body, timeout=0.3)


def test_a_turn_given_to_a_request_cancelled_meanwhile_goes_to_the_next():
    """One connection at most: A holds it, B and C wait. A gives it back, which wakes B, and B is
    cancelled before it runs (its client left): C gets the connection, not a wait for the timeout."""
    async def answer(n, writer):
        await asyncio.sleep(0.1)
        writer.write(head(len(BODY)) + BODY)

    async def body(pool, port, limit):
        waiting = []

        async def first():
            got = await get(pool, port, limit)
            waiting[0].cancel()  # (B was woken by the give-back just now, and has not run)
            return got
        a = asyncio.create_task(first())
        await asyncio.sleep(0.02)
        waiting.append(asyncio.create_task(get(pool, port, limit)))
        await asyncio.sleep(0.02)
        c = asyncio.create_task(get(pool, port, limit))
        started = asyncio.get_running_loop().time()
        assert await a == BODY and await c == BODY
        assert asyncio.get_running_loop().time() - started < 1.5
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
    run(answer, body, most=1, timeout=3)


def test_a_request_that_finds_no_free_connection_in_time_is_a_pool_timeout():
    async def answer(n, writer):  # 1.5 s, never silent for the timeout
        writer.write(head(len(BODY)))
        for at in range(0, len(BODY), len(BODY) // 15):
            writer.write(BODY[at : at + len(BODY) // 15])
            await writer.drain()
            await asyncio.sleep(0.1)

    async def body(pool, port, limit):
        held = asyncio.create_task(get(pool, port, limit))
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.PoolTimeout):
            await get(pool, port, limit)
        assert 0.4 < asyncio.get_running_loop().time() - started < 2
        assert await held == BODY
    run(answer, body, most=1, timeout=0.5)


def test_a_retired_pool_keeps_nothing_and_still_answers_what_was_asked():
    async def answer(n, writer):
        await asyncio.sleep(0.1)
        writer.write(head(len(BODY)) + BODY)

    async def body(pool, port, limit):
        asked = [asyncio.create_task(get(pool, port, limit)) for _ in range(3)]  # (one waits: most=2)
        await asyncio.sleep(0.02)
        pool.retire()
        assert await asyncio.gather(*asked) == [BODY] * 3
        assert not pool.idle and pool.open == 0
    origin = run(answer, body, most=2)
    assert origin.connections == 3


@pytest.mark.parametrize("when", ["after the answer", "in the answer's own read", "while idle"])
def test_bytes_no_request_asked_for_are_never_taken_for_the_next_answer(when):
    """An origin that sends an answer nobody asked for ("VIDEO"): in the same write as a 3 MB answer
    (after it, in a later read), in the same read as a small answer, or later, while the connection
    waits in the pool. That connection is never used again: the next request gets its own answer."""
    wanted = b"AUDIO" if when == "in the answer's own read" else BODY

    async def answer(n, writer):
        writer.write(head(len(wanted)) + wanted)
        if n == 0:
            if when == "while idle":
                await writer.drain()
                await asyncio.sleep(0.05)
            writer.write(head(5) + b"VIDEO")

    async def body(pool, port, limit):
        assert await get(pool, port, limit) == wanted
        await asyncio.sleep(0.2)
        assert await get(pool, port, limit) == wanted
    origin = run(answer, body)
    assert origin.connections == 2 and origin.requests == 2


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="no eager tasks before Python 3.12")
def test_connections_are_made_under_mitmproxy_12s_eager_task_factory():
    """mitmproxy 12 runs its loop with asyncio's eager task factory, under which asyncio's own happy
    eyeballs failed (an AssertionError on Python 3.13.0): every request of a file answer was a 500."""
    async def body(pool, port, limit):
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        assert await get(pool, port, limit) == BODY
    run(whole_answer, body)
