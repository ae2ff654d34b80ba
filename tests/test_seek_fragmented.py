"""Seeking fragmented MP4 and CMAF (issue 31), encrypted fragments included, judged by ffmpeg (and, where
ffmpeg 5.1 cannot decrypt, Shaka Packager).

12-second files made here by ffmpeg in every layout fragmented.py reads (default-base-is-moof, an
explicit base_data_offset, the implicit base, fragments by duration rather than keyframe, CMAF, one
track a file with a styp and a sidx a segment, two audio tracks), cut at start=3&end=6. ffmpeg 5.1
applies a fragmented file's edit list as a time offset only: the pre-roll comes out with negative
timestamps, which a player does not play. So the played audio is decoded with -copyts and
atrim=start=0 (samples before time 0 dropped, as a player does), and compared with the input decoded
whole and trimmed at (3, 6), as tests/test_seek.py does for moov files.
"""

from __future__ import annotations

import array
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from extractor import AudioExtractor, SeekPastEnd, SeekRange
from extractor.mp4.file import plan_fragmented_file
from extractor.mp4.toplevel import TopLevelReader
from helpers import STREAM_PATH, Proxy, decode_errors, http_get, run, streams
from mp4tools import boxes, trafs
from test_cenc import KEY, KID, packager

FRAME = 1024  # AAC
SECONDS = 12
SOURCE_ARGS = ["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SECONDS}",
               # Rising tones: no two audio packets alike, so a packet's place in the input is its own.
               "-f", "lavfi", "-i", f"aevalsrc=0.5*sin(2*PI*(300+40*t)*t):s=44100:d={SECONDS}",
               "-f", "lavfi", "-i", f"aevalsrc=0.5*sin(2*PI*(500+30*t)*t):s=44100:d={SECONDS}"]
ENC = ["-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-c:a", "aac", "-b:a", "64k"]
# name -> (maps, movflags and other muxer options)
LAYOUTS = {
    "moof_base": (["-map", "0:v", "-map", "1:a"], ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]),
    "explicit_base": (["-map", "0:v", "-map", "1:a"], ["-movflags", "frag_keyframe+empty_moov"]),
    "implicit_base": (["-map", "0:v", "-map", "1:a"], ["-movflags", "frag_keyframe+empty_moov+omit_tfhd_offset"]),
    "by_duration": (["-map", "0:v", "-map", "1:a"],
                    ["-movflags", "empty_moov+default_base_moof", "-frag_duration", "700000"]),
    "cmaf": (["-map", "0:v", "-map", "1:a"], ["-movflags", "+cmaf+frag_keyframe+empty_moov+default_base_moof"]),
    "two_audio": (["-map", "0:v", "-map", "1:a", "-map", "2:a"],
                  ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]),
    # Without empty_moov the first fragment's samples are in the moov: not cut (the whole audio is sent).
    "samples_in_moov": (["-map", "0:v", "-map", "1:a"], ["-movflags", "frag_keyframe"]),
}
CUT = [name for name in LAYOUTS if name != "samples_in_moov"] + ["cmaf_track"]


def ffmpeg(*args) -> None:
    run("ffmpeg", "-v", "error", "-y", *args).check_returncode()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fragmented")
    for name, (maps, muxer) in LAYOUTS.items():
        ffmpeg(*SOURCE_ARGS, *maps, *ENC, *muxer, str(folder / f"{name}.mp4"))
    # The same audio as a progressive file: the clear reference for the encrypted ones.
    ffmpeg(*SOURCE_ARGS, "-map", "0:v", "-map", "1:a", *ENC, "-movflags", "+faststart", str(folder / "source.mp4"))
    # CMAF, one track a file: DASH's init and media segments (styp, sidx, moof, mdat each) end to end.
    dash = folder / "dash"
    dash.mkdir()
    ffmpeg("-i", str(folder / "source.mp4"), "-map", "0:a", "-c", "copy", "-f", "dash", "-seg_duration", "1",
           "-init_seg_name", "init.mp4", "-media_seg_name", "seg-$Number%03d$.m4s", str(dash / "a.mpd"))
    (folder / "cmaf_track.mp4").write_bytes((dash / "init.mp4").read_bytes() + b"".join(
        p.read_bytes() for p in sorted(dash.glob("seg-*.m4s"))))
    return folder


