"""Hand-written fault scenarios on the simulated cluster, each a story from the Raft paper
or from DLedger's operation: elect, partition and heal, kill and restart, truncate a deposed
leader's tail, Figure 8, leadership transfer, check quorum, pre-vote.

Method: a `SimCluster` with a quiet network (1-tick delay, no loss) unless the scenario
says otherwise; faults are applied at chosen moments and `run_until` waits for outcomes
with a tick bound. The safety checkers run on every Ready throughout, so every scenario
also asserts election safety, log matching, leader completeness and committed-prefix
agreement.
"""

from __future__ import annotations

from dledgermq.raft.messages import RequestVoteResponse
from dledgermq.raft.types import NodeId, ProposalRejected, RejectReason, Role

from .harness import DiskOptions, Proposal, RaftOptions, SimCluster

BOUND = 300  # ticks any single expected outcome may take


def stable(cluster: SimCluster) -> NodeId:
    assert cluster.run_until(lambda: cluster.stable_leader() is not None, BOUND), cluster.describe()
    leader = cluster.stable_leader()
    assert leader is not None
    return leader


def elect(cluster: SimCluster, node_id: NodeId) -> None:
    """Make `node_id` the stable leader (by leadership transfer if needed)."""
    leader = stable(cluster)
    if leader != node_id:
        assert cluster.transfer(node_id)
        assert cluster.run_until(lambda: cluster.stable_leader() == node_id, BOUND)


def propose(cluster: SimCluster, count: int) -> list[Proposal]:
    proposals = []
    for _ in range(count):
        result = cluster.propose()
        assert isinstance(result, Proposal), result
        proposals.append(result)
    return proposals


def all_acked(proposals: list[Proposal]) -> bool:
    return all(p.acked_tick is not None for p in proposals)


def durable(cluster: SimCluster, node_id: NodeId, index: int) -> bool:
    return len(cluster.nodes[node_id].disk.log) >= index


def converge(cluster: SimCluster) -> None:
    assert cluster.run_until(cluster.converged, BOUND), cluster.describe()
    cluster.checker.check_final([cluster.core(i) for i in cluster.alive()])


def test_elect_replicate_and_converge() -> None:
    cluster = SimCluster(3, seed=1)
    leader = stable(cluster)
    proposals = propose(cluster, 10)
    assert cluster.run_until(lambda: all_acked(proposals), BOUND)
    converge(cluster)
    assert cluster.core(leader).commit_index == 11  # noop + 10


def test_partitioned_leader_is_replaced_and_rejoins_as_follower() -> None:
    cluster = SimCluster(5, seed=2)
    old = stable(cluster)
    old_term = cluster.core(old).term
    cluster.isolate(old)
    assert cluster.run_until(
        lambda: any(cluster.core(i).term > old_term for i in cluster.leaders()), BOUND
    )
    new = cluster.leader()
    assert new is not None
    assert new != old
    assert cluster.run_until(lambda: cluster.core(old).role is Role.FOLLOWER, BOUND), (
        "check quorum makes the isolated leader step down"
    )
    proposals = propose(cluster, 5)
    assert cluster.run_until(lambda: all_acked(proposals), BOUND)
    cluster.heal()
    converge(cluster)
    assert cluster.core(old).leader_id == new


def test_kill_and_restart_leader_and_followers() -> None:
    # Without check quorum, so that the leader left alone keeps its proposals pending.
    raft = RaftOptions(check_quorum=False)
    cluster = SimCluster(3, seed=3, raft=raft, disk=DiskOptions(0, 2))
    first = stable(cluster)
    acked = propose(cluster, 5)
    assert cluster.run_until(lambda: all_acked(acked), BOUND)
    cluster.crash(first)
    second = stable(cluster)
    assert second != first
    follower = next(i for i in cluster.alive() if i != second)
    cluster.crash(follower)
    lone = propose(cluster, 3)
    cluster.run(30)
    assert not any(p.acked_tick for p in lone), "a minority commits nothing"
    cluster.restart(first)
    assert cluster.run_until(lambda: all_acked(lone), BOUND), cluster.describe()
    cluster.restart(follower)
    converge(cluster)
    for core in (cluster.core(i) for i in cluster.ids):
        assert [core.log.entry(p.index).payload for p in acked + lone] == [
            p.payload for p in acked + lone
        ]


