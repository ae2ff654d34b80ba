"""Audio-only files as sent, kept between requests (audio_only_output_cache): a file answer that sent the
whole output (a GET, or a range from the first byte to the last) keeps its bytes, and later answers
for the same file version and cut are read from them instead of the origin's ranges.

What makes it safe to share: every request still asks the origin first (file_source.py's probe, with
the client's own headers), and an entry is found only under what that answer names: the origin it
came from (where we connect, and the Host we send: never the client's word alone), the version (a
strong ETag and the length: a file replaced within one second under the same date is not told apart
by a Last-Modified, so such files are never kept) and the cut. A client the origin refuses never
reaches an entry, a file replaced at the origin is a new key. An answer the origin marks
`Cache-Control: no-store` or `private` is neither kept nor answered from the cache (RFC 9111: we are
a shared cache).

Each entry is a temporary file already unlinked (tempfile.TemporaryFile), held by its descriptor:
nothing is left on disk when the process ends, however it ends. Readers read through a duplicate of
the descriptor, so an entry evicted meanwhile stays readable to them. Bounded in bytes (the entries
and the fillings under way together: room is made as a filling writes), one filling a key at a
time, and in descriptors (a quarter of the process's limit). Disk is written and read in threads of
its own, a MiB at a time: a slow disk holds back the answers that use the cache, not the others. Any
failure of the disk ends the filling, never the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import tempfile
from collections import OrderedDict

try:
    import resource
except ImportError:  # (not POSIX)
    resource = None

log = logging.getLogger("addon.audio_only")

PIECE = 1 << 20  # bytes read from an entry, or gathered before a write, at a time (the memory it holds)
# The cache's disk reads and writes: threads of their own, so that a slow disk holds back the answers
# that use the cache, not the planning and the manifests (asyncio's default executor).
DISK = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="audio-only-output")


def most_entries() -> int:
    """Entries (each a descriptor) at most: a quarter of this process's limit of open files."""
    if resource is None:
        return 256
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, (soft if soft != resource.RLIM_INFINITY else 4096) // 4)


class OutputCache:
    def __init__(self, limit: int = 0):
        self.limit = limit
        self.entries: OrderedDict[tuple, tuple[int, int]] = OrderedDict()  # key -> (descriptor, size)
        self.used = 0  # bytes of the entries
        self.filling_keys: dict[tuple, int] = {}  # key -> bytes reserved for the filling under way
        self.most = most_entries()
        self.warned: set[str] = set()  # folders where no file could be made (said once each)
        self.closed = False

    def get(self, key: tuple) -> Reader | None:
        """A reader of the entry, if there is one (the caller closes it)."""
        if (entry := self.entries.get(key)) is None:
            return None
        try:
            descriptor = os.dup(entry[0])
        except OSError:  # (out of descriptors: a miss, the origin's ranges will do)
            return None
        self.entries.move_to_end(key)
        return Reader(descriptor, entry[1])

    def filling(self, key: tuple, size: int, folder: str | None) -> Filling | None:
        """Where an answer of `size` bytes for `key` writes what it sends (a file in `folder`, the spool's:
        audio_only_spool_dir); None when it cannot be kept (bigger than the cache, being kept by another
        answer, too many files, no file can be made there). Its room is taken as its bytes are written
        (a player's `bytes=0-` at playback pace holds only what it has sent)."""
        if self.closed or not 0 < size <= self.limit or key in self.entries or key in self.filling_keys \
                or len(self.filling_keys) + 1 > self.most // 2:
            return None
        try:
            file = tempfile.TemporaryFile(dir=folder, prefix="audio-only-output-", buffering=0)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) and str(folder) not in self.warned:
                self.warned.add(str(folder))
                where = folder or "the temporary folder"
                log.warning(f"audio-only: the output cache cannot keep files in {where}: {e}")
            return None
        self.filling_keys[key] = 0
        return Filling(self, key, size, file)

    def reserve(self, key: tuple, size: int) -> bool:
        """Room for `size` more bytes of the filling for `key`: least recently used entries out until
        they fit beside the entries and the fillings under way (False, nothing evicted, when the other
        fillings alone hold too much)."""
        reserved = sum(self.filling_keys.values())
        if reserved + size > self.limit:
            return False
        while self.entries and (self.used + reserved + size > self.limit
                                or len(self.entries) + len(self.filling_keys) > self.most):
            self.evict_oldest()
        self.filling_keys[key] += size
        return True

    def evict_oldest(self) -> None:
        _, (descriptor, size) = self.entries.popitem(last=False)
        self.used -= size
        os.close(descriptor)

    def done_filling(self, key: tuple, descriptor: int | None) -> None:
        """A filling ended: its entry kept (its descriptor), or not (None)."""
        size = self.filling_keys.pop(key, 0)
        if descriptor is None:
            return
        if self.closed or size > self.limit:  # (the server stopped, or the limit went down, meanwhile)
            os.close(descriptor)
            return
        self.entries[key] = (descriptor, size)
        self.used += size
        self.shrink()

    def shrink(self) -> None:
        while self.entries and (self.used > self.limit or len(self.entries) > self.most):
            self.evict_oldest()

    def clear(self) -> None:
        """Our server stops: every entry goes, and no filling still under way is kept."""
        self.closed = True
        while self.entries:
            self.evict_oldest()