@pytest.fixture(scope="module")
def encrypted(media):
    """source.mp4's audio encrypted: Shaka Packager's cenc and cbcs in one fragment and in fragments of
    1 s, and ffmpeg's cenc-aes-ctr fragmented."""
    folder = media / "encrypted"
    folder.mkdir()
    for scheme in ("cenc", "cbcs"):
        for name, more in ((f"shaka_{scheme}_one.mp4", ["--segment_duration", "20"]),
                           (f"shaka_{scheme}_1s.mp4", ["--fragment_duration", "1", "--segment_duration", "1"])):
            run(packager(), f"in={media / 'source.mp4'},stream=audio,output={folder / name}",
                "--enable_raw_key_encryption", "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme",
                scheme, "--clear_lead", "0", *more).check_returncode()
    ffmpeg("-i", str(media / "source.mp4"), "-c", "copy", "-encryption_scheme", "cenc-aes-ctr", "-encryption_key", KEY,
           "-encryption_kid", KID, "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(folder / "ffmpeg_cenc.mp4"))
    return folder


# -- the two paths of the core ------------------------------------------------------------------------

def streamed(data: bytes, seek: SeekRange, piece: int = 8192) -> bytes:
    x = AudioExtractor(mp4_seek=seek)
    out = []
    for i in range(0, len(data), piece):
        out += x.feed(data[i : i + piece])
    out += x.finish()
    assert x.warnings == []
    return b"".join(out)


def file_plan(data: bytes, seek: SeekRange | None):
    reader = TopLevelReader(len(data), 64 << 20, data[:16])
    while reader.need is not None:
        offset, size = reader.need
        reader.feed(data[offset : offset + size])
    top = reader.result
    return plan_fragmented_file(top.ftyp, top.moov, top.after, top.mdats, len(data), seek, 0, top.moov_at, seek is None)


def file_bytes(data: bytes, plan, first: int = 0, last: int | None = None) -> bytes:
    """Output bytes first..last of a file plan, cut from the input as a file answer does."""
    last = plan.size - 1 if last is None else last
    out = []
    for kind, value in plan.batches(first, last, 1 << 16):
        out.append(value if kind == "head" else plan.cut(value, data[value.lo : value.hi], value.lo))
    return b"".join(out)


def cut(data: bytes, seek: SeekRange) -> bytes:
    """The cut by the stream path, checked to be the file path's bytes too."""
    out = streamed(data, seek)
    plan = file_plan(data, seek)
    assert plan.warnings == [] and plan.size == len(out) and file_bytes(data, plan) == out
    return out


# -- the judges -----------------------------------------------------------------------------------------

def played(path, index: int = 0, decryption: list[str] = ()) -> array.array:
    """The audio a player plays: decoded with the timestamps the edit list gives, nothing before 0."""
    r = run("ffmpeg", "-v", "error", *decryption, "-copyts", "-i", str(path), "-map", f"0:a:{index}", "-af",
            "atrim=start=0", "-f", "s16le", "-ac", "1", "-")
    assert r.returncode == 0, r.stderr
    return array.array("h", r.stdout)


def reference(path, start: float, end: float | None, index: int = 0) -> array.array:
    """The input decoded whole and trimmed at start and end on its own timeline (-copyts: ffmpeg would
    otherwise move a file whose edit list starts it before 0, as CMAF's priming edit does, to 0)."""
    trim = f"atrim=start={start}" + (f":end={end}" if end is not None else "")
    r = run("ffmpeg", "-v", "error", "-copyts", "-i", str(path), "-map", f"0:a:{index}", "-af", trim, "-f", "s16le", "-ac", "1", "-")
    assert r.returncode == 0, r.stderr
    return array.array("h", r.stdout)


def packets(path, index: int = 0, decryption: list[str] = ()) -> list[tuple[str, str]]:
    """(size, md5) of each audio packet."""
    r = subprocess.run(["ffmpeg", "-v", "error", *decryption, "-i", str(path), "-map", f"0:a:{index}", "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, check=True)
    return [tuple(f.strip() for f in line.split(",")[4:6]) for line in r.stdout.decode().splitlines()
            if not line.startswith("#")]


def holding(path, seconds: float, index: int = 0) -> int:
    """The index of the input's audio packet that holds `seconds` on the file's own timeline."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-copyts", "-i", str(path), "-map", f"0:a:{index}", "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, check=True)
    lines = r.stdout.decode().splitlines()
    num, den = next(l.split()[-1] for l in lines if l.startswith("#tb")).split("/")
    pts = [int(l.split(",")[2]) * int(num) / int(den) for l in lines if not l.startswith("#")]
    return max(i for i, t in enumerate(pts) if t <= seconds)


PREROLL = 9  # frames: 200 ms of 1024-sample frames at 44.1 kHz (cut.py's rule)


def assert_a_run_of(ours: list, theirs: list, seconds: float) -> int:
    """ours is a contiguous run of theirs, about `seconds` of AAC plus the pre-roll; its first index."""
    assert ours, "no packet"
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours
    frames = seconds * 44100 / FRAME
    assert frames < len(ours) <= frames + 12, len(ours)  # the pre-roll (9 frames: 200 ms) and the frames cut across
    return first


def assert_plays(ours: array.array, reference_pcm: array.array, to_the_end: bool = False) -> None:
    assert 0 <= len(ours) - len(reference_pcm) < FRAME, (len(ours), len(reference_pcm))
    # To the end, ffmpeg decodes the input's last frames against its end padding a few LSB apart.
    compared = len(reference_pcm) - (2 * FRAME if to_the_end else 0)
    assert max(abs(a - b) for a, b in zip(ours[:compared], reference_pcm[:compared])) <= 1


# -- clear fragmented files -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CUT)
def test_a_cut_is_a_run_of_the_input_packets_that_plays_from_start_to_end(media, name, tmp_path):
    source = media / f"{name}.mp4"
    path = tmp_path / "cut.mp4"
    path.write_bytes(cut(source.read_bytes(), SeekRange(3000, 6000, True)))
    assert {s["codec_type"] for s in streams(path)} == {"audio"} and decode_errors(path) == ""
    for index in range(2 if name == "two_audio" else 1):
        first = assert_a_run_of(packets(path, index), packets(source, index), 3.0)
        assert first == holding(source, 3.0, index) - PREROLL
        assert_plays(played(path, index), reference(source, 3, 6, index))
    kinds = {kind for kind, *_ in boxes(path.read_bytes())}
    assert not kinds & {b"sidx", b"mfra"}  # dropped (every input has one): the streamed cut cannot write them


def test_a_file_with_samples_in_its_moov_and_in_fragments_is_sent_whole(media):
    data = (media / "samples_in_moov.mp4").read_bytes()
    x = AudioExtractor(mp4_seek=SeekRange(3000, 6000, True))
    out = b"".join(x.feed(data) + x.finish())
    assert x.warnings == ["a fragmented MP4 with samples in its moov too is not cut: the whole audio is sent"]
    whole = AudioExtractor()
    assert out == b"".join(whole.feed(data) + whole.finish())


def test_the_boxes_between_fragments_go_with_their_fragments(media, tmp_path):
    """One track a file: each kept fragment keeps the styp before it, the dropped ones lose theirs."""
    data = (media / "cmaf_track.mp4").read_bytes()
    out = cut(data, SeekRange(3000, 6000, True))
    kinds = [kind for kind, *_ in boxes(out)]
    assert kinds[:2] == [b"ftyp", b"moov"] and kinds[2:] == [b"styp", b"moof", b"mdat"] * (len(kinds[2:]) // 3)
    assert 3 <= kinds.count(b"moof") <= 5 < [k for k, *_ in boxes(data)].count(b"moof")


def test_end_past_the_last_sample_is_to_the_end(media, tmp_path):
    source = media / "moof_base.mp4"
    path = tmp_path / "cut.mp4"
    path.write_bytes(cut(source.read_bytes(), SeekRange(9000, 60_000, True)))
    ours, theirs = packets(path), packets(source)
    first = theirs.index(ours[0])
    assert ours == theirs[first:]  # every packet to the last (the encoder's padding makes it 12.04 s)
    assert first == holding(source, 9.0) - PREROLL
    assert_plays(played(path), reference(source, 9, None), to_the_end=True)


@pytest.mark.parametrize("name", ["moof_base", "cmaf_track"])
def test_start_past_the_duration_is_seek_past_end(media, name):
    data = (media / f"{name}.mp4").read_bytes()
    with pytest.raises(SeekPastEnd, match="start 13 s is past the audio's duration of 12"):
        streamed(data, SeekRange(13_000, None, True))
    with pytest.raises(SeekPastEnd, match="start 13 s is past the audio's duration of 12"):
        file_plan(data, SeekRange(13_000, None, True))


def test_the_cut_starts_at_time_0_and_its_edit_lists_skip_the_pre_roll(media, tmp_path):
    """The fragments' decode times start at 0 with the first sample kept (players that take a fragmented
    file's duration from its samples need that), each audio track's edit list skips the pre-roll and
    the part of the frame before start, and lasts end - start; tkhd and mvhd say so too."""
    out = cut((media / "two_audio.mp4").read_bytes(), SeekRange(3000, 6000, True))
    moov = next(out[p + h : p + s] for kind, p, h, s in boxes(out) if kind == b"moov")
    elst = [moov[i + 4 : i + 4 + 28] for i in range(len(moov)) if moov[i : i + 4] == b"elst"]
    assert len(elst) == 2
    for entry in elst:
        version, count, duration, media_time = struct.unpack(">B3xIQq", entry[:24])
        assert (version, count, duration) == (1, 1, 3000)  # movie timescale 1000
        assert PREROLL * FRAME <= media_time < (PREROLL + 1) * FRAME  # in the track's, 44100
    path = tmp_path / "cut.mp4"
    path.write_bytes(out)
    for stream in streams(path):
        assert float(stream["start_time"]) == pytest.approx(-media_time / 44100, abs=1e-5)
    tfdt = [out[i + 8 : i + 16] for i in range(len(out)) if out[i : i + 4] == b"tfdt"]
    assert tfdt[:2] == [bytes(8)] * 2  # version 1, both tracks' first fragment at 0


# -- encrypted fragments -----------------------------------------------------------------------------------

def senc_entries(data: bytes) -> list[bytes]:
    """Every audio sample's aux information (IV, subsamples) in file order, read by the tests' walker
    where a reader finds it: at saio's offset (from the moof, or tfhd's base data offset), each entry
    saiz's size; a traf without saio, its senc's entries."""
    entries = []
    for pos, tpos, theader, tsize in trafs(data):
        inner = {k: (p + h, p + s) for k, p, h, s in boxes(data, tpos + theader, tpos + tsize)}
        if b"senc" not in inner:
            continue
        s, end = inner[b"senc"]
        count = int.from_bytes(data[s + 4 : s + 8], "big")
        position = s + 8
        if b"saio" in inner:  # (where a reader looks: a misplaced saio shows here, not in the senc)
            o, _ = inner[b"saio"]
            at = o + 8 + (8 if data[o + 3] & 1 else 0)
            assert int.from_bytes(data[at - 4 : at], "big") == 1, "the walker reads one saio offset a traf"
            t, _ = inner[b"tfhd"]
            flags = int.from_bytes(data[t + 1 : t + 4], "big")
            base = int.from_bytes(data[t + 8 : t + 16], "big") if flags & 1 else pos
            assert flags & 1 or flags & 0x020000, "the walker reads trafs with a base: explicit or the moof"
            position = base + int.from_bytes(data[at : at + (8 if data[o] else 4)], "big")
        if b"saiz" in inner:
            a, _ = inner[b"saiz"]
            flags = int.from_bytes(data[a + 1 : a + 4], "big")
            at = a + 4 + (8 if flags & 1 else 0)
            default = data[at]
            assert int.from_bytes(data[at + 1 : at + 5], "big") == count
            sizes = [default] * count if default else list(data[at + 5 : at + 5 + count])
        else:  # no saiz: entries of one size, without subsamples (cbcs audio: a constant IV, empty entries)
            assert not data[s + 3] & 2 and (end - s - 8) % max(count, 1) == 0
            sizes = [(end - s - 8) // max(count, 1)] * count
        for n in sizes:
            entries.append(data[position : position + n])
            position += n
    return entries


def shaka_decrypted(path, tmp_path):
    """The file decrypted by Shaka Packager (ffmpeg 5.1 decrypts fragments only through a sidx)."""
    out = tmp_path / f"clear-{path.name}"
    run(packager(), f"in={path},stream=audio,output={out}", "--enable_raw_key_decryption", "--keys",
        f"label=:key_id={KID}:key={KEY}").check_returncode()
    return out


@pytest.mark.parametrize("scheme", ["cenc", "cbcs"])
@pytest.mark.parametrize("layout", ["one", "1s"])
def test_an_encrypted_cut_decrypts_to_the_input_audio(media, encrypted, scheme, layout, tmp_path):
    source = encrypted / f"shaka_{scheme}_{layout}.mp4"
    data = source.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(cut(data, SeekRange(3000, 6000, True)))
    clear = packets(media / "source.mp4")
    if layout == "one":  # one fragment: ffmpeg decrypts it
        key = ["-decryption_key", KEY]
        kept = packets(path, decryption=key)
        first = assert_a_run_of(kept, clear, 3.0)
        assert run("ffmpeg", "-v", "error", *key, "-i", str(path), "-f", "null", "-").stderr == b""
        assert_plays(played(path, decryption=key), reference(media / "source.mp4", 3, 6))
    else:
        decrypted = shaka_decrypted(path, tmp_path)
        kept = packets(decrypted)
        first = assert_a_run_of(kept, clear, 3.0)
        assert decode_errors(decrypted) == ""
    # Every kept sample keeps its own IV and subsamples: the input's entries from the same sample on.
    ours, theirs = senc_entries(path.read_bytes()), senc_entries(data)
    assert len(ours) == len(kept) and theirs[first : first + len(ours)] == ours


def test_ffmpeg_encrypted_fragments_are_cut_encrypted(media, encrypted, tmp_path):
    """ffmpeg 5.1 writes a fragmented cenc file's IVs nowhere (an empty senc in the moov, none in the
    trafs): no tool decrypts it, the input included. The cut keeps its encrypted packets, a run of the
    input's; the empty aux information of the moov no longer has it refused."""
    source = encrypted / "ffmpeg_cenc.mp4"
    path = tmp_path / "cut.mp4"
    data = source.read_bytes()
    path.write_bytes(cut(data, SeekRange(3000, 6000, True)))
    out = path.read_bytes()
    assert_a_run_of(samples(out, 2), samples(data, 2), 3.0)
    assert packets(path) == samples(out, 2)  # (ffmpeg reads the cut; the input it refuses)


def samples(data: bytes, track_id: int) -> list[tuple[str, str]]:
    """(size, md5) of each sample of a track of a default-base-is-moof fragmented file, read by the
    tests' walker (as framemd5 gives them)."""
    import hashlib
    found = []
    for pos, tpos, theader, tsize in trafs(data):
        inner = {k: (p + h, p + s) for k, p, h, s in boxes(data, tpos + theader, tpos + tsize)}
        if b"tfhd" not in inner or struct.unpack_from(">I", data, inner[b"tfhd"][0] + 4)[0] != track_id:
            continue
        tfhd_flags = struct.unpack_from(">I", data, inner[b"tfhd"][0])[0] & 0xFFFFFF
        assert tfhd_flags & 0x020000 and not tfhd_flags & 0x01  # default-base-is-moof
        t = inner[b"trun"][0]
        flags, count, offset = struct.unpack_from(">IIi", data, t)
        assert flags & 0x201 == 0x201  # a data offset and each sample's size
        fields = bin(flags & 0xF00).count("1")
        table = struct.unpack_from(f">{count * fields}I", data, t + 12 + (4 if flags & 4 else 0))
        sizes = table[(1 if flags & 0x100 else 0)::fields]
        at = pos + offset
        for n in sizes:
            found.append((str(n), hashlib.md5(data[at : at + n]).hexdigest()))
            at += n
    return found


# -- through mitmdump: the file path and the stream path -----------------------------------------------------

@pytest.fixture(scope="module")
def fragmented_origin(media, encrypted):
    from origin import Origin
    for path in encrypted.iterdir():  # served beside the clear ones
        (media / path.name).write_bytes(path.read_bytes())
    server = Origin(media).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def proxies(fragmented_origin, tmp_path_factory):
    """The file path (the origin serves ranges) and the stream path."""
    folder = tmp_path_factory.mktemp("log")
    file_proxy = Proxy(folder / "file.log", "--mode", f"reverse:{fragmented_origin.url}")
    stream_proxy = Proxy(folder / "stream.log", "--mode", f"reverse:{fragmented_origin.url}", *STREAM_PATH)
    yield file_proxy, stream_proxy
    file_proxy.stop()
    stream_proxy.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["moof_base", "implicit_base", "cmaf_track", "two_audio", "shaka_cenc_1s"])
