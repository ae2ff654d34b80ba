"""Seeking (start/end) an encrypted progressive MP4: the cut keeps each kept sample's own sample
auxiliary information (IV, subsamples) in senc, saiz and saio (or in the media data), and its seig
groups. Judged by ffmpeg with the key (-decryption_key): the cut's decrypted packets are a contiguous
run of the input's decrypted packets, decode cleanly, and play from `start` for end - start seconds
(decoded against the input decoded whole and trimmed: tests/test_seek.py's measure); and by the
tests' own walkers (cbcsgen.audio_samples_with_aux, senc_entries here), not the product's."""

from __future__ import annotations

import array
import struct
import subprocess

import pytest

import cbcsgen
from extractor import AudioExtractor, SeekRange, UnsupportedInput
from extractor.spool import TempFileSpool
from helpers import STREAM_PATH, Proxy, http_get, run, streams
from mp4tools import boxes

KEY = "00112233445566778899aabbccddeeff"  # ffmpeg's files; cbcsgen's key is the same bytes
KID = "0123456789abcdef0123456789abcdef"
START, END = 3000, 6000
FFMPEG_FILES = ["enc_first.mp4", "enc_end.mp4"]  # cenc-aes-ctr, the aux information in a senc in the moov
CBCS_READABLE = ["cbcs_senc_first.mp4", "cbcs_senc_end.mp4", "cbcs_one_first.mp4", "cbcs_one_end.mp4"]
CBCS_CHUNKS = ["cbcs_chunks_first.mp4", "cbcs_chunks_end.mp4"]  # ffmpeg reads no per-chunk aux blocks
READABLE = FFMPEG_FILES + CBCS_READABLE
assert bytes.fromhex(KEY) == cbcsgen.KEY


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A clear 10 s file (H.264 and AAC, ffmpeg), encrypted by ffmpeg (moov first and at the end) and by
    tests/cbcsgen.py: cbcs with subsamples, the aux information in a senc in the moov (per-sample IVs),
    in one block in the mdat, or in one block before each audio chunk; moov first and at the end."""
    folder = tmp_path_factory.mktemp("seek_cenc")
    clear = folder / "clear.mp4"
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
        "-i", "sine=frequency=440:sample_rate=44100", "-t", "10", "-c:v", "libx264", "-g", "50", "-c:a", "aac",
        "-b:a", "64k", str(clear))
    for name, flags in (("enc_end.mp4", []), ("enc_first.mp4", ["-movflags", "+faststart"])):
        run("ffmpeg", "-v", "error", "-y", "-i", str(clear), "-c", "copy", "-encryption_scheme", "cenc-aes-ctr",
            "-encryption_key", KEY, "-encryption_kid", KID, *flags, str(folder / name))
    data = clear.read_bytes()
    for name in CBCS_READABLE + CBCS_CHUNKS:
        aux = "senc" if "_senc_" in name else "media"
        (folder / name).write_bytes(cbcsgen.encrypt(data, "_chunks_" in name, "_first" in name, aux=aux))
    return folder


def core_cut(data: bytes, seek: SeekRange) -> tuple[bytes, list[str]]:
    x = AudioExtractor(mp4_seek=seek, spool_factory=TempFileSpool, max_spool=1 << 30)
    return b"".join(map(bytes, x.feed(data) + x.finish())), x.warnings


def packets(path, key: bool = True) -> list[tuple[str, str]]:
    """(size, md5) of each audio packet, decrypted by ffmpeg with the key."""
    r = subprocess.run(["ffmpeg", "-v", "error", *(["-decryption_key", KEY] if key else []), "-i", str(path),
                        "-map", "0:a", "-c", "copy", "-f", "framemd5", "-"], capture_output=True, check=True)
    return [tuple(f.strip() for f in line.split(",")[4:6]) for line in r.stdout.decode().splitlines()
            if not line.startswith("#")]


def pcm(path, trim: tuple[float, float] | None = None) -> array.array:
    """Decrypted and decoded mono 16-bit samples; with trim, a full decode cut at those times."""
    r = run("ffmpeg", "-v", "error", "-decryption_key", KEY, "-i", str(path), "-map", "0:a",
            *(["-af", f"atrim=start={trim[0]}:end={trim[1]}"] if trim else []), "-f", "s16le", "-ac", "1", "-")
    assert r.returncode == 0, r.stderr
    return array.array("h", r.stdout)


def decrypt_errors(path) -> str:
    r = run("ffmpeg", "-v", "error", "-xerror", "-decryption_key", KEY, "-i", str(path), "-map", "0:a", "-f", "null", "-")
    return r.stderr.decode() + ("" if r.returncode == 0 else f"exit {r.returncode}")


def run_of(ours: list, theirs: list) -> int:
    """Where `ours` lies in `theirs` as one contiguous run (an AssertionError when it does not)."""
    assert ours, "nothing came out"
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours
    return first


def _stbl_boxes(data: bytes, handler: bytes = b"soun") -> dict[bytes, tuple[int, int, int]]:
    moov = next((p, h, s) for k, p, h, s in boxes(data) if k == b"moov")
    for kind, pos, header, size in boxes(data, moov[0] + moov[1], moov[0] + moov[2]):
        if kind == b"trak" and handler in data[pos : pos + size]:
            box = (pos, header, size)
            for path in (b"mdia", b"minf", b"stbl"):
                box = next((p, h, s) for k, p, h, s in boxes(data, box[0] + box[1], box[0] + box[2]) if k == path)
            return {k: (p, h, s) for k, p, h, s in boxes(data, box[0] + box[1], box[0] + box[2])}
    raise AssertionError("no audio trak")


def senc_entries(data: bytes, iv_size: int) -> list[bytes]:
    """Each entry of the audio's senc (IV, and subsamples when flag 2 is set), read by walking the box
    itself (what ffmpeg reads; saio is the other reader's way in)."""
    pos, header, size = _stbl_boxes(data)[b"senc"]
    flags = int.from_bytes(data[pos + header + 1 : pos + header + 4], "big")
    count = struct.unpack_from(">I", data, pos + header + 4)[0]
    at, entries = pos + header + 8, []
    for _ in range(count):
        end = at + iv_size
        if flags & 2:
            end += 2 + 6 * struct.unpack_from(">H", data, end)[0]
        entries.append(data[at:end])
        at = end
    assert at == pos + size, "the senc holds more than its entries"
    return entries


def iv_size(name: str) -> int:
    return 8 if name.startswith("enc_") else 16  # ffmpeg's cenc IVs; cbcsgen's per-sample ones


def test_the_inputs_are_what_they_say(media):
    clear = packets(media / "clear.mp4", key=False)
    assert len(clear) > 400  # 10 s of AAC
    for name in READABLE:
        assert packets(media / name) == clear != packets(media / name, key=False), name
    for name in READABLE + CBCS_CHUNKS:
        stbl = _stbl_boxes((media / name).read_bytes())
        assert (b"senc" in stbl) == ("enc_" in name or "_senc_" in name), name
        assert (b"sbgp" in stbl) and b"saio" in stbl and b"saiz" in stbl, name
    for name in ("enc_first.mp4", "cbcs_senc_first.mp4"):  # each sample an IV of its own
        entries = senc_entries((media / name).read_bytes(), iv_size(name))
        assert len({e[: iv_size(name)] for e in entries}) == len(entries) == len(clear)


@pytest.mark.parametrize("name", READABLE)
def test_a_cut_plays_from_start_to_end(media, tmp_path, name):
    data = (media / name).read_bytes()
    out, warnings = core_cut(data, SeekRange(START, END, True))
    assert warnings == []
    path = tmp_path / name
    path.write_bytes(out)
    assert [s["codec_type"] for s in streams(path)] == ["audio"]
    ours, theirs = packets(path), packets(media / name)
    first = run_of(ours, theirs)
    assert_holds_3_to_6_s(first, len(ours))
    assert decrypt_errors(path) == ""
    decoded, reference = pcm(path), pcm(media / name, (START / 1000, END / 1000))
    assert 0 <= len(decoded) - len(reference) < 1024  # starts at 3 s to the sample, ends within a frame of 6 s
    assert max(abs(a - b) for a, b in zip(decoded, reference)) <= 1
    # Every kept sample has its own aux information, as saio finds it (and as senc holds it).
    pairs_out, pairs_in = cbcsgen.audio_samples_with_aux(out), cbcsgen.audio_samples_with_aux(data)
    at = run_of(pairs_out, pairs_in)
    assert len(pairs_out) == len(ours)
    if b"senc" in _stbl_boxes(data):
        assert senc_entries(out, iv_size(name)) == senc_entries(data, iv_size(name))[at : at + len(pairs_out)]
    # Key rotation's groups: the sbgp is cut with the samples, the sgpd descriptions stay.
    if name.startswith("cbcs_"):
        assert seig_of_samples(out) == seig_of_samples(data)[at : at + len(pairs_out)]
        assert set(seig_of_samples(out)) == {1, 2}  # the KID changes at 5 s, inside the cut


FRAME = 1024 / 44100  # AAC at 44.1 kHz


def assert_holds_3_to_6_s(first: int, count: int) -> None:
    """Packets [first, first + count) of the input: from a short pre-roll (200 ms at most, hidden by the
    edit list) before the frame holding 3 s to the frame holding 6 s (the input's first packet is its
    priming frame, at -1 frame)."""
    start_frame, end_frame = int(3.0 / FRAME) + 1, int(6.0 / FRAME) + 1
    assert start_frame - 0.2 / FRAME - 2 <= first <= start_frame, first
    assert end_frame - 1 <= first + count - 1 <= end_frame + 1, (first, count)


def seig_of_samples(data: bytes) -> list[int]:
    """The seig group description index of each audio sample (the sbgp of grouping type seig, beside
    the roll group's)."""
    pos, header, size = _stbl_boxes(data)[b"stsd"]
    stbl_end = max(p + s for p, h, s in _stbl_boxes(data).values())
    for kind, pos, header, size in boxes(data, pos, stbl_end):
        if kind == b"sbgp" and data[pos + header + 4 : pos + header + 8] == b"seig":
            count = struct.unpack_from(">I", data, pos + header + 8)[0]
            runs = struct.unpack_from(f">{2 * count}I", data, pos + header + 12)
            return [g for n, g in zip(runs[0::2], runs[1::2]) for _ in range(n)]
    raise AssertionError("no seig sbgp")


@pytest.mark.parametrize("name", CBCS_CHUNKS)
def test_aux_blocks_before_each_chunk_are_cut_with_them(media, name):
    """One aux block a chunk (ffmpeg cannot read these): each kept chunk's new saio offset points at its
    kept samples' aux information, and the mdat holds nothing else (our walker; no decrypting judge)."""
    data = (media / name).read_bytes()
    out, warnings = core_cut(data, SeekRange(START, END, True))
    assert warnings == []
    pairs_out, pairs_in = cbcsgen.audio_samples_with_aux(out), cbcsgen.audio_samples_with_aux(data)
    at = run_of(pairs_out, pairs_in)
    assert_holds_3_to_6_s(at, len(pairs_out))
    assert seig_of_samples(out) == seig_of_samples(data)[at : at + len(pairs_out)]
    saio = _stbl_boxes(out)[b"saio"]
    chunks = struct.unpack_from(">I", out, _stbl_boxes(out)[b"stco"][0] + 12)[0]
    assert struct.unpack_from(">I", out, saio[0] + 12)[0] == chunks > 1  # one block a kept chunk
    mdat = next((p, h, s) for k, p, h, s in boxes(out) if k == b"mdat")
    assert mdat[2] - mdat[1] == sum(len(aux) + len(sample) for aux, sample in pairs_out)


@pytest.mark.parametrize("name", ["enc_first.mp4", "cbcs_senc_end.mp4", "cbcs_chunks_first.mp4"])
def test_end_past_the_last_sample_is_to_the_end_and_start_past_the_duration_is_refused(media, name):
    data = (media / name).read_bytes()
    to_end, _ = core_cut(data, SeekRange(START, 60_000, True))
    assert to_end == core_cut(data, SeekRange(START, None, True))[0]
    pairs_out, pairs_in = cbcsgen.audio_samples_with_aux(to_end), cbcsgen.audio_samples_with_aux(data)
    assert pairs_in[-len(pairs_out) :] == pairs_out
    with pytest.raises(UnsupportedInput, match="start 60 s is past the audio's duration"):
        core_cut(data, SeekRange(60_000, None, True))


@pytest.mark.parametrize("name", FFMPEG_FILES)
def test_plain_seeking_cuts_the_encrypted_video_with_its_subsamples(media, tmp_path, name):
    """The CDN's plain video seeking (video kept): ffmpeg's video track is encrypted with subsamples
    (senc flag 2). Both tracks start at the keyframe at 2 s (GOP of 2 s) and, decrypted, are contiguous
    runs of the input's packets that decode cleanly."""
    def plain_cut(source, path):
        x = AudioExtractor(keep_video=True, mp4_seek=SeekRange(3300, END, True), spool_factory=TempFileSpool,
                           max_spool=1 << 30)
        data = source.read_bytes()
        path.write_bytes(b"".join(map(bytes, x.feed(data) + x.finish())))
        assert x.warnings == []

    path, clear = tmp_path / name, tmp_path / "clear.mp4"
    plain_cut(media / name, path)
    plain_cut(media / "clear.mp4", clear)  # the reference: the same cut of the clear file
    for stream in ("v", "a"):
        ours, theirs = stream_packets(path, stream), stream_packets(media / name, stream)
        first = run_of(ours, theirs)
        assert stream_packets(clear, stream) == theirs[first : first + len(ours)]
        if stream == "v":
            assert first == 50  # 25 fps: the 2.0 s keyframe
    r = run("ffmpeg", "-v", "error", "-xerror", "-decryption_key", KEY, "-i", str(path), "-f", "null", "-")
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def stream_packets(path, stream: str) -> list[tuple[str, str]]:
    r = subprocess.run(["ffmpeg", "-v", "error", "-decryption_key", KEY, "-i", str(path), "-map", f"0:{stream}", "-c",
                        "copy", "-f", "framemd5", "-"], capture_output=True, check=True)
    return [tuple(f.strip() for f in line.split(",")[4:6]) for line in r.stdout.decode().splitlines()
            if not line.startswith("#")]


# -- through mitmdump ----------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("options", [(), STREAM_PATH], ids=["file", "stream"])
def test_cuts_through_mitmdump(media, tmp_path, options):
    """The file path (an origin that serves ranges): each cut is the core's, and any range of it is
    that slice of its whole GET; the stream path (moov at the end, read after the mdat): the core's."""
    from origin import Origin
    server = Origin(media).start()
    proxy = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{server.url}", *options)
    names = ["enc_end.mp4", "cbcs_chunks_end.mp4"] if options else READABLE + CBCS_CHUNKS
    try:
        for name in names:
            query = f"/{name}?ali_audio_only=1&start=3&end=6"
            whole = http_get(proxy.port, query)
            assert whole.status == 200 and whole.clean, (name, whole.status)
            assert whole.body == core_cut((media / name).read_bytes(), SeekRange(START, END, True))[0], name
            if not options:
                n = len(whole.body)
                assert int(whole.headers["content-length"]) == n
                assert whole.headers["etag"].endswith(f'-audio-{START}-{END}"'), whole.headers["etag"]
                for first, last in ((0, 0), (0, n // 2), (n // 3, n - 1), (n - 100, n - 1), (777, 778)):
                    part = http_get(proxy.port, query, headers={"Range": f"bytes={first}-{last}"})
                    assert part.status == 206 and part.body == whole.body[first : last + 1], (name, first, last)
            path = tmp_path / name
            path.write_bytes(whole.body)
            if name in READABLE:
                run_of(packets(path), packets(media / name))
                assert decrypt_errors(path) == ""
        past = http_get(proxy.port, "/enc_first.mp4?ali_audio_only=1&start=60")
        if not options:
            assert past.status == 400 and past.clean
        log = proxy.log()
    finally:
        proxy.stop()
        server.shutdown()
    assert "whole audio" not in log


# -- fuzzing the cut of aux information ---------------------------------------------------------------

from functools import cache  # noqa: E402

from hypothesis import event, given, settings, strategies as st  # noqa: E402

from extractor import ExtractError  # noqa: E402
from helpers import MEDIA  # noqa: E402

EXTREMES = [0, 1, 2, 8, 16, 255, 1000, 0x7FFFFFFF, 0xFFFFFFFF]
SEED_NAMES = ["ffmpeg cenc", "cbcs senc", "cbcs one block", "cbcs chunk blocks"]


@cache
def fuzz_seeds() -> tuple[bytes, ...]:
    """h264_aac.mp4 (6 s) encrypted: by ffmpeg (cenc, moov first) and by cbcsgen (the video's bytes
    replaced by VIDEO...: a leak shows) in its three aux layouts."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "enc.mp4"
        r = run("ffmpeg", "-v", "error", "-i", str(MEDIA / "h264_aac.mp4"), "-c", "copy", "-encryption_scheme",
                "cenc-aes-ctr", "-encryption_key", KEY, "-encryption_kid", KID, "-movflags", "+faststart", str(path))
        assert r.returncode == 0, r.stderr
        encrypted = path.read_bytes()
    clear = (MEDIA / "h264_aac.mp4").read_bytes()
    return (encrypted, cbcsgen.encrypt(clear, False, aux="senc", mark_video=True),
            cbcsgen.encrypt(clear, False, mark_video=True), cbcsgen.encrypt(clear, True, mark_video=True))


def cut_or_error(data: bytes, seek: SeekRange) -> bytes | None:
    x = AudioExtractor(mp4_seek=seek, spool_factory=TempFileSpool, max_spool=1 << 24)
    try:
        out = b"".join(map(bytes, x.feed(data) + x.finish()))
    except ExtractError:
        return None
    finally:
        x.close()
    assert len(out) <= len(data) + 64  # bounded: never more than the input and rewritten headers
    return out


seeks = st.builds(lambda start, end: SeekRange(start, end, True), st.integers(0, 7000), st.none() | st.integers(0, 8000))


@settings(deadline=None)
@given(st.integers(0, 3), st.sampled_from([b"senc", b"saiz", b"saio", b"sbgp", b"sgpd", b"stsz", b"stsc", b"stts"]),
       st.integers(0, 3), st.integers(0, 28), st.sampled_from(EXTREMES), seeks)
def test_cutting_mutated_encrypted_files(seed, kind, which, field, value, seek):
    """A field of an aux or sample table (of the audio or the video trak) set to an extreme, then cut:
    a clean ExtractError or an output; never another exception, and never a video byte."""
    data = bytearray(fuzz_seeds()[seed])
    found = box_types_at(seed, kind)
    if not found:
        return
    at = found[which % len(found)] + 4
    data[at + field : at + field + 4] = value.to_bytes(4, "big")[: max(0, len(data) - at - field)]
    out = cut_or_error(bytes(data[: len(fuzz_seeds()[seed])]), seek)
    event("an error" if out is None else "an output")
    if out is not None and seed:
        assert b"VIDEO" not in out


@cache
def box_types_at(seed: int, kind: bytes) -> list[int]:
    """Where the four-character code `kind` lies in the seed's moov (a hostile-input builder: a search,
    not a walk)."""
    data = fuzz_seeds()[seed]
    moov = next((p, s) for k, p, h, s in boxes(data) if k == b"moov")
    found, at = [], data.find(kind, moov[0], moov[0] + moov[1])
    while at >= 0:
        found.append(at)
        at = data.find(kind, at + 1, moov[0] + moov[1])
    return found


def ivs_by_sample(data: bytes, size: int) -> dict[bytes, bytes]:
    """Each audio sample's bytes -> its senc entry's IV (sample bytes are unique: they are encrypted)."""
    samples = [sample for _, sample in cbcsgen.audio_samples_with_aux(data)]
    entries = senc_entries(data, size)
    assert len(entries) == len(samples)
    return dict(zip(samples, (e[:size] for e in entries)))


@settings(deadline=None)
@given(st.integers(0, 1), seeks)
def test_every_kept_sample_keeps_its_own_iv(seed, seek):
    """Clean inputs, random start and end: each sample of the cut has, in the output's senc, the IV its
    input sample had (and through saio, its whole aux information); start past the 6 s is refused."""
    data = fuzz_seeds()[seed]
    size = 8 if seed == 0 else 16
    out = cut_or_error(data, seek)
    if out is None:
        with pytest.raises(UnsupportedInput, match="past the audio's duration"):
            core_cut(data, seek)
        assert seek.start >= 5900
        return
    theirs = ivs_by_sample(data, size)
    assert len(theirs) == len(cbcsgen.audio_samples_with_aux(data))  # no two samples alike
    ours = ivs_by_sample(out, size)
    assert ours and all(theirs[sample] == iv for sample, iv in ours.items())
    pairs_in = cbcsgen.audio_samples_with_aux(data)
    run_of(cbcsgen.audio_samples_with_aux(out), pairs_in)


def test_the_fuzz_seeds_are_what_they_say():
    for name, data in zip(SEED_NAMES, fuzz_seeds()):
        stbl = _stbl_boxes(data)
        assert b"saio" in stbl and b"saiz" in stbl and (b"senc" in stbl) == ("senc" in name or "ffmpeg" in name), name
        assert len(cbcsgen.audio_samples_with_aux(data)) > 250, name


# -- Chromium ------------------------------------------------------------------------------------------

DURATION = """async (url) => {
  const a = document.createElement('audio');
  a.preload = 'metadata';
  document.body.appendChild(a);
  a.src = url;
  const how = await Promise.race([new Promise(ok => a.onloadedmetadata = () => ok('metadata')),
                                  new Promise(ok => a.onerror = () => ok('error ' + (a.error && a.error.message))),
                                  new Promise(ok => setTimeout(() => ok('timeout'), 10000))]);
  return {how, duration: a.duration};
}"""


@pytest.mark.e2e
def test_chromium_reports_the_cuts_duration(media, tmp_path):
    """Headless Chromium's <audio> (no key: reading the duration needs none) through mitmdump's file
    path: 3 s for the cut, 10 s for the whole audio. (With ClearKey, Chromium decrypts no progressive
    MP4 given as src=, not even the input: its playback is judged by ffmpeg above. Its FFmpeg demuxer
    cannot open aux blocks one a chunk, as ffmpeg cannot, so those are not asked.)"""
    from browser import chromium
    from origin import Origin
    server = Origin(media).start()
    proxy = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{server.url}")
    found = {}
    try:
        with chromium() as page:
            page.goto(f"http://127.0.0.1:{proxy.port}/no-such-page")  # an http://127.0.0.1 page: a secure context
            for name in ("enc_end.mp4", "enc_first.mp4", "cbcs_senc_first.mp4", "cbcs_one_end.mp4"):
                for query in ("ali_audio_only=1&start=3&end=6", "ali_audio_only=1"):
                    found[name, query] = page.evaluate(DURATION, f"http://127.0.0.1:{proxy.port}/{name}?{query}")
    finally:
        proxy.stop()
        server.shutdown()
    for (name, query), result in found.items():
        assert result["how"] == "metadata", (name, query, result)
        assert result["duration"] == pytest.approx(3.0 if "start" in query else 10.0, abs=0.03), (name, query, result)
