"""MPEG-TS test inputs, made by ffmpeg on first use into a cache folder and reused (a few seconds of
160x120 video: each file is tens of KB). The folder: $AUDIO_ONLY_MEDIA_CACHE or
/tmp/audio-only-edge-media, under ts-<recipe version>; files appear there whole (written aside, then
renamed), so parallel runs may share it.

Also a packet walker of the tests' own (not extractor/ts: a judge that shares the product's reader
shares its bugs).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

VERSION = 1
SECONDS = 3
CACHE = Path(os.environ.get("AUDIO_ONLY_MEDIA_CACHE", "/tmp/audio-only-edge-media")) / f"ts-{VERSION}"

VIDEO = ["-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={SECONDS}"]


def tone(freq: int, rate: int = 48000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={SECONDS}"]


H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
AAC = ["-c:a", "aac", "-b:a", "64k"]

# name -> ffmpeg arguments after the inputs' (the output file is added at the end).
RECIPES = {
    "h264_aac.ts": [*VIDEO, *tone(440), *H264, *AAC, "-f", "mpegts"],
    "hevc_ac3.ts": [*VIDEO, *tone(440), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
                    "-c:a", "ac3", "-b:a", "96k", "-f", "mpegts"],
    "mpeg2_mp2.ts": [*VIDEO, *tone(440), "-c:v", "mpeg2video", "-c:a", "mp2", "-b:a", "128k", "-f", "mpegts"],
    "two_audio.ts": [*VIDEO, *tone(440), *tone(660), "-map", "0", "-map", "1", "-map", "2", *H264, *AAC,
                     "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-f", "mpegts"],
    # ffmpeg puts a program's PCR on its video stream when it has one: a second program holding only
    # the audio gets the PCR on the audio PID (the first program keeps it on the video PID).
    "pcr_on_audio.ts": [*VIDEO, *tone(440), "-map", "0", "-map", "1", *H264, *AAC,
                        "-program", "program_num=1:title=tv:st=0", "-program", "program_num=2:title=radio:st=1",
                        "-f", "mpegts"],
    "audio_only.ts": [*tone(440), *AAC, "-f", "mpegts"],
    "aac_44100.ts": [*VIDEO, *tone(440, 44100), *H264, *AAC, "-f", "mpegts"],  # frames of 2089.8 ticks
    "video_only.ts": [*VIDEO, *H264, "-f", "mpegts"],
    "m2ts.m2ts": [*VIDEO, *tone(440), *H264, *AAC, "-f", "mpegts", "-mpegts_m2ts_mode", "1"],
    # second half of pmt_change.ts: another audio codec on another PID, tables version 1
    "part2.ts": [*VIDEO, *tone(880), *H264, "-c:a", "ac3", "-streamid", "1:0x120", "-tables_version", "1",
                 "-f", "mpegts"],
    # the start of id3.ts: a data stream ffmpeg lists in the PMT (as private data) but writes no packets
    # of, its input having no timestamps; its PMT entry is made timed ID3 and its PES written here
    "data.ts": [*VIDEO, *tone(440), "-f", "data", "-i", "{id3}", "-map", "0", "-map", "1", "-map", "2", *H264, *AAC,
                "-c:d", "copy", "-f", "mpegts"],
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def _write(path: Path, make) -> Path:
    """make(tmp_path) writes the file; it is renamed into place only when whole."""
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, suffix=path.suffix)
    os.close(fd)
    try:
        make(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def id3_tags(count: int) -> bytes:
    """`count` ID3v2.4 tags, each a TIT2 frame."""
    out = b""
    for i in range(count):
        frame = b"\x03" + f"title {i}".encode()
        body = b"TIT2" + struct.pack(">I", len(frame)) + b"\x00\x00" + frame
        n = len(body)
        out += b"ID3\x04\x00\x00" + bytes((n >> 21 & 127, n >> 14 & 127, n >> 7 & 127, n & 127)) + body
    return out


def crc32_mpeg2(data: bytes) -> int:
    """Bit by bit, as the standard defines it (the tests' own, slow and plain: the product's is another)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def retype_stream(data: bytearray, old_type: int, new_type: int, descriptor: bytes = b"") -> bytearray:
    """Every PMT copy (ffmpeg's: one packet on PID 0x1000, no adaptation field, pointer 0) with its
    `old_type` entries made `new_type`, `descriptor` added to their ES_info."""
    for at in range(0, len(data), 188):
        if (data[at + 1] & 0x1F) << 8 | data[at + 2] != 0x1000 or not data[at + 1] & 0x40:
            continue
        s = at + 5
        length = (data[s + 1] & 0x0F) << 8 | data[s + 2]
        info = (data[s + 10] & 0x0F) << 8 | data[s + 11]
        pos, end = s + 12 + info, s + 3 + length - 4
        section = bytearray(data[s:pos])
        while pos < end:
            size = 5 + ((data[pos + 3] & 0x0F) << 8 | data[pos + 4])
            entry = bytearray(data[pos : pos + size])
            if entry[0] == old_type:
                entry[0] = new_type
                entry += descriptor
                entry[3:5] = struct.pack(">H", 0xF000 | (len(entry) - 5))
            section += entry
            pos += size
        section[1:3] = struct.pack(">H", 0xB000 | (len(section) + 4 - 3))
        section += struct.pack(">I", crc32_mpeg2(bytes(section)))
        assert len(section) <= 183
        data[s : at + 188] = section + b"\xff" * (183 - len(section))
    return data


