"""The MPEG-TS filter on hostile input: any input ends in output or an error of our hierarchy, in
bounded time and memory, and no packet of a stream the tables call video ever carries payload out."""

from __future__ import annotations

import struct

from hypothesis import given, settings, strategies as st

import tsmedia
from extractor import AudioExtractor, ExtractError, SeekRange
from extractor.ts.filter import MAX_RESYNC

KEPT_TYPES = {0x03, 0x04, 0x0F, 0x11, 0x1C, 0x2D, 0x2E, 0x81, 0x87, 0x15, 0x86}
VIDEO_TYPES = [0x01, 0x02, 0x10, 0x1B, 0x24, 0x33, 0x42, 0x90, 0xEA]


def run_core(data: bytes, pieces: list[int]) -> tuple[bytes, ExtractError | None]:
    x = AudioExtractor()
    out, pos, error = [], 0, None
    try:
        for n in pieces:
            out += x.feed(data[pos : pos + n])
            pos += n
        out += x.feed(data[pos:])
        out += x.finish()
    except ExtractError as e:
        error = e
    out = b"".join(out)
    # PAT, audio and PCR packets leave one for one; a PMT's sections leave as one run per packet.
    assert len(out) <= 2 * len(data) + 2 * 188
    assert len(out) % 188 == 0
    return out, error


def payload_pids(out: bytes) -> set[int]:
    return {pid for pid, p in tsmedia.packets(out) if tsmedia.has_payload(p)}


def section(table: int, extension: int, body: bytes) -> bytes:
    head = bytes((table,)) + struct.pack(">HHBBB", 0xB000 | (len(body) + 9), extension, 0xC1, 0, 0)
    s = head + body
    return s + struct.pack(">I", tsmedia.crc32_mpeg2(s))


def psi_packet(pid: int, sec: bytes, cc: int) -> bytes:
    payload = b"\x00" + sec
    return bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | cc)) + payload + b"\xff" * (184 - len(payload))


streams_st = st.lists(st.tuples(st.integers(0x20, 0x1FFE), st.sampled_from(sorted(KEPT_TYPES) + VIDEO_TYPES)),
                      min_size=1, max_size=5, unique_by=lambda s: s[0])
packet_st = st.tuples(st.integers(0, 4), st.binary(min_size=184, max_size=184), st.integers(0, 255))
splits = st.lists(st.integers(min_value=1, max_value=400), max_size=8)


@settings(deadline=None)
@given(streams_st, st.lists(packet_st, max_size=40), splits, st.integers(0x20, 0x1FFE))
def test_made_up_streams_never_pass_video(streams, packets, pieces, pcr_pid):
    """A PAT and a PMT of random streams, then packets of random content on their PIDs."""
    pmt_pid = 0x1000 if all(pid != 0x1000 for pid, _ in streams) else 0x1001
    body = struct.pack(">HH", 0xE000 | pcr_pid, 0xF000)
    for pid, stream_type in streams:
        body += bytes((stream_type,)) + struct.pack(">HH", 0xE000 | pid, 0xF000)
    data = psi_packet(0, section(0, 1, struct.pack(">HH", 1, 0xE000 | pmt_pid)), 0)
    data += psi_packet(pmt_pid, section(2, 1, body), 0)
    for index, content, flags in packets:
        pid = streams[index % len(streams)][0] if index < 4 else pcr_pid
        data += bytes((0x47, pid >> 8 | flags & 0x40, pid & 0xFF, flags & 0x3F)) + content
    out, _ = run_core(data, pieces)
    kept = {pid for pid, t in streams if t in KEPT_TYPES}
    assert payload_pids(out) <= kept | {0, pmt_pid}


REAL = tsmedia.make("h264_aac.ts").read_bytes()[: 200 * 188]
TABLES = {at for at in range(0, len(REAL), 188) if (REAL[at + 1] & 0x1F) << 8 | REAL[at + 2] in (0, 0x1000)}


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(REAL)), splits)
def test_mutated_and_truncated_real_file(mutations, length, pieces):
    """Bytes of a real file changed (outside its PAT and PMT, which stay the judge's truth) and its end
    cut anywhere: audio (PID 257), tables and PCR-only packets come out, nothing else with payload."""
    data = bytearray(REAL)
    for at, value in mutations:
        if at - at % 188 not in TABLES:
            data[at] = value
    out, _ = run_core(bytes(data[:length]), pieces)
    assert payload_pids(out) <= {0, 0x1000, 257}


@settings(deadline=None)
@given(st.binary(max_size=3000), splits)
def test_random_bytes_after_a_real_start(tail, pieces):
    run_core(REAL[: 20 * 188] + tail, pieces)
    run_core(b"\x47" + tail, pieces)


def test_endless_garbage_is_refused_within_the_resync_budget():
    junk = bytes(range(256)).replace(b"G", b"g") * (2 * MAX_RESYNC // 256)
    out, error = run_core(REAL[: 20 * 188] + junk, [188 * 20] + [65536] * 40)
    assert error is not None and "found no 5 packets in a row" in str(error)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, 4000), st.one_of(st.none(), st.integers(1, 4000)), splits)
def test_mutated_real_file_with_seeking(mutations, start, end, pieces):
    data = bytearray(REAL)
    for at, value in mutations:
        if at - at % 188 not in TABLES:
            data[at] = value
    x = AudioExtractor(ts_seek=SeekRange(start, end if end is None or end > start else None, True))
    out, pos = [], 0
    try:
        for n in pieces:
            out += x.feed(bytes(data[pos : pos + n]))
            pos += n
        out += x.feed(bytes(data[pos:]))
        out += x.finish()
    except ExtractError:
        pass
    assert payload_pids(b"".join(out)) <= {0, 0x1000, 257}


def test_memory_stays_bounded_on_a_long_input():
    """Twenty copies of a file back to back, fed in 64 KiB pieces with the output thrown away: what the
    filter holds does not grow with the input."""
    import tracemalloc

    one = tsmedia.make("h264_aac.ts").read_bytes()
    x = AudioExtractor()
    tracemalloc.start()
    try:
        for copy in range(20):
            for at in range(0, len(one), 65536):
                x.feed(one[at : at + 65536])
            if copy == 1:
                after_two = tracemalloc.get_traced_memory()[0]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held - after_two < 64 << 10
