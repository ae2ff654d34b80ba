"""Seeking with audio only (the CDN's video_seek): the parameter rules, and FLV judged by ffmpeg."""

import array

import pytest

from extractor import AudioExtractor, SeekRange, UnsupportedInput, parse_range
from extractor.spool import TempFileSpool
from helpers import MEDIA, STREAM_PATH, Proxy, audio_packets, decode_errors, extract, flv_tags, http_get, run, streams

FLV = MEDIA / "h264_aac.flv"


@pytest.mark.parametrize("start,end,by_time,expected", [
    (None, None, False, None),                      # neither: the whole file
    ("abc", "-5", False, None),                     # both invalid: the whole file
    ("1000", None, False, SeekRange(1000, None, False)),  # only start: start to the end
    (None, "5000", False, SeekRange(0, 5000, False)),     # only end: 0 to end
    ("0", "0", False, None),                        # start=0&end=0: the whole file
    ("5000", "1000", False, SeekRange(5000, None, False)),  # start >= end: start to the end
    ("5000", "5000", False, SeekRange(5000, None, False)),
    ("1.5", "3.25", True, SeekRange(1500, 3250, True)),   # seconds, up to 3 decimals
    ("1.2345", "3", True, SeekRange(0, 3000, True)),      # 4 decimals: invalid start
    ("1.5", None, False, None),                     # byte offsets are whole numbers
    ("0", None, True, None),                        # from 0 to the end: the whole file
])
def test_parameter_rules(start, end, by_time, expected):
    assert parse_range(start, end, by_time) == expected


def seek(data: bytes, seek_range: SeekRange) -> tuple[bytes, AudioExtractor]:
    x = AudioExtractor(flv_seek=seek_range)
    out = []
    for i in range(0, len(data), 4096):
        out += x.feed(data[i : i + 4096])
    return b"".join(out + x.finish()), x


def packets_between(path, start_ms: int, end_ms: int | None) -> list[str]:
    """The input's audio packets (framemd5 lines) whose pts lies in the range."""
    def pts(line: str) -> int:
        return int(line.split(",")[2])
    return [p for p in audio_packets(path, copyts=True) if pts(p) >= start_ms and (end_ms is None or pts(p) <= end_ms)]


@pytest.mark.parametrize("start,end", [("2", "4"), ("1.5", None), (None, "3.2"), ("0.023", "0.1")])
def test_flv_by_time_gives_exactly_the_packets_in_the_range(start, end, tmp_path):
    seek_range = parse_range(start, end, by_time=True)
    out, _ = seek(FLV.read_bytes(), seek_range)
    path = tmp_path / "seek.flv"
    path.write_bytes(out)
    assert [s["codec_type"] for s in streams(path)] == ["audio"]
    got = audio_packets(path, copyts=True)
    assert got == packets_between(FLV, seek_range.start, seek_range.end) and got
    assert decode_errors(path) == ""  # the AAC configuration came along: it decodes from its first tag


def test_flv_by_bytes_starts_at_the_first_tag_at_or_after_the_offset(tmp_path):
    data = FLV.read_bytes()
    start, end = len(data) // 3, 2 * len(data) // 3
    out, _ = seek(data, SeekRange(start, end, False))
    # The input's tags with their offsets, by the tests' own walker.
    offsets, pos = [], 13
    for tag in flv_tags(data)[1]:
        offsets.append((pos, tag))
        pos += 11 + len(tag.data) + 4
    wanted = [t.data for p, t in offsets if t.type == 8 and start <= p < end]
    config = [t.data for p, t in offsets if t.type == 8 and t.data[:2] == b"\xaf\x00"]
    header, got = flv_tags(out)
    assert header[4] == 0x04 and got[0].type == 18 and b"hasVideo" in got[0].data
    assert [t.data for t in got if t.type == 8] == config + wanted
    path = tmp_path / "bytes.flv"
    path.write_bytes(out)
    assert decode_errors(path) == ""


def test_flv_start_past_the_duration_gives_the_whole_file():
    data = FLV.read_bytes()
    out, x = seek(data, SeekRange(100_000, None, True))
    whole, _ = seek(data, None)
    assert out == whole and "past the duration" in x.warnings[0]


