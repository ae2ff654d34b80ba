"""The audio-only HLS and DASH presentations played through mitmdump by the players apps use (hls.js,
shaka-player, dash.js: tests/players_js.py) in headless Chromium: to the end with no error, no video
track and no video frame, the original's duration, a seek to 80% landing there; a live HLS playlist
whose window moves with time played across its refreshes."""

from __future__ import annotations

import json
import subprocess

import pytest

import hlsmedia
import players_js
from browser import chromium
from helpers import Proxy
from origin import Origin
from test_hls_e2e import ondemand_mpd

pytestmark = pytest.mark.e2e
PARAM = "ali_audio_only=1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root, made = hlsmedia.presentations(tmp_path_factory)
    origin = Origin(root).start()
    made["ondemand_mpd"] = root / ondemand_mpd(root, made["ondemand"].read_bytes()).lstrip("/")
    proxy = Proxy(tmp_path_factory.mktemp("log") / "players.log", "--mode", f"reverse:{origin.url}")
    yield root, made, origin, proxy
    proxy.stop()
    origin.shutdown()


@pytest.fixture(scope="module")
def browser():
    with chromium() as page:
        yield page


def original_duration(url: str) -> float:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", url], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return float(json.loads(r.stdout)["format"]["duration"])


@pytest.mark.parametrize("player,name", [("hls.js", "ts"), ("hls.js", "fmp4"), ("shaka", "ts"), ("shaka", "fmp4"),
                                         ("dash.js", "dash"), ("shaka", "dash"), ("dash.js", "ondemand_mpd"),
                                         ("shaka", "ondemand_mpd")])
def test_a_player_plays_the_audio_only_presentation(stack, browser, player, name):
    root, made, origin, proxy = stack
    path = "/" + made[name].relative_to(root).as_posix()
    browser.goto(f"http://127.0.0.1:{proxy.port}/")  # the proxy's own origin: no CORS in the way
    r = players_js.play(browser, player, f"http://127.0.0.1:{proxy.port}{path}?{PARAM}")
    print(r)
    assert r["errors"] == [] and r["loaded"] and r["ended"], r
    assert r["video_width"] == 0 and not r["decoded_video_frames"], r
    assert r["levels"] and all(level["video"] is None and level["audio"] for level in r["levels"]), r
    assert r["duration"] == pytest.approx(original_duration(f"{origin.url}{path}"), abs=0.2)
    assert r["seeked"] and r["landed"] == pytest.approx(r["seek_target"], abs=0.5), r
    assert r["after_seek"] >= r["landed"], r


@pytest.mark.parametrize("player", ["hls.js", "shaka"])
def test_live_hls_plays_across_playlist_refreshes(stack, browser, player):
    root, made, origin, proxy = stack
    path = f"/ts/moving-{player}.m3u8"  # (a window of its own: it starts moving at its first request)
    origin.live_playlists[path] = (root / "ts" / "media.m3u8", 1)
    browser.goto(f"http://127.0.0.1:{proxy.port}/")
    r = players_js.play_live(browser, player, f"http://127.0.0.1:{proxy.port}{path}?{PARAM}")
    print(r)
    assert r["errors"] == [] and r["loaded"] and r["ended"], r
    assert r["video_width"] == 0 and not r["decoded_video_frames"], r
    loads = [p for _, p, _ in origin.requests if p.startswith(path)]
    assert len(loads) >= 3, loads  # the window moved twice: the player saw it through the proxy
    assert r["at_end"] > 3.5, r  # it played the segments published after it joined
