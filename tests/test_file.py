"""The audio-only MP4 served as a file (addon/server/file_source.py, file_answer.py, origin_groups.py), through a real mitmdump in front of an
origin that serves ranges: lengths, every form of Range, conditionals, versions, only audio read."""

import os
import random
import shutil
import time

import pytest

from addon.origin_target import Route
from extractor import SeekRange
from helpers import MEDIA, STREAM_PATH, Proxy, assert_same_audio, audio_packets, drain, extract, http_get, http_stream
from mp4tools import boxes

ROUTE = Route("http", "origin.example", 80, None)  # (a plain HTTP origin reached directly)

pytestmark = pytest.mark.e2e
FILES = ["h264_aac.mp4", "moov_end.mp4", "two_audio.mp4", "wide.mp4", "quicktime.mov", "audio_only.m4a"]


@pytest.fixture(scope="module")
def file_proxy(origin, tmp_path_factory):
    """Reverse mode with the defaults: audio-only MP4 served as a file when the origin serves ranges."""
    p = Proxy(tmp_path_factory.mktemp("log") / "file.log", "--mode", f"reverse:{origin.url}")
    yield p
    p.stop()


def media_bytes(origin, name: str, case: str = "") -> int:
    """Bytes of the named file the origin sent in answer to Range requests that touch an mdat's payload
    (those whose query names `case` only, when given: the origin serves the whole session)."""
    data = (origin.root / name).read_bytes()
    payloads = [(pos + header, pos + size) for kind, pos, header, size in boxes(data) if kind == b"mdat"]
    total = 0
    for method, path, headers in origin.requests:
        if path.split("?")[0] != f"/{name}" or "Range" not in headers or (case and f"case={case}" not in path):
            continue
        for spec in headers["Range"][6:].split(","):
            first, last = map(int, spec.split("-"))
            total += sum(max(0, min(last + 1, e) - max(first, s)) for s, e in payloads)
    return total


