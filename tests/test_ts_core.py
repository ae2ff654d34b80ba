"""The MPEG-TS filter on inputs made by ffmpeg (tsmedia.py), judged by ffprobe/ffmpeg and the tests'
own packet walker."""

from __future__ import annotations

import json
import random
import re

import pytest

import tsmedia
from extractor import AudioExtractor, MalformedInput, NoAudio, SeekPastEnd, SeekRange, TruncatedInput, UnsupportedInput
from helpers import audio_packets, decode_errors, run, streams

CASES = ["h264_aac.ts", "hevc_ac3.ts", "mpeg2_mp2.ts", "two_audio.ts", "pcr_on_audio.ts", "pmt_change.ts",
         "m2ts.m2ts", "id3.ts", "hls/seg0.ts", "hls/seg1.ts", "hls/seg2.ts"]


def extract(data: bytes, piece: int = 65536, **kw) -> tuple[bytes, AudioExtractor]:
    x = AudioExtractor(**kw)
    out = []
    for at in range(0, len(data), piece):
        out += x.feed(data[at : at + piece])
    out += x.finish()
    return b"".join(out), x


def packet_size(name: str) -> int:
    return 192 if name.endswith(".m2ts") else 188


def data_packets(path) -> list[str]:
    if "data" not in [s["codec_type"] for s in streams(path)]:
        return []
    r = run("ffmpeg", "-v", "error", "-i", str(path), "-map", "0:d", "-c", "copy", "-f", "framemd5", "-")
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def durations(path) -> list[str]:
    r = run("ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=duration", "-of", "json", str(path))
    return [s["duration"] for s in json.loads(r.stdout)["streams"]]


def analyser_complaints(path, told: bool = False) -> str:
    """What ffmpeg's demuxer and decoders say at level warning or above while reading all of the file,
    and its continuity check (which it logs at level debug); told: told it is MPEG-TS (a file of a few
    packets is too short for its probe: it may take it for MPEG-PS; and for its packet size, which it
    then says it takes to be 188, as it is) and every audio stream decoded."""
    told_args = ["-f", "mpegts"] if told else []
    r = run("ffmpeg", "-loglevel", "level+debug", *told_args, "-i", str(path), *(["-map", "0:a"] if told else []),
            "-f", "null", "-")
    said = "".join(line for line in r.stderr.decode().splitlines(True)
                   if re.search(r"\[(warning|error|fatal|panic)\] ", line) or "Continuity check failed" in line)
    if told:
        said = "".join(line for line in said.splitlines(True) if "Could not detect TS packet size" not in line)
    return said + ("" if r.returncode == 0 else f"exit {r.returncode}")


def video_pids(data: bytes, size: int) -> set[int]:
    """PIDs the input's PMTs list with a stream_type other than the kept audio and data ones."""
    kept_types = {0x03, 0x04, 0x0F, 0x11, 0x81, 0x87, 0x15, 0x86}
    pids = set()
    for streams_of in tsmedia.pmt_streams(data, size).values():
        pids |= {pid for pid, t in streams_of.items() if t not in kept_types and t != 0x06}
    return pids


@pytest.mark.parametrize("name", CASES)
def test_audio_and_data_only_every_packet_identical(name, tmp_path):
    src = tsmedia.make(name)
    data = src.read_bytes()
    size = packet_size(name)
    out, x = extract(data)
    assert x.format == "ts" and not x.warnings
    dst = tmp_path / ("out" + src.suffix)
    dst.write_bytes(out)
    kinds_in = [s["codec_type"] for s in streams(src)]
    kinds_out = [s["codec_type"] for s in streams(dst)]
    assert "video" in kinds_in
    assert kinds_out == [k for k in kinds_in if k in ("audio", "data")]
    for index in range(kinds_in.count("audio")):
        want = audio_packets(src, index)
        assert len(want) > 10
        assert audio_packets(dst, index) == want
    assert data_packets(dst) == data_packets(src)
    assert len(data_packets(src)) > 2 or name != "id3.ts"
    assert durations(dst) == durations(src)
    assert decode_errors(dst) == ""
    complaints = analyser_complaints(dst)
    assert "ontinuity" not in complaints and "PCR" not in complaints, complaints
    if name != "pmt_change.ts":  # ffmpeg finds the join of the two files' video out of order
        assert complaints == ""
    # No packet of a video PID carries payload; the PMTs list no video.
    dropped = video_pids(data, size)
    assert dropped
    for pid, packet in tsmedia.packets(out, size):
        assert pid not in dropped or not tsmedia.has_payload(packet), f"payload on video PID {pid}"
    for streams_of in tsmedia.pmt_streams(out, size).values():
        assert not set(streams_of) & dropped