class Filling:
    """An entry being written as its answer goes out; kept by commit() only when whole."""

    def __init__(self, cache: OutputCache, key: tuple, size: int, file):
        self.cache, self.key, self.size = cache, key, size
        self.file = file  # (unbuffered: nothing is left to write when it is closed)
        self.gathered: list = []
        self.gathered_bytes = 0
        self.written = 0
        self.ended = False  # (kept, or dropped: nothing more is written, nothing is undone)

    async def write(self, data) -> None:
        """The next bytes sent, gathered and written a MiB at a time (in a worker thread)."""
        if self.ended:
            return
        if self.written + self.gathered_bytes + len(data) > self.size:
            return self.abandon()  # (longer than the file's size: never kept)
        self.gathered.append(bytes(data))
        self.gathered_bytes += len(data)
        if self.gathered_bytes >= PIECE:
            await self.write_gathered()

    async def write_gathered(self) -> None:
        data, self.gathered, self.gathered_bytes = b"".join(self.gathered), [], 0
        if not self.cache.reserve(self.key, len(data)):
            return self.abandon()  # (the other fillings under way hold the room)
        try:
            # The thread gets a descriptor of its own, which it closes: the answer may be cancelled (and
            # abandon() close the file) while the thread still writes; with the file's own number, reused
            # meanwhile by another open, the bytes could land in another file, or a client's socket.
            await asyncio.get_running_loop().run_in_executor(DISK, write_all, os.dup(self.file.fileno()), data)
        except OSError as e:
            log.warning(f"audio-only: the output cache could not keep a file: {e}")
            return self.abandon()
        self.written += len(data)

    async def commit(self) -> None:
        """The whole answer was sent: keep it (unless it is not whole)."""
        if self.ended:
            return
        if self.gathered:
            await self.write_gathered()
        if self.ended or self.written != self.size:
            return self.abandon()
        try:
            descriptor = os.dup(self.file.fileno())
        except OSError:
            return self.abandon()
        self.close()
        self.ended = True
        self.cache.done_filling(self.key, descriptor)

    def abandon(self) -> None:
        if not self.ended:
            self.ended = True
            self.close()
            self.cache.done_filling(self.key, None)

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass


def write_all(descriptor: int, data: bytes) -> None:
    """All of `data` to `descriptor`, which is then closed (it is the calling thread's own)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


def read_at(descriptor: int, size: int, at: int) -> bytes:
    """os.pread of a descriptor of the calling thread's own, which is then closed (see write_all)."""
    try:
        return os.pread(descriptor, size, at)
    finally:
        os.close(descriptor)


class Reader:
    """Bytes of an entry, through a descriptor of its own."""

    def __init__(self, descriptor: int, size: int):
        self.descriptor, self.size = descriptor, size

    async def pieces(self, first: int, last: int):
        """Bytes first..last, PIECE at a time (read in a worker thread: a disk may be slow)."""
        at = first
        while at <= last:
            piece = await asyncio.get_running_loop().run_in_executor(
                DISK, read_at, os.dup(self.descriptor), min(PIECE, last + 1 - at), at)
            if not piece:
                raise OSError(f"the output cache's entry ends at {at} of {self.size} bytes")
            yield piece
            at += len(piece)

    def close(self) -> None:
        os.close(self.descriptor)
