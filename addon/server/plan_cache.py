"""Planned audio-only files kept between requests: a player's range requests read the moov from the
origin once per file version. And the audio track IDs of init segments, which every refresh of a live
playlist names again."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import extractor
from extractor.manifest.common import InitSegment
from addon.origin_version import OriginVersion
from addon.server import kept_groups


@dataclass
class AudioFile:
    """An MP4 to serve as a file: its plan, the origin's version it was planned from, our validators."""
    plan: extractor.FilePlan
    version: OriginVersion
    etag: str
    last_modified: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)  # the origin's, that hold for our bytes too
    key: tuple | None = None  # (URL asked, route, Host sent, version, cut, gap): the plan and output caches'
    storable: bool = False  # the origin's answer lets a shared cache keep it (output_cache.py)


class PlanCache:
    """Planned files by (URL asked, route, Host sent, validator, cut, gap), least recently used first
    out, bounded in bytes (audio_only_file_cache)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.entries: OrderedDict[tuple, AudioFile] = OrderedDict()
        self.used = 0

    def get(self, key: tuple) -> AudioFile | None:
        if (entry := self.entries.get(key)) is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: AudioFile) -> None:
        if key in self.entries or charge(entry) > self.limit:
            return
        self.entries[key] = entry
        self.used += charge(entry)
        while self.used > self.limit:
            _, old = self.entries.popitem(last=False)
            self.used -= charge(old)


def charge(entry: AudioFile) -> int:
    """The memory an entry may take: its plan, and the origin requests kept with it (kept_groups.py)."""
    return entry.plan.memory + kept_groups.reserve(entry.plan)


class InitCache:
    """Audio track IDs of init segments by (URL, first, last), with the origin's validator of the init
    they were read from (each use asks the origin whether it still holds: an init replaced at the same
    URL, its tracks swapped, must not keep naming the old track), least recently used out past `limit`."""

    def __init__(self, limit: int = 512):
        self.limit = limit
        self.entries: OrderedDict[InitSegment, tuple[tuple[int, ...], tuple[tuple[str, str], ...]]] = OrderedDict()

    def get(self, init: InitSegment) -> tuple[tuple[int, ...], tuple[tuple[str, str], ...]] | None:
        """(track IDs, the conditional headers that ask whether they still hold), or None."""
        if (entry := self.entries.get(init)) is not None:
            self.entries.move_to_end(init)
        return entry

    def put(self, init: InitSegment, ids: tuple[int, ...], conditions: tuple[tuple[str, str], ...]) -> None:
        if not conditions:  # nothing to ask the origin with: read again each time (an init is small)
            self.entries.pop(init, None)
            return
        self.entries[init] = (ids, conditions)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
