"""Where each Raft entry lives in the CommitLog, decided before it is written.

The CommitLog *is* the Raft log (DESIGN.md §1), and every record header carries its
commitlog offset, so the leader encodes an entry at the exact offsets every replica will
store it at; followers write the leader's bytes unchanged (`CommitLog.append_raw` checks
each record and its place), which keeps the committed prefix byte-identical everywhere.

`EntryLayout` owns the `EntryIndex` of the node's log *as the Raft core sees it* (entries
handed to the writer but not yet written included). It places a new entry with the
CommitLog's own rule (an entry that does not fit the active segment with room for a BLANK
goes to the next segment), encodes proposals and the no-op each leader appends, and turns
one Ready's truncation and entries into a single `LogWrite` for the writer. Pure: no files.

Several proposals may be encoded before the Ready that lays them out (the Raft node
batches a burst of them): each is placed after the one encoded for the index before it,
remembered until it is laid out (a rejected proposal's index is simply encoded again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgpack

from dledgermq.store.entry_index import EntryIndex, EntryPosition, EntrySpan
from dledgermq.store.errors import CorruptRecord, EntryTooLarge
from dledgermq.store.record import (
    F_INDEX,
    F_OFFSET,
    F_TERM,
    HEADER,
    HEADER_SIZE,
    MessageDraft,
    encode_entry,
    encoded_size,
)
from dledgermq.store.segment import place_entry

__all__ = ["NOOP_TOPIC", "EncodedEntry", "EntryLayout", "LogWrite"]

# The record of a leader's no-op entry. Dispatch skips it: it is a system record whose
# state change is empty. Deterministic (no clock, no host), so every replica that encodes
# it at the same place gets the same bytes.
NOOP_TOPIC = "%SYS%NOOP"
_NOOP_DRAFT = MessageDraft(NOOP_TOPIC, 0, msgpack.packb({}), born_host="0.0.0.0:0")


@dataclass(frozen=True, slots=True)
class EncodedEntry:
    """A proposal encoded at its place: `before` is the log end before it (padding may
    lie between it and the first record), `positions` each record's (offset, size)."""

    data: bytes
    before: int
    positions: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class LogWrite:
    """One Ready's change to the CommitLog: cut at `cut_offset` (if set), then append
    `data` (whole entries, each placed as in `spans`, the first after `start_offset`);
    afterwards the log ends with entry (last_term, last_index). `local`: this node encoded
    every entry of it (its own proposals and no-ops), so there is nothing to verify."""

    cut_offset: int | None
    data: bytes
    end_offset: int
    last_term: int
    last_index: int
    start_offset: int = 0
    spans: tuple[EntrySpan, ...] = ()
    local: bool = False


class EntryLayout:
    def __init__(self, entries: EntryIndex, segment_size_bytes: int) -> None:
        self.entries = entries
        self._segment_size = segment_size_bytes
        # Index -> (end offset, bytes) of proposals encoded but not laid out yet.
        self._encoded: dict[int, tuple[int, bytes]] = {}

    @classmethod
    def rebuild(
        cls, positions: Iterable[EntryPosition], segment_size_bytes: int, *, start_offset: int
    ) -> EntryLayout:
        return cls(EntryIndex.rebuild(positions, start_offset=start_offset), segment_size_bytes)

    @property
    def end_offset(self) -> int:
        return self.entries.end_offset

    def place(self, size: int, end: int | None = None) -> int:
        """Where an entry of `size` bytes starts if appended to a log ending at `end`
        (default: now) (`segment.place_entry`).

        Raises:
            EntryTooLarge: it cannot fit a whole segment (with room for a BLANK).
        """
        end = self.entries.end_offset if end is None else end
        start = place_entry(end, size, self._segment_size)
        if start is None:
            raise EntryTooLarge(
                f"entry of {size} bytes cannot fit a {self._segment_size}-byte segment"
            )
        return start

    def encode_batch(
        self, drafts: Sequence[MessageDraft], *, term: int, index: int, store_timestamp_ms: int
    ) -> EncodedEntry:
        """Encode a producer batch as entry (term, index): after the log's last entry, or
        after the proposal encoded for `index - 1` that is not laid out yet.

        Raises:
            EntryTooLarge, ValueError, OverflowError, struct.error: as `encode_entry`.
        """
        if index - 1 == self.entries.last_index:
            before = self.entries.end_offset
        else:
            before = self._encoded[index - 1][0]
        size = sum(encoded_size(d) for d in drafts)
        start = self.place(size, before)
        data, positions = encode_entry(
            list(drafts),
            term=term,
            index=index,
            start_offset=start,
            store_timestamp_ms=store_timestamp_ms,
        )
        self._encoded[index] = (start + len(data), data)
        return EncodedEntry(data, before, positions)

    def encode_noop(self, term: int, index: int) -> bytes:
        start = self.place(encoded_size(_NOOP_DRAFT))
        data, _ = encode_entry(
            [_NOOP_DRAFT], term=term, index=index, start_offset=start, store_timestamp_ms=0
        )
        return data

    def lay_out(
        self, truncate_from: int | None, entries: Sequence[tuple[int, int, bytes | None]]
    ) -> LogWrite:
        """Apply a truncation and `(term, index, data or None for the no-op)` entries.

        The log is cut at the end of the entry before `truncate_from` (not at the start of
        the first dropped one: a segment sealed after it must be reopened).

        Raises:
            CorruptRecord: an entry's bytes do not claim the place, term and index this log
                gives it (a replica would diverge: the node must stop, never write it).
        """
        cut = None
        if truncate_from is not None:
            # Whatever was encoded from there on was dropped with it (or never accepted).
            self._encoded = {i: e for i, e in self._encoded.items() if i < truncate_from}
        if truncate_from is not None and truncate_from <= self.entries.last_index:
            self.entries.truncate_from(truncate_from)
            cut = self.entries.end_offset
        start_offset = self.entries.end_offset
        parts: list[bytes] = []
        spans: list[EntrySpan] = []
        local = True
        begin = 0
        for term, index, payload in entries:
            encoded = self._encoded.pop(index, None)
            # The very bytes encoded here (a stale encoding of a rejected proposal at the
            # same index is another object): a peer's entry is never taken as local.
            local = local and (payload is None or (encoded is not None and encoded[1] is payload))
            data = self.encode_noop(term, index) if payload is None else payload
            start = self.place(len(data))
            self._check_claim(data, term, index, start)
            self.entries.append(index, term, start, start + len(data))
            parts.append(data)
            spans.append(EntrySpan(begin, begin + len(data), start, term, index))
            begin += len(data)
        return LogWrite(
            cut,
            b"".join(parts),
            self.entries.end_offset,
            self.entries.last_term,
            self.entries.last_index,
            start_offset,
            tuple(spans),
            local,
        )

    @staticmethod
    def _check_claim(data: bytes, term: int, index: int, start: int) -> None:
        """The first record must claim this place; the writer checks the rest (CRCs, one
        complete entry) when `CommitLog.append_raw` writes it."""
        if len(data) < HEADER_SIZE:
            raise CorruptRecord(f"entry {index}: {len(data)} bytes cannot hold a record")
        first = HEADER.unpack_from(data)
        if (first[F_TERM], first[F_INDEX], first[F_OFFSET]) != (term, index, start):
            raise CorruptRecord(
                f"entry ({term}, {index}) placed at {start} claims "
                f"({first[F_TERM]}, {first[F_INDEX]}) at {first[F_OFFSET]}"
            )
