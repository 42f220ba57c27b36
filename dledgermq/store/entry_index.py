"""Raft index -> (term, byte span) of every entry in the CommitLog, in memory.

The CommitLog *is* the Raft log (DESIGN.md §1): an entry is a run of records sharing
(term, index), the last flagged ENTRY_END. The Raft driver needs, per index, the term
(log matching), the start offset (truncate a divergent suffix there) and the end offset
(the confirm offset is the end of the entry at the commit index). Three typed arrays keep
that at 24 bytes per entry, with `base_index`/`base_term` standing for entries below the
first one held (retired segments, later compaction). Rebuilt by scanning the log at start;
it never reads or writes files itself.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable
from typing import NamedTuple

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


class EntryIndex:
    def __init__(self, base_index: int = 0, base_term: int = 0, base_end: int = 0) -> None:
        """Empty, continuing after entry `base_index` of `base_term` ending at `base_end`."""
        assert base_index >= 0
        assert base_term >= 0
        self.base_index = base_index
        self.base_term = base_term
        self._base_end = base_end
        self._terms = array("q")
        self._starts = array("q")
        self._ends = array("q")

    @property
    def last_index(self) -> int:
        return self.base_index + len(self._terms)

    @property
    def last_term(self) -> int:
        return self._terms[-1] if self._terms else self.base_term

    @property
    def end_offset(self) -> int:
        """Where the next entry goes (the end of the last one)."""
        return self._ends[-1] if self._ends else self._base_end

    def append(self, index: int, term: int, start: int, end: int) -> None:
        assert index == self.last_index + 1, (index, self.last_index)
        assert term >= self.last_term, (term, self.last_term)
        assert self.end_offset <= start < end, (self.end_offset, start, end)
        self._terms.append(term)
        self._starts.append(start)
        self._ends.append(end)

    def term_at(self, index: int) -> int | None:
        """The entry's term; `base_term` at the base; None if unknown (below or above)."""
        if index == self.base_index:
            return self.base_term
        position = index - self.base_index - 1
        if 0 <= position < len(self._terms):
            return self._terms[position]
        return None

    def span(self, index: int) -> tuple[int, int]:
        """[start, end) commitlog offsets of a held entry."""
        position = index - self.base_index - 1
        assert 0 <= position < len(self._terms), (index, self.base_index, self.last_index)
        return self._starts[position], self._ends[position]

    def end_of(self, index: int) -> int:
        """The commitlog offset just past entry `index` (the base's end for the base)."""
        return self._base_end if index == self.base_index else self.span(index)[1]

    def last_index_ending_by(self, offset: int) -> int:
        """The last entry that ends at or before `offset` (the base if none does)."""
        return self.base_index + bisect.bisect_right(self._ends, offset)

    def truncate_from(self, index: int) -> None:
        """Forget entries >= index (the log is then cut at the new `end_offset`: the end of
        the entry before, not the start of the first dropped one, which may sit after a
        segment's padding)."""
        assert self.base_index < index <= self.last_index + 1, (index, self.base_index)
        keep = index - self.base_index - 1
        del self._terms[keep:], self._starts[keep:], self._ends[keep:]

    def compact(self, upto: int) -> None:
        """Forget entries <= upto (they become the base)."""
        assert self.base_index <= upto <= self.last_index, (upto, self.base_index)
        drop = upto - self.base_index
        if drop == 0:
            return
        self.base_term, self._base_end = self._terms[drop - 1], self._ends[drop - 1]
        self.base_index = upto
        del self._terms[:drop], self._starts[:drop], self._ends[:drop]

    @classmethod
    def rebuild(cls, records: Iterable[EntryPosition], *, start_offset: int = 0) -> EntryIndex:
        """Index complete entries from a scan of the log (records in log order).

        When retention retired the log's beginning (`start_offset` > 0), the first entry
        left becomes the base: its term and end are known, the term of the one before it
        is not, and an entry below the retained log could not be sent anyway.
        """
        entries: EntryIndex | None = None
        first_record: EntryPosition | None = None
        for record in records:
            first_record = first_record or record
            if not record.is_entry_end:
                continue
            index, term = record.index, record.term
            if entries is None and start_offset > 0:
                entries = cls(index, term, record.end_offset)
            else:
                if entries is None:
                    entries = cls(index - 1, 0, start_offset)
                entries.append(index, term, first_record.commitlog_offset, record.end_offset)
            first_record = None
        assert first_record is None, "a scan must end on an entry boundary"
        return entries if entries is not None else cls(0, 0, start_offset)
