"""Gathering a fixed number of bytes that may arrive split across pieces.

The filters read their small fixed structures (box and tag headers) straight from the piece when it
holds them whole, which is nearly always; only a structure cut by a piece boundary is copied here.
"""


class Gather:
    def __init__(self):
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def peek(self, view: memoryview, pos: int, n: int) -> bytes | None:
        """The next n bytes (gathered ones first, then view[pos:]) without taking them, or None."""
        have = len(self._buf)
        if have >= n:
            return bytes(self._buf[:n])
        if have + len(view) - pos < n:
            return None
        return bytes(self._buf) + bytes(view[pos : pos + n - have])

    def take(self, view: memoryview, pos: int, n: int):
        """(buf, at, new_pos): the next n bytes are buf[at:at+n]; buf is None when the piece ran out
        first, in which case what it had is kept for the next call."""
        have = len(self._buf)
        if not have and len(view) - pos >= n:
            return view, pos, pos + n
        step = min(n - have, len(view) - pos)
        self._buf += view[pos : pos + step]
        pos += step
        if len(self._buf) < n:
            return None, 0, pos
        done = bytes(self._buf)
        self._buf.clear()
        return done, 0, pos
