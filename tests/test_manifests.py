"""HLS playlists and DASH MPDs rewritten to audio only (extractor.manifest), judged by the m3u8 parser,
and by ffmpeg reading the rewritten presentation from a server on 127.0.0.1."""

from __future__ import annotations

import subprocess
from urllib.parse import parse_qsl, urlsplit

import m3u8
import pytest

import hlsmedia
from extractor.errors import MalformedInput
from extractor.manifest import hls

NAME, PARAM = "ali_audio_only", "ali_audio_only=1"


@pytest.fixture(scope="session")
def presentations(tmp_path_factory):
    root = tmp_path_factory.mktemp("presentations")
    return root, hlsmedia.make_all(root)


def rewrite(path, url="http://origin/x/", tracks=None, param=PARAM, name=NAME):
    return hls.rewrite(path.read_text(), url + path.name, name, param, tracks)


def query(uri):
    return dict(parse_qsl(urlsplit(uri).query))


def test_muxed_master_becomes_audio_only(presentations):
    _, made = presentations
    result = rewrite(made["ts"])
    assert result.kind == "master" and result.text
    playlist = m3u8.loads(result.text)
    assert len(playlist.playlists) == 1
    info = playlist.playlists[0].stream_info
    assert info.codecs == "mp4a.40.2" and info.resolution is None and info.frame_rate is None
    assert info.bandwidth == 70400  # the codec's ceiling (192 kb/s) is above the variant's own figure
    assert playlist.playlists[0].uri == "media.m3u8?ali_audio_only=1"
    assert "RESOLUTION" not in result.text


def test_audio_rendition_becomes_the_only_variant(presentations):
    _, made = presentations
    result = rewrite(made["group"])
    playlist = m3u8.loads(result.text)
    assert [p.uri for p in playlist.playlists] == ["stream_2.m3u8?ali_audio_only=1"]
    info = playlist.playlists[0].stream_info
    assert info.codecs == "mp4a.40.2" and info.audio is None and info.bandwidth == 192000
    assert not [m for m in playlist.media if m.type == "AUDIO"]
    assert "stream_0.m3u8" not in result.text and "stream_1.m3u8" not in result.text


MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-START:TIME-OFFSET=3.0,PRECISE=YES
#EXT-X-SESSION-DATA:DATA-ID="com.example.title",VALUE="A title"
#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://key",KEYFORMAT="com.apple.streamingkeydelivery"
#EXT-X-CONTENT-STEERING:SERVER-URI="https://steer.example/",PATHWAY-ID="A"
#EXT-X-DEFINE:NAME="token",VALUE="abc"
#EXT-X-UNKNOWN-MASTER-TAG:FOO=1
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="audio/en.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="French",LANGUAGE="fr",URI="audio/fr.m3u8?sig=1"
#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="angles",NAME="Angle 2",URI="video/angle2.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",URI="subs/en.m3u8"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC1",INSTREAM-ID="CC1"
#EXT-X-STREAM-INF:BANDWIDTH=5000000,AVERAGE-BANDWIDTH=4000000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000,HDCP-LEVEL=TYPE-0,AUDIO="aac",VIDEO="angles",SUBTITLES="subs",CLOSED-CAPTIONS="cc"
video/720.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="aac",SUBTITLES="subs",CLOSED-CAPTIONS="cc"
video/360.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,CODECS="avc1.64001f",URI="video/iframes.m3u8"
#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=10000,RESOLUTION=320x180,CODECS="jpeg",URI="images.m3u8"
"""


def test_master_keeps_session_tags_and_unknown_ones():
    result = hls.rewrite(MASTER, "https://origin/p/master.m3u8", NAME, PARAM)
    text = result.text
    for kept in ("#EXT-X-START:TIME-OFFSET=3.0", "#EXT-X-SESSION-DATA:", "#EXT-X-SESSION-KEY:", "#EXT-X-DEFINE:",
                 "#EXT-X-CONTENT-STEERING:", "#EXT-X-UNKNOWN-MASTER-TAG:FOO=1", "#EXT-X-INDEPENDENT-SEGMENTS",
                 'TYPE=SUBTITLES'):
        assert kept in text
    for gone in ("I-FRAME", "IMAGE-STREAM", "TYPE=VIDEO", "CLOSED-CAPTIONS", "RESOLUTION", "FRAME-RATE", "HDCP",
                 "video/", "avc1", "AVERAGE-BANDWIDTH", "TYPE=AUDIO"):
        assert gone not in text, gone
    playlist = m3u8.loads(text)
    # One variant per rendition, the default first; the French one keeps its own query.
    assert [p.uri for p in playlist.playlists] == ["audio/en.m3u8?ali_audio_only=1",
                                                   "audio/fr.m3u8?sig=1&ali_audio_only=1"]
    assert all(p.stream_info.codecs == "mp4a.40.2" for p in playlist.playlists)


def test_audio_only_variant_beside_video_ones_is_not_left_beside_them():
    text = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.4d401e,mp4a.40.2"
a.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.5"
audio.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.4d401e"
videoonly.m3u8
"""
    playlist = m3u8.loads(hls.rewrite(text, "http://o/m.m3u8", NAME, PARAM).text)
    assert [(p.uri, p.stream_info.codecs) for p in playlist.playlists] == [
        ("a.m3u8?ali_audio_only=1", "mp4a.40.2"), ("audio.m3u8?ali_audio_only=1", "mp4a.40.5")]
    assert [p.stream_info.bandwidth for p in playlist.playlists] == [192000, 64000]


