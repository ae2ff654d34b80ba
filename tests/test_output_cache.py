"""The output cache (addon/server/output_cache.py, audio_only_output_cache): a file answer that sent the
whole audio-only file keeps it; later answers for that version read it instead of the origin's ranges,
the origin still asked which version it has."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from helpers import Proxy, assert_same_audio, extract, http_get, http_stream

from addon.server.output_cache import OutputCache


@pytest.fixture(scope="module")
def proxy(origin, tmp_path_factory):
    """Two workers: a file's requests meet its worker's cache (and the edge's 256m is split)."""
    p = Proxy(tmp_path_factory.mktemp("log") / "outputs.log", "--mode", f"reverse:{origin.url}",
              "--set", "audio_only_workers=2")
    yield p
    p.stop()


def asked(origin, name: str, since: int) -> list[dict]:
    """The headers of the origin's requests for `name` since request number `since`."""
    return [h for _, path, h in origin.requests[since:] if path.split("?")[0] == f"/{name}"]


def test_a_whole_answer_is_kept_and_the_next_ones_are_read_from_it(proxy, origin, media_root, tmp_path):
    name = "kept.mp4"
    shutil.copy(media_root / "h264_aac.mp4", media_root / name)
    expected = extract((media_root / name).read_bytes())
    first = http_get(proxy.port, f"/{name}?ali_audio_only=1")
    assert first.status == 200 and first.clean and first.body == expected
    (tmp_path / "first.mp4").write_bytes(first.body)
    assert_same_audio(media_root / name, tmp_path / "first.mp4")
    since = len(origin.requests)
    again = http_get(proxy.port, f"/{name}?ali_audio_only=1")
    ranged = http_get(proxy.port, f"/{name}?ali_audio_only=1", headers={"Range": "bytes=1000-20999"})
    tail = http_get(proxy.port, f"/{name}?ali_audio_only=1", headers={"Range": "bytes=-100"})
    assert again.status == 200 and again.clean and again.body == expected
    assert again.headers["etag"] == first.headers["etag"]
    assert ranged.status == 206 and ranged.body == expected[1000:21000]
    assert tail.status == 206 and tail.body == expected[-100:]
    # Each answer asked the origin for the version only (the probe: its first 16 bytes), nothing else.
    assert [h.get("Range") for h in asked(origin, name, since)] == ["bytes=0-15"] * 3
    # A new version at the origin: a new key, read from the origin.
    shutil.copy(media_root / "moov_end.mp4", media_root / name)
    os.utime(media_root / name, (time.time() + 5, time.time() + 5))
    since = len(origin.requests)
    replaced = http_get(proxy.port, f"/{name}?ali_audio_only=1")
    assert replaced.clean and replaced.body == extract((media_root / "moov_end.mp4").read_bytes())
    assert len(asked(origin, name, since)) > 1


@pytest.mark.parametrize("cache_control", ["no-store", "private, max-age=60"])
def test_an_answer_the_origin_marks_no_store_or_private_is_never_kept(proxy, origin, cache_control):
    path = f"/h264_aac.mp4?cache={urllib.parse.quote(cache_control)}&ali_audio_only=1"
    first = http_get(proxy.port, path)
    since = len(origin.requests)
    again = http_get(proxy.port, path)
    assert first.status == again.status == 200 and first.clean and again.clean and again.body == first.body
    assert len(asked(origin, "h264_aac.mp4", since)) > 1  # (the probe, then the audio's ranges)


def test_a_range_or_a_broken_answer_keeps_nothing(proxy, origin):
    """Only an answer that sent the whole file fills the cache: not a range, nor one cut short (the
    origin answers from another file after the top level was read, test_file.py's case)."""
    path = "/h264_opus.mp4?part=1&ali_audio_only=1"
    assert http_get(proxy.port, path, headers={"Range": "bytes=0-999"}).status == 206
    since = len(origin.requests)
    assert http_get(proxy.port, path).clean
    assert len(asked(origin, "h264_opus.mp4", since)) > 1
    broken = "/h264_aac.mp4?ali_audio_only=1&replaced=hevc_aac.mp4&replace_after=4&for=cache"
    first = http_get(proxy.port, broken)
    assert first.status == 200 and not first.clean
    since = len(origin.requests)
    http_get(proxy.port, broken)
    assert len(asked(origin, "h264_aac.mp4", since)) > 1


def test_the_cache_is_bounded_and_an_entry_evicted_stays_readable_to_its_reader(tmp_path):
    cache = OutputCache(limit=10)
    fds_before = len(os.listdir("/proc/self/fd"))
    for key, data in (("a", b"12345"), ("b", b"67890")):
        filling = cache.filling(key, len(data), str(tmp_path))
        filling.write(data)
        filling.commit()
    assert cache.filling("c", 11, str(tmp_path)) is None  # bigger than the whole cache
    short = cache.filling("c", 5, str(tmp_path))
    short.write(b"123")
    short.commit()  # (3 of 5 bytes: not whole, not kept)
    assert "c" not in cache.entries and cache.used == 10
    reader = cache.get("a")
    filling = cache.filling("d", 4, str(tmp_path))
    filling.write(b"abcd")
    filling.commit()  # "b" goes (least recently used: "a" was just read)
    assert "b" not in cache.entries and "a" in cache.entries
    filling = cache.filling("e", 8, str(tmp_path))
    filling.write(b"ABCDEFGH")
    filling.commit()  # "a" and "d" go: "a" still readable by the reader that had it

    async def read(r, first, last):
        return b"".join([piece async for piece in r.pieces(first, last)])
    assert asyncio.run(read(reader, 1, 3)) == b"234"
    reader.close()
    assert "a" not in cache.entries and cache.used == 8 and not list(Path(tmp_path).iterdir())  # (unlinked files)
    cache.clear()
    assert cache.used == 0 and len(os.listdir("/proc/self/fd")) == fds_before


def test_a_disk_that_fails_ends_the_filling_never_the_answer(tmp_path):
    """A full disk while a file is kept: the filling is dropped (write and commit raise nothing), the
    answer goes on; a folder where no file can be made: no filling at all."""
    cache = OutputCache(limit=100)
    filling = cache.filling("a", 6, str(tmp_path))

    def full(data):
        raise OSError(28, "No space left on device")
    filling.file.write = full
    filling.write(b"abc")
    filling.write(b"def")
    filling.commit()
    assert not cache.entries and cache.used == 0
    assert cache.filling("b", 6, str(tmp_path / "missing")) is None