@pytest.mark.parametrize("name", FILES)
def test_get_is_a_whole_file_with_its_length_and_only_audio(file_proxy, origin, media_root, name, tmp_path):
    reply = http_get(file_proxy.port, f"/{name}?ali_audio_only=1&case=get")
    assert reply.status == 200 and reply.clean
    assert "transfer-encoding" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert reply.headers["accept-ranges"] == "bytes" and reply.headers["content-type"] == "audio/mp4"
    assert reply.headers["etag"].startswith('"') and reply.headers["etag"].endswith('-audio"')
    assert reply.body == extract((media_root / name).read_bytes())
    out = tmp_path / name
    out.write_bytes(reply.body)
    assert_same_audio(media_root / name, out)
    if name == "two_audio.mp4":
        assert audio_packets(out, 1) == audio_packets(media_root / name, 1)
    head = http_get(file_proxy.port, f"/{name}?ali_audio_only=1&case=head", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == reply.headers["content-length"]
    assert head.headers["etag"] == reply.headers["etag"]


def test_head_reads_no_media_data(file_proxy, origin):
    http_get(file_proxy.port, "/hevc_aac.mp4?ali_audio_only=1", method="HEAD")
    assert media_bytes(origin, "hevc_aac.mp4") <= 8  # at most what follows an 8-byte mdat header in a 16-byte read


@pytest.mark.parametrize("name", ["h264_aac.mp4", "moov_end.mp4"])
def test_every_form_of_range_is_that_slice_of_the_whole(file_proxy, name):
    whole = http_get(file_proxy.port, f"/{name}?ali_audio_only=1").body
    n = len(whole)
    rng = random.Random(name)
    for _ in range(12):
        first = rng.randrange(n)
        last = rng.randrange(first, n)
        for spec, want in ((f"{first}-{last}", (first, last)), (f"{first}-", (first, n - 1)),
                           (f"-{n - first}", (first, n - 1)), (f"{first}-{n + 1000}", (first, n - 1))):
            r = http_get(file_proxy.port, f"/{name}?ali_audio_only=1", headers={"Range": f"bytes={spec}"})
            assert r.status == 206 and r.clean, spec
            assert r.headers["content-range"] == f"bytes {want[0]}-{want[1]}/{n}", spec
            assert r.body == whole[want[0] : want[1] + 1], spec
    r = http_get(file_proxy.port, f"/{name}?ali_audio_only=1", headers={"Range": "bytes=0-1"})  # AVPlayer's probe
    assert r.status == 206 and r.body == whole[:2]


def test_unsatisfiable_several_ranges_and_conditionals(file_proxy):
    path = "/h264_aac.mp4?ali_audio_only=1"
    whole = http_get(file_proxy.port, path)
    n, etag = len(whole.body), whole.headers["etag"]
    r = http_get(file_proxy.port, path, headers={"Range": f"bytes={n}-"})
    assert r.status == 416 and r.headers["content-range"] == f"bytes */{n}" and r.body == b""
    r = http_get(file_proxy.port, path, headers={"Range": "bytes=0-9,20-29"})  # several: the whole file
    assert r.status == 200 and r.body == whole.body
    r = http_get(file_proxy.port, path, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert r.status == 206 and r.body == whole.body[10:20]
    r = http_get(file_proxy.port, path, headers={"Range": "bytes=10-19", "If-Range": '"stale-audio"'})
    assert r.status == 200 and r.body == whole.body
    r = http_get(file_proxy.port, path, headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b""
    r = http_get(file_proxy.port, path, headers={"If-None-Match": '"other"'})
    assert r.status == 200 and r.body == whole.body


def test_a_seek_cut_is_a_file_and_past_the_end_is_400(file_proxy, media_root):
    from extractor import SeekRange
    r = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=1.5&end=4")
    assert r.status == 200 and int(r.headers["content-length"]) == len(r.body)
    assert r.body == extract((media_root / "h264_aac.mp4").read_bytes(), mp4_seek=SeekRange(1500, 4000, True))
    assert r.headers["etag"].endswith('-audio-1500-4000"')
    r = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=60")
    assert r.status == 400 and b"past" in r.body


def test_a_file_replaced_between_requests_is_planned_again(file_proxy, origin, media_root):
    shutil.copy(media_root / "h264_aac.mp4", media_root / "replaced.mp4")
    first = http_get(file_proxy.port, "/replaced.mp4?ali_audio_only=1")
    assert first.body == extract((media_root / "h264_aac.mp4").read_bytes())
    shutil.copy(media_root / "moov_end.mp4", media_root / "replaced.mp4")
    os.utime(media_root / "replaced.mp4", (time.time() + 5, time.time() + 5))  # a new ETag, whatever the clock
    second = http_get(file_proxy.port, "/replaced.mp4?ali_audio_only=1")
    assert second.body == extract((media_root / "moov_end.mp4").read_bytes())
    assert second.headers["etag"] != first.headers["etag"]


def test_a_file_replaced_during_a_response_ends_it_uncleanly(file_proxy):
    """After the top level was read (four Range requests for this file: the probe, the ftyp and the moov
    each with the next box's header, the header after the free box), the origin answers from another
    file, ignoring If-Range: the body stops short of its Content-Length, and no byte of the other file
    is sent."""
    name = "/h264_aac.mp4?ali_audio_only=1&replaced=hevc_aac.mp4&replace_after=4"
    status, headers, body = http_stream(file_proxy.port, name)
    got = bytearray()
    size, clean = drain(body, got.extend)
    assert status == 200 and not clean
    whole = extract((MEDIA / "h264_aac.mp4").read_bytes())
    assert 0 < len(got) < int(headers["content-length"]) and whole.startswith(got)
    log = file_proxy.wait_for_log("replace_after=4: response ended uncleanly")
    assert "the file was replaced" in log or "it was replaced" in log


def test_an_origin_without_ranges_gets_the_stream_path(file_proxy, media_root):
    r = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1&norange=1")
    assert r.status == 200 and r.clean and r.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.headers and r.body == extract((media_root / "h264_aac.mp4").read_bytes())
    r = http_get(file_proxy.port, "/frag_moof_base.mp4?ali_audio_only=1&norange=1")  # fragmented: streamed too
    assert r.clean and r.headers["transfer-encoding"] == "chunked"
    assert r.body == extract((media_root / "frag_moof_base.mp4").read_bytes())


@pytest.mark.parametrize("name", ["frag_moof_base.mp4", "frag_two_audio.mp4", "frag_sidx.mp4", "frag_every_frame.mp4"])
def test_a_fragmented_mp4_is_served_as_a_file(file_proxy, origin, name):
    """Its top level read with Range requests (each moof with the next box's header), the same bytes as
    the streamed output, with a length and ranges; and where the input has a sidx, the file keeps one
    for the audio (the stream, which cannot hold the whole file to size it, drops it)."""
    streamed = extract((MEDIA / name).read_bytes())
    before = len(origin.requests)  # (the origin is shared: other tests ask for these files too)
    r = http_get(file_proxy.port, f"/{name}?ali_audio_only=1")
    whole = r.body
    assert r.status == 200 and r.clean and int(r.headers["content-length"]) == len(whole)
    indexes = [(at, size) for kind, at, _, size in boxes(whole) if kind == b"sidx"]
    assert len(indexes) == (name == "frag_sidx.mp4")
    for at, size in indexes:  # (the sidx's own figures are judged in test_fragmented_segments)
        whole_without = whole[:at] + whole[at + size :]
        assert whole_without == streamed
        # Other bytes than the streamed answer's: never its ETag (a cache would splice the two).
        stream = http_get(file_proxy.port, f"/{name}?ali_audio_only=1&norange=1")
        assert stream.body == streamed and stream.headers["etag"] != r.headers["etag"]
        assert r.headers["etag"].endswith('-audio-sidx"')
    if not indexes:
        assert whole == streamed
    assert r.headers["accept-ranges"] == "bytes"
    rng = random.Random(name)
    for _ in range(5):
        first = rng.randrange(len(whole))
        last = rng.randrange(first, len(whole))
        part = http_get(file_proxy.port, f"/{name}?ali_audio_only=1", headers={"Range": f"bytes={first}-{last}"})
        assert part.status == 206 and part.body == whole[first : last + 1]
    fragments = sum(kind == b"moof" for kind, *_ in boxes((MEDIA / name).read_bytes()))
    ranged = [h["Range"] for m, p, h in origin.requests[before:] if p == f"/{name}" and "Range" in h]
    # The top level (a probe, the ftyp, the moov, then one read a fragment: its moof comes with its
    # header), then each answer's audio in one or two requests of up to 200 ranges: not one a fragment.
    assert len(ranged) <= 5 + fragments + 6 * 2 * (1 + fragments // 200), ranged


def test_a_client_leaving_mid_body_and_the_next_request(file_proxy):
    status, headers, body = http_stream(file_proxy.port, "/two_audio.mp4?ali_audio_only=1")
    next(body)
    body.close()
    r = http_get(file_proxy.port, "/two_audio.mp4?ali_audio_only=1")
    assert r.clean and r.body == extract((MEDIA / "two_audio.mp4").read_bytes())
    assert "Traceback" not in file_proxy.log()


def test_the_plan_is_read_once_per_file_version(file_proxy, origin):
    """A player's range requests: the moov is read from the origin once, then only the probe and audio."""
    path = "/h264_opus.mp4?ali_audio_only=1"
    http_get(file_proxy.port, path)
    moov_reads = lambda: sum(1 for m, p, h in origin.requests  # noqa: E731
                             if p.startswith("/h264_opus.mp4") and h.get("Range", "").startswith(f"bytes={moov_start()}-"))
    before = moov_reads()
    for first in range(0, 60000, 7000):
        assert http_get(file_proxy.port, path, headers={"Range": f"bytes={first}-{first + 999}"}).status == 206
    assert before == 1 and moov_reads() == 1


def moov_start() -> int:
    data = (MEDIA / "h264_opus.mp4").read_bytes()
    return next(pos for kind, pos, header, size in boxes(data) if kind == b"moov")


def test_upstream_mode_serves_files_and_keeps_the_connection_upstream(origin, tmp_path):
    """Through an upstream proxy: the file's Range requests go through it, and a second request on the
    same client connection, not audio, still goes through it (the file detour is per flow)."""
    import http.client

    upstream = Proxy(tmp_path / "upstream.log", "--set", "audio_only_domains=nothing.invalid",
                     "--set", "modify_headers=/~q/X-Through/upstream")
    ours = Proxy(tmp_path / "ours.log", "--mode", f"upstream:http://127.0.0.1:{upstream.port}")
    port = origin.server_address[1]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ours.port, timeout=30)
        conn.request("GET", f"http://127.0.0.1:{port}/h264_aac.mp4?ali_audio_only=1&case=upfile",
                     headers={"Range": "bytes=100-20099"})
        first = conn.getresponse()
        body = first.read()
        assert first.status == 206 and body == extract((MEDIA / "h264_aac.mp4").read_bytes())[100:20100]
        conn.request("GET", f"http://127.0.0.1:{port}/tiny.mp4?case=upplain")
        second = conn.getresponse()
        assert second.status == 200 and second.read() == (MEDIA / "tiny.mp4").read_bytes()
        conn.close()
    finally:
        ours.stop()
        upstream.stop()
    ranged = [h for m, p, h in origin.requests if "case=upfile" in p]
    plain = [h for m, p, h in origin.requests if "case=upplain" in p]
    assert ranged and all(h.get("X-Through") == "upstream" and "Range" in h for h in ranged)
    assert plain and all(h.get("X-Through") == "upstream" for h in plain)


def test_a_slow_client_holds_the_origin_back(origin, file_proxy):
    """A client that stops reading: 400 MiB of audio among 425 MiB, far more than the socket buffers on
    the way hold. While it waits, the origin is asked for only a small part, and memory stays small."""
    import socket

    from bigmp4 import BigMp4
    big = BigMp4(chunks=400)
    origin.virtual["/slowfile.mov"] = (big.size, big.pieces, "video/quicktime", big.range)
    try:
        before = file_proxy.edge_rss()
        sock = socket.create_connection(("127.0.0.1", file_proxy.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /slowfile.mov?ali_audio_only=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"accept-ranges: bytes" in sock.recv(65536).lower()  # served as a file
        grown = 0.0
        for _ in range(20):  # 2 s of not reading
            time.sleep(0.1)
            grown = max(grown, file_proxy.edge_rss() - before)
        requested = 0
        for m, p, h in list(origin.requests):
            if p.startswith("/slowfile.mov") and "Range" in h:
                first, last = map(int, h["Range"][6:].split(",")[0].split("-"))  # it answers the first range only
                requested += last + 1 - first
        sock.close()
    finally:
        del origin.virtual["/slowfile.mov"]
    print(f"\nslow client: origin asked for {requested / 2**20:.0f} MiB of {big.size / 2**20:.0f} MiB, "
          f"proxy RSS grew {grown:.0f} MiB")
    assert requested < 0.1 * big.size
    assert grown < 60


def test_an_origin_with_ranges_but_no_validator_gets_the_whole_audio_streamed(file_proxy):
    """Without an ETag or a Last-Modified a file cannot be checked across requests: streamed, and the
    client gets the whole audio, never the answer to our probe."""
    for method in ("GET", "HEAD"):
        r = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1&noetag=1", method=method)
        assert r.status == 200 and r.clean and r.headers["transfer-encoding"] == "chunked"
        assert "content-range" not in r.headers and "accept-ranges" not in r.headers
        if method == "GET":
            assert r.body == extract((MEDIA / "h264_aac.mp4").read_bytes())


def test_a_last_modified_origin_gets_a_weak_etag_and_if_range_by_date(file_proxy):
    path = "/h264_aac.mp4?ali_audio_only=1&noetag=1&lastmod=1"
    whole = http_get(file_proxy.port, path)
    assert whole.status == 200 and whole.headers["etag"].startswith('W/"lm')
    date = whole.headers["last-modified"]
    r = http_get(file_proxy.port, path, headers={"Range": "bytes=10-19", "If-Range": date})
    assert r.status == 206 and r.body == whole.body[10:20]
    r = http_get(file_proxy.port, path, headers={"Range": "bytes=10-19", "If-Range": whole.headers["etag"]})
    assert r.status == 200 and r.body == whole.body  # a weak ETag never satisfies If-Range


def test_the_origins_other_headers_are_kept(file_proxy):
    path = "/h264_aac.mp4?ali_audio_only=1&cors=1"
    r = http_get(file_proxy.port, path)
    assert r.headers["access-control-allow-origin"] == "*" and r.headers["cache-control"] == "max-age=60"
    r = http_get(file_proxy.port, path, headers={"If-None-Match": r.headers["etag"]})
    assert r.status == 304 and r.headers["cache-control"] == "max-age=60"


@pytest.mark.parametrize("path", ["file", "stream"])
def test_one_clients_session_cookie_never_reaches_the_origin_for_another(origin, tmp_path, path):
    """The proxy's connections to an origin serve every client: a Set-Cookie the origin gives one
    client goes back to that client, and is never sent to the origin on another client's requests
    (a pooled HTTP client's cookie jar did that: the next client was served as the first one's
    session). Each client's own Cookie header still reaches the origin."""
    proxy = Proxy(tmp_path / f"cookie-{path}.log", "--mode", f"reverse:{origin.url}", *(STREAM_PATH if path == "stream" else ()))
    try:
        a = http_get(proxy.port, f"/h264_aac.mp4?ali_audio_only=1&setcookie=A-{path}", headers={"Cookie": "mine=a"})
        assert a.status == 200 and a.headers.get("set-cookie") == f"session=A-{path}; Path=/"
        asked_by_a = [h for _, p, h in origin.requests if f"setcookie=A-{path}" in p]
        assert asked_by_a and all(h.get("Cookie") == "mine=a" for h in asked_by_a)
        since = len(origin.requests)
        b = http_get(proxy.port, f"/moov_end.mp4?ali_audio_only=1&client=B-{path}")
        assert b.status == 200 and b.clean
        asked_by_b = [h for _, p, h in origin.requests[since:] if f"client=B-{path}" in p]
        assert asked_by_b and not any("Cookie" in h for h in asked_by_b), asked_by_b
    finally:
        proxy.stop()


@pytest.mark.parametrize("path", ["file", "stream"])
def test_the_origin_gets_the_clients_user_agent_and_accept_or_none(origin, tmp_path, path):
    """Our requests to the origin carry the client's User-Agent and Accept as they were, and none when
    the client sent none (httpx would add python-httpx and */*: mitmproxy alone adds nothing)."""
    proxy = Proxy(tmp_path / f"ua-{path}.log", "--mode", f"reverse:{origin.url}", *(STREAM_PATH if path == "stream" else ()))
    try:
        for case, headers in (("none", {}), ("player", {"User-Agent": "player/1.0", "Accept": "audio/*"})):
            since = len(origin.requests)
            r = http_get(proxy.port, f"/h264_aac.mp4?ali_audio_only=1&ua={case}-{path}", headers=headers)
            assert r.status == 200 and r.clean
            asked = [h for _, p, h in origin.requests[since:] if f"ua={case}-{path}" in p]
            assert asked, case
            for h in asked:
                assert (h.get("User-Agent"), h.get("Accept")) == (headers.get("User-Agent"), headers.get("Accept")), (case, dict(h))
    finally:
        proxy.stop()


def test_head_ignores_range(file_proxy):
    whole = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1")
    r = http_get(file_proxy.port, "/h264_aac.mp4?ali_audio_only=1", method="HEAD", headers={"Range": "bytes=0-9"})
    assert r.status == 200 and r.headers["content-length"] == str(len(whole.body))


def test_a_fragmented_cut_is_a_file(file_proxy, origin):
    """A fragmented file with a seek is answered as a file of the cut (issue 31; the stream path, where
    a seek check reads the moov from the origin, is tested in test_seek.py): a length, the core's cut,
    and only the probe and the box walk asked of the origin."""
    reply = http_get(file_proxy.port, "/frag_moof_base.mp4?ali_audio_only=1&start=1&case=relaymoov")
    assert reply.status == 200 and reply.clean and int(reply.headers["content-length"]) == len(reply.body)
    assert reply.body == extract((MEDIA / "frag_moof_base.mp4").read_bytes(), mp4_seek=SeekRange(1000, None, True))
    assert "frag_moof_base.mp4?case=relaymoov file: " in file_proxy.wait_for_log("?case=relaymoov file: ")
    ranged = [h["Range"] for m, p, h in origin.requests if "case=relaymoov" in p and "Range" in h]
    assert len(ranged) >= 2  # the probe, then the box walk
    assert "could not read the moov before answering" not in file_proxy.log()


def test_an_http2_client_gets_the_file_and_its_ranges(file_proxy, tmp_path):
    import subprocess
    whole = extract((MEDIA / "moov_end.mp4").read_bytes())
    for extra, want, status in (([], whole, "200"), (["-r", "1000-1999"], whole[1000:2000], "206")):
        out = tmp_path / "h2.m4a"
        r = subprocess.run(["curl", "-sSk", "--http2", "-D", "-", "-o", str(out), *extra,
                            f"https://127.0.0.1:{file_proxy.port}/moov_end.mp4?ali_audio_only=1"],
                           capture_output=True, timeout=60)
        headers = r.stdout.decode()
        assert r.returncode == 0 and headers.startswith(f"HTTP/2 {status}"), headers
        assert f"content-length: {len(want)}" in headers.lower() and out.read_bytes() == want


def test_several_ranges_in_one_request_and_one_by_one(origin, tmp_path):
    """Where the origin answers several ranges in one request (multipart/byteranges), the audio chunks
    of a file go up to 200 to a request and only they are read; where it answers only the first, the
    proxy notices and asks one range at a time, with a coarser gap. The same bytes either way."""
    want = extract((MEDIA / "h264_mp3.mp4").read_bytes())
    proxy = Proxy(tmp_path / "multi.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_range_gap=0")
    try:
        r = http_get(proxy.port, "/h264_mp3.mp4?ali_audio_only=1&case=multi")
        assert r.clean and r.body == want
        multi = [h["Range"] for m, p, h in origin.requests if "case=multi" in p and "," in h.get("Range", "")]
        assert multi, "no request of several ranges was made"
        assert media_bytes(origin, "h264_mp3.mp4", "multi") < 1.2 * len(want)  # audio, little video
        r = http_get(proxy.port, "/h264_mp3.mp4?ali_audio_only=1&nomultirange=1")
        assert r.clean and r.body == want
        assert "does not answer several ranges in one request" in proxy.log()
    finally:
        proxy.stop()


@pytest.mark.parametrize("switch_after", [0, 1, 3])
@pytest.mark.parametrize("layout", ["mixed", "even"])
def test_an_origin_found_to_answer_one_range_a_request_mid_response(switch_after, layout):
    """The groups of a response (OriginGroups.groups) when the origin turns out, after some requests
    of several ranges, to answer one range a request: every range is asked for once, in order, and the
    groups made after that are one range's worth (at most MAX_REQUEST, no gap over the cost model's)."""
    from types import SimpleNamespace

    from addon.server.origin_groups import MAX_REQUEST, MULTI_RANGES, OriginGroups
    from extractor import Batch, FilePlan, Run
    from extractor.mp4.ranges import Ranges
    rng = random.Random(switch_after)
    pairs, at = [], 0
    for _ in range(3000):  # "even": every chunk alone, one long Run; "mixed": some joined, some far apart
        at += rng.choice([25_000] * 9 + [300_000, 10]) if layout == "mixed" else 25_000
        pairs.append((at, at + rng.choice([400, 700])))
        at = pairs[-1][1]
    ranges = Ranges.of(pairs)
    plan = FilePlan(b"head", ranges, 4 + ranges.total, gap=16 << 10)
    from addon.server.origin_speed import OriginSpeed
    services = SimpleNamespace(multirange={}, speeds={ROUTE: OriginSpeed(0.001, rate=10e6)})  # 1 ms, 10 MB/s
    job = SimpleNamespace(target=SimpleNamespace(route=ROUTE), latency=0.001)
    seen, made = [], 0
    origin_groups = OriginGroups(services, job, SimpleNamespace(plan=plan))
    assert 25_000 < origin_groups.gap < 300_000  # (so that both kinds of group are made below)
    for kind, group in origin_groups.groups(0, plan.size - 1):
        if kind != "fetch":
            continue
        batches = [b for b in group if isinstance(b, Batch)]
        for b in batches:
            seen += [(max(b.lo, plan.ranges.starts[k]), min(b.hi, plan.ranges.ends[k])) for k in range(b.i, b.j)]
        if ROUTE in services.multirange:  # made after the switch
            assert batches[-1].hi - batches[0].lo <= MAX_REQUEST
            assert all(b.lo - a.hi <= origin_groups.gap for a, b in zip(batches, batches[1:]))
        else:
            assert sum(b.j - b.i if isinstance(b, Run) else 1 for b in batches) <= MULTI_RANGES  # ranges asked
        made += 1
        if made == switch_after or switch_after == 0:
            services.multirange[ROUTE] = 1  # what fetch learns from a refused request
    assert seen == pairs


def test_spans_are_found_in_parts_in_any_order_merged_or_overlapping():
    from addon.multipart import spans_from_parts
    from addon.origin_version import RangeRefused
    data = bytes(range(100))

    def part(first, last, length=100):
        return (first, last, length, data[first : last + 1])

    spans = [(0, 9), (20, 29), (40, 49)]
    want = [data[a : b + 1] for a, b in spans]
    assert spans_from_parts([part(0, 9), part(20, 29), part(40, 49)], spans, 100) == want  # as asked
    assert spans_from_parts([part(40, 49), part(0, 9), part(20, 29)], spans, 100) == want  # another order
    assert spans_from_parts([part(0, 29), part(40, 49)], spans, 100) == want  # neighbours merged
    assert spans_from_parts([part(0, 60), part(20, 25), part(40, 41)], spans, 100) == want  # overlapping
    with pytest.raises(RangeRefused, match="no part for bytes 20-29"):
        spans_from_parts([part(0, 9), part(20, 28), part(40, 49)], spans, 100)
    with pytest.raises(RangeRefused, match="replaced"):
        spans_from_parts([part(0, 9), part(20, 29, 101), part(40, 49)], spans, 100)
    # "bytes a-b/*": a length the origin does not say (RFC 9110 §14.4) is no other length
    assert spans_from_parts([part(0, 9, None), part(20, 29, None), part(40, 49)], spans, 100) == want


def test_the_quick_multipart_read_takes_only_the_common_form():
    """pieces_as_asked reads an answer of one part per span, in order, each Content-Range exactly that
    span of this length; anything else is None (the careful walk decides), never other bytes."""
    from addon.multipart import parse_byteranges, pieces_as_asked, spans_from_parts
    data = bytes(range(256)) * 4

    def answer(parts, length=len(data), header=b"Content-Range: bytes %d-%d/%d", extra=b"Content-Type: video/mp4\r\n"):
        body = b"".join(b"--b\r\n" + extra + header % (a, z, length) + b"\r\n\r\n" + data[a : z + 1] + b"\r\n"
                        for a, z in parts)
        return body + b"--b--\r\n"

    spans = [(0, 9), (100, 199), (500, 500)]
    good = answer(spans)
    assert pieces_as_asked(good, b"b", spans, len(data)) == [data[a : z + 1] for a, z in spans]
    assert pieces_as_asked(good, b"b", spans, len(data)) == spans_from_parts(parse_byteranges(good, b"b"), spans, len(data))
    odd = {
        "another order": answer([spans[1], spans[0], spans[2]]),
        "neighbours merged": answer([(0, 199), (500, 500)]),
        "another length": answer(spans, length=len(data) + 1),
        "a length that starts the same": answer(spans, header=b"Content-Range: bytes %d-%d/%d0"),
        "the range in another header": answer(spans, header=b"X-Was: bytes %d-%d/%d"),
        "spaces after the range": answer(spans, header=b"Content-Range: bytes %d-%d/%d "),
        "LF only": good.replace(b"\r\n", b"\n"),
        "a part shorter than it says": good.replace(b"bytes 100-199/", b"bytes 100-200/"),
        "no closing delimiter": good[: -len(b"--b--\r\n")],
        "a part more": answer(spans + [(600, 600)]),
        "a part's headers longer than PART_HEADERS": answer(spans, extra=b"X-Pad: " + b"p" * 600 + b"\r\n"),
        "a part after the closing delimiter": b"--b--\r\n" + answer(spans),
        "two Content-Range lines": answer(spans, extra=b"Content-Range: bytes 0-1/1\r\n"),
    }
    for why, body in odd.items():
        assert pieces_as_asked(body, b"b", spans, len(data)) is None, why
    assert pieces_as_asked(good, b"b", spans, None) is None  # no length known: the careful walk


@pytest.mark.parametrize("seed", range(4))
def test_the_quick_multipart_read_agrees_with_the_careful_walk(seed):
    """Differential fuzz: answers in the common form with random bytes changed, added or taken out, and
    odd boundaries and headers (a % sign among them). The quick read gives None, or exactly the pieces
    the careful walk finds for the spans; never a crash or other bytes."""
    from addon.multipart import parse_byteranges, pieces_as_asked, spans_from_parts
    from addon.origin_version import RangeRefused
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(4096))
    agreed = 0
    for _ in range(500):
        boundary = rng.choice([b"b", b"3d6b6a416f9b5", b"x%dy", b"--"])
        spans, at = [], 0
        for _ in range(rng.choice([1, 2, 5, 40])):
            at += rng.choice([0, 1, 30])
            last = min(len(data) - 1, at + rng.choice([0, 1, 9, 100]))
            if at > last:
                break
            spans.append((at, last))
            at = last + 1
        if not spans:
            continue
        extra = rng.choice([b"Content-Type: video/mp4\r\n", b"", b"X-Odd: 100%\r\n"])
        body = bytearray(b"".join(b"--" + boundary + b"\r\n" + extra + b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (a, z, len(data))
                                  + data[a : z + 1] + b"\r\n" for a, z in spans) + b"--" + boundary + b"--\r\n")
        for _ in range(rng.choice([0, 1, 1, 3])):
            where = rng.randrange(len(body))
            change = rng.choice(["flip", "add", "cut"])
            if change == "flip":
                body[where] = rng.randrange(256)
            elif change == "add":
                body[where:where] = rng.choice([b"\r\n", b"-", b"1", b"--" + boundary, b"%"])
            else:
                del body[where : where + rng.choice([1, 2, 10])]
        quick = pieces_as_asked(bytes(body), boundary, spans, len(data))
        try:
            careful = spans_from_parts(parse_byteranges(bytes(body), boundary), spans, len(data))
        except RangeRefused:
            careful = None
        if quick is not None:
            assert quick == careful, (spans, bytes(body))
            agreed += 1
    assert agreed > 100  # the common form was read quickly, not only refused


def test_hostile_multipart_answers_are_refused_cleanly():
    """Hostile or odd multipart/byteranges answers: a clean refusal, never a crash or wrong bytes."""
    from addon.multipart import parse_byteranges
    from addon.origin_version import OriginVersion, RangeRefused

    good = b"--b\r\nContent-Range: bytes 0-3/10\r\n\r\nabcd\r\n--b--\r\n"
    assert parse_byteranges(good, b"b") == [(0, 3, 10, b"abcd")]
    for body in (good.replace(b"\r\n", b"\n"),  # LF only
                 b"--b\r\nContent-Range: bytes 0-" + b"9" * 5000 + b"/10\r\n\r\nabcd\r\n--b--\r\n",  # a huge number
                 good.replace(b"0-3", b"0-9"),  # a part claiming more than it holds
                 good[:30]):  # cut short
        with pytest.raises(RangeRefused):
            parse_byteranges(body, b"b")
    version = OriginVersion('"v"', 10)
    assert version.problem_with(206, {"content-range": "bytes 0-" + "9" * 5000 + "/10", "etag": '"v"'}, 0, 3)
