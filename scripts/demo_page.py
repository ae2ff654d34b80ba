"""The demo's page: every sample beside its audio-only self, in the browser's own players (MP4),
mpegts.js (FLV), hls.js (HLS) and dash.js (DASH) (from the npm registry through package.json), with the
sizes, the share saved and how the edge answers it (the formats table's answer kind, as the demo's
origin serves ranges), a live FLV, and the seek parameters to try. Served by the demo's origin at `/`,
through the proxy. The HLS and DASH presentations are made by ffmpeg when the page is mounted.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from addon.formats import by_path  # noqa: E402
from extractor import AudioExtractor  # noqa: E402
from extractor.mp4.sidx import audio_track_ids  # noqa: E402
from extractor.spool import TempFileSpool  # noqa: E402

NODE_MODULES = ROOT / "node_modules"
PLAYER_SCRIPTS = {"/players/mpegts.js": NODE_MODULES / "mpegts.js" / "dist" / "mpegts.js",
                  "/players/hls.js": NODE_MODULES / "hls.js" / "dist" / "hls.min.js",
                  "/players/dash.js": NODE_MODULES / "dashjs" / "dist" / "modern" / "umd" / "dash.all.min.js"}
TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mpd": "application/dash+xml", ".ts": "video/mp2t",
         ".m4s": "video/iso.segment", ".mp4": "video/mp4"}
# HLS and DASH presentations (path of the entry point under /streaming/, what it shows, player), made by
# ffmpeg from a test pattern and a tone: 8 s, 2 s segments.
STREAMING = [("hls-ts/master.m3u8", "HLS, TS segments (hls.js)", "hls"),
             ("hls-fmp4/master.m3u8", "HLS, fMP4 segments (hls.js)", "hls"),
             ("dash/manifest.mpd", "DASH, video and audio sets (dash.js)", "dash")]
_SOURCE = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=8", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000:duration=8", "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
           "-preset", "ultrafast", "-g", "50", "-b:v", "400k", "-c:a", "aac", "-b:a", "64k"]
_MAKE = {"hls-ts": ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-master_pl_name", "master.m3u8",
                    "media.m3u8"],
         "hls-fmp4": ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
                      "-master_pl_name", "master.m3u8", "media.m3u8"],
         "dash": ["-f", "dash", "-seg_duration", "2", "-adaptation_sets", "id=0,streams=v id=1,streams=a",
                  "manifest.mpd"]}
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
ANSWERED = {"file": "served as a file: a length and ranges (seek it)", "stream": "streamed: chunked, no length",
            "manifest": "rewritten: only audio variants or sets, each segment asked for audio only"}
SEEKS = [("h264_aac.mp4", "start=2&end=4", "MP4 from 2 s to 4 s"),
         ("h264_aac.mp4", "start=60", "MP4 start past the end: the CDN's 400"),
         ("h264_aac.flv", "start=100000", "FLV from byte 100000")]


def audio_size(path: Path, **kw) -> int:
    x = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 30, **kw)
    return sum(map(len, x.feed(path.read_bytes()))) + sum(map(len, x.finish()))


def streaming_sizes(folder: Path) -> tuple[int, int]:
    """(the presentation's media bytes, what its audio-only form sends): TS segments through the core,
    an fMP4 init through the core and its segments filtered to its audio tracks, DASH's audio set."""
    files = [f for f in folder.iterdir() if f.suffix in (".ts", ".m4s", ".mp4")]
    total = sum(f.stat().st_size for f in files)
    if folder.name == "dash":
        return total, sum(f.stat().st_size for f in files if "stream1" in f.name)
    tracks = {}
    if (init := folder / "init.mp4").exists():
        tracks = {"segment_tracks": audio_track_ids(init.read_bytes())}
    return total, sum(audio_size(f, **({} if f.suffix == ".mp4" else tracks)) for f in files)


def make_streaming(root: Path) -> dict[str, tuple[int, int]]:
    """The presentations of STREAMING made under root; their sizes by folder."""
    sizes = {}
    for folder, args in _MAKE.items():
        (root / folder).mkdir(parents=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", *_SOURCE, *args], cwd=root / folder, check=True,
                       capture_output=True, timeout=120)
        sizes[folder] = streaming_sizes(root / folder)
    return sizes


def player(name: str, url: str, kind: str, live: bool = False) -> str:
    """A media element; FLV ones are driven by mpegts.js, HLS by hls.js, DASH by dash.js (see the
    script at the end of the page)."""
    ident = html.escape(f"{kind}-{name}{'-live' if live else ''}")
    tag = "video" if kind == "original" else "audio"
    if name.endswith((".m3u8", ".mpd")):
        attribute = "data-hls" if name.endswith(".m3u8") else "data-dash"
        return f'<{tag} id="{ident}" {attribute}="{html.escape(url)}" controls></{tag}>'
    if name.endswith(".flv"):
        config = html.escape(json.dumps({"url": url, "live": live}))
        return f'<{tag} id="{ident}" class="flv" data-flv="{config}" controls preload="none"></{tag}>'
    return f'<{tag} id="{ident}" controls preload="metadata" src="{html.escape(url)}"></{tag}>'


def render(media: Path, streaming: dict[str, tuple[int, int]]) -> bytes:
    rows = []
    for name, what in SAMPLES:
        size = (media / name).stat().st_size
        audio = audio_size(media / name)
        answered = ANSWERED[by_path(name).answer]
        rows.append(f"""<tr><td><b>{html.escape(name)}</b><br>{html.escape(what)}<br><i>{html.escape(answered)}</i></td>
<td>{player(name, f"/{name}", "original")}<br>{size / 1000:.1f} kB</td>
<td>{player(name, f"/{name}?ali_audio_only=1", "audio")}<br>{audio / 1000:.1f} kB, {1 - audio / size:.0%} saved
<br><a href="/{name}?ali_audio_only=1">/{name}?ali_audio_only=1</a></td></tr>""")
    for entry, what, _ in STREAMING:
        size, audio = streaming[entry.split("/")[0]]
        url = f"/streaming/{entry}"
        rows.append(f"""<tr><td><b>streaming/{html.escape(entry)}</b><br>{html.escape(what)}<br><i>{ANSWERED["manifest"]}</i></td>
<td>{player(entry, url, "original")}<br>{size / 1000:.1f} kB of media</td>
<td>{player(entry, f"{url}?ali_audio_only=1", "audio")}<br>{audio / 1000:.1f} kB, {1 - audio / size:.0%} saved
<br><a href="{url}?ali_audio_only=1">{url}?ali_audio_only=1</a></td></tr>""")
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
right, in the browser's own players (MP4), <a href="https://github.com/xqq/mpegts.js">mpegts.js</a> (FLV),
<a href="https://github.com/video-dev/hls.js">hls.js</a> (HLS) and <a href="https://github.com/Dash-Industry-Forum/dash.js">dash.js</a> (DASH).</p>
<table><tr><th>sample</th><th>original</th><th>audio only</th></tr>
{"".join(rows)}{live}</table>
<h2>Seeking with audio only</h2><ul>{seeks}</ul>
<script src="/players/mpegts.js"></script><script src="/players/hls.js"></script><script src="/players/dash.js"></script>
<script>
window.players = {{}};
for (const element of document.querySelectorAll("[data-hls]")) {{
  const state = window.players[element.id] = {{errors: [], mediaInfo: null}};
  if (!window.Hls || !Hls.isSupported()) {{ state.errors.push("hls.js unavailable"); continue; }}
  const h = new Hls({{enableWorker: false}});
  h.on(Hls.Events.ERROR, (e, d) => {{ if (d.fatal) state.errors.push(d.type + ": " + d.details); }});
  h.on(Hls.Events.BUFFER_CODECS, (e, d) => state.mediaInfo = {{hasAudio: "audio" in d, hasVideo: "video" in d}});
  h.loadSource(element.dataset.hls);
  h.attachMedia(element);
}}
for (const element of document.querySelectorAll("[data-dash]")) {{
  const state = window.players[element.id] = {{errors: [], mediaInfo: null}};
  if (!window.dashjs) {{ state.errors.push("dash.js unavailable"); continue; }}
  const p = dashjs.MediaPlayer().create();
  p.updateSettings({{debug: {{logLevel: dashjs.Debug.LOG_LEVEL_NONE}}}});
  p.on(dashjs.MediaPlayer.events.ERROR, e => state.errors.push("dash.js " + JSON.stringify(e.error)));
  p.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => state.mediaInfo = {{
    hasAudio: p.getTracksFor("audio").length > 0, hasVideo: p.getTracksFor("video").length > 0}});
  p.initialize(element, element.dataset.dash, false);
}}
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
    """Serve the page, the HLS and DASH presentations (made now) and the players from the demo's origin."""
    with tempfile.TemporaryDirectory() as made:
        root = Path(made)
        sizes = make_streaming(root)
        for file in root.rglob("*.*"):
            origin.pages[f"/streaming/{file.relative_to(root).as_posix()}"] = (file.read_bytes(), TYPES[file.suffix])
    origin.pages["/"] = (render(media, sizes), "text/html; charset=utf-8")
    for path, script in PLAYER_SCRIPTS.items():
        if script.exists():
            origin.pages[path] = (script.read_bytes(), "text/javascript")


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
PLAYED = ("audio-h264_aac.mp4", "audio-h264_aac.flv", "audio-h264_aac.flv-live", "original-h264_aac.flv",
          "audio-hls-ts/master.m3u8", "audio-hls-fmp4/master.m3u8", "audio-dash/manifest.mpd",
          "original-hls-ts/master.m3u8", "original-dash/manifest.mpd")


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