def pts_bytes(pts: int) -> bytes:
    return bytes((0x21 | (pts >> 29) & 0x0E, pts >> 22 & 0xFF, (pts >> 14) & 0xFE | 1, pts >> 7 & 0xFF, (pts << 1) & 0xFE | 1))


def with_id3(data: bytes, pid: int = 258, audio_pid: int = 257) -> bytes:
    """data with one timed-ID3 PES (stream_id 0xBD, one packet each) every half second of audio PTS,
    each put just before the audio packet that starts the PES it is timed with."""
    out, cc, due = [], 0, 0
    for at in range(0, len(data), 188):
        p = data[at : at + 188]
        if (p[1] & 0x1F) << 8 | p[2] == audio_pid and p[1] & 0x40:
            payload = 5 + p[4] if p[3] & 0x20 else 4
            b = p[payload + 9 : payload + 14]
            pts = (b[0] >> 1 & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
            due = due or pts
            if pts >= due:
                tag = id3_tags(1)
                pes = b"\x00\x00\x01\xbd" + struct.pack(">H", len(tag) + 8) + b"\x80\x80\x05" + pts_bytes(pts) + tag
                stuffing = 184 - len(pes) - 2
                out.append(bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x30 | cc, stuffing + 1, 0)) + b"\xff" * stuffing + pes)
                cc, due = (cc + 1) & 15, pts + 45000
        out.append(p)
    return b"".join(out)


def splice_null() -> bytes:
    """An SCTE-35 splice_info_section with a splice_null command, CRC made."""
    section = bytes.fromhex("fc3011" "00" "0000000000" "00" "fff000" "00" "0000")
    return section + struct.pack(">I", crc32_mpeg2(section))


def with_scte35(data: bytes, pid: int = 258, every: int = 150) -> bytes:
    """data with a packet carrying a splice_null section every `every` packets."""
    out, cc = [], 0
    for index, at in enumerate(range(0, len(data), 188)):
        if index and index % every == 0:
            payload = b"\x00" + splice_null()
            out.append(bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | cc)) + payload + b"\xff" * (184 - len(payload)))
            cc = (cc + 1) & 15
        out.append(data[at : at + 188])
    return b"".join(out)


