"""Leader election: timeouts, pre-vote, the vote rules, stepping down (Raft §5.2, §5.4.1,
thesis §9.6), after etcd's raft_paper_test.go.

Method: build one core with a seeded Random, feed it ticks and messages by hand, and
assert on the `Ready` it drains: which messages go now, which wait for persistence, and
what hard state must be written first.
"""

from __future__ import annotations

import random

import pytest

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import AppendEntries, RequestVote, RequestVoteResponse
from dledgermq.raft.types import HardState, Role

from .helpers import log_of, make_core, make_leader, tick_until


def test_follower_times_out_between_t_and_2t_into_pre_vote() -> None:
    for seed in range(20):
        core = make_core(seed=seed)
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        assert 10 <= ticks < 20
        assert core.role is Role.PRE_CANDIDATE
        assert core.term == 0, "a pre-vote does not bump the term"


def test_election_timeout_is_drawn_from_the_injected_rng() -> None:
    def timeout(seed: int) -> int:
        core = make_core(seed=seed)
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        return ticks

    assert [timeout(7) for _ in range(3)] == [timeout(7)] * 3
    assert len({timeout(seed) for seed in range(30)}) > 1


def test_pre_candidate_asks_for_pre_votes_now_without_hard_state() -> None:
    core = make_core(terms=(1, 1), term=1)
    ready = tick_until(core, Role.PRE_CANDIDATE)
    assert ready.hard_state is None
    assert ready.messages_after_persist == []
    assert sorted(m.dst for m in ready.messages) == [2, 3]
    for message in ready.messages:
        assert message == RequestVote(1, message.dst, 2, 2, 1, pre_vote=True)


def test_pre_vote_majority_makes_a_candidate_that_persists_its_vote_first() -> None:
    core = make_core(term=3)
    tick_until(core, Role.PRE_CANDIDATE)
    core.step(RequestVoteResponse(2, 1, 4, True, pre_vote=True))
    assert core.role is Role.CANDIDATE
    ready = core.ready()
    assert ready.hard_state == HardState(4, 1)
    assert ready.messages == []
    assert sorted(m.dst for m in ready.messages_after_persist) == [2, 3]
    assert all(not m.pre_vote for m in ready.messages_after_persist)


def test_candidate_with_majority_becomes_leader_and_appends_a_noop() -> None:
    core = make_core(terms=(1,), term=1)
    ready = make_leader(core)
    assert core.role is Role.LEADER
    assert core.leader_id == 1
    assert core.term == 2
    assert core.last_index == 2
    assert core.log.entry(2).is_noop
    assert [e.index for e in ready.entries_to_persist] == [2]


def test_candidate_that_loses_the_vote_becomes_follower() -> None:
    core = make_core(pre_vote=False)
    tick_until(core, Role.CANDIDATE)
    core.step(RequestVoteResponse(2, 1, 1, False))
    assert core.role is Role.CANDIDATE
    core.step(RequestVoteResponse(3, 1, 1, False))
    assert core.role is Role.FOLLOWER
    assert core.term == 1


def test_pre_candidate_rejected_by_a_higher_term_follows_it() -> None:
    core = make_core(term=2)
    tick_until(core, Role.PRE_CANDIDATE)
    core.step(RequestVoteResponse(2, 1, 5, False, pre_vote=True))
    assert core.role is Role.FOLLOWER
    assert core.term == 5


def test_single_node_elects_itself() -> None:
    core = make_core(peers=(1,))
    tick_until(core, Role.LEADER)
    assert core.term == 1


@pytest.mark.parametrize(
    ("voter_terms", "last_log_term", "last_log_index", "granted"),
    [
        ((1, 2), 2, 2, True),  # same last term, same length
        ((1, 2), 2, 3, True),  # same last term, longer
        ((1, 2), 2, 1, False),  # same last term, shorter
        ((1, 2), 3, 1, True),  # higher last term wins over length
        ((1, 2), 1, 5, False),  # lower last term loses whatever the length
    ],
)
def test_vote_goes_only_to_an_up_to_date_log(
    voter_terms: tuple[int, ...], last_log_term: int, last_log_index: int, granted: bool
) -> None:
    voter = make_core(2, terms=voter_terms, term=2)
    voter.step(RequestVote(1, 2, 3, last_log_index, last_log_term))
    ready = voter.ready()
    assert ready.messages == []
    (response,) = ready.messages_after_persist
    assert response == RequestVoteResponse(2, 1, 3, granted)
    assert ready.hard_state == HardState(3, 1 if granted else None)