def test_media_playlist_segments_carry_the_parameter(presentations):
    _, made = presentations
    media = made["ts"].parent / "media.m3u8"
    result = rewrite(media)
    assert result.kind == "media" and not result.warnings
    before, after = m3u8.loads(media.read_text()), m3u8.loads(result.text)
    assert [s.duration for s in after.segments] == [s.duration for s in before.segments]
    assert [s.uri for s in after.segments] == [f"{s.uri}?ali_audio_only=1" for s in before.segments]


def test_the_parameter_in_the_clients_own_name_and_encoding(presentations):
    _, made = presentations
    result = rewrite(made["single"].parent / "media.m3u8", name="audio", param="audio=%31")
    uris = [s.uri for s in m3u8.loads(result.text).segments]
    assert uris[0] == "media.ts?audio=%31&audio_range=0-59783"


def test_byte_ranges_become_uris_naming_the_original_range(presentations):
    _, made = presentations
    media = made["single"].parent / "media.m3u8"
    before, result = m3u8.loads(media.read_text()), rewrite(media)
    assert "#EXT-X-BYTERANGE" not in result.text
    after = m3u8.loads(result.text)
    ranges = []
    for segment in before.segments:
        length, offset = map(int, segment.byterange.split("@"))
        ranges.append(f"{offset}-{offset + length - 1}")
    assert [query(s.uri)[f"{NAME}_range"] for s in after.segments] == ranges
    assert [s.duration for s in after.segments] == [s.duration for s in before.segments]


def test_implied_byte_range_offsets_follow_the_previous_segment_of_that_uri():
    text = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:7
