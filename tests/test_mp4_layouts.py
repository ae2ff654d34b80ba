"""Every other MP4 layout: moov at the end (spooled), fragmented and CMAF, QuickTime, init segments."""

import struct
import sys

import pytest

from extractor import AudioExtractor, LimitExceeded, MalformedInput, SpoolFailed, TruncatedInput, UnsupportedInput
from extractor.spool import TempFileSpool
from helpers import MEDIA, assert_same_audio, audio_packets, extract, extract_in_random_pieces, run, streams
from mp4tools import box, boxes

LAYOUTS = ["moov_end.mp4", "frag_moof_base.mp4", "frag_explicit_base.mp4", "frag_implicit_base.mp4", "cmaf.mp4",
           "frag_sidx.mp4", "frag_every_frame.mp4", "frag_two_audio.mp4", "quicktime.mov", "quicktime_pcm.mov"]


class Spools:
    """A spool factory that remembers what it made, to check everything was closed."""

    def __init__(self):
        self.made: list[TempFileSpool] = []

    def __call__(self, start: int) -> TempFileSpool:
        self.made.append(TempFileSpool(start))
        return self.made[-1]

    def all_closed(self) -> bool:
        return all(s.file.closed for s in self.made)


def top_level(data: bytes) -> list[bytes]:
    return [kind for kind, *_ in boxes(data)]


def tfhd_track_ids(data: bytes) -> set[int]:
    ids, pos = set(), 0
    while (pos := data.find(b"tfhd", pos + 1)) != -1:
        ids.add(struct.unpack_from(">I", data, pos + 8)[0])
    return ids


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_audio_packet_in_every_layout(name, tmp_path):
    src = MEDIA / name
    spools = Spools()
    out = tmp_path / name
    out.write_bytes(extract(src.read_bytes(), spool_factory=spools))
    assert_same_audio(src, out)
    assert spools.all_closed()
    if name == "frag_two_audio.mp4":
        assert audio_packets(out, 1) == audio_packets(src, 1)


