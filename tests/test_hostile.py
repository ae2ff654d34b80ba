"""Hostile but legal: a 61 MiB moov of 8 million samples must not stall, starve or fool the others.

Through a real mitmdump: while one such file is extracted, a small request every 20 ms measures the
proxy's latency for everyone else; the big response must be complete and lossless (its mdat payload
equals the audio samples the generator wrote, in order: tests/hostile.py, not the product, says what
they are); the memory of the proxy and of its planning processes is sampled throughout and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import pytest

from helpers import ROOT, STREAM_PATH, Proxy, http_get, http_stream, drain
from hostile import HostileMp4

SMALL = "/tiny.mp4"  # a small file passed through untouched: the others' requests


def descendants(pid: int) -> list[int]:
    """pid and every process under it (the planner's forkserver and its workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def rss_all(pid: int) -> float:
    """Resident memory of the proxy and its descendants together, in MiB."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total / 1024


# The small requests come from a process of their own: measured inside the test's process (which also
# runs the test origin and holds what the suite allocated), the client's own pauses counted as the proxy's.
PROBE = """
import json, socket, sys, time
port, path, stop_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
latencies, failures = [], 0
while True:
    try:
        open(stop_file).close()
        break
    except OSError:
        pass
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\\r\\n\\r\\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\\r\\n")[0])
        failures += not (head.startswith(b"HTTP/1.1 200") and len(body) == length)
    except (OSError, IndexError, ValueError):
        failures += 1
    latencies.append(time.monotonic() - started)
    time.sleep(max(0.0, 0.02 - (time.monotonic() - started)))
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


class Probe(threading.Thread):
    """A small request every 20 ms (from a process of its own) and the proxy's memory, until stopped."""

    def __init__(self, proxy: Proxy, tmp_path):
        super().__init__(daemon=True)
        self.proxy = proxy
        self.stop_file = tmp_path / "probe.stop"
        self.process = subprocess.Popen([sys.executable, "-c", PROBE, str(proxy.port), SMALL, str(self.stop_file)],
                                        stdout=subprocess.PIPE)
        self.latencies: list[float] = []
        self.failures = 0
        self.peak = 0.0
        self.peak_proxy = 0.0  # the mitmdump process alone
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, rss_all(self.proxy.process.pid))
            self.peak_proxy = max(self.peak_proxy, self.proxy.rss())
            self.halt.wait(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)
        self.stop_file.touch()
        result = json.loads(self.process.communicate(timeout=30)[0])
        self.latencies, self.failures = result["latencies"], result["failures"]

    def summary(self) -> tuple[float, float]:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99) - 1], ordered[-1]


@pytest.fixture(scope="module")
def hostile_origin(origin):
    files = {"/hostile.mp4": HostileMp4(), "/hostile_end.mp4": HostileMp4(moov_at_end=True)}
    for path, h in files.items():
        origin.virtual[path] = (h.size, h.pieces, "video/mp4", lambda first, last, h=h: [h.read_range(first, last)])
    yield origin, files
    for path in files:
        origin.virtual.pop(path, None)