def test_a_cut_through_the_proxy_is_a_file_and_a_stream_of_the_same_bytes(media, proxies, name):
    file_proxy, stream_proxy = proxies
    want = cut((media / f"{name}.mp4").read_bytes(), SeekRange(3000, 6000, True))
    query = f"/{name}.mp4?ali_audio_only=1&start=3&end=6"
    whole = http_get(file_proxy.port, query)
    assert whole.status == 200 and whole.clean and whole.body == want
    assert whole.headers["content-length"] == str(len(want)) and whole.headers.get("accept-ranges") == "bytes"
    assert "3000-6000" in whole.headers["etag"]  # the cut's own ETag
    assert f"{name}.mp4 file: " in file_proxy.wait_for_log(f"{name}.mp4 file: ")
    # Any byte range of the cut is the slice of its whole GET.
    size = len(want)
    for first, last in ((0, 0), (0, 99), (100, size // 2), (size // 3, size - 1), (size - 10, size - 1)):
        part = http_get(file_proxy.port, query, {"Range": f"bytes={first}-{last}"})
        assert part.status == 206 and part.clean and part.body == want[first : last + 1], (first, last)
    streamed_reply = http_get(stream_proxy.port, query)
    assert streamed_reply.status == 200 and streamed_reply.clean and streamed_reply.body == want
    assert "content-length" not in streamed_reply.headers


@pytest.mark.e2e
def test_start_past_the_audio_is_a_400_on_the_file_path(proxies):
    file_proxy, _ = proxies
    reply = http_get(file_proxy.port, "/moof_base.mp4?ali_audio_only=1&start=13")
    assert reply.status == 400 and reply.clean
    assert b"start 13 s is past the audio's duration of 12" in reply.body


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["moof_base", "cmaf_track"])
def test_chromium_plays_the_cut_for_its_duration(media, proxies, name, tmp_path):
    """Chromium's <audio> (Debian's build, its FFmpeg demuxer) through the file path plays the cut to its
    end. Its demuxer ignores a fragmented file's edit list (the input's own CMAF priming edit too: it
    reports that file's 12.023 s, its samples' span, where ffmpeg starts it at -0.023 s), so the
    duration it reports is the cut's samples', from 0: the 3 s plus the pre-roll that the edit list
    hides (9 frames, and the part of the first frame before start), within two frames."""
    from test_players import PLAY_TO_THE_END  # (here: test_players needs the browser helpers on the path)
    from browser import chromium
    file_proxy, _ = proxies
    query = f"/{name}.mp4?ali_audio_only=1&start=3&end=6"
    path = tmp_path / "cut.mp4"
    path.write_bytes(http_get(file_proxy.port, query).body)
    hidden = -float(streams(path)[0]["start_time"])  # the edit list's skip, as ffmpeg applies it
    assert PREROLL * FRAME / 44100 <= hidden < (PREROLL + 1) * FRAME / 44100
    with chromium() as page:
        page.set_content("<html><body></body></html>")
        r = page.evaluate(PLAY_TO_THE_END, [f"http://127.0.0.1:{file_proxy.port}{query}", "audio"])
    print(f"\n{name}: {r}, the edit list hides {hidden:.4f} s")
    assert r["error"] is None and r["ended"], r
    assert r["duration"] - hidden == pytest.approx(3.0, abs=2 * FRAME / 44100), r


# -- fuzzing the cut ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory):
    """3-second inputs for the fuzzer: clear fragments of 0.3 s (implicit base, so that a damaged size
    moves the next traf's data) and Shaka's cenc fragments of 0.5 s (senc, saiz, saio in each traf)."""
    folder = tmp_path_factory.mktemp("fuzz")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=3", "-f", "lavfi", "-i",
           "aevalsrc=0.5*sin(2*PI*(300+40*t)*t):s=44100:d=3", "-c:v", "libx264", "-preset", "veryfast", "-g", "10",
           "-c:a", "aac", "-b:a", "32k", "-movflags", "empty_moov+omit_tfhd_offset", "-frag_duration", "300000",
           str(folder / "clear.mp4"))
    run(packager(), f"in={folder / 'clear.mp4'},stream=audio,output={folder / 'cenc.mp4'}", "--enable_raw_key_encryption",
        "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme", "cenc", "--clear_lead", "0",
        "--fragment_duration", "0.5", "--segment_duration", "0.5").check_returncode()
    # PCM in fragments of a QuickTime file: truns with no per-sample field (tfhd's default duration and
    # size), so that a damaged count claims any number of samples
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*(300+40*t)*t):s=8000:d=3", "-c:a", "pcm_s16le", "-f", "mov",
           "-movflags", "empty_moov+default_base_moof", "-frag_duration", "300000", str(folder / "defaults.mp4"))
    return {name: (folder / f"{name}.mp4").read_bytes() for name in ("clear", "cenc", "defaults")}


