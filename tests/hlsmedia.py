"""HLS and DASH presentations made with ffmpeg at test time (small and short: 6 s, 160x120), and a
tiny HTTP server on 127.0.0.1 that plays our server's part for the manifest tests."""

from __future__ import annotations

import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from extractor.mp4.segment import SegmentFilter
from helpers import extract

SECONDS = 6
_VIDEO = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=25:duration={SECONDS}"]
_AUDIO = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}"]
_CODECS = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
           "-c:a", "aac", "-b:a", "64k"]
_HLS = ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"]


def _ffmpeg(*args, cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["ffmpeg", "-v", "error", "-y", *_VIDEO, *_AUDIO, *args], cwd=cwd, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr.decode()


def presentations(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The presentations, made once a session (the test modules that use them share them)."""
    root = tmp_path_factory.getbasetemp() / "presentations"
    done = root / "made"
    if not done.exists():
        made = make_all(root)
        done.write_text("\n".join(f"{k} {v.relative_to(root)}" for k, v in made.items()))
    pairs = (line.split(" ", 1) for line in done.read_text().splitlines())
    return root, {name: root / path for name, path in pairs}


def ondemand_mpd(codecs: str, seconds: int, init_end: int, index_first: int, index_end: int) -> str:
    """An on-demand MPD (SegmentBase, one muxed Representation) over `sidx.mp4`, a fragmented MP4 whose
    moov ends at init_end and whose index lies at index_first..index_end-1."""
    return f"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT{seconds}S"
     minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
  <Period id="0">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" maxWidth="160" maxHeight="120">
      <Representation id="muxed" bandwidth="300000" codecs="{codecs}" width="160" height="120">
        <BaseURL>sidx.mp4</BaseURL>
        <SegmentBase indexRange="{index_first}-{index_end - 1}"><Initialization range="0-{init_end - 1}"/></SegmentBase>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"""


def materialize(plan, data: bytes) -> bytes:
    """A FilePlan's output from the input's bytes: its head, then each range with our bytes before it."""
    out = [plan.head]
    for k in range(len(plan.ranges.starts)):
        out += [plan.inserts.get(k, b""), data[plan.ranges.starts[k] : plan.ranges.ends[k]]]
    out.append(plan.inserts.get(len(plan.ranges.starts), b""))
    joined = b"".join(out)
    assert len(joined) == plan.size
    return joined


def make_all(root: Path) -> dict[str, Path]:
    """Each presentation's entry point, by name."""
    made = {}
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, *_HLS, "-master_pl_name", "master.m3u8", "media.m3u8",
            cwd=root / "ts")
    made["ts"] = root / "ts" / "master.m3u8"
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, *_HLS, "-hls_segment_type", "fmp4",
            "-master_pl_name", "master.m3u8", "media.m3u8", cwd=root / "fmp4")
    made["fmp4"] = root / "fmp4" / "master.m3u8"
    # Two video bitrates and one audio rendition in a group of its own.
    _ffmpeg("-map", "0:v", "-map", "0:v", "-map", "1:a", *_CODECS, "-b:v:0", "150k", "-b:v:1", "300k", *_HLS,
            "-var_stream_map", "v:0,agroup:aud v:1,agroup:aud a:0,agroup:aud,default:yes,language:en",
            "-master_pl_name", "master.m3u8", "stream_%v.m3u8", cwd=root / "group")
    made["group"] = root / "group" / "master.m3u8"
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, *_HLS, "-hls_flags", "single_file",
            "-master_pl_name", "master.m3u8", "media.m3u8", cwd=root / "single")
    made["single"] = root / "single" / "master.m3u8"
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, *_HLS, "-hls_segment_type", "fmp4", "-hls_flags", "single_file",
            "-master_pl_name", "master.m3u8", "media.m3u8", cwd=root / "single_fmp4")
    made["single_fmp4"] = root / "single_fmp4" / "master.m3u8"
    made["live"] = _live(root / "ts" / "media.m3u8", root / "ts" / "live.m3u8")
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, "-f", "dash", "-seg_duration", "2",
            "-adaptation_sets", "id=0,streams=v id=1,streams=a", "manifest.mpd", cwd=root / "dash")
    made["dash"] = root / "dash" / "manifest.mpd"
    _ffmpeg("-map", "0:v", "-map", "1:a", *_CODECS, "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof+global_sidx", "sidx.mp4", cwd=root / "ondemand")
    made["ondemand"] = root / "ondemand" / "sidx.mp4"
    return made


def _live(vod: Path, live: Path) -> Path:
    """A live sliding window of the VOD's segments: the last two, no ENDLIST, the sequence moved on."""
    lines = vod.read_text().splitlines()
    head = [l for l in lines if l.startswith(("#EXTM3U", "#EXT-X-VERSION", "#EXT-X-TARGETDURATION"))]
    segments = [(lines[i], lines[i + 1]) for i, l in enumerate(lines) if l.startswith("#EXTINF")]
    window = segments[-2:]
    body = head + [f"#EXT-X-MEDIA-SEQUENCE:{len(segments) - 2}"] + [l for pair in window for l in pair]
    live.write_text("\n".join(body) + "\n")
    return live


class Handler(SimpleHTTPRequestHandler):
    """Files from a directory; with the audio parameter, a playlist or MPD comes back rewritten by
    `rewriter(text, url)` and a media file as its bytes `<name>_range` names (whole otherwise)."""

    rewriter = None
    name = "ali_audio_only"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        path = Path(self.directory) / url.path.lstrip("/")
        if not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        if self.name not in query:
            return self._plain(data)
        if path.suffix in (".m3u8", ".mpd"):
            text = self.rewriter(data.decode(), f"http://{self.headers['Host']}{self.path}")
            data = (text if text is not None else data.decode()).encode()
        else:
            data = self._audio_only(data, query)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


    def _audio_only(self, data: bytes, query: dict[str, str]) -> bytes:
        """A media file as our server answers it: the range `<name>_range` names; an fMP4 segment
        filtered to the tracks `<name>_track` names; an MP4 with a moov (an init segment) through the
        MP4 filter; anything else (TS segments) whole."""
        if f"{self.name}_range" in query:
            first, _, last = query[f"{self.name}_range"].partition("-")
            data = data[int(first): int(last) + 1 if last else None]
        if f"{self.name}_track" in query:
            ids = [int(t) for t in query[f"{self.name}_track"].split(",")]
            f = SegmentFilter(ids)
            return b"".join(map(bytes, f.feed(data) + f.finish()))
        if data[4:8] == b"ftyp":
            return extract(data)
        return data

    def _plain(self, data: bytes) -> None:
        """The file as it is, one byte range of it when asked (the origin of a byte-range playlist)."""
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            last = min(int(last) if last else len(data) - 1, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            data = data[int(first): last + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(directory: Path, rewriter) -> tuple[ThreadingHTTPServer, str]:
    handler = type("BoundHandler", (Handler,), {"rewriter": staticmethod(rewriter)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    server.requests = []  # the paths asked for, in order
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
