"""Faults and load through a real mitmdump: a stalled origin, a slow client, 50 clients at once."""

import random
import socket
import subprocess
import threading
import time

import pytest

from bigmp4 import BigMp4
from extractor import SpoolFailed
from extractor.spool import TempFileSpool
from helpers import MEDIA, STREAM_PATH, Proxy, drain, extract, http_get, http_stream

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fault_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "faults.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH,
              "--set", "audio_only_origin_timeout=1", "--set", "audio_only_metadata_deadline=1")
    yield p
    p.stop()


def test_stalled_origin_ends_the_response_uncleanly(fault_proxy):
    start = time.monotonic()
    results = {}
    stalled = threading.Thread(target=lambda: results.update(
        stalled=http_get(fault_proxy.port, "/h264_aac.mp4?ali_audio_only=1&stall=100000", timeout=30)))
    stalled.start()
    time.sleep(0.3)
    # Meanwhile the proxy serves others.
    other = http_get(fault_proxy.port, "/h264_aac.flv?ali_audio_only=1")
    assert other.clean and other.body == extract((MEDIA / "h264_aac.flv").read_bytes())
    stalled.join(30)
    elapsed = time.monotonic() - start
    reply = results["stalled"]
    assert reply.status == 200 and not reply.clean
    assert 1 <= elapsed < 6, elapsed  # the timeout, not the origin's 20 s stall
    log = fault_proxy.wait_for_log("sent nothing")
    assert "h264_aac.mp4?stall=100000: the origin sent nothing for 1." in log and "audio_only_origin_timeout" in log


