"""Through a real mitmdump in front of a real origin on 127.0.0.1, reading what a client receives."""

import gzip
import statistics
import subprocess
import time

import pytest

from helpers import MEDIA, Proxy, assert_same_audio, audio_packets, extract, flv_tags, http_get

pytestmark = pytest.mark.e2e
FLV = "/h264_aac.flv"


def core_output(name: str, root=MEDIA) -> bytes:
    return extract((root / name).read_bytes())


@pytest.mark.parametrize("name", ["h264_aac.flv", "flv1_mp3.flv", "h264_aac_keyframes.flv", "h264_aac.mp4",
                                  "hevc_aac.mp4", "h264_opus.mp4", "two_audio.mp4", "wide.mp4", "audio_only.m4a",
                                  "moov_end.mp4", "frag_implicit_base.mp4", "cmaf.mp4", "frag_two_audio.mp4",
                                  "frag_every_frame.mp4", "quicktime.mov"])
@pytest.mark.parametrize("origin_style", ["", "&chunk=997", "&chunk=65537", "&chunk=7"])
def test_audio_only_through_the_proxy(proxy, media_root, name, origin_style, tmp_path):
    reply = http_get(proxy.port, f"/{name}?ali_audio_only=1{origin_style}")
    assert reply.status == 200 and reply.clean
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.headers["content-type"] == ("video/x-flv" if name.endswith(".flv") else "audio/mp4")
    for absent in ("content-length", "accept-ranges"):
        assert absent not in reply.headers
    assert reply.headers["etag"].endswith('-audio"')
    assert reply.body == core_output(name, media_root)
    out = tmp_path / name
    out.write_bytes(reply.body)
    assert_same_audio(media_root / name, out)
    if name.endswith("two_audio.mp4"):
        assert audio_packets(out, 1) == audio_packets(media_root / name, 1)


def test_the_origin_never_sees_the_parameter_or_the_range(proxy, origin):
    reply = http_get(proxy.port, f"{FLV}?a=1&ali_audio_only=1&b=x%20y", headers={"Range": "bytes=0-99", "If-Range": '"x"'})
    assert reply.status == 200 and reply.clean and reply.body == core_output("h264_aac.flv")
    method, path, headers = origin.requests[-1]
    assert path == f"{FLV}?a=1&b=x%20y"
    assert not {"Range", "If-Range"} & set(headers)
    assert headers["Host"] == f"127.0.0.1:{origin.server_address[1]}"  # mitmproxy's reverse-mode rewrite


def test_the_parameter_is_known_in_every_spelling(proxy, origin):
    reply = http_get(proxy.port, f"{FLV}?a=1&ali%5Faudio%5Fonly=%31")
    assert reply.clean and reply.body == core_output("h264_aac.flv")
    assert origin.requests[-1][1] == f"{FLV}?a=1"


def test_one_log_line_per_extracted_response(proxy):
    reply = http_get(proxy.port, f"{FLV}?ali_audio_only=1&logline=1")
    log = proxy.wait_for_log("logline=1 flv")
    line = next(l for l in log.splitlines() if "logline=1 flv" in l)
    assert f"logline=1 flv stream: {289581} bytes in, {len(reply.body)} out" in line and "saved" in line


@pytest.mark.parametrize("value", [None, "0", "2", "true", "", "01"])
def test_other_values_pass_the_origin_response_through_untouched(proxy, origin, value):
    query = "" if value is None else f"?ali_audio_only={value}"
    via_proxy = http_get(proxy.port, FLV + query)
    direct = http_get(origin.server_address[1], FLV)
    assert via_proxy.status == 200 and via_proxy.clean
    assert via_proxy.body == direct.body == (MEDIA / "h264_aac.flv").read_bytes()
    drop = lambda h: {k: v for k, v in h.items() if k not in ("date", "connection")}
    assert drop(via_proxy.headers) == drop(direct.headers)
    assert via_proxy.headers["content-length"] == "289581"


def test_range_without_the_parameter_is_the_origins_206(proxy):
    reply = http_get(proxy.port, FLV, headers={"Range": "bytes=0-99"})
    assert reply.status == 206 and reply.body == (MEDIA / "h264_aac.flv").read_bytes()[:100]


