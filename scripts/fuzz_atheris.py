"""Coverage-guided fuzzing of the cores (MP4, FLV, MPEG-TS) with atheris (libFuzzer), started by scripts/fuzz.

Each input is split into a piece size (its last two bytes) and a body, and fed as a proxy would feed
it. The property: the core ends in output or an error of its own hierarchy (never another exception),
and the output never outgrows the input (MPEG-TS: twice the input, since the sections a PMT packet
completes leave as a run of packets of their own). libFuzzer itself reports hangs (-timeout) and
memory blow-ups (-rss_limit_mb).
"""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
with atheris.instrument_imports():
    from extractor import AudioExtractor, ExtractError
    from extractor.spool import TempFileSpool


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    piece = provider.ConsumeIntInRange(1, 4096)
    body = provider.ConsumeBytes(provider.remaining_bytes())
    x = AudioExtractor(max_header=1 << 16, spool_factory=TempFileSpool, max_spool=1 << 20)
    out = 0
    try:
        for i in range(0, len(body), piece):
            out += sum(map(len, x.feed(body[i : i + piece])))
        out += sum(map(len, x.finish()))
    except ExtractError:
        pass
    finally:
        x.close()
    limit = 2 * len(body) + 376 if x.format == "ts" else len(body) + 64
    if out > limit:
        raise AssertionError(f"{out} bytes out of {len(body)} in ({x.format})")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