def test_one_vote_per_term_and_the_same_candidate_may_ask_again() -> None:
    voter = make_core(2)
    voter.step(RequestVote(1, 2, 1, 0, 0))
    voter.step(RequestVote(3, 2, 1, 0, 0))
    voter.step(RequestVote(1, 2, 1, 0, 0))
    grants = [m.vote_granted for m in voter.ready().messages_after_persist]
    assert grants == [True, False, True]
    assert voter.vote == 1


def test_vote_request_of_an_older_term_is_rejected_with_our_term() -> None:
    voter = make_core(2, term=5)
    voter.step(RequestVote(1, 2, 4, 10, 4))
    (response,) = voter.ready().messages_after_persist
    assert response == RequestVoteResponse(2, 1, 5, False)


def test_pre_vote_grant_changes_nothing_and_is_sent_now() -> None:
    voter = make_core(2, terms=(1,), term=1)
    voter.step(RequestVote(1, 2, 2, 1, 1, pre_vote=True))
    ready = voter.ready()
    assert voter.term == 1
    assert voter.vote is None
    assert ready.hard_state is None
    assert ready.messages == [RequestVoteResponse(2, 1, 2, True, pre_vote=True)]


def test_pre_vote_is_refused_while_the_leader_is_heard_from() -> None:
    voter = make_core(2, term=1)
    voter.step(AppendEntries(3, 2, 1, 3, 0, 0, (), 0))
    voter.ready()
    voter.step(RequestVote(1, 2, 2, 0, 0, pre_vote=True))
    assert voter.ready().messages == [], "ignored inside the lease"
    for _ in range(10):
        voter.tick()
    voter.step(RequestVote(1, 2, 2, 0, 0, pre_vote=True))
    assert [m.vote_granted for m in voter.ready().messages] == [True]


def test_check_quorum_voter_ignores_vote_requests_inside_the_lease() -> None:
    voter = make_core(2, term=1, pre_vote=False)
    voter.step(AppendEntries(3, 2, 1, 3, 0, 0, (), 0))
    voter.ready()
    voter.step(RequestVote(1, 2, 2, 0, 0))
    ready = voter.ready()
    assert voter.term == 1, "the disruptive term is not adopted"
    assert ready.messages_after_persist == []


def test_without_check_quorum_a_higher_term_vote_is_granted() -> None:
    voter = make_core(2, term=1, pre_vote=False, check_quorum=False)
    voter.step(AppendEntries(3, 2, 1, 3, 0, 0, (), 0))
    voter.ready()
    voter.step(RequestVote(1, 2, 2, 0, 0))
    assert voter.term == 2
    assert [m.vote_granted for m in voter.ready().messages_after_persist] == [True]


def test_higher_term_append_makes_a_leader_step_down() -> None:
    core = make_core()
    make_leader(core)
    core.step(AppendEntries(2, 1, core.term + 1, 2, 0, 0, (), 0))
    assert core.role is Role.FOLLOWER
    assert core.leader_id == 2
    ready = core.ready()
    assert ready.hard_state == HardState(core.term, None)


def test_restart_takes_the_term_of_the_log_if_the_hard_state_lagged() -> None:
    config = RaftConfig(node_id=1, peers=(1, 2, 3))
    core = RaftCore(config, random.Random(0), hard_state=HardState(2, 3), log=RaftLog(log_of(1, 4)))
    assert core.term == 4
    assert core.vote is None
    assert core.ready().hard_state == HardState(4, None)


def test_terms_never_decrease_across_stale_messages() -> None:
    core = make_core(term=5)
    core.step(AppendEntries(2, 1, 3, 2, 0, 0, (), 0))
    core.step(RequestVoteResponse(2, 1, 4, True))
    assert core.term == 5
    assert core.role is Role.FOLLOWER
