"""The CommitLog as the Raft log: the broker's side of a RaftNodeActor.

`CommitLogRaftLog` plugs into the driver's `DriverIO` and runs on the Raft node's thread only:

- `prepare`: a leader's proposal (`ProposedBatch`) is encoded as records at its CommitLog
  place (`EntryLayout`); the producer's reply waits in a `CommittedReply`, which registers
  the entry with the ReputActor once it commits (so the answer carries queue offsets);
  above the disk's high-water mark it is refused with DISK_FULL before anything happens
  (`PrepareRefused`: the driver fails the producer's reply with the broker's error);
- `persist`: a Ready's truncation and entries become one `WriteRaw` for the writer, whose
  flusher reports `Persisted` back in request order (fsync first in `majority_fsync`);
- `on_commit`: the confirm offset becomes the end of the committed, locally durable entry;
  a follower's entries go along in memory (as the writer verified them), so that the
  ReputActor dispatches them without reading them back; the entry index may then forget
  the places of older entries (it reads them back from the log when asked), and its
  summary is saved now and then for a fast restart (`SummarySaver`);
- `term_at` / `entries`: committed entries below the compacted in-memory mirror, read back
  from the CommitLog for a follower that lags behind it.

Owns: the `EntryLayout`, a `CommitLogReader`. Must not: write files (the writer does).
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pykka

from dledgermq.actors.commitlog_writer import WriteRaw
from dledgermq.actors.published import Published
from dledgermq.actors.raft_node import Persisted, PersistRequest
from dledgermq.actors.reput import Appended, Confirm
from dledgermq.actors.supervisor import tell
from dledgermq.bridge import ReplyTo
from dledgermq.broker.dispatch import ReplicatedEntry, WrittenEntry
from dledgermq.errors import DiskFull, InvalidMessage, MessageTooLarge
from dledgermq.raft.log import RaftLog
from dledgermq.raft.outcomes import PrepareRefused
from dledgermq.raft.types import Entry, Index, Term
from dledgermq.store.entry_index import decode_position
from dledgermq.store.entry_layout import EntryLayout, LogWrite
from dledgermq.store.entry_summary import encode_summary
from dledgermq.store.errors import EntryTooLarge, OffsetGone, UnreadableEntries
from dledgermq.store.hard_state import StoredHardState
from dledgermq.store.reader import CommitLogReader
from dledgermq.store.record import MessageDraft, first_damaged

log = logging.getLogger(__name__)
COLD_READ_BYTES_MAX = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProposedBatch:
    """A producer batch on its way into the log (only ever on the leader that took it)."""

    drafts: tuple[MessageDraft, ...]
    store_timestamp_ms: int


class CommittedReply:
    """Settles a producer's reply for a proposal: at commit, hand it to the ReputActor
    (which answers with queue offsets once dispatched); on failure, answer at once."""

    __slots__ = ("_entry", "_reply", "_reput")

    def __init__(
        self, reput: pykka.ActorRef[Any], reply: ReplyTo[Any], entry: WrittenEntry
    ) -> None:
        self._reput = reput
        self._reply = reply
        self._entry = entry

    def ok(self, value: Index) -> None:
        del value
        entry = self._entry
        tell(self._reput, Appended(entry.positions[0][0], self._reply, entry))

    def fail(self, error: BaseException) -> None:
        self._reply.fail(error)


@dataclass(frozen=True, slots=True)
class SummarySaver:
    """Save the entry index's summary each time `every_bytes` more of the log committed
    (a restart scans about that much: `store/entry_start.py`); `save` writes the bytes off
    this thread."""

    every_bytes: int
    save: Callable[[bytes], None]


class CommitLogRaftLog:
    def __init__(  # noqa: PLR0913 - the collaborators replication/raft_member.py wires in
        self,
        layout: EntryLayout,
        reader: CommitLogReader,
        *,
        writer: pykka.ActorRef[Any],
        reput: pykka.ActorRef[Any],
        fsync: bool,
        disk_full: Published[bool] | None = None,
        summary: SummarySaver | None = None,
    ) -> None:
        self.layout = layout
        # Entries the index forgot (settled at commit) are read back with this reader.
        layout.entries.scan = partial(reader.iter_records, decode=decode_position)
        self._disk_full = disk_full
        self._reader = reader
        self._writer = writer
        self._reput = reput
        self._fsync = fsync
        self._summary = summary
        self._summary_saved_end = 0  # The first commit on a long log saves one at once.
        # A peer's entries written but not committed yet, by index (see `on_commit`).
        self._replicated: deque[tuple[Index, ReplicatedEntry]] = deque()
        self.node: pykka.ActorRef[Any] | None = None  # Set once the Raft node started.
        # Told the offset of a record a cold read found damaged (node.py: repair).
        self.on_damaged: Callable[[int], None] = lambda offset: None

    # -- DriverIO ---------------------------------------------------------------------------

    def prepare(
        self, payload: object, reply: ReplyTo[Any], term: Term, index: Index
    ) -> tuple[object, ReplyTo[Index]]:
        assert isinstance(payload, ProposedBatch), type(payload)
        if self._disk_full is not None and self._disk_full.value:
            raise PrepareRefused(
                DiskFull("disk usage is above the high-water mark; writes are refused")
            )
        try:
            encoded = self.layout.encode_batch(
                payload.drafts,
                term=term,
                index=index,
                store_timestamp_ms=payload.store_timestamp_ms,
            )
        except EntryTooLarge as exc:
            raise PrepareRefused(MessageTooLarge(str(exc))) from None
        except (ValueError, OverflowError, struct.error) as exc:
            raise PrepareRefused(InvalidMessage(f"message cannot be stored: {exc}")) from None
        entry = WrittenEntry(
            encoded.before, payload.drafts, encoded.positions, payload.store_timestamp_ms
        )
        return encoded.data, CommittedReply(self._reput, reply, entry)

    def persist(self, request: PersistRequest) -> None:
        write = self.layout.lay_out(
            request.truncate_from,
            [
                (e.term, e.index, None if e.is_noop else _as_bytes(e.payload))
                for e in request.entries
            ],
        )
        self._keep_replicated(request, write)
        hard_state = request.hard_state
        stored = None if hard_state is None else StoredHardState(hard_state.term, hard_state.vote)
        assert self.node is not None, "the Raft node persists only after it started"
        durable = Persisted(request.seq, write.last_term, write.last_index)
        tell(self._writer, WriteRaw(write, stored, self._fsync, partial(tell, self.node, durable)))

    def _keep_replicated(self, request: PersistRequest, write: LogWrite) -> None:
        """Remember a peer's entries until they commit (what a cut drops goes with it)."""
        replicated = self._replicated
        if request.truncate_from is not None:
            while replicated and replicated[-1][0] >= request.truncate_from:
                replicated.pop()
        if write.local:  # Its own proposals reach the ReputActor with their drafts.
            return
        before = write.start_offset
        for span, entry in zip(write.spans, request.entries, strict=True):
            # A new leader's no-op is encoded here (the same bytes on every replica).
            data = write.data[span.begin : span.end] if entry.is_noop else _as_bytes(entry.payload)
            replicated.append((span.index, ReplicatedEntry(before, span.offset, data)))
            before = span.offset + len(data)

    def on_commit(self, index: Index, term: Term) -> None:
        del term
        committed = []
        replicated = self._replicated
        while replicated and replicated[0][0] <= index:
            committed.append(replicated.popleft()[1])
        entries = self.layout.entries
        end = entries.end_of(index)
        tell(self._reput, Confirm(end, tuple(committed)))
        entries.settle(index)  # Written to the log files here (and durable).
        summary = self._summary
        if summary is not None and end - self._summary_saved_end >= summary.every_bytes:
            summary.save(encode_summary(entries.summary(index)))
            self._summary_saved_end = end

    # -- ColdEntries ----------------------------------------------------------------------

    def term_at(self, index: Index) -> Term | None:
        return self.layout.entries.term_at(index)

    def entries(self, lo: Index, hi: Index) -> tuple[Entry, ...]:
        """Read committed entries back from `lo` (stops early at a byte budget or a retired
        segment; nothing when `lo` itself is no longer held: the leader must not get a
        slice that starts elsewhere)."""
        spans = self.layout.entries
        out: list[Entry] = []
        total = 0
        if lo <= spans.base_index:
            log.warning("entry %d was retired: a follower that needs it must be re-seeded", lo)
            return ()
        for index in range(lo, hi):
            try:
                start, end = spans.span(index)  # may read a forgotten entry's block back
                data = self._reader.read_bytes(start, end - start)
            except OffsetGone:
                break
            except UnreadableEntries as exc:
                damaged = self._reader.find_damage(exc.start, exc.end)
                if damaged is None:
                    raise  # Intact records, yet other entries than the index holds.
                log.error("entry %d: the record at %d is damaged", index, damaged)
                self.on_damaged(damaged)
                break
            damaged = first_damaged(data, start)
            if damaged is not None:  # Never sent: the follower waits for the repair.
                log.error("entry %d: the record at %d is damaged", index, damaged)
                self.on_damaged(damaged)
                break
            term = spans.term_at(index)
            assert term is not None
            out.append(Entry(term, index, data))
            total += len(data)
            if total >= COLD_READ_BYTES_MAX:
                break
        return tuple(out)

    def mirror(self, applied_offset: int) -> RaftLog:
        """The core's starting log: entries after the last one ending at or before
        `applied_offset` (known committed: dispatched) in memory, the rest cold."""
        spans = self.layout.entries
        base = spans.last_index_ending_by(applied_offset)
        base_term = spans.term_at(base)
        assert base_term is not None
        tail = self.entries(base + 1, spans.last_index + 1) if base < spans.last_index else ()
        while tail and tail[-1].index < spans.last_index:  # more than one read's budget
            more = self.entries(tail[-1].index + 1, spans.last_index + 1)
            assert more, f"entries after {tail[-1].index} vanished from the log"
            tail += more
        return RaftLog(tail, base_index=base, base_term=base_term, cold=self)


def _as_bytes(payload: object) -> bytes:
    assert isinstance(payload, bytes), type(payload)
    return payload