#EXT-X-MAP:URI="all.mp4",BYTERANGE="720@0"
#EXTINF:4,
#EXT-X-BYTERANGE:1000@720
all.mp4
#EXTINF:4,
#EXT-X-BYTERANGE:500
all.mp4
#EXTINF:4,
#EXT-X-BYTERANGE:300
other.mp4
"""
    with pytest.raises(MalformedInput, match="no offset"):
        hls.rewrite(text, "http://o/p/m.m3u8", NAME, PARAM)
    text = text.replace("#EXT-X-BYTERANGE:300\n", "#EXT-X-BYTERANGE:300@5\n")
    maps = hls.init_maps(text, "http://o/p/m.m3u8")
    assert maps == [hls.InitMap("http://o/p/all.mp4", 0, 719)]
    result = hls.rewrite(text, "http://o/p/m.m3u8", NAME, PARAM, {maps[0]: (2,)})
    assert 'URI="all.mp4?ali_audio_only=1&ali_audio_only_range=0-719"' in result.text
    uris = [s.uri for s in m3u8.loads(result.text).segments]
    assert uris == ["all.mp4?ali_audio_only=1&ali_audio_only_track=2&ali_audio_only_range=720-1719",
                    "all.mp4?ali_audio_only=1&ali_audio_only_track=2&ali_audio_only_range=1720-2219",
                    "other.mp4?ali_audio_only=1&ali_audio_only_track=2&ali_audio_only_range=5-304"]


def test_fmp4_segments_name_the_audio_tracks_of_their_map(presentations):
    _, made = presentations
    media = made["fmp4"].parent / "media.m3u8"
    maps = hls.init_maps(media.read_text(), "http://origin/x/media.m3u8")
    assert maps == [hls.InitMap("http://origin/x/init.mp4")]
    untold = rewrite(media)
    assert any("no audio track IDs" in w for w in untold.warnings)
    result = rewrite(media, tracks={maps[0]: (2,)})
    after = m3u8.loads(result.text)
    assert after.segment_map[0].uri == "init.mp4?ali_audio_only=1"
    assert all(s.uri.endswith(".m4s?ali_audio_only=1&ali_audio_only_track=2") for s in after.segments)
    assert not result.warnings


def test_live_playlist_keeps_its_window(presentations):
    _, made = presentations
    result = rewrite(made["live"])
    after = m3u8.loads(result.text)
    assert after.media_sequence == 1 and not after.is_endlist
    assert [s.uri for s in after.segments] == ["media1.ts?ali_audio_only=1", "media2.ts?ali_audio_only=1"]


def test_aes128_playlists_pass_through_with_a_warning():
    text = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x00000000000000000000000000000001
#EXTINF:4,
s0.ts
#EXT-X-ENDLIST
"""
    result = hls.rewrite(text, "http://o/m.m3u8", NAME, PARAM)
    assert result.text is None and result.kind == "media"
    assert "AES-128" in result.warnings[0]
    master = MASTER.replace("METHOD=SAMPLE-AES", "METHOD=AES-128")
    result = hls.rewrite(master, "http://o/m.m3u8", NAME, PARAM)
    assert result.text is None and result.kind == "master"


