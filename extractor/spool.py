"""Where an MP4's media data waits when it arrives before the moov that says which bytes are audio.

The filters never open a file: the caller hands them a spool factory. These are the two spools the
project uses: an anonymous temporary file (the proxy; it has no name on disk, so nothing is left
behind even if the process dies) and the input file itself when it can be read again (the CLI: no
copy at all).
"""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Protocol


class Spool(Protocol):
    def write(self, data) -> None:
        """Append input bytes (those that follow the previous write)."""

    def read_at(self, offset: int, size: int) -> bytes:
        """`size` bytes that were written at input offset `offset`."""

    def close(self) -> None:
        ...


class TempFileSpool:
    """Input bytes from offset `start` on, kept in an unnamed temporary file."""

    def __init__(self, start: int, directory: str | None = None):
        self.start = start
        self.file: BinaryIO = tempfile.TemporaryFile(dir=directory)

    def write(self, data) -> None:
        self.file.write(data)

    def read_at(self, offset: int, size: int) -> bytes:
        self.file.flush()
        return os.pread(self.file.fileno(), size, offset - self.start)

    def close(self) -> None:
        self.file.close()


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
