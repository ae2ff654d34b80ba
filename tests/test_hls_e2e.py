"""HLS and DASH made audio only by one URL parameter, through a real mitmdump in front of an origin
serving presentations made by ffmpeg (tests/hlsmedia.py). Judged by ffprobe and ffmpeg reading the
audio-only master or MPD through the proxy, against the origin's own presentation read directly."""

from __future__ import annotations

import json
import os
import subprocess
import time
from urllib.parse import urljoin
from xml.etree import ElementTree

import m3u8
import pytest

import hlsmedia
from extractor.mp4.sidx import parse_sidx
from helpers import Proxy, http_get
from origin import Origin

PARAM = "ali_audio_only=1"
MPD_NS = "{urn:mpeg:dash:schema:mpd:2011}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root, made = hlsmedia.presentations(tmp_path_factory)
    origin = Origin(root).start()
    proxy = Proxy(tmp_path_factory.mktemp("log") / "proxy.log", "--mode", f"reverse:{origin.url}")
    yield root, made, origin, proxy
    proxy.stop()
    origin.shutdown()


def _run(*cmd) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r


def stream_kinds(url: str) -> list[str]:
    r = _run("ffprobe", "-v", "error", "-show_streams", "-of", "json", url)
    return sorted(s["codec_type"] for s in json.loads(r.stdout)["streams"])


def audio_md5(url: str) -> list[str]:
    """framemd5 of every audio packet, with the timestamps as the segments carry them."""
    r = _run("ffmpeg", "-v", "error", "-copyts", "-i", url, "-map", "0:a", "-c", "copy", "-f", "framemd5", "-")
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def decodes_cleanly(url: str) -> bool:
    r = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", url, "-map", "0:a", "-f", "null", "-"],
                       capture_output=True, timeout=120)
    return r.returncode == 0 and not r.stderr


def get(proxy, path: str, **kw):
    reply = http_get(proxy.port, path, **kw)
    assert reply.clean
    return reply


def media_playlists(proxy, master_path: str) -> list[str]:
    """The media playlists an audio-only master names, as paths at the proxy."""
    master = m3u8.loads(get(proxy, master_path).body.decode())
    assert master.is_variant
    base = f"http://127.0.0.1:{proxy.port}{master_path}"
    paths = [urljoin(base, p.uri).split(str(proxy.port), 1)[1] for p in master.playlists]
    assert paths and all(PARAM in p for p in paths)
    return paths


def local_segment(root, media_path: str, segment: m3u8.Segment) -> str:
    """The origin's segment as a file (its byte range cut out of the single file)."""
    file = root / urljoin(media_path, segment.uri).split("?")[0].lstrip("/")
    if not segment.byterange:
        return str(file)
    length, _, offset = segment.byterange.partition("@")
    cut = file.with_name(f"{file.stem}-{offset}{file.suffix}")
    cut.write_bytes(file.read_bytes()[int(offset) : int(offset) + int(length)])
    return str(cut)


def timeline(playlist: m3u8.M3U8) -> list[tuple[float, str | None]]:
    return [(s.duration, s.byterange) for s in playlist.segments]


@pytest.mark.parametrize("name", ["ts", "fmp4", "group", "single", "single_fmp4"])
def test_an_hls_presentation_is_audio_only_through_the_proxy(stack, name):
    root, made, origin, proxy = stack
    path = "/" + made[name].relative_to(root).as_posix()
    ours, theirs = f"http://127.0.0.1:{proxy.port}{path}?{PARAM}", f"{origin.url}{path}"
    assert stream_kinds(ours) == ["audio"]
    assert "video" in stream_kinds(theirs)
    original = audio_md5(theirs if name != "group" else f"{origin.url}/group/stream_2.m3u8")
    assert len(original) > 100
    rewritten = audio_md5(ours)
    if "fmp4" in name:
        assert rewritten == original
    else:
        # Every packet's size and hash. Reading audio-only TS segments, ffmpeg's HLS demuxer gives the
        # first PES's later packets other timestamps than beside video (it does so for the origin's own
        # audio playlist too: test_manifests); each segment's timestamps are compared whole below.
        assert [p.split(",")[3:] for p in rewritten] == [p.split(",")[3:] for p in original]
    assert decodes_cleanly(ours)
    # Each media playlist: as many segments as the origin's, of the same durations (a byte range is
    # in the URI now: its segment is what the range was).
    for media_path in media_playlists(proxy, f"{path}?{PARAM}"):
        rewritten = m3u8.loads(get(proxy, media_path).body.decode())
        plain = m3u8.loads((root / media_path.split("?")[0].lstrip("/")).read_text())
        assert [d for d, _ in timeline(rewritten)] == [d for d, _ in timeline(plain)] and len(plain.segments) >= 3
        assert all(PARAM in s.uri and s.byterange is None for s in rewritten.segments)
        if "fmp4" in name:
            assert all("ali_audio_only_track=" in s.uri for s in rewritten.segments)
        else:  # each TS segment alone, its timestamps included, as the origin's (a byte range: its bytes)
            for ours_seg, plain_seg in zip(rewritten.segments, plain.segments):
                seg_url = f"http://127.0.0.1:{proxy.port}{urljoin(media_path, ours_seg.uri)}"
                assert stream_kinds(seg_url) == ["audio"]
                assert audio_md5(seg_url) == audio_md5(local_segment(root, media_path, plain_seg))
    # The origin never saw our parameters.
    assert not [p for _, p, _ in origin.requests if "ali_audio_only" in p]


