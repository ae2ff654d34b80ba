"""Seeking fragmented and encrypted MP4 (issue 31): the regressions of its review, one test each.

Inputs: a 12 s clear file (H.264 and AAC, ffmpeg) and its audio encrypted by Shaka Packager (cenc, one
fragment and fragments of 1 s), rewritten here into layouts the tools do not write (PIFF's senc in a
uuid box, a senc with a 64-bit header, fragments whose decode times do not start at 0). The kept
samples' aux information is read by the tests' own walker, through saio (where a reader finds it),
never by slicing senc the way the product does; the media is judged by ffmpeg.
"""

from __future__ import annotations

import array
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import extractor
from extractor import AudioExtractor, ExtractError, SeekRange
from helpers import run
from mp4tools import box, boxes, trafs
from test_cenc import KEY, KID, packager
from test_seek_fragmented import file_bytes, file_plan, shaka_decrypted

PIFF_SENC = bytes.fromhex("a2394f525a9b4f14a2446c427c648df4")
TFXD = bytes.fromhex("6d1d9b0542d544e680e2141daff757b2")
DECRYPT = ["-decryption_key", KEY]
CUT = SeekRange(3000, 6000, True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seek_review")
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=12", "-f", "lavfi",
        "-i", "aevalsrc=0.5*sin(2*PI*(300+40*t)*t):s=44100:d=12", "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
        "-preset", "veryfast", "-g", "25", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart",
        str(folder / "source.mp4")).check_returncode()
    for name, more in (("cenc_one.mp4", ["--segment_duration", "20"]),
                       ("cenc_1s.mp4", ["--fragment_duration", "1", "--segment_duration", "1"])):
        run(packager(), f"in={folder / 'source.mp4'},stream=audio,output={folder / name}", "--enable_raw_key_encryption",
            "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme", "cenc", "--clear_lead", "0",
            *more).check_returncode()
    run("ffmpeg", "-v", "error", "-y", "-i", str(folder / "source.mp4"), "-c", "copy", "-movflags",
        "frag_keyframe+empty_moov+default_base_moof", str(folder / "moof_base.mp4")).check_returncode()
    # Fragments packaged from a TS keep its clock: Shaka's first tfdt is the TS's first PTS (21.4 s here).
    run("ffmpeg", "-v", "error", "-y", "-i", str(folder / "source.mp4"), "-c", "copy", "-output_ts_offset", "20",
        str(folder / "source.ts")).check_returncode()
    run(packager(), f"in={folder / 'source.ts'},stream=audio,output={folder / 'from_ts.mp4'}", "--fragment_duration", "1",
        "--segment_duration", "1").check_returncode()
    return folder


def streamed(data: bytes, seek: SeekRange | None, piece: int = 8192) -> tuple[bytes, list[str]]:
    x = AudioExtractor(mp4_seek=seek)
    out = []
    for i in range(0, len(data), piece):
        out += x.feed(data[i : i + piece])
    out += x.finish()
    return b"".join(map(bytes, out)), x.warnings


def both_paths(data: bytes, seek: SeekRange) -> bytes:
    """The stream path's cut, checked to be the file path's too, neither with a warning."""
    out, warnings = streamed(data, seek)
    plan = file_plan(data, seek)
    assert warnings == [] and plan.warnings == []
    assert plan.size == len(out) and file_bytes(data, plan) == out
    return out


def packets(path, decryption: list[str] = ()) -> list[str]:
    """Each audio packet's md5 (encrypted as it is, or decrypted by ffmpeg)."""
    r = subprocess.run(["ffmpeg", "-v", "error", *decryption, "-i", str(path), "-map", "0:a", "-c", "copy", "-f",
                        "framemd5", "-"], capture_output=True, check=True)
    return [line.split(",")[5].strip() for line in r.stdout.decode().splitlines() if not line.startswith("#")]


# -- rewriting Shaka's fragments ------------------------------------------------------------------------

