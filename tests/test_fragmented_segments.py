"""fMP4 media segments (no moov) filtered to their audio tracks, and the audio's sidx kept, in the
segment filter and in a fragmented file's plan; judged by ffmpeg (framemd5 per audio packet, streams)
and by reading the sidx back against the output's own boxes."""

from __future__ import annotations

import random
import struct

import pytest

import hlsmedia
from extractor.errors import ExtractError, LimitExceeded, NoAudio, TruncatedInput, UnsupportedInput
from extractor.mp4.file import plan_fragmented_file
from extractor.mp4.segment import SegmentFilter
from extractor.mp4.sidx import audio_track_ids, parse_sidx, read_init
from helpers import assert_same_audio, extract, streams
from test_mp4_file import fragmented_top_level


@pytest.fixture(scope="session")
def presentations(tmp_path_factory):
    return hlsmedia.presentations(tmp_path_factory)


def top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, pos, size))
        pos += size
    return out


def filtered(segment: bytes, ids, info=None, pieces=(65536,), seed=0, **kw) -> bytes:
    """The segment through a SegmentFilter, fed in pieces of the sizes given, chosen at random."""
    rng, f, out, pos = random.Random(seed), SegmentFilter(ids, info, **kw), [], 0
    while pos < len(segment):
        n = rng.choice(pieces)
        out += f.feed(segment[pos : pos + n])
        pos += n
    out += f.finish()
    assert all(len(p) for p in out)
    return b"".join(map(bytes, out))


def test_hls_fmp4_segments_come_back_audio_only(presentations, tmp_path):
    _, made = presentations
    folder = made["fmp4"].parent
    init = (folder / "init.mp4").read_bytes()
    ids = audio_track_ids(init)
    assert ids == (2,)  # ffmpeg's hls muxer: the video is track 1
    segments = [p.read_bytes() for p in sorted(folder.glob("media*.m4s"))]
    assert len(segments) == 3
    original, output = tmp_path / "original.mp4", tmp_path / "audio.mp4"
    original.write_bytes(init + b"".join(segments))
    # The init through the MP4 filter (the addon's path for EXT-X-MAP), each segment through ours, in
    # pieces of every size down to a byte.
    parts = [extract(init)] + [filtered(s, ids, read_init(init), pieces=(1, 7, 188, 4096), seed=n)
                               for n, s in enumerate(segments)]
    output.write_bytes(b"".join(parts))
    assert_same_audio(original, output)
    for segment, part in zip(segments, parts[1:]):
        # ffmpeg's segments index each track (a sidx each); ours, the audio's, sized for our fragment.
        assert [k for k, _, _ in top_level(segment)] == [b"styp", b"sidx", b"sidx", b"moof", b"mdat"]
        assert [k for k, _, _ in top_level(part)] == [b"styp", b"sidx", b"moof", b"mdat"]
        _, sidx_at, sidx_size = top_level(part)[1]
        sidx = parse_sidx(part[sidx_at : sidx_at + sidx_size], sidx_at)
        assert sidx.reference_id == 2 and sidx.spans() == [(sidx_at + sidx_size, len(part))]
        assert len(part) < len(segment) / 2


def test_dash_audio_segments_pass_with_their_track(presentations, tmp_path):
    _, made = presentations
    folder = made["dash"].parent
    init = (folder / "init-stream1.m4s").read_bytes()
    ids = audio_track_ids(init)
    segments = [p.read_bytes() for p in sorted(folder.glob("chunk-stream1-*.m4s"))]
    original, output = tmp_path / "original.mp4", tmp_path / "audio.mp4"
    original.write_bytes(init + b"".join(segments))
    output.write_bytes(init + b"".join(filtered(s, ids) for s in segments))
    assert_same_audio(original, output)
    # Audio only already: every segment comes back byte for byte as it was.
    assert all(filtered(s, ids, pieces=(1, 100, 3000), seed=n) == s for n, s in enumerate(segments))
    # A segment without the tracks named: refused, never sent. (Here both files' one track is track 1:
    # the IDs are those of the init segment of the same Representation, which is why the rewritten MPD
    # names them per Representation.)
    video = (folder / "chunk-stream0-00001.m4s").read_bytes()
    with pytest.raises(NoAudio, match="its tracks: 1"):
        filtered(video, (2,))


