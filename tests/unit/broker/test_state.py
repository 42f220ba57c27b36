"""The broker state machine: applying internal records, snapshot and restore agree."""

from __future__ import annotations

from dledgermq.broker.state import (
    BrokerState,
    offset_commit_draft,
    topic_delete_draft,
    topic_put_draft,
)
from dledgermq.broker.topics import TopicConfig


def apply(state: BrokerState, draft) -> str | None:
    return state.apply(draft.topic, draft.body)


def test_topic_put_delete_and_offsets() -> None:
    state = BrokerState()
    config = TopicConfig("T", 4, 4)
    assert apply(state, topic_put_draft(config, 1)) == "T"
    assert state.topics == {"T": config}
    assert apply(state, offset_commit_draft("g", "T", {0: 5, 3: 7}, 2)) is None
    assert state.offsets == {"g": {"T": {0: 5, 3: 7}}}
    apply(state, offset_commit_draft("g", "T", {0: 9}, 3))
    assert state.offsets["g"]["T"] == {0: 9, 3: 7}
    apply(state, topic_delete_draft("T", 4))
    assert state.topics == {}
    assert state.offsets == {"g": {}}


def test_snapshot_round_trip() -> None:
    state = BrokerState()
    apply(state, topic_put_draft(TopicConfig("A", 2, 3, 4), 1))
    apply(state, offset_commit_draft("g", "A", {1: 11}, 2))
    restored = BrokerState.restore(state.snapshot())
    assert restored.topics == state.topics
    assert restored.offsets == state.offsets
