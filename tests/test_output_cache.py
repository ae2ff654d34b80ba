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
from origin import Origin

from addon.server.output_cache import OutputCache


@pytest.fixture(scope="module")
def proxy(origin, tmp_path_factory):
    """Two workers: a file's requests meet its worker's cache (and the edge's 256m is split)."""
    p = Proxy(tmp_path_factory.mktemp("log") / "outputs.log", "--mode", f"reverse:{origin.url}",
              "--set", "audio_only_workers=2")
    yield p
    p.stop()


@pytest.fixture(scope="module", autouse=True)
def copies(media_root):
    """Files of this module's own (other modules count the origin's requests for the shared ones)."""
    for name in ("aac", "opus"):
        shutil.copy(media_root / f"h264_{name}.mp4", media_root / f"cache_{name}.mp4")


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
    path = f"/cache_aac.mp4?cache={urllib.parse.quote(cache_control)}&ali_audio_only=1"
    first = http_get(proxy.port, path)
    since = len(origin.requests)
    again = http_get(proxy.port, path)
    assert first.status == again.status == 200 and first.clean and again.clean and again.body == first.body
    assert len(asked(origin, "cache_aac.mp4", since)) > 1  # (the probe, then the audio's ranges)


def test_a_file_named_by_its_date_alone_is_never_kept(proxy, origin):
    """No ETag, a Last-Modified: a file replaced within one second under the same length is not told
    apart, so what was sent is not kept for others."""
    path = "/cache_aac.mp4?noetag=1&lastmod=1&ali_audio_only=1"
    first = http_get(proxy.port, path)
    since = len(origin.requests)
    again = http_get(proxy.port, path)
    assert first.status == again.status == 200 and again.clean and again.body == first.body
    assert len(asked(origin, "cache_aac.mp4", since)) > 1


def test_the_key_is_the_origin_asked_not_the_clients_host(origin, media_root, tmp_path):
    """Regular mode: the client names the server it connects to and, apart, a Host. Two servers with
    the same file (one could be anyone's, answering the real file's ETag): what one sent is never the
    answer for the other under the same Host."""
    other = Origin(media_root).start()
    proxy = Proxy(tmp_path / "regular.log", "--set", "audio_only_workers=0")
    try:
        for server in (origin, other):
            url = f"http://127.0.0.1:{server.server_address[1]}/cache_aac.mp4?ali_audio_only=1&host=shared"
            since = len(server.requests)
            for _ in range(2):
                reply = http_get(proxy.port, url, host="video.example")
                assert reply.status == 200 and reply.clean
            ranges = [h.get("Range") for _, path, h in server.requests[since:] if "host=shared" in path]
            assert len(ranges) > 2 and ranges[-1] == "bytes=0-15", ranges  # (its own first GET read it)
    finally:
        proxy.stop()
        other.shutdown()


def test_a_range_or_a_broken_answer_keeps_nothing(proxy, origin):
    """Only an answer that sent the whole file fills the cache: not a range, nor one cut short (the
    origin answers from another file after the top level was read, test_file.py's case)."""
    path = "/cache_opus.mp4?part=1&ali_audio_only=1"
    assert http_get(proxy.port, path, headers={"Range": "bytes=0-999"}).status == 206
    since = len(origin.requests)
    assert http_get(proxy.port, path).clean
    assert len(asked(origin, "cache_opus.mp4", since)) > 1
    broken = "/cache_aac.mp4?ali_audio_only=1&replaced=hevc_aac.mp4&replace_after=4"
    first = http_get(proxy.port, broken)
    assert first.status == 200 and not first.clean
    since = len(origin.requests)
    http_get(proxy.port, broken)
    assert len(asked(origin, "cache_aac.mp4", since)) > 1