def test_deposed_leader_uncommitted_tail_is_truncated() -> None:
    cluster = SimCluster(3, seed=4, raft=RaftOptions(check_quorum=False))
    old = stable(cluster)
    cluster.isolate(old)
    doomed = propose(cluster, 4)  # accepted by the isolated leader, never committed
    assert all(p.node_id == old for p in doomed)
    assert cluster.run_until(lambda: len(cluster.leaders()) == 2, BOUND)
    winners = propose(cluster, 3)
    assert all(p.node_id != old for p in winners)
    assert cluster.run_until(lambda: all_acked(winners), BOUND)
    cluster.heal()
    converge(cluster)
    core = cluster.core(old)
    assert core.role is Role.FOLLOWER
    assert not any(p.acked_tick for p in doomed)
    payloads = [core.log.entry(i).payload for i in range(1, core.last_index + 1)]
    assert not set(payloads) & {p.payload for p in doomed}
    assert [p.payload for p in winners] == [core.log.entry(p.index).payload for p in winners]


def test_figure_8_an_old_term_entry_on_a_majority_is_not_committed() -> None:
    """Raft paper Figure 8 with five nodes S1..S5.

    (a) S1 leads and gets x to S2 only, then dies. (b) S5 wins without x and appends its
    own entry y at x's index, then dies before sending it. (c) S1 returns, wins, and
    copies x to S3: x is now on a majority, but it is from an older term, so S1 must not
    commit it. S1 dies before its own-term no-op gets anywhere. (d) S5 returns and wins
    with S3 and S4, overwriting x everywhere. That is safe only because x never committed.
    """
    raft = RaftOptions(entries_per_append_max=1)
    cluster = SimCluster(5, seed=8, raft=raft)
    elect(cluster, 1)
    cluster.partition([1, 2], [3, 4, 5])
    (x,) = propose(cluster, 1)
    assert cluster.run_until(
        lambda: durable(cluster, 1, x.index) and durable(cluster, 2, x.index), BOUND
    )
    cluster.crash(1)
    cluster.crash(2)
    # (b) S5 wins among S3..S5; S3 and S4 cannot both vote for anyone else in that term
    # once they have voted for S5, and S5 is cut off as soon as it leads.
    cluster.block(3, 4)
    cluster.block(4, 3)
    assert cluster.run_until(lambda: cluster.leaders() != [], BOUND)
    y_leader = cluster.leaders()[0]
    y_index = cluster.core(y_leader).last_index
    assert y_index == x.index, "the new leader's no-op lands on x's index"
    cluster.isolate(y_leader)
    assert cluster.run_until(lambda: durable(cluster, y_leader, y_index), BOUND)
    cluster.crash(y_leader)
    # (c) S1 comes back and leads S2 and S3 (it holds x, the freshest entry they know); S4
    # stays cut off so that it never sees x.
    laggard, third = (i for i in (3, 4, 5) if i != y_leader)
    cluster.heal()
    cluster.isolate(y_leader)
    cluster.isolate(third)
    cluster.restart(1)
    cluster.restart(2)
    assert cluster.run_until(lambda: cluster.leader() in (1, 2), BOUND), cluster.describe()
    s1 = cluster.leader()
    assert s1 is not None

    def x_on_majority() -> bool:
        progress = cluster.core(s1).progress(laggard)
        return progress is not None and progress.match_index >= x.index

    assert cluster.run_until(x_on_majority, BOUND), cluster.describe()
    assert cluster.core(s1).commit_index < x.index, "§5.4.2: x is from an older term"
    others = [i for i in (1, 2) if i != s1]
    cluster.isolate(s1)
    cluster.crash(s1)
    for node_id in others:
        cluster.crash(node_id)
    cluster.run(3)  # S1's no-op, still in flight, is dropped by the partition
    # (d) S5 returns; only it can win: the other two of {S3, S4, S5} cannot hear each other.
    cluster.heal()
    cluster.block(laggard, third)
    cluster.block(third, laggard)
    cluster.restart(y_leader)
    assert cluster.run_until(lambda: cluster.leader() == y_leader, BOUND), cluster.describe()
    assert cluster.run_until(lambda: cluster.core(laggard).log.term_at(x.index) != x.term, BOUND), (
        "x is overwritten"
    )
    assert x.acked_tick is None
    cluster.heal()
    for node_id in (s1, *others):
        cluster.restart(node_id)
    converge(cluster)