def mdat_payload(body: bytes) -> bytes:
    pos = 0
    while pos < len(body):
        size, kind = int.from_bytes(body[pos : pos + 4], "big"), body[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(body[pos + 8 : pos + 16], "big"), 16
        if kind == b"mdat":
            return body[pos + header : pos + size]
        pos += size
    raise AssertionError("no mdat in the output")


@pytest.mark.parametrize("path,options", [
    ("/hostile.mp4", STREAM_PATH),  # the moov first, streamed
    ("/hostile_end.mp4", ()),  # the moov at the end, served as a file (moov read with Range requests)
], ids=["stream-moov-first", "file-moov-at-end"])
def test_one_hostile_file_does_not_stall_the_others(hostile_origin, tmp_path, path, options):
    origin, files = hostile_origin
    hostile = files[path]
    proxy = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{origin.url}", *options)
    try:
        assert http_get(proxy.port, SMALL).status == 200  # warm
        time.sleep(0.5)
        start_rss, start_proxy = rss_all(proxy.process.pid), proxy.rss()
        probe = Probe(proxy, tmp_path)
        probe.start()
        time.sleep(0.3)
        started = time.monotonic()
        status, headers, body = http_stream(proxy.port, f"{path}?ali_audio_only=1", timeout=120)
        out = bytearray()
        _, clean = drain(body, out.extend)
        took = time.monotonic() - started
        time.sleep(0.3)
        probe.stop()
        p99, worst = probe.summary()
        time.sleep(10)
        after = rss_all(proxy.process.pid) - start_rss
        peak = probe.peak - start_rss
        print(f"\n{path}: {len(out) / 2**20:.1f} MiB out in {took:.1f} s; others: {len(probe.latencies)} requests, "
              f"median {statistics.median(probe.latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max "
              f"{worst * 1000:.0f} ms; memory above the start: peak {peak:.0f} MiB (mitmdump alone {probe.peak_proxy - start_proxy:.0f}), "
              f"10 s after {after:.0f} MiB")
        assert status == 200 and clean
        payload = mdat_payload(bytes(out))
        assert hashlib.md5(payload).digest() == hashlib.md5(hostile.audio_payload).digest()
        assert b"VIDEOVID" not in out
        assert probe.failures == 0
        # The worst of some 900 requests on a shared 2-core machine is one sample: it reached 252-296 ms on
        # 2026-12-03 (a slow day, the landed code too); the stall this guards against was 9.7-16.3 s.
        assert p99 < 0.100 and worst < 0.500, (p99, worst)
        assert peak < 600 and after < 200, (peak, after)
    finally:
        proxy.stop()


def test_budgets_refuse_new_extractions_with_a_503(hostile_origin, tmp_path):
    """Past the metadata budget (a moov counted 3 times its size) or the spool budget, a new extraction
    is refused before its headers go out: 503, Retry-After, the budget's option named in the body and
    the log; smaller ones are served."""
    origin, _ = hostile_origin
    small = HostileMp4(100_000)  # a 1.5 MiB moov: 4.6 MiB counted, past a 1 MiB budget
    origin.virtual["/budget.mp4"] = (small.size, small.pieces, "video/mp4")
    proxy = Proxy(tmp_path / "budget.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH,
                  "--set", "audio_only_metadata_budget=1m", "--set", "audio_only_spool_budget=0")
    try:
        refused = http_get(proxy.port, "/budget.mp4?ali_audio_only=1")
        assert refused.status == 503 and refused.headers["retry-after"] == "5" and refused.clean
        assert b"audio_only_metadata_budget" in refused.body
        spooled = http_get(proxy.port, "/moov_end.mp4?ali_audio_only=1&norange=1")
        assert spooled.status == 503 and b"audio_only_spool_budget" in spooled.body
        log = proxy.wait_for_log("audio_only_spool_budget")
        assert "budget.mp4: answered 503" in log and "moov_end.mp4?norange=1: answered 503" in log
        served = http_get(proxy.port, "/h264_aac.mp4?ali_audio_only=1")
        assert served.status == 200 and served.clean and len(served.body) > 1000
    finally:
        proxy.stop()
        del origin.virtual["/budget.mp4"]


def test_eight_hostile_files_at_once(hostile_origin, tmp_path):
    """8 of them at once: none cut by the origin timeout, each complete and lossless or refused by a
    budget (a 503 before any byte of it), peak memory of the proxy and its planners under 2.5 GiB."""
    origin, files = hostile_origin
    hostile = files["/hostile.mp4"]
    want = hashlib.md5(hostile.audio_payload).digest()
    proxy = Proxy(tmp_path / "eight.log", "--mode", f"reverse:{origin.url}", *STREAM_PATH)
    results, peak = {}, [0.0]
    try:
        start_rss = rss_all(proxy.process.pid)

        def one(n: int) -> None:
            status, headers, body = http_stream(proxy.port, f"/hostile.mp4?ali_audio_only=1&n={n}", timeout=300)
            out = bytearray()
            _, clean = drain(body, out.extend)
            results[n] = (status, clean, hashlib.md5(mdat_payload(bytes(out))).digest() if status == 200 else bytes(out))

        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], rss_all(proxy.process.pid))
            time.sleep(0.05)
        log = proxy.log()
        served = [n for n, (status, clean, digest) in results.items() if status == 200]
        refused = [n for n, (status, clean, body) in results.items() if status == 503]
        print(f"\n8 at once: {len(served)} served, {len(refused)} refused by a budget; peak "
              f"{peak[0] - start_rss:.0f} MiB above the start")
        assert len(results) == 8 and len(served) + len(refused) == 8 and served
        assert all(results[n][1] and results[n][2] == want for n in served)
        assert all(b"audio_only_metadata_budget" in results[n][2] for n in refused)
        assert "audio_only_origin_timeout" not in log and "Traceback" not in log
        assert peak[0] - start_rss < 2560
    finally:
        proxy.stop()


def small_plan_request():
    """A PlanRequest of a small file's moov (the tests below send every moov to a process)."""
    import extractor
    data = (ROOT / "tests" / "media" / "h264_aac.mp4").read_bytes()
    moov = data.index(b"moov") - 4
    return extractor.PlanRequest(data[:32], data[moov : moov + int.from_bytes(data[moov : moov + 4], "big")],
                                 None, False, moov)