def pcrs(data: bytes, size: int = 188) -> list[tuple[int, int]]:
    """(PID, PCR in 27 MHz) of each packet that has one."""
    found = []
    for pid, p in tsmedia.packets(data, size):
        if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10:
            base = int.from_bytes(p[6:11], "big") >> 7
            found.append((pid, base * 300 + ((p[10] & 1) << 8 | p[11])))
    return found


@pytest.mark.parametrize("name", ["h264_aac.ts", "pcr_on_audio.ts", "m2ts.m2ts"])
def test_the_pcr_stays_on_its_pid_at_most_100_ms_apart_with_the_counter_unchanged(name):
    data = tsmedia.make(name).read_bytes()
    size = packet_size(name)
    out, _ = extract(data)
    pcr_pids = {pid for pid, _ in pcrs(data, size)}
    assert {pid for pid, _ in pcrs(out, size)} == pcr_pids
    dropped = video_pids(data, size) & pcr_pids
    assert dropped
    for pid in pcr_pids:
        values = [v for p, v in pcrs(out, size) if p == pid]
        if pid not in dropped:  # the PCR of a kept PID comes as it came
            assert values == [v for p, v in pcrs(data, size) if p == pid]
            continue
        assert len(values) > 10
        gaps = [b - a for a, b in zip(values, values[1:])]
        assert max(gaps) <= 100 * 27000 and min(gaps) > 0
        # PCR-only packets (no payload) share one continuity counter (13818-1 §2.4.3.3).
        counters = {p[3] & 0x0F for q, p in tsmedia.packets(out, size) if q == pid}
        assert len(counters) == 1


def test_pcr_on_the_audio_pid_is_left_as_it_was():
    data = tsmedia.make("pcr_on_audio.ts").read_bytes()
    r = run("ffprobe", "-v", "error", "-show_programs", "-of", "json", str(tsmedia.make("pcr_on_audio.ts")))
    programs = {p["program_num"]: p for p in json.loads(r.stdout)["programs"]}
    audio_pid = int(programs[2]["streams"][0]["id"], 16)
    assert programs[2]["pcr_pid"] == audio_pid and programs[1]["pcr_pid"] != audio_pid
    out, _ = extract(data)
    want = [p for pid, p in tsmedia.packets(data) if pid == audio_pid]
    assert [p for pid, p in tsmedia.packets(out) if pid == audio_pid] == want


def test_pmt_version_change_is_followed():
    """The second half's PMT (version 1) lists AC-3 on another PID: its packets are kept from there on."""
    data = tsmedia.make("pmt_change.ts").read_bytes()
    out, _ = extract(data)
    counts_in, counts_out = tsmedia.pid_counts(data), tsmedia.pid_counts(out)
    assert counts_out[0x120] == counts_in[0x120] > 0 and counts_out[257] == counts_in[257] > 0
    versions = []
    for pid, p in tsmedia.packets(out):
        if pid == 0x1000 and p[1] & 0x40:
            versions.append(p[5 + 5] >> 1 & 0x1F)
    assert versions[0] == 0 and versions[-1] == 1


def test_m2ts_keeps_each_packets_4_byte_prefix():
    data = tsmedia.make("m2ts.m2ts").read_bytes()
    out, _ = extract(data)
    prefixes = {data[at : at + 192] for at in range(0, len(data), 192)}
    audio = [out[at : at + 192] for at in range(0, len(out), 192) if out[at + 5] & 0x1F == 0x11]  # PID 0x1100
    assert audio and all(packet in prefixes for packet in audio)


@pytest.mark.parametrize("name", ["h264_aac.ts", "m2ts.m2ts"])
def test_every_byte_split_gives_the_same_output(name):
    data = tsmedia.make(name).read_bytes()
    size = packet_size(name)
    small = data[: 160 * size]
    whole, _ = extract(small)
    assert tsmedia.pid_counts(whole, size)[0] > 0
    for cut in range(1, len(small)):
        x = AudioExtractor()
        out = x.feed(small[:cut]) + x.feed(small[cut:]) + x.finish()
        assert b"".join(out) == whole, cut