@pytest.mark.parametrize("status", [404, 503])
def test_error_statuses_pass_through(proxy, status):
    reply = http_get(proxy.port, f"{FLV}?ali_audio_only=1&status={status}")
    assert reply.status == status and reply.body == b"<html>no</html>" and reply.clean
    assert reply.headers["content-length"] == "15"


@pytest.mark.parametrize("query", ["type=text/html", "gzip=1"])
def test_non_media_and_encoded_bodies_pass_through(proxy, query):
    reply = http_get(proxy.port, f"{FLV}?ali_audio_only=1&{query}")
    assert reply.status == 200 and reply.clean and "content-length" in reply.headers
    body = gzip.decompress(reply.body) if query == "gzip=1" else reply.body
    assert body == (MEDIA / "h264_aac.flv").read_bytes()


def test_head_gets_the_headers_a_get_gets(proxy):
    reply = http_get(proxy.port, f"{FLV}?ali_audio_only=1", method="HEAD")
    assert reply.status == 200 and reply.body == b""
    assert reply.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in reply.headers and reply.headers["content-type"] == "video/x-flv"


@pytest.mark.parametrize("path,reason", [
    ("/h264_aac.flv?ali_audio_only=1&die=100000", ""),
    ("/h264_aac.flv?ali_audio_only=1&die=100000&chunk=1000", ""),
    ("/truncated.flv?ali_audio_only=1", "input ends inside"),
    ("/garbage.flv?ali_audio_only=1", "neither FLV, MP4 nor MPEG-TS"),  # (the core names every format it reads)
    ("/desync.flv?ali_audio_only=1", ""),
    ("/video_only.flv?ali_audio_only=1", "no audio tags"),
    ("/video_only.mp4?ali_audio_only=1", "no audio track"),
    ("/h264_aac.mp4?ali_audio_only=1&die=150000", ""),
    ("/truncated.mp4?ali_audio_only=1", "input ends at byte"),
    ("/h264_aac.flv?ali_audio_only=1&type=video/mp4", "announced MP4 but the body is FLV"),
])
def test_failures_end_the_response_uncleanly_and_the_next_request_works(proxy, path, reason):
    start = time.monotonic()
    reply = http_get(proxy.port, path, timeout=20)
    assert reply.status == 200 and not reply.clean
    assert time.monotonic() - start < 10  # ended, not left hanging until a timeout
    if reason:
        log = proxy.wait_for_log(reason)
        assert any(reason in l and path.split("?")[0] in l and "ended uncleanly" in l for l in log.splitlines()), log
    follow = http_get(proxy.port, f"{FLV}?ali_audio_only=1")
    assert follow.clean and follow.body == core_output("h264_aac.flv")


