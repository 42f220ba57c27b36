"""Send validation: every bad input is rejected with its own error code and builds nothing."""

from __future__ import annotations

import base64

import pytest

from dledgermq.broker.produce import (
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    ProduceLimits,
    SendPolicy,
    build_drafts,
    check_queue_id,
    resolve_topic,
    topic_for_send,
)
from dledgermq.broker.topics import PERM_READ, PERM_WRITE, TopicConfig
from dledgermq.errors import (
    BadRequest,
    BatchTooLarge,
    InvalidMessage,
    InvalidTopic,
    MessageTooLarge,
    NoPermission,
    QueueNotFound,
    TopicNotFound,
)

LIMITS = ProduceLimits(max_message_bytes=100, max_batch_messages=3, max_batch_bytes=150)
CONFIG = TopicConfig("T", read_queues=4, write_queues=2)


def build(messages: object) -> list:
    return build_drafts(CONFIG, 1, messages, limits=LIMITS, now_ms=1000, born_host="1.2.3.4:5")


def test_builds_drafts_with_tags_keys_and_unique_key() -> None:
    [draft] = build([{"body": "hi", "tags": "A", "keys": ["k1", "k2"], "properties": {"p": "v"}}])
    assert draft.body == b"hi"
    assert draft.queue_id == 1
    assert draft.properties[PROPERTY_TAGS] == "A"
    assert draft.properties[PROPERTY_KEYS] == "k1 k2"
    assert draft.properties["p"] == "v"
    assert len(draft.properties[PROPERTY_UNIQ_KEY]) == 32
    assert draft.born_timestamp_ms == 1000


def test_client_unique_key_is_kept_and_base64_bodies_decode() -> None:
    raw = base64.b64encode(b"\x00\xff").decode()
    [draft] = build([{"body_base64": raw, "properties": {PROPERTY_UNIQ_KEY: "abc"}}])
    assert draft.body == b"\x00\xff"
    assert draft.properties[PROPERTY_UNIQ_KEY] == "abc"


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], BadRequest),
        ("nope", BadRequest),
        ([{"body": ""}], InvalidMessage),
        ([{}], InvalidMessage),
        ([{"body": "x" * 101}], MessageTooLarge),
        ([{"body": "x"}] * 4, BatchTooLarge),
        ([{"body": "x" * 60}, {"body": "x" * 60}, {"body": "x" * 60}], BatchTooLarge),
        ([{"body": "x", "tags": "a||b"}], InvalidMessage),
        ([{"body": "x", "keys": ["has space"]}], InvalidMessage),
        ([{"body": "x", "properties": {"TAGS": "x"}}], InvalidMessage),
        ([{"body": "x", "properties": {"a": 1}}], InvalidMessage),
        ([{"body": "x", "extra": 1}], BadRequest),
        ([{"body_base64": "!!"}], BadRequest),
        ([{"body": "x", "body_base64": "eA=="}], BadRequest),
        ([{"body": "x", "born_timestamp_ms": -1}], BadRequest),
    ],
)
def test_bad_messages_are_rejected(messages: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        build(messages)


def test_topic_resolution_errors() -> None:
    topics = {"T": CONFIG, "R": TopicConfig("R", 1, 1, PERM_READ)}
    assert resolve_topic(topics, "T") is CONFIG
    with pytest.raises(TopicNotFound):
        resolve_topic(topics, "Missing")
    with pytest.raises(NoPermission):
        resolve_topic(topics, "R")
    with pytest.raises(InvalidTopic):
        resolve_topic(topics, "bad topic!")
    with pytest.raises(InvalidTopic):
        resolve_topic(topics, "%SYS%TOPIC")


def test_queue_id_must_be_a_write_queue() -> None:
    assert check_queue_id(CONFIG, 1) == 1
    with pytest.raises(QueueNotFound):
        check_queue_id(CONFIG, 2)  # 4 read queues but only 2 write queues
    with pytest.raises(BadRequest):
        check_queue_id(CONFIG, "1")


def test_queue_id_of_a_write_only_topic_with_more_write_than_read_queues() -> None:
    """Read and write counts are independent: a grown write count is sendable at once."""
    config = TopicConfig("W", read_queues=2, write_queues=6, perm=PERM_WRITE)
    assert check_queue_id(config, 5) == 5
    with pytest.raises(QueueNotFound):
        check_queue_id(config, 6)


OPEN = SendPolicy("broker-a", broker_perm=6)


def test_a_write_disabled_broker_refuses_every_send_before_the_topic_is_looked_at() -> None:
    disabled = SendPolicy("broker-a", broker_perm=PERM_READ, auto_create_queues=4)
    for topic in ("T", "Missing"):
        with pytest.raises(NoPermission) as refused:
            topic_for_send({"T": CONFIG}, topic, disabled)
        assert refused.value.details == {"broker_name": "broker-a", "broker_writable": False}
        assert "write-disabled" in refused.value.message
    assert topic_for_send({"T": CONFIG}, "T", OPEN) == (CONFIG, False)


def test_auto_create_when_on_and_the_name_is_not_a_system_name() -> None:
    auto = SendPolicy("broker-a", broker_perm=6, auto_create_queues=4)
    assert topic_for_send({}, "New", auto) == (TopicConfig("New", 4, 4, 6), True)
    assert topic_for_send({"T": CONFIG}, "T", auto) == (CONFIG, False)
    with pytest.raises(TopicNotFound):
        topic_for_send({}, "New", OPEN)  # auto-create off: today's answer
    # `%` names are the broker's (retry, dead-letter, ...): never created nor written by a
    # client's send, even where the topic exists (probe: clients could create %DLQ% topics).
    for system in ("%RETRY%g", "%DLQ%g", "%x", "%SYS%TOPIC", "%DELAY%SCHEDULE", "%TRANS%HALF"):
        existing = {system: TopicConfig(system, 1, 1, 6)}
        for topics in ({}, existing):
            with pytest.raises(InvalidTopic):
                topic_for_send(topics, system, auto)
    read_only = TopicConfig("R", 1, 1, PERM_READ)
    with pytest.raises(NoPermission):
        topic_for_send({"R": read_only}, "R", auto)  # an existing topic keeps its perm
