"""Leadership transfer (thesis §3.10, DLedger's leadership transfer) and check quorum
(thesis §6.2): a leader hands over with TimeoutNow, refuses writes meanwhile, gives up after
an election timeout; a leader that stops hearing from a majority steps down.

Method: a leader core elected by hand, follower acks fed in, Readies inspected; the target
side is a separate core that receives the TimeoutNow.
"""

from __future__ import annotations

from dledgermq.raft.messages import AppendEntries, RequestVote, TimeoutNow
from dledgermq.raft.types import ProposalRejected, RejectReason, Role

from .helpers import ack, appends, make_core, make_leader


def test_transfer_to_an_up_to_date_follower_sends_timeout_now_at_once() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    leader.ready()
    assert leader.transfer_leadership(2)
    assert leader.ready().messages == [TimeoutNow(1, 2, 2)]


def test_transfer_catches_the_target_up_first() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 1, prev=1)
    assert appends(leader.ready(), 2), "the noop is on its way"
    assert leader.transfer_leadership(2)
    assert leader.ready().messages == [], "no TimeoutNow before the target has everything"
    ack(leader, 2, 2, prev=1)
    assert leader.ready().messages[0] == TimeoutNow(1, 2, 2)


def test_proposals_are_refused_while_transferring() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    leader.transfer_leadership(3)
    assert leader.propose(b"x") == ProposalRejected(RejectReason.TRANSFERRING, 1)


def test_transfer_is_aborted_after_an_election_timeout() -> None:
    leader = make_core(terms=(1,), term=1, check_quorum=False)
    make_leader(leader)
    leader.transfer_leadership(3)
    for _ in range(10):
        leader.tick()
    assert leader.transferee is None
    assert leader.role is Role.LEADER
    assert leader.propose(b"x") == 3


def test_transfer_to_self_or_a_stranger_does_nothing() -> None:
    leader = make_core()
    make_leader(leader)
    assert not leader.transfer_leadership(1)
    assert not leader.transfer_leadership(9)
    assert not make_core(2).transfer_leadership(1)


def test_target_campaigns_at_once_skipping_pre_vote() -> None:
    target = make_core(2, term=2)
    target.step(AppendEntries(1, 2, 2, 1, 0, 0, (), 0))
    target.ready()
    target.step(TimeoutNow(1, 2, 2))
    assert target.role is Role.CANDIDATE
    assert target.term == 3
    requests = target.ready().messages_after_persist
    assert all(isinstance(m, RequestVote) and m.transfer for m in requests)


def test_voters_grant_a_transfer_vote_inside_their_lease() -> None:
    voter = make_core(3, term=2)
    voter.step(AppendEntries(1, 3, 2, 1, 0, 0, (), 0))
    voter.ready()
    voter.step(RequestVote(2, 3, 3, 0, 0, transfer=True))
    assert [m.vote_granted for m in voter.ready().messages_after_persist] == [True]


def test_check_quorum_leader_steps_down_without_a_majority() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    for _ in range(10):
        leader.tick()
    assert leader.role is Role.FOLLOWER
    assert leader.leader_id is None
    assert leader.propose(b"x") == ProposalRejected(RejectReason.NOT_LEADER, None)


def test_check_quorum_leader_stays_while_a_majority_answers() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    for _ in range(5):
        for _ in range(10):
            leader.tick()
            ack(leader, 2, 0, prev=0)
    assert leader.role is Role.LEADER


def test_without_check_quorum_an_isolated_leader_stays() -> None:
    leader = make_core(terms=(1,), term=1, check_quorum=False)
    make_leader(leader)
    for _ in range(50):
        leader.tick()
    assert leader.role is Role.LEADER