def test_transfer_leadership_hands_over_in_one_term() -> None:
    cluster = SimCluster(3, seed=5)
    leader = stable(cluster)
    term = cluster.core(leader).term
    before = propose(cluster, 3)
    target = next(i for i in cluster.ids if i != leader)
    assert cluster.transfer(target)
    rejected = cluster.propose()
    assert rejected == ProposalRejected(RejectReason.TRANSFERRING, leader)
    assert cluster.run_until(lambda: cluster.stable_leader() == target, BOUND)
    assert cluster.core(target).term == term + 1, "TimeoutNow skips pre-vote: one term"
    after = propose(cluster, 3)
    assert cluster.run_until(lambda: all_acked(before + after), BOUND)
    converge(cluster)


def test_transfer_to_an_unreachable_target_is_abandoned() -> None:
    cluster = SimCluster(3, seed=6)
    leader = stable(cluster)
    target = next(i for i in cluster.ids if i != leader)
    cluster.block(leader, target)
    cluster.propose()
    assert cluster.transfer(target)
    assert cluster.run_until(lambda: cluster.core(leader).transferee is None, 30)
    assert cluster.core(leader).role is Role.LEADER
    assert isinstance(cluster.propose(), Proposal)


def test_check_quorum_leader_steps_down_when_cut_off() -> None:
    cluster = SimCluster(3, seed=7)
    leader = stable(cluster)
    for other in cluster.ids:
        if other != leader:
            cluster.block(other, leader)  # the leader still sends, but hears nothing
    assert cluster.run_until(lambda: cluster.core(leader).role is not Role.LEADER, 25)


def test_pre_vote_keeps_a_rejoining_node_from_disrupting() -> None:
    for pre_vote, disrupted in ((True, False), (False, True)):
        cluster = SimCluster(3, seed=9, raft=RaftOptions(pre_vote=pre_vote))
        leader = stable(cluster)
        term = cluster.core(leader).term
        loner = next(i for i in cluster.ids if i != leader)
        cluster.isolate(loner)
        cluster.run(100)
        assert (cluster.core(loner).term > term) is not pre_vote
        cluster.heal()
        cluster.run(60)
        new = stable(cluster)
        assert (cluster.core(new).term > term) is disrupted, pre_vote
        if not disrupted:
            assert new == leader
        converge(cluster)


def test_a_vote_not_yet_durable_is_lost_with_a_crash_and_never_sent() -> None:
    cluster = SimCluster(3, seed=10, disk=DiskOptions(5, 5))
    grants: list[RequestVoteResponse] = []
    send = cluster.network.send

    def record(now: int, message: object) -> None:
        if isinstance(message, RequestVoteResponse) and message.vote_granted:
            grants.append(message)
        send(now, message)  # type: ignore[arg-type]

    cluster.network.send = record  # type: ignore[method-assign]
    assert cluster.run_until(
        lambda: any(cluster.core(i).vote not in (None, i) for i in cluster.alive()), BOUND
    )
    voter = next(i for i in cluster.alive() if cluster.core(i).vote not in (None, i))
    promised = cluster.core(voter).vote
    assert cluster.nodes[voter].disk.hard_state.vote != promised, "not durable yet"
    assert not [g for g in grants if g.src == voter and not g.pre_vote]
    cluster.crash(voter)
    cluster.restart(voter)
    assert cluster.core(voter).vote != promised, "the promise died with the crash"
    stable(cluster)
    converge(cluster)


def test_leader_counts_itself_only_after_its_own_fsync() -> None:
    """majority_fsync: one follower's durable copy plus the leader's copy in the page cache
    is not a majority of durable copies, so nothing is acknowledged until the leader's own
    write completes."""
    cluster = SimCluster(3, seed=11)
    leader = stable(cluster)
    fast, cut = (i for i in cluster.ids if i != leader)
    cluster.nodes[leader].disk.options = DiskOptions(30, 30)
    cluster.block(leader, cut)
    (x,) = propose(cluster, 1)
    assert cluster.run_until(lambda: durable(cluster, fast, x.index), BOUND)
    cluster.run(5)
    assert x.acked_tick is None
    assert cluster.core(leader).commit_index < x.index
    assert cluster.run_until(lambda: x.acked_tick is not None, BOUND)
    assert durable(cluster, leader, x.index)
    cluster.heal()
    converge(cluster)
