"""MPEG-TS through a real mitmdump in front of a real origin on 127.0.0.1: files, M2TS, a live TS paced
by its PCR, the CDN's seek parameters, a client leaving, an origin cutting off. Judged by ffprobe and
ffmpeg's framemd5 of every audio packet, and by the raw HTTP/1.1 bytes the client reads."""

from __future__ import annotations

import re
import shutil
import socket
import statistics
import subprocess
import time
from collections import Counter

import pytest

import tsmedia
from helpers import Proxy, assert_same_audio, audio_packets, extract, http_get, http_stream, run, streams
from origin import Origin, ts_groups

pytestmark = pytest.mark.e2e

FILES = ["h264_aac.ts", "hevc_ac3.ts", "mpeg2_mp2.ts", "two_audio.ts", "m2ts.m2ts", "pmt_change.ts", "id3.ts"]


@pytest.fixture(scope="module")
def ts_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts-origin")
    for name in FILES:
        shutil.copy(tsmedia.make(name), root / name)
    # 8 s of 25 fps video and AAC: a live stream long enough for a few hundred audio packets.
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-b:a", "128k", "-f", "mpegts",
                    str(root / "live.ts")], check=True, timeout=120)
    shutil.copy(root / "h264_aac.ts", root / "h264_aac.bin")  # a path that names no format
    return root


@pytest.fixture(scope="module")
def ts_origin(ts_root):
    server = Origin(ts_root).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def ts_proxy(ts_origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "ts.log", "--mode", f"reverse:{ts_origin.url}")
    yield p
    p.stop()


def ts_complaints(path) -> str:
    """What ffmpeg says while reading a TS, warnings and worse, and its continuity check (which it logs
    only at debug level: -v warning never shows it)."""
    r = run("ffmpeg", "-loglevel", "level+debug", "-i", str(path), "-map", "0:a", "-f", "null", "-")
    said = "".join(line for line in r.stderr.decode().splitlines(True)
                   if re.search(r"\[(warning|error|fatal|panic)\] ", line) or "Continuity check failed" in line)
    return said + ("" if r.returncode == 0 else f"exit {r.returncode}")


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("origin_style", ["", "&chunk=1001"])
def test_a_ts_file_comes_back_audio_only(ts_proxy, ts_root, name, origin_style, tmp_path):
    reply = http_get(ts_proxy.port, f"/{name}?ali_audio_only=1{origin_style}")
    assert reply.status == 200 and reply.clean
    assert reply.headers["transfer-encoding"] == "chunked" and reply.headers["content-type"] == "video/mp2t"
    assert "content-length" not in reply.headers and "accept-ranges" not in reply.headers
    assert reply.body == extract((ts_root / name).read_bytes())
    out = tmp_path / name
    out.write_bytes(reply.body)
    kinds = {s["codec_type"] for s in streams(out)}
    assert "video" not in kinds and "audio" in kinds
    assert audio_packets(out, copyts=True) == audio_packets(ts_root / name, copyts=True)
    if name == "two_audio.ts":
        assert audio_packets(out, 1, copyts=True) == audio_packets(ts_root / name, 1, copyts=True)
    # What ffmpeg's demuxer checks as it reads (continuity counters, PCR, PES) finds nothing wrong.
    if name != "pmt_change.ts":  # (its input's video is two files joined: ffmpeg complains of the input)
        assert ts_complaints(out) == ""


def test_a_ts_answer_known_by_its_content_type(ts_proxy, ts_root, tmp_path):
    reply = http_get(ts_proxy.port, "/h264_aac.bin?ali_audio_only=1&type=video/MP2T")
    assert reply.status == 200 and reply.clean and reply.headers["content-type"] == "video/mp2t"
    out = tmp_path / "out.ts"
    out.write_bytes(reply.body)
    assert_same_audio(ts_root / "h264_aac.ts", out)


def test_without_the_parameter_the_origins_bytes(ts_proxy, ts_root):
    reply = http_get(ts_proxy.port, "/h264_aac.ts")
    assert reply.clean and reply.body == (ts_root / "h264_aac.ts").read_bytes()
    assert reply.headers["content-length"] == str(len(reply.body))


def test_seek_by_seconds_cuts_the_audio(ts_proxy, ts_root, tmp_path):
    reply = http_get(ts_proxy.port, "/h264_aac.ts?ali_audio_only=1&start=1&end=2")
    assert reply.status == 200 and reply.clean
    out = tmp_path / "cut.ts"
    out.write_bytes(reply.body)
    whole = audio_packets(ts_root / "h264_aac.ts", copyts=True)
    cut = audio_packets(out, copyts=True)
    assert cut and set(cut) <= set(whole)  # packets of the input, unchanged, timestamps included
    seconds = [int(line.split(",")[2]) / 90000 for line in cut]  # pts in the 90 kHz time base
    first = int(whole[0].split(",")[2]) / 90000
    # Cut at audio frames (AAC at 48 kHz: 1024 samples, 21.3 ms), as for MP4: the frames in [1 s, 2 s).
    frame = 1024 / 48000
    assert 1 <= seconds[0] - first < 1 + frame + 0.001 and 2 - frame - 0.001 <= seconds[-1] - first < 2
    assert ts_complaints(out) == ""


