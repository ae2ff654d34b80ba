"""A synthetic MP4 of any size, made on the fly: PCM audio chunks alternating with video chunks.

The audio is 16-bit stereo PCM at 48 kHz ('sowt'), 1 MiB chunks, so the audio alone can pass 4 GiB
and the output then needs co64 offsets and a 64-bit mdat header. Each chunk starts with its index, so
a chunk out of place changes the hash. The video track is only what the extractor reads of one
(tkhd, hdlr 'vide', offsets); its bytes spell VIDEO so a leak would show.
"""

import hashlib
import struct

from mp4tools import box

AUDIO_CHUNK = 1 << 20
VIDEO_CHUNK = 64 << 10
FRAME = 4  # bytes per PCM frame: 2 channels x 16 bits
RATE = 48000
_AUDIO_BASE = bytes(range(256)) * (AUDIO_CHUNK // 256)
_VIDEO = b"VIDEO" * (VIDEO_CHUNK // 5) + b"V" * (VIDEO_CHUNK % 5)


def full(kind: bytes, version_flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", version_flags) + payload)


def audio_chunk(i: int) -> bytes:
    return struct.pack(">Q", i) + _AUDIO_BASE[8:]


class BigMp4:
    def __init__(self, chunks: int):
        self.chunks = chunks
        frames = chunks * AUDIO_CHUNK // FRAME
        seconds = frames // RATE
        # The moov does not depend on the offsets' values, only on their count: size it, then fill it.
        head_len = len(self._head([0] * chunks, [0] * chunks, frames, seconds))
        first = head_len + 16  # after a 64-bit mdat header
        step = AUDIO_CHUNK + VIDEO_CHUNK
        audio = [first + i * step for i in range(chunks)]
        video = [a + AUDIO_CHUNK for a in audio]
        self.head = self._head(audio, video, frames, seconds)
        self.payload = chunks * step
        self.size = len(self.head) + 16 + self.payload
        self.audio_bytes = chunks * AUDIO_CHUNK
        self.seconds = seconds

    def _head(self, audio: list[int], video: list[int], frames: int, seconds: int) -> bytes:
        ftyp = box(b"ftyp", b"qt  " + struct.pack(">I", 0x200) + b"qt  ")
        matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
        mvhd = full(b"mvhd", 0, struct.pack(">IIII", 0, 0, 1000, seconds * 1000) + struct.pack(">IH", 0x10000, 0x100)
                    + bytes(10) + matrix + bytes(24) + struct.pack(">I", 3))

        def trak(track_id: int, handler: bytes, media_header: bytes, stsd: bytes, stbl_tables: bytes, duration: int,
                 timescale: int, media_duration: int) -> bytes:
            tkhd = full(b"tkhd", 3, struct.pack(">IIII", 0, 0, track_id, 0) + struct.pack(">I", duration) + bytes(8)
                        + struct.pack(">hhhH", 0, 0, 0x100 if handler == b"soun" else 0, 0) + matrix + bytes(8))
            mdhd = full(b"mdhd", 0, struct.pack(">IIII", 0, 0, timescale, media_duration) + struct.pack(">HH", 0x55C4, 0))
            hdlr = full(b"hdlr", 0, bytes(4) + handler + bytes(12) + b"\0")
            dinf = box(b"dinf", full(b"dref", 0, struct.pack(">I", 1) + full(b"url ", 1, b"")))
            stbl = box(b"stbl", stsd + stbl_tables)
            return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + box(b"minf", media_header + dinf + stbl)))

        sowt = box(b"sowt", bytes(6) + struct.pack(">H", 1) + bytes(8)
                   + struct.pack(">HHHHI", 2, 16, 0, 0, RATE << 16))
        audio_tables = (
            full(b"stts", 0, struct.pack(">III", 1, frames, 1))
            + full(b"stsc", 0, struct.pack(">IIII", 1, 1, AUDIO_CHUNK // FRAME, 1))
            + full(b"stsz", 0, struct.pack(">II", FRAME, frames))
            + full(b"co64", 0, struct.pack(f">I{len(audio)}Q", len(audio), *audio))
        )
        video_tables = (
            full(b"stts", 0, struct.pack(">I", 0)) + full(b"stsc", 0, struct.pack(">I", 0))
            + full(b"stsz", 0, struct.pack(">II", 0, 0))
            + full(b"co64", 0, struct.pack(f">I{len(video)}Q", len(video), *video))
        )
        audio_trak = trak(1, b"soun", full(b"smhd", 0, bytes(4)), full(b"stsd", 0, struct.pack(">I", 1) + sowt),
                          audio_tables, seconds * 1000, RATE, frames)
        video_trak = trak(2, b"vide", full(b"vmhd", 1, bytes(8)), full(b"stsd", 0, struct.pack(">I", 0)),
                          video_tables, seconds * 1000, 1000, seconds * 1000)
        return ftyp + box(b"moov", mvhd + video_trak + audio_trak)

    def pieces(self):
        yield self.head + struct.pack(">I4sQ", 1, b"mdat", 16 + self.payload)
        for i in range(self.chunks):
            yield audio_chunk(i)
            yield _VIDEO

    def range(self, first: int, last: int):
        """Bytes first..last (inclusive) of the file, in pieces, without making what comes before."""
        head = self.head + struct.pack(">I4sQ", 1, b"mdat", 16 + self.payload)
        if first < len(head):
            yield head[first : last + 1]
        step = AUDIO_CHUNK + VIDEO_CHUNK
        pos = max(first, len(head))
        while pos <= last:
            i, within = divmod(pos - len(head), step)
            chunk = audio_chunk(i) + _VIDEO
            piece = chunk[within : within + last + 1 - pos]
            yield piece
            pos += len(piece)

    def audio_md5(self) -> str:
        h = hashlib.md5()
        for i in range(self.chunks):
            h.update(audio_chunk(i))
        return h.hexdigest()
