"""The benchmark: the product as its users feel it, against what they would use instead, in one run.

    scripts/bench [--quick] [--runs N] [--only 3|3c|3e|6]

On the 10-minute 1280x720 30 fps H.264+AAC file (scripts/make-long-media) as moov-first MP4,
moov-last MP4, FLV and MPEG-TS, prints the median of N runs of:
  1. the core in-process: input throughput;
  2. python -m extractor IN OUT against ffmpeg -i IN -vn -c:a copy OUT;
  3. GETs through mitmdump on 127.0.0.1, by path: streamed passthrough (stream_large_bodies=1m),
     audio-only as a file (two range gaps) and as a stream, against the origin direct: wall time
     (curl) of the first GET of the file (in a proxy that is up) and of the next ones, time to the
     first body byte, bytes sent and bytes asked of the origin, mitmdump's CPU (its workers' included) for each GET;
     3b. the same from an origin limited to 40 MB/s per connection; 3c. with nginx as the origin (MP4
     and FLV), when it is installed; 3d. from an
     origin whose answers start 20 ms late; 3e. from origins that answer one range a request (S3,
     GCS, Azure), near and 20 ms away at 50 MB/s a connection, for the file as ffmpeg makes it (audio
     every frame) and muxed in 1 s chunks: by audio ranges, whole in big spans, and as the cost
     model chooses (addon/server/origin_speed.py), with mitmdump's CPU (and its workers') per GET;
  4. the proxy's RSS added by 4 concurrent audio-only responses;
  5. the added latency of a live FLV paced in real time (per audio tag);
  6. 1, 4 and 8 clients at once, each a whole GET of its own copy of the MP4 (file path: first GETs,
     and GETs of files already sent once, from the output cache) or the FLV (stream path), from nginx
     (else the test origin), with our server in mitmdump's process (audio_only_workers=0) and in 2
     worker processes: the audio rate of all clients together, and the CPU of mitmdump and its workers
     for each GET (--only 6 runs just this).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

from extractor import AudioExtractor  # noqa: E402
from extractor.spool import TempFileSpool  # noqa: E402
from helpers import Proxy, flv_tags, free_port, http_get, http_stream  # noqa: E402
from origin import Origin  # noqa: E402

FILES = {"MP4 moov first": "long.mp4", "MP4 moov last": "long_moov_end.mp4", "FLV": "long.flv", "MPEG-TS": "long.ts"}
MITMDUMP = Path(sys.executable).parent / "mitmdump"
LOGS = Path(tempfile.mkdtemp(prefix="audio-only-bench-"))


def mitmdump(origin: Origin, *args: str) -> Proxy:
    """The proxy in reverse mode in front of `origin`, its log in a temporary folder."""
    return Proxy(LOGS / f"proxy-{time.monotonic_ns()}.log", "--mode", f"reverse:{origin.url}", *args)


def median(xs):
    return statistics.median(xs)


def core_throughput(path: Path, runs: int, piece: int = 65536) -> float:
    data = path.read_bytes()
    view = memoryview(data)
    times = []
    for _ in range(runs):
        x = AudioExtractor(spool_factory=TempFileSpool, max_spool=1 << 40)
        start = time.perf_counter()
        for i in range(0, len(data), piece):
            b"".join(x.feed(view[i : i + piece]))
        x.finish()
        times.append(time.perf_counter() - start)
    return len(data) / median(times)


def wall(cmd: list[str], runs: int, env: dict | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return median(times)


def curl(url: str) -> tuple[float, float, int]:
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download}", url],
                       capture_output=True, check=True)
    ttfb, total, size = r.stdout.split()
    return float(ttfb), float(total), int(size)


def first_body_byte(port: int, path: str) -> float:
    """Seconds from the request to the first byte of the body (curl's figure counts the headers,
    which always leave at once)."""
    start = time.perf_counter()
    _, _, body = http_stream(port, path)
    next(body)
    elapsed = time.perf_counter() - start
    body.close()
    return elapsed


PATHS = {
    "passthrough": ((), ""),
    "file": ((), "?ali_audio_only=1"),  # several ranges a request (the test origin answers them)
    "file, one by one": ((), "?ali_audio_only=1&nomultirange=1"),  # an origin that answers one range a request
    "stream": (("--set", "audio_only_origin_ranges=false"), "?ali_audio_only=1"),
}


def origin_bytes(origin: Origin, since: int, name: str) -> int:
    """Bytes the origin was asked for since request number `since`: Range lengths, or the whole file."""
    size = (origin.root / name).stat().st_size
    total = 0
    for method, path, headers in origin.requests[since:]:
        if path.split("?")[0] != f"/{name}":
            continue
        if "Range" in headers:
            for spec in headers["Range"][6:].split(","):
                first, last = map(int, spec.split("-"))
                total += min(last, size - 1) + 1 - first
        else:
            total += size
    return total


def started(proxy: Proxy) -> Proxy:
    """The proxy once it has answered a request (for /, not a media file: the origin's 404 will do).
    Its port opens before mitmproxy's `running` hooks have run (mitmproxy's TLS set-up, our warm-up:
    about 100 ms on 2 cores), and a request that comes at once waits for them: the first GET timed
    here is the first of the file on an edge that is up, not the edge's start."""
    curl(f"http://127.0.0.1:{proxy.port}/")
    return proxy