def test_random_pieces_give_the_same_output():
    data = tsmedia.make("two_audio.ts").read_bytes()
    whole, _ = extract(data, piece=len(data))
    rng = random.Random(27)
    for _ in range(5):
        x, out, at = AudioExtractor(), [], 0
        while at < len(data):
            n = rng.choice((1, 2, 187, 188, 189, 376, 1000, 65536))
            out += x.feed(memoryview(data)[at : at + n])
            at += n
        assert b"".join(out + x.finish()) == whole


def test_no_audio_is_refused():
    with pytest.raises(NoAudio, match="no audio packets.*h.264"):
        extract(tsmedia.make("video_only.ts").read_bytes())


def test_audio_only_input_passes_nearly_whole():
    """PCR on the audio PID, nothing to drop but the SDT: every other packet comes out as it came."""
    data = tsmedia.make("audio_only.ts").read_bytes()
    out, _ = extract(data)
    want = [p for pid, p in tsmedia.packets(data) if pid != 0x11]
    assert [p for _, p in tsmedia.packets(out)] == want


def test_truncated_inside_a_packet():
    data = tsmedia.make("h264_aac.ts").read_bytes()
    with pytest.raises(TruncatedInput, match=r"inside a packet at byte 75012 \(100 of 188 bytes\)"):
        extract(data[: 399 * 188 + 100])


def test_lost_sync_is_found_again_with_a_warning(tmp_path):
    data = tsmedia.make("h264_aac.ts").read_bytes()
    cut = 300 * 188
    damaged = data[:cut] + b"junk" * 30 + b"\x47" * 7 + data[cut:]  # 127 stray bytes between two packets
    out, x = extract(damaged, piece=4096)
    # Stray bytes after a packet look the same as bytes lost or added inside it (or inside the one before
    # it, the sync byte between them right by chance): those two packets are dropped.
    assert x.warnings == ["lost packet sync at byte 56400; found again at byte 56527 (503 bytes skipped from "
                          "byte 56024: the packets before the lost sync may hold the damage)"]
    assert out == extract(data[: cut - 2 * 188] + data[cut:])[0]  # all but those packets
    assert len(out) % 188 == 0
    for _ in tsmedia.packets(out):
        pass  # every packet in place
    dst = tmp_path / "out.ts"
    dst.write_bytes(out)
    assert [s["codec_type"] for s in streams(dst)] == ["audio"]


def test_garbage_after_sync_is_refused():
    data = tsmedia.make("h264_aac.ts").read_bytes()[: 50 * 188]
    with pytest.raises(MalformedInput, match="found no 5 packets in a row"):
        extract(data + bytes(range(256)).replace(b"G", b"g") * 5000)


def test_unknown_input_names_the_three_formats():
    with pytest.raises(UnsupportedInput, match="neither FLV, MP4 nor MPEG-TS"):
        extract(b"<html>" + b"x" * 1000)


def test_a_ts_of_one_packet_is_detected_at_the_end():
    data = tsmedia.make("audio_only.ts").read_bytes()
    with pytest.raises(NoAudio):  # one packet: the PAT; detected as TS, it has no audio
        extract(data[:188])


def seconds(lines: list[str]) -> list[float]:
    return [int(line.split(",")[2]) / 90000 for line in lines]  # copyts: pts in the 90 kHz time base


def frames_of(path, index: int) -> list[tuple[int, tuple[str, ...], bool]]:
    """(pts in 90 kHz ticks as the file has them, framemd5 fields without side data, whether the frame
    starts a PES) of each audio frame of stream `index`, from ffmpeg and ffprobe (told the format: a cut
    of a frame or two is too short for their probe)."""
    r = run("ffmpeg", "-v", "error", "-copyts", "-f", "mpegts", "-i", str(path), "-map", f"0:a:{index}", "-c", "copy",
            "-f", "framemd5", "-")
    assert r.returncode == 0, r.stderr.decode()
    lines = [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]
    r = run("ffprobe", "-v", "error", "-f", "mpegts", "-select_streams", f"a:{index}", "-show_entries", "packet=pts,pos",
            "-of", "csv", str(path))
    pos = [line.split(",")[2] for line in r.stdout.decode().splitlines() if line.startswith("packet")]
    assert len(pos) == len(lines)
    fields = [tuple(f.strip() for f in line.split(",")[:6]) for line in lines]
    return [(int(f[2]), f, p != "N/A") for f, p in zip(fields, pos)]


