"""Conditionals of the file answer (addon/http_rules.py), through a real mitmdump in front of the test
origin: RFC 9110 §13.2.2's order, If-None-Match by the weak comparison on both sides, If-Modified-Since
against our Last-Modified, and the origin's Last-Modified kept beside its ETag."""

import datetime
import email.utils

import pytest

from helpers import Proxy, http_get

pytestmark = pytest.mark.e2e
ONLY_DATE = "/h264_aac.mp4?ali_audio_only=1&noetag=1&lastmod=1"  # an origin whose only validator is a date
BOTH = "/h264_aac.mp4?ali_audio_only=1&lastmod=1"  # an ETag and a Last-Modified, as nginx sends


@pytest.fixture(scope="module")
def file_proxy(origin, tmp_path_factory):
    p = Proxy(tmp_path_factory.mktemp("log") / "rules.log", "--mode", f"reverse:{origin.url}")
    yield p
    p.stop()


def _shift(date: str, seconds: int) -> datetime.datetime:
    return email.utils.parsedate_to_datetime(date) + datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_origin_with_only_a_date_gets_304_for_our_weak_etag_and_our_date(file_proxy, method):
    whole = http_get(file_proxy.port, ONLY_DATE)
    etag, date = whole.headers["etag"], whole.headers["last-modified"]
    assert whole.status == 200 and etag.startswith('W/"lm')
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == etag
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-Modified-Since": date})
    assert r.status == 304 and r.body == b"" and r.headers["last-modified"] == date
    later = email.utils.format_datetime(_shift(date, 3600), usegmt=True)
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-Modified-Since": later})
    assert r.status == 304
    older = email.utils.format_datetime(_shift(date, -1), usegmt=True)
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-Modified-Since": older})
    assert r.status == 200 and r.headers["content-length"] == whole.headers["content-length"]
    if method == "GET":
        assert r.body == whole.body
    # An unreadable date is ignored (RFC 9110 §13.1.3): the whole file.
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-Modified-Since": "yesterday"})
    assert r.status == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_wins_over_if_modified_since(file_proxy, method):
    whole = http_get(file_proxy.port, ONLY_DATE)
    etag, date = whole.headers["etag"], whole.headers["last-modified"]
    # Another ETag with a date that would say "not modified": If-None-Match alone decides, a 200.
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-None-Match": '"other"', "If-Modified-Since": date})
    assert r.status == 200 and r.headers["content-length"] == whole.headers["content-length"]
    # Our ETag with a date long before: still a 304.
    older = email.utils.format_datetime(_shift(date, -86400), usegmt=True)
    r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-None-Match": etag, "If-Modified-Since": older})
    assert r.status == 304


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_list_of_etags_with_a_comma_inside_one(file_proxy, method):
    whole = http_get(file_proxy.port, BOTH)
    etag = whole.headers["etag"]
    assert etag.startswith('"') and etag.endswith('-audio"')
    listed = f'"a,b", W/"x, y", {etag}, "z"'
    r = http_get(file_proxy.port, BOTH, method=method, headers={"If-None-Match": listed})
    assert r.status == 304
    # A comma inside an ETag is not a separator: `"a,<ours>"` is one other ETag, not ours.
    r = http_get(file_proxy.port, BOTH, method=method, headers={"If-None-Match": f'"a,{etag[1:]}, "b"'})
    assert r.status == 200
    # Our strong ETag given weak matches too: the weak comparison, both sides.
    r = http_get(file_proxy.port, BOTH, method=method, headers={"If-None-Match": f"W/{etag}"})
    assert r.status == 304
    r = http_get(file_proxy.port, BOTH, method=method, headers={"If-None-Match": "*"})
    assert r.status == 304


def test_an_origin_with_an_etag_and_a_date_gets_both_on_200_206_and_304(file_proxy):
    whole = http_get(file_proxy.port, BOTH)
    assert whole.status == 200 and whole.clean
    etag, date = whole.headers["etag"], whole.headers["last-modified"]
    assert etag.endswith('-audio"') and email.utils.parsedate_to_datetime(date)
    part = http_get(file_proxy.port, BOTH, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == whole.body[10:20]
    assert (part.headers["etag"], part.headers["last-modified"]) == (etag, date)
    same = http_get(file_proxy.port, BOTH, headers={"If-None-Match": etag})
    assert same.status == 304 and (same.headers["etag"], same.headers["last-modified"]) == (etag, date)
    same = http_get(file_proxy.port, BOTH, headers={"If-Modified-Since": date})
    assert same.status == 304 and (same.headers["etag"], same.headers["last-modified"]) == (etag, date)
    head = http_get(file_proxy.port, BOTH, method="HEAD")
    assert (head.headers["etag"], head.headers["last-modified"]) == (etag, date)
    # If-Range by our strong ETag, or by the exact date: the range; by another date: the whole file.
    r = http_get(file_proxy.port, BOTH, headers={"Range": "bytes=10-19", "If-Range": date})
    assert r.status == 206 and r.body == whole.body[10:20]
    older = email.utils.format_datetime(_shift(date, -1), usegmt=True)
    r = http_get(file_proxy.port, BOTH, headers={"Range": "bytes=10-19", "If-Range": older})
    assert r.status == 200 and r.body == whole.body


def test_an_inverted_range_is_ignored_not_416(file_proxy):
    """`bytes=5-3` is invalid and so ignored (RFC 9110 §14.1.1): the whole file, where tornado's own
    range handling would answer 416."""
    whole = http_get(file_proxy.port, BOTH)
    r = http_get(file_proxy.port, BOTH, headers={"Range": "bytes=5-3"})
    assert r.status == 200 and r.body == whole.body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_modified_since_in_every_date_form(file_proxy, method):
    """RFC 9110 §5.6.7: a recipient reads the obsolete forms too; asctime's and a "-0000" zone come
    from the parser without a zone, and are GMT (they once made a 500)."""
    whole = http_get(file_proxy.port, ONLY_DATE)
    when = email.utils.parsedate_to_datetime(whole.headers["last-modified"])
    for offset, status in ((0, 304), (-1, 200)):
        t = when + datetime.timedelta(seconds=offset)
        for form in (t.strftime("%a %b %e %H:%M:%S %Y"), t.strftime("%a, %d %b %Y %H:%M:%S -0000"),
                     t.strftime("%A, %d-%b-%y %H:%M:%S GMT")):
            r = http_get(file_proxy.port, ONLY_DATE, method=method, headers={"If-Modified-Since": form})
            assert r.status == status, (form, r.status)
