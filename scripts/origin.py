"""A small origin server on 127.0.0.1 for the demo and the end-to-end tests.

Serves files from one folder at /NAME. Query parameters shape the answer, so a test can ask for
each origin behaviour through the proxy:
  chunk=N      Transfer-Encoding: chunked, N bytes per chunk (default: Content-Length)
  live=1       FLV paced in real time by tag timestamps, chunked, one chunk per tag; MPEG-TS paced by
               its PCR, one chunk per run of packets from one PCR to the next
  die=N        announce the full length (or chunked), send N bytes, then drop the connection
  status=N     answer N with a short HTML body
  type=T       Content-Type T instead of the one guessed from the name
  gzip=1       Content-Encoding: gzip
  norange=1    no Accept-Ranges, and Range ignored (a 200 with the whole file)
  slow=1       the body in 16 KiB pieces, 10 ms apart (Range answers stay fast)
  stall=N      send N bytes of the body, then nothing for 20 s, then drop the connection
  trickle=N    send N bytes of the body, then one byte every 0.1 s (never silent for long)
  nomultirange=1  several ranges in one request get only the first (else multipart/byteranges), as
               S3, Google Cloud Storage and Azure do
  maxranges=N  more than N ranges in one request: the Range ignored, a 200 with the whole file (nginx's
               max_ranges)
  oss=1        Alibaba OSS: its Server and x-oss-request-id on every answer; several ranges only with
               `x-oss-multi-range-behavior: multi-range` (else 416 InvalidRange), at most 50 of them
               (else 400 MultiRangeFailed)
  latency=MS   this answer starts MS ms late; rate=MB: its body at MB MB/s (a distant origin, per
               connection; the server's own latency and rate otherwise)
  setcookie=V  a Set-Cookie: session=V on the answer, as an origin starting a session does
  noetag=1     no ETag; lastmod=1: a Last-Modified; cors=1: Access-Control-Allow-Origin and
               Cache-Control, as a CDN would add; cache=V: Cache-Control: V (no-store, private)
  replaced=F   Range requests are answered from file F, as if the file had been replaced since the
               200 began, ignoring If-Range (as sloppy origins do); replaced=same: the same bytes
               under a new ETag; replaced=shift: a range one byte later than the one asked for;
               with replace_after=N, only Range requests after the first N of this URL are
Range requests get a 206 (so a test sees at once if a Range reached the origin); several ranges in one
request a multipart/byteranges 206.
A live HLS playlist whose window moves with time: `server.live_playlists[path] = (VOD media playlist
file, window)`: at t seconds after its first request it names the segments published by then (one
more each segment's duration), the last `window` of them, and ENDLIST once all are out.
Pages (the demo's) are served from `server.pages[path] = (body, content type)`. Every request's path
and headers are recorded in `server.requests`, and the client's port of each in `server.peers`. Bodies made on the fly (too big
for a disk) are served from `server.virtual[path] = (size, pieces factory, content type[, range reader])`.
"""

from __future__ import annotations

import email.utils
import gzip
import http.server
import struct
import threading
import time
import urllib.parse
from pathlib import Path

TYPES = {".flv": "video/x-flv", ".mp4": "video/mp4", ".m4a": "audio/mp4", ".mov": "video/quicktime",
         ".ts": "video/mp2t", ".m2ts": "video/mp2t", ".mts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl",
         ".mpd": "application/dash+xml", ".m4s": "video/iso.segment", ".cmfa": "audio/mp4", ".cmfv": "video/mp4"}


def flv_tags(data: bytes):
    """(timestamp ms, bytes) for the header and then each tag with its PreviousTagSize. The origin
    stands in for an encoder and must not depend on the product, so it reads tags itself."""
    offset = struct.unpack_from(">I", data, 5)[0] + 4
    yield 0, data[:offset]
    while offset + 11 <= len(data):
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        ts = int.from_bytes(data[offset + 4 : offset + 7], "big") | data[offset + 7] << 24
        end = offset + 11 + size + 4
        yield ts, data[offset:end]
        offset = end