def rebuild_trafs(data: bytes, traf_fn) -> bytes:
    """Each moof with its trafs' children replaced by traf_fn([(type, bytes)]); trun data offsets (every
    input here is default-base-is-moof) moved by the moof's change in size, and each saio set to name its
    traf's senc entries (senc or PIFF's uuid senc) in the new moof. A sidx goes (its sizes would be wrong)."""
    out = []
    for kind, pos, header, size in boxes(data):
        if kind == b"sidx":
            continue
        if kind != b"moof":
            out.append(data[pos : pos + size])
            continue
        parts = []
        for k, p, h, s in boxes(data, pos + header, pos + size):
            kids = [(kk, data[pp : pp + ss]) for kk, pp, _, ss in boxes(data, p + h, p + s)] if k == b"traf" else None
            parts.append((k, traf_fn(kids) if kids is not None else data[p : p + s]))
        moof = bytearray(box(b"moof", b"".join(box(b"traf", b"".join(x for _, x in v)) if k == b"traf" else v
                                               for k, v in parts)))
        delta = len(moof) - size
        for k, p, h, s in boxes(moof, 8, len(moof)):
            if k != b"traf":
                continue
            inner = list(boxes(moof, p + h, p + s))
            entries = next((pp + hh + (16 if kk == b"uuid" else 0) + 8 for kk, pp, hh, ss in inner
                            if kk == b"senc" or (kk == b"uuid" and moof[pp + 8 : pp + 24] == PIFF_SENC)), None)
            for kk, pp, hh, ss in inner:
                if kk == b"trun" and struct.unpack_from(">I", moof, pp + hh)[0] & 1:
                    struct.pack_into(">i", moof, pp + hh + 8, struct.unpack_from(">i", moof, pp + hh + 8)[0] + delta)
                if kk == b"saio" and entries is not None:  # (several offsets keep their distances from the first)
                    version, flags = moof[pp + hh], int.from_bytes(moof[pp + hh + 1 : pp + hh + 4], "big")
                    at = pp + hh + 8 + (8 if flags & 1 else 0)
                    code = f">{int.from_bytes(moof[at - 4 : at], 'big')}{'Q' if version else 'I'}"
                    offsets = struct.unpack_from(code, moof, at)
                    struct.pack_into(code, moof, at, *(entries + o - offsets[0] for o in offsets))
        out.append(bytes(moof))
    return b"".join(out)


def to_piff(data: bytes, keep_saio: bool) -> bytes:
    """senc turned into PIFF's senc (a uuid box); without saiz and saio as Smooth Streaming writes it,
    where a tfxd (the fragment's time) rides along."""
    def traf(kids):
        out = []
        for kind, x in kids:
            if kind in (b"saiz", b"saio") and not keep_saio:
                continue
            if kind == b"senc":
                kind, x = b"uuid", struct.pack(">I4s", len(x) + 16, b"uuid") + PIFF_SENC + x[8:]
            out.append((kind, x))
        if not keep_saio:
            out.append((b"uuid", struct.pack(">I4s", 36, b"uuid") + TFXD + struct.pack(">IQ", 0x01000000, 123456789)[:12]))
        return out
    return rebuild_trafs(data, traf)


def as_senc(data: bytes) -> bytes:
    """PIFF's senc back into a senc box (no saiz, no saio): what ffmpeg decrypts."""
    def traf(kids):
        return [(b"senc", box(b"senc", x[24:])) if k == b"uuid" and x[8:24] == PIFF_SENC else (k, x)
                for k, x in kids if k not in (b"saiz", b"saio")]
    return rebuild_trafs(data, traf)


