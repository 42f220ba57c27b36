"""Sending a failed message back, and resending dead letters: the entries to append.

A consumer that failed a message sends it back (RocketMQ's consumerSendMsgBack): the
broker reads the stored record and, after `retry.next_retry`, appends it again in one
entry, either *scheduled* for the group's retry topic (through the delay machinery of
`broker/delay.py`, so the back-off survives failover like any delayed message) or into
the group's dead-letter topic. The copy keeps its body, unique key and properties, and
records where it came from (`RETRY_TOPIC`, `ORIGIN_MESSAGE_ID`, RocketMQ's names) and
its `reconsume_times`. Retry and dead-letter topics are created on demand with one queue
(RocketMQ's behaviour): their config record leads the same entry, so it is applied
before the message is dispatched and travels through the log like any topic config.

A dead letter resent by an operator goes back to its original topic as a fresh message:
same unique key, `reconsume_times` 0 (a full set of retries again), retry bookkeeping
removed.

Pure: the caller passes the records, the topic table, the delay levels and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dledgermq.broker.delay import draft_of, schedule
from dledgermq.broker.reserved import (
    PROPERTY_DELAY,
    PROPERTY_DELIVER_AT,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_RETRY_TOPIC,
)
from dledgermq.broker.retry import (
    DeadLetter,
    DelayLevels,
    RetryDecision,
    RetryLater,
    dlq_topic,
    is_dlq_topic,
    is_retry_topic,
    next_retry,
    retry_topic,
)
from dledgermq.broker.state import offset_commit_draft, topic_create_draft
from dledgermq.broker.topics import (
    PERM_READ_WRITE,
    RESERVED_PREFIXES,
    SYSTEM_PREFIX,
    TopicConfig,
)
from dledgermq.errors import BadRequest, BatchTooLarge, MQError, NoPermission, TopicNotFound
from dledgermq.store.record import MessageDraft, Record

GROUP_TOPIC_QUEUES = 1  # RocketMQ's retry and DLQ queue count per group.
# Dropped from a resent dead letter: it is a fresh message in its topic, not delayed.
_RETRY_PROPERTIES = (
    PROPERTY_RETRY_TOPIC,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_DELIVER_AT,
    PROPERTY_DELAY,
)


@dataclass(frozen=True, slots=True)
class Letter:
    """A stored message a request names: its offset msg_id and its record."""

    msg_id: str
    record: Record


@dataclass(frozen=True, slots=True)
class SentBack:
    """Where one sent-back message went."""

    msg_id: str
    decision: RetryDecision
    topic: str  # the retry or dead-letter topic
    deliver_at_ms: int | None  # when it is redelivered (None: dead-lettered)


@dataclass(frozen=True, slots=True)
class SendBackPlan:
    """One entry: topic configs created on demand, then one draft per message (in the
    order of `outcomes`)."""

    drafts: list[MessageDraft]
    outcomes: list[SentBack]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A dead letter that cannot be resent now (its original topic is gone or read-only)."""

    msg_id: str
    error: MQError


@dataclass(frozen=True, slots=True)
class ResendPlan:
    """One entry: the resent messages (in the order of `resent`), then the group's resend
    mark when it moved."""

    drafts: list[MessageDraft]
    resent: list[tuple[str, str]]  # (dead letter's msg_id, topic it went back to)
    skipped: list[Skipped]


def group_topic_config(topic: str) -> TopicConfig:
    """A retry or dead-letter topic as it is created on demand."""
    return TopicConfig(topic, GROUP_TOPIC_QUEUES, GROUP_TOPIC_QUEUES, PERM_READ_WRITE)


def origin_topic(record: Record) -> str:
    """The topic a (possibly retried or dead-lettered) message was first sent to."""
    return record.properties.get(PROPERTY_RETRY_TOPIC, record.topic)


def check_sendable(record: Record, group: str) -> None:
    """Only a consumable message of a normal topic, or of this group's retry topic, may
    be sent back by `group`.

    Raises:
        BadRequest: an internal record, a dead letter, or another group's retry message.
    """
    topic = record.topic
    if topic.startswith(RESERVED_PREFIXES):
        raise BadRequest(f"a message of the built-in topic {topic!r} cannot be sent back")
    if is_dlq_topic(topic):
        raise BadRequest(
            f"the message is already a dead letter in {topic!r}; resend it with the DLQ resend"
        )
    if is_retry_topic(topic) and topic != retry_topic(group):
        raise BadRequest(f"the message belongs to {topic!r}, not to group {group!r}")


def entry_bytes(drafts: Sequence[MessageDraft]) -> int:
    """What the messages of an entry weigh against `max_batch_bytes`: bodies and
    properties (internal records, a few bytes each, are not counted)."""
    return sum(
        _weight(d.body, d.properties) for d in drafts if not d.topic.startswith(SYSTEM_PREFIX)
    )


def record_bytes(record: Record) -> int:
    """What a stored message weighs once written again (as `entry_bytes` counts)."""
    return _weight(record.body, record.properties)


def _weight(body: bytes, properties: Mapping[str, str]) -> int:
    return len(body) + sum(len(k) + len(v) for k, v in properties.items())


