"""Makes a cbcs-encrypted progressive MP4 whose sample auxiliary information lies in the media data, as
packagers other than ffmpeg write it (ffmpeg only writes cenc-aes-ctr, with a senc in the moov). For
tests; independent of the product's code (its own walker: mp4tools.boxes).

The audio track of a clear file becomes `enca` with sinf (frma mp4a, schm cbcs, tenc version 1:
pattern 1:9, a constant IV, no per-sample IV), each audio sample is encrypted with AES-CBC by that
pattern (ISO/IEC 23001-7 10.4: the IV reset at each subsample, the chain running through the encrypted
blocks only, a partial last block left clear), and each sample's aux information (its subsample
entries: one, or two for odd samples, so saiz gives a size per sample) is written into the mdat: one block for the whole track
before the first chunk (`per_chunk=False`, the only layout ffmpeg reads), or one block just before
each audio chunk, interleaved with the video (`per_chunk=True`). saiz gives each sample's aux size,
saio where the block(s) start. The video stays clear, its chunks moved with the new mdat.

`aux="senc"` instead writes the aux information into a senc box in the audio's stbl (flag 2:
subsamples), as ffmpeg does for cenc, with a 16-byte IV of its own for each sample (tenc's
per-sample IV size 16, no constant IV): each entry is that sample's IV and subsamples, saio points at
the first entry.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mp4tools import box, boxes

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
KID = bytes.fromhex("0123456789abcdef0123456789abcdef")
KID2 = bytes.fromhex("fedcba9876543210fedcba9876543210")  # key rotation: the second half's group names it
IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
CRYPT, SKIP, CLEAR = 1, 9, 5  # the pattern, in 16-byte blocks; clear bytes at the start of each sample


def _full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags) + payload)


def subsamples(index: int, size: int) -> list[tuple[int, int]]:
    """(clear, protected) bytes of each subsample of sample `index`: one for even samples, two for odd
    ones (so saiz gives each sample's aux size: 8 or 14 bytes)."""
    clear = min(CLEAR, size)
    if index % 2 == 0 or size < 64:
        return [(clear, size - clear)]
    half = size // 2
    return [(clear, half - clear), (3, size - half - 3)]


def sample_iv(index: int) -> bytes:
    """Sample `index`'s own IV (the senc layout): no two samples share one."""
    return struct.pack(">4I", 0xC0FFEE, index, index * 7919, 0x5EED)


def _protect(data: bytes, iv: bytes = IV) -> bytes:
    """One subsample's protected bytes: the IV starts afresh, the chain runs through the encrypted blocks."""
    out, chain, at = bytearray(), Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor(), 0
    while len(data) - at >= 16 * CRYPT:
        out += chain.update(data[at : at + 16 * CRYPT])
        at += 16 * CRYPT
        skip = min(16 * SKIP, len(data) - at)
        out += data[at : at + skip]
        at += skip
    return bytes(out + data[at:])


def encrypt_sample(index: int, sample: bytes, per_sample_iv: bool = False) -> bytes:
    out, at = bytearray(), 0
    iv = sample_iv(index) if per_sample_iv else IV
    for clear, protected in subsamples(index, len(sample)):
        out += sample[at : at + clear] + _protect(sample[at + clear : at + clear + protected], iv)
        at += clear + protected
    return bytes(out)


def aux_entry(index: int, size: int, per_sample_iv: bool = False) -> bytes:
    parts = subsamples(index, size)  # no IV unless per sample: the constant IV is in tenc
    return ((sample_iv(index) if per_sample_iv else b"") + struct.pack(">H", len(parts))
            + b"".join(struct.pack(">HI", c, p) for c, p in parts))


def _find(data: bytes, start: int, end: int, kind: bytes):
    return next(((pos, header, size) for k, pos, header, size in boxes(data, start, end) if k == kind), None)


def _tables(data: bytes, stbl: tuple[int, int, int]):
    """(chunk offsets, samples per chunk, sample sizes) of a track."""
    start, end = stbl[0] + stbl[1], stbl[0] + stbl[2]
    stsz = _find(data, start, end, b"stsz")
    constant, count = struct.unpack_from(">II", data, stsz[0] + 12)
    sizes = [constant] * count if constant else list(struct.unpack_from(f">{count}I", data, stsz[0] + 20))
    stco = _find(data, start, end, b"stco") or _find(data, start, end, b"co64")
    n = struct.unpack_from(">I", data, stco[0] + 12)[0]
    offsets = list(struct.unpack_from(f">{n}{'I' if data[stco[0] + 4 : stco[0] + 8] == b'stco' else 'Q'}", data, stco[0] + 16))
    stsc = _find(data, start, end, b"stsc")
    runs = struct.unpack_from(f">{3 * struct.unpack_from('>I', data, stsc[0] + 12)[0]}I", data, stsc[0] + 16)
    per_chunk = []
    for r in range(0, len(runs), 3):
        last = runs[r + 3] - 1 if r + 3 < len(runs) else n
        per_chunk += [runs[r + 1]] * (last - runs[r] + 1)
    return offsets, per_chunk, sizes


def _tenc_fields(kid: bytes, per_sample_iv: bool) -> bytes:
    """tenc's (and seig's) fields after the version: the pattern, protected, the IV size, KID, constant IV."""
    if per_sample_iv:
        return bytes([0, CRYPT << 4 | SKIP, 1, 16]) + kid
    return bytes([0, CRYPT << 4 | SKIP, 1, 0]) + kid + bytes([16]) + IV


def _sinf(per_sample_iv: bool = False) -> bytes:
    tenc = _full(b"tenc", 1, 0, _tenc_fields(KID, per_sample_iv))
    return box(b"sinf", box(b"frma", b"mp4a") + _full(b"schm", 0, 0, b"cbcs" + struct.pack(">I", 0x10000)) +
               box(b"schi", tenc))


def seig_groups(samples: int, per_sample_iv: bool = False) -> bytes:
    """Key rotation: a seig sample group of two entries (KID, then KID2; the same key here, so ffmpeg's
    one -decryption_key still decrypts), the first half of the samples in the first, the rest in the
    second."""
    entries = [_tenc_fields(kid, per_sample_iv) for kid in (KID, KID2)]
    sgpd = _full(b"sgpd", 1, 0, b"seig" + struct.pack(">II", len(entries[0]), 2) + b"".join(entries))
    half = samples // 2
    return sgpd + _full(b"sbgp", 0, 0, b"seig" + struct.pack(">IIIII", 2, half, 1, samples - half, 2))


def encrypt(data: bytes, per_chunk: bool, moov_first: bool = True, mark_video: bool = False, aux: str = "media") -> bytes:
    """The clear file `data` (ftyp, moov, mdat) encrypted; mark_video: the video samples' bytes replaced
    by VIDEO... (for the fuzzers: a leak shows); aux: "media" (blocks in the mdat) or "senc" (in the
    stbl, per-sample IVs; per_chunk is then ignored)."""
    in_senc = aux == "senc"
    top = {kind: (pos, header, size) for kind, pos, header, size in boxes(data)}
    ftyp, moov = top[b"ftyp"], top[b"moov"]
    traks = []
    for kind, pos, header, size in boxes(data, moov[0] + moov[1], moov[0] + moov[2]):
        if kind != b"trak":
            continue
        mdia = _find(data, pos + header, pos + size, b"mdia")
        hdlr = _find(data, mdia[0] + mdia[1], mdia[0] + mdia[2], b"hdlr")
        minf = _find(data, mdia[0] + mdia[1], mdia[0] + mdia[2], b"minf")
        stbl = _find(data, minf[0] + minf[1], minf[0] + minf[2], b"stbl")
        traks.append(((pos, header, size), data[hdlr[0] + 16 : hdlr[0] + 20] == b"soun", stbl, _tables(data, stbl)))
    # Every chunk in input order; the new mdat payload: aux blocks and (audio encrypted) chunks.
    chunks = sorted((offset, t, c) for t, (_, _, _, (offsets, _, _)) in enumerate(traks) for c, offset in enumerate(offsets))
    first_sample = {t: [sum(tables[1][:c]) for c in range(len(tables[0]))] for t, (_, _, _, tables) in enumerate(traks)}
    audio = next(t for t, trak in enumerate(traks) if trak[1])
    _, per, sizes = traks[audio][3]
    payload, new_offsets, aux_offsets = bytearray(), {t: [0] * len(trak[3][0]) for t, trak in enumerate(traks)}, []
    if in_senc:
        per_chunk = False
    elif not per_chunk:
        aux_offsets.append(len(payload))
        payload += b"".join(aux_entry(i, s) for i, s in enumerate(sizes))
    for offset, t, c in chunks:
        samples = range(first_sample[t][c], first_sample[t][c] + traks[t][3][1][c])
        if t == audio and per_chunk:
            aux_offsets.append(len(payload))
            payload += b"".join(aux_entry(s, sizes[s]) for s in samples)
        new_offsets[t][c] = len(payload)
        at = offset
        for s in samples:
            size = traks[t][3][2][s]
            if t == audio:
                payload += encrypt_sample(s, data[at : at + size], in_senc)
            else:
                payload += (b"VIDEO" * (size // 5 + 1))[:size] if mark_video else data[at : at + size]
            at += size

    def rebuild_moov(base: int, senc_at: int = 0) -> bytes:
        """The moov for an mdat payload at `base`; senc_at: where its senc's first entry lies (senc layout)."""
        def rebuild(start: int, end: int, t: int) -> bytes:
            out = []
            for kind, pos, header, size in boxes(data, start, end):
                if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                    t_here = next((n for n, trak in enumerate(traks) if trak[0][0] == pos), t)
                    inner = rebuild(pos + header, pos + size, t_here)
                    if kind == b"stbl" and t == audio:
                        entries = [aux_entry(i, size, in_senc) for i, size in enumerate(sizes)]
                        inner += _full(b"saiz", 0, 0, struct.pack(">BI", 0, len(sizes)) + bytes(map(len, entries)))
                        at = [senc_at] if in_senc else [base + o for o in aux_offsets]
                        inner += _full(b"saio", 0, 0, struct.pack(f">I{len(at)}I", len(at), *at))
                        if in_senc:
                            inner += _full(b"senc", 0, 2, struct.pack(">I", len(entries)) + b"".join(entries))
                        inner += seig_groups(len(sizes), in_senc)
                    out.append(box(kind, inner))
                elif kind == b"stco":
                    offsets = [base + o for o in new_offsets[t]]
                    out.append(_full(b"stco", 0, 0, struct.pack(f">I{len(offsets)}I", len(offsets), *offsets)))
                elif kind == b"stsd" and t == audio:
                    assert struct.unpack_from(">I", data, pos + 12)[0] == 1, "one sample entry expected"
                    entry = _find(data, pos + 16, pos + size, b"mp4a")
                    enca = box(b"enca", data[entry[0] + 8 : entry[0] + entry[2]] + _sinf(in_senc))
                    out.append(_full(b"stsd", 0, 0, struct.pack(">I", 1) + enca))
                else:
                    out.append(data[pos : pos + size])
            return b"".join(out)
        return box(b"moov", rebuild(moov[0] + moov[1], moov[0] + moov[2], -1))

    head = data[ftyp[0] : ftyp[0] + ftyp[2]]
    mdat_box = box(b"mdat", bytes(payload))
    size = len(rebuild_moov(0))
    base = len(head) + size + 8 if moov_first else len(head) + 8
    moov_at = len(head) if moov_first else len(head) + len(mdat_box)
    trial = rebuild_moov(base)
    senc = trial.find(b"senc") - 4  # (the moov's only senc: its offsets and sizes are known boxes around it)
    moov_out = rebuild_moov(base, moov_at + senc + 16) if in_senc else trial
    return head + moov_out + mdat_box if moov_first else head + mdat_box + moov_out


def audio_samples_with_aux(data: bytes) -> list[tuple[bytes, bytes]]:
    """(aux information, sample bytes) of every sample of the audio track, found through its saiz and
    saio (one offset for the track, or one a chunk) and its chunk tables: the judge of the output."""
    moov = _find(data, 0, len(data), b"moov")
    for kind, pos, header, size in boxes(data, moov[0] + moov[1], moov[0] + moov[2]):
        if kind != b"trak" or b"soun" not in data[pos : pos + size]:
            continue
        mdia = _find(data, pos + header, pos + size, b"mdia")
        minf = _find(data, mdia[0] + mdia[1], mdia[0] + mdia[2], b"minf")
        stbl = _find(data, minf[0] + minf[1], minf[0] + minf[2], b"stbl")
        offsets, per_chunk, sizes = _tables(data, stbl)
        saiz = _find(data, stbl[0] + stbl[1], stbl[0] + stbl[2], b"saiz")
        saio = _find(data, stbl[0] + stbl[1], stbl[0] + stbl[2], b"saio")
        default, count = data[saiz[0] + 12], struct.unpack_from(">I", data, saiz[0] + 13)[0]
        assert count == len(sizes)
        aux_sizes = [default] * count if default else list(data[saiz[0] + 17 : saiz[0] + 17 + count])
        entries = struct.unpack_from(">I", data, saio[0] + 12)[0]
        aux_at = list(struct.unpack_from(f">{entries}{'Q' if data[saio[0] + 8] else 'I'}", data, saio[0] + 16))
        found, sample, aux = [], 0, aux_at[0]
        for c, (offset, n) in enumerate(zip(offsets, per_chunk)):
            if entries > 1:  # one a chunk
                aux = aux_at[c]
            for _ in range(n):
                found.append((data[aux : aux + aux_sizes[sample]], data[offset : offset + sizes[sample]]))
                aux += aux_sizes[sample]
                offset += sizes[sample]
                sample += 1
        return found
    raise AssertionError("no audio trak")
