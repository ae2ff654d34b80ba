"""Where an MP4's media data waits when it arrives before the moov that says which bytes are audio.

The filters never open a file: the caller hands them a spool factory. These are the two spools the
project uses: an anonymous temporary file (the proxy; it has no name on disk, so nothing is left
behind even if the process dies) and the input file itself when it can be read again (the CLI: no
copy at all).
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import BinaryIO, Protocol

from .errors import SpoolFailed, human_size


class Spool(Protocol):
    def write(self, data) -> None:
        """Append input bytes (those that follow the previous write)."""

    def read_at(self, offset: int, size: int) -> bytes:
        """`size` bytes that were written at input offset `offset`."""

    def close(self) -> None:
        ...


class TempFileSpool:
    """Input bytes from offset `start` on, kept in an unnamed temporary file.

    Unbuffered, so that a full or failing disk shows at the write that meets it (as SpoolFailed, a
    clean error of the response) and never later, in a flush at close. Free space is checked before
    each write: a spool must not take the last bytes of a disk the system needs.
    """

    def __init__(self, start: int, directory: str | None = None, keep_free: int = 64 << 20):
        self.start = start
        self.where = directory or tempfile.gettempdir()
        self.keep_free = keep_free
        try:
            self.file: BinaryIO = tempfile.TemporaryFile(dir=directory, buffering=0)
        except OSError as e:
            raise self._failed(e, "could not be created") from None
        self.fd = self.file.fileno()
        self.size = 0

    def write(self, data) -> None:
        try:
            stats = os.fstatvfs(self.fd)
            free = stats.f_bavail * stats.f_frsize
            if free - len(data) < self.keep_free:
                raise OSError(errno.ENOSPC, f"{human_size(free)} free, {human_size(self.keep_free)} kept for the system")
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            raise self._failed(e, f"failed after {human_size(self.size)}") from None
        self.size += len(data)

    def read_at(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self.fd, size, offset - self.start)
        except OSError as e:
            raise self._failed(e, "could not be read back") from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # nothing is buffered: closing an unnamed file frees its space whatever it says

    def _failed(self, error: OSError, what: str) -> SpoolFailed:
        return SpoolFailed(f"the spool in {self.where} {what}: {error.strerror or error} (audio_only_spool_dir)")


class SourceFileSpool:
    """The input is a file we can read again: nothing to copy, read the audio where it lies."""

    def __init__(self, source: BinaryIO):
        self.fd = source.fileno()

    def write(self, data) -> None:
        pass

    def read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        pass


class BufferSpool:
    """The whole input is in memory already (a body mitmproxy holds): read the audio where it lies."""

    def __init__(self, data):
        self.data = data

    def write(self, data) -> None:
        pass

    def read_at(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset : offset + size])

    def close(self) -> None:
        pass
