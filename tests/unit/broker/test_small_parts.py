"""Long-poll bookkeeping, tag expressions, message ids and topic configs."""

from __future__ import annotations

import pytest

from dledgermq.broker.filter import parse_tag_expression
from dledgermq.broker.long_poll import LongPolls
from dledgermq.broker.message_id import broker_hash, decode_msg_id, make_msg_id
from dledgermq.broker.topics import TopicConfig, make_topic_config
from dledgermq.errors import BadRequest
from dledgermq.store.consume_queue import tag_hash


def test_long_polls_wake_by_key_and_expire_by_deadline() -> None:
    polls: LongPolls[str] = LongPolls(waiters_max=3)
    assert polls.hold(("T", 0), "a", deadline_ms=100)
    assert polls.hold(("T", 1), "b", deadline_ms=200)
    assert polls.hold(("T", 0), "c", deadline_ms=300)
    assert not polls.hold(("T", 2), "d", deadline_ms=300)  # full: answer at once instead
    assert sorted(polls.take([("T", 0)])) == ["a", "c"]
    assert polls.expire(150) == []
    assert polls.expire(200) == ["b"]
    assert len(polls) == 0


def test_tag_expressions() -> None:
    everything = parse_tag_expression("*")
    assert everything.matches(None)
    assert everything.matches_hash(12345)
    some = parse_tag_expression("A || B")
    assert some.matches("A")
    assert some.matches("B")
    assert not some.matches("C")
    assert some.matches_hash(tag_hash("A"))
    assert not some.matches_hash(tag_hash("C"))
    assert not some.matches(None)
    with pytest.raises(BadRequest):
        parse_tag_expression("A || ")


def test_message_ids_decode_to_where_the_message_is() -> None:
    prefix = broker_hash("broker-a")
    msg_id = make_msg_id(prefix, 123_456_789, 1_234)
    assert len(msg_id) == 32
    decoded = decode_msg_id(msg_id)
    assert decoded is not None
    assert (decoded.broker_hash, decoded.commitlog_offset, decoded.size) == (
        prefix,
        123_456_789,
        1_234,
    )
    assert decode_msg_id("not-an-id") is None
    assert decode_msg_id("Z" * 32) is None


def test_topic_config_from_requests() -> None:
    assert make_topic_config("T", {"queues": 4}, default_queues=8) == TopicConfig("T", 4, 4, 6)
    assert make_topic_config("T", {}, default_queues=8) == TopicConfig("T", 8, 8, 6)
    base = TopicConfig("T", 8, 8, 6)
    assert make_topic_config("T", {"write_queues": 2}, default_queues=8, base=base) == TopicConfig(
        "T", 8, 2, 6
    )
    for bad in ({"queues": 0}, {"queues": 2000}, {"perm": 1}, {"read_queues": "4"}, {"x": 1}):
        with pytest.raises(BadRequest):
            make_topic_config("T", bad, default_queues=8)