# -- through the proxy ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_flv_byte_seek_through_the_proxy(proxy, origin):
    data = FLV.read_bytes()
    start, end = 100_000, 200_000
    reply = http_get(proxy.port, f"/h264_aac.flv?ali_audio_only=1&start={start}&end={end}&x=1")
    assert reply.clean and reply.body == seek(data, SeekRange(start, end, False))[0]
    assert origin.requests[-1][1] == "/h264_aac.flv?x=1"  # the origin does not seek as well
    assert reply.headers["etag"].endswith(f'-audio-{start}-{end}"')


@pytest.mark.e2e
def test_flv_seek_past_the_end_gives_the_whole_file(proxy):
    reply = http_get(proxy.port, "/h264_aac.flv?ali_audio_only=1&start=999999999")
    assert reply.clean and reply.body == seek(FLV.read_bytes(), None)[0]


@pytest.mark.e2e
def test_flv_time_seek_through_the_proxy(origin, tmp_path):
    p = Proxy(tmp_path / "seek.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_flv_seek_by_time=true",
              "--set", "audio_only_flv_seek_start=from", "--set", "audio_only_flv_seek_end=to")
    try:
        reply = http_get(p.port, "/h264_aac.flv?ali_audio_only=1&from=1.5&to=4.25")
    finally:
        p.stop()
    path = tmp_path / "t.flv"
    path.write_bytes(reply.body)
    assert reply.clean and audio_packets(path, copyts=True) == packets_between(FLV, 1500, 4250)
    assert decode_errors(path) == ""


@pytest.mark.e2e
@pytest.mark.parametrize("query,start,end", [("start=2&end=3.5", 2.0, 3.5), ("start=0.5", 0.5, None),
                                              ("end=1.25", 0.0, 1.25), ("start=4.2&end=1", 4.2, None)])
def test_mp4_seek_through_the_proxy(proxy, origin, query, start, end, tmp_path):
    reply = http_get(proxy.port, f"/h264_two.mp4?ali_audio_only=1&{query}&y=2".replace("h264_two", "two_audio"))
    expected = mp4_seek("two_audio.mp4", parse_range(*(dict(p.split("=") for p in query.split("&")).get(k) for k in ("start", "end")), True))
    assert reply.clean and reply.body == expected
    assert origin.requests[-1][1] == "/two_audio.mp4?y=2"
    path = tmp_path / "s.mp4"
    path.write_bytes(reply.body)
    length = (end if end is not None else 6.0) - start
    for index in (0, 1):
        assert abs(float(streams(path)[index]["duration"]) - length) < 0.001
        reference = pcm(MEDIA / "two_audio.mp4", (start, end if end is not None else 6.0), index)
        ours = pcm(path, index=index)
        # To the end of the file, ffmpeg decodes the input's last frames against its end padding, and
        # they come out a few LSB apart: the comparison stops two frames short of the file's end.
        compared = len(reference) - (2048 if end is None else 0)
        assert 0 <= len(ours) - len(reference) < 1024
        assert max(abs(a - b) for a, b in zip(ours[:compared], reference[:compared])) <= 1


@pytest.mark.e2e
def test_mp4_seek_past_the_duration_is_a_400(proxy, origin):
    """The CDN answers 400: the moov is read with Range requests before the headers leave, on one
    kept-alive connection of the proxy's own (beside the flow's own connection to the origin)."""
    reply = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=60&z=1")
    assert reply.status == 400 and reply.clean
    assert reply.body == b"seek start 60 s is past the end of the audio\n"
    ranges = [peer for (m, p, h), peer in zip(origin.requests, origin.peers) if "z=1" in p and "Range" in h]
    assert len(ranges) >= 2  # the box headers before the moov, then the moov
    assert len(set(ranges)) == 1, f"{len(ranges)} Range requests took {len(set(ranges))} connections"
    # The proxy goes on serving.
    assert http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=1").clean


@pytest.mark.e2e
def test_mp4_seek_past_the_duration_without_ranges_ends_uncleanly(proxy):
    """Without ranges the moov comes with the body, after the 200 has gone out: the response ends
    uncleanly and the log says what the CDN would have done."""
    reply = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=60&norange=1")
    assert reply.status == 200 and not reply.clean
    assert "the CDN answers 400" in proxy.wait_for_log("the CDN answers 400")


# -- MP4, judged by decoding ------------------------------------------------------------------------

def mp4_seek(name: str, seek_range: SeekRange) -> bytes:
    x = AudioExtractor(mp4_seek=seek_range, spool_factory=TempFileSpool, max_spool=1 << 30)
    data = (MEDIA / name).read_bytes()
    return b"".join(x.feed(data) + x.finish())