@pytest.mark.parametrize("query", ["?ali_audio_only=1", ""])
def test_slow_client_holds_the_origin_back(fault_proxy, origin, query):
    """A client that stops reading must stop the proxy reading from the origin (backpressure), for the
    audio-only response and for passthrough alike: memory does not grow with the file."""
    big = BigMp4(chunks=400)  # 400 MiB of audio among 425 MiB
    origin.virtual["/slow.mov"] = (big.size, big.pieces, "video/quicktime")
    before = fault_proxy.edge_rss()
    try:
        sock = socket.create_connection(("127.0.0.1", fault_proxy.port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(f"GET /slow.mov{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(65536)
        grown = 0.0
        for _ in range(15):  # 1.5 s of not reading
            time.sleep(0.1)
            grown = max(grown, fault_proxy.edge_rss() - before)
        sock.close()
    finally:
        del origin.virtual["/slow.mov"]
    print(f"\nslow client ({query or 'passthrough'}): proxy RSS grew {grown:.0f} MiB while 425 MiB waited")
    assert grown < 60


def test_a_trickling_moov_ends_at_the_metadata_deadline(fault_proxy):
    """An origin that sends the moov a byte every 0.1 s is never silent for the 1 s origin timeout, but
    the 1 s metadata deadline ends the response, with a line saying so."""
    start = time.monotonic()
    reply = http_get(fault_proxy.port, "/h264_aac.mp4?ali_audio_only=1&trickle=100")
    assert reply.status == 200 and not reply.clean and reply.body == b""
    assert time.monotonic() - start < 5
    log = fault_proxy.wait_for_log("audio_only_metadata_deadline")
    assert "h264_aac.mp4?trickle=100: the moov or moof had not arrived 1." in log


def test_a_paused_client_is_not_blamed_on_the_origin(fault_proxy, origin):
    """A player that pauses holds the origin back (backpressure): the origin is silent because we do
    not read, not because it stalled, and the response must go on when the client reads again. With
    audio_only_origin_timeout=1, a 3 s pause, then the whole body, correct and cleanly ended."""
    big = BigMp4(chunks=40)  # 40 MiB of audio among 42.5 MiB: far more than the socket buffers hold
    origin.virtual["/paused.mov"] = (big.size, big.pieces, "video/quicktime")
    try:
        status, headers, body = http_stream(fault_proxy.port, "/paused.mov?ali_audio_only=1")
        first = next(body)
        time.sleep(3)
        rest = bytearray()
        size, clean = drain(body, rest.extend)
    finally:
        del origin.virtual["/paused.mov"]
    assert status == 200 and clean, fault_proxy.log()[-2000:]
    assert first + rest == extract(b"".join(big.pieces()))


def test_fifty_concurrent_clients(origin, tmp_path):
    """A mix of audio-only MP4 (three layouts), FLV, live FLV and passthrough, 50 at once; every
    response is checked, and the proxy's memory afterwards returns near where it started."""
    proxy = Proxy(tmp_path / "load.log", "--mode", f"reverse:{origin.url}")
    cases = {
        "/h264_aac.mp4?ali_audio_only=1": extract((MEDIA / "h264_aac.mp4").read_bytes()),
        "/moov_end.mp4?ali_audio_only=1&chunk=8192": extract((MEDIA / "moov_end.mp4").read_bytes()),
        "/frag_moof_base.mp4?ali_audio_only=1": extract((MEDIA / "frag_moof_base.mp4").read_bytes()),
        "/h264_aac.flv?ali_audio_only=1": extract((MEDIA / "h264_aac.flv").read_bytes()),
        "/h264_aac.flv?ali_audio_only=1&live=1": extract((MEDIA / "h264_aac.flv").read_bytes()),
        "/two_audio.mp4": (MEDIA / "two_audio.mp4").read_bytes(),
    }
    paths = list(cases) * 9
    random.Random(1).shuffle(paths)
    paths = paths[:50]
    try:
        http_get(proxy.port, "/tiny.mp4?ali_audio_only=1")
        baseline = proxy.edge_rss()
        failures, threads = [], []

        def client(path: str) -> None:
            try:
                reply = http_get(proxy.port, path, timeout=60)
                if not (reply.status == 200 and reply.clean and reply.body == cases[path]):
                    failures.append(f"{path}: status {reply.status}, clean {reply.clean}, {len(reply.body)} bytes")
            except Exception as e:  # a test thread reports, it does not raise
                failures.append(f"{path}: {e!r}")

        start = time.monotonic()
        for path in paths:
            threads.append(threading.Thread(target=client, args=(path,)))
            threads[-1].start()
        for t in threads:
            t.join(90)
        elapsed = time.monotonic() - start
        assert not failures, failures
        peak = proxy.peak_rss()
        time.sleep(0.5)
        after = proxy.edge_rss()
    finally:
        proxy.stop()
    print(f"\n50 concurrent clients in {elapsed:.1f} s: the edge's RSS {baseline:.0f} MiB before, one process's peak {peak:.0f}, "
          f"{after:.0f} after")
    assert after - baseline < 40


def http10_get(port: int, path: str) -> tuple[bytes, str]:
    """An HTTP/1.0 request, read to the end: (everything received, 'eof' or 'reset'). Without chunked
    framing the close is the end of the body, so only a reset tells a failed body from a whole one."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = b""
    try:
        while piece := sock.recv(65536):
            data += piece
        return data, "eof"
    except ConnectionResetError:
        return data, "reset"
    finally:
        sock.close()


def test_an_http10_client_learns_of_a_failed_body_by_a_reset(fault_proxy):
    data, end = http10_get(fault_proxy.port, "/h264_aac.flv?ali_audio_only=1")
    assert end == "eof" and data.split(b"\r\n\r\n", 1)[1] == extract((MEDIA / "h264_aac.flv").read_bytes())
    for path in ("/h264_aac.flv?ali_audio_only=1&die=100000", "/truncated.flv?ali_audio_only=1"):
        data, end = http10_get(fault_proxy.port, path)
        assert data.split(b"\r\n")[0].endswith(b" 200 OK") and end == "reset", path


def test_an_origin_closing_early_is_logged(fault_proxy):
    reply = http_get(fault_proxy.port, "/h264_aac.mp4?ali_audio_only=1&die=150000")
    assert reply.status == 200 and not reply.clean
    log = fault_proxy.wait_for_log("response ended uncleanly")
    line = next(line for line in log.splitlines() if "h264_aac.mp4?die=150000: " in line and "response ended uncleanly" in line)
    assert "received 150000 bytes, expected 288172" in line, line


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a spool folder that fills."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_spool_disk_ends_that_response_uncleanly_and_the_next_works(origin, small_disk, tmp_path):
    proxy = Proxy(tmp_path / "spool.log", "--mode", f"reverse:{origin.url}", "--set", f"audio_only_spool_dir={small_disk}",
                  *STREAM_PATH)
    try:
        reply = http_get(proxy.port, "/moov_end.mp4?ali_audio_only=1&norange=1")
        assert reply.status == 200 and not reply.clean and reply.body == b""
        log = proxy.wait_for_log("response ended uncleanly")
        assert f"the spool in {small_disk} failed" in log and "Traceback" not in log and "crashed" not in log
        reply = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1")
        assert reply.clean and reply.body == extract((MEDIA / "h264_aac.mp4").read_bytes())
    finally:
        proxy.stop()


def test_a_disk_that_fills_under_the_spool_is_a_clean_error(small_disk):
    """The kernel's own ENOSPC, at the write that meets a full disk, raises SpoolFailed too (the free
    space check is turned off here by a negative reserve, so that the write itself meets it)."""
    spool = TempFileSpool(0, str(small_disk), keep_free=-(1 << 30))
    with pytest.raises(SpoolFailed, match="No space left on device"):
        for _ in range(40):
            spool.write(b"x" * 65536)
    spool.close()
