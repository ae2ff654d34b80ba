"""The audio-only MP4 as a file: once the moov is known, its length and where each of its bytes comes from.

The output is the planned head (ftyp, the new moov, the mdat header) followed by the planned input
ranges (the audio chunks) in order. A byte range of the output is therefore a piece of the head and
a list of input byte ranges: `segments(first, last)` gives them, so that a file server can answer any
Range request by reading only those input bytes from wherever the input lies.

Sans-IO like the rest of the core: the caller reads the top-level box headers, the ftyp and the moov
(with Range requests, say) and hands them over; nothing here reads or waits.
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate, compress, islice, repeat
from operator import add, gt, sub

from ..errors import MalformedInput, UnsupportedInput
from ..seek import SeekRange
from .boxes import Box
from .fragment_cut import cut_fragmented_plan
from .fragmented import PASSED_ON, rewrite_moof
from .fragmented_init import without_empty_aux
from .plan import plan
from .ranges import Ranges, inside, minus
from .sidx import Made, audio_timing, indexes_to_keep, parse_sidx, read_moov, rewrite_sidx


@dataclass(slots=True)
class Batch:
    """Ranges i..j-1 of a plan, the first read from input offset lo, the last up to hi: one origin read
    from lo to hi gives them all (the bytes between them dropped)."""
    i: int
    j: int
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(slots=True)
class Run(Batch):
    """Ranges i..j-1 of a plan, each a batch of its own (one origin range each), the first read from
    input offset lo, the last up to hi: what thousands of one-range batches are, described at once
    (FilePlan.batches with runs=True). Cut like a Batch from one read of lo..hi."""
    output: int = 0  # its output bytes: the ranges' lengths, clipped at lo and hi

    @property
    def size(self) -> int:
        return self.output


RUN_AT_LEAST = 8  # one-range batches in a row from which batches(runs=True) gives them as a Run


@dataclass
class FilePlan:
    head: bytes
    ranges: Ranges  # input ranges, in output order, after the head
    size: int  # the whole output's length
    warnings: list[str] = field(default_factory=list)
    gap: int = 0  # ranges closer than this are read together (batches)
    # Bytes of our own between ranges (a fragmented file: each fragment's new moof and mdat header),
    # by the index of the range they go before (len(ranges): after the last).
    inserts: dict[int, bytes] = field(default_factory=dict)
    starts: array = field(default_factory=lambda: array("q"))  # output offset of each range
    breaks: array = field(default_factory=lambda: array("q"))  # ranges k that start a new batch
    # A fragmented file with a sidx: the output bytes (first, last) of the audio's sidx (a DASH
    # SegmentBase's indexRange; its Initialization is bytes 0..len(head)-1).
    index_range: tuple[int, int] | None = None
    # What a caller derives from the plan and keeps with it, as long as the plan is kept (the server's
    # origin requests for the answers asked for most: addon/server/kept_groups.py). Not the plan's data.
    kept: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        starts, ends = self.ranges.starts, self.ranges.ends
        lengths = minus(ends, starts)
        n = len(starts)
        if self.inserts:
            extra = array("q", bytes(8 * (n + 1)))
            for k, data in self.inserts.items():
                extra[k] = len(data)
            self.starts = array("q", accumulate(map(add, lengths, islice(extra, 1, None)), initial=len(self.head) + extra[0]))
        else:
            self.starts = array("q", accumulate(lengths, initial=len(self.head)))
        assert self.starts.pop() == self.size
        gaps_over = map(gt, map(sub, islice(starts, 1, None), ends), repeat(self.gap))
        breaks = compress(range(1, n), gaps_over)
        if self.inserts:  # a batch never runs across bytes of our own
            breaks = sorted(set(breaks) | {k for k in self.inserts if 0 < k < n})
        self.breaks = array("q", breaks)

    @property
    def memory(self) -> int:
        """About what this plan holds in memory, for a cache bounded in bytes."""
        return (len(self.head) + self.ranges.memory + 8 * (len(self.starts) + len(self.breaks))
                + sum(map(len, self.inserts.values())) + 100 * len(self.inserts) + 200)

    def _insert(self, k: int, first: int, last: int):
        """The part of the insert before range k that lies in output bytes first..last, or None."""
        data = self.inserts.get(k)
        if not data:
            return None
        start = (self.starts[k] if k < len(self.starts) else self.size) - len(data)
        part = data[max(0, first - start) : max(0, last + 1 - start)]
        return part or None

    def batches(self, first: int, last: int, most: int, most_ranges: int = 1 << 12, runs: bool = False):
        """('head', bytes) and ('batch', Batch) in order, that make output bytes first..last (inclusive):
        neighbouring ranges closer than `gap` in one batch, a batch spanning at most `most` input
        bytes (a single range longer than that is split) and holding at most `most_ranges` ranges (its
        cut is one C loop that holds the GIL: about 1 µs a range). Found with bisect on the arrays: the
        work is per batch (and per insert), not per range.

        With `runs` (and no inserts), RUN_AT_LEAST or more one-range batches in a row come as one
        ('run', Run) instead: a file whose audio chunks lie between video frames is made of thousands
        of them, and a GET of it then costs a few bisects instead of a Batch each."""
        head = self.head
        if first < len(head):
            yield "head", head[first : min(last + 1, len(head))]
        if last < len(head):
            return
        in_starts, in_ends, out_starts = self.ranges.starts, self.ranges.ends, self.starts
        n = len(out_starts)
        i = max(0, bisect.bisect_right(out_starts, first) - 1)
        if i < n and first >= out_starts[i] + (in_ends[i] - in_starts[i]):
            i += 1  # first lies past range i: in the insert before the next, or after them all
        end = bisect.bisect_right(out_starts, last)  # ranges i..end-1 hold output bytes up to last
        runs = runs and not self.inserts
        while i < end:
            if (part := self._insert(i, first, last)) is not None:
                yield "head", part
            lo = in_starts[i] + max(0, first - out_starts[i])
            if runs and (j := self._run_end(i, end, most)) - i >= RUN_AT_LEAST:
                k = j - 1
                hi = min(in_ends[k], in_starts[k] + (last + 1 - out_starts[k]))
                output = out_starts[k] + (hi - in_starts[k]) - (out_starts[i] + (lo - in_starts[i]))
                yield "run", Run(i, j, lo, hi, output)
                i = j
                continue
            while True:
                next_break = bisect.bisect_right(self.breaks, i)
                j = min(end, i + most_ranges, self.breaks[next_break] if next_break < len(self.breaks) else end)
                # Only the ranges that end within `most` of lo (at least range i, maybe cut).
                j = max(i + 1, min(j, bisect.bisect_right(in_ends, lo + most, i + 1, j)))
                k = j - 1
                hi = in_ends[k]
                if out_starts[k] + (hi - in_starts[k]) > last + 1:
                    hi = in_starts[k] + (last + 1 - out_starts[k])  # the last output byte asked for
                if j == i + 1 and hi - lo > most:  # one range longer than a batch: in pieces
                    yield "batch", Batch(i, j, lo, lo + most)
                    lo += most
                    continue
                yield "batch", Batch(i, j, lo, hi)
                break
            i = j
        if (part := self._insert(i, first, last)) is not None:  # last lies in it, or it ends the file
            yield "head", part

    def _run_end(self, i: int, end: int, most: int) -> int:
        """j such that ranges i..j-1 (before `end`) are each a batch of one range: a break after each
        (the ranges after range i+1, i+2... start batches) and none longer than `most`; i when fewer
        than RUN_AT_LEAST are (found in constant time: this is asked at every batch)."""
        breaks = self.breaks
        p = bisect.bisect_right(breaks, i)
        q = p + RUN_AT_LEAST - 1
        if q >= len(breaks) or breaks[q] != i + RUN_AT_LEAST:
            return i  # fewer than RUN_AT_LEAST in a row (the breaks after i are not i+1, i+2...): no Run here
        # breaks[p..r-1] are i+1, i+2, ...: where breaks[k] - k stops being i + 1 - p (it only grows)
        r = bisect.bisect_left(range(p, len(breaks)), True, key=lambda k: breaks[k] - k != i + 1 - p) + p
        j = min(end, i + (r - p))  # range i + (r - p) starts a batch of several (or is the last of all)
        # A range longer than a batch is read in pieces: the run stops before it. Looked for in slices
        # that double, so that the work is about the run's length whatever lies after it.
        at, step = i, 16
        while at < j:
            upto = min(j, at + step)
            lengths = minus(self.ranges.ends[at:upto], self.ranges.starts[at:upto])
            if max(lengths) > most:
                return at + next(compress(range(len(lengths)), map(gt, lengths, repeat(most))))
            at, step = upto, step * 2
        return j

    def take(self, run: Run, count: int, room: int) -> tuple[Run | None, Run | None]:
        """The first ranges of a run, at most `count` of them and `room` output bytes, and the rest
        (None when nothing is left, or when not even the first range fits: then the first is None)."""
        i, j, out_starts = run.i, run.j, self.starts
        if j - i <= count and run.output <= room:
            return run, None
        out_lo = out_starts[i] + (run.lo - self.ranges.starts[i])
        # ranges i..k-1 fit when out_starts[k] - out_lo <= room (k < j: the last range's end is not clipped)
        k = min(bisect.bisect_right(out_starts, out_lo + room, i + 1, j) - 1, i + count)
        if k == i:
            return None, run
        taken = out_starts[k] - out_lo
        return (Run(i, k, run.lo, self.ranges.ends[k - 1], taken),
                Run(k, j, self.ranges.starts[k], run.hi, run.output - taken))

    def ones(self, run: Run):
        """The run as the one-range batches it stands for, one after the other (for an origin that
        answers one range a request, found out after the run was made)."""
        starts, ends = self.ranges.starts, self.ranges.ends
        for k in range(run.i, run.j):
            yield Batch(k, k + 1, run.lo if k == run.i else starts[k], run.hi if k == run.j - 1 else ends[k])

    def spans(self, run: Run) -> list[tuple[int, int]]:
        """The (first, last) input bytes of each range of a run, as a Range request names them."""
        starts = self.ranges.starts[run.i : run.j]
        lasts = self.ranges.ends[run.i : run.j]
        starts[0], lasts[-1] = run.lo, run.hi
        return list(zip(starts, map(sub, lasts, repeat(1))))

    def bounds(self, run: Run) -> tuple[array, array]:
        """The first and last input bytes of each range of a run (spans() as two arrays)."""
        firsts = self.ranges.starts[run.i : run.j]
        lasts = array("q", map(sub, self.ranges.ends[run.i : run.j], repeat(1)))
        firsts[0], lasts[-1] = run.lo, run.hi - 1
        return firsts, lasts

    def cut(self, batch: Batch, data, at: int) -> bytes:
        """The batch's output bytes out of `data`, the input from offset `at` on (its ranges' bytes, the
        gaps between them left out)."""
        view = memoryview(data)
        if batch.j == batch.i + 1:
            return bytes(view[batch.lo - at : batch.hi - at])
        starts = self.ranges.starts[batch.i : batch.j]
        ends = self.ranges.ends[batch.i : batch.j]
        starts[0], ends[-1] = batch.lo, batch.hi
        return b"".join(map(view.__getitem__, map(slice, map(sub, starts, repeat(at)), map(sub, ends, repeat(at)))))


class SpanCutter:
    """The output of a group of batches read as one span of the input (for an origin that answers one
    range a request; the bytes between the batches are read and dropped): fed the span's bytes as they
    arrive, it gives the output as soon as its bytes are in, range by range, cut from the piece that
    brought them. Only a range that spans two pieces has its bytes kept in between: the memory is a
    range, not the span (up to MAX_REQUEST, mostly video) nor a batch (ranges joined across gaps)."""

    def __init__(self, plan: FilePlan, group, at: int):
        self.plan = plan
        self.todo = deque(group)  # Batches (or Runs) to cut and bytes of our own between them, in order
        self.end = at  # the input offset of the next byte to come
        self.buffer = bytearray()  # the first batch's bytes so far, when it began in an earlier piece

    def feed(self, data: bytes) -> list[bytes]:
        """The output whose bytes are all in now, in order."""
        start = self.end
        self.end = end = start + len(data)
        out, ends = [], self.plan.ranges.ends
        while self.todo:
            batch = self.todo[0]
            if not isinstance(batch, Batch):  # bytes of our own
                out.append(bytes(self.todo.popleft()))
                continue
            if batch.lo >= end:
                break
            if batch.hi > end:  # only its beginning is in: its ranges that are, now; the rest kept
                k = bisect.bisect_right(ends, end, batch.i, batch.j)  # ranges i..k-1 end in what is in
                if k > batch.i:
                    out.append(self._cut(Batch(batch.i, k, batch.lo, ends[k - 1]), data, start))
                    self.todo[0] = batch = Batch(k, batch.j, self.plan.ranges.starts[k], batch.hi)
                if batch.lo < end:
                    self.buffer += memoryview(data)[max(batch.lo, start) - start :]
                break
            out.append(self._cut(self.todo.popleft(), data, start))
        return out

    def _cut(self, batch: Batch, data: bytes, start: int) -> bytes:
        if not self.buffer:
            return self.plan.cut(batch, data, start)
        self.buffer += memoryview(data)[: batch.hi - start]  # it began in an earlier piece
        cut = self.plan.cut(batch, self.buffer, batch.lo)
        self.buffer.clear()
        return cut

    @property
    def done(self) -> bool:
        return not self.todo


def plan_file(ftyp: bytes, moov: bytes, mdats: list[tuple[int, int]], length: int,
              seek: SeekRange | None = None, gap: int = 0, moov_offset: int | None = None) -> FilePlan:
    """The audio-only file of an MP4 whose top level is known: `ftyp` and `moov` are those boxes'
    bytes, `mdats` the (payload start, end) of every mdat box, `length` the input's size. Fragmented
    files are not files of this kind (their samples are in moofs): UnsupportedInput."""
    box = Box(b"moov", 0, 8 if int.from_bytes(moov[:4], "big") != 1 else 16, len(moov))
    result = plan(ftyp, moov, box, seek, moov_offset=moov_offset)
    if result.fragmented:
        raise UnsupportedInput("a fragmented MP4 (mvex): its audio is in the fragments (plan_fragmented_file)")
    ranges = result.ranges
    if outside := inside(ranges, [(a, min(b, length)) for a, b in mdats]):
        raise MalformedInput(f"audio bytes {outside[0]}-{outside[1]} do not lie inside an mdat box of the "
                             f"{length}-byte file")
    size = len(result.head) + ranges.total
    return FilePlan(result.head, ranges, size, result.warnings, gap)


def plan_fragmented_file(ftyp: bytes, moov: bytes, boxes_after: list[tuple[bytes, int, bytes]],
                         mdats: list[tuple[int, int]], length: int, seek: SeekRange | None = None,
                         gap: int = 0, moov_offset: int | None = None, index: bool = False) -> FilePlan:
    """The audio-only file of a fragmented MP4 whose top level is known: `boxes_after` are the boxes
    after the moov that the output is made from, in order, as (type, input offset, bytes): each moof
    (rewritten for its audio, followed by an mdat of that audio), and the small boxes players may want
    between fragments (passed on). The same bytes as the streamed output.

    With `index`, sidx boxes among them are kept too, rewritten for the audio (see sidx.py): only a
    plan can, since a sidx before the fragments needs their audio-only sizes (the streamed output has
    none, so it then differs from this file by the sidx).

    With `seek`, the cut (fragment_cut.py): the init with its edit lists, the fragments that hold the
    cut's audio cut to it, the boxes passed on between fragments only before a fragment of the cut;
    no sidx or mfra (as the streamed cut). SeekPastEnd when no audio is left."""
    moov = without_empty_aux(moov)
    box = Box(b"moov", 0, 8 if int.from_bytes(moov[:4], "big") != 1 else 16, len(moov))
    result = plan(ftyp, moov, box, None, moov_offset=moov_offset)
    if not result.fragmented:
        raise UnsupportedInput("not a fragmented MP4 (no mvex)")
    cut = None
    if seek is not None:
        result, cut = cut_fragmented_plan(result, seek)
        index = index and cut is None
    parts: dict[int, list] = {}  # range index -> our bytes before it (a sidx as its Sidx until known)
    made: list[Made] = []  # what each box after the moov made, for the sidx
    found_sidx = []
    info = read_moov(moov, box) if index else None
    indexed = min(result.audio_ids)  # the track a sidx indexes (one a box)
    # The moov's own samples first (a fragmented file may begin with a classic part: its mdat header
    # ends result.head), then each fragment's.
    starts, ends = array("q", result.ranges.starts), array("q", result.ranges.ends)
    audio_ids = result.audio_ids
    passed: list[bytes] = []  # with a cut: boxes between fragments, until a fragment of the cut comes
    for kind, offset, data in boxes_after:
        if cut is not None and cut.past_end:
            break  # no later sample is kept, nor the boxes between the fragments after the cut
        if kind == b"moof":
            rewritten = rewrite_moof(data, offset, audio_ids, result.trex, cut)
            held, passed = passed, []
            if rewritten is None:
                continue  # a fragment without audio
            new_moof, fragment_ranges = rewritten
            own = b"".join(held) + new_moof
            if index:
                timing = audio_timing(data, indexed, info.default_durations.get(indexed))
                made.append(Made(offset, len(new_moof) + fragment_ranges.total, timing or (None, 0)))
        elif kind in PASSED_ON and cut is not None:
            passed.append(data)
            continue
        elif kind in PASSED_ON:
            own, fragment_ranges = data, Ranges()
            made.append(Made(offset, len(data)))
        elif kind == b"sidx" and index:
            own, fragment_ranges = parse_sidx(data, offset), Ranges()
            found_sidx.append(own)
        else:
            continue
        k = len(starts)
        parts.setdefault(k, []).append(own)
        if len(fragment_ranges):
            if len(starts) and fragment_ranges.starts[0] < ends[-1]:
                raise MalformedInput(f"the audio of the fragment at byte {offset} comes before that of the "
                                     f"previous one")
            starts += fragment_ranges.starts
            ends += fragment_ranges.ends
    head = result.head
    if cut is not None:
        cut.check_end()
        head = cut.head
    ranges = Ranges(starts, ends)
    if outside := inside(ranges, [(a, min(b, length)) for a, b in mdats]):
        raise MalformedInput(f"audio bytes {outside[0]}-{outside[1]} do not lie inside an mdat box of the "
                             f"{length}-byte file")
    warnings = list(result.warnings)
    new_sidx = {}
    for sidx in indexes_to_keep(found_sidx, audio_ids):
        new_sidx[sidx.start], why = rewrite_sidx(sidx, made, indexed, info.timescales.get(indexed))
        if why:
            warnings.append(why)
    index_at = None
    inserts: dict[int, bytes] = {}
    for k, own in parts.items():
        pieces = []
        for piece in own:
            if not isinstance(piece, (bytes, bytearray, memoryview)):
                piece = new_sidx.get(piece.start) or b""
                if piece and index_at is None:
                    index_at = (k, sum(map(len, pieces)), len(piece))
            pieces.append(piece)
        inserts[k] = b"".join(pieces)
    size = len(head) + ranges.total + sum(map(len, inserts.values()))
    file_plan = FilePlan(head, ranges, size, warnings, gap, inserts)
    if index_at is not None:
        k, within, sidx_size = index_at
        first = (file_plan.starts[k] if k < len(file_plan.starts) else size) - len(inserts[k]) + within
        file_plan.index_range = (first, first + sidx_size - 1)
    return file_plan
