"""Every reach into mitmproxy's private parts, in one place.

mitmproxy's addon API gives a flow, its connections' public attributes and `flow.kill()`; it gives no
way to look at a connection's socket or to end it now. The audio-only edge needs two such things,
each below with what it reaches, why, and since when it holds. Both go through one path:

    ctx.master.addons.get("proxyserver").connections[flow.client_conn.id].transports[connection]

`Proxyserver.connections` (a dict of `ConnectionHandler` by client connection id) and
`ConnectionHandler.transports` (a dict of `ConnectionIO(handler task, reader, writer)` by connection)
are private. Both exist in mitmproxy 7.0 through 12.3 (checked in its source and by the tests that
use them: tests/test_internals.py fails with a message naming the reach when one breaks). Each reach
degrades to doing nothing when the path is not there (unit tests with no proxy server, or a future
mitmproxy): the feature it serves gets slower or less precise, never wrong.

Three more: into mitmproxy's Master, whether it is stopping (mitmproxy_is_stopping); into httpcore
(under httpx, which asks the origin), the size of its reads (read_origin_bodies_in_bigger_pieces), and
the socket under an answer whose body we read ourselves (take_origin_socket).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import NamedTuple

from mitmproxy import connection, ctx, http

# What one read of an origin's body may return: asyncio's socket transports receive at most 256 KiB
# at a time, so more would change nothing.
ORIGIN_READ = 256 << 10


def read_origin_bodies_in_bigger_pieces() -> bool:
    """Let httpcore read an origin's answer up to ORIGIN_READ bytes at a time rather than 64 KiB.

    Why: every audio request's origin body is read by httpx, and each read passes through httpcore,
    h11 and anyio with a timeout scope of its own, a cost a read however big. Read 64 KiB at a time,
    a streamed answer took more CPU than mitmproxy's own relaying of the whole file; 256 KiB at a
    time, about a third less (docs/speed.md). httpx has no setting for it: httpcore reads `READ_NUM_BYTES` (a class attribute, 64 KiB) of AsyncHTTP11Connection and
    AsyncHTTP2Connection, since httpcore 0.13 through 1.0.9. False when it is gone (reads stay
    64 KiB: slower, never wrong)."""
    try:
        from httpcore._async import http11
    except ImportError:
        return False
    classes = [http11.AsyncHTTP11Connection]
    try:
        from httpcore._async import http2  # needs the h2 package, as httpx's http2=True does
        classes.append(http2.AsyncHTTP2Connection)
    except ImportError:
        pass
    done = False
    for connection_class in classes:
        if isinstance(getattr(connection_class, "READ_NUM_BYTES", None), int):
            connection_class.READ_NUM_BYTES = max(connection_class.READ_NUM_BYTES, ORIGIN_READ)
            done = True
    return done


class OriginSocket(NamedTuple):
    """An origin's connection taken from httpx after the answer's headers, to read its body ourselves."""
    transport: asyncio.Transport  # its protocol is still anyio's: the caller sets its own at once
    received: list[bytes]  # body bytes already read off the socket (h11's buffer, then anyio's queue)
    remaining: int  # body bytes still to come from the socket


def take_origin_socket(response) -> OriginSocket | None:
    """The plain TCP connection under an httpx answer (HTTP/1.1, a Content-Length, no TLS in Python),
    with what has been read of its body so far; None when the answer is not such (HTTP/2, TLS, chunked
    or close-delimited bodies, a body already begun) or a reach below is gone.

    Why: reading a big body through httpx costs, per read of at most 256 KiB, a pass through httpcore,
    h11 (which copies each piece twice), anyio's timeout scope and its pause and resume of the socket
    (two epoll calls): a streamed audio-only GET of the 460 MB file cost mitmdump more CPU in that than
    in the core (docs/speed.md). A protocol of our own on the same transport reads into a 1 MiB buffer.
    The path: httpx's Response.stream (BoundAsyncStream._stream, AsyncResponseStream._httpcore_stream;
    httpx 0.23 through 0.29), httpcore's PoolByteStream._stream, HTTP11ConnectionByteStream._connection,
    AsyncHTTP11Connection._h11_state and ._network_stream (httpcore 0.16 through 1.0.9), AnyIOStream._stream,
    anyio's SocketStream._transport and ._protocol.read_queue (anyio 3.0 through 4.x), h11's
    Connection._receive_buffer and ContentLengthReader._remaining (h11 0.12 through 0.16). h11 never
    sees the body's end, so closing the answer (response.aclose()) closes the connection rather than
    pooling it: a connection a streamed GET, nothing else."""
    try:
        stream = response.stream._stream._httpcore_stream._stream
        connection = stream._connection
        state = connection._h11_state
        socket_stream = connection._network_stream._stream
        transport, protocol = socket_stream._transport, socket_stream._protocol
        queue, reader, buffered = protocol.read_queue, state._reader, state._receive_buffer
        if (type(reader).__name__ != "ContentLengthReader" or reader._remaining != reader._length
                or state.their_state.__name__ != "SEND_BODY" or not isinstance(transport, asyncio.Transport)
                or transport.get_extra_info("sslcontext") is not None or transport.is_closing()
                or protocol.exception is not None or protocol.is_at_eof or response.is_stream_consumed):
            return None
        received = [bytes(buffered), *queue]
    except (AttributeError, TypeError):
        return None
    remaining = reader._remaining - sum(map(len, received))
    if remaining < 0:  # (more than the body: another answer's bytes, which nobody will read)
        return None
    queue.clear()
    protocol.read_event.set()  # (anyio's reader, were it ever to run, finds the queue empty: no wait)
    return OriginSocket(transport, [r for r in received if r], remaining)


def _io(flow: http.HTTPFlow, conn: connection.Connection):
    """mitmproxy's ConnectionIO for one of the flow's connections, or None."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id) if proxyserver else None
    return getattr(handler, "transports", {}).get(conn) if handler else None