def through_proxy(origin, name: str, runs: int, paths=PATHS, suffix: str = "") -> dict[str, tuple]:
    """label -> (first body byte, time of the first GET, time again (median of `runs` more), bytes received,
    bytes asked of the origin by one GET, or None where the origin keeps no record). The first GET of
    the file path reads and plans the moov; the next ones find the plan in the cache."""
    results = {}
    direct = [curl(f"{origin.url}/{name}") for _ in range(runs + 1)]
    results["origin direct"] = (median(s[0] for s in direct), direct[0][1], median(s[1] for s in direct[1:]),
                                direct[0][2], direct[0][2], None)
    for label, (options, query) in paths.items():
        proxy = started(mitmdump(origin, "--set", "stream_large_bodies=1m", *options))
        try:
            path = f"/{name}{query}{suffix}"
            since = len(origin.requests) if hasattr(origin, "requests") else None
            samples, cpus = [], []
            for _ in range(runs + 1):  # mitmdump's CPU for each GET too, its workers' included (/proc: utime + stime)
                cpu = tree_cpu_seconds(proxy.process.pid)
                samples.append(curl(f"http://127.0.0.1:{proxy.port}{path}"))
                cpus.append(tree_cpu_seconds(proxy.process.pid) - cpu)
            asked = origin_bytes(origin, since, name) // (runs + 1) if since is not None else None
            first = median(first_body_byte(proxy.port, path) for _ in range(runs))
            results[label] = (first, samples[0][1], median(s[1] for s in samples[1:]), samples[0][2], asked,
                              (cpus[0], median(cpus[1:])))
        finally:
            proxy.stop()
    return results


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_chunked(media: Path) -> str:
    """The 10-minute MP4 remuxed with audio and video in chunks of 1 s (made once, beside it)."""
    name = "long_1s_chunks.mp4"
    if not (media / name).exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media / "long.mp4"), "-map", "0", "-c", "copy",
                        "-chunk_duration", "1000000", "-movflags", "+faststart", str(media / f"{name}.part.mp4")],
                       check=True)
        (media / f"{name}.part.mp4").rename(media / name)
    return name


SPANS = {"by audio ranges": "ranges", "whole, big spans": "whole", "cost model": ""}  # AUDIO_ONLY_SPANS


def one_range_origins(media: Path, runs: int) -> None:
    """3e: the file path from an origin that answers one range a request, each way of choosing the
    spans against passthrough: time of a GET (the plan cached, the output not: the origin read as at a
    first GET), bytes asked of the origin, mitmdump's CPU (and its workers') for that GET."""
    origin = Origin(media).start()
    try:
        for name, layout in (("long.mp4", "audio every frame (ffmpeg)"), (one_chunked(media), "1 s chunks")):
            for distance, shaping in (("near (loopback)", ""), ("far (20 ms, 50 MB/s a connection)", "&latency=20&rate=50")):
                print(f"   {layout}, {distance}:")
                rows = {}
                for label, spans in {"passthrough": None, **SPANS}.items():
                    os.environ["AUDIO_ONLY_SPANS"] = spans or ""
                    try:  # (no output cache: each GET reads the origin as the first would, its plan kept)
                        proxy = started(mitmdump(origin, "--set", "stream_large_bodies=1m",
                                                 "--set", "audio_only_output_cache=0"))
                    finally:
                        os.environ.pop("AUDIO_ONLY_SPANS")
                    try:
                        query = f"?nomultirange=1{shaping}" + ("" if spans is None else "&ali_audio_only=1")
                        url = f"http://127.0.0.1:{proxy.port}/{name}{query}"
                        if spans is not None:
                            curl(url)  # the first GET plans the file (and measures the origin)
                        times, cpus, asked = [], [], []
                        # (one run of the slow rows: passthrough from far, a request per chunk of a frame)
                        slow = (spans is None and shaping) or (spans == "ranges" and name == "long.mp4")
                        for _ in range(1 if slow else runs):
                            since, cpu = len(origin.requests), tree_cpu_seconds(proxy.process.pid)
                            times.append(curl(url)[1])
                            cpus.append(tree_cpu_seconds(proxy.process.pid) - cpu)
                            asked.append(origin_bytes(origin, since, name))
                        rows[label] = (median(times), median(cpus), median(asked))
                    finally:
                        proxy.stop()
                base, best = rows["passthrough"], min(rows["by audio ranges"][0], rows["whole, big spans"][0])
                for label, (took, cpu, asked) in rows.items():
                    against = f"  {took / best:4.2f}x the better of the two" if label == "cost model" else ""
                    print(f"     {label:18s} {took:7.3f} s ({took / base[0]:4.2f}x passthrough)  CPU {cpu:6.3f} s "
                          f"({cpu / base[1]:4.2f}x)  asked of the origin {asked / 1e6:7.1f} MB{against}")
    finally:
        origin.shutdown()