def pcm(path, trim: tuple[float, float] | None = None, index: int = 0) -> array.array:
    """Decoded mono 16-bit samples; with trim, a full decode cut at those times (the reference)."""
    r = run("ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:a:{index}",
            *(["-af", f"atrim=start={trim[0]}:end={trim[1]}"] if trim else []), "-f", "s16le", "-ac", "1", "-")
    assert r.returncode == 0, r.stderr
    return array.array("h", r.stdout)


@pytest.mark.parametrize("name,tolerance,frame", [
    ("h264_aac.mp4", 1, 1024), ("h264_mp3.mp4", 0, 1152), ("h264_opus.mp4", 8, 960), ("two_audio.mp4", 1, 1024),
    ("moov_end.mp4", 1, 1024),
])
@pytest.mark.parametrize("start,end", [(2000, 3000), (500, 3500), (1234, 3555)])
def test_mp4_cut_plays_from_start_to_end(name, tolerance, frame, start, end, tmp_path):
    """Decoded, the cut is the input decoded whole and trimmed at the same times: it starts at `start`
    to the sample and ends within one frame after `end`."""
    path = tmp_path / name
    path.write_bytes(mp4_seek(name, SeekRange(start, end, True)))
    assert {s["codec_type"] for s in streams(path)} == {"audio"}
    assert decode_errors(path) == ""
    for index in range(2 if name == "two_audio.mp4" else 1):
        ours, reference = pcm(path, index=index), pcm(MEDIA / name, (start / 1000, end / 1000), index)
        assert 0 <= len(ours) - len(reference) < frame
        assert max(abs(a - b) for a, b in zip(ours, reference)) <= tolerance


def test_mp4_cut_keeps_the_input_packets(tmp_path):
    """The packets are the input's own, bit for bit: a contiguous run of them (sizes and hashes)."""
    path = tmp_path / "c.mp4"
    path.write_bytes(mp4_seek("h264_aac.mp4", SeekRange(2000, 3000, True)))
    strip = lambda lines: [tuple(f.strip() for f in l.split(",")[4:6]) for l in lines]  # size, hash
    ours, theirs = strip(audio_packets(path)), strip(audio_packets(MEDIA / "h264_aac.mp4"))
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours and 40 < len(ours) < 70


def test_mp4_seek_past_the_duration_is_an_error():
    with pytest.raises(UnsupportedInput, match="start 60 s is past the audio's duration of 6 s"):
        mp4_seek("h264_aac.mp4", SeekRange(60_000, None, True))


def test_mp4_seek_of_a_fragmented_file_is_cut(tmp_path):
    """A fragmented file is cut like the others (tests/test_seek_fragmented.py has the rest): a
    contiguous run of the input's packets that plays from start to end. ffmpeg 5.1 applies a fragmented
    file's edit list as a time offset only: the pre-roll comes out with negative timestamps, which a
    player does not play; -copyts keeps them and atrim=start=0 drops them as a player does."""
    x = AudioExtractor(mp4_seek=SeekRange(1000, 2500, True))
    data = (MEDIA / "frag_moof_base.mp4").read_bytes()
    path = tmp_path / "frag_cut.mp4"
    path.write_bytes(b"".join(x.feed(data) + x.finish()))
    assert x.warnings == [] and decode_errors(path) == ""
    strip = lambda lines: [tuple(f.strip() for f in l.split(",")[4:6]) for l in lines]  # size, hash
    ours, theirs = strip(audio_packets(path)), strip(audio_packets(MEDIA / "frag_moof_base.mp4"))
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours and 64 < len(ours) < 80  # 1.5 s, the pre-roll, the frames cut across
    r = run("ffmpeg", "-v", "error", "-copyts", "-i", str(path), "-af", "atrim=start=0", "-f", "s16le", "-ac", "1", "-")
    ours, reference = array.array("h", r.stdout), pcm(MEDIA / "frag_moof_base.mp4", (1.0, 2.5))
    assert 0 <= len(ours) - len(reference) < 1024
    assert max(abs(a - b) for a, b in zip(ours, reference)) <= 1


# -- the CDN's plain video seeking (no audio extraction) -------------------------------------------

def plain(name: str, **kw) -> bytes:
    x = AudioExtractor(keep_video=True, spool_factory=TempFileSpool, max_spool=1 << 30, **kw)
    data = (MEDIA / name).read_bytes()
    return b"".join(x.feed(data) + x.finish())


