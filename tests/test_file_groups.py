"""The file path's origin requests made once per plan and kept with it (addon/server/kept_groups.py),
and multipart answers cut at offsets laid out in advance (multipart.AskedRanges): the kept requests
are the ones the plan's batches give, the quick cut gives what the rebuilt comparison
(pieces_as_asked) and the careful walk give, and through mitmdump the bytes are the extractor's."""

import random
from types import SimpleNamespace

import pytest

from addon.origin_target import Route
from extractor import Batch, FilePlan, Run
from extractor.mp4.ranges import Ranges
from helpers import MEDIA, Proxy, extract, http_get

ROUTE = Route("http", "origin.example", 80, None)  # (a plain HTTP origin reached directly)


def random_plan(seed: int, count: int = 3000) -> FilePlan:
    """Audio chunks of 300-900 bytes, most alone between video, some neighbours joined by the gap."""
    rng = random.Random(seed)
    pairs, at = [], 0
    for _ in range(count):
        at += rng.choice([25_000] * 8 + [300_000, 100, 10])
        pairs.append((at, at + rng.randrange(300, 900)))
        at = pairs[-1][1]
    ranges = Ranges.of(pairs)
    return FilePlan(b"head", ranges, 4 + ranges.total, gap=rng.choice([0, 1 << 10]))


def spans_of(plan: FilePlan, group: list) -> list[tuple[int, int]]:
    """The (first, last) input bytes a group asks for, from its batches as the plan gives them."""
    spans = []
    for b in group:
        if isinstance(b, Run):
            spans += plan.spans(b)
        elif isinstance(b, Batch):
            spans.append((b.lo, b.hi - 1))
    return spans


def origin_groups(plan: FilePlan, multirange: dict):
    from addon.server.origin_groups import OriginGroups
    from addon.server.origin_speed import OriginSpeed
    services = SimpleNamespace(multirange=multirange, speeds={ROUTE: OriginSpeed(0.001, rate=10e6)})
    job = SimpleNamespace(target=SimpleNamespace(route=ROUTE), latency=0.001)
    return OriginGroups(services, job, SimpleNamespace(plan=plan))


@pytest.mark.parametrize("seed", range(6))
def test_kept_requests_are_the_groups_the_plans_batches_give(seed):
    from addon.server import kept_groups
    plan = random_plan(seed)
    rng = random.Random(seed)
    first = rng.choice([0, rng.randrange(plan.size)])
    last = rng.choice([plan.size - 1, rng.randrange(first, plan.size)])
    made = list(origin_groups(plan, {}).requests(first, last))
    groups = list(origin_groups(plan, {}).groups(first, last))
    assert [kind for kind, _ in made] == [kind for kind, _ in groups]
    for (kind, request), (_, group) in zip(made, groups):
        if kind == "head":
            assert request == group
            continue
        assert request.group == group
        spans = spans_of(plan, group)
        assert request.size == sum(b.size for b in group if isinstance(b, Batch))
        if len(spans) < 2:
            assert request.asked is None
            continue
        asked = request.asked
        assert asked.spec.decode() == ",".join(f"{a}-{z}" for a, z in spans)
        assert list(asked.sizes) == [z + 1 - a for a, z in spans] and asked.wanted == sum(asked.sizes)
    assert any(k == "fetch" and r.asked is not None for k, r in made)
    # Kept with the plan: the next GET of those bytes takes the same requests, not made again.
    again = list(origin_groups(plan, {}).requests(first, last))
    assert all(a is b for a, b in zip(again, made)) and len(again) == len(made)
    assert list(plan.kept) == [(first, last, 200)]
    # Another count of ranges a request is other requests; at most KEPT answers' requests are kept.
    list(origin_groups(plan, {ROUTE: 50}).requests(first, last))
    list(origin_groups(plan, {}).requests(0, 10))
    assert list(plan.kept) == [(first, last, 50), (0, 10, 200)][-kept_groups.KEPT :]


def test_nothing_is_kept_for_one_range_a_request_or_when_the_count_changes_midway():
    plan = random_plan(7)
    list(origin_groups(plan, {ROUTE: 1}).requests(0, plan.size - 1))
    assert not plan.kept
    multirange = {}
    made = origin_groups(plan, multirange).requests(0, plan.size - 1)
    next(made)
    multirange[ROUTE] = 100  # an origin refused a count meanwhile
    list(made)
    assert not plan.kept