def cut_or_error(data: bytes, seek: SeekRange, pieces: int) -> tuple[bytes | None, bytes | None]:
    """(the stream path's cut or None, the file path's or None): each an output or a clean ExtractError."""
    from extractor import ExtractError
    x = AudioExtractor(mp4_seek=seek, max_header=1 << 20)
    try:
        out = []
        for i in range(0, len(data), pieces):
            out += x.feed(data[i : i + pieces])
        streamed_out = b"".join(out + x.finish())
    except ExtractError:
        streamed_out = None
    try:
        plan = file_plan(data, seek)
        filed = file_bytes(data, plan)
    except ExtractError:
        filed = None
    return streamed_out, filed


def metadata_positions(data: bytes) -> list[int]:
    """Offsets inside the moov and moof boxes: where a damaged byte tests the parsing."""
    return [p for kind, pos, header, size in boxes(data) if kind in (b"moov", b"moof")
            for p in range(pos, pos + min(size, 4096))]


seeks = st.tuples(st.integers(0, 3500), st.one_of(st.none(), st.integers(0, 4000))).map(
    lambda t: SeekRange(t[0], t[1], True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["clear", "cenc", "defaults"]), seek=seeks,
       damage=st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=4),
       pieces=st.sampled_from([1000, 4096, 1 << 20]))
