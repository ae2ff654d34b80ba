"""The MP4 core on its own: ffmpeg-made files judged by ffmpeg, hand-broken inputs, splits."""

import struct

import pytest

from extractor.mp4.progressive import Mp4AudioFilter
from extractor import AudioExtractor, LimitExceeded, MalformedInput, NoAudio, TruncatedInput, UnsupportedInput
from helpers import MEDIA, assert_same_audio, audio_packets, extract, extract_in_random_pieces, streams
from mp4tools import box, boxes, to_64bit

AUDIO_FILES = ["h264_aac.mp4", "hevc_aac.mp4", "h264_mp3.mp4", "h264_opus.mp4", "audio_only.m4a", "tiny.mp4"]


def audio_duration(path) -> float:
    return float(next(s for s in streams(path) if s["codec_type"] == "audio")["duration"])


def top_level(data: bytes) -> list[bytes]:
    return [kind for kind, *_ in boxes(data)]


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_ffmpeg_files_keep_every_audio_packet(name, tmp_path):
    src = MEDIA / name
    out = tmp_path / name
    out.write_bytes(extract(src.read_bytes(), piece=65536))
    assert_same_audio(src, out)
    assert audio_duration(out) == audio_duration(src)
    assert top_level(out.read_bytes()) == [b"ftyp", b"moov", b"mdat"]


def test_two_audio_tracks_stay_two_tracks(tmp_path):
    src = MEDIA / "two_audio.mp4"
    out = tmp_path / "two.mp4"
    out.write_bytes(extract(src.read_bytes()))
    got = streams(out)
    assert [(s["codec_type"], s["tags"]["language"]) for s in got] == [("audio", "eng"), ("audio", "fra")]
    for index in (0, 1):
        assert audio_packets(out, index) == audio_packets(src, index)


def test_64bit_mdat_header_and_co64_input(tmp_path):
    """The layout the CDN refuses: mdat with a largesize header, chunk offsets in co64."""
    wide = tmp_path / "wide.mp4"
    wide.write_bytes(to_64bit((MEDIA / "h264_aac.mp4").read_bytes()))
    assert audio_packets(wide) == audio_packets(MEDIA / "h264_aac.mp4")  # the converter is right
    out = tmp_path / "out.mp4"
    out.write_bytes(extract(wide.read_bytes(), piece=4096))
    assert_same_audio(wide, out)


def test_output_moov_holds_only_audio_and_fresh_offsets():
    data = extract((MEDIA / "h264_aac.mp4").read_bytes())
    _, moov_start, header, size = next(b for b in boxes(data) if b[0] == b"moov")
    kinds = [k for k, *_ in boxes(data, moov_start + header, moov_start + size)]
    assert kinds.count(b"trak") == 1 and b"iods" not in kinds
    assert b"vide" not in data[moov_start : moov_start + size]


def test_video_only_input_is_an_error_before_any_output():
    x = AudioExtractor()
    data = (MEDIA / "video_only.mp4").read_bytes()
    with pytest.raises(NoAudio, match=r"no audio track \(tracks: vide\)"):
        x.feed(data)


def test_every_split_point_gives_the_same_output():
    data = (MEDIA / "tiny.mp4").read_bytes()
    whole = extract(data)
    for cut in range(len(data) + 1):
        x = AudioExtractor()
        assert b"".join(x.feed(data[:cut]) + x.feed(data[cut:]) + x.finish()) == whole, cut


def test_random_splits_and_single_bytes():
    data = (MEDIA / "two_audio.mp4").read_bytes()
    whole = extract(data)
    for seed in range(10):
        assert extract_in_random_pieces(data, seed, (1, 3, 8, 16, 17, 1000, 65536)) == whole
    assert extract(data, piece=1) == whole


def test_several_mdat_boxes_and_boxes_between():
    """One mdat split in two with a free box between, offsets adjusted: still every packet."""
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    mdat = next(b for b in boxes(data) if b[0] == b"mdat")
    payload = data[mdat[1] + 8 : mdat[1] + mdat[3]]
    half = len(payload) // 2
    # Splitting inside a chunk would break it across boxes: pick a cut at an audio chunk start.
    f = Mp4AudioFilter()
    f.feed(data)
    starts = [s - mdat[1] - 8 for s, _ in f.plan.ranges]
    cut = min(starts, key=lambda s: abs(s - half))
    free = box(b"free", b"\0" * 100)
    middle = free + struct.pack(">I4s", 8 + len(payload) - cut, b"mdat")
    rebuilt = data[: mdat[1]] + struct.pack(">I4s", 8 + cut, b"mdat") + payload[:cut] + middle + payload[cut:]
    shifted = _shift_offsets(rebuilt, mdat[1] + 8 + cut, len(middle))
    out = extract(shifted, piece=1000)
    assert out == extract(data)


