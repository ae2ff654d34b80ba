"""Origins as they are in the field (SPEC §8), through a real mitmdump: the audio-only file's bytes are
the same from each, and what is asked of each is what it answers.

Emulated by scripts/origin.py: Alibaba OSS (several ranges only with its header, at most 50), nginx with
`max_ranges` (more ranges: a 200 with the whole file), and an object store that answers one range a
request. The 10-minute file (audio every video frame: 18,001 audio chunks) asked for by its first
2 MB of audio-only output, about 3,600 chunks.
"""

import math

import pytest

from helpers import Proxy, extract, http_get

pytestmark = pytest.mark.e2e
PART = 2_000_000  # output bytes asked for


@pytest.fixture(scope="module")
def want(long_media):
    from pathlib import Path
    return extract((Path(long_media) / "long.mp4").read_bytes())[:PART]


@pytest.fixture
def proxy(long_origin, tmp_path):
    """A proxy of its own per test: what it learns of an origin (per route) must not carry over."""
    p = Proxy(tmp_path / "proxy.log", "--mode", f"reverse:{long_origin.url}", "--set", "audio_only_range_gap=0")
    yield p
    p.stop()


def asked(origin, case: str) -> list[tuple[int, dict]]:
    """(ranges in the Range header, headers) of each request of this case that asked for audio (not
    the probe's 16 bytes nor the top level's reads, which lie before the first audio chunk)."""
    out = []
    for method, path, headers in origin.requests:
        if f"case={case}" not in path or "Range" not in headers:
            continue
        specs = headers["Range"][6:].split(",")
        if int(specs[0].split("-")[0]) >= 48:  # (the moov is first; its reads start at 0..47)
            out.append((len(specs), headers))
    return out


def get(proxy, query: str):
    return http_get(proxy.port, f"/long.mp4?ali_audio_only=1&{query}", headers={"Range": f"bytes=0-{PART - 1}"},
                    timeout=120)


def chunks_in_part(asked_ranges) -> int:
    return sum(n for n, _ in asked_ranges)


def test_oss_is_asked_with_its_header_for_50_ranges_a_request(proxy, long_origin, want):
    """Known by its headers on the probe's answer: 50 ranges a request, never refused (a request
    without the header, or of more, would get a 416 or a 400)."""
    r = get(proxy, "oss=1&case=oss")
    assert r.status == 206 and r.clean and r.body == want
    several = [(n, h) for n, h in asked(long_origin, "oss") if n > 1]
    assert several and all(n <= 50 and h.get("x-oss-multi-range-behavior") == "multi-range" for n, h in several)
    total = chunks_in_part(several)
    assert total > 3000
    assert len(several) == math.ceil(total / 50)  # full requests but the last
    assert "refused" not in proxy.log() and "one by one" not in proxy.log()


def test_an_origin_with_max_ranges_is_asked_for_half_as_many_until_it_answers(proxy, long_origin, want):
    """nginx's max_ranges 20: 200 ranges get the whole file (a 200), so 100, 50, 25, then 12 are
    asked for, and 12 a request from then on; never one range a request."""
    r = get(proxy, "maxranges=20&case=max")
    assert r.status == 206 and r.clean and r.body == want
    requests = asked(long_origin, "max")
    refused = [n for n, _ in requests if n > 20]
    answered = [n for n, _ in requests if n <= 20]
    assert sorted(set(refused)) == [25, 50, 100, 200]
    from addon.server.origin_groups import WINDOW
    # Each count refused at most once for each request in flight when the first refusal came back (a
    # few from an origin nearby, up to WINDOW on a loaded loop), all at the start.
    assert all(refused.count(n) <= WINDOW for n in (200, 100, 50, 25))
    assert all(n <= 20 for n, _ in requests[len(refused) + WINDOW :])
    # (groups made for 200 before that are asked for 12 at a time: the last of each has fewer)
    assert max(answered) == 12 and answered.count(12) >= 0.9 * len(answered)
    assert chunks_in_part([(n, None) for n in answered]) > 3000
    log = proxy.log()
    assert "refused 25 ranges in one request" in log and "asking for 12 at most" in log
    assert "one by one" not in log
    # What was learnt holds: the next GET asks for 12 a request at once.
    before = len(requests)
    assert get(proxy, "maxranges=20&case=max").body == want
    assert all(n <= 12 for n, _ in asked(long_origin, "max")[before:])


