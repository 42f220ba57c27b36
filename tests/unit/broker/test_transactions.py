"""The transaction rules (`broker/transactions.py`) and the check-back channels
(`broker/check_channels.py`).

Goal: whatever sequence of half messages, commits (copies), rollbacks, expiries and
checks a log holds, in any interleaving and with duplicates or ends naming the wrong
transaction, the table agrees with a simple model: the first end that names a pending
half message by offset *and* id decides it, later ends are void (a void commit copy must
not be delivered), check counts only grow for pending transactions, and a snapshot
restores the same table. Check-backs come due after the immunity, then every interval,
and turn into rollbacks after `max_checks`. Channels hand a check to one live producer,
in turn, within their bounds.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.check_channels import ChannelOptions, CheckChannels
from dledgermq.broker.delay import draft_of
from dledgermq.broker.reserved import PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC
from dledgermq.broker.state import BrokerState
from dledgermq.broker.transactions import (
    ENDED_KEPT,
    FLAG_TRANSACTION_END,
    HALF_TOPIC,
    PROPERTY_HALF_OFFSET,
    PROPERTY_TRANSACTION_ID,
    CheckPolicy,
    TransactionTable,
    check_draft,
    commit_draft,
    due_round,
    end_draft,
    half_draft,
    real_view,
)
from dledgermq.errors import Busy
from dledgermq.store.record import MessageDraft, Record

pytestmark = pytest.mark.timeout(60)
NOW = 1_700_000_000_000


def stored(draft: MessageDraft, offset: int) -> Record:
    """The record a draft becomes at `offset` (what dispatch and commits read)."""
    return Record(
        1, 1, offset, 100, 0, draft.flags, draft.born_timestamp_ms, NOW, draft.queue_id,
        draft.born_host, draft.reconsume_times, draft.prepared_transaction_offset,
        draft.topic, draft.properties, draft.body,
    )  # fmt: skip


def test_a_half_message_keeps_its_real_address_and_its_commit_copy_ends_it() -> None:
    message = MessageDraft("Orders", 3, b"x", {"UNIQ_KEY": "u1", "TAGS": "a"}, NOW)
    half = stored(half_draft(message, "pg", "t1", 10), 500)
    assert (half.topic, half.queue_id) == (HALF_TOPIC, 0)
    assert (half.properties[PROPERTY_REAL_TOPIC], half.properties[PROPERTY_REAL_QID]) == (
        "Orders",
        "3",
    )
    view = real_view(half)
    assert (view.topic, view.queue_id, view.properties["TAGS"]) == ("Orders", 3, "a")
    assert PROPERTY_REAL_TOPIC not in view.properties
    copy = commit_draft(half, write_queues=2)  # the topic shrank meanwhile: queue folded
    assert (copy.topic, copy.queue_id, copy.flags) == ("Orders", 1, FLAG_TRANSACTION_END)
    assert copy.properties[PROPERTY_HALF_OFFSET] == "500"
    assert copy.properties["UNIQ_KEY"] == "u1"
    assert copy.prepared_transaction_offset == 500
    # A copy of the committed message (a retry, a dead letter) is not an end again.
    assert draft_of(stored(copy, 900)).flags == 0

    table = TransactionTable()
    table.add_half(500, 100, half.properties, NOW)
    assert table.pending[500].immunity_ms == 10_000
    assert table.apply_commit_copy(900, 120, copy.properties, NOW + 1)
    assert not table.apply_commit_copy(1_100, 120, copy.properties, NOW + 2), "delivered twice"
    ended = table.ended[500]
    assert (ended.outcome, ended.copy_offset, ended.copy_size) == ("commit", 900, 120)


# -- the table against a model ------------------------------------------------------------

OFFSETS = st.integers(0, 5).map(lambda i: i * 100)
IDS = st.sampled_from(["t0", "t1", "t2"])
OPS = st.one_of(
    st.tuples(st.just("half"), OFFSETS, IDS),
    st.tuples(st.just("commit"), OFFSETS, IDS),
    st.tuples(st.just("rollback"), OFFSETS, IDS),
    st.tuples(st.just("expire"), OFFSETS, IDS),
    st.tuples(st.just("check"), OFFSETS, IDS),
)


def apply_to(state: BrokerState, op: tuple[str, int, str], at_ms: int) -> bool | None:
    """Apply one op as dispatch would; a commit answers whether its copy is delivered."""
    kind, offset, transaction_id = op
    table = state.transactions
    if kind == "half":
        if offset in table.pending or offset in table.ended:
            return None  # A log never holds two records at one offset.
        half = half_draft(MessageDraft("T", 0, b"x", {}), "pg", transaction_id, None)
        table.add_half(offset, 100, half.properties, at_ms)
    elif kind == "commit":
        properties = {PROPERTY_HALF_OFFSET: str(offset), PROPERTY_TRANSACTION_ID: transaction_id}
        return table.apply_commit_copy(10_000 + at_ms, 50, properties, at_ms)
    else:
        draft = (
            check_draft([offset], at_ms)
            if kind == "check"
            else end_draft(
                [
                    (
                        offset,
                        transaction_id,
                        "rollback",
                        "producer" if kind == "rollback" else "max_checks",
                    )
                ],
                at_ms,
            )
        )
        state.apply(draft.topic, draft.body)
    return None


@settings(max_examples=300)
@given(st.lists(OPS, max_size=40))
def test_the_first_end_naming_offset_and_id_decides_and_a_snapshot_restores_it(
    ops: list[tuple[str, int, str]],
) -> None:
    state = BrokerState()
    model_pending: dict[int, str] = {}  # offset -> transaction id
    model_ended: dict[int, str] = {}  # offset -> outcome
    checks: dict[int, int] = {}
    delivered: list[int] = []
    for at_ms, op in enumerate(ops, start=NOW):
        kind, offset, transaction_id = op
        fresh = kind == "half" and offset not in model_pending and offset not in model_ended
        names_pending = model_pending.get(offset) == transaction_id
        result = apply_to(state, op, at_ms)
        if fresh:
            model_pending[offset], checks[offset] = transaction_id, 0
        elif kind == "check" and offset in model_pending:
            checks[offset] += 1
        elif kind in ("commit", "rollback", "expire") and names_pending:
            del model_pending[offset]
            model_ended[offset] = "commit" if kind == "commit" else "rollback"
        if kind == "commit":
            assert result is names_pending, "a commit copy was delivered without deciding"
            if result:
                delivered.append(offset)
    table = state.transactions
    assert {o: t.transaction_id for o, t in table.pending.items()} == model_pending
    assert {o: t.outcome for o, t in table.ended.items()} == model_ended
    assert {o: t.checks for o, t in table.pending.items()} == {o: checks[o] for o in model_pending}
    assert len(delivered) == len(set(delivered)), "a transaction was committed twice"
    restored = BrokerState.restore(state.snapshot()).transactions
    assert restored == table


def test_remembered_outcomes_are_bounded_newest_kept() -> None:
    table = TransactionTable()
    half = half_draft(MessageDraft("T", 0, b"x", {}), "pg", "t", None)
    for offset in range(ENDED_KEPT + 10):
        table.add_half(offset, 1, half.properties, NOW)
        assert table.end(offset, "t", "rollback", "producer", NOW)
    assert len(table.ended) == ENDED_KEPT
    assert min(table.ended) == 10
    assert table.lookup(5, "t") is None
    assert table.lookup(ENDED_KEPT + 9, "t") is not None
    assert table.lookup(ENDED_KEPT + 9, "other") is None


# -- check-backs ---------------------------------------------------------------------------


def test_checks_come_after_the_immunity_then_every_interval_then_roll_back() -> None:
    policy = CheckPolicy(immunity_ms=6_000, interval_ms=1_000, max_checks=2)
    table = TransactionTable()
    plain = half_draft(MessageDraft("T", 0, b"x", {}), "pg", "a", None).properties
    quick = half_draft(MessageDraft("T", 0, b"x", {}), "pg", "b", 1).properties
    table.add_half(100, 1, plain, NOW)
    table.add_half(200, 1, quick, NOW)

    def due(at_ms: int, limit: int = 10) -> tuple[list[int], list[int]]:
        found = due_round(table, policy, at_ms, limit)
        return [t.offset for t in found.check], [t.offset for t in found.expire]

    assert due(NOW + 999) == ([], [])
    assert due(NOW + 1_000) == ([200], []), "the per-message immunity applies"
    assert due(NOW + 6_000) == ([100, 200], [])
    assert due(NOW + 6_000, limit=1) == ([100], [])
    table.apply({"op": "check", "offsets": [100, 200], "at_ms": NOW + 6_000})
    assert due(NOW + 6_999) == ([], [])
    table.apply({"op": "check", "offsets": [100, 200], "at_ms": NOW + 7_000})
    assert due(NOW + 7_999) == ([], [])
    assert due(NOW + 8_000) == ([], [100, 200]), "max checks reached: rolled back"


# -- channels ------------------------------------------------------------------------------


def channels(**options: Any) -> CheckChannels[str, str]:
    return CheckChannels(ChannelOptions(**{"ttl_ms": 1_000, **options}))


def test_a_check_goes_to_one_live_producer_in_turn_and_to_its_held_poll() -> None:
    ch = channels()
    assert ch.offer("g", 1, "c1", 0) == (None, []), "no producer"
    assert ch.poll("g", "p1", "w1", 5_000, 0) == []
    assert ch.poll("g", "p2", "w2", 5_000, 0) == []
    assert ch.offer("g", 1, "c1", 10) == ("p1", [("w1", ["c1"])])
    assert ch.offer("g", 2, "c2", 10) == ("p2", [("w2", ["c2"])])
    assert ch.offer("g", 3, "c3", 10) == ("p1", []), "queued until p1 polls again"
    assert ch.offer("g", 3, "c3", 10)[0] == "p2"
    assert ch.poll("g", "p1", "w3", 5_000, 20) == [("w3", ["c3"])]
    # A second poll of the same client replaces the first (answered empty).
    assert ch.poll("g", "p1", "w4", 5_000, 20) == []
    assert ch.poll("g", "p1", "w5", 5_000, 20) == [("w4", [])]
    assert ch.live("g", 20) == ["p1", "p2"]


def test_polls_expire_and_silent_producers_are_forgotten_with_their_checks() -> None:
    ch = channels()
    ch.poll("g", "p1", "w1", 500, 0)
    assert ch.expire(499) == []
    assert ch.expire(500) == [("w1", [])]
    assert ch.live("g", 1_500) == ["p1"], "live for ttl after its last poll"
    ch.offer("g", 1, "c1", 1_500)
    assert ch.expire(2_501) == []
    assert ch.live("g", 2_501) == []
    assert ch.offer("g", 2, "c2", 2_501) == (None, [])


def test_channels_are_bounded() -> None:
    ch = channels(producers_max=2, queue_max=2, answer_max=1)
    ch.poll("g", "p1", "w1", 10, 0)
    ch.poll("h", "p2", "w2", 10, 0)
    with pytest.raises(Busy):
        ch.poll("g", "p3", "w3", 10, 0)
    ch.expire(10)
    assert ch.offer("g", 1, "c1", 10)[0] == "p1"
    assert ch.offer("g", 1, "c1", 10)[0] == "p1", "the same check is queued once"
    assert ch.offer("g", 2, "c2", 10)[0] == "p1"
    assert ch.offer("g", 3, "c3", 10) == (None, []), "queue full"
    assert ch.poll("g", "p1", "w4", 20, 10) == [("w4", ["c1"])], "one per answer"
    ch.poll("h", "p2", "w5", 50, 10)
    assert ch.drop_all() == ["w5"], "held polls are answered when the node stops writing"
    assert ch.live("g", 10) == []