def test_sample_aes_keys_are_kept():
    text = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-VERSION:5
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k1",KEYFORMAT="com.apple.streamingkeydelivery",KEYFORMATVERSIONS="1"
#EXTINF:4,
s0.ts
"""
    result = hls.rewrite(text, "http://o/m.m3u8", NAME, PARAM)
    assert '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k1",KEYFORMAT="com.apple.streamingkeydelivery"' in result.text
    assert "s0.ts?ali_audio_only=1" in result.text


# Every tag m3u8 6 parses in a media playlist (protocol.py), and some it does not know.
EVERY_TAG = """#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-PLAYLIST-TYPE:EVENT
#EXT-X-ALLOW-CACHE:YES
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-START:TIME-OFFSET=-8
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=3.0,CAN-SKIP-UNTIL=24.0
#EXT-X-PART-INF:PART-TARGET=1.0
#EXT-X-SKIP:SKIPPED-SEGMENTS=3
#EXT-X-CUSTOM-FOO:BAR="baz"
#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k",KEYFORMAT="com.apple.streamingkeydelivery"
#EXT-X-MAP:URI="init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXT-X-DATERANGE:ID="ad1",START-DATE="2026-01-01T00:00:00.000Z",DURATION=4.0,X-ASSET-URI="http://ads/a.m3u8"
#EXT-X-CUE-OUT:DURATION=8
#EXT-OATCLS-SCTE35:/DAlAAAAAAAAAP/wFAUAAAABf+/+ANgNkv4AFJlwAAEBAQAAXPnBfA==
#EXT-X-ASSET:CAID=0x0000000020FB6501
#EXT-X-BITRATE:128
#EXTINF:4.000,title
seg10.m4s
#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=8
#EXT-X-CUE-SPAN
#EXT-X-MY-UNKNOWN-SEGMENT-TAG
#EXTINF:4.000,
seg11.m4s
#EXT-X-CUE-IN
#EXT-X-DISCONTINUITY
#EXT-X-GAP
#EXTINF:4.000,
seg12.m4s
#EXT-X-PART:DURATION=1.0,URI="part13.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.0,URI="part13.m4s",BYTERANGE="2000@0"
#EXT-X-PART:DURATION=1.0,URI="part13.m4s",BYTERANGE="1500"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part13.m4s",BYTERANGE-START=3500
#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init2.mp4"
#EXT-X-RENDITION-REPORT:URI="../other/media.m3u8",LAST-MSN=12,LAST-PART=2
#EX-SOMETHING-ELSE-ENTIRELY 42
"""


def test_every_tag_m3u8_knows_and_unknown_ones_are_kept():
    url = "http://o/live/media.m3u8"
    maps = hls.init_maps(EVERY_TAG, url)
    result = hls.rewrite(EVERY_TAG, url, NAME, PARAM, {maps[0]: (1,)})
    text = result.text
    for line in EVERY_TAG.splitlines():
        if line.startswith("#") and not line.startswith(("#EXT-X-MAP", "#EXT-X-PART:", "#EXT-X-PRELOAD-HINT",
                                                         "#EXT-X-RENDITION-REPORT")):
            assert line in text.splitlines(), line
    track = f"{NAME}_track=1"
    assert f'#EXT-X-MAP:URI="init.mp4?{PARAM}"' in text
    assert f'#EXT-X-PART:DURATION=1.0,URI="part13.0.m4s?{PARAM}&{track}",INDEPENDENT=YES' in text
    assert f'URI="part13.m4s?{PARAM}&{track}&{NAME}_range=0-1999"' in text
    assert f'URI="part13.m4s?{PARAM}&{track}&{NAME}_range=2000-3499"' in text
    assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part13.m4s?{PARAM}&{track}&{NAME}_range=3500-"' in text
    assert f'#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init2.mp4?{PARAM}"' in text
    assert f'#EXT-X-RENDITION-REPORT:URI="../other/media.m3u8?{PARAM}",LAST-MSN=12,LAST-PART=2' in text
    after = m3u8.loads(text)
    # m3u8 holds the trailing parts as a segment without a URI
    assert [s.uri for s in after.segments if s.uri] == [f"seg{n}.m4s?{PARAM}&{track}" for n in (10, 11, 12)]
    assert after.media_sequence == 10 and after.keys[-1].method == "SAMPLE-AES"


def test_not_a_playlist_is_a_clean_error():
    with pytest.raises(MalformedInput, match="EXTM3U"):
        hls.rewrite("<html>", "http://o/m.m3u8", NAME, PARAM)


# -- ffmpeg reads the rewritten presentation from a server on 127.0.0.1 ------------------------------

def _audio_md5(url: str) -> list[str]:
    """framemd5 of the audio with the timestamps as the segments have them (ffmpeg otherwise starts
    them at the first packet of any stream: the original's video starts before its audio)."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-copyts", "-i", url, "-map", "0:a", "-c", "copy", "-f", "framemd5", "-"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def _hls_rewriter(text: str, url: str):
    return hls.rewrite(text, url, NAME, PARAM).text


@pytest.mark.parametrize("name", ["ts", "group", "single", "fmp4"])
def test_ffmpeg_reads_the_rewritten_master(presentations, name):
    root, made = presentations
    server, base = hlsmedia.serve(root, _hls_rewriter)
    try:
        path = made[name].relative_to(root).as_posix()
        r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                            f"{base}/{path}?{PARAM}"], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        assert "audio" in r.stdout.decode().split()
        original, rewritten = _audio_md5(f"{base}/{path}"), _audio_md5(f"{base}/{path}?{PARAM}")
        assert len(original) > 100
        # Every packet's size and hash. ffmpeg's timestamps of the second packet of a PES differ when it
        # reads an audio playlist as a variant rather than as a rendition beside video (the group case;
        # reading the origin's own audio playlist alone gives the same as ours, checked below).
        assert [p.split(",")[3:] for p in rewritten] == [p.split(",")[3:] for p in original]
        if name == "group":
            assert rewritten == _audio_md5(f"{base}/group/stream_2.m3u8")
        else:
            assert rewritten == original
    finally:
        server.shutdown()