def test_a_live_playlist_keeps_its_window_and_the_origins_caching(stack):
    root, made, origin, proxy = stack
    path = "/" + made["live"].relative_to(root).as_posix()
    reply = get(proxy, f"{path}?cors=1&{PARAM}")
    assert reply.status == 200 and int(reply.headers["content-length"]) == len(reply.body)
    assert reply.headers["cache-control"] == "max-age=60" and reply.headers["access-control-allow-origin"] == "*"
    assert reply.headers["etag"].startswith('W/"') and reply.headers["content-type"] == "application/vnd.apple.mpegurl"
    ours, plain = m3u8.loads(reply.body.decode()), m3u8.loads(made["live"].read_text())
    assert ours.media_sequence == plain.media_sequence and not ours.is_endlist
    assert timeline(ours) == timeline(plain)
    for segment, original in zip(ours.segments, plain.segments):
        seg_url = f"http://127.0.0.1:{proxy.port}{urljoin(path, segment.uri)}"
        assert stream_kinds(seg_url) == ["audio"]
        assert audio_md5(seg_url) == audio_md5(f"{origin.url}{urljoin(path, original.uri)}")


def test_ll_hls_parameters_reach_the_origin(stack):
    root, made, origin, proxy = stack
    get(proxy, f"/ts/media.m3u8?_HLS_msn=2&_HLS_part=0&{PARAM}")
    assert origin.requests[-1][1] == "/ts/media.m3u8?_HLS_msn=2&_HLS_part=0"


def test_dash_from_ffmpegs_muxer_is_audio_only(stack):
    root, made, origin, proxy = stack
    ours, theirs = f"http://127.0.0.1:{proxy.port}/dash/manifest.mpd?{PARAM}", f"{origin.url}/dash/manifest.mpd"
    assert stream_kinds(ours) == ["audio"] and stream_kinds(theirs) == ["audio", "video"]
    original = audio_md5(theirs)
    assert len(original) > 100 and audio_md5(ours) == original
    reply = get(proxy, f"/dash/manifest.mpd?{PARAM}")
    assert reply.headers["content-type"] == "application/dash+xml"
    sets = ElementTree.fromstring(reply.body).findall(f"{MPD_NS}Period/{MPD_NS}AdaptationSet")
    assert [s.get("contentType") for s in sets] == ["audio"]


