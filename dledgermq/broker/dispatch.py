"""ReputService logic: committed CommitLog records -> ConsumeQueues, IndexStore, state.

Dispatch runs in committed-log order and only below the confirm offset, so queue offsets
are a pure function of the committed prefix: identical on every replica, dense, never
reused (DESIGN.md §5 rule 4). Reads for consumers (pull, query) also live here because the
ConsumeQueues and the index belong to the same owner.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from dledgermq.broker.delay import SCHEDULE_TOPIC, due_at, release_problem, schedule_config
from dledgermq.broker.filter import TagFilter
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.message_id import broker_hash, decode_msg_id, make_msg_id
from dledgermq.broker.produce import KEY_SEPARATOR
from dledgermq.broker.reserved import PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from dledgermq.broker.retry import DEFAULT_LEVELS, DelayLevels
from dledgermq.broker.state import BrokerState, UnreadableRecord
from dledgermq.broker.topics import RESERVED_PREFIXES, SYSTEM_PREFIX, TopicConfig
from dledgermq.broker.transactions import FLAG_TRANSACTION_END, HALF_TOPIC, half_topic_config
from dledgermq.broker.unreadable import UnreadableRecords
from dledgermq.errors import (
    CorruptData,
    MessageNotFound,
    NoPermission,
    OffsetOutOfRange,
    QueueNotFound,
    TopicNotFound,
)
from dledgermq.store.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dledgermq.store.commitlog import CommitLogReader
from dledgermq.store.consume_queue import (
    ConsumeQueue,
    ConsumeQueues,
    CQUnit,
    PendingSync,
    tag_hash,
)
from dledgermq.store.errors import CorruptCheckpoint, CorruptRecord, OffsetGone, StoreDamaged
from dledgermq.store.index_file import IndexStore
from dledgermq.store.record import (
    FLAG_ENTRY_END,
    MessageDraft,
    Record,
    RecordMeta,
    decode_meta,
    decode_verified_meta,
)

log = logging.getLogger(__name__)
UNIQUE_KEY_PREFIX = "#U#"
KEY_PREFIX = "#K#"
MAX_SCAN_UNITS = 2_000
MAX_PULL_BYTES = 8 * 1024 * 1024


class DispatchedMessage(NamedTuple):
    """Where a dispatched message went; its id is formatted only when asked for (a
    producer's answer), not for every message a follower dispatches."""

    broker_hash: str
    unique_key: str
    queue_id: int
    queue_offset: int
    commitlog_offset: int
    size: int

    @property
    def msg_id(self) -> str:
        return make_msg_id(self.broker_hash, self.commitlog_offset, self.size)


@dataclass(frozen=True, slots=True)
class DispatchedEntry:
    start_offset: int
    end_offset: int
    messages: tuple[DispatchedMessage, ...]


@dataclass(frozen=True, slots=True)
class WrittenEntry:
    """An entry as its writer encoded it, so the ReputActor need not read it back.

    `before` is the log end before the append (where the dispatch cursor stands when this
    entry is next; padding may lie between it and the first record).
    """

    before: int
    drafts: tuple[MessageDraft, ...]
    positions: list[tuple[int, int]]
    store_timestamp_ms: int

    @property
    def end_offset(self) -> int:
        offset, size = self.positions[-1]
        return offset + size


@dataclass(frozen=True, slots=True)
class ReplicatedEntry:
    """A committed entry's records as this node's writer verified and wrote them (a Raft
    follower's copy of a leader's entry), so the ReputActor need not read them back nor
    check their CRCs again. `before` as for `WrittenEntry`; `start_offset` is where its
    first record lies."""

    before: int
    start_offset: int
    data: bytes

    @property
    def end_offset(self) -> int:
        return self.start_offset + len(self.data)


@dataclass(slots=True)
class DispatchBatch:
    entries: list[DispatchedEntry] = field(default_factory=list)
    touched: set[tuple[str, int]] = field(default_factory=set)
    topics_changed: bool = False


class StoredMessage(NamedTuple):
    """A record with the queue offset it was dispatched to."""

    record: Record
    queue_offset: int
    msg_id: str


@dataclass(frozen=True, slots=True)
class PullResult:
    messages: list[StoredMessage]
    next_offset: int
    min_offset: int
    max_offset: int


class DueMessage(NamedTuple):
    """A scheduled message whose time came (`record` None: retention removed it)."""

    queue_id: int
    queue_offset: int
    record: Record | None


@dataclass(frozen=True, slots=True)
class StoreOptions:
    cq_units_per_file: int
    index_slots_per_file: int
    index_entries_per_file: int


class Dispatcher:
    """Owns ConsumeQueues, IndexStore, BrokerState and the dispatched offset."""

    def __init__(
        self,
        broker_name: str,
        layout: NodeLayout,
        options: StoreOptions,
        reader: CommitLogReader,
        *,
        log_start: int = 0,
        delay_levels: DelayLevels = DEFAULT_LEVELS,
    ) -> None:
        """Open the derived files and check them against the checkpoint.

        Everything here is derived from the CommitLog, so when the files contradict the
        checkpoint (a damaged ConsumeQueue, an unreadable checkpoint) they are rebuilt
        from the log, as long as the log still starts at `log_start == 0`.

        Raises:
            StoreDamaged: the derived files are damaged and the log can no longer
                rebuild them (retention removed its beginning).
        """
        self.broker_hash = broker_hash(broker_name)
        self.schedule = schedule_config(delay_levels)
        self.half = half_topic_config()
        # Told the commitlog offset of a record that failed its checks (node.py: repair).
        self.on_damaged: Callable[[int], None] = lambda offset: None
        self.unreadable = UnreadableRecords()  # Committed records passed over, never fatal.
        self._layout = layout
        self._options = options
        self._reader = reader
        damage = self._open()
        if damage is not None:
            if log_start > 0:
                raise StoreDamaged(
                    f"{damage}; the CommitLog starts at {log_start}, so the queues cannot "
                    "be rebuilt from it. Restore the node's files from a backup or replica."
                )
            log.warning("%s: rebuilding queues, index and state from the CommitLog", damage)
            self.close()
            for derived in (layout.consume_queues, layout.index):
                shutil.rmtree(derived, ignore_errors=True)
            layout.checkpoint.unlink(missing_ok=True)
            damage = self._open()
            assert damage is None, damage
        # ConsumeQueues that may take new units; cleared whenever the topic table changes.
        self._writable_queues: dict[tuple[str, int], ConsumeQueue] = {}

    def _open(self) -> str | None:
        """Open state, queues and index at the checkpoint; what is damaged, if anything."""
        layout, options = self._layout, self._options
        damage = None
        queue_ends: dict[tuple[str, int], int] = {}
        self.state, self.dispatched_offset = BrokerState(), 0
        try:
            checkpoint = load_checkpoint(layout.checkpoint)
            if checkpoint is not None:
                self.state, queue_ends = _restore(checkpoint.state)
                self.dispatched_offset = checkpoint.dispatched_offset
        except (CorruptCheckpoint, KeyError, TypeError, ValueError) as exc:
            damage = f"unreadable checkpoint ({exc})"
        self.checkpointed_offset = self.dispatched_offset
        self.cqs = ConsumeQueues.open(
            layout.consume_queues,
            options.cq_units_per_file,
            checkpoint_offset=self.dispatched_offset,
        )
        self.index = IndexStore.open(
            layout.index, options.index_slots_per_file, options.index_entries_per_file
        )
        # Files may hold work past the checkpoint (written, not checkpointed): redo it.
        self.cqs.truncate_from(self.dispatched_offset)
        self.index.truncate_from(self.dispatched_offset)
        for key, cq in self.cqs.items():
            if damage is None and cq.max_offset != queue_ends.get(key, 0):
                damage = (
                    f"ConsumeQueue {key[0]}/{key[1]} ends at {cq.max_offset}, "
                    f"its checkpoint says {queue_ends.get(key, 0)}"
                )
        return damage

    # -- dispatch -------------------------------------------------------------------------

    def dispatch_upto(
        self,
        confirm_offset: int,
        written: dict[int, WrittenEntry | ReplicatedEntry] | None = None,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> DispatchBatch:
        """Dispatch whole entries in [dispatched_offset, confirm_offset), about max_bytes.

        An entry found in `written` (keyed by `before`) is dispatched from memory; any
        other from the log (recovery, entries written before a restart). All go through
        `_dispatch_record` with the same values, so queue offsets cannot differ.
        """
        batch = DispatchBatch()
        start = self.dispatched_offset
        written = written if written is not None else {}
        while (
            self.dispatched_offset < confirm_offset and self.dispatched_offset - start < max_bytes
        ):
            entry = written.get(self.dispatched_offset)
            if entry is not None and entry.end_offset <= confirm_offset:
                del written[entry.before]
                if isinstance(entry, WrittenEntry):
                    self._dispatch_written(entry, batch)
                else:
                    self._dispatch_replicated(entry, batch)
            else:
                self._dispatch_from_log(confirm_offset, start + max_bytes, batch)
                for stale in [b for b in written if b < self.dispatched_offset]:
                    del written[stale]  # Dispatched from the log instead.
        return batch

    def _dispatch_written(self, entry: WrittenEntry, batch: DispatchBatch) -> None:
        messages: list[DispatchedMessage] = []
        last = len(entry.drafts) - 1
        for i, (draft, (offset, size)) in enumerate(
            zip(entry.drafts, entry.positions, strict=True)
        ):
            flags = draft.flags | (FLAG_ENTRY_END if i == last else 0)
            meta = RecordMeta(
                offset,
                size,
                flags,
                entry.store_timestamp_ms,
                draft.queue_id,
                draft.topic,
                draft.properties,
                memoryview(draft.body),
            )
            message = self._dispatch_record(meta, batch)
            if message is not None:
                messages.append(message)
        end = entry.end_offset
        batch.entries.append(DispatchedEntry(entry.positions[0][0], end, tuple(messages)))
        self.dispatched_offset = end

    def _dispatch_replicated(self, entry: ReplicatedEntry, batch: DispatchBatch) -> None:
        view = memoryview(entry.data)
        messages: list[DispatchedMessage] = []
        pos = 0
        while pos < len(view):
            record = decode_verified_meta(view, pos)
            message = self._dispatch_record(record, batch)
            if message is not None:
                messages.append(message)
            pos += record.size
        batch.entries.append(DispatchedEntry(entry.start_offset, entry.end_offset, tuple(messages)))
        self.dispatched_offset = entry.end_offset

    def _dispatch_from_log(
        self, confirm_offset: int, stop_after: int, batch: DispatchBatch
    ) -> None:
        """Read and dispatch entries from the log until confirm_offset or past stop_after.

        An entry is identified by its first record's offset (after any end-of-segment
        padding), the `start_offset` its append reported.
        """
        entry_start: int | None = None
        current: list[DispatchedMessage] = []
        for record in self._reader.iter_records(
            self.dispatched_offset, confirm_offset, decode_meta
        ):
            if entry_start is None:
                entry_start = record.commitlog_offset
            message = self._dispatch_record(record, batch)
            if message is not None:
                current.append(message)
            if record.is_entry_end:
                end = record.commitlog_offset + record.size
                batch.entries.append(DispatchedEntry(entry_start, end, tuple(current)))
                current, entry_start = [], None
                self.dispatched_offset = end
                if end >= stop_after:
                    return
        assert entry_start is None, "the confirm offset must fall on an entry boundary"
        # Only padding may remain before the confirm offset (the end of a segment).
        self.dispatched_offset = max(self.dispatched_offset, confirm_offset)

    def _queue_of(self, record: RecordMeta, batch: DispatchBatch) -> ConsumeQueue | None:
        """The queue a record goes to (cached); None for an internal record (applied to
        the broker state here) or one whose topic or queue is gone."""
        topic, queue_id = record.topic, record.queue_id
        if topic.startswith(SYSTEM_PREFIX):
            perm_before = self.state.perm
            try:
                changed = self.state.apply(topic, record.body)
            except UnreadableRecord as exc:
                self.unreadable.add(record.commitlog_offset, topic, str(exc))
                return None
            # The broker's permission is published (and registered) with the topic table.
            batch.topics_changed |= self.state.perm != perm_before
            if changed is not None:
                batch.topics_changed = True
                self._writable_queues.clear()  # Queue counts or topics changed.
                if changed not in self.state.topics:  # A re-created topic starts empty.
                    self.cqs.delete_topic(changed, at_offset=record.commitlog_offset)
            return None
        config = self.state.topics.get(topic)
        if config is None and topic == SCHEDULE_TOPIC:
            config = self.schedule
        elif config is None and topic == HALF_TOPIC:
            config = self.half
        if config is None or queue_id >= config.queue_count:
            return None  # Topic deleted or shrunk after the send: nothing to deliver.
        cq = self._writable_queues[topic, queue_id] = self.cqs.get_or_create(topic, queue_id)
        return cq

    def _dispatch_record(
        self, record: RecordMeta, batch: DispatchBatch
    ) -> DispatchedMessage | None:
        """Runs once per message: lookups are cached per queue, results built positionally."""
        topic, queue_id, offset = record.topic, record.queue_id, record.commitlog_offset
        if record.flags & FLAG_TRANSACTION_END and not self.state.transactions.apply_commit_copy(
            offset, record.size, record.properties, record.store_timestamp_ms
        ):
            return None  # A commit of a transaction that had ended: void, never delivered.
        queue_key = (topic, queue_id)
        cq = self._writable_queues.get(queue_key)
        if cq is None:
            cq = self._queue_of(record, batch)
            if cq is None:
                return None
        properties = record.properties
        if topic == SCHEDULE_TOPIC:  # Its units carry the due time, not a tag hash.
            queue_offset = cq.append(offset, record.size, due_at(properties))
        elif topic == HALF_TOPIC:  # Pending now; not indexed (its committed copy will be).
            queue_offset = cq.append(offset, record.size, 0)
            self.state.transactions.add_half(
                offset, record.size, properties, record.store_timestamp_ms
            )
            batch.touched.add(queue_key)
            return DispatchedMessage(
                self.broker_hash,
                properties.get(PROPERTY_UNIQ_KEY, ""),
                queue_id,
                queue_offset,
                offset,
                record.size,
            )
        else:
            queue_offset = cq.append(offset, record.size, tag_hash(properties.get(PROPERTY_TAGS)))
        batch.touched.add(queue_key)
        keys = properties.get(PROPERTY_KEYS)
        if keys:
            for key in keys.split(KEY_SEPARATOR):
                self.index.put(KEY_PREFIX + key, offset, record.store_timestamp_ms)
        unique_key = properties.get(PROPERTY_UNIQ_KEY, "")
        if unique_key:
            self.index.put(UNIQUE_KEY_PREFIX + unique_key, offset, record.store_timestamp_ms)
        return DispatchedMessage(
            self.broker_hash, unique_key, queue_id, queue_offset, offset, record.size
        )

    # -- reads ----------------------------------------------------------------------------

    def readable_queue(self, topic: str, queue_id: int) -> tuple[TopicConfig, ConsumeQueue | None]:
        config = self.state.topics.get(topic)
        if config is None:
            raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
        if not config.readable:
            raise NoPermission(f"topic {topic!r} is not readable (perm={config.perm})")
        if not 0 <= queue_id < config.read_queues:
            raise QueueNotFound(
                f"queue {queue_id} is not a read queue of {topic!r} (0..{config.read_queues - 1})"
            )
        return config, self.cqs.get(topic, queue_id)

    def queue_range(self, topic: str, queue_id: int) -> tuple[int, int]:
        cq = self.cqs.get(topic, queue_id)
        return (0, 0) if cq is None else (cq.min_offset, cq.max_offset)

    def store_time_at(self, topic: str, queue_id: int, queue_offset: int) -> int | None:
        """When the message at `queue_offset` was stored; None if it is gone."""
        cq = self.cqs.get(topic, queue_id)
        units = [] if cq is None else cq.get(queue_offset, 1)
        if not units or units[0].queue_offset != queue_offset:
            return None
        record = self._read(units[0].commitlog_offset, units[0].size)
        return None if record is None else record.store_timestamp_ms

    def pull(
        self, topic: str, queue_id: int, offset: int, max_messages: int, tags: TagFilter
    ) -> PullResult:
        _, cq = self.readable_queue(topic, queue_id)
        low, high = (0, 0) if cq is None else (cq.min_offset, cq.max_offset)
        if not low <= offset <= high:
            raise OffsetOutOfRange(
                f"offset {offset} is outside [{low}, {high}] of {topic}/{queue_id}",
                min_offset=low,
                max_offset=high,
            )
        if cq is None or offset == high:
            return PullResult([], offset, low, high)
        # Pick units by tag hash and size first, then read them together: records of one
        # queue sit close together in the log, so few preads serve a whole pull.
        chosen: list[CQUnit] = []
        next_offset, size = offset, 0
        for unit in cq.get(offset, MAX_SCAN_UNITS):
            if len(chosen) >= max_messages or size >= MAX_PULL_BYTES:
                break
            next_offset = unit.queue_offset + 1
            if tags.matches_hash(unit.tag_hash):
                chosen.append(unit)
                size += unit.size
        messages = [
            self._stored(record, unit.queue_offset)
            for unit, record in zip(chosen, self._read_units(chosen), strict=True)
            if record is not None and tags.matches(record.properties.get(PROPERTY_TAGS))
        ]
        return PullResult(messages, next_offset, low, high)

    def _read_units(self, units: list[CQUnit]) -> list[Record | None]:
        """The records of `units`; None for one deleted by retention meanwhile (the next
        pull then gets OFFSET_MOVED)."""
        try:
            return list(self._reader.read_records([(u.commitlog_offset, u.size) for u in units]))
        except (OffsetGone, CorruptRecord):  # Find which one, record by record.
            return [self._read(u.commitlog_offset, u.size) for u in units]

    def due_delayed(self, now_ms: int, max_per_queue: int) -> list[DueMessage]:
        """Scheduled messages due by `now_ms`, each schedule queue in order from the
        delivered progress on. A record retention removed, or one that names no queue a
        client may receive from, comes as None (to be passed over); a damaged one raises
        CorruptData (never skipped)."""
        due = []
        for queue_id in range(self.schedule.read_queues):
            cq = self.cqs.get(SCHEDULE_TOPIC, queue_id)
            if cq is None:
                continue
            start = max(self.state.delay_progress.get(queue_id, 0), cq.min_offset)
            for unit in cq.get(start, max_per_queue):
                if unit.tag_hash > now_ms:
                    break  # Each queue is in due order.
                record = self._read(unit.commitlog_offset, unit.size)
                problem = None if record is None else release_problem(record.properties)
                if problem is not None:
                    self.unreadable.add(unit.commitlog_offset, SCHEDULE_TOPIC, problem)
                    record = None  # Passed over: the scheduler's progress moves past it.
                due.append(DueMessage(queue_id, unit.queue_offset, record))
        return due

    def read_stored(self, offset: int, size: int) -> Record | None:
        """A record the broker's own bookkeeping points at (a half message); None if
        retention removed it. A damaged one raises CorruptData (never served)."""
        return self._read(offset, size)

    def get_message(self, msg_id: str) -> StoredMessage:
        """By offset message id (this broker) or by the client's unique key."""
        decoded = decode_msg_id(msg_id)
        if (
            decoded is not None
            and decoded.broker_hash == self.broker_hash
            and self._reader.holds_record(decoded.commitlog_offset, decoded.size)
        ):
            found = self._deliverable(self._read_claimed(decoded.commitlog_offset, decoded.size))
            if found is not None:
                return found
        else:
            for offset in self.index.query(UNIQUE_KEY_PREFIX + msg_id, 0, 2**62, 8):
                record = self._read(offset, None)
                if record is not None and record.properties.get(PROPERTY_UNIQ_KEY) == msg_id:
                    found = self._deliverable(record)
                    if found is not None:
                        return found
        raise MessageNotFound(f"no message with id {msg_id!r} on this broker")

    def query_by_key(
        self, topic: str | None, key: str, begin_ms: int, end_ms: int, max_messages: int
    ) -> list[StoredMessage]:
        """Messages carrying `key` (in `topic` if given), newest first."""
        found: list[StoredMessage] = []
        for offset in self.index.query(KEY_PREFIX + key, begin_ms, end_ms, max_messages * 4):
            record = self._read(offset, None)
            if record is None or (topic is not None and record.topic != topic):
                continue
            if key in record.properties.get(PROPERTY_KEYS, "").split(KEY_SEPARATOR):
                stored = self._deliverable(record)
                if stored is not None:
                    found.append(stored)
            if len(found) >= max_messages:
                break
        return found

    def _deliverable(self, record: Record | None) -> StoredMessage | None:
        """The record with its queue offset, if a live queue still holds it.

        Lookups answer only what a consumer could pull: not internal records, not half
        messages nor delayed copies before they are due (the broker's built-in topics),
        not messages of a deleted topic (their bytes stay in the log), not ones retention
        removed.
        """
        if record is None or record.topic.startswith(RESERVED_PREFIXES):
            return None
        queue_offset = self._queue_offset_of(record)
        return None if queue_offset < 0 else self._stored(record, queue_offset)

    def offset_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        """First queue offset stored at or after timestamp_ms (max_offset if none)."""
        _, cq = self.readable_queue(topic, queue_id)
        if cq is None:
            return 0

        def stored_since(unit: CQUnit) -> bool:
            record = self._read(unit.commitlog_offset, unit.size)
            return record is not None and record.store_timestamp_ms >= timestamp_ms

        return cq.first_offset_where(stored_since)

    def _queue_offset_of(self, record: Record) -> int:
        """The queue offset a record was dispatched to (-1 if its queue no longer has it)."""
        cq = self.cqs.get(record.topic, record.queue_id)
        if cq is None:
            return -1
        offset = record.commitlog_offset
        found = cq.first_offset_where(lambda unit: unit.commitlog_offset >= offset)
        units = cq.get(found, 1)
        return found if units and units[0].commitlog_offset == offset else -1

    def _read(self, offset: int, size: int | None) -> Record | None:
        """A record our own files point at; None if retention deleted it meanwhile.

        Raises:
            CorruptData: it fails its CRC; never served, never silently skipped.
        """
        try:
            return self._reader.read_record(offset, size)
        except OffsetGone:
            return None
        except CorruptRecord as exc:
            log.error("corrupt record at commitlog offset %d: %s", offset, exc)
            self.on_damaged(offset)
            raise CorruptData(
                f"the record at commitlog offset {offset} fails its checks ({exc}); "
                "it is not served",
                commitlog_offset=offset,
            ) from exc

    def _read_claimed(self, offset: int, size: int) -> Record | None:
        """A record at a place a client named (a message id): garbage means not found."""
        try:
            return self._reader.read_record(offset, size)
        except (OffsetGone, CorruptRecord):
            return None

    def _stored(self, record: Record, queue_offset: int) -> StoredMessage:
        return StoredMessage(
            record,
            queue_offset,
            make_msg_id(self.broker_hash, record.commitlog_offset, record.size),
        )

    # -- durability and retention -----------------------------------------------------------

    def flush(self) -> Checkpoint:
        """fsync ConsumeQueues and index; the checkpoint that may be saved once the
        CommitLog is durable up to its dispatched offset."""
        checkpoint, pending = self.prepare_checkpoint()
        pending.run()
        return checkpoint

    def prepare_checkpoint(self) -> tuple[Checkpoint, PendingSync]:
        """The checkpoint, and the ConsumeQueue files to fsync before it may be saved (which
        another thread does, so that dispatch never waits for one fsync per queue); the
        index is made durable here (its three ordered writes need its owner)."""
        pending = self.cqs.write_out_all()
        self.index.flush()
        queue_ends = [
            [topic, queue_id, cq.max_offset] for (topic, queue_id), cq in self.cqs.items()
        ]
        blob = msgpack.packb({"broker_state": self.state.snapshot(), "queue_ends": queue_ends})
        return Checkpoint(dispatched_offset=self.dispatched_offset, state=blob), pending

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self._layout.checkpoint, checkpoint)
        self.checkpointed_offset = checkpoint.dispatched_offset
        self.cqs.purge_deleted(checkpoint.dispatched_offset)

    def delete_before(self, min_commitlog_offset: int) -> None:
        self._writable_queues.clear()
        self.cqs.delete_before(min_commitlog_offset)
        self.index.delete_before(min_commitlog_offset)

    def close(self) -> None:
        self.cqs.close()
        self.index.close()


def _restore(blob: bytes) -> tuple[BrokerState, dict[tuple[str, int], int]]:
    """The broker state and each queue's end recorded in a checkpoint."""
    snapshot = msgpack.unpackb(blob)
    queue_ends = {(topic, queue_id): end for topic, queue_id, end in snapshot["queue_ends"]}
    return BrokerState.restore(snapshot["broker_state"]), queue_ends
