"""Queue allocation for a consumer group (`broker/rebalance.py`).

Goal: every strategy gives each queue to exactly one consumer, lists every consumer, and
depends only on the sets of consumers and queues (never their order, never the process);
`average` and `average_by_circle` are balanced to within one queue; `consistent_hash` moves
only the joining or leaving consumer's queues; `zone_aware` keeps a zone's queues in that
zone whenever the zone has consumers. Method: hand-checked examples for each strategy's
exact layout, and Hypothesis over random groups, queue sets and input orders.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.rebalance import (
    AVERAGE,
    AVERAGE_BY_CIRCLE,
    CONSISTENT_HASH,
    INNER_STRATEGIES,
    STRATEGIES,
    ZONE_AWARE,
    Allocation,
    Consumer,
    MessageQueue,
    allocate,
)
from dledgermq.errors import BadRequest

ZONES = [None, "z1", "z2", "z3"]


def q(broker: str, queue_id: int, zone: str | None = None) -> MessageQueue:
    return MessageQueue("T", broker, queue_id, zone)


def ids(queues: tuple[MessageQueue, ...]) -> list[str]:
    return [f"{m.broker_name}{m.queue_id}" for m in queues]


def owner_of(allocation: Allocation) -> dict[MessageQueue, str]:
    owner: dict[MessageQueue, str] = {}
    for client, queues in allocation.items():
        for queue in queues:
            assert queue not in owner, f"{queue} owned by {owner[queue]} and {client}"
            owner[queue] = client
    return owner


consumers_st = st.lists(
    st.builds(Consumer, st.sampled_from([f"c{i}" for i in range(12)]), st.sampled_from(ZONES)),
    max_size=10,
    unique_by=lambda c: c.client_id,
)
queues_st = st.lists(
    st.builds(q, st.sampled_from(["a", "b", "c"]), st.integers(0, 15), st.sampled_from(ZONES)),
    max_size=40,
    unique_by=lambda m: (m.broker_name, m.queue_id),
)
strategy_st = st.sampled_from(STRATEGIES)
inner_st = st.sampled_from(INNER_STRATEGIES)


# -- exact layouts --------------------------------------------------------------------------


def test_average_gives_contiguous_blocks_and_the_first_consumers_the_extra_queues() -> None:
    consumers = [Consumer("c2"), Consumer("c0"), Consumer("c1")]
    queues = [
        q("b", 1),
        q("a", 0),
        q("a", 2),
        q("b", 0),
        q("a", 1),
        q("b", 2),
        q("c", 0),
        q("c", 1),
    ]
    got = allocate(consumers, queues, AVERAGE)
    assert list(got) == ["c0", "c1", "c2"]
    assert {c: ids(qs) for c, qs in got.items()} == {
        "c0": ["a0", "a1", "a2"],
        "c1": ["b0", "b1", "b2"],
        "c2": ["c0", "c1"],
    }


def test_average_is_the_default_strategy() -> None:
    consumers = [Consumer("x"), Consumer("y")]
    queues = [q("a", i) for i in range(5)]
    assert allocate(consumers, queues) == allocate(consumers, queues, AVERAGE)


def test_average_by_circle_deals_queues_round_robin() -> None:
    consumers = [Consumer("c1"), Consumer("c0"), Consumer("c2")]
    queues = [q("a", i) for i in range(4)] + [q("b", i) for i in range(3)]
    got = allocate(consumers, queues, AVERAGE_BY_CIRCLE)
    assert {c: ids(qs) for c, qs in got.items()} == {
        "c0": ["a0", "a3", "b2"],
        "c1": ["a1", "b0"],
        "c2": ["a2", "b1"],
    }


@pytest.mark.parametrize("strategy", [AVERAGE, AVERAGE_BY_CIRCLE])
def test_consumers_beyond_the_queue_count_get_nothing(strategy: str) -> None:
    consumers = [Consumer(f"c{i}") for i in range(5)]
    got = allocate(consumers, [q("a", 0), q("a", 1)], strategy)
    assert {c: ids(qs) for c, qs in got.items()} == {
        "c0": ["a0"],
        "c1": ["a1"],
        "c2": [],
        "c3": [],
        "c4": [],
    }


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_queues_lists_every_consumer_empty_and_no_consumers_gives_nothing(
    strategy: str,
) -> None:
    assert allocate([Consumer("b"), Consumer("a")], [], strategy) == {"a": (), "b": ()}
    assert allocate([], [q("a", 0)], strategy) == {}


def test_consistent_hash_is_the_same_in_every_process() -> None:
    """A golden layout: Python's `hash()` differs per process; the ring's MD5 must not.

    If this changes, every group reshuffles its queues on upgrade: change it on purpose only.
    """
    consumers = [Consumer(f"c{i}") for i in range(3)]
    queues = [q("a", i) for i in range(6)]
    got = allocate(consumers, queues, CONSISTENT_HASH)
    assert {c: ids(qs) for c, qs in got.items()} == {
        "c0": ["a0", "a4"],
        "c1": ["a1", "a5"],
        "c2": ["a2", "a3"],
    }


def test_consistent_hash_moves_a_small_share_when_one_consumer_joins() -> None:
    queues = [q(b, i) for b in "abcd" for i in range(128)]
    before = allocate([Consumer(f"c{i}") for i in range(8)], queues, CONSISTENT_HASH)
    after = allocate([Consumer(f"c{i}") for i in range(9)], queues, CONSISTENT_HASH)
    moved = [m for m, c in owner_of(after).items() if owner_of(before)[m] != c]
    assert all(owner_of(after)[m] == "c8" for m in moved)
    # The fair share is 1/9 (57 queues); ten virtual nodes keep it well under a quarter.
    assert 0 < len(moved) < len(queues) // 4


def test_more_virtual_nodes_is_a_different_ring() -> None:
    consumers = [Consumer(f"c{i}") for i in range(4)]
    queues = [q("a", i) for i in range(64)]
    one = allocate(consumers, queues, CONSISTENT_HASH, virtual_nodes=1)
    many = allocate(consumers, queues, CONSISTENT_HASH, virtual_nodes=200)
    assert one != many
    assert max(len(v) for v in many.values()) < 32  # many points spread the load


def test_zone_aware_keeps_zones_local_and_shares_the_rest() -> None:
    consumers = [Consumer("a1", "z1"), Consumer("a2", "z1"), Consumer("b1", "z2"), Consumer("n")]
    queues = [
        q("a", 0, "z1"),
        q("a", 1, "z1"),
        q("a", 2, "z1"),
        q("b", 0, "z2"),
        q("c", 0, "z3"),  # no consumer in z3: shared
        q("d", 0),  # no zone: shared
        q("d", 1),
        q("d", 2),
    ]
    got = allocate(consumers, queues, ZONE_AWARE)
    assert {c: ids(qs) for c, qs in got.items()} == {
        "a1": ["a0", "a1", "c0"],
        "a2": ["a2", "d0"],
        "b1": ["b0", "d1"],
        "n": ["d2"],
    }


def test_zone_aware_runs_the_inner_strategy_per_zone() -> None:
    consumers = [Consumer("a1", "z1"), Consumer("a2", "z1")]
    queues = [q("a", i, "z1") for i in range(4)]
    got = allocate(consumers, queues, ZONE_AWARE, inner=AVERAGE_BY_CIRCLE)
    assert {c: ids(qs) for c, qs in got.items()} == {"a1": ["a0", "a2"], "a2": ["a1", "a3"]}


# -- errors ---------------------------------------------------------------------------------


def test_unknown_strategy_is_a_bad_request_listing_the_valid_names() -> None:
    with pytest.raises(BadRequest) as raised:
        allocate([Consumer("c")], [q("a", 0)], "round_robin")
    message = raised.value.message
    assert "round_robin" in message
    assert all(name in message for name in STRATEGIES)
    assert raised.value.details["valid"] == list(STRATEGIES)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"strategy": ZONE_AWARE, "inner": ZONE_AWARE}, "inner"),
        ({"strategy": ZONE_AWARE, "inner": "nope"}, "inner"),
        ({"strategy": CONSISTENT_HASH, "virtual_nodes": 0}, "virtual_nodes"),
        ({"strategy": CONSISTENT_HASH, "virtual_nodes": 1001}, "virtual_nodes"),
        ({"strategy": AVERAGE, "virtual_nodes": True}, "virtual_nodes"),
    ],
)
def test_bad_options_are_bad_requests(kwargs: dict, text: str) -> None:
    with pytest.raises(BadRequest, match=text):
        allocate([Consumer("c")], [q("a", 0)], **kwargs)


def test_bad_options_are_refused_even_without_consumers() -> None:
    with pytest.raises(BadRequest):
        allocate([], [], "nope")


@pytest.mark.parametrize(
    ("consumers", "queues", "text"),
    [
        ([Consumer("c"), Consumer("c", "z1")], [q("a", 0)], "listed twice"),
        ([Consumer("c")], [q("a", 0), q("a", 0, "z1")], "listed twice"),
        ([Consumer("c")], [q("a", 0), MessageQueue("U", "a", 0)], "one topic"),
    ],
)
def test_duplicates_and_mixed_topics_are_refused(consumers: list, queues: list, text: str) -> None:
    with pytest.raises(BadRequest, match=text):
        allocate(consumers, queues)


# -- properties -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(consumers=consumers_st, queues=queues_st, strategy=strategy_st, inner=inner_st)
def test_every_queue_has_exactly_one_owner_and_every_consumer_is_listed(
    consumers: list[Consumer], queues: list[MessageQueue], strategy: str, inner: str
) -> None:
    got = allocate(consumers, queues, strategy, inner=inner)
    assert list(got) == sorted(c.client_id for c in consumers)
    if consumers:
        assert sorted(owner_of(got)) == sorted(queues)
    for owned in got.values():
        assert list(owned) == sorted(owned)


@settings(max_examples=200, deadline=None)
@given(
    consumers=consumers_st.filter(bool),
    queues=queues_st,
    strategy=st.sampled_from([AVERAGE, AVERAGE_BY_CIRCLE]),
)
def test_average_strategies_balance_to_within_one_queue(
    consumers: list[Consumer], queues: list[MessageQueue], strategy: str
) -> None:
    sizes = [len(owned) for owned in allocate(consumers, queues, strategy).values()]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra queues go to the first consumers


@settings(max_examples=200, deadline=None)
@given(
    consumers=consumers_st,
    queues=queues_st,
    strategy=strategy_st,
    inner=inner_st,
    rng=st.randoms(use_true_random=False),
)
def test_input_order_does_not_matter(
    consumers: list[Consumer],
    queues: list[MessageQueue],
    strategy: str,
    inner: str,
    rng: random.Random,
) -> None:
    expected = allocate(consumers, queues, strategy, inner=inner)
    shuffled_consumers = rng.sample(consumers, len(consumers))
    shuffled_queues = rng.sample(queues, len(queues))
    got = allocate(iter(shuffled_consumers), iter(shuffled_queues), strategy, inner=inner)
    assert got == expected
    assert list(got) == list(expected)


@settings(max_examples=200, deadline=None)
@given(consumers=consumers_st.filter(bool), queues=queues_st, data=st.data())
def test_consistent_hash_only_the_joining_consumer_takes_queues(
    consumers: list[Consumer], queues: list[MessageQueue], data: st.DataObject
) -> None:
    joiner = data.draw(st.sampled_from([f"new{i}" for i in range(3)]))
    before = owner_of(allocate(consumers, queues, CONSISTENT_HASH))
    after = owner_of(allocate([*consumers, Consumer(joiner)], queues, CONSISTENT_HASH))
    for queue, owner in after.items():
        assert owner in (before[queue], joiner)


@settings(max_examples=200, deadline=None)
@given(consumers=consumers_st.filter(lambda cs: len(cs) >= 2), queues=queues_st, data=st.data())
def test_consistent_hash_only_the_leaving_consumers_queues_move(
    consumers: list[Consumer], queues: list[MessageQueue], data: st.DataObject
) -> None:
    leaver = data.draw(st.sampled_from(consumers))
    before = owner_of(allocate(consumers, queues, CONSISTENT_HASH))
    after = owner_of(allocate([c for c in consumers if c != leaver], queues, CONSISTENT_HASH))
    for queue, owner in before.items():
        if owner != leaver.client_id:
            assert after[queue] == owner


@settings(max_examples=200, deadline=None)
@given(consumers=consumers_st, queues=queues_st, inner=inner_st)
def test_zone_aware_keeps_queues_in_zones_that_have_consumers(
    consumers: list[Consumer], queues: list[MessageQueue], inner: str
) -> None:
    zone_of = {c.client_id: c.zone for c in consumers}
    served = {c.zone for c in consumers if c.zone is not None}
    for queue, owner in owner_of(allocate(consumers, queues, ZONE_AWARE, inner=inner)).items():
        if queue.zone in served:
            assert zone_of[owner] == queue.zone, (queue, owner)


@settings(max_examples=100, deadline=None)
@given(consumers=consumers_st, queues=queues_st)
def test_zone_aware_without_zones_is_the_inner_strategy(
    consumers: list[Consumer], queues: list[MessageQueue]
) -> None:
    plain = [Consumer(c.client_id) for c in consumers]
    unzoned = [MessageQueue(m.topic, m.broker_name, m.queue_id) for m in queues]
    assert allocate(plain, unzoned, ZONE_AWARE) == allocate(plain, unzoned, AVERAGE)
