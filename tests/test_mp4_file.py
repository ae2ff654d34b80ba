"""The audio-only MP4 as a file (extractor/mp4/file.py): the whole file and any byte range of it equal
the streamed output, for every layout a file can have; fragmented files and stray offsets refused."""

import random
import subprocess

import pytest

from extractor import MalformedInput, SeekRange, UnsupportedInput
from extractor.mp4.file import RUN_AT_LEAST, Batch, FilePlan, Run, SpanCutter, plan_file, plan_fragmented_file
from extractor.mp4.ranges import Ranges
from helpers import MEDIA, extract
from mp4tools import boxes, to_64bit

FILES = ["h264_aac.mp4", "moov_end.mp4", "two_audio.mp4", "quicktime.mov", "hevc_aac.mp4", "h264_opus.mp4",
         "audio_only.m4a"]


def top_level(data: bytes):
    found = {kind: (pos, size) for kind, pos, header, size in boxes(data) if kind in (b"ftyp", b"moov")}
    mdats = [(pos + header, pos + size) for kind, pos, header, size in boxes(data) if kind == b"mdat"]
    (fpos, fsize), (mpos, msize) = found[b"ftyp"], found[b"moov"]
    return data[fpos : fpos + fsize], data[mpos : mpos + msize], mdats


def assert_ranges_are_slices(plan, data: bytes, whole: bytes, seed: str, count: int) -> None:
    """The whole planned file is the streamed output, and random ranges of it its slices."""
    assert plan.size == len(whole) and render(plan, data, 0, plan.size - 1) == whole
    rng = random.Random(seed)
    for _ in range(count):
        first = rng.randrange(plan.size)
        last = rng.randrange(first, plan.size)
        assert render(plan, data, first, last) == whole[first : last + 1], (first, last)


def render(plan, data: bytes, first: int, last: int) -> bytes:
    """Output bytes first..last, as the file server makes them (batches of input ranges, cut)."""
    return b"".join(value if kind == "head" else plan.cut(value, data, 0)
                    for kind, value in plan.batches(first, last, 1 << 22))


@pytest.mark.parametrize("name", FILES + ["wide"])
def test_every_range_of_the_file_is_that_slice_of_the_streamed_output(name):
    data = to_64bit((MEDIA / "h264_aac.mp4").read_bytes()) if name == "wide" else (MEDIA / name).read_bytes()
    plan = plan_file(*top_level(data), len(data))
    whole = extract(data)
    assert_ranges_are_slices(plan, data, whole, name, 300)
    for first in (0, len(plan.head) - 1, len(plan.head), plan.size - 1):  # the edges of head and body
        assert render(plan, data, first, first) == whole[first : first + 1]


def test_a_seek_cut_is_a_file_too():
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    cut = SeekRange(1500, 4000, True)
    plan = plan_file(*top_level(data), len(data), seek=cut)
    assert render(plan, data, 0, plan.size - 1) == extract(data, mp4_seek=cut)


def test_fragmented_files_and_offsets_outside_the_mdats_are_refused():
    data = (MEDIA / "frag_moof_base.mp4").read_bytes()
    with pytest.raises(UnsupportedInput, match="fragmented"):
        plan_file(*top_level(data), len(data))
    data = (MEDIA / "h264_aac.mp4").read_bytes()
    ftyp, moov, mdats = top_level(data)
    with pytest.raises(MalformedInput, match="do not lie inside an mdat"):
        plan_file(ftyp, moov, [(mdats[0][0], mdats[0][1] - 5000)], len(data))  # the last 5 kB not an mdat


