"""The RebalancerActor: heartbeats in, the queues a member may consume now out.

Goal: members of a group get disjoint queues covering the topic; a queue moves to a new
member only after its previous owner released it or its lease ran out (never two owners
at once); silent members are dropped; bad input is a clear error.
Method: the real actor on its thread, time as manual `Tick`s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dledgermq.actors.published import Published
from dledgermq.actors.rebalancer import (
    GroupView,
    Heartbeat,
    Leave,
    RebalanceOptions,
    RebalancerActor,
    Release,
)
from dledgermq.actors.ticker import Tick
from dledgermq.broker.topics import TopicConfig
from dledgermq.errors import BadRequest, Unavailable
from tests.support import ThreadReply

pytestmark = pytest.mark.timeout(30)
LEASE_MS, MEMBER_TIMEOUT_MS = 20_000, 15_000


@pytest.fixture
def rebalancer() -> Iterator[Any]:
    topics = Published({"T": TopicConfig("T", 4, 4)})
    actor = RebalancerActor.start(topics, RebalanceOptions("broker-a", MEMBER_TIMEOUT_MS, LEASE_MS))
    actor.ask(Tick(1_000))
    yield actor
    actor.stop()


def beat(actor: Any, client: str, now_ms: int | None = None, strategy: str = "average") -> Any:
    if now_ms is not None:
        actor.ask(Tick(now_ms))
    reply = ThreadReply()
    actor.tell(Heartbeat("G", client, None, {"T": "*"}, strategy, reply))
    return reply.wait()


def release(actor: Any, client: str, queues: tuple[int, ...]) -> int:
    reply = ThreadReply()
    actor.tell(Release("G", client, "T", queues, reply))
    return reply.wait()


def test_members_get_disjoint_queues_covering_the_topic(rebalancer) -> None:
    assert beat(rebalancer, "a")["assignment"] == {"T": [0, 1, 2, 3]}
    # b joins: average gives a [0, 1] and b [2, 3], but a still holds 2 and 3.
    assert beat(rebalancer, "b")["assignment"] == {"T": []}
    assert beat(rebalancer, "a")["assignment"] == {"T": [0, 1]}
    assert release(rebalancer, "a", (2, 3)) == 2
    answer = beat(rebalancer, "b")
    assert answer["assignment"] == {"T": [2, 3]}
    assert answer["members"] == ["a", "b"]
    reply = ThreadReply()
    rebalancer.tell(GroupView("G", reply))
    assert reply.wait()["owners"] == {"T": {"0": "a", "1": "a", "2": "b", "3": "b"}}


def test_a_silent_owner_blocks_its_queues_until_its_lease_runs_out(rebalancer) -> None:
    beat(rebalancer, "a", now_ms=1_000)  # a holds all four until 21 s
    assert beat(rebalancer, "b", now_ms=2_000)["assignment"] == {"T": []}
    # a goes silent: dropped as a member after 15 s, so b is allotted all four, but a may
    # still be pulling (it only missed heartbeats): nothing moves until its leases end.
    answer = beat(rebalancer, "b", now_ms=1_000 + MEMBER_TIMEOUT_MS + 1)
    assert (answer["members"], answer["assignment"]) == (["b"], {"T": []})
    assert beat(rebalancer, "b", now_ms=1_000 + LEASE_MS)["assignment"] == {"T": [0, 1, 2, 3]}


def test_a_member_that_leaves_frees_its_queues_at_once(rebalancer) -> None:
    beat(rebalancer, "a")
    beat(rebalancer, "b")
    reply = ThreadReply()
    rebalancer.tell(Leave("G", "a", reply))
    assert reply.wait() is True
    assert beat(rebalancer, "b")["assignment"] == {"T": [0, 1, 2, 3]}


def test_an_unknown_topic_gets_no_queues_and_a_bad_strategy_is_refused(rebalancer) -> None:
    reply = ThreadReply()
    rebalancer.tell(Heartbeat("G", "a", None, {"Nope": "*"}, "average", reply))
    assert reply.wait()["assignment"] == {"Nope": []}
    with pytest.raises(BadRequest, match="unknown strategy"):
        beat(rebalancer, "a", strategy="random")


def test_before_the_first_tick_heartbeats_are_asked_again() -> None:
    actor = RebalancerActor.start(Published({}), RebalanceOptions("broker-a"))
    try:
        with pytest.raises(Unavailable):
            beat(actor, "a")
    finally:
        actor.stop()
