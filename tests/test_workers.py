"""Our server in worker processes (addon/workers.py, audio_only_workers), through a real mitmdump with
two workers: a file's requests meet one worker and its plan, a worker killed mid-response, a reload,
mitmdump stopped or killed, and the budgets held across workers."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from helpers import (MEDIA, ROOT, STREAM_PATH, Proxy, assert_same_audio, children_of, drain, extract, flv_tags,
                     http_get, http_stream, is_worker)
from hostile import HostileMp4

from addon.placement import place_of

WORKERS = ("--set", "audio_only_workers=2")
MP4 = "/h264_aac.mp4"
LIVE_FLV = "/h264_aac.flv?ali_audio_only=1&live=1"  # paced by its timestamps: about 6 s


def routed_to(log: str, url_part: str) -> list[int]:
    """The worker each request for the URL went to, in order (the router's debug line)."""
    return [int(n) for n in re.findall(rf"{re.escape(url_part)}: to worker (\d)", log)]


def worker_pid(log: str, index: int) -> int:
    """The pid of worker `index` as last started (its debug line)."""
    return int(re.findall(rf"worker {index} \(pid (\d+)\) answers", log)[-1])


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def pool_settings() -> dict:
    """The settings message a WorkerPool driven by a test hands its workers."""
    import logging

    from addon import worker_link
    from addon.origin_client import OriginOptions
    return worker_link.settings_message(OriginOptions(), worker_link.Limits(64 << 20, 1 << 30, 1 << 30), logging.INFO)


async def settled(check, timeout: float = 15) -> bool:
    """wait_until on the test's own event loop (where a WorkerPool runs)."""
    import asyncio
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return check()


def wait_until(check, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


@pytest.fixture
def proxy(origin, tmp_path):
    p = Proxy(tmp_path / "workers.log", "--mode", f"reverse:{origin.url}", *WORKERS, verbosity="debug")
    yield p
    p.stop()


def test_two_workers_start_with_mitmdump_and_a_files_requests_meet_one_plan(proxy, origin, tmp_path):
    """The whole GET and the range requests a player makes of one file all go to one worker (the hash
    of its URL), where its plan is made once and then served from its cache."""
    assert len(proxy.worker_pids()) == 2
    whole = http_get(proxy.port, f"{MP4}?ali_audio_only=1")
    assert whole.status == 200 and whole.clean and int(whole.headers["content-length"]) == len(whole.body)
    # The worker's log line is in mitmdump's log before the client has the whole body (as without workers).
    assert f"{origin.url}{MP4} file: {len(whole.body)} bytes" in proxy.log()
    out = tmp_path / "whole.m4a"
    out.write_bytes(whole.body)
    assert_same_audio(MEDIA / "h264_aac.mp4", out)
    size = len(whole.body)
    for first, last in ((0, 1), (1000, 5000), (size - 100, size - 1), (size // 2, size - 1)):
        part = http_get(proxy.port, f"{MP4}?ali_audio_only=1", headers={"Range": f"bytes={first}-{last}"})
        assert part.status == 206 and part.clean and part.body == whole.body[first : last + 1]
    log = proxy.wait_for_log("to worker", times=5)
    url = f"{origin.url}{MP4}"
    workers = routed_to(log, url)
    assert len(workers) == 5 and len(set(workers)) == 1, log
    assert log.count(f"{url}: planned as a file by worker {workers[0]}") == 1, log
    assert "planned as a file by worker" in log and log.count(f"{url}: planned") == 1
    health = http_get(proxy.port, "/.well-known/audio-only/health")
    assert health.status == 200 and b'"workers": 2' in health.body and b'"workers_answering": 2' in health.body
    # Each answer's record came back to its flow before the marks read it: all five counted as extracted.
    proxy.stop()
    assert "audio-only: 5 responses extracted, 0 passed through, 0 failed" in proxy.log_path.read_text()


def test_a_worker_killed_mid_response_ends_it_uncleanly_and_the_next_request_works(proxy, origin):
    status, headers, body = http_stream(proxy.port, LIVE_FLV)
    assert status == 200 and headers.get("transfer-encoding") == "chunked"
    received = len(next(body))  # the answer is under way
    log = proxy.log()
    index = routed_to(log, "/h264_aac.flv?live=1")[0]
    pid = worker_pid(log, index)
    os.kill(pid, signal.SIGKILL)
    size, clean = drain(body)
    assert not clean, "a cut answer must not end like a whole one"
    assert received + size < len(extract((MEDIA / "h264_aac.flv").read_bytes()))
    log = proxy.wait_for_log("died (killed by SIGKILL)")
    warning = next(line for line in log.splitlines() if "died (killed by SIGKILL)" in line)
    assert f"worker {index} (pid {pid})" in warning and "/h264_aac.flv?live=1" in warning, warning
    after = http_get(proxy.port, "/h264_aac.flv?ali_audio_only=1")
    assert after.status == 200 and after.clean
    header, tags = flv_tags(after.body)
    assert header[4] == 0x04 and tags and all(t.type in (8, 18) for t in tags)
    # Started again, in the same place: two workers, the killed one replaced.
    assert wait_until(lambda: len(proxy.worker_pids()) == 2 and pid not in proxy.worker_pids())
    assert wait_until(lambda: worker_pid(proxy.log(), index) != pid)  # (its "answers" line)
    proxy.stop()  # the cut answer is a failure in the summary (its record says the worker died)
    assert "1 failed" in proxy.log_path.read_text()


# The addon as mitmproxy loads audio_only.py, run anew at each (re)load, from a file of its own (as in
# test_e2e.py): a change to it reloads this test's proxy only.
RELOADABLE = """import importlib, sys
sys.path.insert(0, {root!r})
import addon.audio_only
addons = importlib.reload(addon.audio_only).addons
"""


def test_a_reload_keeps_the_workers_answering_and_starts_no_others(origin, tmp_path):
    script = tmp_path / "audio_only_reloadable.py"
    script.write_text(RELOADABLE.format(root=str(ROOT)))
    proxy = Proxy(tmp_path / "reload.log", "--mode", f"reverse:{origin.url}", *WORKERS, script=script)
    try:
        before = set(proxy.worker_pids())
        tree = descendants(proxy.process.pid)
        assert len(before) == 2
        status, _, body = http_stream(proxy.port, LIVE_FLV)  # in flight across the reload
        assert status == 200
        first = next(body)
        later = time.time() + 10
        os.utime(script, (later, later))
        log = proxy.wait_for_log("Loading script", times=2)
        assert log.count("Loading script") == 2, log
        after = http_get(proxy.port, f"{MP4}?ali_audio_only=1")
        assert after.status == 200 and after.clean and int(after.headers["content-length"]) == len(after.body)
        size, clean = drain(body)
        assert clean and len(first) + size == len(extract((MEDIA / "h264_aac.flv").read_bytes()))
        assert set(proxy.worker_pids()) == before
        assert descendants(proxy.process.pid) <= tree | set()  # nothing new (a planner's forkserver would be)
        assert "died" not in proxy.log()
    finally:
        proxy.stop()


def test_an_unloaded_script_leaves_no_worker_and_a_new_load_starts_them(origin, tmp_path):
    """The script's new version fails to load (as when it is taken off `scripts`): nothing adopts the
    workers, and they exit (after ADOPT_WAIT); mitmdump goes on. The script mended, it starts new ones."""
    from addon.workers import ADOPT_WAIT

    script = tmp_path / "audio_only_reloadable.py"
    script.write_text(RELOADABLE.format(root=str(ROOT)))
    proxy = Proxy(tmp_path / "unload.log", "--mode", f"reverse:{origin.url}", *WORKERS, script=script)
    try:
        before = set(proxy.worker_pids())
        assert len(before) == 2
        later = time.time() + 10
        script.write_text("raise RuntimeError('broken on purpose')\n" + RELOADABLE.format(root=str(ROOT)))
        os.utime(script, (later, later))
        proxy.wait_for_log("broken on purpose")
        assert wait_until(lambda: not any(running(pid) for pid in before), ADOPT_WAIT + 10), proxy.log()[-2000:]
        assert "2 worker processes end after their last answer" in proxy.log()
        assert proxy.process.poll() is None
        script.write_text(RELOADABLE.format(root=str(ROOT)))
        os.utime(script, (later + 10, later + 10))
        assert wait_until(lambda: len(proxy.worker_pids()) == 2, 30)
        assert not set(proxy.worker_pids()) & before
        answer = http_get(proxy.port, f"{MP4}?ali_audio_only=1")
        assert answer.status == 200 and answer.clean and int(answer.headers["content-length"]) == len(answer.body)
    finally:
        proxy.stop()


@pytest.mark.parametrize("victim, how", [("mitmdump", signal.SIGTERM), ("mitmdump", signal.SIGKILL),
                                         ("worker", signal.SIGKILL)])
def test_no_worker_outlives_mitmdump(origin, tmp_path, victim, how):
    """Stopped (SIGTERM: mitmproxy's done hook) or killed (SIGKILL: the workers see their control
    connection end, and the kernel's PR_SET_PDEATHSIG), mitmdump leaves no process of ours behind; nor
    does a worker killed. The file's moov is above planner.PROCESS_ABOVE: the worker that plans it has
    a forkserver, a resource tracker and a planning process of its own, which must go with it."""
    from addon.planner import PROCESS_ABOVE

    big = HostileMp4(330_000)
    assert big.size > PROCESS_ABOVE
    origin.virtual["/bigmoov.mp4"] = (big.size, big.pieces, "video/mp4")
    proxy = Proxy(tmp_path / "stop.log", "--mode", f"reverse:{origin.url}", *WORKERS,
                  "--set", "audio_only_max_header=64m", verbosity="debug")
    try:
        answer = http_get(proxy.port, "/bigmoov.mp4?ali_audio_only=1", headers={"Range": "bytes=0-1000"}, timeout=120)
        assert answer.status in (200, 206) and answer.clean
        index = routed_to(proxy.log(), "/bigmoov.mp4")[0]
        planner = worker_pid(proxy.log(), index)
        assert len(descendants(planner)) >= 2  # (the planner's processes: what this test is about)
        tree = descendants(proxy.process.pid)
        workers = {pid for pid in tree if is_worker(pid)}
        assert len(workers) == 2
        if victim == "worker":
            tree = {planner} | descendants(planner)
            os.kill(planner, how)
        else:
            proxy.process.send_signal(how)
            proxy.process.wait(15)
        assert wait_until(lambda: not any(running(pid) for pid in tree)), \
            [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()) for pid in tree if running(pid)]
        if how == signal.SIGTERM:  # stopped by mitmproxy's done hook, each at its SIGTERM (not by the kernel)
            assert "2 worker processes stopped (exit statuses 0, 0)" in proxy.log(), proxy.log()[-3000:]
    finally:
        proxy.stop()
        origin.virtual.pop("/bigmoov.mp4", None)


def test_the_budgets_hold_for_all_workers_together(origin, tmp_path):
    """Two files on two workers, each moov within the metadata budget alone, both together past it:
    while one is being answered, the other is refused with a 503 that names the budget; once the first
    is done, the second is served; and once the worker answering the first is killed mid-answer."""
    moov_file = HostileMp4(15_000)  # a 225 kB moov: 675 kB counted, of a 1 MiB budget

    def slowly():  # the first file's media data over 3 s: its answer holds its moov's share meanwhile
        pieces = moov_file.pieces(16 << 10)
        yield next(pieces)
        for piece in pieces:
            time.sleep(0.1)
            yield piece

    names = []
    for n in range(40):  # two names whose URLs hash to different workers (as the router hashes them)
        name = f"/budget{n}.mp4"
        if not names or place_of(f"{origin.url}{name}", 2) != place_of(f"{origin.url}{names[0]}", 2):
            names.append(name)
        if len(names) == 2:
            break
    origin.virtual[names[0]] = (moov_file.size, slowly, "video/mp4")
    origin.virtual[names[1]] = (moov_file.size, moov_file.pieces, "video/mp4")
    proxy = Proxy(tmp_path / "budget.log", "--mode", f"reverse:{origin.url}", *WORKERS, *STREAM_PATH,
                  "--set", "audio_only_metadata_budget=1m", verbosity="debug")
    try:
        status, _, body = http_stream(proxy.port, f"{names[0]}?ali_audio_only=1")
        assert status == 200
        result = {}
        reader = threading.Thread(target=lambda: result.update(first=drain(body)))
        reader.start()
        refused = http_get(proxy.port, f"{names[1]}?ali_audio_only=1")
        assert refused.status == 503 and b"audio_only_metadata_budget" in refused.body, refused
        reader.join(60)
        assert result["first"][1], "the first answer ended whole"
        served = http_get(proxy.port, f"{names[1]}?ali_audio_only=1")
        assert served.status == 200 and served.clean
        log = proxy.log()
        first, second = (routed_to(log, f"{origin.url}{name}") for name in names)
        assert first and second and first[0] != second[0], log  # on two workers
        # A worker killed while it holds its share: the share goes with it (mitmdump clears its slot).
        status, _, body = http_stream(proxy.port, f"{names[0]}?ali_audio_only=1")
        assert status == 200
        next(body)
        os.kill(worker_pid(proxy.log(), first[0]), signal.SIGKILL)
        assert not drain(body)[1]
        proxy.wait_for_log("died (killed by SIGKILL)")
        served = http_get(proxy.port, f"{names[1]}?ali_audio_only=1")
        assert served.status == 200 and served.clean, served.body[:200]
    finally:
        proxy.stop()
        for name in names:
            origin.virtual.pop(name, None)


def test_a_new_worker_count_starts_and_retires_workers():
    """audio_only_workers changed while running: the pool starts the missing workers, and the extra
    ones exit (after their last answer: none here). The pool as the addon drives it, in this process's
    loop."""
    import asyncio

    from addon.workers import WorkerPool

    settings = pool_settings()

    async def main():
        pool = WorkerPool()
        try:
            pool.configure(1, settings)
            assert await settled(lambda: pool.size == 1 and pool.alive() == 1)
            pool.configure(3, settings)
            assert await settled(lambda: pool.size == 3 and pool.alive() == 3)
            pids = [w.pid for w in pool.workers]
            assert all(is_worker(pid) and running(pid) for pid in pids)
            pool.configure(1, settings)
            assert pool.size == 1 and pool.workers[0].pid == pids[0]  # the first stays: its files' plans too
            await settled(lambda: not pool.retired, 10)
            assert not pool.retired and not any(running(pid) for pid in pids[1:])
        finally:
            pool.stop()
        assert not any(running(pid) for pid in pids)

    asyncio.run(main())


def raw_get(port: int, target: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """A GET whose request target goes on the wire byte for byte (http.client would refuse a raw 0xFF)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *fields = head.split(b"\r\n")
    return status, {k.strip().lower(): v.strip() for k, _, v in (f.partition(b":") for f in fields)}, body


def test_a_url_with_a_byte_that_is_not_utf8_is_routed_to_a_worker_never_to_the_origin(proxy, origin):
    """A raw 0xFF in the query is legal on the wire (mitmproxy keeps it as a lone surrogate): the router
    hashes the URL's bytes as they came and sends it to a worker; the client never gets the video."""
    status, headers, body = raw_get(proxy.port, f"{MP4}?ali_audio_only=1&x=".encode() + b"\xff")
    assert not headers.get(b"content-type", b"").startswith(b"video/"), (status, headers)
    assert body[4:8] != b"ftyp" or b"audio" in headers.get(b"content-type", b""), (status, headers)
    # The audio, from the origin asked for the byte as %FF (httpx takes only ASCII; it was a 500).
    assert status.split()[1] == b"200" and headers[b"content-type"].startswith(b"audio/"), (status, headers)
    assert any(p.endswith("?x=%FF") for _, p, _ in origin.requests), origin.requests[-3:]
    log = proxy.wait_for_log(": to worker")
    assert "UnicodeEncodeError" not in log.split(": to worker")[0], log  # (the router's hook did not fail)
    assert re.search(r"h264_aac\.mp4\?x=.*: to worker \d", log), log


def test_a_request_the_router_cannot_send_to_a_worker_is_refused_not_passed_to_the_origin():
    """Should anything fail on the way to a worker, the request that asked for audio is answered 502
    here: mitmproxy must never forward it unchanged (the origin's answer would be the whole video)."""
    import asyncio

    from mitmproxy.test import tflow

    from addon import record
    from addon.routing import AudioRouter
    from addon.server.job import Job

    class BrokenPool:
        async def worker_for(self, url):
            raise RuntimeError("no hash for this URL")

    flow = tflow.tflow()
    record.begin(flow, requested="audio")
    job = Job.__new__(Job)
    job.url, job.target = flow.request.pretty_url, type("T", (), {"url": flow.request.pretty_url})()
    asyncio.run(AudioRouter(None, BrokenPool()).to_worker(flow, job))
    assert flow.response is not None and flow.response.status_code == 502
    assert record.of(flow)["outcome"] == record.FAILED and "routed to a worker" in record.of(flow)["why"]


def test_a_retired_workers_budget_share_is_freed_when_it_ends_beside_its_successor():
    """audio_only_workers lowered then raised again at once: the new worker of the retired one's place
    starts while the retired one still runs. They never share a budget slot, and once the retired one
    is reaped, what it held is free again (before, its share stayed spent for the whole edge: every
    request 503 until the successor died). The pool as the addon drives it, in this process's loop."""
    import asyncio

    from addon.budgets import METADATA, SharedCounts
    from addon.workers import WorkerPool

    settings = pool_settings()

    def slot_of(pid: int) -> int:  # (its command line: worker_main.py CONTROL_FD COUNTS_FD SLOT ...)
        return int(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[4])

    async def main():
        pool = WorkerPool()
        try:
            pool.configure(2, settings)
            assert await settled(lambda: pool.alive() == 2)
            old = pool.workers[1].pid
            share = SharedCounts(pool.counts.fd, slot_of(old))
            with share.locked():
                share.add(METADATA, 700_000)  # what it holds for an answer in flight
            pool.configure(1, settings)
            pool.configure(2, settings)
            assert await settled(lambda: pool.alive() == 2)
            new = pool.workers[1].pid
            assert new != old and slot_of(new) != share.slot  # (never the slot of a process still running)
            assert await settled(lambda: not running(old) and not pool.retired)
            assert await settled(lambda: pool.counts.total(METADATA) == 0), pool.counts.total(METADATA)
        finally:
            pool.stop()

    asyncio.run(main())


def test_a_hung_worker_is_killed_and_started_again(proxy, origin):
    """A worker stopped (SIGSTOP: its control connection stays open, it answers nothing): the health
    check soon counts it as not answering, mitmdump kills it once silent for workers.HUNG_AFTER, and
    its files are answered again by its successor."""
    from addon.workers import HUNG_AFTER

    assert http_get(proxy.port, f"{MP4}?ali_audio_only=1").clean
    index = routed_to(proxy.log(), f"{origin.url}{MP4}")[0]
    pid = worker_pid(proxy.log(), index)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: b'"workers_answering": 1' in http_get(proxy.port, "/.well-known/audio-only/health").body, 8)
        log = proxy.wait_for_log("died (killed by SIGKILL)", timeout=HUNG_AFTER + 10)
        assert f"worker {index} (pid {pid}) has not answered for" in log, log
        assert not running(pid)
        after = http_get(proxy.port, f"{MP4}?ali_audio_only=1")
        assert after.status == 200 and after.clean
        assert worker_pid(proxy.log(), index) != pid
        assert routed_to(proxy.log(), f"{origin.url}{MP4}")[-1] == index
    finally:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_retired_before_its_connection_is_made_exits():
    """audio_only_workers changed twice in one turn of the loop (2 -> 3 -> 2): the third worker is
    retired before its control connection exists; it is told once connected, and exits."""
    import asyncio

    from addon.workers import WorkerPool

    settings = pool_settings()

    async def main():
        pool = WorkerPool()
        try:
            pool.configure(2, settings)
            assert await settled(lambda: pool.alive() == 2)
            pool.configure(3, settings)
            third = pool.workers[2].pid
            pool.configure(2, settings)
            assert await settled(lambda: not pool.retired and not running(third)), (pool.retired, third)
            assert pool.size == 2 and pool.alive() == 2
        finally:
            pool.stop()

    asyncio.run(main())


def test_stopping_waits_for_all_workers_together():
    """mitmproxy stops while no worker can exit (all stopped): one STOP_WAIT for them all, then SIGKILL,
    never one STOP_WAIT after another on mitmproxy's loop."""
    import asyncio

    from addon.workers import STOP_WAIT, WorkerPool

    settings = pool_settings()

    async def main():
        pool = WorkerPool()
        pool.configure(3, settings)
        await settled(lambda: pool.alive() == 3)
        pids = [w.pid for w in pool.workers]
        assert pool.alive() == 3
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # (SIGTERM waits; SIGKILL does not)
        began = time.monotonic()
        pool.stop()
        took = time.monotonic() - began
        assert not any(running(pid) for pid in pids)
        assert took < STOP_WAIT + 1, took

    asyncio.run(main())


def test_a_new_worker_count_moves_few_files():
    """Rendezvous hashing: from 4 workers to 5, only the files the new worker wins move (about 1/5),
    each to it; the others keep their worker and its plans. A hash modulo N would move about 4/5."""
    urls = [f"http://origin.example/v/{n}.mp4" for n in range(5000)]
    before = [place_of(url, 4) for url in urls]
    after = [place_of(url, 5) for url in urls]
    moved = [(a, b) for a, b in zip(before, after) if a != b]
    assert all(b == 4 for _, b in moved)
    assert 0.15 < len(moved) / len(urls) < 0.25, len(moved)
    assert all(0.2 < before.count(place) / len(urls) < 0.3 for place in range(4))  # (even spread)


def test_new_files_go_to_the_least_busy_worker_and_stay_there():
    """The hash orders the workers, the load chooses: a file not placed lately goes to its hash's first
    worker unless that one has more than one answer in flight above the least busy (then to the least
    busy); every later request of the file follows it there, however busy, so that a player's requests
    meet the plan; a retired worker's files are placed again. (By the hash alone, 8 files on 2 workers
    put 6 or more on one in 29% of the ways to name them.)"""
    from addon.workers import Pending, Worker, WorkerPool

    pool = WorkerPool()
    pool.workers = [Worker(0), Worker(1)]
    for worker in pool.workers:
        worker.ready.set()

    def in_flight(worker, count=1):
        for _ in range(count):
            token = f"t{len(pool.pending)}"
            pool.pending[token] = Pending(token, worker, "", {})

    assert pool.place("http://origin.example/v/idle.mp4") is pool.workers[place_of("http://origin.example/v/idle.mp4", 2)]
    pool.pending.clear()
    for run in range(50):  # 8 files at once, each answer still in flight when the next comes
        urls = [f"http://origin.example/v/{run}/{n}.mp4" for n in range(8)]
        placed = []
        for url in urls:
            placed.append(pool.place(url))
            in_flight(placed[-1])
        counts = [[w.index for w in placed].count(i) for i in (0, 1)]
        assert abs(counts[0] - counts[1]) <= 2, counts  # (by the hash alone: up to 8 to 0)
        pool.pending.clear()
    in_flight(placed[0], 10)  # its worker now far busier: the file's next requests still go there
    assert all(pool.place(urls[0]) is placed[0] for _ in range(3))
    busy_one = placed[0]
    assert pool.place("http://origin.example/v/new.mp4") is not busy_one
    # A worker that does not answer takes no new file while another does.
    pool.pending.clear()
    other = pool.workers[1 - busy_one.index]
    other.ready.clear()
    assert pool.place("http://origin.example/v/new2.mp4") is busy_one
    # A retired worker's files are placed again.
    other.ready.set()
    busy_one.retiring = True
    pool.workers[busy_one.index] = Worker(busy_one.index)
    pool.workers[busy_one.index].ready.set()
    in_flight(pool.workers[busy_one.index], 2)
    assert pool.place(urls[0]) is other
