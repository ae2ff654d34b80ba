"""An MP4 above 4 GiB, made on the fly by the origin (never on disk), through a real mitmdump.

The audio alone passes 4 GiB, so the output must use co64 offsets and a 64-bit mdat header; the
client pipes it straight into ffmpeg, which must read every audio byte in order; the proxy's peak
memory must stay far below the file's size.
"""

import subprocess

import pytest

from bigmp4 import BigMp4
from helpers import Proxy, drain, http_stream
from mp4tools import boxes

pytestmark = pytest.mark.e2e


def test_output_above_4_gib(origin, tmp_path):
    big = BigMp4(chunks=4200)  # 4.1 GiB of audio among 4.4 GiB of input
    assert big.audio_bytes > 1 << 32
    origin.virtual["/big.mov"] = (big.size, big.pieces, "video/quicktime")
    proxy = Proxy(tmp_path / "big.log", "--mode", f"reverse:{origin.url}")
    try:
        status, headers, body = http_stream(proxy.port, "/big.mov?ali_audio_only=1", timeout=120)
        assert status == 200 and headers["content-type"] == "audio/mp4"
        ffmpeg = subprocess.Popen(["ffmpeg", "-v", "error", "-i", "pipe:0", "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        head = bytearray()

        def sink(piece: bytes) -> None:
            if len(head) < 1 << 20:
                head.extend(piece[: (1 << 20) - len(head)])
            ffmpeg.stdin.write(piece)

        received, clean = drain(body, sink)
        ffmpeg.stdin.close()
        md5 = ffmpeg.stdout.read().decode().strip()
        assert ffmpeg.wait(120) == 0
        peak = proxy.peak_rss()
    finally:
        proxy.stop()
        del origin.virtual["/big.mov"]

    assert clean
    top = _top_level(bytes(head))
    assert [kind for kind, *_ in top] == [b"ftyp", b"moov", b"mdat"]
    moov, mdat = top[1], top[2]
    assert mdat[2] == 16 and mdat[3] == 16 + big.audio_bytes  # a 64-bit header
    moov_bytes = bytes(head[moov[1] : moov[1] + moov[3]])
    assert b"co64" in moov_bytes and b"stco" not in moov_bytes and b"vide" not in moov_bytes
    assert received == mdat[1] + mdat[3]
    assert md5 == f"MD5={big.audio_md5()}"
    print(f"\n{big.size / 2**30:.2f} GiB in, {received / 2**30:.2f} GiB out; proxy peak RSS {peak:.0f} MiB")
    assert peak < 400


def _top_level(head: bytes):
    """Top-level boxes of the output's first bytes; the mdat's payload lies beyond them."""
    out, pos = [], 0
    while pos + 16 <= len(head):
        kind = head[pos + 4 : pos + 8]
        top = next(boxes(head, pos, None))
        out.append(top)
        if kind == b"mdat":
            break
        pos += top[3]
    return out
