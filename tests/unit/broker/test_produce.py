"""Send validation: every bad input is rejected with its own error code and builds nothing."""

from __future__ import annotations

import base64

import pytest

from dledgermq.broker.produce import (
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    ProduceLimits,
    build_drafts,
    check_queue_id,
    resolve_topic,
)
from dledgermq.broker.topics import PERM_READ, TopicConfig
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
