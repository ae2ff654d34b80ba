"""Audio-only files as sent, kept between requests (audio_only_output_cache): a file answer that sent
the whole output (a GET, or a range from the first byte to the last) keeps its bytes, and later answers
for the same file version and cut are read from them instead of the origin's ranges.

What makes it safe to share: every request still asks the origin first (file_source.py's probe, with
the client's own headers), and an entry is found only under the version that answer names (its strong
ETag or Last-Modified, and its length): a client the origin refuses never reaches the entry, a file
replaced at the origin is a new key. An origin's answer marked `Cache-Control: no-store` or `private`
is never kept (RFC 9111: we are a shared cache).

Each entry is a temporary file already unlinked (tempfile.TemporaryFile), held by its descriptor:
nothing is left on disk when the process ends, however it ends. Readers read through a duplicate of
the descriptor, so an entry evicted meanwhile stays readable to them. Bounded in bytes, least recently
used first out; with worker processes the option's size is split among them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections import OrderedDict

log = logging.getLogger("addon.audio_only")

PIECE = 1 << 20  # bytes read from an entry at a time (the memory a reader holds)
MOST_ENTRIES = 4096  # (each holds a descriptor)


class OutputCache:
    def __init__(self, limit: int = 0):
        self.limit = limit
        self.entries: OrderedDict[tuple, tuple[int, int]] = OrderedDict()  # key -> (descriptor, size)
        self.used = 0

    def get(self, key: tuple) -> Reader | None:
        """A reader of the entry, if there is one (the caller closes it)."""
        if (entry := self.entries.get(key)) is None:
            return None
        self.entries.move_to_end(key)
        return Reader(os.dup(entry[0]), entry[1])

    def filling(self, key: tuple, size: int, folder: str | None) -> Filling | None:
        """Where an answer of `size` bytes for `key` writes what it sends (a file in `folder`, the spool's:
        audio_only_spool_dir); None when it would not fit, or no file can be made there."""
        if not 0 < size <= self.limit or key in self.entries:
            return None
        try:
            return Filling(self, key, size, folder)
        except OSError as e:
            log.warning(f"audio-only: the output cache cannot keep a file in {folder or 'the temporary folder'}: {e}")
            return None

    def put(self, key: tuple, descriptor: int, size: int) -> None:
        if key in self.entries or size > self.limit:
            os.close(descriptor)
            return
        self.entries[key] = (descriptor, size)
        self.used += size
        self.shrink()

    def shrink(self) -> None:
        while self.entries and (self.used > self.limit or len(self.entries) > MOST_ENTRIES):
            _, (descriptor, size) = self.entries.popitem(last=False)
            self.used -= size
            os.close(descriptor)

    def clear(self) -> None:
        limit, self.limit = self.limit, 0
        self.shrink()
        self.limit = limit


class Filling:
    """An entry being written as its answer goes out; kept by commit() only when whole."""

    def __init__(self, cache: OutputCache, key: tuple, size: int, folder: str | None):
        self.cache, self.key, self.size = cache, key, size
        self.file = tempfile.TemporaryFile(dir=folder, prefix="audio-only-output-")
        self.written = 0

    def write(self, data) -> None:
        """The next bytes sent. A failure here (a full disk) only ends the filling: never the answer."""
        if self.file.closed:
            return
        if self.written + len(data) > self.size:
            return self.abandon()  # (longer than the file's size: never kept)
        try:
            self.file.write(data)
        except OSError as e:
            log.warning(f"audio-only: the output cache could not keep a file: {e}")
            return self.abandon()
        self.written += len(data)

    def commit(self) -> None:
        """The whole answer was sent: keep it (unless it is not whole)."""
        if self.file.closed or self.written != self.size:
            return self.abandon()
        try:
            self.file.flush()
        except OSError as e:
            log.warning(f"audio-only: the output cache could not keep a file: {e}")
            return self.abandon()
        self.file.flush()
        descriptor = os.dup(self.file.fileno())
        self.file.close()
        self.cache.put(self.key, descriptor, self.size)

    def abandon(self) -> None:
        self.file.close()


class Reader:
    """Bytes of an entry, through a descriptor of its own."""

    def __init__(self, descriptor: int, size: int):
        self.descriptor, self.size = descriptor, size

    async def pieces(self, first: int, last: int):
        """Bytes first..last, PIECE at a time (read in a worker thread: a disk may be slow)."""
        at = first
        while at <= last:
            piece = await asyncio.to_thread(os.pread, self.descriptor, min(PIECE, last + 1 - at), at)
            if not piece:
                raise OSError(f"the output cache's entry ends at {at} of {self.size} bytes")
            yield piece
            at += len(piece)

    def close(self) -> None:
        os.close(self.descriptor)