def packet_sizes_and_hashes(path, stream: str) -> list[tuple[str, str]]:
    r = run("ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:{stream}", "-c", "copy", "-f", "framemd5", "-")
    return [tuple(f.strip() for f in l.split(",")[4:6]) for l in r.stdout.decode().splitlines() if not l.startswith("#")]


def test_mp4_plain_seek_starts_every_track_at_the_keyframe(tmp_path):
    """GOP of 2 s: start=2.3 begins at the keyframe at 2.0 s; video and audio both start there."""
    path = tmp_path / "plain.mp4"
    path.write_bytes(plain("h264_aac.mp4", mp4_seek=SeekRange(2300, 4500, True)))
    kinds = {s["codec_type"]: s for s in streams(path)}
    assert set(kinds) == {"video", "audio"}
    assert all(abs(float(s["duration"]) - 2.5) < 0.05 and float(s["start_time"]) == 0 for s in kinds.values())
    assert decode_errors(path) == "" and run("ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-").returncode == 0
    ours, theirs = packet_sizes_and_hashes(path, "v"), packet_sizes_and_hashes(MEDIA / "h264_aac.mp4", "v")
    first = theirs.index(ours[0])
    assert first == 50 and theirs[first : first + len(ours)] == ours  # 25 fps: frame 50 is the 2.0 s keyframe
    reference = pcm(MEDIA / "h264_aac.mp4", (2.0, 4.5))
    audio = pcm(path)
    assert 0 <= len(audio) - len(reference) < 1024 and max(abs(a - b) for a, b in zip(audio, reference)) <= 1


def test_flv_plain_seek_keeps_the_video_from_a_keyframe(tmp_path):
    data = FLV.read_bytes()
    offsets, pos = [], 13
    for tag in flv_tags(data)[1]:
        offsets.append((pos, tag))
        pos += 11 + len(tag.data) + 4
    keyframes = [p for p, t in offsets if t.type == 9 and t.data[0] >> 4 == 1 and t.data[1] == 1]
    start = keyframes[1] - 500  # just before the second keyframe: the output starts at it
    out = plain("h264_aac.flv", flv_seek=SeekRange(start, None, False))
    header, got = flv_tags(out)
    _, theirs = flv_tags(data)
    assert header[4] == data[4]  # the original flags: audio and video
    assert got[0].data == theirs[0].data  # metadata as it came
    configs = [t for t in got if t.data[1:2] == b"\x00" and t.type in (8, 9)]
    assert {t.type for t in configs} == {8, 9}  # AAC and AVC sequence headers
    media = [t for t in got[1:] if t not in configs]
    assert media[0].type == 9 and media[0].data[0] >> 4 == 1  # a keyframe first
    expected = [t.data for p, t in offsets if p >= keyframes[1] and t.type in (8, 9)]
    assert [t.data for t in media] == expected
    path = tmp_path / "plain.flv"
    path.write_bytes(out)
    assert run("ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-").returncode == 0


@pytest.mark.e2e
def test_plain_seek_through_the_proxy_only_when_asked(proxy, origin, tmp_path):
    off = http_get(proxy.port, "/h264_aac.mp4?start=2.3&end=4.5&k=1")
    assert off.clean and off.body == (MEDIA / "h264_aac.mp4").read_bytes()
    assert origin.requests[-1][1] == "/h264_aac.mp4?start=2.3&end=4.5&k=1"  # untouched by default
    p = Proxy(tmp_path / "plain.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_plain_seek=true")
    try:
        on = http_get(p.port, "/h264_aac.mp4?start=2.3&end=4.5&k=2")
    finally:
        p.stop()
    assert on.clean and on.headers["content-type"] == "video/mp4" and "-seek-" in on.headers["etag"]
    assert on.body == plain("h264_aac.mp4", mp4_seek=SeekRange(2300, 4500, True))
    assert origin.requests[-1][1] == "/h264_aac.mp4?k=2"


def test_the_seek_check_and_the_answer_share_one_plan(origin, tmp_path):
    """A seek start is checked against the moov before the answer (a 400 past the end); the plan made
    for that check is the one the streamed answer uses: the moov is planned once."""
    proxy = Proxy(tmp_path / "once.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH)
    try:
        reply = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=2&end=4")
        log = proxy.wait_for_log("planned once")
    finally:
        proxy.stop()
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    assert reply.clean and reply.body == extract(data, mp4_seek=SeekRange(2000, 4000, True))
    assert "the moov was planned once, before the answer" in log