def test_a_damaged_fragmented_input_is_cut_or_refused_cleanly(small_inputs, name, seek, damage, pieces):
    """Never another exception, and never a hang: each path gives its output or an ExtractError (the
    two need not agree on a damaged input: the file path reads the top level first)."""
    data = bytearray(small_inputs[name])
    positions = metadata_positions(bytes(data))
    for where, value in damage:
        data[positions[where % len(positions)]] = value
    streamed_out, filed = cut_or_error(bytes(data), seek, pieces)
    for out in (streamed_out, filed):
        assert out is None or len(out) <= len(data) + 4096


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seek=seeks, pieces=st.sampled_from([1000, 1 << 20]))
def test_every_sample_of_a_cut_keeps_its_own_iv(small_inputs, seek, pieces):
    """On a clean encrypted input, any cut: the output's samples are a run of the input's and each one's
    senc entry (IV) is that of the input sample it is (read by the tests' walker)."""
    from extractor import SeekPastEnd as PastEnd
    data = small_inputs["cenc"]
    try:
        streamed_out, filed = cut_or_error(data, seek, pieces)
    except PastEnd:
        return
    if streamed_out is None:
        with pytest.raises(PastEnd):
            streamed(data, seek)
        return
    assert streamed_out == filed
    ours, theirs = samples(streamed_out, 1), samples(data, 1)
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours
    assert senc_entries(streamed_out) == senc_entries(data)[first : first + len(ours)]


