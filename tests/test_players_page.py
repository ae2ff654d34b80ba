"""The demo page as a person opens it, in headless Chromium: one sample of each kind played through
the proxy (audio-only MP4 in <audio>, audio-only FLV and live FLV in mpegts.js, audio-only HLS in hls.js
and DASH in dash.js, beside their originals), and a screenshot."""

import pytest

import demo_page
from helpers import MEDIA, Proxy
from origin import Origin

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    origin = Origin(MEDIA).start()
    demo_page.mount(origin, MEDIA)
    proxy = Proxy(tmp_path_factory.mktemp("log") / "demo.log", "--mode", f"reverse:{origin.url}")
    yield proxy
    proxy.stop()
    origin.shutdown()


def test_the_demo_page_plays_each_kind(demo, tmp_path):
    results = demo_page.play_and_shoot(f"http://127.0.0.1:{demo.port}/", tmp_path / "demo.png")
    for ident, r in results.items():
        print(f"\n{ident}: {r}")
        assert r["error"] is None and not r["errors"], (ident, r)
        assert r["currentTime"] > 0.5, (ident, r)  # it played
    assert results["audio-h264_aac.mp4"]["duration"] == pytest.approx(6.02, abs=0.15)
    for ident in ("audio-h264_aac.flv", "audio-h264_aac.flv-live"):
        assert results[ident]["mediaInfo"] == {"hasAudio": True, "hasVideo": False}, ident
    assert results["original-h264_aac.flv"]["mediaInfo"]["hasVideo"] is True  # the reference beside ours
    for ident in ("audio-hls-ts/master.m3u8", "audio-hls-fmp4/master.m3u8", "audio-dash/manifest.mpd"):
        assert results[ident]["mediaInfo"] == {"hasAudio": True, "hasVideo": False}, ident
    for ident in ("original-hls-ts/master.m3u8", "original-dash/manifest.mpd"):
        assert results[ident]["mediaInfo"]["hasVideo"] is True, ident
    assert (tmp_path / "demo.png").stat().st_size > 20000
