"""RaftNodeActor: the driver contract of raft/ready.py on real pykka actors.

Goal: show that the actor persists before it promises (vote grants and append answers
leave only once durable), acknowledges a proposal only after a majority made it durable,
redirects proposals to the leader, fails pending proposals when leadership is lost,
transfers leadership, and answers refusals with the broker's errors (`broker_error`).

Method: three actors over `raft_fakes.FakeNetwork` (the test thread pumps messages and
waits on `Status` barriers, so nothing sleeps) with a `FakeStorage` each whose durability
the test withholds and releases explicitly. Ticks are told by hand; RNGs are seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dledgermq.actors.raft_node import PersistRequest, TransferLeadership, broker_error
from dledgermq.actors.supervisor import tell
from dledgermq.errors import Busy, DiskFull, NotLeader
from dledgermq.raft import outcomes
from dledgermq.raft.messages import AppendEntriesResponse, Message, RequestVoteResponse
from dledgermq.raft.types import RejectReason, Role
from tests.actors.raft_fakes import Cluster
from tests.conftest import wait_until
from tests.support import ThreadReply


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(3)
    yield c
    c.stop()


def answered(reply: ThreadReply) -> bool:
    return reply.value is not None or reply.error is not None


def test_one_leader_and_ack_only_after_majority_persisted(cluster: Cluster) -> None:
    leader = cluster.elect()
    assert len(cluster.leaders()) == 1
    followers = [i for i in cluster.ids if i != leader]
    for i in cluster.ids:
        cluster.storage[i].hold = True

    reply = cluster.propose(leader, b"m1")
    cluster.tick(3)
    assert not answered(reply), "nothing is durable anywhere yet"

    cluster.storage[followers[0]].release()
    cluster.tick(3)
    assert not answered(reply), "one durable copy of three is not a majority"

    cluster.storage[followers[1]].release()
    cluster.tick(3)
    index = reply.wait()
    assert index == cluster.status(leader).last_index
    assert cluster.status(leader).commit_index >= index
    # The leader's own copy is still not durable: the majority was the two followers.
    assert cluster.status(leader).persisted_index < index
    for i in followers:
        assert cluster.storage[i].durable[index - 1].payload == b"m1"
    cluster.storage[leader].release()
    cluster.tick(3)
    wait_until(lambda: index in cluster.commits[leader], what="on_commit on the leader")


def _acks_from(cluster: Cluster, src: int, at_least: int) -> list[Message]:
    return cluster.net.sent(
        lambda m: (
            isinstance(m, AppendEntriesResponse)
            and m.src == src
            and m.success
            and m.match_index >= at_least
        )
    )


def test_append_ack_waits_for_durability(cluster: Cluster) -> None:
    leader = cluster.elect()
    follower = next(i for i in cluster.ids if i != leader)
    cluster.storage[follower].hold = True

    reply = cluster.propose(leader, b"m1")
    cluster.tick(5)
    index = reply.wait()  # The other follower and the leader are a majority.
    assert cluster.storage[follower].pending() > 0
    assert cluster.status(follower).last_index >= index
    assert _acks_from(cluster, follower, index) == []
    assert cluster.status(follower).held_batches > 0

    cluster.storage[follower].hold = False
    cluster.storage[follower].release()
    cluster.settle()
    assert _acks_from(cluster, follower, index)
    assert cluster.status(follower).held_batches == 0


def test_vote_grant_waits_for_durability(cluster: Cluster) -> None:
    def votes_for_other(node: int) -> Callable[[PersistRequest], bool]:
        return lambda r: r.hard_state is not None and r.hard_state.vote not in (None, node)

    for i in cluster.ids:
        cluster.storage[i].hold_from = votes_for_other(i)

    def grants(src: int) -> list[Message]:
        return cluster.net.sent(
            lambda m: (
                isinstance(m, RequestVoteResponse)
                and m.src == src
                and m.vote_granted
                and not m.pre_vote
            )
        )

    voter = None
    for _ in range(100):
        cluster.tick()
        held = [i for i in cluster.ids if cluster.storage[i].pending()]
        if held:
            voter = held[0]
            break
    assert voter is not None, "nobody voted"
    request: PersistRequest = cluster.storage[voter].requests[-1]
    assert request.hard_state is not None
    assert request.hard_state.vote != voter
    cluster.tick(2)
    assert grants(voter) == []
    assert cluster.leaders() == []

    cluster.storage[voter].hold_from = None
    cluster.storage[voter].hold = False
    cluster.storage[voter].release()
    cluster.settle()
    assert grants(voter)
    assert [s.node_id for s in cluster.leaders()] == [request.hard_state.vote]


def test_proposal_to_follower_names_the_leader(cluster: Cluster) -> None:
    leader = cluster.elect()
    follower = next(i for i in cluster.ids if i != leader)
    reply = cluster.propose(follower, b"m1")
    with pytest.raises(NotLeader) as raised:
        reply.wait()
    assert raised.value.details["leader"] == leader


def test_partitioned_leader_fails_pending_and_truncates(cluster: Cluster) -> None:
    old = cluster.elect()
    others = [i for i in cluster.ids if i != old]
    old_term = cluster.status(old).term
    cluster.net.partition([old], others)

    reply = cluster.propose(old, b"lost")
    cluster.settle()
    index = cluster.status(old).last_index
    assert not answered(reply)

    new = cluster.elect(among=others)
    assert cluster.status(new).term > old_term
    committed = cluster.propose(new, b"kept")
    cluster.tick(3, nodes=others)
    committed.wait()

    cluster.net.heal()
    cluster.tick(5)
    with pytest.raises(NotLeader):
        reply.wait()
    status = cluster.status(old)
    assert status.role is Role.FOLLOWER
    assert status.leader_id == new
    assert any(r.truncate_from == index for r in cluster.storage[old].requests)
    wait_until(
        lambda: cluster.storage[old].durable == cluster.storage[new].durable,
        what="the old leader's log to match the new leader's",
    )
    payloads = [e.payload for e in cluster.storage[old].durable]
    assert b"lost" not in payloads
    assert b"kept" in payloads


def test_leadership_transfer(cluster: Cluster) -> None:
    leader = cluster.elect()
    target = next(i for i in cluster.ids if i != leader)
    reply = ThreadReply()
    tell(cluster.net.nodes[leader], TransferLeadership(target, reply))
    assert reply.wait() is True
    for _ in range(50):
        if cluster.status(target).role is Role.LEADER:
            break
        cluster.tick()
    assert [s.node_id for s in cluster.leaders()] == [target]

    refused = ThreadReply()
    tell(cluster.net.nodes[leader], TransferLeadership(target, refused))
    with pytest.raises(NotLeader):
        refused.wait()


def test_uncommitted_proposals_are_capped() -> None:
    cluster = Cluster(3, pending_proposals_max=2)
    try:
        leader = cluster.elect()
        for i in cluster.ids:
            if i != leader:
                cluster.storage[i].hold = True
        first, second = cluster.propose(leader, b"1"), cluster.propose(leader, b"2")
        with pytest.raises(Busy):
            cluster.propose(leader, b"3").wait()
        for i in cluster.ids:
            cluster.storage[i].hold = False
            cluster.storage[i].release()
        cluster.tick(3)
        assert (first.wait(), second.wait()) == (2, 3)
    finally:
        cluster.stop()


def test_the_drivers_refusals_reach_proposers_as_the_broker_errors_they_always_were() -> None:
    not_leader = broker_error(outcomes.NotLeader("entry truncated", leader_id=2, term=7))
    assert isinstance(not_leader, NotLeader)
    assert not_leader.status == 421
    assert not_leader.to_wire() == {
        "code": "NOT_LEADER",
        "message": "entry truncated; leader is 2",
        "leader": 2,
        "term": 7,
        "reason": "not_leader",
    }
    capped = broker_error(outcomes.Busy("too many pending proposals", pending=5))
    assert isinstance(capped, Busy)
    assert capped.status == 503
    assert capped.to_wire() == {
        "code": "BUSY",
        "message": "too many pending proposals",
        "pending": 5,
    }
    moving = broker_error(
        outcomes.Busy("leadership transfer in progress", reason=RejectReason.TRANSFERRING)
    )
    assert isinstance(moving, Busy)
    assert moving.to_wire() == {
        "code": "BUSY",
        "message": "leadership transfer in progress",
        "reason": "transferring",
    }
    full = DiskFull("disk usage is above the high-water mark")
    assert broker_error(full) is full  # the storage's refusals are the broker's already
