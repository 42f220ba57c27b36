"""The broker state machine: applying internal records, snapshot and restore agree."""

from __future__ import annotations

import msgpack

from dledgermq.broker.state import (
    BrokerState,
    broker_perm_draft,
    offset_commit_draft,
    topic_create_draft,
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


def test_broker_perm_travels_as_a_record_and_survives_a_snapshot() -> None:
    """The write-disable switch is state of the log (DESIGN.md §5 rule 5), so a replica that
    replays the log or restores a checkpoint knows it."""
    state = BrokerState()
    assert (state.perm, state.writable) == (6, True)
    assert apply(state, broker_perm_draft(4, 1)) is None
    assert (state.perm, state.writable) == (4, False)
    assert BrokerState.restore(state.snapshot()).perm == 4
    apply(state, broker_perm_draft(6, 2))
    assert state.writable


def test_a_snapshot_without_perm_restores_writable() -> None:
    """Checkpoints written before the switch existed have no `perm`."""
    old = msgpack.unpackb(BrokerState().snapshot())
    del old["perm"]
    assert BrokerState.restore(msgpack.packb(old)).perm == 6


def test_an_auto_create_never_replaces_an_existing_topic() -> None:
    """Two sends (or a send and `topic create`) racing to create a topic: the first
    config applied wins, whatever order the entries commit in."""
    state = BrokerState()
    admin = TopicConfig("T", 8, 8)
    assert apply(state, topic_put_draft(admin, 1)) == "T"
    assert apply(state, topic_create_draft(TopicConfig("T", 4, 4), 2)) == "T"
    assert state.topics["T"] == admin
    apply(state, topic_create_draft(TopicConfig("U", 4, 4), 3))
    assert state.topics["U"] == TopicConfig("U", 4, 4)
