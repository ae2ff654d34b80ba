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

Two more: into mitmproxy's Master, whether it is stopping (mitmproxy_is_stopping); into httpcore
(under httpx, which asks the origin), the size of its reads (read_origin_bodies_in_bigger_pieces).
"""

from __future__ import annotations

import socket
import struct

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
