"""Packet sync for TsAudioFilter: which bytes of the input are whole packets, and what happens when a
sync byte is not where it should be (bytes lost or inserted on the way).

A packet is filtered only once the sync bytes of the LOOKAHEAD packets after it are seen: damage shows
as a wrong sync byte a packet or more on, and the packets before it may hold it (a packet's tail may be
the next packet's bytes, another PID's, and one sync byte may be right by chance). They are dropped, and
the search for sync starts at the first of them: RESYNC_PACKETS sync bytes in a row, one packet apart,
within MAX_RESYNC bytes, or the input is refused. The last packets of a piece wait for the next piece
(or finish).
"""

from __future__ import annotations

from ..errors import MalformedInput
from . import packets as tsp

RESYNC_PACKETS = 5  # sync bytes in a row that count as found again
MAX_RESYNC = 1 << 20  # bytes searched for sync before the input is refused
LOOKAHEAD = 2  # packets after a packet whose sync bytes vouch for it


class PacketSync:
    """Mixin of TsAudioFilter (which sets size, prefix, _carry, _carry_at, _hunting, _lost_at, _hunt_from,
    _ended, and has _block and _warn)."""

    def _consume(self, view: memoryview, at: int, out: list) -> None:
        """Whole packets of view (at input offset `at`) to _block, as this module's top says."""
        size, pos, end = self.size, 0, len(view)
        judged = LOOKAHEAD * size + self.prefix + 1  # bytes from a packet's start that decide it
        while pos < end and not self._ended:
            if self._hunting:
                self._carry += view[pos:]
                found = self._find_sync()
                if found is None:
                    return
                rest = bytes(self._carry[found:])
                found_at = self._carry_at + found
                self._warn(f"lost packet sync at byte {self._lost_at}; found again at byte {found_at} "
                           f"({found_at - self._hunt_from} bytes skipped from byte {self._hunt_from}: the packets "
                           f"before the lost sync may hold the damage)")
                at, self._hunting = found_at, False
                self._carry.clear()
                view, pos, end = memoryview(rest), 0, len(rest)
                continue
            if self._carry:  # packets begun in an earlier piece: judged with the first bytes of this one
                begun = -(-len(self._carry) // size)
                want = (begun - 1) * size + judged
                take = max(0, min(want - len(self._carry), end - pos))
                joined = bytes(self._carry) + bytes(view[pos : pos + take])
                pos += take
                if len(joined) < want:
                    self._carry = bytearray(joined)
                    return
                self._carry.clear()
                if self._judge(joined, 0, begun, self._carry_at, out, held=True) == begun:
                    pos -= len(joined) - begun * size  # those bytes of this piece go the bulk way
                continue
            count = (end - pos - judged) // size + 1  # packets whose successors' sync bytes are in view
            if count > 0:
                good = self._judge(view, pos, count, at, out)
                pos += good * size
                if good < count:
                    continue
            if pos < end and not self._ended:
                self._carry_at = at + pos
                self._carry += view[pos:]
                return

    def _judge(self, buf, start: int, count: int, at: int, out: list, held: bool = False) -> int:
        """Filter the `count` packets from buf[start:] (buf at input offset `at`, holding the sync bytes
        of LOOKAHEAD more packets), as many as are sound; when a sync byte is wrong, the hunt for sync
        starts (held: from the rest of buf, else from the caller's view). Returns how many were filtered."""
        size, prefix = self.size, self.prefix
        syncs = bytes(buf[start + prefix : start + (count + LOOKAHEAD - 1) * size + prefix + 1 : size])
        sound = len(syncs) - len(syncs.lstrip(b"G"))  # packets from start with their sync byte
        good = count if sound == len(syncs) else max(sound - LOOKAHEAD, 0)
        if good:
            self._block(buf, start, good, out)
        if good < count and not self._ended:
            hunt_from = start + good * size
            self._lose_sync(at + start + sound * size + prefix, at + hunt_from, bytes(buf[hunt_from:]) if held else b"")
        return good

    def _lose_sync(self, lost_at: int, hunt_from: int, held: bytes) -> None:
        """Sync lost at input offset lost_at (a byte that should be a sync byte); the search starts at
        hunt_from, whose bytes from there on not yet in the view are `held`."""
        self._hunting, self._lost_at, self._hunt_from, self._carry_at = True, lost_at, hunt_from, hunt_from
        self._carry = bytearray(held)

    def _find_sync(self) -> int | None:
        """Offset in _carry where packets start again, or None (what cannot hold the start is let go)."""
        found, unneeded = tsp.find_sync(self._carry, self.size, RESYNC_PACKETS)
        if found is not None:
            return found
        if self._carry_at + unneeded - self._hunt_from > MAX_RESYNC:
            raise MalformedInput(f"lost packet sync at byte {self._lost_at} and found no {RESYNC_PACKETS} packets "
                                 f"in a row in the {MAX_RESYNC} bytes after it: not MPEG-TS from there on")
        del self._carry[:unneeded]
        self._carry_at += unneeded
        return None
