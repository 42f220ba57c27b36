"""Broker state that travels through the CommitLog: topic configs, consumer offsets, delay
progress, the broker group's own permission (the maintenance write-disable switch) and
transactions (pending half messages and outcomes, `broker/transactions.py`).

A deterministic state machine over internal records (DESIGN.md §5 rule 5): every replica
that applies the same committed records in the same order holds the same state, so a new
leader knows every topic and committed offset without a side channel. Snapshots go into
the dispatch checkpoint; the log after the checkpoint is replayed on recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from dledgermq.broker.record_handlers import Applying
from dledgermq.broker.topics import (
    BROKER_PERM_TOPIC,
    CONSUMER_OFFSET_TOPIC,
    DELAY_PROGRESS_TOPIC,
    MAX_QUEUES,
    PERM_READ_WRITE,
    PERM_WRITE,
    SYSTEM_PREFIX,
    TOPIC_CONFIG_TOPIC,
    TRANSACTION_OP_TOPIC,
    VALID_PERMS,
    TopicConfig,
    check_topic_name,
)
from dledgermq.broker.transactions import TransactionTable
from dledgermq.errors import MQError
from dledgermq.store.record import MessageDraft, RecordMeta

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class BrokerState:
    topics: dict[str, TopicConfig] = field(default_factory=dict)
    # group -> topic -> queue id -> next offset to consume
    offsets: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)
    # schedule queue id (delay level - 1) -> next queue offset the scheduler delivers
    delay_progress: dict[int, int] = field(default_factory=dict)
    # The broker group's permission (RocketMQ brokerPermission): 6, or 4 while writes are
    # disabled for maintenance. Masks every topic's perm in the NameServer route.
    perm: int = PERM_READ_WRITE
    transactions: TransactionTable = field(default_factory=TransactionTable)

    @property
    def writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    def apply(self, topic: str, body: bytes | memoryview) -> str | None:
        """Apply one internal record; returns the topic whose config changed, if any.

        A committed record is never a reason to stop (DESIGN.md §5): its body is read and
        checked whole before anything changes, and one that cannot be read changes nothing.

        Raises:
            UnreadableRecord: the body is not a change this version understands.
        """
        assert topic.startswith(SYSTEM_PREFIX), topic
        try:
            change = msgpack.unpackb(body, strict_map_key=False)
            if not isinstance(change, dict):
                raise TypeError(f"a {type(change).__name__}, not a map")
            return self._apply(topic, change)
        except (ValueError, TypeError, KeyError, MQError, msgpack.UnpackException) as exc:
            raise UnreadableRecord(f"{topic}: {type(exc).__name__}: {exc}") from None

    def _apply(self, topic: str, change: dict[str, Any]) -> str | None:
        if topic == TOPIC_CONFIG_TOPIC:
            return self._apply_topic(change)
        if topic == BROKER_PERM_TOPIC:
            perm = _int(change["perm"])
            if perm not in VALID_PERMS:
                raise ValueError(f"perm {perm} is not one of {VALID_PERMS}")
            self.perm = perm
        elif topic == DELAY_PROGRESS_TOPIC:
            self.delay_progress.update(_int_map(change["progress"]))
        elif topic == TRANSACTION_OP_TOPIC:
            self.transactions.apply(change)
        elif topic == CONSUMER_OFFSET_TOPIC:
            group, name = _str(change["group"]), _str(change["topic"])
            offsets = _int_map(change["offsets"])
            self.offsets.setdefault(group, {}).setdefault(name, {}).update(offsets)
        return None  # Or a system record of a later version: ignored, never fatal.

    def _apply_topic(self, change: dict[str, Any]) -> str:
        name = check_topic_name(change["topic"], allow_system=True)
        if change["op"] == "put":
            config = _topic_config(change["config"])
            if config.topic != name:
                raise ValueError(f"config of {config.topic!r} put as {name!r}")
            # An auto-created topic never replaces one an admin created meanwhile.
            if not (change.get("if_absent") and name in self.topics):
                self.topics[name] = config
        elif change["op"] == "delete":
            self.topics.pop(name, None)
            for by_topic in self.offsets.values():
                by_topic.pop(name, None)
        else:
            raise ValueError(f"unknown topic op {change['op']!r}")
        return name

    def snapshot(self) -> bytes:
        return msgpack.packb(
            {
                "version": SNAPSHOT_VERSION,
                "topics": [c.to_wire() for c in self.topics.values()],
                "offsets": self.offsets,
                "delay_progress": self.delay_progress,
                "perm": self.perm,
                "transactions": self.transactions.to_wire(),
            }
        )

    @classmethod
    def restore(cls, blob: bytes) -> BrokerState:
        raw = msgpack.unpackb(blob, strict_map_key=False)
        assert raw["version"] == SNAPSHOT_VERSION, raw["version"]
        return cls(
            topics={c["topic"]: TopicConfig.from_wire(c) for c in raw["topics"]},
            offsets={
                group: {topic: {int(q): int(o) for q, o in qs.items()} for topic, qs in ts.items()}
                for group, ts in raw["offsets"].items()
            },
            delay_progress={int(q): int(o) for q, o in raw.get("delay_progress", {}).items()},
            perm=int(raw.get("perm", PERM_READ_WRITE)),
            transactions=TransactionTable.from_wire(raw.get("transactions", {})),
        )


class UnreadableRecord(ValueError):
    """An internal record whose body this version cannot apply: kept in the log, counted
    and reported by dispatch, and passed over (never a reason for a node to stop)."""


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _str(value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not a string")
    return value


def _int_map(raw: object) -> dict[int, int]:
    """A map of integers (queue id -> offset), checked whole before it is applied."""
    if not isinstance(raw, dict):
        raise TypeError(f"{raw!r} is not a map")
    return {int(k): _int(v) for k, v in raw.items()}


def _topic_config(raw: object) -> TopicConfig:
    """A config as the log carries it, checked as strictly as an admin's request is."""
    if not isinstance(raw, dict):
        raise TypeError(f"topic config {raw!r} is not a map")
    config = TopicConfig(
        check_topic_name(raw["topic"], allow_system=True),
        _int(raw["read_queues"]),
        _int(raw["write_queues"]),
        _int(raw["perm"]),
    )
    counts_ok = all(1 <= n <= MAX_QUEUES for n in (config.read_queues, config.write_queues))
    if not counts_ok or config.perm not in VALID_PERMS:
        raise ValueError(f"topic config out of range: {config}")
    return config


