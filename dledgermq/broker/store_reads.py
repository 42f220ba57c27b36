"""Reads of one broker's store: the records its ConsumeQueues and index point at.

The Dispatcher writes the queues, the index and the broker state; everything read from
them is read here, on the thread that owns the Dispatcher (the ReputActor): pulls, a
message by id or key, the offset stored at a time, queue ranges, records the broker's own
bookkeeping points at. The typed queries (`broker/queries.py`) answer with these
functions; a held pull calls `pull` directly.

Must not: write a file or change the Dispatcher's state; the one thing a read does
besides reading is report a record that fails its checks (`store.on_damaged`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

from dledgermq.broker.dispatch import KEY_PREFIX, UNIQUE_KEY_PREFIX, Dispatcher
from dledgermq.broker.filter import TagFilter
from dledgermq.broker.message_id import decode_msg_id, make_msg_id
from dledgermq.broker.produce import KEY_SEPARATOR
from dledgermq.broker.reserved import PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_UNIQ_KEY
from dledgermq.broker.topics import RESERVED_PREFIXES, TopicConfig
from dledgermq.errors import (
    CorruptData,
    MessageNotFound,
    NoPermission,
    OffsetOutOfRange,
    QueueNotFound,
    TopicNotFound,
)
from dledgermq.store.consume_queue import ConsumeQueue, CQUnit
from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.record import Record

log = logging.getLogger(__name__)
MAX_SCAN_UNITS = 2_000
MAX_PULL_BYTES = 8 * 1024 * 1024


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


# -- queues ---------------------------------------------------------------------------------


def readable_queue(
    store: Dispatcher, topic: str, queue_id: int
) -> tuple[TopicConfig, ConsumeQueue | None]:
    """The topic's config and the queue (None: nothing was ever dispatched to it).

    Raises:
        TopicNotFound, NoPermission, QueueNotFound: a consumer may not read it.
    """
    config = store.state.topics.get(topic)
    if config is None:
        raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
    if not config.readable:
        raise NoPermission(f"topic {topic!r} is not readable (perm={config.perm})")
    if not 0 <= queue_id < config.read_queues:
        raise QueueNotFound(
            f"queue {queue_id} is not a read queue of {topic!r} (0..{config.read_queues - 1})"
        )
    return config, store.cqs.get(topic, queue_id)


def queue_range(store: Dispatcher, topic: str, queue_id: int) -> tuple[int, int]:
    cq = store.cqs.get(topic, queue_id)
    return (0, 0) if cq is None else (cq.min_offset, cq.max_offset)


def store_time_at(store: Dispatcher, topic: str, queue_id: int, queue_offset: int) -> int | None:
    """When the message at `queue_offset` was stored; None if it is gone."""
    cq = store.cqs.get(topic, queue_id)
    units = [] if cq is None else cq.get(queue_offset, 1)
    if not units or units[0].queue_offset != queue_offset:
        return None
    record = read_record(store, units[0].commitlog_offset, units[0].size)
    return None if record is None else record.store_timestamp_ms


def offset_by_time(store: Dispatcher, topic: str, queue_id: int, timestamp_ms: int) -> int:
    """First queue offset stored at or after timestamp_ms (max_offset if none)."""
    _, cq = readable_queue(store, topic, queue_id)
    if cq is None:
        return 0

    def stored_since(unit: CQUnit) -> bool:
        record = read_record(store, unit.commitlog_offset, unit.size)
        return record is not None and record.store_timestamp_ms >= timestamp_ms

    return cq.first_offset_where(stored_since)


def pull(
    store: Dispatcher, topic: str, queue_id: int, offset: int, max_messages: int, tags: TagFilter
) -> PullResult:
    """Up to `max_messages` messages of the queue from `offset` that match `tags`.

    Raises:
        OffsetOutOfRange: `offset` lies outside the queue (with its range, to move to).
    """
    _, cq = readable_queue(store, topic, queue_id)
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
        stored(store, record, unit.queue_offset)
        for unit, record in zip(chosen, _read_units(store, chosen), strict=True)
        if record is not None and tags.matches(record.properties.get(PROPERTY_TAGS))
    ]
    return PullResult(messages, next_offset, low, high)


def _read_units(store: Dispatcher, units: list[CQUnit]) -> list[Record | None]:
    """The records of `units`; None for one deleted by retention meanwhile (the next
    pull then gets OFFSET_MOVED)."""
    try:
        return list(store.reader.read_records([(u.commitlog_offset, u.size) for u in units]))
    except (OffsetGone, CorruptRecord):  # Find which one, record by record.
        return [read_record(store, u.commitlog_offset, u.size) for u in units]


# -- messages -------------------------------------------------------------------------------


def get_message(store: Dispatcher, msg_id: str) -> StoredMessage:
    """By offset message id (this broker) or by the client's unique key.

    Raises:
        MessageNotFound: no consumer could pull such a message here.
    """
    decoded = decode_msg_id(msg_id)
    if (
        decoded is not None
        and decoded.broker_hash == store.broker_hash
        and store.reader.holds_record(decoded.commitlog_offset, decoded.size)
    ):
        found = _deliverable(store, _read_claimed(store, decoded.commitlog_offset, decoded.size))
        if found is not None:
            return found
    else:
        for offset in store.index.query(UNIQUE_KEY_PREFIX + msg_id, 0, 2**62, 8):
            record = read_record(store, offset, None)
            if record is not None and record.properties.get(PROPERTY_UNIQ_KEY) == msg_id:
                found = _deliverable(store, record)
                if found is not None:
                    return found
    raise MessageNotFound(f"no message with id {msg_id!r} on this broker")


def query_by_key(
    store: Dispatcher, topic: str | None, key: str, begin_ms: int, end_ms: int, max_messages: int
) -> list[StoredMessage]:
    """Messages carrying `key` (in `topic` if given), newest first."""
    found: list[StoredMessage] = []
    for offset in store.index.query(KEY_PREFIX + key, begin_ms, end_ms, max_messages * 4):
        record = read_record(store, offset, None)
        if record is None or (topic is not None and record.topic != topic):
            continue
        if key in record.properties.get(PROPERTY_KEYS, "").split(KEY_SEPARATOR):
            message = _deliverable(store, record)
            if message is not None:
                found.append(message)
        if len(found) >= max_messages:
            break
    return found


def _deliverable(store: Dispatcher, record: Record | None) -> StoredMessage | None:
    """The record with its queue offset, if a live queue still holds it.

    Lookups answer only what a consumer could pull: not internal records, not half
    messages nor delayed copies before they are due (the broker's built-in topics),
    not messages of a deleted topic (their bytes stay in the log), not ones retention
    removed.
    """
    if record is None or record.topic.startswith(RESERVED_PREFIXES):
        return None
    queue_offset = _queue_offset_of(store, record)
    return None if queue_offset < 0 else stored(store, record, queue_offset)


def _queue_offset_of(store: Dispatcher, record: Record) -> int:
    """The queue offset a record was dispatched to (-1 if its queue no longer has it)."""
    cq = store.cqs.get(record.topic, record.queue_id)
    if cq is None:
        return -1
    offset = record.commitlog_offset
    found = cq.first_offset_where(lambda unit: unit.commitlog_offset >= offset)
    units = cq.get(found, 1)
    return found if units and units[0].commitlog_offset == offset else -1


def stored(store: Dispatcher, record: Record, queue_offset: int) -> StoredMessage:
    return StoredMessage(
        record,
        queue_offset,
        make_msg_id(store.broker_hash, record.commitlog_offset, record.size),
    )


# -- records --------------------------------------------------------------------------------


def read_record(store: Dispatcher, offset: int, size: int | None) -> Record | None:
    """A record the store's own files or bookkeeping point at (a queue unit, an index
    entry, a half message); None if retention deleted it meanwhile.

    Raises:
        CorruptData: it fails its CRC; never served, never silently skipped.
    """
    try:
        return store.reader.read_record(offset, size)
    except OffsetGone:
        return None
    except CorruptRecord as exc:
        log.error("corrupt record at commitlog offset %d: %s", offset, exc)
        store.on_damaged(offset)
        raise CorruptData(
            f"the record at commitlog offset {offset} fails its checks ({exc}); it is not served",
            commitlog_offset=offset,
        ) from exc


def _read_claimed(store: Dispatcher, offset: int, size: int) -> Record | None:
    """A record at a place a client named (a message id): garbage means not found."""
    try:
        return store.reader.read_record(offset, size)
    except (OffsetGone, CorruptRecord):
        return None
