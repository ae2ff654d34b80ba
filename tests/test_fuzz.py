"""Any input ends in output or an error of our hierarchy: never another exception, hang or blow-up."""

import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from extractor import AudioExtractor, ExtractError, SeekRange
from extractor.spool import TempFileSpool
from flvgen import METADATA, amf_string, flv, small_flv, tag
from helpers import MEDIA, ROOT
from mp4tools import CONTAINERS, boxes

SEED = small_flv()
REAL_HEAD = (MEDIA / "h264_aac_keyframes.flv").read_bytes()[:6000]


def run_core(data: bytes, pieces: list[int], max_header: int = 1 << 16) -> bytes:
    x = AudioExtractor(max_header=max_header, spool_factory=TempFileSpool, max_spool=1 << 24)
    out, pos = [], 0
    try:
        for n in pieces or [len(data)]:
            out += x.feed(data[pos : pos + n])
            pos += n
        out += x.feed(data[pos:])
        out += x.finish()
    except ExtractError:
        pass
    finally:
        x.close()
    out = b"".join(out)
    # Memory and work stay bounded: the output never outgrows the input plus rewritten headers.
    assert len(out) <= len(data) + 64
    return out


def no_video_in(out: bytes) -> None:
    """Whatever came out before an error holds no video tag: walk the complete tags."""
    if len(out) < 13:
        return
    pos = 13
    while pos + 11 <= len(out):
        assert out[pos] & 0x1F in (8, 18), f"tag type {out[pos]} at {pos}"
        pos += 11 + int.from_bytes(out[pos + 1 : pos + 4], "big") + 4


splits = st.lists(st.integers(min_value=1, max_value=300), max_size=8)


@settings(deadline=None)
@given(st.binary(max_size=2000), splits)
def test_random_bytes(data, pieces):
    run_core(data, pieces)
    run_core(b"FLV\x01\x05\x00\x00\x00\x09" + data, pieces)


@settings(deadline=None)
@given(st.sampled_from([SEED, REAL_HEAD]), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       st.integers(0, 10**6), splits)
def test_mutated_files(seed, flips, cut, pieces):
    data = bytearray(seed)
    for where, value in flips:
        data[where % len(data)] = value
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    no_video_in(run_core(data, pieces))


@settings(deadline=None)
@given(st.binary(max_size=300), st.integers(0, 0xFFFFFF))
def test_hostile_metadata(payload, claimed):
    """Script tags with random AMF0 and sizes that lie."""
    body = amf_string("onMetaData") + payload
    data = flv(tag(18, body), tag(8, b"\xaf\x01abc"))
    run_core(data, [])
    lying = bytearray(flv(tag(18, METADATA), tag(8, b"\xaf\x01abc")))
    lying[14:17] = claimed.to_bytes(3, "big")
    no_video_in(run_core(bytes(lying), [7, 100]))


TINY_MP4 = (MEDIA / "tiny.mp4").read_bytes()
EXTREMES_CENC = [0, 1, 2, 16, 255, 0x7FFFFFFF, 0xFFFFFFFF]
MOOV_END = TINY_MP4.index(b"mdat") - 4


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, MOOV_END - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(TINY_MP4)), splits)
def test_mutated_mp4_moov(flips, cut, pieces):
    """Flip bytes where the structure lives (box sizes, counts, offsets), then maybe cut the file."""
    data = bytearray(TINY_MP4)
    for where, value in flips:
        data[where] = value
    run_core(bytes(data[: max(1, cut)]), pieces)


TINY_CENC = (MEDIA / "tiny_cenc.mp4").read_bytes()


@settings(deadline=None)
@given(st.sampled_from([b"saio", b"senc", b"saiz"]), st.integers(0, 1), st.integers(0, 40), st.sampled_from(EXTREMES_CENC),
       splits)