class StateRecords:
    """The system handler (broker/record_handlers.py): `%SYS%` records applied to the
    broker state, a record that cannot be read passed over."""

    def apply(self, record: RecordMeta, target: Applying) -> None:
        state = target.state
        perm_before = state.perm
        try:
            changed = state.apply(record.topic, record.body)
        except UnreadableRecord as exc:
            target.passed_over(record.commitlog_offset, record.topic, str(exc))
            return
        if state.perm != perm_before:
            target.broker_changed()
        if changed is not None:
            target.topic_changed(changed, record.commitlog_offset)


def topic_put_draft(config: TopicConfig, now_ms: int) -> MessageDraft:
    return _system_draft(
        TOPIC_CONFIG_TOPIC, {"op": "put", "topic": config.topic, "config": config.to_wire()}, now_ms
    )


def topic_create_draft(config: TopicConfig, now_ms: int) -> MessageDraft:
    """Auto-create: a put that is ignored when the topic exists by the time it applies."""
    change = {"op": "put", "topic": config.topic, "config": config.to_wire(), "if_absent": True}
    return _system_draft(TOPIC_CONFIG_TOPIC, change, now_ms)


def broker_perm_draft(perm: int, now_ms: int) -> MessageDraft:
    """The broker group's permission, through the log so a new leader keeps it."""
    assert perm in VALID_PERMS, perm
    return _system_draft(BROKER_PERM_TOPIC, {"perm": perm}, now_ms)


def topic_delete_draft(topic: str, now_ms: int) -> MessageDraft:
    return _system_draft(TOPIC_CONFIG_TOPIC, {"op": "delete", "topic": topic}, now_ms)


def offset_commit_draft(
    group: str, topic: str, offsets: dict[int, int], now_ms: int
) -> MessageDraft:
    return _system_draft(
        CONSUMER_OFFSET_TOPIC, {"group": group, "topic": topic, "offsets": offsets}, now_ms
    )


def delay_progress_draft(progress: dict[int, int], now_ms: int) -> MessageDraft:
    """The scheduler's progress, in the same entry as the messages it delivered."""
    return _system_draft(DELAY_PROGRESS_TOPIC, {"progress": progress}, now_ms)


def _system_draft(topic: str, change: dict[str, Any], now_ms: int) -> MessageDraft:
    return MessageDraft(
        topic=topic, queue_id=0, body=msgpack.packb(change), properties={}, born_timestamp_ms=now_ms
    )