def ours_open(folder: Path) -> list[str]:
    """This process's open descriptors of files in `folder` (the cache's: unlinked, still in /proc)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{folder}/"):
                found.append(fd)
        except OSError:
            pass
    return found


def test_the_cache_is_bounded_and_an_entry_evicted_stays_readable_to_its_reader(tmp_path):
    """Entries and fillings under way together within the limit (room taken as a filling writes, the
    least recently used entries out for it; never for a filling the others leave no room to), one
    filling a key; a reader keeps its entry readable; no descriptor and no file is left."""
    async def main():
        cache = OutputCache(limit=10)

        async def keep(key, data):
            filling = cache.filling(key, len(data), str(tmp_path))
            await filling.write(data)
            await filling.commit()
        await keep("a", b"12345")
        await keep("b", b"67890")
        assert cache.filling("c", 11, str(tmp_path)) is None  # bigger than the whole cache
        short = cache.filling("c", 5, str(tmp_path))
        assert cache.filling("c", 5, str(tmp_path)) is None  # (one filling a key)
        assert list(cache.entries) == ["a", "b"]  # (no room taken before a byte is written)
        await short.write(b"123")
        await short.commit()  # its 3 bytes take room ("a" out: the oldest); 3 of 5: not whole, not kept
        assert list(cache.entries) == ["b"] and not cache.filling_keys and cache.used == 5
        first, second = cache.filling("x", 8, str(tmp_path)), cache.filling("y", 8, str(tmp_path))
        await first.write(b"abcdefgh")
        await first.write_gathered()  # (in flight: its 8 bytes reserved, "b" out for them)
        await second.write(b"ABCDEFGH")
        await second.write_gathered()  # no room beside x's: y is dropped
        await first.commit()
        await second.commit()
        assert list(cache.entries) == ["x"] and cache.used == 8 and not cache.filling_keys
        reader = cache.get("x")
        assert len(ours_open(tmp_path)) == 2  # ("x" and its reader's duplicate)
        await keep("d", b"1234")  # "x" goes to make room: still readable by the reader that had it
        assert list(cache.entries) == ["d"] and cache.used == 4
        assert b"".join([piece async for piece in reader.pieces(1, 3)]) == b"bcd"
        reader.close()
        assert not list(Path(tmp_path).iterdir())  # (unlinked files)
        cache.clear()
        assert cache.used == 0 and not ours_open(tmp_path) and cache.filling("e", 1, str(tmp_path)) is None
    asyncio.run(main())


def test_fillings_that_hold_the_room_evict_nothing(tmp_path):
    """A filling the others under way leave no room to is dropped, and empties nothing for it."""
    async def main():
        cache = OutputCache(limit=100)
        for key in ("a", "b"):
            filling = cache.filling(key, 10, str(tmp_path))
            await filling.write(bytes(10))
            await filling.commit()
        big = cache.filling("A", 70, str(tmp_path))
        await big.write(bytes(70))
        await big.write_gathered()  # (70 bytes reserved, as a MiB gathered would be)
        other = cache.filling("B", 40, str(tmp_path))
        await other.write(bytes(40))
        await other.write_gathered()
        assert list(cache.entries) == ["a", "b"] and "B" not in cache.filling_keys
        big.abandon()
        assert not cache.filling_keys and cache.used == 20
    asyncio.run(main())


def test_a_disk_that_fails_ends_the_filling_never_the_answer(tmp_path, monkeypatch):
    """A full disk while a file is kept: the filling is dropped (write and commit raise nothing), the
    answer goes on; a folder where no file can be made: no filling at all."""
    from addon.server import output_cache

    async def main():
        cache = OutputCache(limit=4 << 20)
        filling = cache.filling("a", 3 << 20, str(tmp_path))

        def full(descriptor, data):
            os.close(descriptor)  # (as write_all does: the descriptor is its own)
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(output_cache, "write_all", full)
        for _ in range(3):
            await filling.write(bytes(1 << 20))
        await filling.commit()
        assert not cache.entries and cache.used == 0 and not cache.filling_keys
        assert cache.filling("b", 6, str(tmp_path / "missing")) is None
    asyncio.run(main())


def test_an_answer_cancelled_mid_write_leaves_the_thread_a_descriptor_of_its_own(tmp_path, monkeypatch):
    """The answer's task cancelled (the client gone) while a worker thread writes: abandon() closes the
    file at once, and the thread, whose descriptor is its own, writes into the same (unlinked) file, never
    into whatever reuses the file's number; nothing is left open after."""
    import threading

    from addon.server import output_cache

    started, go_on, seen = threading.Event(), threading.Event(), []
    real = output_cache.write_all

    def slow(descriptor, data):
        seen.append(descriptor)
        started.set()
        go_on.wait(5)
        real(descriptor, data)
    monkeypatch.setattr(output_cache, "write_all", slow)

    async def main():
        cache = OutputCache(limit=8 << 20)
        filling = cache.filling("k", 2 << 20, str(tmp_path))
        own = filling.file.fileno()
        task = asyncio.create_task(filling.write(bytes(1 << 20)))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        filling.abandon()
        assert seen and seen[0] != own and not cache.filling_keys
        go_on.set()
        for _ in range(50):
            if not ours_open(tmp_path):
                break
            await asyncio.sleep(0.02)
        assert not ours_open(tmp_path)
    asyncio.run(main())
