"""What an answer writes to, and the plain error pages it raises.

An answer (file, stream, relay) is given a Sink: the status, headers and body of our response and the
client's request headers, nothing else of tornado's handler. A failure before the headers go out is
a Refusal (tornado's HTTPError), which the handler's write_error turns into a plain text page.
"""

from __future__ import annotations

import tornado.web

from addon import http_rules


class Refusal(tornado.web.HTTPError):
    """A plain error page in place of the answer (a 400, a 502, a 503): raised before its headers went
    out (tornado then drops what was set, and calls write_error)."""

    def __init__(self, status: int, text: str, served: str = "file", retry_after: int | None = None):
        super().__init__(status)  # (no log_message: tornado logs nothing, the answer has said why)
        self.text = text
        self.served = served  # SERVED_HEADER: which answer refused
        self.retry_after = retry_after


class Sink:
    """Our response to one routed request, as an answer sees it."""

    def __init__(self, handler: tornado.web.RequestHandler):
        self._handler = handler

    @property
    def request_headers(self):
        """The client's request headers, as it sent them (conditionals and Range included)."""
        return self._handler.request.headers

    def set_status(self, status: int, reason: str | None = None) -> None:
        self._handler.set_status(status, reason)

    def add_header(self, name: str, value: str) -> None:
        if name.lower() == "date":  # tornado sets one of its own: the origin's takes its place, never beside it
            self._handler.set_header(name, value)
        else:
            self._handler.add_header(name, value)

    def set_header(self, name: str, value: str) -> None:
        self._handler.set_header(name, value)

    def not_modified(self, last_modified: str | None) -> bool:
        """Whether the client's conditionals make this a 304 (our ETag set first: http_rules.not_modified)."""
        return http_rules.not_modified(self._handler, last_modified)

    def write(self, data: bytes) -> None:
        self._handler.write(data)

    async def flush(self) -> None:
        """What was written, to mitmproxy; StreamClosedError when the client has left."""
        await self._handler.flush()

    def finish(self) -> None:
        self._handler.finish()

    def cut(self) -> None:
        """End the response uncleanly: our connection to mitmproxy closes before the body's end, and
        mitmproxy ends the client's response so (never a clean end of a broken body)."""
        self._handler.request.connection.close()
