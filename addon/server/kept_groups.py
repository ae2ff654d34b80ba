"""The origin requests of a file answer, made once per plan and kept with it (FilePlan.kept).

A GET of the whole file (or of a range players ask for again and again) from an origin that answers
several ranges a request makes the same requests each time: the same groups of batches
(OriginGroups.groups), the same Range headers, the same layout of the multipart answers
(multipart.AskedRanges). They are made once, by the first such GET as it goes, and kept with the
plan in the plan cache; the next GETs only send them and slice the answers.

Kept only for an origin that answers several ranges a request, by (first, last, ranges a request): the
groups depend on nothing else then (for an origin that answers one range a request they follow its
measured speed, and are made anew each time). A count that changes while the groups are made (the
origin refused one) keeps nothing; one that changes after is the key of other groups.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import extractor
from addon.multipart import AskedRanges

KEPT = 2  # answers' requests kept per plan (a whole-file GET's, a player's range), the last used kept
RANGE_MEMORY = 32  # bytes an AskedRanges takes a range (its Range header's text, two arrays)


@dataclass(slots=True)
class Request:
    """One origin request of a file answer: its group (Batches, Runs, bytes of our own between them,
    in order), its audio bytes, and its ranges laid out (None for a group of one range)."""
    group: list
    size: int
    asked: AskedRanges | None


def request_of(plan: extractor.FilePlan, group: list) -> Request:
    firsts, lasts = array("q"), array("q")
    for element in group:
        if isinstance(element, extractor.Run):
            more_firsts, more_lasts = plan.bounds(element)
            firsts += more_firsts
            lasts += more_lasts
        elif isinstance(element, extractor.Batch):
            firsts.append(element.lo)
            lasts.append(element.hi - 1)
    size = sum(b.size for b in group if isinstance(b, extractor.Batch))  # (a Run is one too)
    return Request(group, size, AskedRanges(firsts, lasts) if len(firsts) > 1 else None)


def kept(plan: extractor.FilePlan, key: tuple) -> list | None:
    """The requests kept for `key` ((first, last, ranges a request)): ('head', bytes) and ('fetch', Request)."""
    items = plan.kept.get(key)
    if items is not None:  # the most recently used last: the first out
        plan.kept[key] = plan.kept.pop(key)
    return items


def keep(plan: extractor.FilePlan, key: tuple, items: list) -> None:
    plan.kept.pop(key, None)
    plan.kept[key] = items
    while len(plan.kept) > KEPT:
        plan.kept.pop(next(iter(plan.kept)))


def reserve(plan: extractor.FilePlan) -> int:
    """The most memory the requests kept with a plan may take (the plan cache counts it with the plan):
    KEPT answers of all its ranges, and a request's objects for each 8 ranges (a Run of one range a
    request is RUN_AT_LEAST at least)."""
    return KEPT * (RANGE_MEMORY + 40) * (len(plan.ranges) + 1)