def test_idle_planning_processes_exit(monkeypatch, tmp_path):
    """A big moov is planned in a process; once no plan has run for IDLE_SHUTDOWN seconds the pool and
    its worker go (tens of MiB an idle edge gives back), and the next big plan starts a new one."""
    import asyncio

    from addon import planner as planning

    monkeypatch.setattr(planning, "PROCESS_ABOVE", 0)  # every moov goes to a process
    monkeypatch.setattr(planning, "IDLE_SHUTDOWN", 0.3)
    request = small_plan_request()

    async def scenario():
        planner = planning.Planner()
        try:
            first = await planner.plan(request, str(tmp_path))
            assert planner.pool is not None
            await asyncio.sleep(1.0)
            assert planner.pool is None  # idle: shut down (its workers exit)
            again = await planner.plan(request, str(tmp_path))  # a new pool for the next one
            assert planner.pool is not None and again.head == first.head and again.ranges == first.ranges
        finally:
            planner.close()

    asyncio.run(scenario())


def test_without_linux_a_big_moov_is_planned_in_a_thread(monkeypatch, tmp_path):
    """Where the planning process cannot run (no forkserver or /proc: not Linux), a big moov is planned
    in a worker thread, as a small one is: the same plan, and no pool or process is made."""
    import asyncio

    import extractor
    from addon import planner as planning

    monkeypatch.setattr(planning, "PROCESS_ABOVE", 0)  # every moov would go to a process...
    monkeypatch.setattr(planning, "IN_PROCESS", False)  # ...but there is none here
    monkeypatch.setattr(planning.Planner, "_new_pool", staticmethod(lambda: pytest.fail("a pool was made")))
    request = small_plan_request()

    async def scenario():
        planner = planning.Planner()
        threads = []
        to_thread = asyncio.to_thread

        async def counted(function, *args):
            threads.append(function)
            return await to_thread(function, *args)

        monkeypatch.setattr(planning.asyncio, "to_thread", counted)
        try:
            plan = await planner.plan(request, str(tmp_path))
            assert planner.pool is None and threads == [extractor.make_plan]
            expected = extractor.make_plan(request)
            assert plan.head == expected.head and plan.ranges == expected.ranges
        finally:
            planner.close()

    asyncio.run(scenario())


def test_plans_that_start_together_share_one_pool(monkeypatch, tmp_path):
    """Two big plans asking for the pool at once (the first one, or the first after an idle shutdown)
    get the same pool: never more planning processes than PROCESSES, none that close() misses."""
    import asyncio

    from addon import planner as planning

    monkeypatch.setattr(planning, "PROCESS_ABOVE", 0)
    made = []
    new_pool = planning.Planner._new_pool

    def counted():
        made.append(1)
        return new_pool()

    monkeypatch.setattr(planning.Planner, "_new_pool", staticmethod(counted))
    request = small_plan_request()

    async def scenario():
        planner = planning.Planner()
        try:
            first, second = await asyncio.gather(planner.plan(request, str(tmp_path)), planner.plan(request, str(tmp_path)))
            assert first.head == second.head and len(made) == 1
        finally:
            planner.close()

    asyncio.run(scenario())


def test_planning_processes_start_off_the_event_loop(monkeypatch, tmp_path):
    """ProcessPoolExecutor.submit starts a worker process then and there (with max_tasks_per_child, one
    a plan): a fork by the forkserver and a wait for its pid, 30-60 ms measured (faulthandler's dump of
    a stalled loop). It must not run on the loop, where every client would wait for it."""
    import asyncio
    import threading

    from addon import planner as planning

    monkeypatch.setattr(planning, "PROCESS_ABOVE", 0)
    monkeypatch.setattr(planning, "IDLE_SHUTDOWN", 0.3)
    on_loop = []
    new_pool = planning.Planner._new_pool

    def watched():
        pool = new_pool()
        submit = pool.submit

        def recorded(*args, **kwargs):
            on_loop.append(threading.current_thread() is threading.main_thread())
            return submit(*args, **kwargs)

        pool.submit = recorded
        return pool

    monkeypatch.setattr(planning.Planner, "_new_pool", staticmethod(watched))
    request = small_plan_request()

    async def scenario():
        planner = planning.Planner()
        try:
            first = await planner.plan(request, str(tmp_path))
            second = await planner.plan(request, str(tmp_path))
            assert first.head == second.head
            # (closed when idle, its last worker replaced by then: a shutdown while the executor's
            # thread replaces a worker that did its one task fails in that thread, on Python 3.11)
            await asyncio.sleep(1.0)
            assert planner.pool is None
        finally:
            planner.close()

    asyncio.run(scenario())
    assert on_loop == [False, False]
