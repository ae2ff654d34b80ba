"""The reaches into mitmproxy's private parts (addon/internals.py) still hold on this mitmproxy.

Each failure names the reach that broke and what degrades, so that an upgrade of mitmproxy shows here
first rather than as slower output or unclean ends that wait for the origin.
"""

import dataclasses
import inspect

from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server
from mitmproxy.test import taddons

from addon import internals


def test_proxyserver_keeps_its_connection_handlers_by_client_id():
    connections = getattr(Proxyserver(), "connections", None)
    assert isinstance(connections, dict), (
        "Proxyserver.connections is gone: the addon cannot find a flow's connections "
        "(HTTP/1.0 failures look complete, mitmproxy 12 may leave a failed response open)")
    assert "self.connections[connection_id] = handler" in inspect.getsource(Proxyserver), (
        "Proxyserver.connections is no longer keyed by the client connection's id")


def test_a_connection_handler_keeps_reader_writer_and_task_per_connection():
    fields = {f.name for f in dataclasses.fields(server.ConnectionIO)}
    assert {"handler", "reader", "writer"} <= fields, f"ConnectionIO has {sorted(fields)}, not handler/reader/writer"
    assert "self.transports" in inspect.getsource(server.ConnectionHandler.__init__), (
        "ConnectionHandler.transports is gone: see addon/internals.py")


def test_the_addon_finds_the_proxyserver():
    with taddons.context(Proxyserver()):
        assert internals.reaches_that_broke() == []
    with taddons.context():
        assert internals.reaches_that_broke() == ["the proxyserver addon"]


def test_httpcore_reads_answers_in_pieces_of_read_num_bytes():
    from httpcore._async.http11 import AsyncHTTP11Connection
    from httpcore._async.http2 import AsyncHTTP2Connection
    assert internals.read_origin_bodies_in_bigger_pieces(), (
        "httpcore's READ_NUM_BYTES is gone: origin bodies are read 64 KiB at a time again (the stream "
        "path slower, see addon/internals.py)")
    for connection_class in (AsyncHTTP11Connection, AsyncHTTP2Connection):
        assert connection_class.READ_NUM_BYTES == internals.ORIGIN_READ
        assert "self.READ_NUM_BYTES" in inspect.getsource(connection_class._read_incoming_data
                                                          if connection_class is AsyncHTTP2Connection
                                                          else connection_class._receive_event), (
            f"{connection_class.__name__} no longer reads READ_NUM_BYTES at a time")


def test_the_addon_tells_mitmproxy_stopping_from_a_reload_of_its_script():
    import asyncio

    async def run():
        with taddons.context() as tctx:
            assert not internals.mitmproxy_is_stopping(), (
                "Master.should_exit is gone: a reload of the script closes the origin pools at once, "
                "cutting the old addon's streams (see addon/internals.py)")
            tctx.master.shutdown()  # what mitmproxy does before its done hooks (it sets should_exit soon)
            await asyncio.sleep(0)
            assert internals.mitmproxy_is_stopping()

    asyncio.run(run())


def test_httpx_answers_give_their_socket_to_the_stream_path():
    import asyncio

    import httpx

    async def run():
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 2_000_000)
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        async with server, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            async with client.stream("GET", url) as response:
                taken = internals.take_origin_socket(response)
                assert taken is not None, (
                    "the socket under an httpx answer can no longer be taken (httpx, httpcore, anyio or h11 "
                    "moved a part: see addon/internals.py): the stream path reads origins through httpx, slower")
                assert sum(map(len, taken.received)) + taken.remaining == 2_000_000
                taken.transport.close()
    asyncio.run(run())
