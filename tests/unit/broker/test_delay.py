"""The delay rules (`broker/delay.py`): where a delayed message waits, when and how it
comes out.

Goal: a level puts the message in queue level-1 of the schedule topic, due after that
level's delay; a deliver-at time is reached in hops no longer than the longest level and
never late; release restores the real topic and queue with the message's identity; bad
requests are refused with clear errors.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.delay import (
    PROPERTY_DELAY,
    PROPERTY_DUE_AT,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    SCHEDULE_TOPIC,
    delay_request,
    due_at,
    release,
    schedule,
)
from dledgermq.broker.retry import DEFAULT_LEVELS
from dledgermq.errors import BadRequest
from dledgermq.store.record import MessageDraft

pytestmark = pytest.mark.timeout(30)
NOW = 1_700_000_000_000
HOUR = 3_600_000


def draft() -> MessageDraft:
    return MessageDraft("Orders", 3, b"x", {"UNIQ_KEY": "k1", "TAGS": "a"}, NOW, "1.2.3.4:5")


def test_a_level_waits_in_its_queue_for_its_delay_then_comes_out_unchanged() -> None:
    level, deliver_at = delay_request(DEFAULT_LEVELS, {"delay_level": 3}, NOW)
    waiting = schedule(draft(), DEFAULT_LEVELS, level=level, deliver_at_ms=deliver_at, now_ms=NOW)
    assert (waiting.topic, waiting.queue_id) == (SCHEDULE_TOPIC, 2)
    assert due_at(waiting.properties) == NOW + 10_000
    assert waiting.properties[PROPERTY_REAL_TOPIC] == "Orders"
    assert waiting.properties[PROPERTY_REAL_QID] == "3"
    delivered = release(waiting, DEFAULT_LEVELS, NOW + 10_000)
    assert (delivered.topic, delivered.queue_id, delivered.body) == ("Orders", 3, b"x")
    assert delivered.properties["UNIQ_KEY"] == "k1"
    assert delivered.properties[PROPERTY_DELAY] == "3"
    assert PROPERTY_DUE_AT not in delivered.properties
    assert PROPERTY_REAL_TOPIC not in delivered.properties


@settings(max_examples=200, deadline=None)
@given(ahead=st.integers(1, 48 * HOUR))
def test_a_deliver_at_time_is_reached_in_bounded_hops_never_late(ahead: int) -> None:
    level, deliver_at = delay_request(DEFAULT_LEVELS, {"deliver_at_ms": NOW + ahead}, NOW)
    message = schedule(draft(), DEFAULT_LEVELS, level=level, deliver_at_ms=deliver_at, now_ms=NOW)
    now, hops = NOW, 0
    while message.topic == SCHEDULE_TOPIC:
        due = due_at(message.properties)
        assert now < due <= NOW + ahead  # each hop ends no later than the wanted time
        assert due - now <= 2 * HOUR
        assert message.queue_id < DEFAULT_LEVELS.count
        now = due
        message = release(message, DEFAULT_LEVELS, now)
        hops += 1
    assert now == NOW + ahead
    assert hops <= ahead // (2 * HOUR) + 2 * DEFAULT_LEVELS.count  # greedy, by level
    assert (message.topic, message.queue_id) == ("Orders", 3)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"delay_level": 19}, "delay_level must be within 0..18"),
        ({"delay_level": "1"}, "delay_level must be within"),
        ({"delay_level": True}, "delay_level must be within"),
        ({"deliver_at_ms": -5}, "deliver_at_ms must be"),
        ({"deliver_at_ms": NOW + 400 * 24 * HOUR}, "more than a year"),
        ({"delay_level": 1, "deliver_at_ms": NOW + 5}, "not both"),
    ],
)
def test_bad_delays_are_refused(raw: dict, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        delay_request(DEFAULT_LEVELS, raw, NOW)


def test_no_delay_a_past_time_or_level_zero_means_at_once() -> None:
    assert delay_request(DEFAULT_LEVELS, {}, NOW) is None
    assert delay_request(DEFAULT_LEVELS, {"delay_level": 0}, NOW) is None
    assert delay_request(DEFAULT_LEVELS, {"deliver_at_ms": NOW - 1}, NOW) is None
