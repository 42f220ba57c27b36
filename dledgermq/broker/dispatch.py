"""ReputService logic: committed CommitLog records -> ConsumeQueues, IndexStore, state.

Dispatch runs in committed-log order and only below the confirm offset, so queue offsets
are a pure function of the committed prefix: identical on every replica, dense, never
reused (DESIGN.md §5 rule 4). What is read from them (pulls, lookups, the typed queries)
is read by `broker/store_reads.py` and `broker/queries.py`, on the same owner's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack

from dledgermq.broker.handlers import broker_handlers
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.message_id import broker_hash, make_msg_id
from dledgermq.broker.produce import KEY_SEPARATOR
from dledgermq.broker.record_handlers import RecordHandlers, TopicHandler
from dledgermq.broker.reserved import PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from dledgermq.broker.state import BrokerState
from dledgermq.broker.topics import SYSTEM_PREFIX, TopicConfig
from dledgermq.broker.unreadable import UnreadableRecords
from dledgermq.store.checkpoint import (
    Checkpoint,
    discard_derived,
    load_checkpoint,
    save_checkpoint,
)
from dledgermq.store.commitlog import CommitLogReader
from dledgermq.store.consume_queue import (
    ConsumeQueue,
    ConsumeQueues,
    PendingSync,
    tag_hash,
)
from dledgermq.store.errors import CorruptCheckpoint, StoreDamaged
from dledgermq.store.index_file import IndexStore
from dledgermq.store.record import (
    FLAG_ENTRY_END,
    MessageDraft,
    RecordMeta,
    decode_meta,
    decode_verified_meta,
)

log = logging.getLogger(__name__)
UNIQUE_KEY_PREFIX = "#U#"
KEY_PREFIX = "#K#"


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
        # Told the commitlog offset of a record a read found failing its checks (node.py:
        # repair); `reader` is where those reads read (broker/store_reads.py).
        self.on_damaged: Callable[[int], None] = lambda offset: None
        self.unreadable = UnreadableRecords()  # Committed records passed over, never fatal.
        self._layout = layout
        self._options = options
        self.reader = reader
        damage = self._open()
        if damage is not None:
            if log_start > 0:
                raise StoreDamaged(
                    f"{damage}; the CommitLog starts at {log_start}, so the queues cannot "
                    "be rebuilt from it. Restore the node's files from a backup or replica."
                )
            log.warning("%s: rebuilding queues, index and state from the CommitLog", damage)
            self.close()
            discard_derived((layout.consume_queues, layout.index), layout.checkpoint)
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
        for record in self.reader.iter_records(self.dispatched_offset, confirm_offset, decode_meta):
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

    def builtin_config(self, topic: str) -> TopicConfig:
        """The config of a built-in topic (one the broker writes itself)."""
        return self._handlers.builtin[topic].config

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
