"""The parts of a multipart/byteranges answer (RFC 9110 §14.6): an origin's answer to one request of
several ranges, read back into the bytes of each range asked for.

Readers for the common form (one part a range, in the order asked, all alike but their
Content-Range), made of bulk steps: AskedRanges, the ranges of a request laid out in advance, cut at
offsets known before the answer; pieces_as_asked, the answer made again and compared. A careful walk
for any other form (parts sorted, merged or overlapping). Anything that is not such a body is
RangeRefused.
"""

from __future__ import annotations

import bisect
import re
from array import array
from itertools import accumulate, chain, islice, repeat
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


def first_part(body: bytes, delimiter: bytes, first_range: bytes, length: int):
    """The first part of a multipart answer, when it is in the common form that the others are then
    checked against: (where the first delimiter is, the part's headers from that delimiter's line end,
    where `bytes FIRST-LAST/LENGTH` begins in them, that line); None when its headers are longer than
    PART_HEADERS (they are made again for every part), or hold no such Content-Range, or two (the
    careful walk then reads the answer, and takes the first)."""
    pos = body.find(delimiter)
    header_end = body.find(b"\r\n\r\n", pos) if pos >= 0 else -1
    if header_end < 0:
        return None
    header = body[pos + len(delimiter) : header_end + 4]
    line = b"bytes " + first_range + b"/%d\r\n" % length
    at = header.find(line)
    name_at = header.rfind(b"\n", 0, at) + 1
    if (len(header) > PART_HEADERS or at < 0 or header.lower().count(b"content-range:") != 1
            or header[name_at : name_at + 14].lower() != b"content-range:" or header[name_at + 14 : at].strip(b" \t")):
        return None
    return pos, header, at, line


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
    if (first := first_part(body, delimiter, b"%d-%d" % (spans[0][0], spans[0][1]), length)) is None:
        return None
    pos, header, at, line = first
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


class AskedRanges:
    """The ranges of one request of several ranges, laid out in advance (once per plan: kept_groups.py):
    the Range header's value, and where each part of a common-form answer (pieces_as_asked) puts its
    bytes, but for what only the answer tells (its boundary and the part headers around the
    Content-Range line, alike in every part). Three arrays and a string, no object per range.

    Reading an answer then takes a few bulk steps whatever the count of ranges: the part headers
    sliced out at the offsets they must have and compared, in one comparison, with the headers the
    common form has there (made from the Range header's value by bytes.replace); the pieces sliced at
    the offsets between them."""

    __slots__ = ("spec", "sizes", "ends", "wanted")

    def __init__(self, firsts, lasts):
        """From the (first, last) input bytes of each range, in the order asked (arrays or lists)."""
        self.spec = ",".join(map("%d-%d".__mod__, zip(firsts, lasts))).encode()  # the Range header's value: bytes=spec
        self.sizes = array("q", map(sub, map(add, lasts, repeat(1)), firsts))
        self.wanted = sum(self.sizes)
        # Each part's "first-last" text and bytes together, summed: with the constant part of each
        # part's headers (count * its length), where each piece ends past the first delimiter.
        self.ends = array("q", accumulate(map(add, map(len, self.spec.split(b",")), self.sizes)))

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def memory(self) -> int:
        return len(self.spec) + 16 * len(self.sizes) + 100

    def pieces(self, body: bytes, boundary: bytes, length: int | None) -> list[bytes] | None:
        """The bytes of each range from a multipart answer in the common form (pieces_as_asked's, whose
        result this equals), None when it is not in that form (the careful walk then reads it)."""
        if length is None or not len(self.sizes):
            return None
        delimiter = b"--" + boundary
        first_range = self.spec[: self.spec.find(b",") % (len(self.spec) + 1)]
        if (first := first_part(body, delimiter, first_range, length)) is None:
            return None
        pos, header, at, line = first
        before, after = header[:at] + b"bytes ", b"/%d\r\n" % length + header[at + len(line) :]
        if b"\0" in before or b"\0" in after:
            return None  # (the delimiter's mark below)
        # Each part: "\r\n" delimiter, its headers up to "bytes ", "first-last", the rest of its headers, its bytes.
        step = 2 + len(delimiter) + len(before) + len(after)
        count = len(self.sizes)
        piece_ends = array("q", map(add, self.ends, range(pos - 2 + step, pos - 2 + step * count + 1, step)))
        piece_starts = array("q", map(sub, piece_ends, self.sizes))
        closing = piece_ends[-1]
        if closing > len(body) or not body.startswith(b"\r\n" + delimiter + b"--", closing):
            return None
        part_starts = array("q", [pos])  # (the first delimiter has no line end before it of its own)
        part_starts.extend(islice(piece_ends, count - 1))
        headers = b"\r\n" + b"".join(map(body.__getitem__, map(slice, part_starts, piece_starts)))
        # Each delimiter as a NUL (which no header holds), each "," of the spec as the end of a part's
        # headers and the start of the next's: two replaces, one comparison, for all the parts at once.
        expected = b"\0" + before + self.spec.replace(b",", after + b"\0" + before) + after
        if b"\0" in headers or headers.replace(b"\r\n" + delimiter, b"\0") != expected:
            return None
        return list(map(body.__getitem__, map(slice, piece_starts, piece_ends)))
