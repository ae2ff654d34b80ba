"""How long the moov rewrite of a long file holds the proxy's event loop.

Builds the moov of a 2-hour 60 fps H.264 + AAC file (432,000 video samples, 337,500 audio samples,
one chunk a second per track, interleaved) and times the feed that completes it: parse, plan, and
the new moov. Prints the median of several runs.

    .venv/bin/python scripts/bench_moov.py [--hours 2] [--fps 60]
"""

import argparse
import random
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "tests")]

from bigmp4 import full  # noqa: E402
from extractor import AudioExtractor  # noqa: E402
from mp4tools import box  # noqa: E402


def long_moov(hours: float, fps: int) -> tuple[bytes, int]:
    rng = random.Random(1)
    seconds = int(hours * 3600)
    v_samples, a_per_chunk = seconds * fps, 47  # AAC at 48 kHz: ~46.9 frames a second
    a_samples = seconds * a_per_chunk
    v_sizes = [rng.randrange(2000, 60000) for _ in range(v_samples)]
    a_sizes = [rng.randrange(300, 400) for _ in range(a_samples)]

    def tables(sizes, per_chunk, offsets, extra=b""):
        return (full(b"stts", 0, struct.pack(">III", 1, len(sizes), 1))
                + full(b"stsc", 0, struct.pack(">IIII", 1, 1, per_chunk, 1))
                + full(b"stsz", 0, struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes))
                + full(b"co64", 0, struct.pack(f">I{len(offsets)}Q", len(offsets), *offsets)) + extra)

    def trak(tid, handler, stbl):
        mdia = full(b"mdhd", 0, bytes(20)) + full(b"hdlr", 0, bytes(4) + handler + bytes(13))
        return box(b"trak", full(b"tkhd", 0, struct.pack(">IIII", 0, 0, tid, 0) + struct.pack(">I", seconds * 1000) + bytes(60))
                   + box(b"mdia", mdia + box(b"minf", box(b"stbl", full(b"stsd", 0, bytes(4)) + stbl))))

    offsets_v, offsets_a, pos = [], [], 64 << 20  # past the moov
    for s in range(seconds):
        offsets_v.append(pos)
        pos += sum(v_sizes[s * fps : (s + 1) * fps])
        offsets_a.append(pos)
        pos += sum(a_sizes[s * a_per_chunk : (s + 1) * a_per_chunk])
    stss = full(b"stss", 0, struct.pack(f">I{seconds}I", seconds, *range(1, v_samples, fps)))
    moov = box(b"moov", full(b"mvhd", 0, struct.pack(">IIII", 0, 0, 1000, seconds * 1000) + bytes(80))
               + trak(1, b"vide", tables(v_sizes, fps, offsets_v, stss)) + trak(2, b"soun", tables(a_sizes, a_per_chunk, offsets_a)))
    return box(b"ftyp", b"isom\0\0\0\0") + moov, a_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2)
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    head, a_samples = long_moov(args.hours, args.fps)
    times = []
    for _ in range(args.runs):
        x = AudioExtractor()
        start = time.perf_counter()
        out = x.feed(head)
        times.append(time.perf_counter() - start)
    print(f"moov of a {args.hours:g} h {args.fps} fps file: {len(head) / 2**20:.1f} MiB, "
          f"{a_samples} audio samples; new moov {len(out[0]) / 2**20:.2f} MiB")
    print(f"moov rewrite (parse + plan + build), median of {args.runs}: {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")


if __name__ == "__main__":
    main()