def ts_groups(data: bytes):
    """(milliseconds, bytes): the packets of an MPEG-TS from each one that carries a PCR up to the next,
    timed by that PCR from the first (the origin reads the PCR itself, as for FLV's tags)."""
    first = start = 0
    begin = None
    for pos in range(0, len(data) - 187, 188):
        # adaptation field present, long enough, with the PCR flag
        if data[pos + 3] & 0x20 and data[pos + 4] >= 7 and data[pos + 5] & 0x10:
            pcr = (int.from_bytes(data[pos + 6 : pos + 10], "big") << 1 | data[pos + 10] >> 7) // 90  # 90 kHz -> ms
            if begin is None:
                begin = pcr
            elif pos > start:
                yield first - begin, data[start:pos]
                start = pos
            first = pcr
    yield (first - begin if begin is not None else 0), data[start:]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, a kept-alive client waits for its
    # delayed ACK (40 ms) before the body comes. Real origins (nginx: tcp_nodelay) do not do that.
    disable_nagle_algorithm = True
    server: "Origin"

    def log_message(self, *args):  # quiet: tests read server.requests instead
        pass

    def do_HEAD(self):
        self.do_GET(head=True)

    def end_headers(self):
        query = dict(urllib.parse.parse_qsl(self.path.partition("?")[2]))
        if query.get("oss"):
            self.send_header("Server", "AliyunOSS")
            self.send_header("x-oss-request-id", "5C3D9175B6FC201293AD4890")
        if session := query.get("setcookie"):
            self.send_header("Set-Cookie", f"session={session}; Path=/")
        super().end_headers()

    def do_GET(self, head: bool = False):
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query))
        with self.server.lock:  # the two lists stay in step across the handler threads
            self.server.requests.append((self.command, self.path, dict(self.headers.items())))
            self.server.peers.append(self.client_address[1])
            self.server.answering += 1
            self.server.most_answering = max(self.server.most_answering, self.server.answering)
        try:
            if latency := float(params.get("latency", 0)) / 1000 or self.server.latency:
                time.sleep(latency)
            self.rate = float(params.get("rate", 0)) * 1e6 or self.server.rate
            self.answer(path, params, head)
        finally:
            with self.server.lock:
                self.server.answering -= 1

    def answer(self, path: str, params: dict, head: bool):
        if page := self.server.pages.get(path):
            return self.send_body(200, page[0], page[1], head)
        if live := self.server.live_playlists.get(path):
            with self.server.lock:
                started = self.server.live_started.setdefault(path, time.monotonic())
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=1")
            body = live_window(live[0].read_text(), live[1], time.monotonic() - started).encode()
            return self.finish_body(body, TYPES[".m3u8"], head)
        if "status" in params:
            return self.send_body(int(params["status"]), b"<html>no</html>", "text/html", head)
        if virtual := self.server.virtual.get(path):
            return self.send_virtual(*virtual[:3], head, *virtual[3:])
        file = (self.server.root / urllib.parse.unquote(path.lstrip("/"))).resolve()
        if self.server.root not in file.parents or not file.is_file():
            return self.send_body(404, b"<html>not found</html>", "text/html", head)
        ctype = params.get("type", TYPES.get(file.suffix, "application/octet-stream"))
        if not (params.keys() & {"live", "gzip", "chunk", "die", "slow", "stall", "trickle"}):
            if (rng := self.headers.get("Range", "")).startswith("bytes=") and "norange" not in params:
                return self.send_range(file, rng, ctype, head, params)
            return self.send_file(file, ctype, head, ranges="norange" not in params, params=params)
        data = file.read_bytes()
        if params.get("live"):
            return self.send_live(data, ctype)
        if params.get("gzip"):
            self.send_response(200)
            body = gzip.compress(data)
            self.send_header("Content-Encoding", "gzip")
            return self.finish_body(body, ctype, head)
        if (rng := self.headers.get("Range", "")).startswith("bytes=") and "norange" not in params:
            return self.send_range(file, rng, ctype, head, params)
        self.send_response(200)
        if "norange" not in params:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{len(data):x}-{int(file.stat().st_mtime):x}"')
        if "chunk" in params:
            return self.send_chunked(data, ctype, int(params["chunk"]), head, int(params.get("die", len(data) + 1)))
        if "stall" in params and not head:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: int(params["stall"])])
            self.wfile.flush()
            time.sleep(20)
            self.close_connection = True
            return
        if "trickle" in params and not head:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            fast = int(params["trickle"])
            self.wfile.write(data[:fast])
            for i in range(fast, len(data)):
                time.sleep(0.1)
                self.wfile.write(data[i : i + 1])
            return
        if "slow" in params and not head:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 16384):
                self.wfile.write(data[i : i + 16384])
                time.sleep(0.01)
            return
        if "die" in params:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: int(params["die"])])
            self.wfile.flush()
            self.close_connection = True
            return
        self.finish_body(data, ctype, head)

    def send_validators(self, file: Path, etag: str, params: dict) -> None:
        """ETag (unless noetag=1), Last-Modified (lastmod=1), headers a CDN adds (cors=1), a Cache-Control
        of the test's (cache=no-store)."""
        if "noetag" not in params:
            self.send_header("ETag", etag)
        if "lastmod" in params:
            self.send_header("Last-Modified", email.utils.formatdate(int(file.stat().st_mtime), usegmt=True))
        if "cors" in params:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Cache-Control", "max-age=60")
        if "cache" in params:
            self.send_header("Cache-Control", params["cache"])

    def send_file(self, file: Path, ctype: str, head: bool, ranges: bool = True, params: dict | None = None):
        """The plain case, with sendfile: the origin must not be what a benchmark measures."""
        size = file.stat().st_size
        etag = f'"{size:x}-{int(file.stat().st_mtime):x}"'
        if self.headers.get("If-None-Match") == etag and "noetag" not in (params or {}):
            self.send_response(304)  # the client has this version
            self.send_validators(file, etag, params or {})
            self.end_headers()
            return
        self.send_response(200)
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_validators(file, etag, params or {})
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not head:
            with open(file, "rb") as f:
                try:
                    if self.rate:
                        self.write_paced(f.read())
                    else:
                        self.connection.sendfile(f)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

    def send_range(self, file: Path, rng: str, ctype: str, head: bool, params: dict):
        """A 206 for one byte range, honouring If-Range (a 200 with the whole file when it does not match)."""
        replaced = params.get("replaced")
        if replaced and "replace_after" in params:  # the first N Range requests come from the file itself
            with self.server.lock:
                count = self.server.range_counts[self.path] = self.server.range_counts.get(self.path, 0) + 1
            if count <= int(params["replace_after"]):
                replaced = None
        if replaced not in (None, "same", "shift"):
            file = self.server.root / replaced
        size = file.stat().st_size
        etag = f'"{size:x}-{int(file.stat().st_mtime):x}"'
        if replaced == "same":
            etag = '"replaced"'
        current = {etag, email.utils.formatdate(int(file.stat().st_mtime), usegmt=True)}
        if (if_range := self.headers.get("If-Range")) and if_range not in current and not replaced:
            return self.send_file(file, ctype, head, params=params)
        specs = rng[6:].split(",")
        if len(specs) > 1 and params.get("oss"):
            if self.headers.get("x-oss-multi-range-behavior", "").lower() != "multi-range":
                return self.send_body(416, b"<Error><Code>InvalidRange</Code></Error>", "application/xml", head)
            if len(specs) > 50:
                return self.send_body(400, b"<Error><Code>MultiRangeFailed</Code>"
                                      b"<Message>Exceed multi range max interval count.</Message></Error>",
                                      "application/xml", head)
        if len(specs) > int(params.get("maxranges", 1 << 30)):  # nginx: as if no Range had been sent
            return self.send_file(file, ctype, head, params=params)
        if len(specs) > 1 and "nomultirange" not in params:
            return self.send_multirange(file, specs, size, etag, ctype, head, params)
        start, _, end = specs[0].partition("-")  # several ranges with nomultirange=1: only the first, as some do
        start, end = int(start or 0), min(int(end) if end else size - 1, size - 1)
        if replaced == "shift":
            start, end = start + 1, min(end + 1, size - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_validators(file, etag, params)
        with open(file, "rb") as f:
            f.seek(start)
            body = f.read(end + 1 - start)
        if self.rate and not head:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return self.write_paced(body)
        self.finish_body(body, ctype, head)

    def send_multirange(self, file: Path, specs: list[str], size: int, etag: str, ctype: str, head: bool,
                        params: dict) -> None:
        """Several ranges: a multipart/byteranges 206, one part per range in the order asked (RFC 9110, 14.6)."""
        boundary = "edge-test-origin-boundary"
        parts = []
        with open(file, "rb") as f:
            for spec in specs:
                start, _, end = spec.strip().partition("-")
                start, end = int(start or 0), min(int(end) if end else size - 1, size - 1)
                f.seek(start)
                parts.append(f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n"
                             .encode() + f.read(end + 1 - start) + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        self.send_response(206)
        self.send_validators(file, etag, params)
        self.finish_body(body, f"multipart/byteranges; boundary={boundary}", head)

    def write_paced(self, body: bytes) -> None:
        """The body at the server's rate (bytes a second, per connection), as a distant origin sends."""
        start, piece = time.monotonic(), 65536
        for i in range(0, len(body), piece):
            if (ahead := start + i / self.rate - time.monotonic()) > 0:
                time.sleep(ahead)
            self.wfile.write(body[i : i + piece])

    def send_virtual(self, size: int, pieces, ctype: str, head: bool, read_range=None):
        """A body made on the fly (never on disk), with its Content-Length; ranges too when the body
        can be made from any offset (read_range(first, last) gives those bytes in pieces)."""
        rng = self.headers.get("Range", "")
        if read_range is not None and rng.startswith("bytes="):
            start, _, end = rng[6:].split(",")[0].partition("-")  # several ranges: the first only, as S3 does
            start, end = int(start or 0), min(int(end) if end else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"virtual-{size:x}"')
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(end + 1 - start))
            self.end_headers()
            if not head:
                try:
                    for piece in read_range(start, end):
                        self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            return
        self.send_response(200)
        if read_range is not None:
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"virtual-{size:x}"')
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        try:
            for piece in pieces():
                self.wfile.write(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_body(self, status: int, body: bytes, ctype: str, head: bool):
        self.send_response(status)
        self.finish_body(body, ctype, head)

    def finish_body(self, body: bytes, ctype: str, head: bool):
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_chunked(self, data: bytes, ctype: str, size: int, head: bool, die: int):
        """Chunks of `size`; after `die` bytes the connection drops with no last chunk."""
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:
            return
        for i in range(0, min(len(data), die), size):
            piece = data[i : min(i + size, die)]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        if die > len(data):
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True

    def send_live(self, data: bytes, ctype: str):
        """Each tag (or each run of TS packets) leaves at its time, as an encoder would push it."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start = time.monotonic()
        try:
            groups = ts_groups(data) if data[:1] == b"\x47" else flv_tags(data)
            for ts, piece in groups:
                if (delay := start + ts / 1000 - time.monotonic()) > 0:
                    time.sleep(delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                self.server.sent.append((ts, time.monotonic()))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


def live_window(vod: str, window: int, elapsed: float) -> str:
    """A VOD media playlist as a live one `elapsed` seconds after it began (see live_playlists)."""
    lines = [line for line in vod.splitlines() if line.strip()]
    first = next(i for i, line in enumerate(lines) if line.startswith("#EXTINF"))
    head = [line for line in lines[:first] if not line.startswith(("#EXT-X-MEDIA-SEQUENCE", "#EXT-X-PLAYLIST-TYPE"))]
    segments, pending = [], []
    for line in lines[first:]:
        if line.startswith("#EXT-X-ENDLIST"):
            continue
        pending.append(line)
        if not line.startswith("#"):
            duration = float(next(l for l in pending if l.startswith("#EXTINF"))[8:].split(",")[0])
            segments.append((duration, pending))
            pending = []
    published, clock = 0, 0.0  # the first window is out at once, then one segment each its duration
    for duration, _ in segments:
        if published >= window:
            if clock + duration > elapsed:
                break
            clock += duration
        published += 1
    start = max(0, published - window)
    out = head + [f"#EXT-X-MEDIA-SEQUENCE:{start}"] + [l for _, seg in segments[start:published] for l in seg]
    return "\n".join(out + (["#EXT-X-ENDLIST"] if published == len(segments) else [])) + "\n"


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog of a real server (nginx: 511), not socketserver's 5: the proxy opens a window of
    # connections at once, and with 5 the rest of the burst waited a second for a SYN retransmission.
    request_queue_size = 511

    def __init__(self, root: Path, port: int = 0, rate: float = 0, latency: float = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.rate = rate  # bytes a second per connection for files and ranges (0: as fast as it goes)
        self.latency = latency  # seconds each answer starts late, as from an origin far away
        self.answering = self.most_answering = 0  # requests being answered now, and the most at once
        self.root = Path(root).resolve()
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        self.range_counts: dict[str, int] = {}  # Range requests per path and query (replace_after)
        self.peers: list[int] = []  # the client's port of each request: a kept-alive connection repeats it
        self.sent: list[tuple[int, float]] = []  # live: (tag timestamp, time sent)
        self.pages: dict[str, tuple[bytes, str]] = {}  # path: (body, content type), served before files
        self.live_playlists: dict[str, tuple[Path, int]] = {}  # path: (VOD media playlist, window)
        self.live_started: dict[str, float] = {}  # path: when it was first asked for
        self.virtual: dict[str, tuple] = {}  # path: (size, pieces factory, content type[, range reader])

    def handle_error(self, request, client_address):
        """A client (the proxy) that leaves mid-body is part of the tests, not an error to print."""
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "Origin":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self