def test_live_flv_audio_arrives_as_it_is_sent(proxy, origin):
    """The origin sends each tag at its timestamp; each audio tag must reach the client at once, not
    when the next video tag, a 64 KiB piece or the end of the stream arrives."""
    origin.sent.clear()
    reply = http_get(proxy.port, f"{FLV}?ali_audio_only=1&live=1", timeout=30)
    assert reply.clean and reply.body == core_output("h264_aac.flv")
    sent_at = {}
    for ts, t in origin.sent:
        sent_at.setdefault(ts, t)
    delays, pos = [], 13
    for chunk, arrived in zip(reply.chunks, reply.arrivals):
        if chunk.startswith(b"FLV"):
            chunk = chunk[13:]
        for tag in flv_tags(b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00" + chunk)[1]:
            if tag.type == 8:
                delays.append(arrived - sent_at[tag.timestamp])
    assert len(delays) > 200
    print(f"\nlive FLV through the proxy: {len(delays)} audio tags, added latency median "
          f"{statistics.median(delays) * 1000:.2f} ms, p95 {sorted(delays)[int(len(delays) * .95)] * 1000:.2f} ms, "
          f"max {max(delays) * 1000:.2f} ms")
    # Tags go out every ~23 ms; a proxy that held audio back until more input came would show
    # delays of one tag interval or more on most tags.
    assert statistics.median(delays) < 0.020


# The addon as mitmproxy loads audio_only.py, run anew at each (re)load, from a file of its own: a
# change to it reloads this test's proxy only, not the others' (which watch audio_only.py).
RELOADABLE = """import importlib, sys
sys.path.insert(0, {root!r})
import addon.audio_only
addons = importlib.reload(addon.audio_only).addons
"""


def test_a_reload_of_the_script_lets_the_answers_in_flight_run_to_their_end(media_root, tmp_path):
    """mitmproxy reloads a script whose file changed (an edit, a deploy of the checkout) and calls the
    old addon's done first: closing the origin pools there cut every answer still streaming (a live
    FLV here) uncleanly, mid-stream. The old addon's answers now run to their end, a file's too (its
    range requests after the reload go through the old addon's pools); new requests go to the new
    addon. The origin answers each request 1 s late: the file's answer (a probe, the moov, the ranges)
    is still in flight when mitmproxy sees the change (it looks once a second)."""
    import os
    import threading

    from helpers import ROOT

    from origin import Origin

    late = Origin(media_root, latency=1.0).start()
    script = tmp_path / "audio_only_reloadable.py"
    script.write_text(RELOADABLE.format(root=str(ROOT)))
    proxy = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{late.url}", script=script)
    try:
        replies = {}

        def get(name, path):
            replies[name] = http_get(proxy.port, path, timeout=30)

        clients = [threading.Thread(target=get, args=("live", f"{FLV}?ali_audio_only=1&live=1")),
                   threading.Thread(target=get, args=("file", "/two_audio.mp4?ali_audio_only=1"))]
        clients[0].start()
        time.sleep(2)  # (the stream lasts 6 s, from 1 s on)
        clients[1].start()
        later = time.time() + 10  # a new modification time, whatever the file system's resolution
        os.utime(script, (later, later))
        log = proxy.wait_for_log("Loading script", times=2)
        assert log.count("Loading script") == 2, log
        assert clients[0].is_alive() and clients[1].is_alive() and not replies  # both in flight at the reload
        after = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1")  # the new addon's
        assert after.status == 200 and after.clean and after.headers.get("content-length")
        for client in clients:
            client.join(30)
        assert replies["live"].clean and replies["live"].body == core_output("h264_aac.flv"), proxy.log()
        assert replies["file"].clean and int(replies["file"].headers["content-length"]) == len(replies["file"].body)
        out = tmp_path / "two_audio.m4a"
        out.write_bytes(replies["file"].body)
        assert_same_audio(media_root / "two_audio.mp4", out)
        assert "uncleanly" not in proxy.log()
    finally:
        proxy.stop()
        late.shutdown()


@pytest.fixture(scope="module")
def regular_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "regular.log", "--set", "audio_only_domains=localhost")
    yield p
    p.stop()


def test_domains_in_regular_mode(regular_proxy, origin):
    port = origin.server_address[1]
    on = http_get(regular_proxy.port, f"http://localhost:{port}{FLV}?ali_audio_only=1", host=f"localhost:{port}")
    off = http_get(regular_proxy.port, f"http://127.0.0.1:{port}{FLV}?ali_audio_only=1", host=f"127.0.0.1:{port}")
    assert on.clean and on.body == core_output("h264_aac.flv")
    assert off.clean and off.body == (MEDIA / "h264_aac.flv").read_bytes()
    assert origin.requests[-1][1] == FLV  # the parameter is not forwarded, even where the feature is off


@pytest.fixture(scope="module")
def reverse_domain_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "reverse-domains.log", "--mode", f"reverse:{origin.url}",
              "--set", "audio_only_domains=*.audio.test")
    yield p
    p.stop()


def test_domains_in_reverse_mode_use_the_clients_host(reverse_domain_proxy, origin):
    on = http_get(reverse_domain_proxy.port, f"{FLV}?ali_audio_only=1", host="cdn.audio.test")
    assert on.clean and on.body == core_output("h264_aac.flv")
    # mitmproxy's own Host rewrite toward the origin still happens.
    assert origin.requests[-1][2]["Host"] == f"127.0.0.1:{origin.server_address[1]}"
    off = http_get(reverse_domain_proxy.port, f"{FLV}?ali_audio_only=1", host="audio.test")
    assert off.clean and off.body == (MEDIA / "h264_aac.flv").read_bytes()


