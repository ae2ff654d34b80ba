"""What the edge did with one flow: its record, `flow.metadata["audio_only"]`, one typed object.

Written by the request side (what was asked), the router (where the request was for) and our server
(how it was answered); read by the marks (mitmweb's flow list, the summary) and the error hook. Its
`outcome` says what happened; nothing is inferred from which fields exist.

A TypedDict, that is a plain dict at run time: mitmproxy saves a flow's metadata with its flows
(`-w`, mitmweb's save) as tnetstring, which takes plain values only (a dataclass would stop the save).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, TypedDict

from mitmproxy import http

META = "audio_only"  # flow.metadata key

Outcome = Literal["asked", "passed through", "answered", "extracted", "failed"]
ASKED: Outcome = "asked"  # audio (or the CDN's plain seeking) asked for, not answered yet
PASSED: Outcome = "passed through"  # asked for, not extracted (`why` says why)
ANSWERED: Outcome = "answered"  # answered with an error of the CDN's (a 400, a 503; `why`)
EXTRACTED: Outcome = "extracted"  # the audio (or the cut video) went out whole
FAILED: Outcome = "failed"  # the answer ended uncleanly (`why`)


class ClientTarget(NamedTuple):
    """Where the client's request was for, as it sent it: the router sends the request to our server
    and puts this back when the answer comes (a saved flow keeps it as a list)."""
    scheme: str
    host: str
    port: int
    host_header: str | None
    http_version: str

    @classmethod
    def of(cls, flow: http.HTTPFlow) -> ClientTarget:
        r = flow.request
        return cls(r.scheme, r.host, r.port, r.host_header, r.http_version)

    def restore(self, flow: http.HTTPFlow) -> None:
        r = flow.request
        r.scheme, r.host, r.port = self.scheme, self.host, self.port
        r.host_header = self.host_header
        r.http_version = self.http_version


class SeekParams(TypedDict):
    values: dict[str, str | None]  # the raw start and end of each format, by key (formats.SEEK_KEYS)
    by_time: bool  # FLV start/end in seconds (the host's setting)


class FlowRecord(TypedDict, total=False):
    outcome: Outcome
    why: str  # passed through, answered or failed: the reason, in words
    requested: bool  # audio asked for (the parameter, on an enabled host)
    plain: bool  # the CDN's plain video seeking: cut, keep the video
    seek: SeekParams | None  # None: seeking off
    param_text: str  # the audio parameter as the client wrote it (`ali_audio_only=1`): a playlist's URIs get it
    segment_tracks: str  # `<name>_track`: an fMP4 media segment's audio track IDs ("1,2")
    byte_range: str  # `<name>_range`: the bytes of the origin's resource the request is for ("100-199", "100-")
    client: ClientTarget  # set when routed to our server
    served: str  # how our server answered: file, stream or relay
    format: str  # of a streamed answer, once begun
    seek_range: str  # the cut, in words
    bytes_in: int  # a streamed answer's origin bytes
    bytes_out: int  # and ours
    origin_read: int  # a file answer's bytes read from the origin
    sent: int  # and sent
    file_length: int  # the origin's file's length


def of(flow: http.HTTPFlow) -> FlowRecord | None:
    return flow.metadata.get(META)


def begin(flow: http.HTTPFlow, **fields) -> FlowRecord:
    """A new record for the flow, outcome ASKED unless given."""
    record = FlowRecord(**{"outcome": ASKED, **fields})
    flow.metadata[META] = record
    return record


def conclude(record: FlowRecord, outcome: Outcome, why: str = "", **fields) -> None:
    """What happened, once known."""
    record.update(outcome=outcome, **fields)
    if why:
        record["why"] = why