def plan_send_back(  # noqa: PLR0913 - the letters and everything the decision depends on
    letters: Sequence[Letter],
    group: str,
    *,
    max_reconsume_times: int,
    topics: Mapping[str, TopicConfig],
    levels: DelayLevels,
    now_ms: int,
    queue_hint: int = 0,
    dead_letter_times: int | None = None,
) -> SendBackPlan:
    """The entry that sends `letters` back for `group`. With `dead_letter_times` every
    letter goes straight to the DLQ (an orderly consumer retried it locally that many
    times; the letter records the larger of that and its stored count).

    Raises:
        BadRequest: a letter may not be sent back (`check_sendable`), a bad maximum.
        NoPermission: the group's retry or dead-letter topic exists but is not writable.
    """
    assert letters, "at least one message"
    retry, dlq = retry_topic(group), dlq_topic(group)
    created: dict[str, TopicConfig] = {}
    drafts: list[MessageDraft] = []
    outcomes: list[SentBack] = []
    for letter in letters:
        record = letter.record
        check_sendable(record, group)
        decision: RetryDecision = (
            next_retry(record.reconsume_times, max_reconsume_times, levels)
            if dead_letter_times is None
            else DeadLetter(max(record.reconsume_times, dead_letter_times))
        )
        target = retry if isinstance(decision, RetryLater) else dlq
        config = _group_topic(target, topics, created)
        draft = _marked(letter)._replace(
            topic=target,
            queue_id=(queue_hint + len(outcomes)) % config.write_queues,
            reconsume_times=decision.reconsume_times,
        )
        deliver_at = None
        if isinstance(decision, RetryLater):
            deliver_at = now_ms + decision.delay_ms
            draft = schedule(
                draft, levels, level=decision.delay_level, deliver_at_ms=deliver_at, now_ms=now_ms
            )
        drafts.append(draft)
        outcomes.append(SentBack(letter.msg_id, decision, target, deliver_at))
    # Created only if still absent when applied (two send-backs may race to create it).
    configs = [topic_create_draft(c, now_ms) for c in created.values()]
    return SendBackPlan(configs + drafts, outcomes)


def _marked(letter: Letter) -> MessageDraft:
    """The letter's draft, remembering its original topic and msg_id (the first ones)."""
    draft = draft_of(letter.record)
    properties = dict(draft.properties)
    properties.setdefault(PROPERTY_RETRY_TOPIC, letter.record.topic)
    properties.setdefault(PROPERTY_ORIGIN_MESSAGE_ID, letter.msg_id)
    return draft._replace(properties=properties)


def _group_topic(
    topic: str, topics: Mapping[str, TopicConfig], created: dict[str, TopicConfig]
) -> TopicConfig:
    config = topics.get(topic) or created.get(topic)
    if config is None:
        config = created[topic] = group_topic_config(topic)
    if not config.writable:
        raise NoPermission(f"topic {topic!r} is not writable (perm={config.perm})", topic=topic)
    return config


def plan_resend(
    letters: Sequence[Letter],
    group: str,
    *,
    topics: Mapping[str, TopicConfig],
    queue_hint: int = 0,
    mark: int | None = None,
    now_ms: int = 0,
) -> ResendPlan:
    """The entry that resends dead letters of `group` to their original topics; with
    `mark`, it also stores the group's resend mark (its offset in the dead-letter queue)
    so that "resend all" never resends a letter twice.

    Raises:
        BadRequest: a letter is not in the group's dead-letter topic.
    """
    dlq = dlq_topic(group)
    drafts: list[MessageDraft] = []
    resent: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    for letter in letters:
        record = letter.record
        if record.topic != dlq:
            raise BadRequest(
                f"message {letter.msg_id} is in {record.topic!r}, not in {dlq!r}",
                msg_id=letter.msg_id,
            )
        try:
            config = _origin_config(record, topics)
        except MQError as error:
            skipped.append(Skipped(letter.msg_id, error))
            continue
        properties = {k: v for k, v in record.properties.items() if k not in _RETRY_PROPERTIES}
        drafts.append(
            draft_of(record)._replace(
                topic=config.topic,
                queue_id=(queue_hint + len(resent)) % config.write_queues,
                properties=properties,
                reconsume_times=0,
            )
        )
        resent.append((letter.msg_id, config.topic))
    if mark is not None:
        drafts.append(offset_commit_draft(group, dlq, {0: mark}, now_ms))
    return ResendPlan(drafts, resent, skipped)


def _origin_config(record: Record, topics: Mapping[str, TopicConfig]) -> TopicConfig:
    origin = record.properties.get(PROPERTY_RETRY_TOPIC)
    if origin is None:
        raise BadRequest(f"the dead letter names no original topic ({PROPERTY_RETRY_TOPIC})")
    config = topics.get(origin)
    if config is None:
        raise TopicNotFound(f"its original topic {origin!r} does not exist", topic=origin)
    if not config.writable:
        raise NoPermission(f"its original topic {origin!r} is not writable", topic=origin)
    return config


def check_entry_size(drafts: Sequence[MessageDraft], messages: int, limit: int) -> None:
    """Refuse an entry of several messages above `limit` bytes (one message always fits:
    it was stored once already).

    Raises:
        BatchTooLarge: several messages weigh more than `limit`.
    """
    size = entry_bytes(drafts)
    if messages > 1 and size > limit:
        raise BatchTooLarge(
            f"{messages} messages of {size} bytes exceed {limit}; send fewer at once",
            limit=limit,
        )
