"""The demo's page: every sample beside its audio-only self, in the browser's own players (MP4) and
mpegts.js (FLV, from the npm registry through package.json), with the sizes, the share saved and how the
edge answers it (the formats table's answer kind, as the demo's origin serves ranges), a live FLV, and
the seek parameters to try. Served by the demo's origin at `/`, through the proxy.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from addon.formats import by_path  # noqa: E402
from extractor import AudioExtractor  # noqa: E402
from extractor.spool import TempFileSpool  # noqa: E402

MPEGTS = ROOT / "node_modules" / "mpegts.js" / "dist" / "mpegts.js"
SAMPLES = [  # (file, what it shows)
    ("h264_aac.mp4", "MP4, moov first"),
    ("moov_end.mp4", "MP4, moov at the end"),
    ("two_audio.mp4", "MP4, two audio tracks"),
    ("quicktime.mov", "QuickTime, with chapter and timecode tracks"),
    ("frag_moof_base.mp4", "fragmented MP4"),
    ("h264_aac.flv", "FLV, H.264 + AAC (mpegts.js)"),
    ("flv1_mp3.flv", "FLV, Sorenson Spark + MP3 (mpegts.js)"),
]
# How the edge answers each answer kind (addon/formats.py), in words, with the defaults and an origin that
# serves ranges with a validator (the demo's does).
ANSWERED = {"file": "served as a file: a length and ranges (seek it)", "stream": "streamed: chunked, no length"}
SEEKS = [("h264_aac.mp4", "start=2&end=4", "MP4 from 2 s to 4 s"),
         ("h264_aac.mp4", "start=60", "MP4 start past the end: the CDN's 400"),
         ("h264_aac.flv", "start=100000", "FLV from byte 100000")]


def audio_size(path: Path) -> int:
    x = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 30)
    return sum(map(len, x.feed(path.read_bytes()))) + sum(map(len, x.finish()))


def player(name: str, url: str, kind: str, live: bool = False) -> str:
    """A media element; FLV ones are driven by mpegts.js (see the script at the end of the page)."""
    ident = html.escape(f"{kind}-{name}{'-live' if live else ''}")
    tag = "video" if kind == "original" else "audio"
    if name.endswith(".flv"):
        config = html.escape(json.dumps({"url": url, "live": live}))
        return f'<{tag} id="{ident}" class="flv" data-flv="{config}" controls preload="none"></{tag}>'
    return f'<{tag} id="{ident}" controls preload="metadata" src="{html.escape(url)}"></{tag}>'


def render(media: Path) -> bytes:
    rows = []
    for name, what in SAMPLES:
        size = (media / name).stat().st_size
        audio = audio_size(media / name)
        answered = ANSWERED[by_path(name).answer]
        rows.append(f"""<tr><td><b>{html.escape(name)}</b><br>{html.escape(what)}<br><i>{html.escape(answered)}</i></td>
<td>{player(name, f"/{name}", "original")}<br>{size / 1000:.1f} kB</td>
<td>{player(name, f"/{name}?ali_audio_only=1", "audio")}<br>{audio / 1000:.1f} kB, {1 - audio / size:.0%} saved
<br><a href="/{name}?ali_audio_only=1">/{name}?ali_audio_only=1</a></td></tr>""")
    live = f"""<tr><td><b>h264_aac.flv, live</b><br>paced in real time by the origin (mpegts.js)<br><i>{ANSWERED["stream"]}</i></td>
