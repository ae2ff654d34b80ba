"""Fixtures for the end-to-end tests: a real origin and real mitmdump processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from helpers import MEDIA, ROOT, STREAM_PATH, Proxy
from mp4tools import to_64bit
from origin import Origin

# The suite's fuzzing budget; HYPOTHESIS_PROFILE=long scripts/test tests/test_fuzz.py hunts longer.
settings.register_profile("suite", max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


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
    """Reverse mode in front of the origin, the feature on for every host, every response streamed."""
    p = Proxy(tmp_path_factory.mktemp("log") / "reverse.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def long_media() -> str:
    """The 10-minute 720p file in three layouts (scripts/make-long-media, made once and cached)."""
    r = subprocess.run([str(ROOT / "scripts" / "make-long-media")], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().strip()


@pytest.fixture(scope="session")
def long_origin(long_media):
    server = Origin(long_media).start()
    yield server
    server.shutdown()
