"""Judges the tests use: ffmpeg/ffprobe on files, a raw HTTP/1.1 client that sees the chunk framing,
and an independent FLV tag walker (not the product's) to look inside outputs."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "media"


def run(*cmd, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=input, capture_output=True, timeout=120)


def streams(path: Path) -> list[dict]:
    r = run("ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path))
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)["streams"]


def audio_packets(path: Path, index: int = 0) -> list[str]:
    """One line per audio packet (dts, pts, duration, size, md5) from ffmpeg's framemd5 muxer."""
    r = run("ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:a:{index}", "-c", "copy", "-f", "framemd5", "-")
    assert r.returncode == 0, r.stderr.decode()
    return [line for line in r.stdout.decode().splitlines() if not line.startswith("#")]


def decode_errors(path: Path) -> str:
    """What ffmpeg complains about while decoding every audio stream ('' when clean)."""
    r = run("ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-map", "0:a", "-f", "null", "-")
    return r.stderr.decode() + ("" if r.returncode == 0 else f"exit {r.returncode}")


def assert_same_audio(original: Path, extracted: Path) -> None:
    """The judgement every output gets: audio only, every packet identical, clean decode."""
    kinds = [s["codec_type"] for s in streams(extracted)]
    assert kinds and set(kinds) == {"audio"}, kinds
    want, got = audio_packets(original), audio_packets(extracted)
    assert len(want) > 10
    assert got == want
    assert decode_errors(extracted) == ""


@dataclass
class FlvTag:
    type: int
    timestamp: int
    data: bytes
    previous_size: int  # the PreviousTagSize that follows the tag


def flv_tags(data: bytes) -> tuple[bytes, list[FlvTag]]:
    """(9-byte header, tags) of a complete FLV; asserts the structure is consistent."""
    assert data[:3] == b"FLV"
    offset = struct.unpack_from(">I", data, 5)[0]
    assert struct.unpack_from(">I", data, offset)[0] == 0
    pos, tags = offset + 4, []
    while pos < len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        end = pos + 11 + size
        assert end + 4 <= len(data), "truncated tag"
        tags.append(FlvTag(data[pos] & 0x1F, ts, data[pos + 11 : end], struct.unpack_from(">I", data, end)[0]))
        pos = end + 4
    return data[:9], tags


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    clean: bool  # the body ended as its framing says (terminating chunk, or all of Content-Length)
    chunks: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each chunk


def http_stream(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
                timeout: float = 30, host: str = "127.0.0.1"):
    """One HTTP/1.1 request on a fresh connection to 127.0.0.1:port: (status, headers, body) where body
    yields the body's pieces as they arrive and finally returns whether the body ended cleanly (a
    terminating chunk, or all of Content-Length)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    hdrs: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        hdrs[k.strip().lower()] = v.strip()

    def body():
        try:
            if method == "HEAD" or status in (204, 304):
                return True
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                return (yield from _chunks(reader))
            if "content-length" in hdrs:
                left = int(hdrs["content-length"])
                while left and (piece := reader.read(min(left, 1 << 20))):
                    left -= len(piece)
                    yield piece
                return left == 0
            while piece := reader.read(1 << 20):
                yield piece
            return True
        finally:
            sock.close()

    return status, hdrs, body()


def _chunks(reader):
    while True:
        size_line = reader.readline()
        if not size_line.endswith(b"\r\n"):
            return False
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return reader.readline() == b"\r\n"
        chunk = reader.read(size)
        if len(chunk) < size or reader.read(2) != b"\r\n":
            if chunk:
                yield chunk
            return False
        yield chunk


def http_get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
             timeout: float = 30, host: str = "127.0.0.1") -> Reply:
    """http_stream, with the whole body read; chunk arrival times are kept for latency checks."""
    status, hdrs, body = http_stream(port, path, headers, method, timeout, host)
    chunks, arrivals = [], []
    while True:
        try:
            chunks.append(next(body))
            arrivals.append(time.monotonic())
        except StopIteration as end:
            return Reply(status, hdrs, b"".join(chunks), end.value, chunks, arrivals)