@pytest.mark.parametrize("name", [n for n in LAYOUTS if n.startswith(("frag", "cmaf"))])
def test_fragmented_output_layout(name):
    data = (MEDIA / name).read_bytes()
    out = extract(data)
    kinds = top_level(out)
    assert kinds[:2] == [b"ftyp", b"moov"] and set(kinds[2:]) == {b"moof", b"mdat"}
    assert kinds[2:] == [b"moof", b"mdat"] * (len(kinds[2:]) // 2)
    # Only audio track fragments remain: ffmpeg numbers the video 1 and the audio 2 (and 3).
    audio_ids = {2} if name != "frag_two_audio.mp4" else {2, 3}
    assert tfhd_track_ids(data) == audio_ids | {1}
    assert tfhd_track_ids(out) == audio_ids
    assert b"sidx" not in kinds and b"mfra" not in kinds


def test_fragments_without_audio_are_dropped():
    data = (MEDIA / "frag_every_frame.mp4").read_bytes()
    x = AudioExtractor()
    b"".join(x.feed(data) + x.finish())
    moofs_in = top_level(data).count(b"moof")
    assert x._impl.dropped_fragments > 50 and x._impl.fragments + x._impl.dropped_fragments == moofs_in


def test_styp_segments_pass_through(tmp_path):
    """A DASH-style concatenation: a styp before every fragment."""
    data = (MEDIA / "frag_moof_base.mp4").read_bytes()
    styp = box(b"styp", b"msdh\0\0\0\0msdhmsix")
    segmented = b"".join((styp if kind == b"moof" else b"") + data[start : start + size]
                         for kind, start, _, size in boxes(data))
    src = tmp_path / "styp.mp4"
    src.write_bytes(segmented)
    assert audio_packets(src) == audio_packets(MEDIA / "frag_moof_base.mp4")  # still a valid input
    out = tmp_path / "out.mp4"
    out.write_bytes(extract(segmented, piece=999))
    assert_same_audio(src, out)
    assert top_level(out.read_bytes()).count(b"styp") == top_level(segmented).count(b"moof")


def test_init_segment_alone_gives_an_audio_init_segment(tmp_path):
    data = (MEDIA / "frag_two_audio.mp4").read_bytes()
    init = data[: data.index(b"moof") - 4]
    out = extract(init)
    assert top_level(out) == [b"ftyp", b"moov"]
    path = tmp_path / "init.mp4"
    path.write_bytes(out)
    assert [s["codec_type"] for s in streams(path)] == ["audio", "audio"]
    moov = out[out.index(b"moov") - 4 :]
    assert moov.count(b"trak") == 2 and moov.count(b"trex") == 2


def test_quicktime_drops_chapter_and_timecode_tracks(tmp_path):
    src = MEDIA / "quicktime.mov"
    assert {s["codec_type"] for s in streams(src)} == {"video", "audio", "data"}
    out = tmp_path / "q.mov"
    out.write_bytes(extract(src.read_bytes()))
    assert [s["codec_type"] for s in streams(out)] == ["audio"]
    data = out.read_bytes()
    assert b"tmcd" not in data and b"chap" not in data  # the audio's tref to the chapter track is gone


def test_moov_at_end_without_a_spool_is_refused():
    with pytest.raises(UnsupportedInput, match="comes before the moov and no spool is configured"):
        AudioExtractor().feed((MEDIA / "moov_end.mp4").read_bytes())


def test_moov_at_end_over_the_spool_limit():
    spools = Spools()
    x = AudioExtractor(spool_factory=spools, max_spool=50_000)
    data = (MEDIA / "moov_end.mp4").read_bytes()
    with pytest.raises(LimitExceeded, match=r"above|passed the 48.8 KiB limit \(audio_only_max_spool\)"):
        for i in range(0, len(data), 4096):
            x.feed(data[i : i + 4096])
    x.close()
    assert spools.all_closed()


def test_moov_at_end_truncated_before_the_moov():
    data = (MEDIA / "moov_end.mp4").read_bytes()
    spools = Spools()
    x = AudioExtractor(spool_factory=spools, max_spool=1 << 30)
    x.feed(data[: data.index(b"moov") + 100])
    with pytest.raises(TruncatedInput, match="input ends inside the moov"):
        x.finish()
    assert spools.all_closed()


@pytest.mark.parametrize("name", ["moov_end.mp4", "frag_implicit_base.mp4", "quicktime.mov"])
def test_random_splits(name):
    data = (MEDIA / name).read_bytes()
    whole = extract(data)
    for seed in range(8):
        assert extract_in_random_pieces(data, seed) == whole


def test_fragmented_truncated_mid_fragment():
    data = (MEDIA / "frag_moof_base.mp4").read_bytes()
    x = AudioExtractor()
    x.feed(data[: len(data) // 2])
    with pytest.raises(TruncatedInput, match="before the audio"):
        x.finish()


def test_trun_claiming_more_samples_than_it_holds():
    data = bytearray((MEDIA / "frag_moof_base.mp4").read_bytes())
    trun = data.index(b"trun")
    struct.pack_into(">I", data, trun + 8, 10_000_000)
    with pytest.raises(MalformedInput, match="claims 10000000 samples"):
        extract(bytes(data))


def test_moof_claiming_a_gigabyte():
    data = bytearray((MEDIA / "frag_moof_base.mp4").read_bytes())
    struct.pack_into(">I", data, data.index(b"moof") - 4, 1 << 30)
    with pytest.raises(LimitExceeded, match=r"moof is 1.0 GiB, above the 64.0 MiB limit"):
        extract(bytes(data))


def test_the_cli_reads_a_moov_at_end_file_in_place(tmp_path):
    """A file on disk needs no spool copy: the audio is read where it lies."""
    out = tmp_path / "a.mp4"
    r = run(sys.executable, "-m", "extractor", str(MEDIA / "moov_end.mp4"), str(out))
    assert r.returncode == 0, r.stderr
    assert_same_audio(MEDIA / "moov_end.mp4", out)


def test_a_spool_that_cannot_write_is_a_clean_error(tmp_path):
    """A spool short of disk raises SpoolFailed at the write (not an OSError later, at a flush), and
    closing it never raises."""
    spool = TempFileSpool(0, str(tmp_path), keep_free=1 << 62)  # more than any disk has free
    with pytest.raises(SpoolFailed, match=f"the spool in {tmp_path} failed after 0 bytes"):
        spool.write(b"x" * 1000)
    spool.close()
    data = (MEDIA / "moov_end.mp4").read_bytes()
    with pytest.raises(SpoolFailed):
        extract(data, spool_factory=lambda start: TempFileSpool(start, str(tmp_path), keep_free=1 << 62))
