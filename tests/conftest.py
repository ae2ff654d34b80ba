"""Fixtures for the end-to-end tests: a real origin and real mitmdump processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The suite's fuzzing budget; HYPOTHESIS_PROFILE=long scripts/test tests/test_fuzz.py hunts longer.
settings.register_profile("suite", max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

from helpers import MEDIA, ROOT
from mp4tools import to_64bit
from origin import Origin

MITMDUMP = Path(sys.executable).parent / "mitmdump"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """mitmdump with our addon, its log captured to a file the tests can read."""

    def __init__(self, log_path: Path, *args: str):
        self.port = free_port()
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        cmd = [str(MITMDUMP), "-s", str(ROOT / "addon" / "audio_only.py"), "--listen-host", "127.0.0.1",
               "-p", str(self.port), "--set", "flow_detail=0", "--set", "termlog_verbosity=info", *args]
        self.process = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"mitmdump did not start: {log_path.read_text()}")

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log_file.close()


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    """The sample media plus broken files made from them."""
    root = tmp_path_factory.mktemp("origin")
    for f in MEDIA.iterdir():
        shutil.copy(f, root)
    data = (MEDIA / "h264_aac.flv").read_bytes()
    (root / "truncated.flv").write_bytes(data[: len(data) // 2 + 3])
    (root / "garbage.flv").write_bytes(b"<html>this is not a video</html>" * 100)
    mp4 = (MEDIA / "h264_aac.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    (root / "wide.mp4").write_bytes(to_64bit(mp4))
    # 15 stray bytes in the middle: every tag after them is read out of place.
    (root / "desync.flv").write_bytes(data[:40000] + b"\xff" * 15 + data[40000:])
    return root


@pytest.fixture(scope="session")
def origin(media_root) -> Origin:
    server = Origin(media_root).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def proxy(origin, tmp_path_factory) -> Proxy:
    """Reverse mode in front of the origin, the feature on for every host."""
    p = Proxy(tmp_path_factory.mktemp("log") / "reverse.log", "--mode", f"reverse:{origin.url}")
    yield p
    p.stop()
