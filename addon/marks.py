"""What the edge did, where a QA engineer looks: marks and comments on flows, and a summary at the end.

mitmweb and the console show a flow's mark and comment in the flow list. An extracted flow is marked
:headphones: with `audio only: 460.3 MB -> 10.0 MB (97.8% saved)`; one that failed keeps the reason
(the router names it) and is marked :warning:; a request for audio that was passed through says why
(`not extracted: origin answered 206`). Each is read from the flow's record (record.py): its
outcome, and the figures of its answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mitmproxy import http

from addon import record

log = logging.getLogger("addon.audio_only")

EXTRACTED = ":headphones:"
FAILED = ":warning:"


def size(n: int) -> str:
    """Sizes as people read them in a flow list: 460.3 MB, 75.5 kB, 812 B."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def saved(bytes_in: int, bytes_out: int) -> str:
    share = 1 - bytes_out / bytes_in if bytes_in else 0.0
    return f"{size(bytes_in)} -> {size(bytes_out)} ({share:.1%} saved)"


@dataclass
class Tally:
    """Counts since mitmproxy started, for the summary when it stops."""
    extracted: int = 0
    passed: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def summary(self) -> str:
        return (f"audio-only: {self.extracted} responses extracted, {self.passed} passed through, "
                f"{self.failed} failed; {saved(self.bytes_in, self.bytes_out)} in the extracted ones")


class Marks:
    """A part of the addon (AudioOnly.addons): marks at each flow's end, the summary at done."""

    def __init__(self):
        self.tally = Tally()

    def response(self, flow: http.HTTPFlow) -> None:
        """A response that ended cleanly: extracted, answered by us, or passed through."""
        rec = record.of(flow)
        outcome = rec.get("outcome") if rec else None
        if outcome == record.PASSED:
            self.tally.passed += 1
            flow.comment = f"audio only: not extracted: {rec['why']}"
        elif outcome == record.ANSWERED:
            flow.comment = f"audio only: answered {rec['why']}"
        elif outcome == record.EXTRACTED and rec.get("served") == "file":
            self.tally.extracted += 1
            self.tally.bytes_in += rec["origin_read"]
            self.tally.bytes_out += rec["sent"]
            flow.marked = EXTRACTED
            flow.comment = (f"audio only (file): {size(rec['sent'])} sent of the audio of a "
                            f"{size(rec['file_length'])} file, {size(rec['origin_read'])} read from the origin")
        elif outcome == record.EXTRACTED and rec.get("served") == "manifest":
            self.tally.extracted += 1  # (its bytes are not media: the segments' answers count those)
            flow.marked = EXTRACTED
            flow.comment = f"audio only: {rec['format'].upper()} rewritten to audio only ({size(rec['bytes_out'])})"
        elif outcome == record.EXTRACTED:
            self.tally.extracted += 1
            self.tally.bytes_in += rec["bytes_in"]
            self.tally.bytes_out += rec["bytes_out"]
            flow.marked = EXTRACTED
            flow.comment = f"audio only: {saved(rec['bytes_in'], rec['bytes_out'])}"

    def error(self, flow: http.HTTPFlow) -> None:
        """A response that ended uncleanly (the router has named our reason on the flow): counted as
        failed once its extraction had begun, or when our server says it failed."""
        rec = record.of(flow)
        # (a worker that died mid-answer leaves FAILED without a format: addon/workers.py)
        if rec and ("format" in rec or rec.get("outcome") == record.FAILED):
            self.tally.failed += 1
            flow.marked = FAILED
            if rec.get("outcome") != record.FAILED and flow.error:
                flow.comment = f"audio only: ended uncleanly: {flow.error.msg}"

    def done(self) -> None:
        if self.tally.extracted or self.tally.passed or self.tally.failed:
            log.info(self.tally.summary())
