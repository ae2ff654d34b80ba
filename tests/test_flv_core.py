"""The FLV core on its own: ffmpeg-made files judged by ffmpeg, hand-made edge cases, splits."""

import pytest

from extractor import AudioExtractor, LimitExceeded, MalformedInput, NoAudio, TruncatedInput, UnsupportedInput
from extractor.flv import amf0
from flvgen import METADATA, amf_ecma, amf_string, flv, small_flv, tag
from helpers import MEDIA, assert_same_audio, extract, extract_in_random_pieces, flv_tags

AUDIO_FILES = ["h264_aac.flv", "flv1_mp3.flv", "h264_aac_keyframes.flv"]


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_ffmpeg_files_keep_every_audio_packet(name, tmp_path):
    src = MEDIA / name
    out = tmp_path / name
    out.write_bytes(extract(src.read_bytes(), piece=65536))
    assert_same_audio(src, out)


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_output_structure(name):
    data = (MEDIA / name).read_bytes()
    header, tags_out = flv_tags(extract(data))
    _, tags_in = flv_tags(data)
    assert header[4] == 0x04  # audio-only flags
    assert {t.type for t in tags_out} <= {8, 18}
    assert [t.data for t in tags_out if t.type == 8] == [t.data for t in tags_in if t.type == 8]
    assert all(t.previous_size == 11 + len(t.data) for t in tags_out)


def test_metadata_loses_video_fields():
    data = (MEDIA / "h264_aac_keyframes.flv").read_bytes()
    _, tags_in = flv_tags(data)
    meta_in = tags_in[0].data
    assert b"keyframes" in meta_in and b"videocodecid" in meta_in
    _, tags_out = flv_tags(extract(data))
    meta = tags_out[0].data
    for key in (b"width", b"height", b"videocodecid", b"videodatarate", b"framerate", b"keyframes",
                b"filepositions", b"filesize", b"videosize", b"lastkeyframetimestamp"):
        assert key not in meta, key
    assert b"hasVideo\x01\x00" in meta
    assert b"audiocodecid" in meta and b"duration" in meta and b"audiosize" in meta


def test_metadata_rewrite_keeps_other_values_byte_for_byte():
    new, duration = amf0.rewrite_metadata(METADATA)
    assert duration == 1.5
    assert new == amf_string("onMetaData") + amf_ecma({
        "duration": bytes.fromhex("003ff8000000000000"), "audiocodecid": bytes.fromhex("004024000000000000"),
        "hasVideo": b"\x01\x00", "encoder": amf_string("test"),
    })


def test_other_script_tags_pass_unchanged():
    cue = amf_string("onCuePoint") + amf_ecma({"name": amf_string("x"), "width": amf_string("kept")})
    _, tags_out = flv_tags(extract(flv(tag(18, cue), tag(8, b"\xaf\x01abc"))))
    assert tags_out[0].data == cue


def test_unreadable_metadata_is_dropped_with_a_warning():
    bad = amf_string("onMetaData") + b"\x08\x00\x00\x00\x01\x00\x05width\x11"  # AMF3 switch marker
    x = AudioExtractor()
    out = b"".join(x.feed(flv(tag(18, bad), tag(8, b"\xaf\x01abc"))) + x.finish())
    assert [t.type for t in flv_tags(out)[1]] == [8]
    assert "0x11" in x.warnings[0]


def test_every_split_point_gives_the_same_output():
    data = small_flv()
    whole = extract(data)
    assert len(flv_tags(whole)[1]) == 7  # metadata, sequence header, 5 audio frames
    for cut in range(len(data) + 1):
        x = AudioExtractor()
        out = x.feed(data[:cut]) + x.feed(data[cut:]) + x.finish()
        assert b"".join(out) == whole, cut


def test_byte_by_byte_and_random_splits_of_a_real_file():
    data = (MEDIA / "h264_aac.flv").read_bytes()
    whole = extract(data)
    for seed in range(20):
        assert extract_in_random_pieces(data, seed, (1, 2, 7, 15, 16, 100, 4096, 65536)) == whole
    assert extract(data, piece=1) == whole


def test_previous_tag_sizes_are_rewritten_correctly():
    data = flv(tag(8, b"\xaf\x01abc", previous_size=0), tag(8, b"\xaf\x01defg", previous_size=999))
    assert [t.previous_size for t in flv_tags(extract(data))[1]] == [16, 17]


def test_data_offset_above_nine_is_skipped():
    data = flv(tag(8, b"\xaf\x01abc"), data_offset=20)
    assert flv_tags(extract(data))[1][0].data == b"\xaf\x01abc"


def test_enhanced_flv_audio_passes_and_enhanced_video_is_dropped():
    # ExHeader audio (SoundFormat 9, FourCC Opus) and ExHeader video (IsExHeader bit, FourCC hvc1).
    ex_audio = b"\x90Opus" + b"\x00" * 19
    ex_video = b"\x90hvc1" + b"\x00" * 50
    data = flv(tag(8, ex_audio), tag(9, ex_video), tag(8, b"\x91Opus" + b"\x11" * 40, ts=20))
    assert [t.data for t in flv_tags(extract(data))[1]] == [ex_audio, b"\x91Opus" + b"\x11" * 40]


