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

from dledgermq.broker.filter import TagFilter
from dledgermq.broker.handlers import broker_handlers
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.message_id import broker_hash, decode_msg_id, make_msg_id
from dledgermq.broker.produce import KEY_SEPARATOR
from dledgermq.broker.record_handlers import RecordHandlers, TopicHandler
from dledgermq.broker.reserved import PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from dledgermq.broker.state import BrokerState
from dledgermq.broker.topics import RESERVED_PREFIXES, SYSTEM_PREFIX, TopicConfig
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
        handlers: RecordHandlers | None = None,
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
        # What the broker does with the records it interprets (broker/record_handlers.py).
        self._handlers = handlers if handlers is not None else broker_handlers()
        self._gated_flags = self._handlers.gated_flags
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
        # Where records of a (topic, queue) go: its ConsumeQueue and the topic's handler
        # (None: a user topic). Cleared whenever the topic table changes.
        self._routes: dict[tuple[str, int], tuple[ConsumeQueue, TopicHandler | None]] = {}
        self._batch = DispatchBatch()  # The batch being dispatched (for `Applying`).

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
        batch = self._batch = DispatchBatch()
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

    def _route(self, record: RecordMeta) -> tuple[ConsumeQueue, TopicHandler | None] | None:
        """Where a record goes (cached per queue); None for a system record (applied by
        the system handler here) or one whose topic or queue is gone."""
        topic, queue_id = record.topic, record.queue_id
        if topic.startswith(SYSTEM_PREFIX):
            self._handlers.system.apply(record, self)
            return None
        handler = None
        config = self.state.topics.get(topic)
        builtin = self._handlers.builtin.get(topic) if config is None else None
        if builtin is not None:
            config, handler = builtin.config, builtin.handler
        if config is None or queue_id >= config.queue_count:
            return None  # Topic deleted or shrunk after the send: nothing to deliver.
        route = self._routes[topic, queue_id] = (self.cqs.get_or_create(topic, queue_id), handler)
        return route

    def _admitted(self, record: RecordMeta) -> bool:
        """Whether the gates of the record's flags let it into its queue."""
        return all(
            gate.admit(record, self)
            for flag, gate in self._handlers.gates.items()
            if record.flags & flag
        )

    def _dispatch_record(
        self, record: RecordMeta, batch: DispatchBatch
    ) -> DispatchedMessage | None:
        """Runs once per message: lookups are cached per queue, results built positionally;
        a user message takes the inline branch, a built-in topic's asks its handler."""
        topic, queue_id, offset = record.topic, record.queue_id, record.commitlog_offset
        if record.flags & self._gated_flags and not self._admitted(record):
            return None  # Void (e.g. a commit of a transaction that had ended): never delivered.
        queue_key = (topic, queue_id)
        route = self._routes.get(queue_key)
        if route is None:
            route = self._route(record)
            if route is None:
                return None
        cq, handler = route
        properties = record.properties
        if handler is None:
            queue_offset = cq.append(offset, record.size, tag_hash(properties.get(PROPERTY_TAGS)))
            indexed = True
        else:
            placement = handler.place(record, self)
            queue_offset = cq.append(offset, record.size, placement.tag)
            indexed = placement.indexed
        batch.touched.add(queue_key)
        unique_key = properties.get(PROPERTY_UNIQ_KEY, "")
        if indexed:
            keys = properties.get(PROPERTY_KEYS)
            if keys:
                for key in keys.split(KEY_SEPARATOR):
                    self.index.put(KEY_PREFIX + key, offset, record.store_timestamp_ms)
            if unique_key:
                self.index.put(UNIQUE_KEY_PREFIX + unique_key, offset, record.store_timestamp_ms)
        return DispatchedMessage(
            self.broker_hash, unique_key, queue_id, queue_offset, offset, record.size
        )

    # -- what record handlers may touch (broker/record_handlers.Applying) -------------------

    def topic_changed(self, topic: str, at_offset: int) -> None:
        self._batch.topics_changed = True
        self._routes.clear()  # Queue counts or topics changed.
        if topic not in self.state.topics:  # A re-created topic starts empty.
            self.cqs.delete_topic(topic, at_offset=at_offset)

    def broker_changed(self) -> None:
        self._batch.topics_changed = True  # The permission is registered with the topics.

    def passed_over(self, commitlog_offset: int, topic: str, reason: str) -> None:
        self.unreadable.add(commitlog_offset, topic, reason)

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

    def builtin_config(self, topic: str) -> TopicConfig:
        """The config of a built-in topic (one the broker writes itself)."""
        return self._handlers.builtin[topic].config

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
        self._routes.clear()
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
