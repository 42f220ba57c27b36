"""Retry and dead-letter policy (`broker/retry.py`).

Goal: the delay-level string parses to RocketMQ's levels and rejects bad input with a
message naming the bad token; a failing message is retried 16 times on the documented
back-off (10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h) and then dead-lettered;
retry and DLQ topic names are valid topic names. Method: examples, and Hypothesis for the
decision over any counts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.retry import (
    DEFAULT_LEVELS,
    DeadLetter,
    DelayLevels,
    DelayLevelsError,
    RetryLater,
    dlq_topic,
    is_dlq_topic,
    is_retry_topic,
    next_retry,
    retry_topic,
)
from dledgermq.broker.topics import check_group_name, check_topic_name
from dledgermq.errors import BadRequest

S = 1_000
M = 60 * S
H = 60 * M


def test_default_levels_are_rocketmqs() -> None:
    assert DelayLevels.parse() == DEFAULT_LEVELS
    assert DEFAULT_LEVELS.count == 18
    assert DEFAULT_LEVELS.delays_ms == (
        *(1 * S, 5 * S, 10 * S, 30 * S),
        *(n * M for n in range(1, 11)),
        *(20 * M, 30 * M, 1 * H, 2 * H),
    )


def test_levels_are_numbered_from_one_and_give_due_times() -> None:
    levels = DelayLevels.parse("2s 3m 1h 1d")
    assert [levels.delay_ms(n) for n in range(1, 5)] == [2 * S, 3 * M, H, 24 * H]
    assert levels.due_ms(2, now_ms=1_000) == 1_000 + 3 * M
    for bad in (0, 5, -1, True, "1"):
        with pytest.raises(BadRequest, match=r"1\.\.4"):
            levels.delay_ms(bad)  # type: ignore[arg-type]


def test_extra_whitespace_between_levels_is_fine() -> None:
    assert DelayLevels.parse("  1s\t5s\n ").delays_ms == (S, 5 * S)


@pytest.mark.parametrize(
    ("text", "text_in_error"),
    [
        ("", "1..64"),
        ("   ", "1..64"),
        (" ".join(["1s"] * 65), "got 65"),
        ("1s 5x", "'5x'"),
        ("1s 5", "'5'"),
        ("1s s", "'s'"),
        ("1.5s", "'1.5s'"),
        ("-1s", "'-1s'"),
        ("1S", "'1S'"),
        ("0s", "'0s'"),
        ("31d", "'31d'"),
        ("1s,5s", "'1s,5s'"),
        (None, "string"),
    ],
)
def test_bad_level_strings_are_refused_naming_the_problem(text: object, text_in_error: str) -> None:
    with pytest.raises(DelayLevelsError) as raised:
        DelayLevels.parse(text)  # type: ignore[arg-type]
    assert text_in_error in raised.value.message
    # Both a BadRequest (API) and a ValueError (config loading) can catch it.
    assert isinstance(raised.value, BadRequest)
    assert isinstance(raised.value, ValueError)


def test_a_failing_message_backs_off_sixteen_times_then_goes_to_the_dlq() -> None:
    delays: list[int] = []
    reconsume_times = 0
    while isinstance(decision := next_retry(reconsume_times), RetryLater):
        assert decision.reconsume_times == reconsume_times + 1
        assert decision.delay_ms == DEFAULT_LEVELS.delay_ms(decision.delay_level)
        delays.append(decision.delay_ms)
        reconsume_times = decision.reconsume_times
        assert reconsume_times <= 16
    assert decision == DeadLetter(16)
    expected = "10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
    assert delays == list(DelayLevels.parse(expected).delays_ms)
    assert next_retry(0) == RetryLater(delay_level=3, delay_ms=10 * S, reconsume_times=1)


def test_more_retries_than_levels_stay_at_the_last_level() -> None:
    assert next_retry(15, 20) == RetryLater(18, 2 * H, 16)
    assert next_retry(19, 20) == RetryLater(18, 2 * H, 20)
    assert next_retry(20, 20) == DeadLetter(20)


def test_max_zero_dead_letters_at_once_and_short_level_lists_clamp() -> None:
    assert next_retry(0, 0) == DeadLetter(0)
    assert next_retry(0, 3, DelayLevels.parse("1s 2s")) == RetryLater(2, 2 * S, 1)


@pytest.mark.parametrize(("times", "maximum"), [(-1, 16), (0, -1), (0, 1001), (True, 16), (0, 1.5)])
def test_bad_counts_are_bad_requests(times: object, maximum: object) -> None:
    with pytest.raises(BadRequest):
        next_retry(times, maximum)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(times=st.integers(0, 1100), maximum=st.integers(0, 1000))
def test_retry_until_the_maximum_then_dead_letter(times: int, maximum: int) -> None:
    decision = next_retry(times, maximum)
    if times >= maximum:
        assert decision == DeadLetter(times)
    else:
        assert isinstance(decision, RetryLater)
        assert decision.delay_level == min(3 + times, 18)
        assert decision.reconsume_times == times + 1


def test_retry_and_dlq_topics_are_valid_broker_topics() -> None:
    assert retry_topic("orders") == "%RETRY%orders"
    assert dlq_topic("orders") == "%DLQ%orders"
    for topic in (retry_topic("orders"), dlq_topic("orders")):
        assert check_topic_name(topic) == topic
    assert is_retry_topic("%RETRY%orders")
    assert not is_retry_topic("orders")
    assert is_dlq_topic("%DLQ%orders")
    assert not is_dlq_topic("%RETRY%orders")


def test_group_names_too_long_for_a_topic_are_refused_with_the_limit() -> None:
    longest_retry = "g" * 120
    assert check_group_name("g" * 255)  # valid as a group...
    assert check_topic_name(retry_topic(longest_retry)) == "%RETRY%" + longest_retry
    assert check_topic_name(dlq_topic("g" * 122)) == "%DLQ%" + "g" * 122
    with pytest.raises(BadRequest, match="at most 120"):
        retry_topic("g" * 121)  # ...but not every group name fits in a topic name
    with pytest.raises(BadRequest, match="at most 122"):
        dlq_topic("g" * 123)


@pytest.mark.parametrize("group", ["", "a b", "a/b", None])
def test_invalid_group_names_are_refused(group: object) -> None:
    with pytest.raises(BadRequest):
        retry_topic(group)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        dlq_topic(group)  # type: ignore[arg-type]
