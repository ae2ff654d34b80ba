"""Judges the tests use: ffmpeg/ffprobe on files, a raw HTTP/1.1 client that sees the chunk framing,
and an independent FLV tag walker (not the product's) to look inside outputs."""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT / "tests" / "media"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
# Every audio-only response streamed (chunked, the core fed as the body passes), as for origins
# without ranges: what the tests of the stream path run with. The file path has tests of its own.
STREAM_PATH = ("--set", "audio_only_origin_ranges=false")

sys.path.insert(0, str(ROOT))
from extractor import AudioExtractor  # noqa: E402
from extractor.spool import TempFileSpool  # noqa: E402


def extract(data: bytes, piece: int = 65536, spool_factory=TempFileSpool, max_spool: int = 1 << 30, **kw) -> bytes:
    """The core's whole output for `data` fed in pieces of `piece` bytes (spooling allowed)."""
    x = AudioExtractor(spool_factory=spool_factory, max_spool=max_spool, **kw)
    out = []
    for i in range(0, len(data), piece or 1):
        out += x.feed(data[i : i + piece])
    return b"".join(out + x.finish())


def extract_in_random_pieces(data: bytes, seed: int, sizes=(1, 5, 8, 16, 333, 4096, 65536)) -> bytes:
    """Like extract, with piece sizes drawn at random: the output must not depend on the split."""
    rng = random.Random(seed)
    x, pos, out = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 30), 0, []
    while pos < len(data):
        n = rng.choice(sizes)
        out += x.feed(data[pos : pos + n])
        pos += n
    return b"".join(out + x.finish())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _rss_or_zero(pid: int, field: str = "VmRSS") -> float:
    try:
        return rss_mib(pid, field)
    except (OSError, StopIteration):  # (a worker that has just ended)
        return 0.0


class Proxy:
    """mitmdump with our addon on 127.0.0.1, its log captured to a file that can be read."""

    def __init__(self, log_path: Path, *args: str, script: Path = ROOT / "addon" / "audio_only.py",
                 verbosity: str = "info"):
        self.port = free_port()
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        cmd = [str(MITMDUMP), "-s", str(script), "--listen-host", "127.0.0.1",
               "-p", str(self.port), "--set", "flow_detail=0", "--set", f"termlog_verbosity={verbosity}", *args]
        self.process = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"mitmdump did not start: {log_path.read_text()}")
        # With worker processes (audio_only_workers), the edge is up once they answer (a request that
        # came before waits for its worker: a test timing its first request would time their start).
        # (mitmproxy 12 may take connections before it has loaded the script.)
        if workers_asked(args):
            log = self.wait_for_log("worker processes answer", timeout=30)
            assert "worker processes answer" in log, log

    def children(self) -> list[int]:
        """The pids of mitmdump's child processes."""
        return children_of(self.process.pid)

    def worker_pids(self) -> list[int]:
        """mitmdump's worker processes (addon/server/worker_main.py)."""
        return [pid for pid in self.children() if is_worker(pid)]

    def pids(self) -> list[int]:
        """The edge's processes: mitmdump, then its workers (where a response's spool and memory are
        when audio_only_workers is on)."""
        return [self.process.pid, *self.worker_pids()]

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")  # (a URL's raw bytes are logged as they came)

    def wait_for_log(self, text: str, timeout: float = 10, times: int = 1) -> str:
        """The log once `text` is in it `times` times (or once `timeout` has passed)."""
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < times and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def rss(self, field: str = "VmRSS") -> float:
        """mitmdump's own resident memory (now, or its peak: VmHWM), in MiB."""
        return rss_mib(self.process.pid, field)

    def edge_rss(self) -> float:
        """The edge's resident memory now: mitmdump's and its workers' together, in MiB (what a response
        costs is the growth of this, wherever it is answered)."""
        return sum(_rss_or_zero(pid) for pid in self.pids())

    def peak_rss(self) -> float:
        """The highest peak resident memory of any one process of the edge, in MiB: a response's memory
        is in the process that answers it (mitmdump, or the worker its file's URL leads to)."""
        return max(_rss_or_zero(pid, "VmHWM") for pid in self.pids())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log_file.close()


WORKER_MAIN = "addon/server/worker_main.py"


def workers_asked(args) -> int:
    """The audio_only_workers a mitmdump command line asks for (the last --set of it), else the default."""
    for arg in reversed(args):
        if arg.startswith("audio_only_workers="):
            return int(arg.partition("=")[2])
    from addon.options import DEFAULT_WORKERS
    return DEFAULT_WORKERS


def children_of(pid: int) -> list[int]:
    """A process's children (each process's parent, read from Linux's /proc/<pid>/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # (a process that ended meanwhile)
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def is_worker(pid: int) -> bool:
    """Whether the process runs our worker (its command line names worker_main.py)."""
    try:
        return WORKER_MAIN in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


def all_workers() -> list[int]:
    """Every process on the machine that runs our worker."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and is_worker(int(p.name))]


def run(*cmd, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=input, capture_output=True, timeout=120)


def streams(path: Path) -> list[dict]:
    r = run("ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path))
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)["streams"]


def audio_packets(path: Path, index: int = 0, copyts: bool = False) -> list[str]:
    """One line per audio packet (dts, pts, duration, size, md5) from ffmpeg's framemd5 muxer; with
    copyts, the timestamps as the file has them (ffmpeg otherwise starts them at 0)."""
    r = run("ffmpeg", "-v", "error", *(["-copyts"] if copyts else []), "-i", str(path), "-map", f"0:a:{index}",
            "-c", "copy", "-f", "framemd5", "-")
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
    """(9-byte header, tags) of a complete FLV; asserts the structure is consistent. A walker of the
    tests' own, not extractor/flv/tags.py: a judge that shares the product's reader shares its bugs."""
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


def drain(body, sink=None) -> tuple[int, bool]:
    """Read an http_stream body to its end: (bytes received, whether it ended cleanly); each piece goes
    to sink(piece) when given."""
    size = 0
    while True:
        try:
            piece = next(body)
        except StopIteration as end:
            return size, end.value
        size += len(piece)
        if sink:
            sink(piece)


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
