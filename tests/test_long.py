"""The 10-minute 720p file (460 MB) through mitmdump: moov at the end is spooled to disk, memory
stays bounded, and the spool is gone afterwards, also when the client leaves half way."""

import os
import socket
import time

import pytest

from helpers import STREAM_PATH, Proxy, audio_packets, drain, http_stream
from origin import Origin

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


def make_proxy(kind: str, origin, spool_dir, tmp_path_factory) -> Proxy:
    fetch = "true" if kind == "tail" else "false"
    p = Proxy(tmp_path_factory.mktemp("log") / f"long-{kind}.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH,
              "--set", f"audio_only_spool_dir={spool_dir}", "--set", f"audio_only_fetch_moov={fetch}")
    p.kind = kind
    return p


@pytest.fixture(scope="module")
def paced_origin(long_media):
    """The long files from an origin that sends 150 MB/s a connection (a download of 3 s, as from an
    origin on a network): whether audio starts long before the download ends is then the tail fetch's
    doing, not how fast this machine's loopback and our stream path happen to be beside each other."""
    server = Origin(long_media, rate=150e6).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module", params=["tail", "spool"])
def long_proxy(request, long_origin, paced_origin, spool_dir, tmp_path_factory):
    """The proxy as it comes (the moov of a moov-at-end file is fetched from the tail), and with that
    off (the spool holds the media data until the moov arrives in the stream)."""
    origin = paced_origin if request.param == "tail" else long_origin
    p = make_proxy(request.param, origin, spool_dir, tmp_path_factory)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def spool_proxy(long_origin, spool_dir, tmp_path_factory):
    p = make_proxy("spool", long_origin, spool_dir, tmp_path_factory)
    yield p
    p.stop()


def spool_files(proxy: Proxy, spool_dir) -> int:
    """Open spool files of the edge (unnamed temporary files in the spool folder): mitmdump's, and its
    workers' where audio_only_workers answers there."""
    count = 0
    for pid in proxy.pids():
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # (a worker that has just ended)
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            count += target.startswith(str(spool_dir))
    return count


def test_moov_at_end_of_a_long_file(long_proxy, long_media, spool_dir, tmp_path):
    start = time.monotonic()
    status, headers, body = http_stream(long_proxy.port, "/long_moov_end.mp4?ali_audio_only=1", timeout=120)
    assert status == 200
    out, first_byte = bytearray(), None

    def sink(piece: bytes) -> None:
        nonlocal first_byte
        first_byte = first_byte or time.monotonic() - start
        out.extend(piece)

    _, clean = drain(body, sink)
    total = time.monotonic() - start
    assert clean
    path = tmp_path / "audio.mp4"
    path.write_bytes(out)
    assert audio_packets(path) == audio_packets(os.path.join(long_media, "long_moov_end.mp4"))
    time.sleep(0.2)
    assert spool_files(long_proxy, spool_dir) == 0
    assert os.listdir(spool_dir) == []  # unnamed files: nothing is ever left in the folder
    peak = long_proxy.peak_rss()
    print(f"\nmoov at the end ({long_proxy.kind}), 460 MB in, {len(out) / 1e6:.1f} MB out: first body byte after "
          f"{first_byte * 1000:.0f} ms, done in {total:.2f} s; proxy peak RSS {peak:.0f} MiB")
    if long_proxy.kind == "tail":
        assert first_byte < total / 2  # audio started long before the download ended
    assert peak < 300


def test_client_leaving_half_way_frees_the_spool(spool_proxy, spool_dir):
    """Without the tail fetch the spool lives as long as the download (with it, milliseconds)."""
    long_proxy = spool_proxy
    sock = socket.create_connection(("127.0.0.1", long_proxy.port), timeout=30)
    sock.sendall(b"GET /long_moov_end.mp4?ali_audio_only=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 30
    while spool_files(long_proxy, spool_dir) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool_files(long_proxy, spool_dir) == 1, "the proxy never started spooling"
    sock.close()
    deadline = time.monotonic() + 10
    while spool_files(long_proxy, spool_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(long_proxy, spool_dir) == 0
    # The proxy carries on.
    status, _, body = http_stream(long_proxy.port, "/long.mp4?ali_audio_only=1", timeout=120)
    size, clean = drain(body)
    assert clean and status == 200 and size > 9_000_000


def test_the_long_file_as_a_file_in_requests_of_200_ranges(long_origin, long_media, tmp_path):
    """The file path on the long file: its 18,001 audio chunks each lie between video frames, so they
    are asked of the origin 200 ranges a request (runs of one-range batches, split where a request is
    full). The GET is lossless, and ranges that start and end anywhere are its slices."""
    import random

    from helpers import http_get
    p = Proxy(tmp_path / "long-file.log", "--mode", f"reverse:{long_origin.url}")
    try:
        since = len(long_origin.requests)
        r = http_get(p.port, "/long.mp4?ali_audio_only=1", timeout=120)
        assert r.status == 200 and r.clean and int(r.headers["content-length"]) == len(r.body)
        asked = [h["Range"].count(",") + 1 for _, path, h in long_origin.requests[since:] if "," in h.get("Range", "")]
        assert max(asked) == 200 and sum(asked) >= 18_000, asked
        out = tmp_path / "long.m4a"
        out.write_bytes(r.body)
        assert audio_packets(out) == audio_packets(os.path.join(long_media, "long.mp4"))
        rng = random.Random(18_001)
        for _ in range(8):
            first = rng.randrange(len(r.body))
            last = min(len(r.body) - 1, first + rng.choice([0, 1000, 300_000, 3 << 20]))
            part = http_get(p.port, "/long.mp4?ali_audio_only=1", headers={"Range": f"bytes={first}-{last}"})
            assert part.status == 206 and part.clean and part.body == r.body[first : last + 1], (first, last)
    finally:
        p.stop()


def test_an_origin_far_away_gets_more_requests_in_flight(long_media, tmp_path):
    """The file path keeps as few origin requests in flight as keep the origin ahead (two or three on
    loopback, where each one more costs CPU), and more when the origin is far away: with every answer
    30 ms late, the window grows towards 16, so that the GET does not wait a round trip per request."""
    from helpers import http_get
    far = Origin(long_media, latency=0.03).start()
    p = Proxy(tmp_path / "far.log", "--mode", f"reverse:{far.url}")
    try:
        r = http_get(p.port, "/long.mp4?ali_audio_only=1", timeout=120)
        assert r.status == 200 and r.clean and int(r.headers["content-length"]) == len(r.body)
        assert far.most_answering >= 8, far.most_answering
    finally:
        p.stop()
        far.shutdown()
