"""Raft index -> (term, byte span) of every entry in the CommitLog, in bounded memory.

The CommitLog *is* the Raft log (DESIGN.md §1): an entry is a run of records sharing
(term, index), the last flagged ENTRY_END. The Raft driver needs, per index, the term
(log matching), the start offset (truncate a divergent suffix there) and the end offset
(the confirm offset is the end of the entry at the commit index), with `base_index` /
`base_term` standing for entries below the first one held (retired segments, compaction).

Memory must not grow with the backlog as it did (24 B per entry: 20M one-message entries
would hold 480 MB), so only the newest entries keep their exact places; the rest cost a
mark per 64 entries (0.25 B each). Terms are kept as runs (one
per term change). Once entries are in the log files (`settle`), all but the newest
`keep_exact` are forgotten in chunks, keeping a *mark* (index, end) every 64 entries or
1 MiB; the span of a forgotten entry is read back from the log by scanning the records
between two marks (`scan`, injected: this module does no I/O itself). Only a follower far
behind, or a start-up far from the tail, asks for those; they ask in order, so the last
block read is cached (two followers far behind at different places re-read theirs).
DLedger keeps a fixed-size index file instead; this needs no file to
keep consistent with the log across crashes. Rebuilt by scanning the log at start.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from dledgermq.store.entry_summary import SUMMARY_MARKS_MAX, EntrySummary
from dledgermq.store.errors import CorruptRecord, UnreadableEntries
from dledgermq.store.record import (
    F_FLAGS,
    F_INDEX,
    F_OFFSET,
    F_SIZE,
    F_TERM,
    FLAG_ENTRY_END,
    check_record,
)


class EntrySpan(NamedTuple):
    """One whole entry inside a buffer of entries about to be appended: its bytes are
    `[begin, end)` of that buffer, its first record sits at log offset `offset`."""

    begin: int
    end: int
    offset: int
    term: int
    index: int  # type: ignore[assignment]


class EntryPosition(NamedTuple):
    """What a header-only scan of the log yields per record (for `EntryIndex.rebuild`)."""

    term: int
    index: int  # type: ignore[assignment]
    commitlog_offset: int
    size: int
    flags: int

    @property
    def is_entry_end(self) -> bool:
        return bool(self.flags & FLAG_ENTRY_END)

    @property
    def end_offset(self) -> int:
        return self.commitlog_offset + self.size


def decode_position(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, expected_offset: int | None = None
) -> EntryPosition:
    """Verify the record at `pos` (CRC included) and return only where it is."""
    h = check_record(buf, pos, expected_offset)
    return EntryPosition(h[F_TERM], h[F_INDEX], h[F_OFFSET], h[F_SIZE], h[F_FLAGS])


# The records in [start, end) of the log, in order (`CommitLogReader.iter_records`).
Scan = Callable[[int, int], Iterable[EntryPosition]]

KEEP_EXACT_ENTRIES = 16_384  # settled entries whose places stay in memory
SETTLE_CHUNK_ENTRIES = 1_024  # forgotten at once: ~0.2 ms of the Raft thread (16k: ~2 ms)
MARK_EVERY_ENTRIES = 64
MARK_EVERY_BYTES = 1 << 20


class _Block(NamedTuple):
    """The exact places of the forgotten entries between two marks, read back."""

    first_index: int
    starts: list[int]
    ends: list[int]


class EntryIndex:
    def __init__(  # noqa: PLR0913 - the limits are only ever changed by tests
        self,
        base_index: int = 0,
        base_term: int = 0,
        base_end: int = 0,
        *,
        keep_exact: int = KEEP_EXACT_ENTRIES,
        settle_chunk: int = SETTLE_CHUNK_ENTRIES,
        mark_every_entries: int = MARK_EVERY_ENTRIES,
        mark_every_bytes: int = MARK_EVERY_BYTES,
    ) -> None:
        """Empty, continuing after entry `base_index` of `base_term` ending at `base_end`."""
        assert base_index >= 0
        assert base_term >= 0
        assert keep_exact >= 0
        assert settle_chunk > 0
        assert mark_every_entries > 0
        self.base_index = base_index
        self.base_term = base_term
        self._base_end = base_end
        self.scan: Scan | None = None  # Needed once a forgotten entry is asked for.
        self._keep_exact = keep_exact
        self._settle_chunk = settle_chunk
        self._mark_every_entries = mark_every_entries
        self._mark_every_bytes = mark_every_bytes
        # Entries (base_index, last_index]: term runs, each from its first index on.
        self._run_first = array("q")
        self._run_term = array("q")
        # Forgotten entries (base_index, _exact_from): marks (index, end), ascending, and
        # the end of the last one (`_cold_end`; the base's end while there is none).
        self._mark_index = array("q")
        self._mark_end = array("q")
        self._cold_end = base_end
        self._block: _Block | None = None
        # Entries [_exact_from, last_index]: exact places.
        self._exact_from = base_index + 1
        self._starts = array("q")
        self._ends = array("q")

    @property
    def last_index(self) -> int:
        return self._exact_from - 1 + len(self._ends)

    @property
    def last_term(self) -> int:
        return self._run_term[-1] if self._run_term else self.base_term

    @property
    def end_offset(self) -> int:
        """Where the next entry goes (the end of the last one)."""
        return self._ends[-1] if self._ends else self._cold_end

    def append(self, index: int, term: int, start: int, end: int) -> None:
        assert index == self.last_index + 1, (index, self.last_index)
        assert term >= self.last_term, (term, self.last_term)
        assert self.end_offset <= start < end, (self.end_offset, start, end)
        if not self._run_term or self._run_term[-1] != term:
            self._run_first.append(index)
            self._run_term.append(term)
        self._starts.append(start)
        self._ends.append(end)

    def term_at(self, index: int) -> int | None:
        """The entry's term; `base_term` at the base; None if unknown (below or above)."""
        if index == self.base_index:
            return self.base_term
        if self.base_index < index <= self.last_index:
            return self._run_term[bisect.bisect_right(self._run_first, index) - 1]
        return None

    def span(self, index: int) -> tuple[int, int]:
        """[start, end) commitlog offsets of a held entry."""
        assert self.base_index < index <= self.last_index, (index, self.base_index)
        position = index - self._exact_from
        if position >= 0:
            return self._starts[position], self._ends[position]
        block = self._cold_block(bisect.bisect_left(self._mark_index, index))
        position = index - block.first_index
        return block.starts[position], block.ends[position]

    def end_of(self, index: int) -> int:
        """The commitlog offset just past entry `index` (the base's end for the base)."""
        if index == self.base_index:
            return self._base_end
        if index == self._exact_from - 1:
            return self._cold_end
        return self.span(index)[1]

    def last_index_ending_by(self, offset: int) -> int:
        """The last entry that ends at or before `offset` (the base if none does)."""
        if offset >= self._cold_end:
            return self._exact_from - 1 + bisect.bisect_right(self._ends, offset)
        mark = bisect.bisect_right(self._mark_end, offset)  # marks before it end by offset
        if mark == 0 and offset < self._base_end:
            return self.base_index
        block = self._cold_block(mark)
        return block.first_index - 1 + bisect.bisect_right(block.ends, offset)

    def settle(self, upto: int) -> None:
        """Entries up to `upto` are written to the log files (so `scan` can read them back):
        all but the newest `keep_exact` of them may be forgotten."""
        forget = min(upto, self.last_index) - self._keep_exact - self._exact_from + 1
        if forget < self._settle_chunk:
            return
        if self._mark_index:
            mark_index, mark_end = self._mark_index[-1], self._mark_end[-1]
        else:
            mark_index, mark_end = self.base_index, self._base_end
        ends = self._ends
        for position in range(forget):
            index, end = self._exact_from + position, ends[position]
            if (
                index - mark_index >= self._mark_every_entries
                or end - mark_end >= self._mark_every_bytes
            ):
                mark_index, mark_end = index, end
                self._mark_index.append(index)
                self._mark_end.append(end)
        self._cold_end = ends[forget - 1]
        del self._starts[:forget], self._ends[:forget]
        self._exact_from += forget
        self._block = None  # The last block read may have grown or gained a mark.

    def truncate_from(self, index: int) -> None:
        """Forget entries >= index (the log is then cut at the new `end_offset`: the end of
        the entry before, not the start of the first dropped one, which may sit after a
        segment's padding)."""
        assert self.base_index < index <= self.last_index + 1, (index, self.base_index)
        if index >= self._exact_from:
            keep = index - self._exact_from
            del self._starts[keep:], self._ends[keep:]
        else:  # Into the forgotten entries (a follower's long uncommitted tail).
            self._cold_end = self.end_of(index - 1)
            mark = bisect.bisect_left(self._mark_index, index)
            del self._mark_index[mark:], self._mark_end[mark:]
            del self._starts[:], self._ends[:]
            self._exact_from = index
        run = bisect.bisect_left(self._run_first, index)
        del self._run_first[run:], self._run_term[run:]
        self._block = None

    def compact(self, upto: int) -> None:
        """Forget entries <= upto (they become the base)."""
        assert self.base_index <= upto <= self.last_index, (upto, self.base_index)
        if upto == self.base_index:
            return
        term, end = self.term_at(upto), self.end_of(upto)
        assert term is not None
        run = bisect.bisect_right(self._run_first, upto + 1) - 1  # the run holding upto + 1
        del self._run_first[: max(run, 0)], self._run_term[: max(run, 0)]
        if upto == self.last_index:
            del self._run_first[:], self._run_term[:]
        else:
            self._run_first[0] = upto + 1
        mark = bisect.bisect_right(self._mark_index, upto)
        del self._mark_index[:mark], self._mark_end[:mark]
        if upto >= self._exact_from - 1:
            drop = upto - self._exact_from + 1
            del self._starts[:drop], self._ends[:drop]
            self._exact_from, self._cold_end = upto + 1, end
        self.base_index, self.base_term, self._base_end = upto, term, end
        self._block = None

    def _cold_block(self, mark: int) -> _Block:
        """The forgotten entries after mark `mark - 1` (the base for 0) up to mark `mark`
        (the last forgotten entry past the last mark), read back from the log.

        Raises:
            UnreadableEntries: a record there is damaged, or holds another entry.
            OffsetGone: retention removed a segment the block starts in.
        """
        if mark == 0:
            low_index, low_end = self.base_index, self._base_end
        else:
            low_index, low_end = self._mark_index[mark - 1], self._mark_end[mark - 1]
        block = self._block
        if block is not None and block.first_index == low_index + 1:
            return block
        if mark < len(self._mark_index):
            high_index, high_end = self._mark_index[mark], self._mark_end[mark]
        else:
            high_index, high_end = self._exact_from - 1, self._cold_end
        assert self.scan is not None, "forgotten entries are read back through `scan`"
        starts: list[int] = []
        ends: list[int] = []
        first_record: EntryPosition | None = None
        try:
            for record in self.scan(low_end, high_end):
                first_record = first_record or record
                if record.is_entry_end:
                    expected = low_index + len(ends) + 1
                    if (record.index, record.term) != (expected, self.term_at(expected)):
                        raise UnreadableEntries(
                            low_end,
                            high_end,
                            f"entry ({record.term}, {record.index}) at "
                            f"{record.commitlog_offset}, expected ({self.term_at(expected)}, "
                            f"{expected})",
                        )
                    starts.append(first_record.commitlog_offset)
                    ends.append(record.end_offset)
                    first_record = None
        except UnreadableEntries:
            raise
        except CorruptRecord as exc:
            raise UnreadableEntries(low_end, high_end, str(exc)) from exc
        if (
            first_record is not None
            or len(ends) != high_index - low_index
            or (ends and ends[-1] != high_end)
        ):
            raise UnreadableEntries(
                low_end, high_end, f"does not hold entries {low_index + 1}..{high_index}"
            )
        self._block = _Block(low_index + 1, starts, ends)
        return self._block

    def summary(self, upto: int, marks_max: int = SUMMARY_MARKS_MAX) -> EntrySummary:
        """Entries up to `upto` (committed: never truncated) for `entry_summary`: their term
        runs and at most about `marks_max` marks spread evenly over their bytes, the last
        one `upto` itself (a restart scans on from there)."""
        upto = min(upto, self.last_index)
        if upto <= self.base_index:
            return EntrySummary(self.base_index, self.base_term, self._base_end, (), (), (), ())
        top_end = self.end_of(upto)
        gap = max(1, (top_end - self._base_end) // marks_max)
        indexes: list[int] = []
        ends: list[int] = []
        last_end = self._base_end
        marks = bisect.bisect_right(self._mark_index, upto)
        for position in _spread(self._mark_end, marks, last_end, gap):
            indexes.append(self._mark_index[position])
            ends.append(last_end := self._mark_end[position])
        exact = max(0, upto - self._exact_from + 1)  # exact entries up to `upto`
        for position in _spread(self._ends, exact, last_end, gap):
            indexes.append(self._exact_from + position)
            ends.append(self._ends[position])
        if not indexes or indexes[-1] != upto:
            indexes.append(upto)
            ends.append(top_end)
        runs = bisect.bisect_right(self._run_first, upto)
        return EntrySummary(
            self.base_index,
            self.base_term,
            self._base_end,
            tuple(self._run_first[:runs]),
            tuple(self._run_term[:runs]),
            tuple(indexes),
            tuple(ends),
        )

    @classmethod
    def resume(
        cls, summary: EntrySummary, *, trusted_end: int, min_offset: int, **limits: int
    ) -> EntryIndex | None:
        """The index `summary` describes, up to its last mark ending by `trusted_end` (the
        log is known durable and committed below it), every entry forgotten (read back
        between marks when asked); `add_scanned` goes on from there. When retention removed
        the log below `min_offset`, the first mark past it becomes the base. None when no
        mark qualifies above the base.
        """
        top = bisect.bisect_right(summary.mark_end, trusted_end)  # marks [first, top) stay
        base_index, base_term, base_end = summary.base_index, summary.base_term, summary.base_end
        first = 0
        if min_offset > base_end:
            first = bisect.bisect_left(summary.mark_end, min_offset)
            if first < top:
                base_index, base_end = summary.mark_index[first], summary.mark_end[first]
                run = bisect.bisect_right(summary.run_first, base_index) - 1
                base_term = summary.run_term[run]
            first += 1
        if top <= first:
            return None
        last_index = summary.mark_index[top - 1]
        runs = slice(
            bisect.bisect_right(summary.run_first, base_index + 1) - 1,
            bisect.bisect_right(summary.run_first, last_index),
        )
        entries = cls(base_index, base_term, base_end, **limits)
        entries._run_first = array("q", summary.run_first[runs])
        entries._run_first[0] = base_index + 1
        entries._run_term = array("q", summary.run_term[runs])
        entries._mark_index = array("q", summary.mark_index[first:top])
        entries._mark_end = array("q", summary.mark_end[first:top])
        entries._exact_from = last_index + 1
        entries._cold_end = summary.mark_end[top - 1]
        return entries

    def verify_newest_block(self) -> None:
        """Read back the forgotten entries before the newest mark (after `resume`: that the
        log there holds the entries the summary says, up to the mark it resumes from).

        Raises:
            UnreadableEntries, OffsetGone: as `span`.
        """
        if self._mark_index:
            self._cold_block(len(self._mark_index) - 1)

    def add_scanned(self, records: Iterable[EntryPosition]) -> None:
        """Append the complete entries of a scan of the log after `end_offset`, settling
        them as it goes (memory stays bounded however long the log is)."""
        first_record: EntryPosition | None = None
        for record in records:
            first_record = first_record or record
            if record.is_entry_end:
                index = record.index
                self.append(index, record.term, first_record.commitlog_offset, record.end_offset)
                self.settle(index)
                first_record = None
        assert first_record is None, "a scan must end on an entry boundary"

    @classmethod
    def rebuild(
        cls, records: Iterable[EntryPosition], *, start_offset: int = 0, **limits: int
    ) -> EntryIndex:
        """Index complete entries from a scan of the log (records in log order).

        When retention retired the log's beginning (`start_offset` > 0), the first entry
        left becomes the base: its term and end are known, the term of the one before it
        is not, and an entry below the retained log could not be sent anyway.
        """
        records = iter(records)
        first_record: EntryPosition | None = None
        for record in records:
            first_record = first_record or record
            if not record.is_entry_end:
                continue
            if start_offset > 0:
                entries = cls(record.index, record.term, record.end_offset, **limits)
            else:
                entries = cls(record.index - 1, 0, start_offset, **limits)
                start = first_record.commitlog_offset
                entries.append(record.index, record.term, start, record.end_offset)
                entries.settle(record.index)
            entries.add_scanned(records)
            return entries
        assert first_record is None, "a scan must end on an entry boundary"
        return cls(0, 0, start_offset, **limits)


def _spread(ends: array[int], count: int, after: int, gap: int) -> Iterator[int]:
    """Positions in the ascending `ends[:count]`, each end at least `gap` past the one
    before (the first past `after`): a bisection per position, not a walk over them all."""
    position = 0
    while (position := bisect.bisect_left(ends, after + gap, position, count)) < count:
        yield position
        after = ends[position]
        position += 1
