"""Queue selection as a pure function of (queues, key, failed broker, counter).

Goal: explicit queues win, a sharding key is stable across processes (crc32, not the
salted `hash()`), round-robin spreads evenly and steers around a failed broker group.
"""

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.client.message import MessageQueue
from dledgermq.client.selector import QueueSelector, sharding_index
from dledgermq.errors import NoRoute

QUEUES = [MessageQueue("T", b, q) for b in ("a", "b") for q in range(2)]


def test_round_robin_visits_every_queue_in_order():
    selector = QueueSelector()
    assert [selector.select(QUEUES) for _ in range(5)] == [*QUEUES, QUEUES[0]]


def test_round_robin_skips_the_failed_broker():
    selector = QueueSelector()
    picks = [selector.select(QUEUES, avoid_broker="a") for _ in range(4)]
    assert {q.broker_name for q in picks} == {"b"}


def test_failed_broker_is_used_when_it_is_the_only_one():
    only_a = [q for q in QUEUES if q.broker_name == "a"]
    selector = QueueSelector()
    assert selector.select(only_a, avoid_broker="a").broker_name == "a"


def test_sharding_key_is_stable_and_ignores_the_failed_broker():
    expected = QUEUES[(zlib.crc32(b"order-42") & 0xFFFFFFFF) % len(QUEUES)]
    for start in range(3):
        selector = QueueSelector(start)
        assert selector.select(QUEUES, sharding_key="order-42") == expected
        assert selector.select(QUEUES, sharding_key="order-42", avoid_broker="a") == expected
        assert selector.select(QUEUES, sharding_key="order-42", avoid_broker="b") == expected


@given(st.text(), st.integers(min_value=1, max_value=64))
def test_sharding_index_is_in_range_and_deterministic(key, count):
    index = sharding_index(key, count)
    assert 0 <= index < count
    assert index == sharding_index(key, count)


def test_no_writable_queue_is_no_route():
    with pytest.raises(NoRoute):
        QueueSelector().select([])