def test_hostile_encryption_tables(kind, which, field, value, pieces):
    """saio counts and offsets, senc sample counts, saiz sizes set to extremes (in the audio or the
    video trak): a clear error or output, never a crash, and never a video byte."""
    data = bytearray(TINY_CENC)
    at = [m for m in range(len(data)) if data[m : m + 4] == kind][which % 2] + 4  # the box's payload
    data[at + field : at + field + 4] = value.to_bytes(4, "big")
    run_core(bytes(data), pieces)


def _encrypted_fragments() -> bytes:
    from test_cenc import encrypt_fragments
    return encrypt_fragments((MEDIA / "frag_moof_base.mp4").read_bytes(), subsamples=True)


FRAG_CENC = _encrypted_fragments()


@settings(deadline=None)
@given(st.sampled_from([b"saio", b"senc", b"saiz"]), st.integers(0, 7), st.integers(0, 24), st.sampled_from(EXTREMES_CENC),
       splits)
def test_hostile_fragment_encryption_tables(kind, which, field, value, pieces):
    """In the moofs: saio counts and offsets, senc sample counts that disagree with trun, saiz sizes at
    extremes: a clear error or output, never a crash, and never a video byte."""
    data = bytearray(FRAG_CENC)
    found = [m for m in range(len(data)) if data[m : m + 4] == kind]
    at = found[which % len(found)] + 4
    data[at + field : at + field + 4] = value.to_bytes(4, "big")
    run_core(bytes(data), pieces)


def _cbcs(per_chunk: bool) -> bytes:
    import cbcsgen
    return cbcsgen.encrypt((MEDIA / "h264_aac.mp4").read_bytes(), per_chunk, mark_video=True)


CBCS_IN_MDAT = [_cbcs(False), _cbcs(True)]


@settings(deadline=None)
@given(st.integers(0, 1), st.sampled_from([b"saio", b"saiz", b"stsz", b"stsc"]), st.integers(0, 2), st.integers(0, 24),
       st.sampled_from(EXTREMES_CENC + [8, 1000, 4096]), splits)
def test_hostile_aux_info_in_the_media_data(layout, kind, which, field, value, pieces):
    """cbcs with the aux information in the mdat (one block, or one a chunk): saio counts and offsets
    (pointing into video, past the end, into the moov), saiz sizes and counts, and the chunk tables
    they are read with, set to extremes: a clear error or output, never a crash, and no video byte."""
    data = bytearray(CBCS_IN_MDAT[layout])
    found = [m for m in range(len(data)) if data[m : m + 4] == kind]
    at = found[which % len(found)] + 4
    data[at + field : at + field + 4] = value.to_bytes(4, "big")
    out = run_core(bytes(data), pieces)
    assert b"VIDEO" not in out


def test_the_aux_info_fuzz_seeds_carry_their_audio():
    """The seeds above give their whole audio untouched (the fuzz starts from a working file)."""
    from cbcsgen import audio_samples_with_aux
    for data in CBCS_IN_MDAT:
        out = run_core(data, [])
        assert audio_samples_with_aux(out) == audio_samples_with_aux(data)
        assert b"VIDEO" in data and b"VIDEO" not in out


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"ftyp", b"moov", b"trak", b"mdat", b"free", b"uuid", b"stco"]),
                          st.sampled_from([0, 1, 7, 8, 16, 24, 100, 2**32 - 1]), st.binary(max_size=40)),
                max_size=6), splits)
def test_random_box_trees(items, pieces):
    """Boxes with any size field (0 = to the end, 1 = largesize) and any payload."""
    data = b"".join(struct.pack(">I4s", size, kind) + payload for kind, size, payload in items)
    run_core(data, pieces)


