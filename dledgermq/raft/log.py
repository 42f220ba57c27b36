"""`RaftLog`: the core's in-memory mirror of the replicated log (index -> term, payload).

Owns: the entries after a base `(base_index, base_term)` (the point a prefix was dropped
at: 0 for a log that was never compacted) and the `commit_index`.
Must not: do I/O. The durable copy (the CommitLog in the broker, `SimDisk` in the
simulator) is written by the driver from `Ready`; this mirror is what the core reasons on.

Compaction keeps the mirror small: the driver drops the applied prefix, and entries below
the base are then fetched from a `ColdEntries` source the driver passes in (the broker
reads them back from its CommitLog), so a leader can still feed a follower that lags
behind the base. Without a source the base is a hard floor (the simulator never compacts).

Invariants (asserted): indexes are dense from `first_index`; terms never decrease along
the log; `base_index <= commit_index <= last_index`; nothing at or below `commit_index`
is ever truncated; compaction never drops an uncommitted entry.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol

from dledgermq.raft.types import Entry, Index, Term


class ColdEntries(Protocol):
    """Committed entries below the mirror's base, read back from durable storage."""

    def term_at(self, index: Index) -> Term | None: ...

    def entries(self, lo: Index, hi: Index) -> tuple[Entry, ...]:
        """Entries `lo..hi-1` (all below the base; the source may return fewer)."""
        ...


class RaftLog:
    """Entries `first_index..last_index`, the term of the base, and the commit index."""

    __slots__ = ("_base_index", "_base_term", "_cold", "_commit_index", "_entries")

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        *,
        base_index: Index = 0,
        base_term: Term = 0,
        cold: ColdEntries | None = None,
    ) -> None:
        self._cold = cold
        self._base_index = base_index
        self._base_term = base_term
        self._entries: list[Entry] = []
        self._commit_index = base_index
        self.append(list(entries))

    # -- reading -------------------------------------------------------------------------

    @property
    def base_index(self) -> Index:
        return self._base_index

    @property
    def has_cold(self) -> bool:
        """Whether entries below the base can still be read (see `ColdEntries`)."""
        return self._cold is not None

    @property
    def first_index(self) -> Index:
        return self._base_index + 1

    @property
    def last_index(self) -> Index:
        return self._base_index + len(self._entries)

    @property
    def last_term(self) -> Term:
        return self._entries[-1].term if self._entries else self._base_term

    @property
    def commit_index(self) -> Index:
        return self._commit_index

    def term_at(self, index: Index) -> Term | None:
        """The term of the entry at `index`, the base term at the base, else None."""
        if index == self._base_index:
            return self._base_term
        if self._base_index < index <= self.last_index:
            return self._entries[index - self._base_index - 1].term
        if index == 0:
            return 0  # Before the first entry: what every log agrees on.
        if index < self._base_index and self._cold is not None:
            return self._cold.term_at(index)
        return None

    def entry(self, index: Index) -> Entry:
        assert self._base_index < index <= self.last_index, (index, self.first_index)
        return self._entries[index - self._base_index - 1]

    def slice(self, lo: Index, hi: Index, max_count: int) -> tuple[Entry, ...]:
        """Entries `lo..hi-1`, at most `max_count` of them (fewer from the cold source)."""
        hi = min(hi, self.last_index + 1, lo + max_count)
        if lo <= self._base_index:
            assert self._cold is not None, (lo, self.first_index)
            assert lo > 0, lo
            return self._cold.entries(lo, min(hi, self._base_index + 1))
        start = lo - self._base_index - 1
        return tuple(self._entries[start : start + max(0, hi - lo)])

    def is_up_to_date(self, last_log_term: Term, last_log_index: Index) -> bool:
        """Whether a log ending at (term, index) is at least as up to date as this (§5.4.1)."""
        if last_log_term != self.last_term:
            return last_log_term > self.last_term
        return last_log_index >= self.last_index

    def first_index_of_term(self, index: Index) -> Index:
        """The first index (not below `first_index`) holding the term of the entry at `index`.

        Used for the fast back-off hint. Terms never decrease along the log, so this is a
        binary search.
        """
        term = self.term_at(index)
        assert term is not None, index
        hi = index - self._base_index
        position = bisect.bisect_left(self._entries, term, hi=hi, key=_term_of)
        return self._base_index + position + 1

    def last_index_of_term(self, term: Term, upto: Index) -> Index | None:
        """The last index <= `upto` whose entry has `term`, or None if there is none."""
        hi = max(0, min(upto, self.last_index) - self._base_index)
        position = bisect.bisect_right(self._entries, term, hi=hi, key=_term_of)
        if position == 0 or self._entries[position - 1].term != term:
            return None
        return self._base_index + position

    # -- changing ------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append entries that continue the log exactly."""
        last_index, last_term = self.last_index, self.last_term
        for entry in entries:
            assert entry.index == last_index + 1, (entry.index, last_index)
            assert entry.term >= last_term, (entry.term, last_term)
            last_index, last_term = entry.index, entry.term
        self._entries.extend(entries)

    def truncate_from(self, index: Index) -> None:
        """Drop every entry at `index` and after; never a committed one."""
        assert index > self._commit_index, f"truncate {index} <= commit {self._commit_index}"
        assert index > self._base_index, (index, self._base_index)
        del self._entries[index - self._base_index - 1 :]

    def commit_to(self, index: Index) -> None:
        """Raise the commit index (it never decreases and never passes the last index)."""
        assert index <= self.last_index, f"commit {index} > last_index {self.last_index}"
        self._commit_index = max(self._commit_index, index)

    def compact(self, upto: Index) -> None:
        """Drop the committed prefix `..upto`; `upto` becomes the new base."""
        assert self._base_index <= upto <= self._commit_index, (upto, self._commit_index)
        term = self.term_at(upto)
        assert term is not None
        del self._entries[: upto - self._base_index]
        self._base_index, self._base_term = upto, term


def _term_of(entry: Entry) -> Term:
    return entry.term
