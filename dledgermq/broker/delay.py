"""Delay messages: where a delayed message waits and how it comes out, the pure rules.

RocketMQ's scheme, in our log: a message sent with a delay level (or a deliver-at time)
is stored in the built-in topic `SCHEDULE_TOPIC`, queue `level - 1`, with its real topic
and queue in properties. Every message of one level's queue waits the same delay, so each
queue is in due order, and its ConsumeQueue units carry the due time in their tag-hash
slot (`PROPERTY_DUE_AT`): the scheduler finds what is due without reading the log.

A deliver-at time is reached in hops: the message waits in the largest level not longer
than what remains, then is scheduled again with the rest (bounded by the longest level;
a day takes 12 hops of 2 h). Delivery re-writes the message to its real topic with its
unique key, so it keeps its identity; the scheduler's progress travels in the same log
entry (`BrokerState.delay_progress`), so a failover never delivers a message twice.

Pure: no clock reads, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from dledgermq.broker.record_handlers import Applying, Placement
from dledgermq.broker.reserved import (
    PROPERTY_DELAY,
    PROPERTY_DELIVER_AT,
    PROPERTY_DUE_AT,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    parse_decimal,
)
from dledgermq.broker.retry import DelayLevels
from dledgermq.broker.topics import (
    MAX_QUEUES,
    PERM_READ_WRITE,
    RESERVED_PREFIXES,
    TOPIC_NAME,
    TopicConfig,
)
from dledgermq.errors import BadRequest
from dledgermq.store.record import MessageDraft, Record, RecordMeta

SCHEDULE_TOPIC = "%DELAY%SCHEDULE"
SCHEDULE_PREFIX = "%DELAY%"
_SCHEDULE_PROPERTIES = (PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_DUE_AT)


def schedule_config(levels: DelayLevels) -> TopicConfig:
    """The built-in schedule topic: one queue per level, not listed, not for clients."""
    return TopicConfig(SCHEDULE_TOPIC, levels.count, levels.count, PERM_READ_WRITE)


def delay_request(
    levels: DelayLevels, raw: Mapping[str, object], now_ms: int
) -> tuple[int, int] | None:
    """(level, deliver_at_ms) a send asks for, None for no delay.

    Raises:
        BadRequest: both `delay_level` and `deliver_at_ms`, or a value out of range.
    """
    level, deliver_at = raw.get("delay_level"), raw.get("deliver_at_ms")
    if level is not None and deliver_at is not None:
        raise BadRequest("give `delay_level` or `deliver_at_ms`, not both")
    if level is not None:
        if type(level) is not int or not 0 <= level <= levels.count:
            raise BadRequest(f"delay_level must be within 0..{levels.count}, got {level!r}")
        return None if level == 0 else (level, now_ms + levels.delay_ms(level))
    if deliver_at is not None:
        if type(deliver_at) is not int or deliver_at < 0:
            raise BadRequest(f"deliver_at_ms must be a timestamp in ms, got {deliver_at!r}")
        if deliver_at > now_ms + 366 * 24 * 3_600_000:
            raise BadRequest("deliver_at_ms is more than a year ahead")
        return None if deliver_at <= now_ms else (0, deliver_at)
    return None


def schedule(
    draft: MessageDraft, levels: DelayLevels, *, level: int, deliver_at_ms: int, now_ms: int
) -> MessageDraft:
    """The draft re-addressed to wait in the schedule topic until its next hop ends.

    `level` 0 means "a deliver-at time": the hop uses the largest level that fits.
    """
    hop = level or _hop_level(levels, deliver_at_ms - now_ms)
    due = min(deliver_at_ms, now_ms + levels.delay_ms(hop))
    properties = dict(draft.properties)
    properties.setdefault(PROPERTY_REAL_TOPIC, draft.topic)
    properties.setdefault(PROPERTY_REAL_QID, str(draft.queue_id))
    properties[PROPERTY_DELIVER_AT] = str(deliver_at_ms)
    properties[PROPERTY_DUE_AT] = str(due)
    if level:
        properties[PROPERTY_DELAY] = str(level)
    return draft._replace(topic=SCHEDULE_TOPIC, queue_id=hop - 1, properties=properties)


def release_problem(properties: Mapping[str, str]) -> str | None:
    """Why a scheduled record cannot be released, or None if it can.

    The edge refuses these properties on a client's message (`broker/reserved.py`), but a
    log may hold records written before it did: one that names no real queue, or one of
    the broker's own topics, is passed over rather than re-put (the probe's D2-D6).
    """
    topic = properties.get(PROPERTY_REAL_TOPIC)
    queue_id = parse_decimal(properties.get(PROPERTY_REAL_QID))
    if parse_decimal(properties.get(PROPERTY_DELIVER_AT)) is None:
        return f"{PROPERTY_DELIVER_AT} is not a timestamp"
    if not isinstance(topic, str) or TOPIC_NAME.fullmatch(topic) is None:
        return f"{PROPERTY_REAL_TOPIC} {topic!r} is not a topic name"
    if topic.startswith(RESERVED_PREFIXES):
        return f"{PROPERTY_REAL_TOPIC} {topic!r} is a topic only the broker writes"
    if queue_id is None or not 0 <= queue_id < MAX_QUEUES:
        return f"{PROPERTY_REAL_QID} {properties.get(PROPERTY_REAL_QID)!r} is not a queue id"
    return None


def release(draft: MessageDraft, levels: DelayLevels, now_ms: int) -> MessageDraft:
    """A due scheduled message: to its real topic, or into its next hop if it has one.
    Only for a record `release_problem` finds nothing wrong with."""
    properties = draft.properties
    deliver_at = int(properties[PROPERTY_DELIVER_AT])
    if deliver_at > now_ms:
        return schedule(draft, levels, level=0, deliver_at_ms=deliver_at, now_ms=now_ms)
    real = {k: v for k, v in properties.items() if k not in _SCHEDULE_PROPERTIES}
    return draft._replace(
        topic=properties[PROPERTY_REAL_TOPIC],
        queue_id=int(properties[PROPERTY_REAL_QID]),
        properties=real,
    )


def due_at(properties: Mapping[str, str]) -> int:
    """The tag-slot value of a scheduled message's ConsumeQueue unit (0, due at once, for
    one whose due time cannot be read: `release_problem` then passes it over)."""
    due = parse_decimal(properties.get(PROPERTY_DUE_AT))
    return due if due is not None and 0 <= due < 2**63 else 0


class ScheduleRecords:
    """The schedule topic's handler (broker/record_handlers.py): a copy waits in the queue
    of its level, its unit's tag slot holding the time its hop ends (so the scheduler
    finds what is due without reading the log); its keys stay findable."""

    def place(self, record: RecordMeta, target: Applying) -> Placement:
        return Placement(due_at(record.properties), indexed=True)


def _hop_level(levels: DelayLevels, remaining_ms: int) -> int:
    """The largest level whose delay does not pass `remaining_ms` (else the shortest)."""
    fitting = [i for i, d in enumerate(levels.delays_ms, start=1) if d <= remaining_ms]
    if fitting:
        return max(fitting, key=lambda i: levels.delays_ms[i - 1])
    return min(range(1, levels.count + 1), key=lambda i: levels.delays_ms[i - 1])


def draft_of(record: Record) -> MessageDraft:
    """A stored record as a draft again (to be written elsewhere), all it carries kept."""
    return MessageDraft(
        topic=record.topic,
        queue_id=record.queue_id,
        body=record.body,
        properties=record.properties,
        born_timestamp_ms=record.born_timestamp_ms,
        born_host=record.born_host,
        reconsume_times=record.reconsume_times,
        prepared_transaction_offset=record.prepared_transaction_offset,
        # Flags describe the stored record (its entry's end, a transaction's end), never
        # the message: a copy written elsewhere starts without them.
        flags=0,
    )