def test_an_origin_that_refuses_every_count_is_read_one_range_a_request(proxy, long_origin, want):
    """max_ranges 1: halved down to one range a request, then read as before (spans)."""
    r = get(proxy, "maxranges=1&case=one")
    assert r.status == 206 and r.clean and r.body == want
    counts = [n for n, _ in asked(long_origin, "one")]
    from addon.server.origin_groups import WINDOW
    # Halved from each count refused (200, 100, 50...; or from a smaller group's count refused in flight
    # beside it: 173, 86, 43...), never grown, down to one range a request.
    multi = [n for n in counts if n > 1]
    assert multi[0] == 200 and counts[-1] == 1, counts
    assert all(n == 200 or any(n <= (m + 1) // 2 for m in multi[:i]) for i, n in enumerate(multi)), counts
    assert len(set(multi)) >= 5, counts  # (several halvings: 200 to 2 is seven)
    assert sum(n > 1 for n in counts) <= 8 * WINDOW  # a few of each count, at the start
    assert "does not answer several ranges in one request" in proxy.log()


def test_an_object_store_answering_the_first_range_only_is_read_one_range_a_request_at_once(proxy, long_origin, want):
    """S3, GCS, Azure: a 206 of the first range is no count refused, it never answers several: no
    halving, one range a request from the first refusal on."""
    r = get(proxy, "nomultirange=1&case=s3")
    assert r.status == 206 and r.clean and r.body == want
    counts = [n for n, _ in asked(long_origin, "s3")]
    several = [n for n in counts if n > 1]
    from addon.server.origin_groups import WINDOW
    assert several and set(several) == {200} and len(several) <= WINDOW  # the first requests in flight
    assert counts[-1] == 1


def test_the_cost_model_reads_through_short_gaps_and_not_long_runs_of_video():
    """origin_speed.OriginSpeed.join_gap: the widest gap read through grows with the origin's latency
    and its rate a connection, and is never past a request's span."""
    from addon.server.origin_speed import OriginSpeed
    near = OriginSpeed(0.0005, rate=1e9)
    far = OriginSpeed(0.020, rate=50e6)
    very_far = OriginSpeed(0.150, rate=50e6)
    slow = OriginSpeed(0.020, rate=2e6)
    assert 100_000 < near.join_gap(16, 4 << 20) < 1_000_000  # an audio chunk a frame (25 KB apart): whole
    assert near.join_gap(16, 4 << 20) < far.join_gap(16, 4 << 20) < very_far.join_gap(16, 4 << 20)
    assert slow.join_gap(16, 4 << 20) < far.join_gap(16, 4 << 20)
    assert very_far.join_gap(16, 1 << 20) == 1 << 20
    assert far.join_gap(16, 4 << 20) < 2_000_000  # minutes of video between chunks: by ranges
    # Requests that cost less CPU (h11's) are worth making for less video between
    from addon.server.origin_speed import H11_CPU
    near_h11 = OriginSpeed(0.0005, rate=1e9, cpu=H11_CPU)
    assert 100_000 < near_h11.join_gap(16, 4 << 20) < 0.75 * near.join_gap(16, 4 << 20)
    assert near_h11.join_gap(16, 4 << 20) < 700_000  # 1 s chunks (730 KB of video between): by ranges


def test_speed_follows_what_is_measured():
    from addon.server.origin_speed import FIRST_RATE, OriginSpeed, speed_of
    speeds = {}
    speed = speed_of(speeds, "r", 0.010)
    assert speed.latency == 0.010 and speed.rate == FIRST_RATE and speed_of(speeds, "r", 5) is speed
    for _ in range(20):
        speed.observe(0.030, 4 << 20, (4 << 20) / 10e6)  # 30 ms, 10 MB/s
    assert abs(speed.latency - 0.030) < 0.001 and abs(speed.rate - 10e6) < 0.2e6
    speed.observe(0.030, 1000, 1.0)  # a small answer says nothing of the rate
    assert abs(speed.rate - 10e6) < 0.2e6


@pytest.mark.parametrize("distance", ["", "&latency=20&rate=50"])
def test_one_range_a_request_reads_an_interleaved_file_in_spans(proxy, long_origin, want, distance):
    """From an object store (one range a request) near or 20 ms away at 50 MB/s: audio every frame
    (25 KB of video between) is read in large spans, one range each, not a request per chunk."""
    case = "near" if not distance else "far"
    r = get(proxy, f"nomultirange=1{distance}&case=span{case}")
    assert r.status == 206 and r.clean and r.body == want
    requests = asked(long_origin, f"span{case}")
    singles = [h["Range"] for n, h in requests if n == 1]
    from addon.server.origin_groups import WINDOW
    assert len(requests) - len(singles) <= WINDOW  # (the first, before the origin was known)
    spans = [tuple(map(int, spec[6:].split("-"))) for spec in singles]
    assert max(last + 1 - first for first, last in spans) > 1_000_000
    assert len(spans) < 200  # ~3,600 audio chunks asked for


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nRetry-After: 1\r\n\r\nbusy",
    b'HTTP/1.1 200 OK\r\nETag: "v2"\r\nAccept-Ranges: bytes\r\nContent-Length: 4\r\n\r\nnew!',  # If-Range did not match
])
def test_a_failed_request_of_several_ranges_teaches_nothing_of_the_count(answer):
    """A 5xx, or the 200 of a replaced file (If-Range), is not the origin refusing a count of ranges:
    the request fails at once (the answer ends uncleanly, as for one range), never halved and asked again,
    and the route keeps answering several ranges for the next files."""
    import asyncio
    import ssl
    from types import SimpleNamespace

    from addon.origin_client import OriginClient, Route, Target
    from addon.origin_version import OriginVersion, RangeRefused
    from addon.server.origin_groups import OriginGroups

    asked = []

    async def origin(reader, writer):
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                asked.append(next(line for line in head.split("\r\n") if line.lower().startswith("range:")).count(",") + 1)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server = await asyncio.start_server(origin, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = OriginClient()
        client.tls = ssl.create_default_context()
        route = Route("http", "127.0.0.1", port, None)
        services = SimpleNamespace(origin=client, multirange={})
        job = SimpleNamespace(target=Target(route, "/a.mp4", (("Host", f"127.0.0.1:{port}"),), None), url="http://o/a.mp4")
        groups = SimpleNamespace(services=services, job=job, file=SimpleNamespace(version=OriginVersion('"v1"', 10 << 20)),
                                 read=0)
        groups.most = lambda: OriginGroups.most(groups)
        groups.refused = lambda count, why: OriginGroups.refused(groups, count, why)
        try:
            with pytest.raises(RangeRefused):
                await OriginGroups.several(groups, [(i * 10000, i * 10000 + 99) for i in range(200)])
        finally:
            await client.close()
            server.close()
        return services.multirange

    learnt = asyncio.run(main())
    assert asked == [200] and learnt == {}
