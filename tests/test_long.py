"""The 10-minute 720p file (460 MB) through mitmdump: moov at the end is spooled to disk, memory
stays bounded, and the spool is gone afterwards, also when the client leaves half way."""

import os
import socket
import subprocess
import time

import pytest

from conftest import Proxy
from helpers import ROOT, audio_packets, http_stream
from origin import Origin
from test_big import peak_rss_mib

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def long_media() -> str:
    r = subprocess.run([str(ROOT / "scripts" / "make-long-media")], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().strip()


@pytest.fixture(scope="module")
def long_origin(long_media):
    server = Origin(long_media).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def long_proxy(long_origin, spool_dir, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "long.log", "--mode", f"reverse:{long_origin.url}",
              "--set", f"audio_only_spool_dir={spool_dir}")
    yield p
    p.stop()


def spool_files(pid: int, spool_dir) -> int:
    """Open spool files of the proxy (unnamed temporary files in the spool folder)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(spool_dir))
    return count


def test_moov_at_end_of_a_long_file(long_proxy, long_media, spool_dir, tmp_path):
    pid = long_proxy.process.pid
    start = time.monotonic()
    status, headers, body = http_stream(long_proxy.port, "/long_moov_end.mp4?ali_audio_only=1", timeout=120)
    assert status == 200
    out, first_byte, spooling_seen = bytearray(), None, 0
    while True:
        try:
            piece = next(body)
        except StopIteration as end:
            clean = end.value
            break
        first_byte = first_byte or time.monotonic() - start
        out += piece
    total = time.monotonic() - start
    assert clean
    path = tmp_path / "audio.mp4"
    path.write_bytes(out)
    assert audio_packets(path) == audio_packets(os.path.join(long_media, "long_moov_end.mp4"))
    time.sleep(0.2)
    assert spool_files(pid, spool_dir) == 0
    assert os.listdir(spool_dir) == []  # unnamed files: nothing is ever left in the folder
    peak = peak_rss_mib(pid)
    print(f"\nmoov at the end, 460 MB in, {len(out) / 1e6:.1f} MB out: first byte after {first_byte:.2f} s "
          f"(the whole input must arrive first), done in {total:.2f} s; proxy peak RSS {peak:.0f} MiB")
    assert peak < 300


def test_client_leaving_half_way_frees_the_spool(long_proxy, spool_dir):
    pid = long_proxy.process.pid
    sock = socket.create_connection(("127.0.0.1", long_proxy.port), timeout=30)
    sock.sendall(b"GET /long_moov_end.mp4?ali_audio_only=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 30
    while spool_files(pid, spool_dir) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool_files(pid, spool_dir) == 1, "the proxy never started spooling"
    sock.close()
    deadline = time.monotonic() + 10
    while spool_files(pid, spool_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(pid, spool_dir) == 0
    # The proxy carries on.
    status, _, body = http_stream(long_proxy.port, "/long.mp4?ali_audio_only=1", timeout=120)
    size = 0
    while True:
        try:
            size += len(next(body))
        except StopIteration as end:
            assert end.value and status == 200 and size > 9_000_000
            break