<td>{player("h264_aac.flv", "/h264_aac.flv?live=1", "original", live=True)}</td>
<td>{player("h264_aac.flv", "/h264_aac.flv?ali_audio_only=1&live=1", "audio", live=True)}</td></tr>"""
    seeks = "".join(f'<li><a href="/{n}?ali_audio_only=1&{q}">/{n}?ali_audio_only=1&amp;{q}</a>: {html.escape(t)}</li>'
                    for n, q, t in SEEKS)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Audio-only edge: demo</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td {{ border-top: 1px solid #ccc; padding: .5em 1em .5em 0; vertical-align: top; }}
video {{ width: 240px; height: 135px; background: #000; }} audio {{ width: 300px; }}
</style></head><body>
<h1>Audio-only edge</h1>
<p>Each sample from the origin, through the proxy: the original on the left, <code>?ali_audio_only=1</code> on the
right, in the browser's own players (MP4) and <a href="https://github.com/xqq/mpegts.js">mpegts.js</a> (FLV).</p>
<table><tr><th>sample</th><th>original</th><th>audio only</th></tr>
{"".join(rows)}{live}</table>
<h2>Seeking with audio only</h2><ul>{seeks}</ul>
<script src="/players/mpegts.js"></script>
<script>
window.players = {{}};
for (const element of document.querySelectorAll("[data-flv]")) {{
  const config = JSON.parse(element.dataset.flv);
  const state = window.players[element.id] = {{errors: [], mediaInfo: null}};
  if (!window.mpegts || !mpegts.getFeatureList().mseLivePlayback) {{ state.errors.push("mpegts.js unavailable"); continue; }}
  const p = mpegts.createPlayer({{type: "flv", url: new URL(config.url, location.href).href, isLive: config.live}},
                                {{enableStashBuffer: !config.live}});
  p.on(mpegts.Events.ERROR, (type, detail) => state.errors.push(type + ": " + detail));
  p.on(mpegts.Events.MEDIA_INFO, info => state.mediaInfo = {{hasAudio: info.hasAudio, hasVideo: info.hasVideo}});
  p.attachMediaElement(element);
  state.player = p;
  element.addEventListener("play", () => {{ if (!state.loaded) {{ state.loaded = true; p.load(); }} }}, {{once: true}});
}}
</script></body></html>""".encode()


def mount(origin, media: Path) -> None:
    """Serve the page and the players from the demo's origin."""
    origin.pages["/"] = (render(media), "text/html; charset=utf-8")
    if MPEGTS.exists():
        origin.pages["/players/mpegts.js"] = (MPEGTS.read_bytes(), "text/javascript")


PLAY = """async (id) => {
  const el = document.getElementById(id);
  el.muted = true;
  const started = performance.now();
  await el.play();
  while (el.currentTime === 0 && performance.now() - started < 8000) await new Promise(ok => setTimeout(ok, 20));
  const firstSound = performance.now() - started;
  await new Promise(ok => setTimeout(ok, 1200));
  const state = (window.players || {})[id] || {};
  return {firstSound, currentTime: el.currentTime, duration: el.duration, error: el.error && el.error.message,
          mediaInfo: state.mediaInfo || null, errors: state.errors || []};
}"""
PLAYED = ("audio-h264_aac.mp4", "audio-h264_aac.flv", "audio-h264_aac.flv-live", "original-h264_aac.flv")


def play_and_shoot(page_url: str, screenshot: Path) -> dict[str, dict]:
    """Open the page in headless Chromium, play one sample of each kind (muted), photograph the page.
    For each: ms from play() to the first sound, where it got to, and what the player said."""
    from browser import chromium

    with chromium(1400, 1100) as page:
        page.goto(page_url)
        results = {ident: page.evaluate(PLAY, ident) for ident in PLAYED}
        page.screenshot(path=str(screenshot), full_page=True)
    return results


if __name__ == "__main__":  # .venv/bin/python scripts/demo_page.py docs/demo.png
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import Proxy
    from origin import Origin

    media = ROOT / "tests" / "media"
    origin = Origin(media).start()
    mount(origin, media)
    proxy = Proxy(Path(sys.argv[1]).with_suffix(".log"), "--mode", f"reverse:{origin.url}")
    try:
        for ident, result in play_and_shoot(f"http://127.0.0.1:{proxy.port}/", Path(sys.argv[1])).items():
            print(ident, result)
    finally:
        proxy.stop()
        origin.shutdown()
        Path(sys.argv[1]).with_suffix(".log").unlink()
