"""Sending failed messages back and resending dead letters (`broker/send_back.py`).

Goal: a sent-back message waits in the delay schedule for the group's retry topic at
level 3 + reconsume_times, keeping body, unique key and its first topic and msg_id; after
`max_reconsume_times` it goes to the DLQ; retry and DLQ topics are created (one queue) in
the same entry only when missing; what may not be sent back is refused; a resent dead
letter is a fresh message in its original topic, and a letter whose topic is gone is
skipped, never dropped. Method: examples on hand-built records, and Hypothesis over
reconsume counts for the whole retry cycle through `delay.release`.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.broker.delay import SCHEDULE_TOPIC, release
from dledgermq.broker.retry import DEFAULT_LEVELS, DeadLetter, DelayLevels, RetryLater
from dledgermq.broker.send_back import (
    Letter,
    check_entry_size,
    plan_resend,
    plan_send_back,
)
from dledgermq.broker.state import BrokerState
from dledgermq.broker.topics import (
    CONSUMER_OFFSET_TOPIC,
    PERM_READ,
    TOPIC_CONFIG_TOPIC,
    TopicConfig,
)
from dledgermq.errors import BadRequest, BatchTooLarge, NoPermission
from dledgermq.store.record import MessageDraft, Record

NOW = 1_000_000
T = TopicConfig("T", 4, 4)


def record(topic: str = "T", *, reconsume_times: int = 0, offset: int = 100, **properties: str):
    props = {"UNIQ_KEY": "U1", "TAGS": "A", **properties}
    return Record(
        1, 1, offset, 80, 0, 0, 5, 6, 0, "1.2.3.4:5", reconsume_times, 0, topic, props, b"body"
    )


def letter(topic: str = "T", msg_id: str = "M0", **fields) -> Letter:
    return Letter(msg_id, record(topic, **fields))


def stored(draft: MessageDraft, offset: int = 500) -> Record:
    """The draft as the log would hand it back."""
    return Record(
        1,
        2,
        offset,
        90,
        0,
        draft.flags,
        draft.born_timestamp_ms,
        NOW,
        draft.queue_id,
        draft.born_host,
        draft.reconsume_times,
        0,
        draft.topic,
        draft.properties,
        draft.body,
    )


def send_back(letters, topics=None, max_times=16, levels=DEFAULT_LEVELS):
    return plan_send_back(
        letters,
        "G",
        max_reconsume_times=max_times,
        topics={"T": T} if topics is None else topics,
        levels=levels,
        now_ms=NOW,
    )


def config_changes(drafts):
    return [msgpack.unpackb(d.body) for d in drafts if d.topic == TOPIC_CONFIG_TOPIC]


def test_a_first_failure_waits_ten_seconds_in_the_schedule_for_the_retry_topic() -> None:
    plan = send_back([letter()])
    [created] = config_changes(plan.drafts)
    assert (created["topic"], created["if_absent"]) == ("%RETRY%G", True)
    assert (created["config"]["read_queues"], created["config"]["write_queues"]) == (1, 1)
    scheduled = plan.drafts[-1]
    assert (scheduled.topic, scheduled.queue_id) == (SCHEDULE_TOPIC, 2)  # level 3
    assert scheduled.reconsume_times == 1
    props = scheduled.properties
    assert (props["REAL_TOPIC"], props["DUE_AT"]) == ("%RETRY%G", str(NOW + 10_000))
    assert (props["RETRY_TOPIC"], props["ORIGIN_MESSAGE_ID"]) == ("T", "M0")
    assert (props["UNIQ_KEY"], props["TAGS"], scheduled.body) == ("U1", "A", b"body")
    [outcome] = plan.outcomes
    assert outcome.decision == RetryLater(3, 10_000, 1)
    assert (outcome.topic, outcome.deliver_at_ms) == ("%RETRY%G", NOW + 10_000)
    due = release(scheduled, DEFAULT_LEVELS, NOW + 10_000)
    assert (due.topic, due.queue_id, due.reconsume_times) == ("%RETRY%G", 0, 1)


def test_a_retried_message_keeps_its_first_topic_and_id_and_backs_off_further() -> None:
    retried = letter("%RETRY%G", "M1", reconsume_times=1, RETRY_TOPIC="T", ORIGIN_MESSAGE_ID="M0")
    plan = send_back([retried], topics={"T": T, "%RETRY%G": TopicConfig("%RETRY%G", 1, 1)})
    assert config_changes(plan.drafts) == [], "an existing retry topic is left as it is"
    [scheduled] = plan.drafts
    assert scheduled.queue_id == 3  # level 4: 30 s
    assert scheduled.reconsume_times == 2
    assert (scheduled.properties["RETRY_TOPIC"], scheduled.properties["ORIGIN_MESSAGE_ID"]) == (
        "T",
        "M0",
    )


def test_after_the_last_retry_it_goes_to_the_dead_letter_queue() -> None:
    plan = send_back([letter("%RETRY%G", reconsume_times=16, RETRY_TOPIC="T")])
    assert [c["topic"] for c in config_changes(plan.drafts)] == ["%DLQ%G"]
    dead = plan.drafts[-1]
    assert (dead.topic, dead.queue_id, dead.reconsume_times) == ("%DLQ%G", 0, 16)
    assert dead.properties["RETRY_TOPIC"] == "T"
    assert plan.outcomes[0].decision == DeadLetter(16)
    assert plan.outcomes[0].deliver_at_ms is None
    assert send_back([letter()], max_times=0).outcomes[0].topic == "%DLQ%G"


def test_a_batch_creates_each_missing_topic_once_and_keeps_the_order() -> None:
    letters = [letter(msg_id="a"), letter(msg_id="b", reconsume_times=3), letter(msg_id="c")]
    plan = send_back(letters, max_times=3)
    assert [c["topic"] for c in config_changes(plan.drafts)] == ["%RETRY%G", "%DLQ%G"]
    assert [o.msg_id for o in plan.outcomes] == ["a", "b", "c"]
    assert [o.topic for o in plan.outcomes] == ["%RETRY%G", "%DLQ%G", "%RETRY%G"]
    assert len(plan.drafts) == 2 + 3


@pytest.mark.parametrize(
    "topic",
    ["%SYS%OFFSET", SCHEDULE_TOPIC, "%DLQ%G", "%RETRY%OTHER"],
)
def test_internal_records_dead_letters_and_other_groups_retries_are_refused(topic) -> None:
    with pytest.raises(BadRequest):
        send_back([letter(topic)])


def test_a_read_only_retry_topic_refuses_the_send_back() -> None:
    read_only = {"T": T, "%RETRY%G": TopicConfig("%RETRY%G", 1, 1, PERM_READ)}
    with pytest.raises(NoPermission):
        send_back([letter()], topics=read_only)


@given(
    max_times=st.integers(0, 20),
    levels=st.sampled_from(
        [DEFAULT_LEVELS, DelayLevels.parse("1s"), DelayLevels.parse("1s 1s 1s 5s")]
    ),
)
def test_every_message_is_retried_exactly_max_times_then_dead_lettered(max_times, levels):
    """The full cycle, each retry released by the scheduler and sent back again."""
    current, topics = letter(), {"T": T}
    for expected in range(1, max_times + 1):
        plan = send_back([current], topics=topics, max_times=max_times, levels=levels)
        for change in config_changes(plan.drafts):
            topics[change["topic"]] = TopicConfig.from_wire(change["config"])
        [outcome] = plan.outcomes
        assert isinstance(outcome.decision, RetryLater)
        assert outcome.decision.delay_level == min(3 + expected - 1, levels.count)
        due = release(plan.drafts[-1], levels, outcome.deliver_at_ms)
        assert (due.topic, due.reconsume_times) == ("%RETRY%G", expected)
        current = Letter(f"M{expected}", stored(due))
    plan = send_back([current], topics=topics, max_times=max_times, levels=levels)
    dead = plan.drafts[-1]
    assert (dead.topic, dead.reconsume_times) == ("%DLQ%G", max_times)
    assert (dead.properties["RETRY_TOPIC"], dead.properties["ORIGIN_MESSAGE_ID"]) == ("T", "M0")
    assert (dead.properties["UNIQ_KEY"], dead.body) == ("U1", b"body")


def dead_letter(msg_id: str = "D0", origin: str = "T") -> Letter:
    return letter(
        "%DLQ%G",
        msg_id,
        reconsume_times=16,
        RETRY_TOPIC=origin,
        ORIGIN_MESSAGE_ID="M0",
        DELIVER_AT="123",
        DELAY="18",
    )


def test_a_resent_dead_letter_is_a_fresh_message_in_its_topic() -> None:
    plan = plan_resend([dead_letter()], "G", topics={"T": T}, queue_hint=6)
    [draft] = plan.drafts
    assert (draft.topic, draft.queue_id, draft.reconsume_times) == ("T", 2, 0)
    assert draft.properties == {"UNIQ_KEY": "U1", "TAGS": "A"}
    assert (plan.resent, plan.skipped) == ([("D0", "T")], [])


def test_resending_with_a_mark_moves_the_groups_offset_in_the_same_entry() -> None:
    plan = plan_resend([dead_letter()], "G", topics={"T": T}, mark=7, now_ms=NOW)
    assert plan.drafts[-1].topic == CONSUMER_OFFSET_TOPIC
    state = BrokerState()
    state.apply(CONSUMER_OFFSET_TOPIC, plan.drafts[-1].body)
    assert state.offsets == {"G": {"%DLQ%G": {0: 7}}}


def test_letters_whose_topic_is_gone_or_read_only_are_skipped() -> None:
    topics = {"T": T, "RO": TopicConfig("RO", 1, 1, PERM_READ)}
    letters = [dead_letter("a", "GONE"), dead_letter("b", "RO"), dead_letter("c")]
    plan = plan_resend(letters, "G", topics=topics)
    assert [(s.msg_id, s.error.code) for s in plan.skipped] == [
        ("a", "TOPIC_NOT_FOUND"),
        ("b", "NO_PERMISSION"),
    ]
    assert plan.resent == [("c", "T")]
    no_origin = letter("%DLQ%G", "d")
    assert plan_resend([no_origin], "G", topics=topics).skipped[0].error.code == "BAD_REQUEST"


def test_only_the_groups_dead_letters_can_be_resent() -> None:
    for topic in ("T", "%DLQ%OTHER", "%RETRY%G"):
        with pytest.raises(BadRequest):
            plan_resend([letter(topic)], "G", topics={"T": T})


def test_entry_size_counts_messages_not_internal_records_and_one_always_fits() -> None:
    big = MessageDraft("T", 0, b"x" * 100, {"K": "v" * 10})
    check_entry_size([big], 1, limit=10)
    with pytest.raises(BatchTooLarge):
        check_entry_size([big, big], 2, limit=150)
    check_entry_size([big, big], 2, limit=222)
    system = MessageDraft("%SYS%OFFSET", 0, b"y" * 1000)
    check_entry_size([big, system], 1, limit=10)
