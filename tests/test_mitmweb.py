"""mitmweb as a QA engineer sees it, in headless Chromium: the extracted flow marked, its comment, and
(mitmproxy 12, which keeps streamed bodies on request) the MP4/FLV/TS content view of its body."""

import mitmproxy.version
import pytest

from mitmweb_screenshot import shoot

pytestmark = pytest.mark.e2e


def test_mitmweb_shows_the_mark_the_comment_and_the_view(tmp_path):
    texts = shoot(tmp_path, tmp_path / "mitmweb.log")
    # An MP4 from an origin with ranges is served as a file: the comment says what was sent and read.
    assert "audio only (file): 75.5 kB sent of the audio of a 288.2 kB file, " in texts["Comment"]
    assert " kB read from the origin" in texts["Comment"]
    assert "🎧" in texts["list"] or "headphones" in texts["list"], texts["list"][:2000]
    if int(mitmproxy.version.VERSION.split(".")[0]) >= 12:
        assert "MP4/FLV/TS (audio-only edge)" in texts["Response"]
        assert "tracks: audio mp4a 6.02 s" in texts["Response"] and "and drops: nothing" in texts["Response"]
    assert (tmp_path / "mitmweb-view.png").stat().st_size > 10000
    assert (tmp_path / "mitmweb-comment.png").stat().st_size > 10000