def test_a_segment_with_a_sidx_keeps_it_for_the_audio(presentations, tmp_path):
    """The on-demand file's fragments, sidx boxes first, as one segment: the output has one sidx (the
    audio's), with the timing ffmpeg wrote for the audio and the sizes of our own fragments; and it is
    byte for byte what the file's plan makes of the same fragments."""
    _, made = presentations
    data = made["ondemand"].read_bytes()
    boxes = top_level(data)
    kinds = [k for k, _, _ in boxes]
    assert kinds[:4] == [b"ftyp", b"moov", b"sidx", b"sidx"]  # global_sidx: one per track
    first_sidx = boxes[2][1]
    mfra = next(pos for kind, pos, _ in boxes if kind == b"mfra")
    segment = data[first_sidx:mfra]
    init = data[:first_sidx]
    info = read_init(init)
    audio_sidx = next(parse_sidx(data[p : p + s], p) for k, p, s in boxes if k == b"sidx"
                      and parse_sidx(data[p : p + s], p).reference_id in info.audio_ids)

    out = filtered(segment, info.audio_ids, info, pieces=(3, 64, 5000))
    sidx_size = struct.unpack_from(">I", out)[0]
    assert out[4:8] == b"sidx" and out[sidx_size + 4 : sidx_size + 8] == b"moof"
    sidx = parse_sidx(out[:sidx_size], 0)
    assert (sidx.reference_id, sidx.timescale, sidx.earliest) == (audio_sidx.reference_id, audio_sidx.timescale,
                                                                  audio_sidx.earliest)
    assert [r[2] for r in sidx.references] == [r[2] for r in audio_sidx.references]  # durations
    spans = sidx.spans()
    assert spans[0][0] == sidx_size and spans[-1][1] == len(out)
    assert all(out[a + 4 : a + 8] == b"moof" for a, _ in spans)
    assert [k for k, _, _ in top_level(out)].count(b"sidx") == 1
    assert filtered(out, info.audio_ids, info, pieces=(3, 700)) == out  # audio only now: as it is, sidx too

    ftyp, moov, after, mdats = fragmented_top_level(data)
    plan = plan_fragmented_file(ftyp, moov, after, mdats, len(data), index=True)
    assert hlsmedia.materialize(plan, data)[len(plan.head):] == out

    whole, original = tmp_path / "audio.mp4", tmp_path / "original.mp4"
    original.write_bytes(data)
    whole.write_bytes(extract(init) + out)
    assert_same_audio(original, whole)


def test_the_file_plan_keeps_an_audio_sidx(presentations, tmp_path):
    _, made = presentations
    data = made["ondemand"].read_bytes()
    ftyp, moov, after, mdats = fragmented_top_level(data)
    plain = plan_fragmented_file(ftyp, moov, after, mdats, len(data))
    assert plain.index_range is None and b"sidx" not in hlsmedia.materialize(plain, data)[len(plain.head):][:8]
    plan = plan_fragmented_file(ftyp, moov, after, mdats, len(data), index=True)
    out = hlsmedia.materialize(plan, data)
    first, last = plan.index_range
    assert first == len(plan.head)  # DASH: Initialization 0..len(head)-1, indexRange first..last
    assert out[first + 4 : first + 8] == b"sidx" and struct.unpack_from(">I", out, first)[0] == last - first + 1
    sidx = parse_sidx(out[first : last + 1], first)
    assert sidx.spans()[-1][1] == len(out)
    audio = tmp_path / "audio.mp4"
    audio.write_bytes(out)
    original = tmp_path / "original.mp4"
    original.write_bytes(data)
    assert_same_audio(original, audio)
    assert [s["codec_type"] for s in streams(audio)] == ["audio"]
    # The sidx's durations add up to the audio's, as ffmpeg counts it.
    seconds = float(next(s for s in streams(audio) if s["codec_type"] == "audio")["duration"])
    assert abs(sum(r[2] for r in sidx.references) / sidx.timescale - seconds) < 0.03