def test_a_live_ts_arrives_as_it_is_sent(ts_proxy, ts_origin, ts_root):
    """The origin sends each run of packets at its PCR's time; each audio packet must reach the client
    at once, not when the next video packet, a 64 KiB piece or the end of the stream arrives."""
    data = (ts_root / "live.ts").read_bytes()
    ts_origin.sent.clear()
    reply = http_get(ts_proxy.port, "/live.ts?ali_audio_only=1&live=1", timeout=60)
    assert reply.clean and reply.body == extract(data)
    # Each of the input's audio packets, in order, with the time its run was sent...
    groups = list(ts_groups(data))
    assert len(ts_origin.sent) == len(groups)
    # (the audio's PID: the one with payload most often; the video's PID carries the PCR without payload)
    audio_pid = Counter(pid for pid, p in tsmedia.packets(reply.body) if tsmedia.has_payload(p)).most_common(1)[0][0]
    sent = [t for (_, piece), (_, t) in zip(groups, ts_origin.sent)
            for pid, _ in tsmedia.packets(piece) if pid == audio_pid]
    # ...against the time the chunk holding it arrived (audio packets go out unchanged, in order).
    arrived = [t for chunk, t in zip(reply.chunks, reply.arrivals) for pid, _ in tsmedia.packets(chunk) if pid == audio_pid]
    assert len(sent) == len(arrived) > 300
    delays = [a - s for a, s in zip(arrived, sent)]
    print(f"\nlive TS through the proxy: {len(delays)} audio packets, added latency median "
          f"{statistics.median(delays) * 1000:.2f} ms, p95 {sorted(delays)[int(len(delays) * .95)] * 1000:.2f} ms, "
          f"max {max(delays) * 1000:.2f} ms")
    # Runs go out every few ms; a proxy that held audio back until more input came would show delays of
    # one run interval or more on most packets.
    assert statistics.median(delays) < 0.005


def test_a_live_ts_with_an_end_ends_there(ts_proxy, ts_root):
    """A cut's end on a live stream: the answer ends cleanly once the end is passed, not when the
    stream does (which a live one never does)."""
    started = time.monotonic()
    reply = http_get(ts_proxy.port, "/live.ts?ali_audio_only=1&live=1&end=1", timeout=30)
    took = time.monotonic() - started
    assert reply.status == 200 and reply.clean
    assert took < 4, took  # the origin sends the 8 s stream in real time
    packets = [p for pid, p in tsmedia.packets(reply.body) if tsmedia.has_payload(p)]
    assert packets


def test_a_client_leaving_a_live_ts_and_the_next_one(ts_proxy, ts_root):
    status, headers, body = http_stream(ts_proxy.port, "/live.ts?ali_audio_only=1&live=1&leaving=1")
    assert status == 200
    next(body)
    body.close()  # the client goes, mid-stream
    log = ts_proxy.wait_for_log("leaving=1: the client left (ts stream", timeout=15)
    assert "leaving=1: the client left (ts stream" in log
    reply = http_get(ts_proxy.port, "/h264_aac.ts?ali_audio_only=1&after=1")
    assert reply.clean and reply.body == extract((ts_root / "h264_aac.ts").read_bytes())


def test_an_origin_cutting_off_ends_the_answer_uncleanly(ts_proxy):
    reply = http_get(ts_proxy.port, "/h264_aac.ts?ali_audio_only=1&die=60000")
    assert reply.status == 200 and not reply.clean
    log = ts_proxy.wait_for_log("h264_aac.ts?die=60000: ")
    assert any("h264_aac.ts?die=60000: " in line and "uncleanly" in line for line in log.splitlines()), log


def raw_headers(port: int, path: str) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and (piece := sock.recv(4096)):
            head += piece
    return head.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]


@pytest.mark.parametrize("path", ["/h264_aac.ts?ali_audio_only=1", "/missing.ts?ali_audio_only=1"])
def test_one_date_header(ts_proxy, path):
    """Streamed and relayed answers carry the origin's Date, once (not tornado's beside it)."""
    dates = [line for line in raw_headers(ts_proxy.port, path) if line.lower().startswith("date:")]
    assert len(dates) == 1, dates


def test_plain_seeking_leaves_a_ts_whole(ts_origin, ts_root, tmp_path):
    """The CDN's plain video seeking (start/end without the audio parameter) cuts MP4 and FLV with their
    video; the TS filter drops video, so a TS is not cut: the origin's bytes, video and all."""
    p = Proxy(tmp_path / "plain.log", "--mode", f"reverse:{ts_origin.url}", "--set", "audio_only_plain_seek=true")
    try:
        reply = http_get(p.port, "/h264_aac.ts?start=1&end=2")
    finally:
        p.stop()
    assert reply.status == 200 and reply.clean and reply.body == (ts_root / "h264_aac.ts").read_bytes()


def test_the_cdn_mode_extracts_no_ts(ts_origin, ts_root, tmp_path):
    p = Proxy(tmp_path / "cdn.log", "--mode", f"reverse:{ts_origin.url}", "--set", "audio_only_compat=cdn")
    try:
        reply = http_get(p.port, "/h264_aac.ts?ali_audio_only=1")
        log = p.wait_for_log("does not extract audio from TS")
    finally:
        p.stop()
    assert reply.status == 200 and reply.clean and reply.body == (ts_root / "h264_aac.ts").read_bytes()
    assert "the CDN does not extract audio from TS (audio_only_compat=cdn)" in log
