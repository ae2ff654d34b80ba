"""Seeking with audio only (the CDN's video_seek): the parameter rules, and FLV judged by ffmpeg."""

import pytest

from extractor import AudioExtractor, SeekRange, parse_range
from helpers import MEDIA, Proxy, audio_packets, decode_errors, extract, flv_tags, http_get, streams

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
def test_mp4_seek_is_not_there_yet_and_says_so(proxy):
    reply = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1&start=2&end=3&y=2")
    assert reply.clean and reply.body == extract((MEDIA / "h264_aac.mp4").read_bytes())
    assert "MP4 seeking is not implemented yet" in proxy.wait_for_log("MP4 seeking")
