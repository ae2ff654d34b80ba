"""Encrypted audio (CENC) passes through: the key is never needed, the samples are copied as they are,
and the sample auxiliary information (IVs, in a senc box ffmpeg writes inside stbl) moves with the
new moov: saio's offset is rewritten. Judged by ffmpeg: the audio-only output decrypted with the key
gives the same audio packets (framemd5) as the clear file; and by a walker of our own here (not the
product's) that reads the aux info each saio points at, in the input and in the output."""

from __future__ import annotations

import struct
import subprocess

import pytest

from helpers import MEDIA, ROOT, STREAM_PATH, Proxy, http_get, run, streams
from mp4tools import boxes

KEY = "00112233445566778899aabbccddeeff"
KID = "0123456789abcdef0123456789abcdef"
CLI = [str(ROOT / ".venv" / "bin" / "python"), "-m", "extractor"]


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    """h264_aac.mp4 encrypted by ffmpeg (cenc-aes-ctr), with the moov at the end and first."""
    folder = tmp_path_factory.mktemp("cenc")
    for name, flags in (("enc_end.mp4", []), ("enc_first.mp4", ["-movflags", "+faststart"])):
        run("ffmpeg", "-v", "error", "-y", "-i", str(MEDIA / "h264_aac.mp4"), "-c", "copy", "-encryption_scheme",
            "cenc-aes-ctr", "-encryption_key", KEY, "-encryption_kid", KID, *flags, str(folder / name))
    return folder


def decrypted_packets(path) -> list[str]:
    r = subprocess.run(["ffmpeg", "-v", "error", "-decryption_key", KEY, "-i", str(path), "-map", "0:a", "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, check=True)
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def clear_packets() -> list[str]:
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(MEDIA / "h264_aac.mp4"), "-map", "0:a", "-c", "copy",
                        "-f", "framemd5", "-"], capture_output=True, check=True)
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def audio_aux(data: bytes) -> tuple[bytes, bytes]:
    """(saiz payload, the aux info bytes saio points at to the end of their senc) of the audio trak."""
    def find(start, end, kind):
        return next(((pos, header, size) for k, pos, header, size in boxes(data, start, end) if k == kind), None)

    moov = find(0, len(data), b"moov")
    for kind, pos, header, size in boxes(data, moov[0] + moov[1], moov[0] + moov[2]):
        if kind != b"trak":
            continue
        box = (pos, header, size)
        for path in (b"mdia", b"minf", b"stbl"):
            box = find(box[0] + box[1], box[0] + box[2], path)
        stbl_start, stbl_end = box[0] + box[1], box[0] + box[2]
        handler_box = find(pos + header, pos + size, b"mdia")
        hdlr = find(handler_box[0] + handler_box[1], handler_box[0] + handler_box[2], b"hdlr")
        if data[hdlr[0] + 16 : hdlr[0] + 20] != b"soun":
            continue
        saio = find(stbl_start, stbl_end, b"saio")
        saiz = find(stbl_start, stbl_end, b"saiz")
        senc = find(stbl_start, stbl_end, b"senc")
        p = data[saio[0] + 8 : saio[0] + saio[2]]
        offset = struct.unpack_from(">Q" if p[0] else ">I", p, 8 if not (int.from_bytes(p[1:4], "big") & 1) else 16)[0]
        assert senc[0] <= offset < senc[0] + senc[2]
        return data[saiz[0] + 8 : saiz[0] + saiz[2]], data[offset : senc[0] + senc[2]]
    raise AssertionError("no audio trak")