@pytest.mark.parametrize("seed", range(20))
def test_batches_cut_the_same_bytes_as_the_plan_says(seed):
    """FilePlan.batches and cut (bulk, per batch) give exactly the bytes of the output written out one
    range at a time, for random ranges, gaps, inserts, clipped ends and ranges longer than a batch."""
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(1 << 16))
    pos, pairs = 0, []
    while True:
        pos += rng.choice([0, 1, 3, 100, 5000])
        end = pos + rng.choice([1, 2, 7, 300, 9000])
        if end > len(data):
            break
        pairs.append((pos, end))
        pos = end
    head = bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 40])))
    ranges = Ranges.of(pairs)
    gap = rng.choice([0, 2, 200, 1 << 20])
    inserts = {k: bytes([k % 256]) * rng.choice([1, 9]) for k in rng.sample(range(len(pairs) + 1), rng.choice([0, 0, 3]))}
    plan = FilePlan(head, ranges, len(head) + ranges.total + sum(map(len, inserts.values())), gap=gap, inserts=inserts)
    whole = head + b"".join(inserts.get(k, b"") + data[s:e] for k, (s, e) in enumerate(pairs)) + inserts.get(len(pairs), b"")
    assert len(whole) == plan.size
    for _ in range(20):
        first = rng.randrange(plan.size)
        last = rng.randrange(first, plan.size)
        want = whole[first : last + 1]
        got = []
        most, most_ranges = rng.choice([64, 4096, 1 << 22]), rng.choice([1, 3, 1000])
        for kind, value in plan.batches(first, last, most, most_ranges):
            if kind == "head":
                got.append(value)
            else:
                assert 0 < value.size <= most and 0 < value.j - value.i <= most_ranges
                got.append(plan.cut(value, data[value.lo : value.hi], value.lo))
        assert b"".join(got) == want
        assert_runs_are_their_batches(plan, first, last, most, most_ranges)


def assert_runs_are_their_batches(plan: FilePlan, first: int, last: int, most: int, most_ranges: int) -> None:
    """batches(runs=True) is batches() with one-range batches in a row given as Runs: each Run, written
    out as one-range Batches, is exactly what batches() gives there, its size their sizes' sum, its
    spans theirs; and take() splits it into runs that are the same again."""
    plain = list(plan.batches(first, last, most, most_ranges))
    expanded, runs = [], []
    for kind, value in plan.batches(first, last, most, most_ranges, runs=True):
        if kind != "run":
            expanded.append((kind, value))
            continue
        assert value.j - value.i >= RUN_AT_LEAST and not plan.inserts
        runs.append(value)
        ones = [Batch(k, k + 1, plan.ranges.starts[k], plan.ranges.ends[k]) for k in range(value.i, value.j)]
        ones[0].lo, ones[-1].hi = value.lo, value.hi
        assert value.size == sum(b.size for b in ones) and list(plan.ones(value)) == ones
        assert plan.spans(value) == [(b.lo, b.hi - 1) for b in ones]
        expanded += [("batch", b) for b in ones]
    assert expanded == plain
    rng = random.Random(first)
    for run in runs:
        pieces, rest = [], run
        while rest is not None:
            count, room = rng.choice([1, 2, 5, 1000]), rng.choice([1, 100, 5000, 1 << 30])
            taken, after = plan.take(rest, count, room)
            if taken is None:  # not even its first range fits: the run is left as it was
                assert after is rest and plan.take(rest, 1, 1 << 40)[0].size > room
                room = 1 << 40
                taken, after = plan.take(rest, count, room)
            assert 1 <= taken.j - taken.i <= count and taken.size <= room
            pieces.append(taken)
            rest = after
        assert sum(p.size for p in pieces) == run.size
        assert sum((plan.spans(p) for p in pieces), []) == plan.spans(run)


@pytest.mark.parametrize("seed", range(8))
def test_a_span_is_cut_as_it_arrives_and_only_a_batch_is_kept(seed):
    """SpanCutter (one read of several batches and the video between them, bytes of our own among
    them): fed the span in pieces of any size, it gives the output as soon as its bytes are in, the
    same bytes as cuts of the whole span, and never holds more than the range it waits for."""
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(1 << 17))
    pos, pairs = 0, []
    while pos < len(data) - 20_000:
        pos += rng.choice([0, 10, 3000, 9000])
        pairs.append((pos, pos + rng.choice([1, 80, 700, 5000])))
        pos = pairs[-1][1]
    ranges = Ranges.of(pairs)
    plan = FilePlan(b"", ranges, ranges.total, gap=rng.choice([0, 20, 4000]))
    batches = [b for kind, b in plan.batches(0, plan.size - 1, rng.choice([2000, 1 << 20]), runs=rng.random() < 0.5)
               if kind != "head"]
    for _ in range(10):
        i = rng.randrange(len(batches))
        group = batches[i : i + rng.choice([1, 2, 30, 1000])]
        start, end = group[0].lo, group[-1].hi
        group = [x for b in group for x in (b, b"ours") if rng.random() < 0.3 or x is b]  # inserts between
        want = b"".join(b if isinstance(b, bytes) else plan.cut(b, data[start:end], start) for b in group)
        longest = max(plan.ranges.ends[k] - plan.ranges.starts[k] for b in group if not isinstance(b, bytes)
                      for k in range(b.i, b.j))
        cutter, got, at = SpanCutter(plan, group, start), [], start
        while at < end:
            piece = data[at : min(end, at + rng.choice([1, 100, 4096, 65536]))]
            got += cutter.feed(piece)
            at += len(piece)
            assert len(cutter.buffer) < longest
            # what is out is all the output of the ranges whose bytes are in
            ready = sum(min(plan.ranges.ends[k], b.hi, at) - max(plan.ranges.starts[k], b.lo)
                        for b in group if not isinstance(b, bytes) for k in range(b.i, b.j)
                        if plan.ranges.ends[k] <= at or b.hi <= at)
            assert sum(len(x) for x in got if x != b"ours") == ready
        assert cutter.done and b"".join(got) == want