def sample_groups(data: bytes) -> list[bytes]:
    """Each audio sample's seig group description (the sgpd entry its sbgp names: the moof's own for
    an index above 0x10000), in file order, read by the tests' walker."""
    def entries(sgpd: bytes) -> list[bytes]:
        assert sgpd[0] == 1, "the walker reads sgpd version 1 (a default length)"
        length = int.from_bytes(sgpd[8:12], "big")
        count = int.from_bytes(sgpd[12:16], "big")
        assert length
        return [sgpd[16 + i * length : 16 + (i + 1) * length] for i in range(count)]

    groups = []
    for _, tpos, theader, tsize in trafs(data):
        inner = {k: data[p + h : p + s] for k, p, h, s in boxes(data, tpos + theader, tpos + tsize)}
        local = entries(inner[b"sgpd"]) if b"sgpd" in inner else []
        sbgp = inner[b"sbgp"]
        head = 12 if sbgp[0] == 1 else 8
        assert sbgp[4:8] == b"seig"
        count = int.from_bytes(sbgp[head : head + 4], "big")
        for i in range(count):
            run_length, index = struct.unpack_from(">II", sbgp, head + 4 + 8 * i)
            assert index > 0x10000, "the walker reads groups described in the moof"
            groups += [local[(index & 0xFFFF) - 1]] * run_length
    return groups