def make(name: str) -> Path:
    """The named input, made if not cached yet."""
    path = CACHE / name
    if name == "pmt_change.ts":
        return _write(path, lambda tmp: tmp.write_bytes(make("h264_aac.ts").read_bytes() + make("part2.ts").read_bytes()))
    if name == "id3.ts":
        def id3(tmp):
            tmp.write_bytes(with_id3(bytes(retype_stream(bytearray(make("data.ts").read_bytes()), 0x06, 0x15, b"\x05\x04ID3 "))))
        return _write(path, id3)
    if name == "scte35.ts":
        def scte35(tmp):
            tmp.write_bytes(with_scte35(bytes(retype_stream(bytearray(make("data.ts").read_bytes()), 0x06, 0x86,
                                                           b"\x05\x04CUEI"))))
        return _write(path, scte35)
    if name.startswith("hls/"):
        folder = CACHE / "hls"
        if not (folder / "index.m3u8").exists():
            source = make("h264_aac.ts")
            work = Path(tempfile.mkdtemp(dir=CACHE))
            ffmpeg("-i", str(source), "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
                   "-hls_segment_filename", str(work / "seg%d.ts"), str(work / "index.m3u8"))
            try:
                os.rename(work, folder)
            except OSError:  # another run made it first
                shutil.rmtree(work)
        return folder / name[4:]
    if name == "data.ts":
        id3 = _write(CACHE / "id3.bin", lambda tmp: tmp.write_bytes(id3_tags(SECONDS * 2)))
        args = [a.replace("{id3}", str(id3)) for a in RECIPES[name]]
    else:
        args = RECIPES[name]
    return _write(path, lambda tmp: ffmpeg(*args, str(tmp)))


def hls_segments() -> list[Path]:
    make("hls/index.m3u8")
    return sorted((CACHE / "hls").glob("seg*.ts"), key=lambda p: int(p.stem[3:]))


def packets(data: bytes, size: int = 188):
    """(PID, packet) for each packet (the 188 bytes from its sync byte); asserts the sync bytes."""
    prefix = size - 188
    for at in range(0, len(data), size):
        p = data[at + prefix : at + size]
        assert p[0] == 0x47 and len(p) == 188, f"no packet at {at}"
        yield (p[1] & 0x1F) << 8 | p[2], p


def pid_counts(data: bytes, size: int = 188) -> Counter:
    return Counter(pid for pid, _ in packets(data, size))


def has_payload(packet: bytes) -> bool:
    control = packet[3] >> 4 & 3
    return control == 1 or (control == 3 and packet[4] < 183)


def pmt_streams(data: bytes, size: int = 188) -> dict[int, dict[int, int]]:
    """PMT PID -> {elementary PID: stream_type} from the last copy of each single-packet PMT, CRC checked."""
    pat, out = {}, {}
    for pid, p in packets(data, size):
        if not p[1] & 0x40:
            continue
        payload = 5 + p[4] if p[3] & 0x20 else 4
        s = payload + 1 + p[payload]
        length = (p[s + 1] & 0x0F) << 8 | p[s + 2]
        section = p[s : s + 3 + length]
        if pid == 0 and section[0] == 0:
            assert crc32_mpeg2(section) == 0
            for at in range(8, len(section) - 4, 4):
                number, pmt = struct.unpack_from(">HH", section, at)
                if number:
                    pat[pmt & 0x1FFF] = number
        elif pid in pat and section[0] == 2:
            assert crc32_mpeg2(section) == 0, f"PMT on PID {pid} fails its CRC"
            info = (section[10] & 0x0F) << 8 | section[11]
            pos, streams = 12 + info, {}
            while pos < len(section) - 4:
                streams[(section[pos + 1] & 0x1F) << 8 | section[pos + 2]] = section[pos]
                pos += 5 + ((section[pos + 3] & 0x0F) << 8 | section[pos + 4])
            out[pid] = streams
    return out



def with_dense_psi(data: bytes, every: int = 4) -> bytes:
    """data with a copy of the last PAT and PMT packets (single-packet sections, as ffmpeg writes them)
    after every `every` packets, the continuity counters of all their packets counted anew: a muxer
    that repeats its tables far more often than 13818-1 or DVB ask."""
    out, last, cc = [], {}, {0: 15, 0x1000: 15}

    def table_packet(pid: int, q: bytes) -> bytes:
        cc[pid] = (cc[pid] + 1) & 0x0F
        return q[:3] + bytes((q[3] & 0xF0 | cc[pid],)) + q[4:]

    for index, (pid, p) in enumerate(packets(data)):
        if pid in cc:
            last[pid] = p
            p = table_packet(pid, p)
        out.append(p)
        if index % every == every - 1:
            out += [table_packet(table, last[table]) for table in cc if table in last]
    return b"".join(out)