@pytest.mark.parametrize("seed", range(12))
def test_runs_of_one_range_batches_are_those_batches(seed):
    """Interleaved like a real file (an audio chunk between video frames), with now and then chunks
    close enough to be joined, or longer than a batch: Runs are exactly the one-range batches there."""
    rng = random.Random(seed)
    pos, pairs = 0, []
    for _ in range(rng.choice([20, 300, 3000])):
        pos += rng.choice([0, 50] + [25_000] * 20)
        end = pos + rng.choice([1, 500, 600, 9000] if rng.random() < 0.95 else [70_000])
        pairs.append((pos, end))
        pos = end
    ranges = Ranges.of(pairs)
    head = b"h" * rng.choice([0, 700])
    plan = FilePlan(head, ranges, len(head) + ranges.total, gap=rng.choice([0, 100, 16 << 10]))
    for _ in range(15):
        first = rng.choice([0, rng.randrange(plan.size)])
        last = rng.choice([plan.size - 1, rng.randrange(first, plan.size)])
        assert_runs_are_their_batches(plan, first, last, rng.choice([64 << 10, 4 << 20]), rng.choice([1, 4096]))


FRAGMENTED = ["frag_moof_base.mp4", "frag_explicit_base.mp4", "frag_implicit_base.mp4", "frag_sidx.mp4",
              "frag_two_audio.mp4", "frag_every_frame.mp4"]


def fragmented_top_level(data: bytes):
    found = {kind: (pos, size) for kind, pos, header, size in boxes(data) if kind in (b"ftyp", b"moov")}
    (fpos, fsize), (mpos, msize) = found[b"ftyp"], found[b"moov"]
    after = [(kind, pos, data[pos : pos + size]) for kind, pos, header, size in boxes(data)
             if pos > mpos and kind != b"mdat"]
    mdats = [(pos + header, pos + size) for kind, pos, header, size in boxes(data) if kind == b"mdat"]
    return data[fpos : fpos + fsize], data[mpos : mpos + msize], after, mdats


@pytest.mark.parametrize("name", FRAGMENTED)
def test_a_fragmented_file_plans_the_bytes_of_the_streamed_output(name):
    data = (MEDIA / name).read_bytes()
    ftyp, moov, after, mdats = fragmented_top_level(data)
    plan = plan_fragmented_file(ftyp, moov, after, mdats, len(data))
    assert_ranges_are_slices(plan, data, extract(data), name, 50)


def test_a_fragmented_file_whose_moov_has_samples_of_its_own(tmp_path):
    """ffmpeg's -movflags frag_keyframe (without empty_moov): the moov describes the first samples (in
    the mdat after it), the fragments the rest. The file's plan holds both, as the stream does."""
    path = tmp_path / "frag_keyframe.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(MEDIA / "h264_aac.mp4"), "-c", "copy",
                    "-movflags", "frag_keyframe", str(path)], check=True)
    data = path.read_bytes()
    ftyp, moov, after, mdats = fragmented_top_level(data)
    assert any(kind == b"moof" for kind, _, _ in after)
    plan = plan_fragmented_file(ftyp, moov, after, mdats, len(data))
    assert_ranges_are_slices(plan, data, extract(data), "frag_keyframe", 50)