def test_bad_segments_are_clean_errors(presentations):
    _, made = presentations
    folder = made["fmp4"].parent
    init = (folder / "init.mp4").read_bytes()
    segment = (folder / "media0.m4s").read_bytes()
    with pytest.raises(TruncatedInput):
        filtered(segment[: len(segment) - 100], (2,))
    with pytest.raises(TruncatedInput):
        filtered(segment[:50], (2,))
    with pytest.raises(UnsupportedInput, match="not a media segment"):
        filtered(init + segment, (2,))
    with pytest.raises(NoAudio, match="carries track 5"):
        filtered(segment, (5,))
    with pytest.raises(ValueError):
        SegmentFilter(())


def test_a_sidx_holds_no_more_than_the_limit(presentations):
    _, made = presentations
    data = made["ondemand"].read_bytes()
    boxes = top_level(data)
    start = boxes[2][1]
    end = next(pos for kind, pos, _ in boxes if kind == b"mfra")
    with pytest.raises(LimitExceeded, match="held"):
        filtered(data[start:end], (2,), max_held=10_000)


def test_audio_only_fragments_go_out_as_they_came_until_one_is_not(presentations):
    """An audio-only part (our own output, its sidx with it) and then a muxed segment, as one input:
    the first comes back as it was, the second as it would alone."""
    _, made = presentations
    folder = made["fmp4"].parent
    ids = audio_track_ids((folder / "init.mp4").read_bytes())
    first = filtered((folder / "media0.m4s").read_bytes(), ids)
    assert filtered(first, ids, pieces=(5, 999)) == first
    second = (folder / "media1.m4s").read_bytes()
    assert filtered(first + second, ids, pieces=(5, 999)) == first + filtered(second, ids)


def test_mangled_segments_give_clean_errors(presentations):
    """Bytes of the boxes' headers and tables changed at random: an output or an error of the core's
    hierarchy, never another exception."""
    _, made = presentations
    folder = made["fmp4"].parent
    init = (folder / "init.mp4").read_bytes()
    info = read_init(init)
    segment = (folder / "media0.m4s").read_bytes()
    metadata = top_level(segment)[-1][1] + 8  # up to the mdat's payload: styp, sidx, moof
    rng = random.Random(14496)
    outcomes = set()
    for _ in range(600):
        mangled = bytearray(segment)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(metadata)] = rng.randrange(256)
        try:
            filtered(bytes(mangled), info.audio_ids, info, pieces=(777, 65536))
            outcomes.add("output")
        except ExtractError as error:
            outcomes.add(type(error).__name__)
    assert "output" in outcomes and len(outcomes) > 2, outcomes


def test_the_extractor_reads_a_segment_when_told_its_tracks(presentations):
    """AudioExtractor (the addon's one entry to the core) takes a segment's track IDs and gives what the
    segment filter gives; told none, it reads an MP4 body as a whole file, which a segment is not."""
    import extractor

    _, made = presentations
    folder = made["fmp4"].parent
    ids = audio_track_ids((folder / "init.mp4").read_bytes())
    segment = sorted(folder.glob("media*.m4s"))[0].read_bytes()
    ex, out, held = extractor.AudioExtractor(segment_tracks=ids), [], []
    for pos in range(0, len(segment), 1000):
        out += ex.feed(segment[pos : pos + 1000])
        held.append(ex.metadata_start)
    out += ex.finish()
    assert ex.format == "mp4-segment"
    assert b"".join(map(bytes, out)) == filtered(segment, ids)
    assert any(h is not None for h in held)  # the moof (or sidx) is held whole before it goes out: a deadline counts
    with pytest.raises(ExtractError):
        whole = extractor.AudioExtractor()
        whole.feed(segment)
        whole.finish()
