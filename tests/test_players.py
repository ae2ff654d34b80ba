"""A real range client: headless Chromium's <audio> (Debian's Chromium, driven by Playwright) on the
10-minute file through the proxy. It seeks to 80% before that part was downloaded, and must land
there and play on, as it does on the original file. Through the stream path (no ranges) it could not:
the seek restarts the file, which is why audio-only MP4 is served as a file."""

import pytest

from browser import chromium
from helpers import STREAM_PATH, Proxy

pytestmark = pytest.mark.e2e

SEEK_AND_PLAY = """async (url) => {
  const a = document.createElement('audio');
  a.preload = 'auto';
  a.src = url;
  document.body.appendChild(a);
  await new Promise((ok, bad) => { a.onloadedmetadata = ok; a.onerror = () => bad(a.error && a.error.message); });
  const duration = a.duration, buffered = a.buffered.length ? a.buffered.end(a.buffered.length - 1) : 0;
  a.currentTime = duration * 0.8;
  await new Promise(ok => a.addEventListener('seeked', ok, {once: true}));
  const landed = a.currentTime;
  await a.play();
  await new Promise(ok => setTimeout(ok, 1500));
  return {duration, buffered, landed, after: a.currentTime, error: a.error && a.error.message};
}"""


def seek_in_chromium(port: int, path: str) -> dict:
    with chromium() as page:
        page.set_content("<html><body></body></html>")
        return page.evaluate(SEEK_AND_PLAY, f"http://127.0.0.1:{port}/{path}")


@pytest.fixture(scope="module")
def players_proxy(long_origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "players.log", "--mode", f"reverse:{long_origin.url}")
    yield p
    p.stop()


@pytest.mark.parametrize("name", ["long.mp4", "long_moov_end.mp4"])
def test_chromium_seeks_to_80_percent_of_an_audio_only_mp4(players_proxy, name):
    reference = seek_in_chromium(players_proxy.port, name)  # the original file, passed through
    ours = seek_in_chromium(players_proxy.port, f"{name}?ali_audio_only=1")
    print(f"\n{name}: original {reference}\n{name}: audio only {ours}")
    assert reference["landed"] == pytest.approx(480, abs=0.5)
    assert ours["error"] is None and ours["duration"] == pytest.approx(600, abs=0.15)
    assert ours["buffered"] < 400  # the seek target was not downloaded before the seek
    assert ours["landed"] == pytest.approx(480, abs=0.5)
    assert ours["after"] > ours["landed"] + 0.5  # and it plays on from there
    # Chromium asked for the part it seeked to with a Range request of its own, 80% into the file.
    ranges = [line.split(" file: bytes ")[1].split(":")[0] for line in players_proxy.log().splitlines()
              if f"/{name} file: bytes " in line]
    spans = [(int(r.split("-")[0]), int(r.split("/")[1])) for r in ranges]
    assert any(start >= 0.7 * size for start, size in spans), ranges


def test_the_stream_path_cannot_seek(long_origin, tmp_path):
    """Why the file path exists: the streamed answer has no ranges, and Chromium's seek restarts it."""
    p = Proxy(tmp_path / "stream.log", "--mode", f"reverse:{long_origin.url}", *STREAM_PATH)
    try:
        result = seek_in_chromium(p.port, "long.mp4?ali_audio_only=1")
    finally:
        p.stop()
    assert result["landed"] < 5


PLAY_TO_THE_END = """async ([url, tag]) => {
  const el = document.createElement(tag);
  el.muted = true;
  el.src = url;
  document.body.appendChild(el);
  await new Promise((ok, bad) => { el.onloadedmetadata = ok; el.onerror = () => bad(el.error && el.error.message); });
  const duration = el.duration;
  el.playbackRate = 4;
  await el.play();
  await new Promise(ok => { el.onended = ok; setTimeout(ok, 8000); });
  return {duration, ended: el.ended, at: el.currentTime, error: el.error && el.error.message};
}"""


@pytest.fixture(scope="module")
def small_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "small-players.log", "--mode", f"reverse:{origin.url}")
    yield p
    p.stop()


@pytest.mark.parametrize("name", ["h264_aac.mp4", "moov_end.mp4", "frag_moof_base.mp4", "frag_sidx.mp4"])
@pytest.mark.parametrize("tag", ["audio", "video"])
def test_audio_and_video_elements_play_an_audio_only_mp4_to_its_end(small_proxy, name, tag):
    """Moov first, at the end, and fragmented (served as files: with ranges Chromium reads a fragmented
    file's duration, without them it reports the first fragment's, 1.0 s of 4.1, for the original too)."""
    from helpers import MEDIA, streams

    audio = float(next(s for s in streams(MEDIA / name) if s["codec_type"] == "audio")["duration"])
    results = {}
    for label, query in (("original", ""), ("audio only", "?ali_audio_only=1")):
        if label == "original" and tag == "video":
            continue  # the reference once per file is enough
        with chromium() as page:
            page.set_content("<html><body></body></html>")
            results[label] = page.evaluate(PLAY_TO_THE_END, [f"http://127.0.0.1:{small_proxy.port}/{name}{query}", tag])
    print(f"\n{name} <{tag}>: ffprobe's audio {audio} s; {results}")
    r = results["audio only"]
    assert r["error"] is None and r["ended"], r
    assert r["duration"] == pytest.approx(audio, abs=0.15), (r, audio)
    if "original" in results:
        assert results["original"]["duration"] == pytest.approx(r["duration"], abs=0.15)