def _mp4_headers(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[tuple[int, int]]:
    """(offset, size) of every box header, through the containers, by the tests' own walker."""
    out = []
    for kind, pos, header, size in boxes(data, start, end):
        out.append((pos, size))
        if kind in CONTAINERS | {b"moof", b"traf", b"mvex", b"edts", b"dinf"} and depth < 6:
            out += _mp4_headers(data, pos + header, min(pos + size, len(data)), depth + 1)
    return out


def _flv_headers(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every FLV tag (header and data, without the PreviousTagSize)."""
    out, pos = [], 13
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big") + 11
        out.append((pos, size))
        pos += size + 4
    return out


STRUCTURED = {
    "mp4": ((MEDIA / "frag_moof_base.mp4").read_bytes(), _mp4_headers),
    "moov_end": ((MEDIA / "moov_end.mp4").read_bytes(), _mp4_headers),
    "cenc": ((MEDIA / "tiny_cenc.mp4").read_bytes(), _mp4_headers),  # senc, saiz, saio in each stbl
    "flv": ((MEDIA / "h264_aac.flv").read_bytes()[:20000], _flv_headers),
}
EXTREMES = [0, 1, 7, 8, 9, 15, 16, 17, 0x7FFFFFFF, 0xFFFFFFFF]


@given(st.sampled_from(sorted(STRUCTURED)),
       st.lists(st.tuples(st.sampled_from(["size", "grow", "shrink", "duplicate", "remove"]), st.integers(0, 10**6),
                          st.sampled_from(EXTREMES)), min_size=1, max_size=4),
       st.integers(0, 10**7), splits)
def test_structure_aware_mutations(kind, mutations, cut, pieces):
    """Sizes set to extremes or off by one, structures duplicated or removed, then maybe truncated."""
    data, walk = STRUCTURED[kind]
    data = bytearray(data)
    for op, which, value in mutations:
        headers = walk(bytes(data))
        if not headers:
            break
        pos, size = headers[which % len(headers)]
        field = pos if kind != "flv" else pos + 1
        if op == "size":
            data[field : field + (4 if kind != "flv" else 3)] = (value & (0xFFFFFFFF if kind != "flv" else 0xFFFFFF)).to_bytes(
                4 if kind != "flv" else 3, "big")
        elif op in ("grow", "shrink"):
            width = 4 if kind != "flv" else 3
            old = int.from_bytes(data[field : field + width], "big")
            data[field : field + width] = ((old + (1 if op == "grow" else -1)) % (1 << (8 * width))).to_bytes(width, "big")
        elif op == "duplicate":
            span = size + (4 if kind == "flv" else 0)
            data[pos:pos] = data[pos : pos + span]
        else:
            del data[pos : pos + size + (4 if kind == "flv" else 0)]
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    out = run_core(data, pieces)
    if kind == "flv":
        no_video_in(out)


CORPUS = sorted((MEDIA.parent / "fuzz-corpus").iterdir())


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_fuzz_corpus_replays(path):
    """The seeds of scripts/fuzz, and any crasher it ever finds, saved beside them."""
    data = path.read_bytes()
    for piece in (1, 7, 4096):
        run_core(data, [piece] * (len(data) // piece + 1))


def test_coverage_guided_fuzzing_briefly():
    """atheris (libFuzzer) for 15 s from the corpus: any crash, hang or memory blow-up fails it."""
    r = subprocess.run([str(ROOT / "scripts" / "fuzz"), "15"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Done" in r.stderr and "number_of_executed_units" in r.stderr


@given(st.lists(st.tuples(st.integers(0, MOOV_END - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, 8000), st.one_of(st.none(), st.integers(0, 8000)), st.booleans())
def test_mutated_mp4_with_seeking(flips, start, end, keep_video):
    """The seek paths (tables cut, edit lists, keyframes) on broken moovs: output or our error."""
    data = bytearray(TINY_MP4)
    for where, value in flips:
        data[where] = value
    x = AudioExtractor(mp4_seek=SeekRange(start, end, True), keep_video=keep_video)
    try:
        b"".join(x.feed(bytes(data)) + x.finish())
    except ExtractError:
        pass