def test_key_rotation_groups_are_cut_with_the_samples(media, tmp_path):
    """Shaka's cbcs with a new key every 2 s (a seig group and its description in every moof): each kept
    sample keeps its group, so its key, and its senc entry."""
    source = tmp_path / "rotation.mp4"
    run(packager(), f"in={media / 'source.mp4'},stream=audio,output={source}", "--enable_raw_key_encryption",
        "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme", "cbcs", "--clear_lead", "0",
        "--fragment_duration", "1", "--segment_duration", "1", "--crypto_period_duration", "2").check_returncode()
    data = source.read_bytes()
    out = cut(data, SeekRange(3000, 6000, True))
    ours, theirs = samples(out, 1), samples(data, 1)
    first = assert_a_run_of(ours, theirs, 3.0)
    theirs_groups = sample_groups(data)
    assert len(theirs_groups) == len(theirs) and len(set(theirs_groups)) >= 6  # a key every 2 s of 12
    assert sample_groups(out) == theirs_groups[first : first + len(ours)]
    assert len(set(sample_groups(out))) >= 2  # the cut crosses a key change (at 4 s)
    assert senc_entries(out) == senc_entries(data)[first : first + len(ours)]


@pytest.mark.e2e
def test_start_past_the_audio_on_the_stream_path_ends_uncleanly(proxies):
    """Streamed, a fragmented file's end is known only once its last fragment has passed, after the 200
    went out (as for an MP4 whose moov cannot be read first): the response ends uncleanly."""
    _, stream_proxy = proxies
    reply = http_get(stream_proxy.port, "/moof_base.mp4?ali_audio_only=1&start=13")
    assert reply.status == 200 and not reply.clean and reply.body == b""
    assert "start 13 s is past the audio's duration of 12" in stream_proxy.wait_for_log("past the audio's duration")
