"""The HTTP rules our server and the origin client share, each written once (RFC 9110).

- which headers are hop-by-hop (never carried from one connection to another);
- a version's validator: the origin's strong ETag, else its Last-Modified date;
- our ETag, derived from the origin's validator and the cut, and the cut's part of it;
- byte ranges: a client's Range, an origin's Content-Range;
- conditionals, in RFC 9110 §13.2.2's order: If-None-Match (the weak comparison, both sides), else
  If-Modified-Since (GET and HEAD) against our Last-Modified; If-Range by the strong comparison or an
  exact date.

tornado's own machinery is used where it fits: `RequestHandler.check_etag_header` for If-None-Match
(a list of ETags, a comma inside one, `*`, weak on both sides). Where it does not fit, the rule is
ours, and says why (client ranges: tornado's are private to its StaticFileHandler and answer 416 for
`bytes=5-3`, which RFC 9110 §14.1.1 says to ignore).
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tornado.web

    import extractor

# Headers that describe one connection, not the message (RFC 9110 §7.6.1, and the proxy ones).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade",
                        "trailer", "proxy-authenticate", "proxy-authorization"})
# What a 304 carries of the origin's other headers (RFC 9110 §15.4.5).
KEPT_IN_304 = frozenset({"cache-control", "expires", "vary", "content-location"})
# A Content-Range of one range: `bytes first-last/length` (length `*`: unknown).
CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
# Headers of an origin's answer that describe its bytes (or its connection), not the bytes we send.
ORIGIN_BYTES = HOP_BY_HOP | {"content-length", "accept-ranges", "content-range", "content-md5", "digest"}


def validator(headers) -> str | None:
    """What names the version of an origin's file: its strong ETag, else its Last-Modified date (a
    weak ETag cannot tell two versions of the same bytes' length apart by the byte, so it never does)."""
    etag = headers.get("etag", "")
    return etag if etag.startswith('"') else headers.get("last-modified")


def named_validator(headers, known: str) -> str | None:
    """The header of an answer that carries the same kind of validator as `known` (to compare)."""
    return headers.get("etag") if known.startswith('"') else headers.get("last-modified")


def content_range(value: str) -> tuple[int, int, int | None] | None:
    """(first, last, length or None) of an answer's Content-Range, None if it is not one byte range."""
    m = CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        return None
    return int(m[1]), int(m[2]), None if m[3] == "*" else int(m[3])


def seek_part(seek: extractor.SeekRange | None) -> str:
    """The cut as our ETags name it: `-start-end` (end empty for none), "" for no cut."""
    return f"-{seek.start}-{seek.end or ''}" if seek else ""


def derived_etag(etag: str, part: str = "", kind: str = "audio") -> str:
    """An ETag for our bytes from the origin's (weak stays weak), distinct from it but stable for the
    same origin version and cut (`part`); "" when the origin's is not an ETag."""
    weak, _, opaque = etag.rpartition('"')[0].partition('"')
    if not opaque and not weak:
        return ""
    return f'{weak}"{opaque}-{kind}{part}"'


def file_etag(origin_validator: str, length: int | None, part: str) -> str:
    """Our ETag for the audio-only file of one origin version (and cut): strong when the origin's ETag
    is, weak when only a Last-Modified date names the version (a date has a one-second grain: what it
    names is only weakly the same bytes)."""
    if origin_validator.startswith('"'):
        return derived_etag(origin_validator, part)
    token = re.sub(r"[^0-9A-Za-z]", "", origin_validator)
    return f'W/"lm{token}-{length}-audio{part}"'


def origin_if_none_match(value: str) -> str:
    """A client's If-None-Match as the origin knows its ETags: our `-audio` suffix taken off (a
    streamed answer asks the origin with it, so that the origin's 304 can come back)."""
    return value.replace('-audio"', '"')


def storable(headers) -> bool:
    """Whether a shared cache may keep the answer (RFC 9111, 5.2.2.5 and 5.2.2.7): not when the origin
    says `no-store` or `private` (a Set-Cookie in the answer is the origin's to mark so)."""
    directives = {d.strip().partition("=")[0].lower() for v in headers.get_list("cache-control") for d in v.split(",")}
    return not directives & {"no-store", "private"}


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """One byte range of a client's Range header as (first, last), 'unsatisfiable', or None (several
    ranges, or not a bytes range: answered with the whole file). Ours, not tornado's: tornado's is
    private to StaticFileHandler, and answers 416 for `bytes=5-3`, which RFC 9110 §14.1.1 says is
    invalid and so ignored (the whole file)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:  # the last n bytes
        n = int(m[2])
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    first = int(m[1])
    last = min(int(m[2]), size - 1) if m[2] else size - 1
    if m[2] and int(m[2]) < first:
        return None
    return (first, last) if first < size else "unsatisfiable"


def _date(value: str | None):
    """An HTTP date, in any of RFC 9110's three forms (§5.6.7: asctime's and "-0000" come without a
    zone from the parser, and are GMT), as a UTC datetime; None when absent or unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=datetime.timezone.utc) if when is not None and when.tzinfo is None else when


def not_modified(handler: tornado.web.RequestHandler, last_modified: str | None) -> bool:
    """Whether the request's conditionals make this a 304, our ETag already set on `handler`
    (RFC 9110 §13.2.2): If-None-Match, when sent, decides alone, by the weak comparison on both sides
    (tornado's check_etag_header); else If-Modified-Since, for GET and HEAD, against our Last-Modified
    (an unreadable date is ignored, as §13.1.3 says)."""
    headers = handler.request.headers
    if "If-None-Match" in headers:
        return handler.check_etag_header()
    if handler.request.method not in ("GET", "HEAD"):
        return False
    since, modified = _date(headers.get("If-Modified-Since")), _date(last_modified)
    if since is None or modified is None:
        return False
    return modified <= since


def if_range_holds(value: str, etag: str, last_modified: str | None) -> bool:
    """If-Range (RFC 9110 §13.1.5): the range is served only for the version the client has, named
    by our ETag by the strong comparison (a weak ETag never matches), or by our exact Last-Modified."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return not etag.startswith("W/") and value == etag
    return bool(last_modified) and value == last_modified