def _shift_offsets(data: bytes, at: int, by: int) -> bytes:
    """Move every stco entry at or past byte `at` by `by` (sizes stay, so in place)."""
    buf = bytearray(data)
    pos = 0
    while (pos := buf.find(b"stco", pos + 1)) != -1:
        count = struct.unpack_from(">I", buf, pos + 8)[0]
        for i in range(count):
            off = pos + 12 + 4 * i
            value = struct.unpack_from(">I", buf, off)[0]
            if value >= at:
                struct.pack_into(">I", buf, off, value + by)
    return bytes(buf)


@pytest.mark.parametrize("cut", [100, 2000, 40000, 150000, 280000])
def test_truncated_input_raises(cut):
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    x = AudioExtractor()
    x.feed(data[:cut])
    with pytest.raises(TruncatedInput):
        x.finish()


def test_input_cut_after_the_last_audio_byte_still_gives_the_whole_output():
    """Every audio byte arrived: the output is whole, and a warning says the input was short."""
    data = (MEDIA / "h264_aac.mp4").read_bytes() + box(b"free", bytes(5000))
    full = extract(data)
    x = AudioExtractor()
    assert b"".join(x.feed(data[:-1000]) + x.finish()) == full
    assert "input ends inside a 'free' box after all the audio" in x.warnings[0]


def test_moov_over_the_limit():
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    with pytest.raises(LimitExceeded, match=r"moov is .* above the 4.0 KiB limit \(audio_only_max_header\)"):
        extract(data, max_header=4096)


