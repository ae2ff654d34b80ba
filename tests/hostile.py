"""Hostile but legal MP4s: a moov of about 60 MiB describing millions of tiny samples.

4 million audio samples (one 4-byte PCM frame each, one sample per chunk) interleaved chunk by chunk
with 4 million video samples (16 bytes, one per chunk): every audio chunk is its own range between
two video chunks, the worst case for a planner; per-sample stsz and stco tables, 61 MiB of moov. Audio sample i holds i (big-endian), so the expected
audio-only payload is known without the product's help; video bytes spell VIDEOVID so a leak shows.
Built with bulk arrays: a second or two, not minutes.
"""

from __future__ import annotations

import struct
import sys
from array import array

from bigmp4 import full
from mp4tools import box

AUDIO_SIZE = 4  # one frame of 16-bit stereo PCM
VIDEO_SIZE = 16
VIDEO_PER_CHUNK = 1
UNIT = AUDIO_SIZE + VIDEO_SIZE * VIDEO_PER_CHUNK  # one audio chunk, then one video chunk


def _be(code: str, values) -> bytes:
    a = array(code, values)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


class HostileMp4:
    def __init__(self, audio_samples: int = 4_000_000, moov_at_end: bool = False):
        self.n = n = audio_samples
        self.moov_at_end = moov_at_end
        self.ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isommp41")
        payload_len = n * UNIT
        mdat_header = struct.pack(">I4sQ", 1, b"mdat", 16 + payload_len)  # 64-bit: the payload may pass 4 GiB
        # The moov's size depends only on the counts: size it with zero offsets, then place it.
        moov_len = len(self._moov(0))
        first = len(self.ftyp) + (0 if moov_at_end else moov_len) + len(mdat_header)
        self.moov = self._moov(first)
        self.mdat_header = mdat_header
        self.first = first
        self.size = len(self.ftyp) + moov_len + len(mdat_header) + payload_len

    @property
    def audio_payload(self) -> bytes:
        """The audio-only file's mdat payload: every audio sample in order."""
        return _be("I", range(self.n))

    def _moov(self, first: int) -> bytes:
        n = self.n
        video_samples, video_chunks = n * VIDEO_PER_CHUNK, n
        matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        seconds = n // 48000 + 1
        mvhd = full(b"mvhd", 0, struct.pack(">IIII", 0, 0, 1000, seconds * 1000) + struct.pack(">IH", 0x10000, 0x100)
                    + bytes(10) + matrix + bytes(24) + struct.pack(">I", 3))

        def trak(track_id, handler, stsd, media_header, timescale, samples, per_chunk, sample_size, offsets):
            tkhd = full(b"tkhd", 3, struct.pack(">IIII", 0, 0, track_id, 0) + struct.pack(">I", seconds * 1000) + bytes(8)
                        + struct.pack(">hhhH", 0, 0, 0x100 if handler == b"soun" else 0, 0) + matrix + bytes(8))
            mdhd = full(b"mdhd", 0, struct.pack(">IIII", 0, 0, timescale, samples) + struct.pack(">HH", 0x55C4, 0))
            hdlr = full(b"hdlr", 0, bytes(4) + handler + bytes(12) + b"\0")
            dinf = box(b"dinf", full(b"dref", 0, struct.pack(">I", 1) + full(b"url ", 1, b"")))
            stts = full(b"stts", 0, struct.pack(">III", 1, samples, 1))
            stsc = full(b"stsc", 0, struct.pack(">IIII", 1, 1, per_chunk, 1))
            # Per-sample sizes (all equal, but written out: the table a planner must read).
            stsz = full(b"stsz", 0, struct.pack(">II", 0, samples) + _be("I", [sample_size]) * samples)
            wide = offsets[-1] > 0xFFFFFFFF
            chunk_offsets = full(b"co64" if wide else b"stco", 0, struct.pack(">I", len(offsets))
                                 + _be("Q" if wide else "I", offsets))
            stbl = box(b"stbl", stsd + stts + stsc + stsz + chunk_offsets)
            return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + box(b"minf", media_header + dinf + stbl)))

        sowt = box(b"sowt", bytes(6) + struct.pack(">H", 1) + bytes(8) + struct.pack(">HHHHI", 2, 16, 0, 0, 48000 << 16))
        audio = trak(1, b"soun", full(b"stsd", 0, struct.pack(">I", 1) + sowt), full(b"smhd", 0, bytes(4)),
                     48000, n, 1, AUDIO_SIZE, range(first, first + n * UNIT, UNIT))
        vide = box(b"avc1", bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">HH", 16, 16) + bytes(50))
        video = trak(2, b"vide", full(b"stsd", 0, struct.pack(">I", 1) + vide), full(b"vmhd", 1, bytes(8)),
                     30, video_samples, VIDEO_PER_CHUNK, VIDEO_SIZE, range(first + AUDIO_SIZE, first + n * UNIT, UNIT))
        assert video_chunks == n
        return box(b"moov", mvhd + audio + video)

    def payload(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes start..end of the mdat payload, made on demand."""
        end = self.n * UNIT if end is None else end
        first_unit, last_unit = start // UNIT, -(-end // UNIT)
        count = last_unit - first_unit
        buf = bytearray(b"VIDEOVID" * (count * UNIT // 8) + b"VIDEOVID"[: count * UNIT % 8])
        audio = _be("I", range(first_unit, last_unit))
        for k in range(AUDIO_SIZE):
            buf[k::UNIT] = audio[k::AUDIO_SIZE]
        base = first_unit * UNIT
        return bytes(buf[start - base : end - base])

    def pieces(self, piece: int = 1 << 20):
        """The whole file, piece by piece (for the test origin's `virtual`)."""
        head = self.ftyp + (b"" if self.moov_at_end else self.moov) + self.mdat_header
        yield head
        total = self.n * UNIT
        for pos in range(0, total, piece):
            yield self.payload(pos, min(total, pos + piece))
        if self.moov_at_end:
            yield self.moov

    def read_range(self, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive) of the file."""
        head = self.ftyp + (b"" if self.moov_at_end else self.moov) + self.mdat_header
        out, pos, end = [], first, last + 1
        if pos < len(head):
            out.append(head[pos:end])
            pos = len(head)
        payload_end = len(head) + self.n * UNIT
        if pos < min(end, payload_end):
            out.append(self.payload(pos - len(head), min(end, payload_end) - len(head)))
            pos = min(end, payload_end)
        if pos < end and self.moov_at_end:
            out.append(self.moov[pos - payload_end : end - payload_end])
        return b"".join(out)