def ondemand_mpd(root, data: bytes) -> str:
    """An on-demand MPD (SegmentBase) over ffmpeg's muxed fragmented MP4 with its sidx, written beside it."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append((data[pos + 4 : pos + 8], pos))
        pos += int.from_bytes(data[pos : pos + 4], "big")
    moov_end = offsets[2][1]
    index_end = next(p for kind, p in offsets if kind == b"moof")
    mpd = hlsmedia.ondemand_mpd("avc1.42c00d,mp4a.40.2", hlsmedia.SECONDS, moov_end, moov_end, index_end)
    (root / "ondemand" / "manifest.mpd").write_text(mpd)
    return "/ondemand/manifest.mpd"


def test_an_on_demand_muxed_file_gets_its_audio_index(stack):
    root, made, origin, proxy = stack
    data = made["ondemand"].read_bytes()
    path = ondemand_mpd(root, data)
    reply = get(proxy, f"{path}?{PARAM}")
    representation = ElementTree.fromstring(reply.body).find(f".//{MPD_NS}Representation")
    assert representation.get("codecs") == "mp4a.40.2"
    base = representation.find(f"{MPD_NS}SegmentBase")
    first, last = map(int, base.get("indexRange").split("-"))
    init_last = int(base.find(f"{MPD_NS}Initialization").get("range").split("-")[1])
    assert first == init_last + 1
    # The audio-only file at the proxy: its sidx where the MPD says, indexing the file to its end.
    file_url = f"/ondemand/{representation.find(f'{MPD_NS}BaseURL').text}"
    whole = get(proxy, file_url).body
    ranged = get(proxy, file_url, headers={"Range": f"bytes={first}-{last}"})
    assert ranged.status == 206 and ranged.body == whole[first : last + 1] and whole[first + 4 : first + 8] == b"sidx"
    sidx = parse_sidx(ranged.body, first)
    assert sidx.spans()[-1][1] == len(whole) and all(whole[a + 4 : a + 8] == b"moof" for a, _ in sidx.spans())
    out = root / "ondemand" / "ours.mp4"
    out.write_bytes(whole)
    assert stream_kinds(str(out)) == ["audio"]
    assert audio_md5(str(out)) == audio_md5(str(made["ondemand"]))
    mpd_url = f"http://127.0.0.1:{proxy.port}{path}?{PARAM}"
    assert stream_kinds(mpd_url) == ["audio"]


def test_an_on_demand_file_without_a_file_answer_is_dropped(stack):
    """Its file cannot be served as a file (the origin ignores ranges): our file's index is not
    known, so the Representation goes, and the log says why; it was the only audio, so the MPD would
    have none: the origin's passes through as it is (as an AES-128 playlist does), never an MPD with
    nothing to play."""
    root, made, origin, proxy = stack
    path = ondemand_mpd(root, made["ondemand"].read_bytes())
    mpd = (root / path.lstrip("/")).read_text().replace("<BaseURL>sidx.mp4<", "<BaseURL>sidx.mp4?norange=1<")
    (root / "ondemand" / "norange.mpd").write_text(mpd)
    reply = get(proxy, f"/ondemand/norange.mpd?{PARAM}")
    assert reply.status == 200 and reply.body == mpd.encode()
    assert "Representation muxed dropped" in proxy.wait_for_log("Representation muxed dropped")


def test_aes128_playlists_pass_through_unchanged(stack, tmp_path):
    root, made, origin, proxy = stack
    folder = root / "aes"
    folder.mkdir(exist_ok=True)
    (folder / "key.bin").write_bytes(bytes(range(16)))
    (tmp_path / "keyinfo").write_text(f"key.bin\n{folder / 'key.bin'}\n")
    hlsmedia._ffmpeg("-map", "0:v", "-map", "1:a", *hlsmedia._CODECS, *hlsmedia._HLS, "-hls_key_info_file",
                     str(tmp_path / "keyinfo"), "media.m3u8", cwd=folder)
    reply = get(proxy, f"/aes/media.m3u8?{PARAM}")
    assert reply.status == 200 and reply.body == (folder / "media.m3u8").read_bytes()
    log = proxy.wait_for_log("AES-128")
    assert "/aes/media.m3u8" in log and "passed through unchanged" in log


def test_the_flows_say_what_was_done(stack, tmp_path):
    """mitmdump's saved flows: a rewritten playlist marked and named, an AES-128 one's reason kept."""
    root, made, origin, proxy = stack
    (root / "ts" / "broken.m3u8").write_text("<html>not a playlist</html>")
    saved = tmp_path / "flows"
    own = Proxy(tmp_path / "own.log", "--mode", f"reverse:{origin.url}", "-w", str(saved))
    try:
        get(own, f"/ts/media.m3u8?{PARAM}")
        get(own, f"/ts/broken.m3u8?{PARAM}")
    finally:
        own.stop()
    from mitmproxy import io
    with open(saved, "rb") as f:
        flows = {flow.request.path.split("?")[0]: flow for flow in io.FlowReader(f).stream()}
    assert flows["/ts/media.m3u8"].marked and "HLS rewritten to audio only" in flows["/ts/media.m3u8"].comment
    assert flows["/ts/broken.m3u8"].comment.startswith("audio only: not extracted: the origin's playlist passed through")


UNKNOWN = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MY-VENDOR-TAG:shape="round",size=3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXTINF:2.000000,
#EXT-X-ANOTHER-UNKNOWN
media0.ts
#EXT-X-DISCONTINUITY
#EXTINF:2.000000,
media1.ts
#EXT-X-ENDLIST
"""