def aux_by_sample(data: bytes, iv_size: int = 8) -> list[bytes]:
    """Every audio sample's aux information in file order, as a reader finds it: through saio and saiz
    where the traf has them (saio counts from the moof: every traf here is default-base-is-moof), else
    entry i of the senc (or PIFF's senc) for sample i; each traf's entry count checked against its trun."""
    found = []
    for pos, p, h, s in trafs(data):
        inner = {(kk if kk != b"uuid" else data[pp + 8 : pp + 24]): (pp + hh, pp + ss)
                 for kk, pp, hh, ss in boxes(data, p + h, p + s)}
        samples = sum(int.from_bytes(data[a + 4 : a + 8], "big") for kk, pp, hh, ss in boxes(data, p + h, p + s)
                      if kk == b"trun" for a in [pp + hh])
        senc = inner.get(b"senc") or inner.get(PIFF_SENC)
        if senc is None:
            continue
        if PIFF_SENC in inner:
            senc = (senc[0] + 16, senc[1])
        assert int.from_bytes(data[senc[0] + 4 : senc[0] + 8], "big") == samples
        if b"saio" in inner:
            a = inner[b"saiz"][0]
            at = a + 4 + (8 if data[a + 3] & 1 else 0)
            sizes = [data[at]] * samples if data[at] else list(data[at + 5 : at + 5 + samples])
            o = inner[b"saio"][0]
            at = o + 8 + (8 if data[o + 3] & 1 else 0)
            count = int.from_bytes(data[at - 4 : at], "big")
            offsets = struct.unpack_from(f">{count}{'Q' if data[o] else 'I'}", data, at)
            # one offset for the traf, or one a trun (each for that trun's samples)
            runs = [samples] if count == 1 else [int.from_bytes(data[pp + hh + 4 : pp + hh + 8], "big")
                                                  for kk, pp, hh, ss in boxes(data, p + h, p + s) if kk == b"trun"]
            assert len(runs) == count
            i = 0
            for offset, run in zip(offsets, runs):
                position = pos + offset
                for n in sizes[i : i + run]:
                    found.append(data[position : position + n])
                    position += n
                i += run
        else:
            assert not data[senc[0] + 3] & 2
            position = senc[0] + 8
            for _ in range(samples):
                found.append(data[position : position + iv_size])
                position += iv_size
    return found


# -- 1: PIFF's senc -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep_saio", [False, True], ids=["smooth", "saio"])
def test_piff_senc_is_cut_with_the_samples(media, tmp_path, keep_saio):
    piff = to_piff((media / "cenc_one.mp4").read_bytes(), keep_saio)
    source = tmp_path / "piff.mp4"
    source.write_bytes(piff)
    out = both_paths(piff, CUT)
    path = tmp_path / "cut.mp4"
    path.write_bytes(out)
    theirs, ours = packets(source), packets(path)  # encrypted packets: the cut's are a run of the input's
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours and 3 * 44100 / 1024 < len(ours) < 6 * 44100 / 1024
    assert aux_by_sample(out) == aux_by_sample(piff)[first : first + len(ours)]
    assert TFXD not in out  # the uncut fragment's time goes
    # ffmpeg decrypts the cut read as a PIFF reader reads it: each sample with its own IV.
    readable = tmp_path / "readable.mp4"
    readable.write_bytes(as_senc(out))
    clear = packets(media / "source.mp4")
    decrypted = packets(readable, DECRYPT)
    assert clear[first : first + len(ours)] == decrypted


def test_piff_senc_too_short_for_its_override_fields_is_a_clean_error(media):
    piff = to_piff((media / "cenc_one.mp4").read_bytes(), False)
    at = piff.index(PIFF_SENC) + 16
    broken = bytearray(piff)
    broken[at + 3] |= 1  # override flag: 20 more bytes before the count, which a short box lacks
    size = struct.unpack_from(">I", broken, at - 24)[0]
    # shrink the box to its version/flags and 4 bytes, then pad after it with a free box of the same length
    struct.pack_into(">I", broken, at - 24, 24 + 8)
    struct.pack_into(">I4s", broken, at + 8, size - 32, b"free")
    with pytest.raises(ExtractError):
        streamed(bytes(broken), CUT)


# -- 3: fragments whose decode times do not start at 0 ------------------------------------------------------

PREROLL = 9  # frames: 200 ms of 1024-sample frames at 44.1 kHz (cut.py's rule)


