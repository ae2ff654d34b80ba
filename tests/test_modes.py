"""The addon in every mode: upstream (through another proxy) and in front of an HTTPS origin."""

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from helpers import MEDIA, STREAM_PATH, Proxy, extract, http_get
from origin import Origin

pytestmark = pytest.mark.e2e


def test_upstream_mode(origin, tmp_path):
    """Client -> our proxy (upstream mode) -> a plain mitmdump -> origin. Our own Range requests (the
    moov from the tail, the moov before a seek's answer) go through the upstream proxy too."""
    # The upstream proxy marks what passes through it, so the origin can tell.
    upstream = Proxy(tmp_path / "upstream.log", "--set", "audio_only_domains=nothing.invalid",
                     "--set", "modify_headers=/~q/X-Through/upstream")
    ours = Proxy(tmp_path / "ours.log", "--mode", f"upstream:http://127.0.0.1:{upstream.port}", *STREAM_PATH)
    port = origin.server_address[1]
    base = f"http://127.0.0.1:{port}"
    try:
        for name in ("h264_aac.flv", "h264_aac.mp4", "moov_end.mp4"):
            reply = http_get(ours.port, f"{base}/{name}?ali_audio_only=1", host=f"127.0.0.1:{port}")
            assert reply.clean and reply.body == extract((MEDIA / name).read_bytes()), name
        reply = http_get(ours.port, f"{base}/moov_end.mp4?ali_audio_only=1&slow=1&via=upstream", host=f"127.0.0.1:{port}")
        assert reply.clean and reply.body == extract((MEDIA / "moov_end.mp4").read_bytes())
        assert "moov fetched from the tail" in ours.wait_for_log("moov fetched from the tail")
        reply = http_get(ours.port, f"{base}/h264_aac.mp4?ali_audio_only=1&start=500&case=upstream-seek", host=f"127.0.0.1:{port}")
        assert reply.status == 400 and b"past the end" in reply.body
        # Both reached the origin through the upstream proxy.
        tail = [h for m, p, h in origin.requests if "Range" in h and "via=upstream" in p]
        seek = [h for m, p, h in origin.requests if "Range" in h and "case=upstream-seek" in p]
        assert tail and seek and all(h.get("X-Through") == "upstream" for h in tail + seek), (tail, seek)
    finally:
        ours.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def tls_origin(media_root, tmp_path_factory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = Origin(media_root)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.cert_folder = folder
    server.start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("trust", ["ssl_insecure=true", "ssl_verify_upstream_trusted_ca={folder}/cert.pem"])
def test_https_origin_and_the_tail_fetch_over_tls(tls_origin, tmp_path, trust):
    """Our own Range requests verify the origin as mitmproxy does: not at all when told so, else
    against the CA the options name (here the origin's self-signed certificate)."""
    port = tls_origin.server_address[1]
    proxy = Proxy(tmp_path / "tls.log", "--mode", f"reverse:https://localhost:{port}", *STREAM_PATH,
                  "--set", trust.format(folder=tls_origin.cert_folder))
    try:
        for name in ("h264_aac.mp4", "h264_aac.flv"):
            reply = http_get(proxy.port, f"/{name}?ali_audio_only=1")
            assert reply.clean and reply.body == extract((MEDIA / name).read_bytes()), name
        reply = http_get(proxy.port, "/moov_end.mp4?ali_audio_only=1&slow=1")
        assert reply.clean and reply.body == extract((MEDIA / "moov_end.mp4").read_bytes())
        assert "moov fetched from the tail" in proxy.wait_for_log("moov fetched from the tail")
    finally:
        proxy.stop()


def test_sites_on_one_address_get_connections_of_their_own():
    """Two HTTPS sites on one address (a CDN's) reached with their own TLS server names: their requests
    go in separate pools, so that a connection whose certificate was checked for one name never
    carries the other's requests (each still asks with its own server name)."""
    from mitmproxy.test import taddons, tflow

    from addon.origin_client import OriginClient, Target
    with taddons.context():
        flows = []
        for name in ("a.example", "b.example"):
            flow = tflow.tflow()
            flow.request.scheme, flow.request.host, flow.request.port = "https", name, 443
            flow.server_conn.address, flow.server_conn.sni = ("192.0.2.1", 443), name
            flows.append(flow)
        a, b = (Target.of(f) for f in flows)
        assert (a.sni, b.sni) == ("a.example", "b.example")
        assert a.route != b.route and a.route.host == b.route.host == "192.0.2.1"
        client = OriginClient()
        client.tls = ssl.create_default_context()
        assert client.pool(a.route) is not client.pool(b.route)
        assert client.pool(a.route) is client.pool(Target.of(flows[0]).route)


def test_the_pool_evicted_is_the_least_recently_used():
    """Past MAX_POOLS origins, the pool closed is the one used longest ago, not the oldest made: a busy
    origin's pool (whose connections a close would cut) stays."""
    from mitmproxy.test import taddons

    from addon.origin_client import MAX_POOLS, OriginClient, Route
    with taddons.context():
        client = OriginClient()
        client.tls = ssl.create_default_context()
        routes = [Route("http", f"192.0.2.{k}", 80, None) for k in range(MAX_POOLS + 1)]
        busy = client.pool(routes[0])
        for route in routes[1:MAX_POOLS]:
            client.pool(route)
        assert client.pool(routes[0]) is busy  # used again: now the most recent
        client.pool(routes[MAX_POOLS])  # one too many
        assert routes[0] in client.pools and routes[1] not in client.pools and len(client.pools) == MAX_POOLS


def local_client_and_route(port: int):
    """An OriginClient (outside mitmproxy: its TLS context set by hand) and the route to 127.0.0.1:port."""
    from addon.origin_client import OriginClient, Route
    client = OriginClient()
    client.tls = ssl.create_default_context()
    return client, Route("http", "127.0.0.1", port, None)


def local_target(route, path: str):
    from addon.origin_client import Target
    return Target(route, path, (("Host", f"127.0.0.1:{route.port}"),), None)


async def closed_soon(pool) -> bool:
    """Whether the pool is closed within 4 s (a retired pool is looked at every IDLE_POLL)."""
    import asyncio

    from addon.origin_client import IDLE_POLL
    for _ in range(int(4 / IDLE_POLL)):
        if pool.is_closed:
            return True
        await asyncio.sleep(IDLE_POLL / 2)
    return pool.is_closed


def test_an_evicted_pool_lets_its_answers_finish(origin):
    """A pool retired past MAX_POOLS (or by an option change) is closed only once the answers reading
    from it are done: httpx's aclose cuts the connections in use, and a client's response would end
    short. Its answer here is read on, whole, after the eviction; then the pool is closed."""
    import asyncio

    from mitmproxy.test import taddons

    from addon.origin_client import MAX_POOLS, Route

    expected = (MEDIA / "flv1_mp3.flv").read_bytes()

    async def run():
        client, route = local_client_and_route(origin.server_address[1])
        response = await client.open(local_target(route, "/flv1_mp3.flv?slow=1"))  # 16 KiB pieces, 10 ms apart: about 0.3 s of body
        pool = client.pool(route)
        body = bytearray()
        pieces = response.aiter_raw()
        body += await anext(pieces)
        for k in range(MAX_POOLS):  # as many other origins: this one is evicted
            client.pool(Route("http", f"192.0.2.{k}", 80, None))
        assert route not in client.pools and not pool.is_closed  # retired
        async for piece in pieces:
            body += piece
        await response.aclose()
        assert bytes(body) == expected and not pool.is_closed
        assert await closed_soon(pool)  # at the next look once idle
        await client.close()

    with taddons.context():
        asyncio.run(run())


def test_stopping_closes_retired_pools_still_reading(origin):
    """mitmproxy stopping does not wait for a retired pool's answers: close() closes it at once."""
    import asyncio

    from mitmproxy.test import taddons

    async def run():
        client, route = local_client_and_route(origin.server_address[1])
        response = await client.open(local_target(route, "/flv1_mp3.flv?slow=1"))
        pool = client.pool(route)
        client.configure({"ssl_insecure"})  # an option the pools are made with: every pool retired
        assert not client.pools and not pool.is_closed  # retired
        await asyncio.sleep(0.1)
        assert not pool.is_closed  # its answer is still being read
        await asyncio.wait_for(client.close(), 2)
        assert pool.is_closed and not client.closing
        await response.aclose()

    with taddons.context():
        asyncio.run(run())


def test_a_reloaded_scripts_server_listens_until_its_routed_requests_came_and_closes_after_its_last_answer():
    """At a reload of the script, the old addon's server (server/app.py, AudioServer.retire) keeps
    listening while requests it routed have yet to connect, keeps answering those in flight, and only
    then closes its planner and origin pools: closing the pools at once cut the answers in flight."""
    import asyncio

    from mitmproxy.test import taddons

    from addon.server import app
    from addon.server.app import AudioServer
    from addon.server.job import Job

    async def run():
        client, route = local_client_and_route(9)
        files = AudioServer(client)
        files.start()
        files.jobs["routed"] = Job(local_target(route, "/a.mp4"), "GET", "http://a/a.mp4", {}, None)
        files.answering = 1  # an answer in flight
        files.retire()
        assert files.server is not None  # a request routed here is still to come
        del files.jobs["routed"]  # it came
        await asyncio.sleep(app.RETIRED_POLL * 2)
        assert files.server is None and files.closing is None  # not listening; the answer goes on
        files.answering = 0  # (what Handler.serve does when its answer ends)
        files._close_when_answered()
        assert files.closing is not None
        await asyncio.wait_for(files.closing, 2)

    with taddons.context():
        asyncio.run(run())


def test_a_pool_retired_while_a_request_waits_for_its_answer_lets_it_finish(media_root):
    """The request is out, its answer's headers not yet in (the origin answers 1.2 s late, past two
    looks at the pool) when the pool is retired: the answer still comes whole, then the pool closes."""
    import asyncio

    from mitmproxy.test import taddons

    late = Origin(media_root, latency=1.2).start()

    async def run():
        client, route = local_client_and_route(late.server_address[1])
        asking = asyncio.ensure_future(client.open(local_target(route, "/h264_aac.mp4")))
        await asyncio.sleep(0.1)
        pool = client.pool(route)
        client.configure({"ssl_insecure"})  # every pool retired
        assert route not in client.pools and not pool.is_closed and not asking.done()
        response = await asking
        body = b"".join([piece async for piece in response.aiter_raw()])
        assert response.status_code == 200 and body == (MEDIA / "h264_aac.mp4").read_bytes()
        assert await closed_soon(pool)
        await client.close()

    try:
        with taddons.context():
            asyncio.run(run())
    finally:
        late.shutdown()