def test_hostile_moov_size_is_refused_before_reading_it():
    x = AudioExtractor()
    with pytest.raises(LimitExceeded, match="moov is 3.0 GiB"):
        x.feed(struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0" + struct.pack(">I4sQ", 1, b"moov", 3 << 30))


def test_mdat_before_moov_without_a_spool_is_refused():
    with pytest.raises(UnsupportedInput, match="comes before the moov and no spool is configured"):
        extract(struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0" + struct.pack(">I4s", 16, b"mdat") + bytes(8),
                spool_factory=None)


@pytest.mark.parametrize("data,message", [
    (struct.pack(">I4s", 4, b"ftyp") + bytes(4), "less than its 8-byte header"),
    (box(b"ftyp", b"isom\0\0\0\0") + box(b"free", b""), "no moov box"),
    (box(b"ftyp", b"isom\0\0\0\0") + box(b"moov", struct.pack(">I4s", 999, b"trak")), "past the end of its parent"),
])
def test_malformed_structure(data, message):
    with pytest.raises(MalformedInput, match=message):
        extract(data)


def _patch_audio(kind: bytes, offset: int, value: int) -> bytes:
    """h264_aac.mp4 with the u32 `offset` bytes into the audio trak's (the last) `kind` box payload set."""
    buf = bytearray((MEDIA / "h264_aac.mp4").read_bytes())
    struct.pack_into(">I", buf, buf.rindex(kind) + 4 + offset, value)
    return bytes(buf)


def _audio_field(kind: bytes, offset: int) -> int:
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    return struct.unpack_from(">I", data, data.rindex(kind) + 4 + offset)[0]


def test_chunk_offset_outside_mdat():
    with pytest.raises(MalformedInput, match="does not point into an mdat"):
        extract(_patch_audio(b"stco", 8, 10))


def test_overlapping_chunks():
    with pytest.raises(MalformedInput, match="overlap"):
        extract(_patch_audio(b"stco", 12, _audio_field(b"stco", 8)))


def test_table_count_overrunning_its_box():
    with pytest.raises(MalformedInput, match="stsz claims 1000000 entries"):
        extract(_patch_audio(b"stsz", 8, 1_000_000))


def test_stsc_disagreeing_with_stsz():
    with pytest.raises(MalformedInput, match="stsc places"):
        extract(_patch_audio(b"stsz", 8, _audio_field(b"stsz", 8) - 1))


def test_audio_pointing_into_video_is_refused():
    """A moov that places audio inside the video's chunks would make us send video: refused."""
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    video_chunk = struct.unpack_from(">I", data, data.index(b"stco") + 16)[0]  # the video trak comes first
    with pytest.raises(MalformedInput, match="overlaps a chunk of another track"):
        extract(_patch_audio(b"stco", 12, video_chunk + 10))


def test_fragment_audio_pointing_into_video_is_refused():
    data = bytearray((MEDIA / "frag_moof_base.mp4").read_bytes())
    moof = data.index(b"moof") - 4
    truns = [i for i in range(moof, moof + struct.unpack_from(">I", data, moof)[0]) if data[i : i + 4] == b"trun"]
    # The video traf comes first; make the audio trun's data offset equal to the video's.
    video_offset = struct.unpack_from(">i", data, truns[0] + 12)[0]
    struct.pack_into(">i", data, truns[1] + 12, video_offset)
    x = AudioExtractor()
    with pytest.raises(MalformedInput, match="overlaps"):
        x.feed(bytes(data))


def test_in_metadata_while_the_moov_is_held():
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    moov = next(b for b in boxes(data) if b[0] == b"moov")
    x = AudioExtractor()
    x.feed(data[: moov[1] + 100])
    assert x.in_metadata
    x.feed(data[moov[1] + 100 : moov[1] + moov[3] + 10])
    assert not x.in_metadata


def test_metadata_start_names_each_held_box():
    """Each moof of a fragmented file is its own piece of held metadata (the addon's deadline restarts)."""
    data = (MEDIA / "frag_moof_base.mp4").read_bytes()
    moofs = [pos for kind, pos, header, size in boxes(data) if kind == b"moof"]
    x = AudioExtractor()
    x.feed(data[: moofs[0] + 20])
    assert x.metadata_start == moofs[0]
    x.feed(data[moofs[0] + 20 : moofs[1] + 20])
    assert x.metadata_start == moofs[1]


def deferred(data: bytes, piece: int, spool: bool = False) -> tuple[bytes, int]:
    """The output of a filter that leaves planning to its caller (defer_plans), and how many plans it asked for."""
    from extractor.mp4.plan import make_plan
    from extractor.spool import TempFileSpool
    x = AudioExtractor(defer_plans=True, spool_factory=TempFileSpool if spool else None, max_spool=1 << 30)
    out, plans = [], 0
    for pos in range(0, len(data), piece):
        out += x.feed(data[pos : pos + piece])
        if x.plan_wanted is not None:
            plans += 1
            with pytest.raises(RuntimeError):
                x.feed(b"")  # nothing more goes in until the plan is there
            out += x.provide_plan(make_plan(x.plan_wanted))
    out += x.finish()
    return b"".join(out), plans


@pytest.mark.parametrize("name,spool", [("h264_aac.mp4", False), ("moov_end.mp4", True), ("frag_two_audio.mp4", False)])
@pytest.mark.parametrize("piece", [1, 4096, 65536, 1 << 30])
def test_a_deferred_plan_gives_the_same_output(name, spool, piece):
    data = (MEDIA / name).read_bytes()
    if piece == 1 and len(data) > 100_000:
        piece = 997  # one byte at a time is slow in Python: a prime-sized piece still splits every box
    out, plans = deferred(data, piece, spool)
    assert out == extract(data) and plans == 1


@pytest.mark.parametrize("piece", [65536, 1 << 30])
def test_spooled_audio_is_drained_in_bounded_pieces(piece):
    """replay_in_pieces: the audio before a moov at the end comes back by drain(), a bounded piece at a
    time (one spool read, 1 MiB of input, past `most` at most), and the whole output is the same."""
    from extractor.spool import TempFileSpool
    from hostile import HostileMp4
    h = HostileMp4(300_000, moov_at_end=True)  # 1.2 MB of audio among 6 MB
    data = b"".join(h.pieces())
    x = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 30, replay_in_pieces=True)
    out, drains = [], []
    for pos in range(0, len(data), piece):
        out += x.feed(data[pos : pos + piece])
        while x.backlog:
            with pytest.raises(RuntimeError):
                x.feed(b"x")  # nothing more goes in until the backlog is out
            part = x.drain(4096)
            drains.append(sum(map(len, part)))
            out += part
    out += x.finish()
    assert b"".join(out) == extract(data) and x.bytes_out == len(extract(data))
    assert len(drains) >= 5 and max(drains) < 4096 + (1 << 20)