def test_video_only_input_is_an_error_after_header_and_metadata():
    data = (MEDIA / "video_only.flv").read_bytes()
    x = AudioExtractor()
    out = b"".join(x.feed(data))
    assert out.startswith(b"FLV\x01\x04") and b"onMetaData" in out and b"hasVideo\x01\x00" in out
    with pytest.raises(NoAudio, match="no audio tags"):
        x.finish()


def test_live_output_is_released_tag_by_tag():
    """Each audio tag leaves with the feed that completes it, its PreviousTagSize included."""
    x = AudioExtractor()
    data = flv(tag(8, b"\xaf\x01abc"))
    assert b"".join(x.feed(data[:-4])).endswith(b"\xaf\x01abc" + (16).to_bytes(4, "big"))


@pytest.mark.parametrize("cut", [0, 5, 13, 20, 30])
def test_truncated_input_raises(cut):
    data = small_flv()
    x = AudioExtractor()
    x.feed(data[: len(data) - cut - 1])
    with pytest.raises(TruncatedInput):
        x.finish()


def test_file_may_end_without_the_last_previous_tag_size():
    data = small_flv()
    assert extract(data[:-4]) == extract(data)


@pytest.mark.parametrize("data,error,message", [
    (b"<html><body>", UnsupportedInput, "neither FLV, MP4 nor MPEG-TS"),
    (b"FLV\x01\x05\x00\x00\x00\x03\x00\x00\x00\x00", MalformedInput, "data offset of 3"),
    (flv(b"\xc8" + bytes(14)), MalformedInput, "reserved bits"),
    (b"", TruncatedInput, "empty"),
])
def test_bad_input_raises_a_clear_error(data, error, message):
    with pytest.raises(error, match=message):
        extract(data)


def test_script_tag_above_the_limit():
    data = flv(tag(18, METADATA + b"\x00" * 5000), tag(8, b"\xaf\x01abc"))
    with pytest.raises(LimitExceeded, match=r"above the 4.0 KiB limit \(audio_only_max_header\)"):
        extract(data, max_header=4096)


def test_deep_amf_nesting_is_refused():
    deep = amf_string("onMetaData") + b"\x08\x00\x00\x00\x01" + (b"\x00\x01a\x03" * 100)
    with pytest.raises(MalformedInput, match="deeper"):
        amf0.rewrite_metadata(deep)


def test_in_metadata_while_a_script_tag_is_held():
    """The addon bounds how long held metadata may take to arrive: the core says when it holds some."""
    data = (MEDIA / "h264_aac.flv").read_bytes()
    x = AudioExtractor()
    x.feed(data[:9 + 4 + 11 + 5])  # header, PreviousTagSize0, the script tag's header and 5 bytes of it
    assert x.in_metadata
    x.feed(data[9 + 4 + 11 + 5 : 4000])
    assert not x.in_metadata


def _filter_run(data: bytes, pieces: list[int], quick: bool):
    """(output, error, audio tags, dropped tags) of the FLV filter fed `data` in pieces of these sizes
    (cycled), with or without the quick path for whole tags."""
    from extractor.flv.filter import FlvAudioFilter

    f = FlvAudioFilter()
    f._plain = quick
    out, at, n = [], 0, 0
    try:
        while at < len(data):
            size = pieces[n % len(pieces)]
            out += f.feed(data[at : at + size])
            at, n = at + size, n + 1
        out += f.finish()
    except Exception as e:  # noqa: BLE001 (compared, not swallowed)
        return b"".join(out), (type(e), str(e)), f.audio_tags, f.dropped_tags
    return b"".join(out), None, f.audio_tags, f.dropped_tags


from hypothesis import given, settings, strategies as st  # noqa: E402


HEAD = (MEDIA / "h264_aac.flv").read_bytes()[:20_000]


def _units(data: bytes) -> list[int]:
    """Where each PreviousTagSize + tag header (15 bytes) of a well-formed FLV starts."""
    starts, at = [], 9
    while at + 15 <= len(data):
        starts.append(at)
        at += 15 + int.from_bytes(data[at + 5 : at + 8], "big")
    return starts


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 14), st.integers(0, 255)), max_size=4),
       anywhere=st.lists(st.tuples(st.integers(0, len(HEAD) - 1), st.integers(0, 255)), max_size=3),
       pieces=st.lists(st.integers(1, 30_000), min_size=1, max_size=5))
def test_the_quick_path_for_whole_tags_changes_no_byte_and_no_error(flips, anywhere, pieces):
    """The filter's quick path (whole audio and video tags in a piece) against its states alone, on a
    real file's head with bytes of its tag headers (types, sizes, reserved bits) and elsewhere changed,
    cut in random pieces: the same bytes out, the same error, the same counts."""
    data, units = bytearray(HEAD), _units(HEAD)
    for unit, offset, value in flips:
        data[units[unit % len(units)] + offset] = value
    for at, value in anywhere:
        data[at] = value
    assert _filter_run(bytes(data), pieces, True) == _filter_run(bytes(data), pieces, False)