def print_table(results: dict) -> None:
    base, base_cpu = results["passthrough"][2], results["passthrough"][5][1]
    for label, (first, cold, again, sent, asked, cpu) in results.items():
        asked_text = f"{asked / 1e6:7.1f} MB" if asked is not None else "      —"
        cpu_text = (f"  mitmdump CPU a GET: first {cpu[0]:5.3f} s, again {cpu[1]:5.3f} s ({cpu[1] / base_cpu:4.2f}x)"
                    if cpu else "")
        print(f"   {label:16s} first GET {cold:6.3f} s, again {again:6.3f} s ({again / base:4.2f}x passthrough)"
              f"  first byte {first * 1000:6.1f} ms  sent {sent / 1e6:6.1f} MB  asked of the origin {asked_text}"
              f"{cpu_text}")


class Nginx:
    """Debian's nginx serving `root` on 127.0.0.1 (ranges, several in one request up to 200 as Apache
    allows, a strong ETag): a real origin, for the proxy's cost without a Python origin beside it."""

    def __init__(self, root: Path):
        self.folder = Path(tempfile.mkdtemp(prefix="audio-only-bench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.folder / "nginx.conf").write_text(f"""daemon off; worker_processes 1; pid {self.folder}/nginx.pid;
error_log {self.folder}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log off; sendfile on; keepalive_requests 100000; max_ranges 200;
  client_body_temp_path {self.folder}/b; proxy_temp_path {self.folder}/p; fastcgi_temp_path {self.folder}/f;
  uwsgi_temp_path {self.folder}/u; scgi_temp_path {self.folder}/s;
  types {{ video/mp4 mp4; video/x-flv flv; }}
  server {{ listen 127.0.0.1:{self.port}; root {root}; }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(self.folder / "nginx.conf"), "-p", str(self.folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def shutdown(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def with_nginx(media: Path, runs: int) -> None:
    """3c: section 3 with nginx as the origin, the MP4 moov first and the FLV."""
    if not shutil.which("nginx"):
        print("3c. (nginx is not installed: `apt-get install nginx-light` adds the same with nginx as the origin)")
        return
    nginx = Nginx(media)
    try:
        print("3c. The same with nginx as the origin (what the origin was asked: not recorded)")
        print("   MP4 moov first:")
        # (nginx answers several ranges whatever the query: no "one by one" row)
        print_table(through_proxy(nginx, "long.mp4", runs, {k: v for k, v in PATHS.items() if k != "file, one by one"}))
        print("   FLV:")
        print_table(through_proxy(nginx, "long.flv", runs, {k: PATHS[k] for k in ("passthrough", "stream")}))
    finally:
        nginx.shutdown()


def concurrent_rss(origin: Origin, name: str, query: str = "") -> tuple[float, float]:
    """(baseline RSS after one small response, peak RSS while 4 audio-only responses run) in MiB."""
    proxy = mitmdump(origin)
    try:
        http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1")
        baseline = proxy.rss()
        url = f"http://127.0.0.1:{proxy.port}/{name}?ali_audio_only=1{query}"
        clients = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", url]) for _ in range(4)]
        for c in clients:
            c.wait()
        return baseline, proxy.rss("VmHWM")
    finally:
        proxy.stop()


def live_latency(origin: Origin) -> list[float]:
    """The added latency of each audio tag, in the order they came."""
    proxy = mitmdump(origin)
    try:
        origin.sent.clear()
        reply = http_get(proxy.port, "/h264_aac.flv?ali_audio_only=1&live=1", timeout=60)
        if not reply.clean:  # (figures of the tags before a cut would look like a whole run's)
            raise RuntimeError(f"the live stream ended uncleanly: {proxy.log()[-2000:]}")
        sent_at = {}
        for ts, t in origin.sent:
            sent_at.setdefault(ts, t)
        delays = []
        for chunk, arrived in zip(reply.chunks, reply.arrivals):
            body = chunk[13:] if chunk.startswith(b"FLV") else chunk
            for tag in flv_tags(b"FLV\x01\x04\x00\x00\x00\x09\x00\x00\x00\x00" + body)[1]:
                if tag.type == 8:
                    delays.append(arrived - sent_at[tag.timestamp])
        return delays
    finally:
        proxy.stop()


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and of every process under it (mitmdump and its workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except OSError:  # (ended meanwhile)
            continue
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == current:
                        todo.append(int(entry.name))
                except OSError:
                    pass
    return total


def clients_at_once(media: Path, runs: int) -> None:
    """6: N clients at once, each a whole GET of its own copy (a symbolic link: its own URL, plan and worker)."""
    copies = Path(tempfile.mkdtemp(prefix="audio-only-bench-copies-"))
    copies.chmod(0o755)  # (nginx's workers run as another user)
    try:
        for name in ("long.mp4", "long.flv"):
            for n in range(8):
                os.symlink(media / name, copies / f"{n}_{name}")
        origin = Nginx(copies) if shutil.which("nginx") else Origin(copies).start()
        print(f"   origin: {'nginx' if isinstance(origin, Nginx) else 'the test origin (Python)'}; "
              f"the machine's load average before: {os.getloadavg()[0]:.2f}")
        try:
            # First GETs (a URL of its own each time: planned and read from the origin), and GETs of files
            # already sent whole once (answered from the output cache: audio_only_output_cache).
            for label, name, options, cached in (
                    ("MP4, file path", "long.mp4", (), False),
                    ("MP4, cached", "long.mp4", (), True),
                    ("FLV, stream path", "long.flv", ("--set", "audio_only_origin_ranges=false"), False)):
                for workers in (0, 2):
                    proxy = started(mitmdump(origin, "--set", f"audio_only_workers={workers}", *options))
                    try:
                        rates = {}
                        for n in range(8 if cached else 0):  # (each file sent whole once: kept)
                            curl(f"http://127.0.0.1:{proxy.port}/{n}_{name}?ali_audio_only=1")
                        for clients in (1, 4, 8):
                            samples = []
                            for _ in range(runs):
                                run = "" if cached else f"&run={time.monotonic_ns()}"
                                urls = [f"http://127.0.0.1:{proxy.port}/{n}_{name}?ali_audio_only=1{run}"
                                        for n in range(clients)]
                                cpu, start = tree_cpu_seconds(proxy.process.pid), time.perf_counter()
                                curls = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                                           url], stdout=subprocess.PIPE) for url in urls]
                                answers = [c.communicate()[0].split() for c in curls]
                                took = time.perf_counter() - start
                                if any(status != b"200" for status, _ in answers):
                                    raise RuntimeError(f"not all answered 200: {answers}")
                                sizes = [int(size) for _, size in answers]
                                samples.append((sum(sizes) / took, (tree_cpu_seconds(proxy.process.pid) - cpu) / clients))
                            rate, cpu_per_get = median(s[0] for s in samples), median(s[1] for s in samples)
                            rates[clients] = rate
                            print(f"   {label:17s} workers={workers}  {clients} client(s): audio {rate / 1e6:7.1f} MB/s "
                                  f"({rate / rates[1]:4.2f}x one client)  CPU a GET {cpu_per_get:6.3f} s")
                    finally:
                        proxy.stop()
        finally:
            origin.shutdown()
    finally:
        shutil.rmtree(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each, no concurrency or live run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--media", default=None, help="folder of the long files (default: make-long-media's)")
    parser.add_argument("--only", choices=["3", "3c", "3e", "6"], help="only this part (3: the MP4 moov first only)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    media = Path(args.media or subprocess.run([str(ROOT / "scripts" / "make-long-media")], capture_output=True,
                                              check=True, text=True).stdout.strip())
    mitm_version = subprocess.run([str(MITMDUMP), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"Audio-only edge benchmark, {time.strftime('%Y-%m-%d')}, {platform.node()}: "
          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, "
          f"Python {platform.python_version()}, {mitm_version}; median of {runs} run(s)")
    if args.only == "6":
        print("6. Clients at once, each its own copy of the file; our server in mitmdump and in 2 workers")
        return clients_at_once(media, runs)
    if args.only == "3c":
        return with_nginx(media, runs)
    if args.only == "3e":
        print("3e. Origins that answer one range a request (S3, GCS, Azure)")
        return one_range_origins(media, runs)
    if args.only == "3":
        origin = Origin(media).start()
        try:
            print("3. One GET of the MP4 moov first through mitmdump on 127.0.0.1 (curl), by path")
            return print_table(through_proxy(origin, "long.mp4", runs))
        finally:
            origin.shutdown()
    size = (media / "long.mp4").stat().st_size
    print(f"Input: 10 min 1280x720 30 fps H.264 + AAC, {size / 1e6:.1f} MB, in four layouts\n")

    print("1. Core in-process: input throughput, in 64 KiB pieces (mitmproxy's) and 1 MiB pieces")
    for label, name in FILES.items():
        small, big = (core_throughput(media / name, runs, piece) / 1e9 for piece in (65536, 1 << 20))
        print(f"   {label:16s} {small:6.2f} GB/s   {big:6.2f} GB/s")

    print("\n2. Command line: python -m extractor vs ffmpeg -i IN -vn -c:a copy OUT (wall time)")
    # As a user runs it: with the modules' bytecode cached (__pycache__, written by the first run), which
    # PYTHONDONTWRITEBYTECODE, set on some machines, would forbid: each run would compile the extractor
    # again (40 ms of the MP4's 0.2 s on 2026-12-07's machine).
    installed = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        for label, name in FILES.items():
            ext = Path(name).suffix
            cli = [sys.executable, "-m", "extractor", str(media / name), f"{tmp}/ours{ext}"]
            wall(cli, 1, installed)
            ours = wall(cli, runs, installed)
            ffmpeg = wall(["ffmpeg", "-y", "-v", "error", "-i", str(media / name), "-vn", "-c:a", "copy",
                           f"{tmp}/ffmpeg{ext}"], runs)
            print(f"   {label:16s} ours {ours:6.3f} s   ffmpeg {ffmpeg:6.3f} s   ratio {ours / ffmpeg:4.2f}")

    origin = Origin(media).start()
    small = Origin(ROOT / "tests" / "media").start()
    try:
        print("\n3. One GET through mitmdump on 127.0.0.1 (curl), by path: passthrough, the file path with two gaps,")
        print("   the stream path; what the client got and what the origin was asked for")
        for label, name in FILES.items():
            paths = PATHS if name.endswith(".mp4") else {k: PATHS[k] for k in ("passthrough", "stream")}
            print(f"   {label}:")
            print_table(through_proxy(origin, name, runs, paths))
        print()
        with_nginx(media, runs)
        for title, shaped in (("3b. The same from an origin sending 40 MB/s per connection", {"rate": 40e6}),
                              ("3d. The same from an origin 20 ms away (each answer starts 20 ms late)", {"latency": 0.02})):
            distant = Origin(media, **shaped).start()
            try:
                print(f"\n{title}, MP4 moov first (one run)")
                print_table(through_proxy(distant, "long.mp4", 1))
            finally:
                distant.shutdown()
        print("\n3e. Origins that answer one range a request (S3, GCS, Azure)")
        one_range_origins(media, runs)
        if not args.quick:
            print("\n4. Proxy memory with 4 concurrent audio-only responses of the file")
            for label, name, query in [*((label, name, "") for label, name in FILES.items()),
                                       ("MP4, one by one", "long.mp4", "&nomultirange=1")]:
                base, peak = concurrent_rss(origin, name, query)
                print(f"   {label:16s} baseline {base:5.0f} MiB, peak {peak:5.0f} MiB, added {peak - base:5.0f} MiB")
            print("\n5. Live FLV paced in real time through the proxy: added latency per audio tag")
            delays = live_latency(small)
            d = sorted(delays)
            # The last tag leaves with the stream's end: mitmproxy relays it after our end-of-stream work
            # (the origin's answer closed, the log line) on the same loop. Its figure is given apart.
            print(f"   {len(d)} tags: median {median(d) * 1000:.2f} ms, p95 {d[int(len(d) * 0.95)] * 1000:.2f} ms, "
                  f"max {d[-1] * 1000:.2f} ms; the last tag {delays[-1] * 1000:.2f} ms, "
                  f"the most of the others {max(delays[:-1]) * 1000:.2f} ms")
            print("\n6. Clients at once, each its own copy of the file; our server in mitmdump and in 2 workers")
            clients_at_once(media, runs)
    finally:
        origin.shutdown()
        small.shutdown()


if __name__ == "__main__":
    main()