def _socket(flow: http.HTTPFlow, conn: connection.Connection) -> socket.socket | None:
    io = _io(flow, conn)
    writer = getattr(io, "writer", None)
    return writer.get_extra_info("socket") if writer is not None else None


def close_client_connection(flow: http.HTTPFlow) -> None:
    """Close the client's connection once what was written to it has left (HTTP/1 only: an HTTP/2
    connection carries other streams, and there mitmproxy resets the one stream).

    Why: when our server ends an answer uncleanly, mitmproxy 11.0 closes the client connection, but
    mitmproxy 12.3 was seen to leave it open when the server's whole body had already been read (on
    the first request of a new proxy): the client then waits for ever on a body that will never end.
    Closing it ourselves ends the response on both. Since mitmproxy 7.0."""
    io = _io(flow, flow.client_conn)
    writer = getattr(io, "writer", None)
    if writer is not None and flow.request.http_version.startswith("HTTP/1"):
        writer.close()


def reset_client_on_close(flow: http.HTTPFlow) -> None:
    """Make the coming close of the client's connection a reset (SO_LINGER 0).

    Why: an HTTP/1 body without chunked framing (an HTTP/1.0 client) ends with the connection, so a
    normal close says "complete"; a failed extraction must not look like a whole file. mitmproxy has no
    public way to reset a connection. Since mitmproxy 7.0."""
    sock = _socket(flow, flow.client_conn)
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def mitmproxy_is_stopping() -> bool:
    """Whether the `done` hook being called is mitmproxy's stop, not a reload of our script (an edit
    of audio_only.py, which mitmproxy watches; the script taken off `scripts`): both call `done`.

    Why: at a stop, the origin pools close at once; at a reload, the answers the old addon is still
    streaming (a live FLV, a long GET) go on to their end, and its pools close once those are done
    (closing them at once ended every such answer uncleanly, mid-stream). `Master.should_exit`, the
    asyncio.Event that `Master.shutdown` sets before the done hooks run, is not part of the addon
    API; it is there in mitmproxy 11.0 through 12.3 (tests/test_internals.py). True when it is not:
    the pools close at once, as at a stop."""
    master = getattr(ctx, "master", None)  # (unset, it is only an annotation in mitmproxy.ctx)
    should_exit = getattr(master, "should_exit", None)
    return not hasattr(should_exit, "is_set") or should_exit.is_set()


def reaches_that_broke() -> list[str]:
    """The reaches above that the running mitmproxy no longer offers (empty when all hold): checked
    once at start so that the log says so, rather than a feature silently degrading."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    if proxyserver is None:
        return ["the proxyserver addon"]
    if not isinstance(getattr(proxyserver, "connections", None), dict):
        return ["Proxyserver.connections"]
    return []