# Tiny hand-made MP4s for layouts ffmpeg never writes (what a hostile origin could send).
def _full(kind: bytes, payload: bytes) -> bytes:
    return box(kind, bytes(4) + payload)


def _trak(track_id: int, handler: bytes, offsets: list[int], sizes: list[int], stsc=((1, 1, 1),)) -> bytes:
    tkhd = _full(b"tkhd", bytes(8) + struct.pack(">I", track_id) + bytes(4) + struct.pack(">I", 1000) + bytes(60))
    hdlr = _full(b"hdlr", bytes(4) + handler + bytes(13))
    stsz = _full(b"stsz", struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes))
    stsc_box = _full(b"stsc", struct.pack(">I", len(stsc)) + b"".join(struct.pack(">III", *e) for e in stsc))
    stco = _full(b"stco", struct.pack(f">I{len(offsets)}I", len(offsets), *offsets))
    stts = _full(b"stts", struct.pack(">III", 1, len(sizes), 1024))
    stbl = box(b"stbl", _full(b"stsd", struct.pack(">I", 0)) + stts + stsc_box + stsz + stco)
    mdhd = _full(b"mdhd", bytes(8) + struct.pack(">II", 44100, 1024 * len(sizes)) + bytes(4))
    return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + box(b"minf", stbl)))


def _moov(*traks: bytes) -> bytes:
    return box(b"moov", _full(b"mvhd", bytes(8) + struct.pack(">II", 1000, 1000) + bytes(80)) + b"".join(traks))


FTYP = box(b"ftyp", b"isom\0\0\0\0isom")


@pytest.mark.parametrize("replay_in_pieces", [False, True])
@pytest.mark.parametrize("piece", [64, 1 << 20])
def test_spooled_audio_pointing_outside_an_mdat_is_refused(replay_in_pieces, piece):
    """Moov at the end; ftyp, mdat, free, mdat: an audio chunk inside the free box (read back from the
    spool in the same read as a good chunk before it) is refused, never sent."""
    from extractor.spool import TempFileSpool
    m1, free, m2 = box(b"mdat", b"A" * 100), box(b"free", b"S" * 100), box(b"mdat", b"B" * 100)
    at = len(FTYP) + 8
    offsets = [at, at + len(m1), at + len(m1) + len(free)]
    data = FTYP + m1 + free + m2 + _moov(_trak(1, b"soun", offsets, [100, 100, 100]))
    x = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 30, replay_in_pieces=replay_in_pieces)
    out = []
    with pytest.raises(MalformedInput, match="does not point into an mdat"):
        for pos in range(0, len(data), piece):
            out += x.feed(data[pos : pos + piece])
            while x.backlog:
                out += x.drain(1 << 20)
        out += x.finish()
    assert b"S" not in b"".join(map(bytes, out))


def test_a_chunk_of_no_samples_is_empty():
    """stsc giving the first chunk 0 samples and the second 2: the first chunk (padding) is empty, the
    second holds both samples (the one-sample-a-chunk shortcut must not apply)."""
    stsc = ((1, 0, 1), (2, 2, 1))
    empty = _moov(_trak(1, b"soun", [0, 0], [100, 100], stsc))
    base = len(FTYP) + len(empty) + 8
    data = FTYP + _moov(_trak(1, b"soun", [base, base + 100], [100, 100], stsc)) + box(b"mdat", b"P" * 100 + b"A" * 200)
    out = extract(data)
    assert out.endswith(b"A" * 200) and b"P" not in out


def test_a_fragment_whose_audio_comes_before_the_previous_fragments_is_refused():
    """The stream goes by: audio before audio already planned cannot be read any more, and must not be
    taken from whatever lies there now."""
    from extractor.mp4.pending import Pending
    from extractor.mp4.ranges import Ranges
    pending = Pending()
    pending.add(Ranges.of([(1000, 1100)]))
    with pytest.raises(MalformedInput, match="fragments out of order"):
        pending.add(Ranges.of([(500, 600)]))