def multipart(data: bytes, spans, boundary: bytes, part_headers: bytes, preamble: bytes = b"\r\n") -> bytes:
    body = bytearray(preamble)
    for i, (a, z) in enumerate(spans):
        body += (b"" if i == 0 and not preamble else b"\r\n") + b"--" + boundary + b"\r\n" + part_headers
        body += b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (a, z, len(data)) + data[a : z + 1]
    return bytes(body + b"\r\n--" + boundary + b"--\r\n")


@pytest.mark.parametrize("seed", range(40))
def test_the_cut_at_offsets_laid_out_equals_the_rebuilt_comparison_and_the_careful_walk(seed):
    """On random spans and answers (other boundaries, part headers, preambles; a byte changed, a part
    cut short or dropped, another file length), AskedRanges.pieces is pieces_as_asked's answer
    (which is None exactly when the form is not the common one), and then the careful walk's too."""
    from addon.multipart import AskedRanges, parse_byteranges, pieces_as_asked, spans_from_parts
    rng = random.Random(seed)
    data = rng.randbytes(100_000)
    taken = 0
    for _ in range(25):
        n = rng.randint(1, 250)
        points = sorted(rng.sample(range(len(data)), 2 * n))
        spans = [(points[2 * i], points[2 * i + 1]) for i in range(n)]
        boundary = rng.choice([b"00000000000000000%03d" % rng.randrange(1000), b"b", b"--==x=="])
        headers = rng.choice([b"Content-Type: video/mp4\r\n", b"", b"content-type: a/b\r\nX-A: 1, 2\r\n"])
        body = multipart(data, spans, boundary, headers, rng.choice([b"\r\n", b"", b"preamble\r\n"]))
        damage = rng.choice(["none"] * 3 + ["byte", "short", "drop", "length", "nul"])
        if damage == "byte":
            i = rng.randrange(len(body))
            body = body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1 :]
        elif damage == "short":
            body = body[: rng.randrange(len(body))]
        elif damage == "drop" and n > 1:
            body = multipart(data, spans[:-1], boundary, headers)
        elif damage == "length":
            body = body.replace(b"/%d\r\n" % len(data), b"/%d\r\n" % (len(data) + 1), 1)
        elif damage == "nul":
            body = multipart(data, spans, boundary, headers + b"X-B: \0\r\n")
        asked = AskedRanges([a for a, _ in spans], [z for _, z in spans])
        quick = asked.pieces(body, boundary, len(data))
        rebuilt = pieces_as_asked(body, boundary, spans, len(data))
        if damage == "nul":  # (a NUL is the quick cut's mark: the rebuilt comparison takes it)
            assert quick is None and rebuilt == [data[a : z + 1] for a, z in spans]
            continue
        assert quick == rebuilt, damage
        if quick is not None:
            taken += 1
            assert quick == [data[a : z + 1] for a, z in spans] or damage == "byte"  # (a byte of a piece)
            assert quick == spans_from_parts(parse_byteranges(body, boundary), spans, len(data))
        assert asked.pieces(body, boundary, None) is None  # no length known: the careful walk
    assert taken  # (the common form was there to take)
    assert AskedRanges([10, 50], [19, 59]).pieces(multipart(data, [(10, 19), (50, 59)], b"b", b""), b"b",
                                                  len(data)) == [data[10:20], data[50:60]]


@pytest.mark.e2e
@pytest.mark.parametrize("workers", ["0", "2"])
def test_through_mitmdump_the_kept_requests_give_the_extractors_bytes(origin, tmp_path, workers):
    """A whole GET and a range GET, each twice (the second from the kept requests): the extractor's
    bytes, the same Range headers asked of the origin each time, several ranges a request."""
    name = "h264_mp3.mp4"
    want = extract((MEDIA / name).read_bytes())
    # (The output cache off: the second whole GET must come from the origin's ranges, what this is about.)
    proxy = Proxy(tmp_path / "kept.log", "--mode", f"reverse:{origin.url}", "--set", "audio_only_range_gap=0",
                  "--set", f"audio_only_workers={workers}", "--set", "audio_only_output_cache=0")
    first, last = len(want) // 3, len(want) - 1000
    try:
        for case, headers, expected in (("whole", {}, want), ("part", {"Range": f"bytes={first}-{last}"},
                                                               want[first : last + 1])):
            asked = []
            for time in range(2):
                r = http_get(proxy.port, f"/{name}?ali_audio_only=1&case={case}{workers}", headers=headers)
                assert r.clean and r.body == expected, (case, time)
                asked.append([h["Range"] for m, p, h in origin.requests
                              if f"case={case}{workers}" in p and "," in h.get("Range", "")])
            several = asked[0]
            assert several and asked[1] == several + several, case  # the second GET asked the same again
    finally:
        proxy.stop()