@pytest.mark.parametrize("name", ["enc_end.mp4", "enc_first.mp4"])
def test_the_cli_keeps_encrypted_audio_decryptable(encrypted, tmp_path, name):
    out = tmp_path / "audio.mp4"
    r = subprocess.run(CLI + [str(encrypted / name), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert [s["codec_type"] for s in streams(out)] == ["audio"]
    assert decrypted_packets(out) == clear_packets()
    # The aux info each saio points at is the input's, byte for byte (IVs and subsamples, every sample).
    assert audio_aux(out.read_bytes()) == audio_aux((encrypted / name).read_bytes())


def through_mitmdump(folder, names: list[str], tmp_path, options) -> tuple[dict, str]:
    """({name: the audio-only reply}, the proxy's log) for files of `folder` served by a test origin."""
    from origin import Origin
    origin = Origin(folder).start()
    proxy = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{origin.url}", *options)
    try:
        return {name: http_get(proxy.port, f"/{name}?ali_audio_only=1") for name in names}, proxy.log()
    finally:
        proxy.stop()
        origin.shutdown()


@pytest.mark.parametrize("options", [(), STREAM_PATH], ids=["file", "stream"])
@pytest.mark.parametrize("name", ["enc_end.mp4", "enc_first.mp4"])
def test_through_mitmdump(encrypted, tmp_path, name, options):
    reply = through_mitmdump(encrypted, [name], tmp_path, options)[0][name]
    assert reply.status == 200 and reply.clean
    out = tmp_path / "audio.mp4"
    out.write_bytes(reply.body)
    assert decrypted_packets(out) == clear_packets()
    assert audio_aux(reply.body) == audio_aux((encrypted / name).read_bytes())


def test_check_names_the_scheme_the_key_id_and_the_drm_systems(tmp_path):
    """`check` on an encrypted file: the scheme and default key ID of each track, the pssh systems by name."""
    data = (MEDIA / "tiny_cenc.mp4").read_bytes()
    widevine = bytes.fromhex("edef8ba979d64acea3c827dcd51d21ed")
    pssh = struct.pack(">I4sI", 32, b"pssh", 0) + widevine + struct.pack(">I", 0)  # no key IDs, no data
    moov = data.index(b"moov") - 4
    size = int.from_bytes(data[moov : moov + 4], "big")
    # A pssh appended inside the moov (the chunk offsets are then off: only the description is judged).
    with_pssh = data[:moov] + (size + len(pssh)).to_bytes(4, "big") + data[moov + 4 : moov + size] + pssh + data[moov + size :]
    path = tmp_path / "pssh.mp4"
    path.write_bytes(with_pssh)
    r = subprocess.run(CLI + ["check", str(path)], cwd=ROOT, capture_output=True)
    text = r.stdout.decode()
    assert f"audio enca 0.52 s (encrypted: cenc, key ID {KID})" in text, text
    assert "pssh: Widevine (kept)" in text, text


# -- fragmented: senc, saiz, saio (and seig groups) in each traf ----------------------------------------

SEIG = b"\x00\x01\x08" + bytes.fromhex(KID)  # isProtected 1, IV size 8, a key ID: key rotation's sample group


def _full(kind: bytes, version_flags: int, payload: bytes) -> bytes:
    return struct.pack(">I4sI", 12 + len(payload), kind, version_flags) + payload


def _children(data: bytes, start: int, end: int):
    return [(kind, pos, header, size) for kind, pos, header, size in boxes(data, start, end)]


def encrypt_fragments(data: bytes, subsamples: bool) -> bytes:
    """The fragmented file with every traf given the aux info of an encrypted track: a senc of known
    IVs (track, fragment and sample number; with subsamples when asked, as cbcs video and audio may
    have), its saiz, a saio pointing at the senc's first IV (from the moof), and for track 2 (audio) a
    seig sample group. Trun data offsets (from the moof: default-base-is-moof) are moved by what the
    moof grew; mfra (its offsets stale) is dropped. The samples themselves are not encrypted: the
    product never looks at them."""
    out, fragment = [], 0
    for kind, pos, header, size in _children(data, 0, len(data)):
        box = data[pos : pos + size]
        if kind == b"mfra":
            continue
        if kind != b"moof":
            out.append(box)
            continue
        fragment += 1
        parts = []
        for k, p, h, s in _children(box, 8, len(box)):
            if k != b"traf":
                parts.append(box[p : p + s])
                continue
            inner = _children(box, p + h, p + s)
            track = struct.unpack_from(">I", box, next(q for kk, q, hh, ss in inner if kk == b"tfhd") + 12)[0]
            count = sum(struct.unpack_from(">I", box, q + 12)[0] for kk, q, hh, ss in inner if kk == b"trun")
            ivs = [bytes([track, fragment, i % 256, i // 256]) * 2 for i in range(count)]
            entries = [iv + (struct.pack(">HHI", 1, 16, 100 + i) if subsamples else b"") for i, iv in enumerate(ivs)]
            senc = _full(b"senc", 2 if subsamples else 0, struct.pack(">I", count) + b"".join(entries))
            saiz = _full(b"saiz", 0, struct.pack(">BI", len(entries[0]) if entries else 8, count))
            saio = _full(b"saio", 0, struct.pack(">II", 1, 0))  # the offset is filled in below
            seig = _full(b"sgpd", 1 << 24, b"seig" + struct.pack(">II", len(SEIG), 1) + SEIG) + \
                _full(b"sbgp", 0, b"seig" + struct.pack(">III", 1, count, 65537)) if track == 2 else b""
            body = b"".join(box[q : q + ss] for kk, q, hh, ss in inner) + saiz + saio + senc + seig
            parts.append(struct.pack(">I4s", 8 + len(body), b"traf") + body)
        new = bytearray(struct.pack(">I4s", 8 + sum(map(len, parts)), b"moof") + b"".join(parts))
        grown = len(new) - len(box)
        for k, p, h, s in _children(bytes(new), 8, len(new)):  # trun offsets, then saio -> its senc
            if k != b"traf":
                continue
            inner = _children(bytes(new), p + h, p + s)
            for kk, q, hh, ss in inner:
                if kk == b"trun" and struct.unpack_from(">I", new, q + 8)[0] & 1:
                    struct.pack_into(">i", new, q + 16, struct.unpack_from(">i", new, q + 16)[0] + grown)
            senc_at = next(q for kk, q, hh, ss in inner if kk == b"senc")
            saio_at = next(q for kk, q, hh, ss in inner if kk == b"saio")
            struct.pack_into(">I", new, saio_at + 16, senc_at + 16)  # the first IV, counted from the moof
        out.append(bytes(new))
    return b"".join(out)


def fragment_aux(data: bytes, track: int) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """For each fragment of `track`: (senc payload, saiz payload, the aux bytes saio points at, seig
    groups), read by this walker (not the product's)."""
    found = []
    for kind, pos, header, size in _children(data, 0, len(data)):
        if kind != b"moof":
            continue
        for k, p, h, s in _children(data, pos + header, pos + size):
            inner = {kk: (q, hh, ss) for kk, q, hh, ss in _children(data, p + h, p + s)}
            if k != b"traf" or struct.unpack_from(">I", data, inner[b"tfhd"][0] + 12)[0] != track:
                continue
            payload = {kk: data[q + hh : q + ss] for kk, (q, hh, ss) in inner.items()}
            offset = pos + struct.unpack_from(">I", payload[b"saio"], 8)[0]
            length = payload[b"saiz"][4] * struct.unpack_from(">I", payload[b"saiz"], 5)[0]
            found.append((payload[b"senc"], payload[b"saiz"], data[offset : offset + length],
                          payload.get(b"sgpd", b"") + payload.get(b"sbgp", b"")))
    return found


@pytest.mark.parametrize("subsamples", [False, True], ids=["cenc-like", "cbcs-like subsamples"])
def test_fragmented_aux_info_follows_each_kept_traf(tmp_path, subsamples):
    from helpers import extract
    data = encrypt_fragments((MEDIA / "frag_moof_base.mp4").read_bytes(), subsamples)
    out = extract(data)
    audio_in, video_in = fragment_aux(data, 2), fragment_aux(data, 1)
    assert audio_in and video_in and all(aux[3] for aux in audio_in)  # the test input is what it says
    assert fragment_aux(out, 2) == audio_in  # every senc entry, saiz size, resolved saio and seig group
    assert fragment_aux(out, 1) == []  # the video's went with it
    path = tmp_path / "audio.mp4"
    path.write_bytes(out)
    assert [s["codec_type"] for s in streams(path)] == ["audio"]


# -- cbcs, with the aux information in the media data ---------------------------------------------------

CBCS_FILES = [f"cbcs_{aux}_{layout}.mp4" for aux in ("one", "chunks") for layout in ("first", "end")]


@pytest.fixture(scope="module")
def cbcs(tmp_path_factory):
    """h264_aac.mp4 with its audio encrypted cbcs (tests/cbcsgen.py), the aux info in the mdat: one
    block for the track (ffmpeg reads that) or one before each audio chunk (ffmpeg refuses: "Multiple
    auxiliary info chunks are not supported"), moov first and at the end."""
    import cbcsgen
    folder = tmp_path_factory.mktemp("cbcs")
    clear = (MEDIA / "h264_aac.mp4").read_bytes()
    for name in CBCS_FILES:
        (folder / name).write_bytes(cbcsgen.encrypt(clear, per_chunk="chunks" in name, moov_first="first" in name))
    return folder


def cbcs_packets(path, key: bool = True) -> list[str]:
    import cbcsgen
    r = subprocess.run(["ffmpeg", "-v", "error", *(["-decryption_key", cbcsgen.KEY.hex()] if key else []), "-i", str(path),
                        "-map", "0:a", "-c", "copy", "-f", "framemd5", "-"], capture_output=True, check=True)
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def assert_cbcs_audio_only(out: bytes, source, tmp_path) -> None:
    """The output's audio samples and their aux information are the input's, sample for sample (our
    walker); its mdat holds nothing else; ffmpeg decrypts it to the clear audio where it can read it."""
    from cbcsgen import audio_samples_with_aux
    original = audio_samples_with_aux(source.read_bytes())
    assert audio_samples_with_aux(out) == original
    assert seig_boxes(out) == seig_boxes(source.read_bytes()) != b""  # key rotation's groups
    mdat = next((pos, header, size) for kind, pos, header, size in boxes(out) if kind == b"mdat")
    assert mdat[2] - mdat[1] == sum(len(aux) + len(sample) for aux, sample in original)  # no video byte
    if "_one_" in source.name:
        path = tmp_path / "audio.mp4"
        path.write_bytes(out)
        assert [s["codec_type"] for s in streams(path)] == ["audio"]
        assert cbcs_packets(path) == clear_packets()


def seig_boxes(data: bytes) -> bytes:
    """The sgpd and sbgp boxes of type seig, as the file holds them."""
    found = []
    for kind in (b"sgpd", b"sbgp"):
        at = data.find(kind)
        while at >= 0:
            size = struct.unpack_from(">I", data, at - 4)[0]
            if data[at + 8 : at + 12] == b"seig":
                found.append(data[at - 4 : at - 4 + size])
            at = data.find(kind, at + 1)
    return b"".join(found)


def test_the_cbcs_inputs_are_what_they_say(cbcs):
    from cbcsgen import audio_samples_with_aux
    for name in CBCS_FILES:
        found = audio_samples_with_aux((cbcs / name).read_bytes())
        assert len(found) == len(clear_packets()) and {len(aux) for aux, _ in found} == {8, 14}  # saiz per sample
        if "_one_" in name:  # ffmpeg decrypts them to the clear audio; without the key they differ
            assert cbcs_packets(cbcs / name) == clear_packets() != cbcs_packets(cbcs / name, key=False)


@pytest.mark.parametrize("name", CBCS_FILES)
def test_the_cli_carries_aux_info_from_the_media_data(cbcs, tmp_path, name):
    out = tmp_path / "out.mp4"
    r = subprocess.run(CLI + [str(cbcs / name), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert_cbcs_audio_only(out.read_bytes(), cbcs / name, tmp_path)


@pytest.mark.parametrize("options", [(), STREAM_PATH], ids=["file", "stream"])
def test_cbcs_through_mitmdump(cbcs, tmp_path, options):
    replies, served = through_mitmdump(cbcs, CBCS_FILES, tmp_path, options)
    for name, reply in replies.items():
        assert reply.status == 200 and reply.clean, (name, reply.status)
        assert_cbcs_audio_only(reply.body, cbcs / name, tmp_path)
    assert served.count(" file: " if not options else " stream: ") == len(CBCS_FILES), served


def test_aux_info_over_a_video_chunk_is_refused(cbcs):
    """A saio pointing into a video chunk: those bytes would go out as aux information. Refused."""
    from extractor import ExtractError
    from helpers import extract
    data = bytearray((cbcs / "cbcs_chunks_first.mp4").read_bytes())
    video_chunk = struct.unpack_from(">I", data, data.index(b"stco") + 12)[0]  # the first trak is the video
    saio = data.index(b"saio")
    struct.pack_into(">I", data, saio + 12, video_chunk + 3)
    with pytest.raises(ExtractError, match="overlaps a chunk of another track"):
        extract(bytes(data))


def test_several_aux_info_types_in_a_track_are_refused(cbcs):
    """A second saiz/saio pair (another aux_info_type, flags 1): which saiz pairs with which saio is
    not carried yet, so the file is refused rather than given a saio that points at the wrong bytes."""
    from extractor import ExtractError
    from helpers import extract
    data = (cbcs / "cbcs_chunks_first.mp4").read_bytes()
    extra = _full(b"saiz", 1, b"xtra" + bytes(4) + struct.pack(">BI", 0, 0)) + _full(b"saio", 1, b"xtra" + bytes(4) + struct.pack(">II", 1, 0))
    saio = data.index(b"saio") - 4
    end = saio + struct.unpack_from(">I", data, saio)[0]
    grown = bytearray(data[:end] + extra + data[end:])
    for kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):  # the containers around the audio's stbl grow
        at = max(m for m in range(saio) if grown[m : m + 4] == kind) - 4
        struct.pack_into(">I", grown, at, struct.unpack_from(">I", grown, at)[0] + len(extra))
    with pytest.raises(ExtractError, match="several saio boxes"):
        extract(bytes(grown))


def aux_plan(chunk: int, offsets: list[int], aux_sizes: list[int], saio: bytes):
    """plan() of a moov of one audio track (one sample a chunk of `chunk` bytes at `offsets`, saiz
    sizes `aux_sizes`, the saio given): only the moov exists, planning needs no media."""
    from extractor.mp4.boxes import Box
    from extractor.mp4.plan import plan
    from mp4tools import box
    n = len(offsets)
    saiz = struct.pack(">BI", aux_sizes[0], n) if len(set(aux_sizes)) == 1 else struct.pack(">BI", 0, n) + bytes(aux_sizes)
    stbl = box(b"stbl", _full(b"stsd", 0, struct.pack(">I", 0)) + _full(b"stsz", 0, struct.pack(">II", chunk, n))
               + _full(b"stsc", 0, struct.pack(">IIII", 1, 1, 1, 1))
               + _full(b"co64", 0, struct.pack(f">I{n}Q", n, *offsets)) + _full(b"saiz", 0, saiz) + saio)
    tkhd = _full(b"tkhd", 0, struct.pack(">IIII", 0, 0, 1, 0) + struct.pack(">I", 5000) + bytes(60))
    hdlr = _full(b"hdlr", 0, bytes(4) + b"soun" + bytes(13))
    moov = box(b"moov", _full(b"mvhd", 0, struct.pack(">IIII", 0, 0, 1000, 5000) + bytes(80))
               + box(b"trak", tkhd + box(b"mdia", hdlr + box(b"minf", stbl))))
    ftyp = box(b"ftyp", b"isom" + bytes(4))
    return plan(ftyp, moov, Box(b"moov", 0, 8, len(moov)), moov_offset=len(ftyp))


def saio_offsets(head: bytes) -> tuple[int, list[int]]:
    at = head.index(b"saio") - 4
    count = struct.unpack_from(">I", head, at + 12)[0]
    return head[at + 8], list(struct.unpack_from(f">{count}{'Q' if head[at + 8] else 'I'}", head, at + 16))


@pytest.mark.parametrize("blocks", ["one a chunk", "one"])
def test_saio_is_64_bit_when_the_output_passes_4_gib(blocks):
    """An audio track of 5 GiB with its aux information in the media data: one block before each chunk
    (saio version 1: they lie past 4 GiB), or one block before all (saio version 0). The output needs
    co64, and its saio is version 1 either way, each offset where its block lands (blocks and chunks go
    out in input order)."""
    chunk, chunks, gap = 1 << 30, 5, 16
    if blocks == "one":
        offsets = [4096 + chunks * gap + i * chunk for i in range(chunks)]
        saio = _full(b"saio", 0, struct.pack(">II", 1, 4096))
    else:
        offsets = [4096 + i * (gap + chunk) + gap for i in range(chunks)]
        saio = _full(b"saio", 1 << 24, struct.pack(f">I{chunks}Q", chunks, *(o - gap for o in offsets)))
    out = aux_plan(chunk, offsets, [gap] * chunks, saio)
    version, moved = saio_offsets(out.head)
    assert version == 1  # 64-bit offsets
    if blocks == "one":
        assert moved == [len(out.head)]
    else:
        assert moved == [len(out.head) + i * (gap + chunk) for i in range(chunks)]
    assert b"co64" in out.head and out.audio_bytes == chunks * (gap + chunk)


def test_an_empty_aux_block_where_a_chunk_starts():
    """Aux blocks before each chunk, the first chunk's samples with no aux information (size 0): its
    block lies where its chunk starts. Not an overlap: planned, each offset where its block lands."""
    chunk, gap = 100, 8
    offsets = [1000 + i * 200 for i in range(4)]  # video between the chunks
    blocks = [offsets[0]] + [o - gap for o in offsets[1:]]
    out = aux_plan(chunk, offsets, [0, gap, gap, gap], _full(b"saio", 0, struct.pack(">I4I", 4, *blocks)))
    base = len(out.head)
    assert saio_offsets(out.head) == (0, [base, base + chunk, base + 2 * chunk + gap, base + 3 * chunk + 2 * gap])
    assert list(out.ranges) == [(offsets[0], offsets[0] + chunk)] + [(o - gap, o + chunk) for o in offsets[1:]]


def test_an_empty_aux_block_where_its_chunk_starts_with_blocks_after_chunks():
    """Blocks after their chunks, the first one empty and lying where its own chunk starts (the order
    in bulk would put it after that chunk's start: the general order by offset, then size, places it)."""
    chunk = 100
    out = aux_plan(chunk, [1000, 1200], [0, 8], _full(b"saio", 0, struct.pack(">I2I", 2, 1000, 1300)))
    base = len(out.head)
    assert saio_offsets(out.head) == (0, [base, base + 2 * chunk])
    assert list(out.ranges) == [(1000, 1100), (1200, 1308)]


def test_aux_information_past_byte_2_63_is_refused_cleanly():
    from extractor import ExtractError
    saio = _full(b"saio", 1 << 24, struct.pack(">IQ", 1, (1 << 63) - 4))
    with pytest.raises(ExtractError, match="past byte 2\\^63"):
        aux_plan(100, [1000], [8], saio)


# -- a real packager: Shaka Packager (npm, pinned in package.json) -------------------------------------

def packager() -> str:
    import platform
    arch = {"x86_64": "x64", "aarch64": "arm64"}[platform.machine()]
    path = ROOT / "node_modules" / "shaka-packager" / "bin" / f"packager-linux-{arch}"
    assert path.exists(), f"{path} is missing: scripts/bootstrap --test installs it (npm ci)"
    return str(path)


@pytest.fixture(scope="module")
def shaka(tmp_path_factory):
    """h264_aac.mp4's audio packaged by Shaka Packager as fragmented MP4 (with a sidx and a ClearKey
    pssh): cenc (IVs and saiz/saio in each traf) and cbcs (constant IV) in one fragment; cenc in one
    fragment a second; cbcs with key rotation (a seig group and a pssh in every moof; the keys of later
    periods are derived, unknown). ffmpeg 5.1 decrypts a file of several fragments only through its
    sidx (the input itself with its sidx removed gives 43 of its packets), and the output has no sidx:
    those two are judged by the walker only."""
    folder = tmp_path_factory.mktemp("shaka")
    second = ["--fragment_duration", "1", "--segment_duration", "1"]
    for name, scheme, more in (("shaka_cenc.mp4", "cenc", []), ("shaka_cbcs.mp4", "cbcs", []),
                               ("shaka_cenc_fragments.mp4", "cenc", second),
                               ("shaka_rotation.mp4", "cbcs", second + ["--crypto_period_duration", "2"])):
        run(packager(), f"in={MEDIA / 'h264_aac.mp4'},stream=audio,output={folder / name}", "--enable_raw_key_encryption",
            "--keys", f"label=:key_id={KID}:key={KEY}", "--protection_scheme", scheme, "--clear_lead", "0", *more)
    return folder


def packet_data(path, key: bool = True) -> list[str]:
    """Size and MD5 of each audio packet (Shaka's files drop the clear file's priming edit, so the
    timestamps differ; the packets must not)."""
    r = subprocess.run(["ffmpeg", "-v", "error", *(["-decryption_key", KEY] if key else []), "-i", str(path), "-map", "0:a",
                        "-c", "copy", "-f", "framemd5", "-"], capture_output=True, check=True)
    return [",".join(line.split(",")[4:6]) for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def moof_encryption(data: bytes) -> list[list[bytes]]:
    """For each moof: its pssh boxes and each traf's sbgp, sgpd, senc, saiz (whole boxes), and the aux
    bytes its saio points at; read by the tests' walker."""
    found = []
    for kind, pos, header, size in boxes(data):
        if kind != b"moof":
            continue
        parts = []
        for k, p, h, s in boxes(data, pos + header, pos + size):
            if k == b"pssh":
                parts.append(data[p : p + s])
            if k != b"traf":
                continue
            inner = {kk: (q, ss) for kk, q, hh, ss in boxes(data, p + h, p + s)}
            parts += [data[q : q + ss] for kk, (q, ss) in inner.items() if kk in (b"sbgp", b"sgpd", b"senc", b"saiz")]
            if b"saio" in inner:  # counted from the moof (Shaka's trafs are default-base-is-moof)
                at = pos + struct.unpack_from(">I", data, inner[b"saio"][0] + 16)[0]
                saiz = data[inner[b"saiz"][0] + 12 : inner[b"saiz"][0] + inner[b"saiz"][1]]
                parts.append(data[at : at + saiz[0] * struct.unpack_from(">I", saiz, 1)[0]])
        found.append(parts)
    return found


def test_shakas_files_are_what_they_say(shaka):
    clear = [",".join(line.split(",")[4:6]) for line in clear_packets()]
    for scheme in ("cenc", "cbcs"):
        assert packet_data(shaka / f"shaka_{scheme}.mp4") == clear != packet_data(shaka / f"shaka_{scheme}.mp4", key=False)
    assert len(moof_encryption((shaka / "shaka_cenc_fragments.mp4").read_bytes())) >= 6
    encryption = moof_encryption((shaka / "shaka_rotation.mp4").read_bytes())
    assert len(encryption) >= 6 and all(any(b"seig" in part for part in parts) for parts in encryption)
    assert all(any(part[4:8] == b"pssh" for part in parts) for parts in encryption)


@pytest.mark.parametrize("name", ["shaka_cenc.mp4", "shaka_cbcs.mp4", "shaka_cenc_fragments.mp4", "shaka_rotation.mp4"])
def test_a_real_packagers_encrypted_audio_passes(shaka, tmp_path, name):
    """The CLI's output of each: every moof keeps its pssh, seig groups, senc, saiz and the aux bytes
    saio points at; ffmpeg decrypts cenc and cbcs to the clear file's audio packets. (These inputs hold
    audio only, so their moofs keep their size; moofs that shrink, a video traf gone, are
    test_fragmented_aux_info_follows_each_kept_traf's.)"""
    out = tmp_path / "out.mp4"
    r = subprocess.run(CLI + [str(shaka / name), str(out)], cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert moof_encryption(out.read_bytes()) == moof_encryption((shaka / name).read_bytes())
    if name in ("shaka_cenc.mp4", "shaka_cbcs.mp4"):
        assert packet_data(out) == packet_data(shaka / name)


@pytest.mark.parametrize("options", [(), STREAM_PATH], ids=["file", "stream"])
def test_a_real_packagers_cbcs_through_mitmdump(shaka, tmp_path, options):
    reply = through_mitmdump(shaka, ["shaka_cbcs.mp4"], tmp_path, options)[0]["shaka_cbcs.mp4"]
    assert reply.status == 200 and reply.clean
    out = tmp_path / "audio.mp4"
    out.write_bytes(reply.body)
    assert packet_data(out) == packet_data(shaka / "shaka_cbcs.mp4")
    assert moof_encryption(reply.body) == moof_encryption((shaka / "shaka_cbcs.mp4").read_bytes())
