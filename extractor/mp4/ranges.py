"""Input byte ranges: the check that no audio byte is also claimed by another track.

A moov or moof that places audio samples inside another track's chunks would make us send that
track's bytes (video) as audio; such a file is refused instead.
"""

from bisect import bisect_left
from itertools import accumulate


def first_overlap(audio: list[tuple[int, int]], others: list[tuple[int, int]]) -> tuple[int, int] | None:
    """An (audio start, other start) pair of ranges that share a byte, or None. Ranges are (start, end)."""
    others = sorted(r for r in others if r[1] > r[0])
    if not others or not audio:
        return None
    starts = [s for s, _ in others]
    reach = list(accumulate((e for _, e in others), max))  # furthest end among the first i+1 ranges
    for s, e in audio:
        i = bisect_left(starts, e) - 1  # the last other range starting before this one ends
        if i >= 0 and reach[i] > s:
            j = next(k for k in range(i, -1, -1) if others[k][1] > s)
            return s, others[j][0]
    return None