@pytest.mark.parametrize("query,tail", [("&slow=1", True), ("&slow=1&norange=1", False)])
def test_moov_at_end_from_the_tail_or_the_spool(proxy, origin, query, tail):
    """With ranges, the moov is fetched from the tail (a second request, with If-Range) and audio starts
    before the download ends; without, the spool waits for it. The bytes are the same either way. (The
    origin is slow here: on loopback a small file would otherwise arrive whole before the Range answer,
    and the moov in the stream rightly wins.)"""
    reply = http_get(proxy.port, f"/moov_end.mp4?ali_audio_only=1{query}&case={len(query)}")
    assert reply.clean and reply.body == core_output("moov_end.mp4")
    # From the tail, audio left while the origin was still sending: in several chunks, not one at the end.
    assert (len(reply.chunks) > 1) == tail
    log = proxy.wait_for_log(f"case={len(query)} mp4")
    lines = [line for line in log.splitlines() if f"case={len(query)}" in line]
    assert any("moov fetched from the tail" in line for line in lines) == tail
    ranged = [h for m, p, h in origin.requests if f"case={len(query)}" in p and "Range" in h]
    assert len(ranged) == (1 if tail else 0)
    if tail:
        assert ranged[0]["If-Range"].startswith('"') and "ali_audio_only" not in str(ranged)


@pytest.mark.parametrize("replaced,reason", [
    ("quicktime.mov", "it was replaced"),  # another file: another length
    ("same", "ETag is now '\"replaced\"'"),  # the same length, a new validator
    ("shift", "not the"),  # a range other than the one asked for
])
def test_a_tail_answer_from_another_file_version_is_never_used(proxy, origin, replaced, reason):
    """An origin that ignores If-Range and answers the tail fetch from a replaced file: the answer is
    discarded (its status, range, total length and validator are checked), the moov is taken from the
    stream, and the client gets the audio of the file the 200 carried, nothing of the other."""
    case = f"replaced={replaced}"
    reply = http_get(proxy.port, f"/moov_end.mp4?ali_audio_only=1&slow=1&{case}")
    assert reply.clean and reply.body == core_output("moov_end.mp4")
    assert [h for m, p, h in origin.requests if case in p and "Range" in h], "no tail fetch was made"
    log = proxy.wait_for_log(f"{case} mp4")
    lines = [line for line in log.splitlines() if case in line]
    assert any("the tail's answer was discarded" in line and reason in line for line in lines), lines
    assert not any("moov fetched from the tail" in line for line in lines)


def test_reverse_mode_can_pass_the_clients_host(origin, tmp_path):
    p = Proxy(tmp_path / "client-host.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_origin_host=client")
    try:
        reply = http_get(p.port, f"{FLV}?ali_audio_only=1", host="media.example")
        assert reply.clean and origin.requests[-1][2]["Host"] == "media.example"
    finally:
        p.stop()


def curl_h2(port: int, path: str, out) -> tuple[int, str]:
    r = subprocess.run(["curl", "-sk", "--http2", "-D", "-", "-o", str(out), f"https://127.0.0.1:{port}{path}"],
                       capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode()


def test_http2_client(proxy, tmp_path):
    out = tmp_path / "h2.flv"
    code, headers = curl_h2(proxy.port, f"{FLV}?ali_audio_only=1", out)
    assert code == 0 and headers.startswith("HTTP/2 200")
    assert "transfer-encoding" not in headers.lower() and "content-length" not in headers.lower()
    assert out.read_bytes() == core_output("h264_aac.flv")
    # A failure resets the stream: curl reports an HTTP/2 stream error (92), not a clean end.
    code, _ = curl_h2(proxy.port, f"{FLV}?ali_audio_only=1&die=100000", tmp_path / "bad.flv")
    assert code == 92


def test_a_streamed_answer_is_revalidated_with_its_etag(proxy, origin):
    """The client's If-None-Match naming our ETag reaches the origin as its own ETag; the origin's 304
    comes back with ours."""
    first = http_get(proxy.port, f"{FLV}?ali_audio_only=1&reval=1")
    etag = first.headers["etag"]
    assert first.status == 200 and etag.endswith('-audio"')
    again = http_get(proxy.port, f"{FLV}?ali_audio_only=1&reval=1", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
    assert origin.requests[-1][2]["If-None-Match"] == etag.replace('-audio"', '"')