def first_packet_of_ffmpeg_seek(path, seconds: float) -> int:
    """The index of the input packet ffmpeg's -ss starts from (the reference: -ss counts from the file's
    first sample, whatever its decode time)."""
    everything = packets(path)
    r = subprocess.run(["ffmpeg", "-v", "error", "-ss", str(seconds), "-i", str(path), "-map", "0:a", "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, check=True)
    first = next(line for line in r.stdout.decode().splitlines() if not line.startswith("#"))
    return everything.index(first.split(",")[5].strip())


def elst_media_times(data: bytes) -> list[int]:
    at, found = 0, []
    while (at := data.find(b"elst", at + 1)) > 0:
        version = data[at + 4]
        found.append(struct.unpack_from(">q" if version else ">i", data, at + 12 + (8 if version else 4))[0])
    return found


def test_a_cut_of_fragments_packaged_from_a_ts_counts_from_its_first_sample(media, tmp_path):
    source = media / "from_ts.mp4"
    data = source.read_bytes()
    tfdt = data.index(b"tfdt")
    assert struct.unpack_from(">Q", data, tfdt + 8)[0] > 20 * 44100  # the input is what it says
    path = tmp_path / "cut.mp4"
    path.write_bytes(both_paths(data, CUT))
    theirs, ours = packets(source), packets(path)
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours
    assert first == first_packet_of_ffmpeg_seek(source, 3.0) - PREROLL
    assert 3 * 44100 / 1024 < len(ours) <= 3 * 44100 / 1024 + PREROLL + 3
    assert all(0 <= t < 44100 for t in elst_media_times(path.read_bytes()))  # the pre-roll and a frame at most
    # to the end: from the same packet, every packet after it
    path.write_bytes(both_paths(data, SeekRange(3000, None, True)))
    assert packets(path) == theirs[first:]


def shifted(data: bytes, seconds: int) -> bytes:
    """ffmpeg's fragments (video 12800, audio 44100 units a second) with every tfdt moved by `seconds`."""
    rates = {1: 12800, 2: 44100}

    def traf(kids):
        track = struct.unpack_from(">I", next(x for k, x in kids if k == b"tfhd"), 12)[0]
        out = []
        for kind, x in kids:
            if kind == b"tfdt":
                time = struct.unpack_from(">Q" if x[8] else ">I", x, 12)[0] + seconds * rates[track]
                x = box(b"tfdt", struct.pack(">IQ", 0x01000000, time))
            out.append((kind, x))
        return out
    return rebuild_trafs(data, traf)


@pytest.mark.parametrize("seek", [CUT, SeekRange(3000, None, True), SeekRange(11000, 15000, True)],
                         ids=["3-6", "3-", "11-15"])
def test_a_cut_of_fragments_that_begin_later_is_the_cut_of_those_that_begin_at_0(media, seek):
    data = (media / "moof_base.mp4").read_bytes()  # (shifted by 0: the same rewrite, tfdt version 1 too)
    assert both_paths(shifted(data, 10), seek) == both_paths(shifted(data, 0), seek)


# -- 2: a senc with a 64-bit header ---------------------------------------------------------------------------

def widened(data: bytes) -> bytes:
    """Every senc with a 64-bit (largesize) header, saio naming its first entry (legal, if rare)."""
    return rebuild_trafs(data, lambda kids: [(k, struct.pack(">I4sQ", 1, b"senc", len(x) + 8) + x[8:]) if k == b"senc"
                                             else (k, x) for k, x in kids])


@pytest.mark.parametrize("name", ["cenc_one.mp4", "cenc_1s.mp4"])
def test_saio_names_the_first_kept_entry_of_a_senc_that_had_a_64_bit_header(media, tmp_path, name):
    wide = widened((media / name).read_bytes())
    assert b"\x00\x00\x00\x01senc" in wide
    source = tmp_path / "wide.mp4"
    source.write_bytes(wide)
    out = both_paths(wide, CUT)
    path = tmp_path / "cut.mp4"
    path.write_bytes(out)
    # Each sample's IV is its own (cenc's counter): the cut's, read through saio, are a run of the input's.
    theirs, ours = aux_by_sample(wide), aux_by_sample(out)
    assert theirs == aux_by_sample((media / name).read_bytes())  # the input is what it says
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours and 3 * 44100 / 1024 < len(ours) <= 3 * 44100 / 1024 + PREROLL + 3
    if name == "cenc_one.mp4":  # (ffmpeg 5.1 reads encrypted fragments past the first only through a sidx)
        assert packets(source)[first : first + len(ours)] == packets(path)


# -- 4: a trun that claims more samples than a cut expands ----------------------------------------------------

HUGE_COUNT_CUT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a cut that expands the claim dies here
sys.path[:0] = sys.argv[3:]
from extractor import ExtractError, SeekRange
from test_seek_fragmented import file_plan, streamed
data, seek = open(sys.argv[2], "rb").read(), SeekRange(3000, 6000, True)
try:
    streamed(data, seek) if sys.argv[1] == "stream" else file_plan(data, seek)
except ExtractError as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize("count", [0x7FFFFFFF, 30_000_000])
def test_a_trun_that_claims_millions_of_samples_without_fields_is_refused_before_they_are_listed(media, tmp_path, count):
    def traf(kids):
        tfhd = next(x for k, x in kids if k == b"tfhd")
        if struct.unpack_from(">I", tfhd, 12)[0] != 2:  # the audio track
            return kids
        # default-base-is-moof, a default duration and size: the trun's 12 bytes claim `count` samples
        return [(k, box(b"tfhd", struct.pack(">IIII", 0x020018, 2, 1024, 0)) if k == b"tfhd" else
                 box(b"trun", struct.pack(">IIi", 1, count, 0)) if k == b"trun" else x) for k, x in kids]
    path = tmp_path / "huge.mp4"
    path.write_bytes(rebuild_trafs((media / "moof_base.mp4").read_bytes(), traf))
    root = str(Path(extractor.__file__).parents[1])
    for which in ("stream", "file"):
        r = run(sys.executable, "-c", HUGE_COUNT_CUT, which, str(path), root, str(Path(__file__).parent))
        assert r.returncode == 0, r.stderr[-500:]
        assert r.stdout.decode().startswith(f"SeekNotPossible the fragment at byte"), r.stdout
        assert f"claims {count} audio samples" in r.stdout.decode()


# -- 5: the pre-roll's usual frame in one pass ------------------------------------------------------------------

def test_a_first_traf_whose_samples_all_differ_in_duration_is_cut_in_linear_time(media):
    """40,000 samples of as many durations (320 KB of trun): the usual frame duration was found in
    quadratic time (17 s of CPU on the team machine); in one pass, well under a second."""
    count, done = 40_000, []

    def traf(kids):
        tfhd = next(x for k, x in kids if k == b"tfhd")
        if struct.unpack_from(">I", tfhd, 12)[0] != 2 or done:
            return kids
        done.append(True)
        table = array.array("I", [v for i in range(count) for v in (i + 1, 0)])  # duration i + 1, size 0
        table.byteswap()
        return [(k, box(b"trun", struct.pack(">IIi", 0x301, count, struct.unpack_from(">i", x, 16)[0]) + table.tobytes())
                 if k == b"trun" else x) for k, x in kids]  # (its data offset: rebuild_trafs moves it)
    data = rebuild_trafs((media / "moof_base.mp4").read_bytes(), traf)
    began = time.process_time()
    out, warnings = streamed(data, CUT)
    assert time.process_time() - began < 3 and warnings == [] and b"moof" in out


# -- 6: boxes held between fragments for a cut ------------------------------------------------------------------

EMSG = box(b"emsg", bytes(4) + b"urn:x\0" + b"v\0" + bytes(16) + bytes(1024 - 36))  # 1 KiB, version 0


def test_boxes_after_the_last_fragment_of_a_cut_are_not_held(media):
    import tracemalloc
    data = (media / "moof_base.mp4").read_bytes()
    x = AudioExtractor(mp4_seek=CUT)
    out = x.feed(data)
    tracemalloc.start()
    try:
        for _ in range(32):  # 32 MiB of emsg after the last fragment of the cut
            out += x.feed(EMSG * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out += x.finish()
    assert peak < 4 << 20, peak
    assert b"".join(map(bytes, out)) == both_paths(data, CUT)  # (none of them goes out: no fragment follows)


def test_boxes_held_between_fragments_for_a_cut_are_bounded_by_max_header(media):
    data = (media / "moof_base.mp4").read_bytes()
    moofs = [pos for kind, pos, _, _ in boxes(data) if kind == b"moof"]
    spliced = data[: moofs[4]] + EMSG * 3072 + data[moofs[4] :]  # 3 MiB before the fifth fragment (4-5 s)
    x = AudioExtractor(mp4_seek=CUT, max_header=2 << 20)
    with pytest.raises(ExtractError, match="boxes between two fragments held for a cut"):
        for i in range(0, len(spliced), 1 << 16):
            x.feed(spliced[i : i + (1 << 16)])
        x.finish()
    # uncut they stream through, and the same boxes within the limit go out with their fragment
    out, warnings = streamed(spliced, None)
    assert warnings == [] and out.count(EMSG) == 3072
    x = AudioExtractor(mp4_seek=CUT, max_header=4 << 20)
    assert b"".join(map(bytes, x.feed(spliced) + x.finish())).count(EMSG) == 3072


# -- 7: a version 1 tfdt or mehd with a version 0 body ---------------------------------------------------------

def short_tfdt(data: bytes) -> bytes:
    """Each traf's tfdt version 1 with a 32-bit time (8 bytes of payload), last in its traf."""
    def traf(kids):
        tfdt = next(x for k, x in kids if k == b"tfdt")
        time = struct.unpack_from(">Q" if tfdt[8] else ">I", tfdt, 12)[0]
        return [(k, x) for k, x in kids if k != b"tfdt"] + [(b"tfdt", box(b"tfdt", struct.pack(">II", 0x01000000, time)))]
    return rebuild_trafs(data, traf)


def short_mehd(data: bytes) -> bytes:
    """The mehd version 1 with a 32-bit duration, last in the mvex, the mvex last in the moov."""
    _, at, header, size = next(b for b in boxes(data) if b[0] == b"moov")
    kids = [(k, data[p : p + s]) for k, p, h, s in boxes(data, at + header, at + size)]
    mvex = next(x for k, x in kids if k == b"mvex")
    inner = [(k, mvex[p : p + s]) for k, p, h, s in boxes(mvex, 8, len(mvex))]
    mehd = next(x for k, x in inner if k == b"mehd")
    duration = struct.unpack_from(">Q" if mehd[8] else ">I", mehd, 12)[0]
    mvex = box(b"mvex", b"".join(x for k, x in inner if k != b"mehd") + box(b"mehd", struct.pack(">II", 0x01000000, duration)))
    return data[:at] + box(b"moov", b"".join(x for k, x in kids if k != b"mvex") + mvex) + data[at + size :]


@pytest.mark.parametrize("case", ["tfdt", "mehd"])
@pytest.mark.parametrize("path", ["stream", "file"])
def test_a_version_1_tfdt_or_mehd_too_short_for_its_time_is_a_clean_error(media, case, path):
    data = (short_tfdt((media / "moof_base.mp4").read_bytes()) if case == "tfdt"
            else short_mehd((media / "cenc_1s.mp4").read_bytes()))
    seeks = [CUT] + ([None] if case == "tfdt" and path == "file" else [])  # (the file path reads tfdt to index)
    for seek in seeks:
        with pytest.raises(ExtractError, match=f"{case} at byte .* holds 8 bytes, its version 1 needs 12"):
            if path == "stream":
                streamed(data, seek)
            else:
                file_bytes(data, file_plan(data, seek))


# -- 8: end past the last sample, no mehd ----------------------------------------------------------------------

def durations_in_seconds(data: bytes) -> dict[str, float]:
    """mvhd's duration and the audio tkhd's, in seconds (the tests' own walk of the moov)."""
    _, at, header, size = next(b for b in boxes(data) if b[0] == b"moov")
    mvhd = data.index(b"mvhd", at)
    version = data[mvhd + 4]
    timescale, duration = struct.unpack_from(">IQ" if version else ">II", data, mvhd + 4 + (20 if version else 12))
    tkhd = data.index(b"tkhd", at)
    track = struct.unpack_from(">Q" if data[tkhd + 4] else ">I", data, tkhd + 4 + (28 if data[tkhd + 4] else 20))[0]
    return {"mvhd": duration / timescale, "tkhd": track / timescale}


def test_end_past_the_last_sample_without_mehd_does_not_claim_the_time_asked(media):
    data = (media / "moof_base.mp4").read_bytes()
    assert b"mehd" not in data  # ffmpeg's empty_moov: the end is not known before the last fragment
    out = both_paths(data, SeekRange(9000, 60_000, True))  # 3.04 s of audio after 9 s
    assert durations_in_seconds(out) == {"mvhd": 0, "tkhd": 0}  # unknown, as the input says
    # within the audio the edit list still ends the cut at `end`: ffmpeg plays 3 s
    out = both_paths(data, CUT)
    assert durations_in_seconds(out) == {"mvhd": 0, "tkhd": 0}
    elst = out.index(b"elst")
    assert struct.unpack_from(">Q", out, elst + 12)[0] == 3000  # movie timescale 1000: end - start


def test_end_past_the_last_sample_with_mehd_says_the_audio_there(media):
    data = (media / "cenc_1s.mp4").read_bytes()
    assert b"mehd" in data
    durations = durations_in_seconds(both_paths(data, SeekRange(9000, 60_000, True)))
    assert 2.9 < durations["mvhd"] == durations["tkhd"] < 3.1  # mehd's 12.02 s less 9


# -- 9: plain video seeking of a fragmented file -------------------------------------------------------------

def test_plain_video_seeking_of_a_fragmented_file_says_the_whole_file_is_sent(media, tmp_path):
    source = media / "moof_base.mp4"
    x = AudioExtractor(keep_video=True, mp4_seek=CUT)
    path = tmp_path / "plain.mp4"
    path.write_bytes(b"".join(map(bytes, x.feed(source.read_bytes()) + x.finish())))
    assert x.warnings == ["plain video seeking of a fragmented MP4 is not supported: the whole file is sent"]
    for stream in ("v", "a"):  # and it is: every packet of both tracks
        r = [subprocess.run(["ffmpeg", "-v", "error", "-i", str(p), "-map", f"0:{stream}", "-c", "copy", "-f", "framemd5",
                             "-"], capture_output=True, check=True).stdout.splitlines()[-1] for p in (path, source)]
        assert r[0] == r[1]
    assert packets(path) == packets(source)


# -- 10: saiz against the subsample counts; a saio offset a trun -------------------------------------------------

def with_subsamples(data: bytes, saiz_in_wrong_order: bool = False) -> bytes:
    """Shaka's cenc (one fragment) with subsample maps: each entry the sample's IV and one or two
    subsamples (0 clear bytes, then protected), alternately; saiz sizes each entry (or, wrong, each
    pair of entries' sizes swapped: the same total, each sample sliced at another's size)."""
    def traf(kids):
        found = dict(kids)
        trun = found[b"trun"]
        flags, n = struct.unpack_from(">II", trun, 8)
        fields = bin(flags & 0xF00).count("1")
        at = 16 + (4 if flags & 1 else 0) + (4 if flags & 4 else 0) + (4 if flags & 0x100 else 0)
        sizes = [struct.unpack_from(">I", trun, at + 4 * fields * i)[0] for i in range(n)]
        senc = found[b"senc"]
        assert struct.unpack_from(">I", senc, 12)[0] == n and (len(senc) - 16) == 8 * n
        entries = []
        for i, size in enumerate(sizes):
            parts = [size] if i % 2 else [size // 2, size - size // 2]
            entries.append(senc[16 + 8 * i : 24 + 8 * i] + struct.pack(">H", len(parts))
                           + b"".join(struct.pack(">HI", 0, part) for part in parts))
        aux = [len(e) for e in entries]
        if saiz_in_wrong_order:
            aux[0 : n - n % 2 : 2], aux[1 : n - n % 2 : 2] = aux[1 : n - n % 2 : 2], aux[0 : n - n % 2 : 2]
        new = {b"senc": box(b"senc", struct.pack(">II", 2, n) + b"".join(entries)),
               b"saiz": box(b"saiz", struct.pack(">IBI", 0, 0, n) + bytes(aux))}
        return [(k, new.get(k, x)) for k, x in kids]
    return rebuild_trafs(data, traf)


def test_saiz_sizes_that_disagree_with_the_entries_subsample_counts_are_refused(media, tmp_path):
    data = (media / "cenc_one.mp4").read_bytes()
    good = with_subsamples(data)
    source, path = tmp_path / "subsamples.mp4", tmp_path / "cut.mp4"
    source.write_bytes(good)
    path.write_bytes(both_paths(good, CUT))  # the input is what it says: ffmpeg decrypts the cut
    clear = packets(media / "source.mp4")
    decrypted = packets(path, DECRYPT)
    first = clear.index(decrypted[0])
    assert clear[first : first + len(decrypted)] == decrypted
    bad = with_subsamples(data, saiz_in_wrong_order=True)
    for cut in (lambda: streamed(bad, CUT), lambda: file_plan(bad, CUT)):
        with pytest.raises(ExtractError, match="sample 0's entry is 16 bytes by saiz, its subsample count says otherwise"):
            cut()


def split_trun(data: bytes, at: int) -> bytes:
    """Each traf's trun split in two at sample `at` (the second with its own data offset) and the saio
    giving one offset a trun, each naming that trun's first entry in the senc (ISO 23001-7 allows it)."""
    def traf(kids):
        out = []
        aux_sizes = None
        for kind, x in kids:
            if kind == b"saiz":
                n = struct.unpack_from(">I", x, 13)[0]
                aux_sizes = [x[12]] * n if x[12] else list(x[17 : 17 + n])
        for kind, x in kids:
            if kind == b"trun":
                flags, n, offset = struct.unpack_from(">IIi", x, 8)
                assert flags & 0xFFFFFF == 0x301  # data offset, per-sample duration and size
                table = [struct.unpack_from(">II", x, 20 + 8 * i) for i in range(n)]
                second = offset + sum(size for _, size in table[:at])
                for first, count, rows in ((offset, at, table[:at]), (second, n - at, table[at:])):
                    out.append((kind, box(b"trun", struct.pack(">IIi", flags, count, first)
                                          + b"".join(struct.pack(">II", *row) for row in rows))))
            elif kind == b"saio":
                assert x[8] == 0 and not x[11] & 1  # version 0, no aux_info_type
                out.append((kind, box(b"saio", struct.pack(">IIII", 0, 2, 0, sum(aux_sizes[:at])))))
            else:
                out.append((kind, x))
        return out
    return rebuild_trafs(data, traf)


@pytest.mark.parametrize("at", [200, 100], ids=["runs-both-kept", "first-run-dropped"])
def test_a_saio_with_an_offset_a_trun_is_cut_with_its_runs(media, tmp_path, at):
    data = split_trun((media / "cenc_one.mp4").read_bytes(), at)
    source, path = tmp_path / "split.mp4", tmp_path / "cut.mp4"
    source.write_bytes(data)
    out = both_paths(data, CUT)
    path.write_bytes(out)
    theirs, ours = aux_by_sample(data), aux_by_sample(out)
    assert theirs == aux_by_sample((media / "cenc_one.mp4").read_bytes())  # the input is what it says
    first = theirs.index(ours[0])
    assert theirs[first : first + len(ours)] == ours and 3 * 44100 / 1024 < len(ours) <= 3 * 44100 / 1024 + PREROLL + 3
    assert out.count(b"trun") == (2 if first < at else 1)
    # decrypted by Shaka Packager (ffmpeg 5.1 reads no saio of several offsets), the cut is the clear run
    clear = packets(media / "source.mp4")
    assert clear[first : first + len(ours)] == packets(shaka_decrypted(path, tmp_path))


def test_a_saio_whose_offsets_are_not_at_its_truns_first_entries_is_refused_clearly(media):
    data = bytearray(split_trun((media / "cenc_one.mp4").read_bytes(), 200))
    saio = data.index(b"saio")
    struct.pack_into(">I", data, saio + 16, struct.unpack_from(">I", data, saio + 16)[0] + 8)  # the second, a sample late
    for cut in (lambda: streamed(bytes(data), CUT), lambda: file_plan(bytes(data), CUT)):
        with pytest.raises(ExtractError, match="has 2 offsets for 2 truns, not at their first samples' entries"):
            cut()
