"""Which version of the origin's file an answer is made of, and the errors of reading it.

Every answer to a Range request is checked before use (OriginVersion.problem_with): many origins
ignore If-Range, and bytes of another version of the file must never complete a response.
"""

from __future__ import annotations

import ssl
from typing import NamedTuple

import httpx

from addon import http_rules


class RangeRefused(Exception):
    """The origin's answer to a Range request cannot be used; the message says why."""


class MultiRangeRefused(Exception):
    """The origin does not answer several ranges in one request: it refused this many (`count`: a
    416, a 400, a 200 with the whole file: fewer may do), or it never does (one range only, a
    multipart answer we cannot read): ask for them one by one."""

    def __init__(self, message: str, count: bool = True):
        super().__init__(message)
        self.count = count  # whether it is the count of ranges that was refused


# What a fetch can meet besides a refused answer: the network, TLS, the HTTP framing, our timeout.
FETCH_ERRORS = (RangeRefused, httpx.HTTPError, OSError, ssl.SSLError, TimeoutError)


class OriginVersion(NamedTuple):
    """The version of the origin's file a response is made of: what an If-Range names (its strong
    ETag, else its Last-Modified: http_rules.validator) and its length. A Range answer may complete
    the response only if it comes from this same version."""
    validator: str
    length: int | None

    @classmethod
    def of(cls, headers) -> OriginVersion | None:
        """The version of an origin's 200, when the origin serves ranges at all; read before we edit
        the headers."""
        if headers.get("accept-ranges", "").lower() != "bytes":
            return None
        if not (validator := http_rules.validator(headers)):
            return None
        length = headers.get("content-length", "")
        return cls(validator, int(length) if length.isdigit() else None)

    @classmethod
    def of_probe(cls, status: int, headers) -> OriginVersion | None:
        """The version from the answer to a probe (a Range request of the first bytes), when the origin
        serves the file as a file: a 206 of identity bytes, a Content-Range giving the whole length,
        and a validator."""
        if status != 206 or headers.get("content-encoding", "identity") != "identity":
            return None
        whole = http_rules.content_range(headers.get("content-range", ""))
        validator = http_rules.validator(headers)
        if whole is None or whole[2] is None or not validator:
            return None
        return cls(validator, whole[2])

    def problem_with(self, status: int, headers, first: int, last: int) -> str | None:
        """Why the origin's answer to `Range: bytes=first-last` cannot be used (None: it can). Many
        origins ignore If-Range, so a file replaced at the origin shows only here: the status, the
        range, the total length and the validator must all be the ones asked for."""
        if status != 206:
            return f"the origin answered {status}, not 206"
        value = headers.get("content-range", "")
        if (got := http_rules.content_range(value)) is None:
            return f"the origin's Content-Range {value!r} is not a byte range"
        start, end, total = got
        if total is not None and self.length is not None and total != self.length:
            return f"the origin's file is now {total} bytes, not {self.length}: it was replaced"
        expected_end = last if self.length is None else min(last, self.length - 1)
        if (start, end) != (first, expected_end):
            return f"the origin sent bytes {start}-{end}, not the {first}-{expected_end} asked for"
        return self.replaced(headers)

    def replaced(self, headers) -> str | None:
        """Why an answer's validator says another version of the file (None: the same one)."""
        named = http_rules.named_validator(headers, self.validator)
        if named == self.validator:
            return None
        if self.validator.startswith('"'):
            return f"the origin's ETag is now {named!r}, not {self.validator}: the file was replaced"
        return f"the origin's Last-Modified is now {named!r}, not {self.validator!r}: the file was replaced"


def describe(e: BaseException) -> str:
    """An origin failure in words: httpx's message where it has one."""
    return str(e) or type(e).__name__