def test_unknown_tags_are_kept(stack):
    root, made, origin, proxy = stack
    (root / "ts" / "unknown.m3u8").write_text(UNKNOWN)
    body = get(proxy, f"/ts/unknown.m3u8?{PARAM}").body.decode()
    assert '#EXT-X-MY-VENDOR-TAG:shape="round",size=3' in body and "#EXT-X-ANOTHER-UNKNOWN" in body
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z" in body and "#EXT-X-DISCONTINUITY" in body
    assert f"media0.ts?{PARAM}" in body


def test_not_a_playlist_passes_through_with_a_warning(stack):
    root, made, origin, proxy = stack
    (root / "ts" / "broken.m3u8").write_text("<html>not a playlist</html>")
    reply = get(proxy, f"/ts/broken.m3u8?{PARAM}")
    assert reply.status == 200 and reply.body == b"<html>not a playlist</html>"
    assert "does not begin with #EXTM3U" in proxy.wait_for_log("broken.m3u8: not an HLS")


def test_a_byte_range_the_origin_does_not_honour_is_a_clean_502(stack):
    root, made, origin, proxy = stack
    reply = get(proxy, f"/single/media.ts?norange=1&{PARAM}&ali_audio_only_range=0-1879")
    assert reply.status == 502 and b"the origin answered 200" in reply.body
    good = get(proxy, f"/single/media.ts?{PARAM}&ali_audio_only_range=0-18799")
    assert good.status == 200 and good.headers["content-type"] == "video/mp2t" and len(good.body) < 18800
    assert "Range" in origin.requests[-1][2] and "ali_audio_only" not in origin.requests[-1][1]


def test_a_segments_parameters_never_reach_the_origin(stack):
    root, made, origin, proxy = stack
    get(proxy, f"/fmp4/media0.m4s?{PARAM}&ali_audio_only_track=2")
    assert origin.requests[-1][1] == "/fmp4/media0.m4s"


def test_head_conditionals_and_errors_of_a_playlist(stack):
    root, made, origin, proxy = stack
    got = get(proxy, f"/ts/media.m3u8?{PARAM}")
    head = get(proxy, f"/ts/media.m3u8?{PARAM}", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == str(len(got.body))
    again = get(proxy, f"/ts/media.m3u8?{PARAM}", headers={"If-None-Match": got.headers["etag"]})
    assert again.status == 304 and again.headers["etag"] == got.headers["etag"]
    missing = get(proxy, f"/ts/none.m3u8?{PARAM}")
    assert missing.status == 404 and missing.body == b"<html>not found</html>"  # the origin's, as it was
    for bad in ("ali_audio_only_track=x", "ali_audio_only_range=9-1"):
        reply = get(proxy, f"/fmp4/media0.m4s?{PARAM}&{bad}")
        assert reply.status == 400 and b"segment" in reply.body, bad


def test_an_init_replaced_at_its_url_is_read_again(stack, tmp_path):
    """A live encoder restarted with its tracks swapped republishes init.mp4 at the same URL: the
    playlist's segments must name the new audio track, never the old one (now the video's)."""
    root, made, origin, proxy = stack
    swap = root / "swap"
    swap.mkdir(exist_ok=True)
    for name in ("media.m3u8", "init.mp4"):
        (swap / name).write_bytes((made["fmp4"].parent / name).read_bytes())
    first = get(proxy, f"/swap/media.m3u8?{PARAM}").body.decode()
    assert "ali_audio_only_track=2" in first
    # The same presentation muxed audio first (track 1), its init put where the old one was.
    hlsmedia._ffmpeg("-map", "1:a", "-map", "0:v", *hlsmedia._CODECS, *hlsmedia._HLS, "-hls_segment_type", "fmp4",
                     "media.m3u8", cwd=tmp_path)
    (swap / "init.mp4").write_bytes((tmp_path / "init.mp4").read_bytes())
    os.utime(swap / "init.mp4", (time.time() + 5, time.time() + 5))  # (a validator of its own, whatever its size)
    again = get(proxy, f"/swap/media.m3u8?{PARAM}").body.decode()
    assert "ali_audio_only_track=1" in again and "ali_audio_only_track=2" not in again
    # and while it stays, the origin is only asked whether it changed (a 304), not for it again
    before = len(origin.requests)
    get(proxy, f"/swap/media.m3u8?{PARAM}")
    init_requests = [h for m, p, h in origin.requests[before:] if p.startswith("/swap/init.mp4")]
    assert len(init_requests) == 1 and "If-None-Match" in init_requests[0]
