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
    assert len(refused) <= 4 * 3  # each count refused at most as often as requests were in flight (a few)
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
    assert {200, 100, 50, 25, 12, 6, 3} <= set(counts) and counts[-1] == 1
    assert "does not answer several ranges in one request" in proxy.log()


def test_an_object_store_answering_the_first_range_only_is_read_one_range_a_request_at_once(proxy, long_origin, want):
    """S3, GCS, Azure: a 206 of the first range is no count refused, it never answers several: no
    halving, one range a request from the first refusal on."""
    r = get(proxy, "nomultirange=1&case=s3")
    assert r.status == 206 and r.clean and r.body == want
    counts = [n for n, _ in asked(long_origin, "s3")]
    several = [n for n in counts if n > 1]
    assert several and set(several) == {200} and len(several) <= 4  # the first requests in flight
    assert counts[-1] == 1
