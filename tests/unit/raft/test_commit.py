"""Commitment: majority of persisted copies, current-term entries only (Raft §5.4.2, the
Figure 8 rule), indirect commit of earlier entries, and `on_persisted` semantics.

Method: a leader core is elected by hand; follower acknowledgements and the leader's own
persistence are fed in separately, so each test shows exactly which of them moves
`commit_index`.
"""

from __future__ import annotations

from dledgermq.raft.types import NOOP, ProposalRejected, RejectReason

from .helpers import ack, make_core, make_leader, persist_all


def test_leader_counts_itself_only_once_its_own_copy_is_persisted() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    assert leader.commit_index == 0, "one durable copy (the follower's) is no majority"
    leader.on_persisted(2, 2)
    assert leader.commit_index == 2


def test_two_followers_commit_without_the_leader_copy() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    ack(leader, 3, 2, prev=1)
    assert leader.commit_index == 2


def test_previous_term_entry_is_not_committed_by_counting_replicas() -> None:
    """Figure 8 (c): a leader of term 4 holding an entry of term 2 on a majority must not
    commit it until an entry of term 4 above it is on a majority."""
    leader = make_core(1, peers=(1, 2, 3, 4, 5), terms=(1, 2), term=3)
    make_leader(leader)  # term 4, noop at 3
    persist_all(leader)
    ack(leader, 2, 2, prev=1)
    ack(leader, 3, 2, prev=1)
    assert leader.commit_index == 0
    ack(leader, 2, 3, prev=2)
    assert leader.commit_index == 0
    ack(leader, 3, 3, prev=2)
    assert leader.commit_index == 3, "the term-4 noop commits index 2 indirectly"


def test_single_node_commits_after_persist() -> None:
    leader = make_core(peers=(1,))
    make_leader(leader)
    index = leader.propose(b"x")
    assert index == 2
    assert leader.commit_index == 0
    leader.on_persisted(1, 1)
    assert leader.commit_index == 1
    persist_all(leader)
    assert leader.commit_index == 2
    assert leader.log.entry(1).payload is NOOP


def test_on_persisted_for_a_truncated_entry_is_ignored() -> None:
    follower = make_core(2, terms=(1, 1, 2), term=2)
    follower.on_persisted(1, 3)  # term mismatch: not our entry at 3
    assert follower.persisted_index == 3, "the initial log counts as durable"
    follower.on_persisted(9, 9)
    assert follower.persisted_index == 3


def test_proposals_are_refused_beyond_the_pending_limit() -> None:
    leader = make_core(pending_proposals_max=3)
    make_leader(leader)  # the noop at 1 is one uncommitted entry
    assert leader.propose(b"a") == 2
    assert leader.propose(b"b") == 3
    assert leader.propose(b"c") == ProposalRejected(RejectReason.BUSY, 1)


def test_follower_refuses_proposals_naming_the_leader() -> None:
    follower = make_core(2)
    assert follower.propose(b"x") == ProposalRejected(RejectReason.NOT_LEADER, None)