def frame_cut_cases(name: str) -> list[tuple[int, int | None]]:
    """Seeks (ms) that cut inside PES, at the first and the last frame, and at or past the end."""
    frames = frames_of(tsmedia.make(name), 0)
    origin = frames[0][0]
    inside = [pts - origin for pts, _, starts in frames if not starts]
    assert len(inside) > 20
    quarter = [inside[len(inside) * k // 4] for k in (1, 2, 3)]
    last = frames[-1][0] - origin
    return [(0, None), (quarter[0] // 90, None), (quarter[1] // 90, quarter[2] // 90 + 1), (last // 90, None),
            (quarter[0] // 90 + 1, quarter[1] // 90), (0, quarter[0] // 90 + 1), (quarter[2] // 90, last // 90 + 100)]


@pytest.mark.parametrize("name", ["h264_aac.ts", "mpeg2_mp2.ts", "hevc_ac3.ts", "two_audio.ts"])
def test_seek_cuts_at_audio_frame_boundaries(name, tmp_path):
    """ADTS AAC, MP2 and AC-3: the output's frames are exactly the input's whose time (from the first
    audio frame's, as ffmpeg reads them) lies in [start, end), for cuts inside PES and at the ends; the
    cut PES are written anew (PTS moved on) and ffmpeg finds nothing wrong with the packets."""
    src = tsmedia.make(name)
    data = src.read_bytes()
    audio_streams = [s for s in streams(src) if s["codec_type"] == "audio"]
    inputs = [frames_of(src, index) for index in range(len(audio_streams))]
    origin = min(frames[0][0] for frames in inputs)
    for start, end in frame_cut_cases(name):
        out, _ = extract(data, piece=4096, ts_seek=SeekRange(start, end, True))
        dst = tmp_path / f"cut-{start}-{end}.ts"
        dst.write_bytes(out)
        wants = [[f for pts, f, _ in frames if start * 90 <= pts - origin and (end is None or pts - origin < end * 90)]
                 for frames in inputs]
        if not all(wants):  # (two streams: the last frame of the first is past the second's last)
            assert name == "two_audio.ts" and any(wants)
            continue
        for index, want in enumerate(wants):
            assert [f for _, f, _ in frames_of(dst, index)] == want, (start, end, index)
        complaints = analyser_complaints(dst, told=True)  # decoding included
        assert complaints == "", (start, end, complaints)
        # The tables go out once, just before the audio; nothing of the PCR or the tables before them.
        kinds = [pid for pid, _ in tsmedia.packets(out)]
        assert kinds[:2] == [0, 0x1000]


def test_a_cut_pes_gets_the_exact_time_of_its_first_frame(tmp_path):
    """AAC at 44.1 kHz: a frame lasts 1024 / 44100 s, 2089.8 ticks of 90 kHz. ffmpeg times the frames
    inside a PES by adding whole ticks; the PTS of a cut PES is its first frame's exact time, from the
    samples before it, rounded once. So the judge here times each input frame by the PTS of the PES it
    is in (ffprobe's, for the frames that start one) plus 1024 samples a frame before it."""
    src = tsmedia.make("aac_44100.ts")
    frames = frames_of(src, 0)
    rate = int(next(s for s in streams(src) if s["codec_type"] == "audio")["sample_rate"])
    assert rate == 44100
    exact, pes_pts, k = [], None, 0
    for pts, fields, starts in frames:
        pes_pts, k = (pts, 0) if starts else (pes_pts, k + 1)
        exact.append((pes_pts + round(k * 1024 * 90000 / rate), fields[3:]))  # time; duration, size, md5
    origin = exact[0][0]
    inside = [t - origin for (t, _), (_, _, starts) in zip(exact, frames) if not starts]
    for t in inside[5::9]:
        start = t // 90
        out, _ = extract(src.read_bytes(), ts_seek=SeekRange(start, None, True))
        dst = tmp_path / "cut.ts"
        dst.write_bytes(out)
        want = [(t, rest) for t, rest in exact if t - origin >= start * 90]
        got = frames_of(dst, 0)
        assert [f[3:] for _, f, _ in got] == [rest for _, rest in want]
        assert got[0][0] == want[0][0]  # the cut PES's PTS: its first frame's exact time
        assert analyser_complaints(dst, told=True) == ""


@pytest.mark.parametrize("start,end", [(1000, 2000), (1500, None), (0, 1200)])
def test_seek_cuts_other_audio_at_pes_boundaries_by_pts(start, end, tmp_path):
    """AAC in M2TS as ffmpeg writes it (a private stream known as audio by its PES only) is cut whole PES
    at a time: those whose PTS lies in [start, end)."""
    src = tsmedia.make("m2ts.m2ts")
    data = src.read_bytes()
    out, _ = extract(data, ts_seek=SeekRange(start, end, True))
    dst = tmp_path / "cut.m2ts"
    dst.write_bytes(out)
    want, got = audio_packets(src, 0, copyts=True), audio_packets(dst, 0, copyts=True)
    want, got = [line.split(", S=")[0] for line in want], [line.split(", S=")[0] for line in got]
    first = seconds(want)[0]
    at = want.index(got[0])
    assert got == want[at : at + len(got)]  # a run of the input's frames, unchanged
    times = [t - first for t in seconds(got)]
    # Whole PES are kept, those whose PTS (their first frame's) lies in [start, end); a PES of
    # ffmpeg's holds up to about 0.35 s of AAC frames at 64 kbit/s.
    assert start / 1000 <= times[0] < start / 1000 + 0.4
    if end is None:
        assert got[-1] == want[-1]
    else:
        assert end / 1000 - 0.4 <= times[-1] < end / 1000 + 0.4
        assert seconds(want[at + len(got) :])[0] - first >= end / 1000  # the next PES starts at or after end
    assert decode_errors(dst) == ""


def test_seek_past_the_end():
    with pytest.raises(SeekPastEnd):
        extract(tsmedia.make("h264_aac.ts").read_bytes(), ts_seek=SeekRange(60000, None, True))


def two_packet_pmts(data: bytes) -> bytes:
    """data with each PMT (ffmpeg's: one packet on PID 0x1000, pointer 0) made two packets long by a
    240-byte private descriptor in its program_info, CRC made anew; continuity counted anew."""
    out, cc = [], 0
    for pid, p in tsmedia.packets(data):
        if pid != 0x1000:
            out.append(p)
            continue
        length = (p[6] & 0x0F) << 8 | p[7]
        section = bytearray(p[5 : 5 + 3 + length - 4])
        info = (section[10] & 0x0F) << 8 | section[11]
        section[12 + info : 12 + info] = b"\x80\xf0" + bytes(range(240))
        section[10:12] = (0xF000 | (info + 242)).to_bytes(2, "big")
        section[1:3] = (0xB000 | (len(section) + 4 - 3)).to_bytes(2, "big")
        payload = b"\x00" + bytes(section) + tsmedia.crc32_mpeg2(bytes(section)).to_bytes(4, "big")
        payload += b"\xff" * (368 - len(payload))
        for part, start in ((payload[:184], 0x40), (payload[184:], 0)):
            out.append(bytes((0x47, start | 0x10, 0x00, 0x10 | cc)) + part)
            cc = (cc + 1) & 15
    return b"".join(out)


def test_pmt_sections_spanning_two_packets(tmp_path):
    src = tmp_path / "in.ts"
    src.write_bytes(two_packet_pmts(tsmedia.make("h264_aac.ts").read_bytes()))
    assert analyser_complaints(src) == ""
    out, _ = extract(src.read_bytes(), piece=1000)
    dst = tmp_path / "out.ts"
    dst.write_bytes(out)
    assert [s["codec_type"] for s in streams(dst)] == ["audio"]
    assert audio_packets(dst) == audio_packets(src)
    assert analyser_complaints(dst) == ""
    # Each PMT copy kept leaves as two packets again, its descriptor kept, video gone, its CRC right.
    pmt = [p for pid, p in tsmedia.packets(out) if pid == 0x1000]
    starts = [p for p in pmt if p[1] & 0x40]
    assert len(pmt) == 2 * len(starts) and len(starts) > 2
    assert all(pmt[i][1] & 0x40 and not pmt[i + 1][1] & 0x40 for i in range(0, len(pmt), 2))
    section = pmt[0][5:] + pmt[1][4:]
    section = section[: 3 + ((section[1] & 0x0F) << 8 | section[2])]
    assert tsmedia.crc32_mpeg2(section) == 0
    assert bytes(range(240)) in section and b"\x1b\xe1\x00" not in section and b"\x0f\xe1\x01" in section


def test_scte35_sections_pass_as_they_came(tmp_path):
    """A stream of type 0x86 (SCTE-35 splice information, sections rather than PES): its packets come
    out byte for byte, and the PMT still lists it; the video goes. (ffmpeg 5.1 reads the stream but
    does not name its codec, so the judge here is the tests' packet walker.)"""
    src = tsmedia.make("scte35.ts")
    data = src.read_bytes()
    out, x = extract(data, piece=777)
    assert not x.warnings
    want = [p for pid, p in tsmedia.packets(data) if pid == 258]
    assert len(want) == 5 and [p for pid, p in tsmedia.packets(out) if pid == 258] == want
    assert tsmedia.pmt_streams(out) == {0x1000: {257: 0x0F, 258: 0x86}}
    dst = tmp_path / "out.ts"
    dst.write_bytes(out)
    assert [s.get("codec_type") for s in streams(dst)] == ["audio", None]  # ffprobe gives no type for it
    assert audio_packets(dst) == audio_packets(src)


def packet_times(data: bytes) -> list[float | None]:
    """Each packet's time in seconds by 13818-1's definition (§2.4.2.2: a byte's arrival time is
    interpolated between the PCRs around it by its position), from the tests' own walker; before the
    first PCR and after the last, the rate of the first or last two goes on. One timebase only."""
    found = [(index, value) for index, (pid, p) in enumerate(tsmedia.packets(data))
             if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10
             for value in [(int.from_bytes(p[6:11], "big") >> 7) * 300 + ((p[10] & 1) << 8 | p[11])]]
    assert len(found) > 2 and all(v1 > v0 for (_, v0), (_, v1) in zip(found, found[1:]))
    count, times = len(data) // 188, []
    pairs = list(zip(found, found[1:]))
    k = 0
    for i in range(count):
        while k < len(pairs) - 1 and i > pairs[k][1][0]:
            k += 1
        (i0, v0), (i1, v1) = pairs[k]
        times.append((v0 + (v1 - v0) * (i - i0) / (i1 - i0)) / 27e6)
    return times


def as_m2ts(data: bytes, times: list[float]) -> bytes:
    """The TS as M2TS, each packet's 4-byte prefix its arrival time (27 MHz, 30 bits) as `times` say."""
    return b"".join((round(t * 27e6) & 0x3FFFFFFF).to_bytes(4, "big") + data[i * 188 : i * 188 + 188]
                    for i, t in enumerate(times))


@pytest.mark.parametrize("name,pcr_on", [("h264_aac.ts", "video"), ("audio_only.ts", "audio"), ("two_audio.ts", "video")])
def test_pat_and_pmt_copies_are_thinned_to_one_per_0_5_s(name, pcr_on, tmp_path):
    """A muxer repeating its PAT and PMT every few packets; its packets given their PCR time (the tests'
    own) as M2TS arrival times, which the copies the filter makes keep, so each output copy says when
    its input copy came. Kept: the first copy, then at most 0.5 s apart (DVB's TR 101 290 limit), and far
    fewer than came; ffmpeg reads the result without a complaint."""
    data = tsmedia.with_dense_psi(tsmedia.make(name).read_bytes(), every=12)
    types = tsmedia.pmt_streams(data)[0x1000]
    assert {"video" if types[pid] == 0x1B else "audio" for pid, _ in pcrs(data)} == {pcr_on}
    src = tmp_path / "in.m2ts"
    src.write_bytes(as_m2ts(data, packet_times(data)))
    assert analyser_complaints(src) == ""
    out, _ = extract(src.read_bytes(), piece=1000)
    dst = tmp_path / "out.m2ts"
    dst.write_bytes(out)
    assert analyser_complaints(dst) == ""
    assert audio_packets(dst) == audio_packets(src)

    def copies(m2ts: bytes, pid: int) -> list[tuple[float, bytes]]:
        return [(int.from_bytes(m2ts[at : at + 4], "big") / 27e6, m2ts[at + 4 : at + 192])
                for at in range(0, len(m2ts), 192) if (m2ts[at + 5] & 0x1F) << 8 | m2ts[at + 6] == pid]

    for pid in (0, 0x1000):
        came, kept = copies(src.read_bytes(), pid), copies(out, pid)
        assert kept[0][0] == came[0][0]
        if pid == 0:
            assert {p[4:] for _, p in kept} == {p[4:] for _, p in came}  # the PAT as it came
        times = [t for t, _ in kept] + [came[-1][0]]  # up to the input's last copy
        assert max(b - a for a, b in zip(times, times[1:])) <= 0.5
        assert len(came) > 2 * len(kept) > 2 * 4
