"""The parts of a multipart/byteranges answer (RFC 9110 §14.6): an origin's answer to one request of
several ranges, read back into the bytes of each range asked for.

Two readers: a quick one for the common form (one part a range, in the order asked, all alike but
their Content-Range), made of bulk steps, and a careful walk for any other (parts sorted, merged or
overlapping). Anything that is not such a body is RangeRefused.
"""

from __future__ import annotations

import bisect
import re
from itertools import accumulate, chain
from operator import add, sub

from addon.http_rules import CONTENT_RANGE
from addon.origin_version import RangeRefused

# A part's Content-Range line (http_rules.CONTENT_RANGE, among the part's headers).
PART_RANGE = re.compile(rb"(?im)^content-range:[ \t]*" + CONTENT_RANGE.pattern.encode() + rb"[ \t]*\r?$")


def parse_byteranges(body: bytes, boundary: bytes) -> list[tuple[int, int, int | None, bytes]]:
    """The parts of a multipart/byteranges body: (first, last, total length, bytes) each. Raises
    RangeRefused on anything that is not such a body."""
    delimiter = b"--" + boundary
    closing = b"\r\n" + delimiter  # what follows each part's bytes
    parts, pos = [], body.find(delimiter)
    if pos < 0:
        raise RangeRefused("the origin's multipart answer has no boundary")
    find, search, startswith, append = body.find, PART_RANGE.search, body.startswith, parts.append
    while True:
        pos += len(delimiter)
        if startswith(b"--", pos):
            return parts
        header_end = find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise RangeRefused("a part of the origin's multipart answer is cut short")
        m = search(body, pos, header_end)
        if not m:
            raise RangeRefused("a part of the origin's multipart answer has no Content-Range")
        first, last, total = int(m[1]), int(m[2]), None if m[3] == b"*" else int(m[3])
        start = header_end + 4
        end = start + last + 1 - first
        if last < first or not startswith(closing, end):
            raise RangeRefused(f"the part for bytes {first}-{last} of the origin's multipart answer is malformed")
        append((first, last, total, body[start:end]))
        pos = end + 2


PART_HEADERS = 512  # bytes of headers a part of a multipart answer may have, at most


def pieces_as_asked(body: bytes, boundary: bytes, spans: list[tuple[int, int]], length: int | None) -> list[bytes] | None:
    """The bytes of each span from a multipart answer in the common form: one part per span, in the
    order asked, all with the first part's headers but for a `Content-Range: bytes first-last/length`
    that says exactly that span of this length. None as soon as anything differs (other order, merged
    parts, another length, other headers or line endings...): parse_byteranges then reads it carefully.

    How: the answer the origin would have sent in that form is made again from the first part's
    headers and the pieces cut where that form puts them, and compared with the answer, whole. Bulk
    steps (map, join, one comparison) instead of a walk part by part: a GET of the test file has
    18,001 parts."""
    if length is None or not spans:
        return None
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    header_end = body.find(b"\r\n\r\n", pos) if pos >= 0 else -1
    if header_end < 0:
        return None
    header = body[pos + len(delimiter) : header_end + 4]  # the first part's, from its delimiter's line end
    if len(header) > PART_HEADERS:  # (made again for every part below: a long one is the careful walk's)
        return None
    line = b"bytes %d-%d/%d\r\n" % (spans[0][0], spans[0][1], length)
    at = header.find(line)
    name_at = header.rfind(b"\n", 0, at) + 1
    if (at < 0 or header.lower().count(b"content-range:") != 1  # (two: the careful walk takes the first)
            or header[name_at : name_at + 14].lower() != b"content-range:" or header[name_at + 14 : at].strip(b" \t")):
        return None
    escape = lambda text: text.replace(b"%", b"%%")  # noqa: E731
    form = escape(b"\r\n" + delimiter + header[:at]) + b"bytes %d-%d/" + b"%d" % length + b"\r\n" + escape(header[at + len(line) :])
    heads = list(map(form.__mod__, spans))
    heads[0] = heads[0][2:]  # the first delimiter has no line end before it of its own
    sizes = [last + 1 - first for first, last in spans]
    # Where each piece starts and ends in the answer: after its headers, then the next part's.
    ends = list(accumulate(map(add, map(len, heads), sizes), initial=pos))
    pieces = list(map(body.__getitem__, map(slice, map(sub, ends[1:], sizes), ends[1:])))
    closing = ends[-1]
    remade = b"".join(chain.from_iterable(zip(heads, pieces)))
    if body[pos:closing] != remade or not body.startswith(b"\r\n" + delimiter + b"--", closing):
        return None
    return pieces


def spans_from_parts(parts: list[tuple[int, int, int | None, bytes]], spans: list[tuple[int, int]], length: int | None) -> list[bytes]:
    """The bytes of each (first, last) span out of a multipart answer's parts (parse_byteranges), which
    origins give in the order asked, sorted, or with neighbours merged into one part. RangeRefused when
    a span has no part or a part names another file length."""
    out, by_first = [], sorted(parts, key=lambda p: p[0])
    firsts = [p[0] for p in by_first]
    for first, last in spans:
        i = bisect.bisect_right(firsts, first) - 1  # the last part starting at or before `first`
        part = by_first[i] if i >= 0 and last <= by_first[i][1] else \
            next((p for p in parts if p[0] <= first and last <= p[1]), None)  # parts that overlap
        if part is None:
            raise RangeRefused(f"the origin's multipart answer has no part for bytes {first}-{last}")
        # ("*": the origin does not say the length; the answer's validator already named the version)
        if part[2] is not None and part[2] != length:
            raise RangeRefused(f"the origin's file is now {'*' if part[2] is None else part[2]} bytes, not {length}: "
                               f"it was replaced")
        out.append(part[3][first - part[0] : last + 1 - part[0]])
    return out
