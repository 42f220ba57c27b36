"""One randomized simulation run per seed: a safety phase with faults, then a liveness phase.

Goal: explore many interleavings of elections, replication, crashes and partitions, and
fail with a seed that reproduces the run exactly.
Method: the seed picks the cluster (3 or 5 nodes, pre-vote and check quorum on or off),
the network (loss, duplication, delay/reorder), disk delays and a fault profile ("mixed",
or "churn" which reboots the leader often). The safety phase (`SAFETY_TICKS`) injects
random faults (crashes that lose unsynced writes, quick reboots, restarts, partitions incl.
one-way and isolate-the-leader, heals, leadership transfers) while proposing; the checkers
run on every Ready. The liveness phase heals everything, restarts
every node, stops loss and crashes, and then requires, each within a bound computed from
the drawn configuration and the logs at the heal (bounds.py): a stable leader, every new
proposal acknowledged, and all logs converged and committed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from . import bounds
from .bounds import Catchup, Timing
from .harness import DiskOptions, NetOptions, Proposal, RaftOptions, SimCluster

SAFETY_TICKS = 250
LIVENESS_PROPOSALS = 5


class LivenessFailure(AssertionError):
    """The healed cluster did not make progress within its bound."""


@dataclass
class RunResult:
    seed: int
    ticks: int
    trace_hash: str
    committed: int
    acked: int
    messages: int
    liveness: Liveness


@dataclass(frozen=True)
class Drawn:
    """The cluster size and options a seed selects."""

    n: int
    raft: RaftOptions
    net: NetOptions
    disk: DiskOptions


def draw_config(seed: int) -> Drawn:
    """The cluster and fault rates a seed selects."""
    rng = random.Random(seed ^ 0x5EED)
    n = rng.choice((3, 3, 5))
    # (entries per append, appends in flight): stop-and-wait and tiny batches included, but
    # never both at once, which replicates too slowly for the liveness bounds.
    batch, window = rng.choice(((1, 8), (4, 2), (4, 16), (64, 1), (64, 16)))
    net = NetOptions(
        drop_rate=rng.choice((0.0, 0.02, 0.1, 0.25)),
        duplicate_rate=rng.choice((0.0, 0.02, 0.1)),
        delay_ticks_min=1,
        delay_ticks_max=rng.choice((1, 2, 3)),
    )
    disk = DiskOptions(
        delay_ticks_min=0, delay_ticks_max=rng.choice((0, 1, 3, 8)), torn_write_rate=0.5
    )
    # Raft needs broadcast time << election timeout (§5.6). A vote's round trip holds two
    # fsyncs (the candidate's vote, the voter's grant); with 8-tick fsyncs it reaches 22
    # ticks, and T = 10 gives endless split votes (found by seed 10846).
    election_timeout = 10 if disk.delay_ticks_max <= 3 else 20
    raft = RaftOptions(
        election_timeout_ticks=election_timeout,
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        entries_per_append_max=batch,
        inflight_appends_max=window,
    )
    return Drawn(n, raft, net, disk)


def build_cluster(seed: int) -> SimCluster:
    drawn = draw_config(seed)
    return SimCluster(drawn.n, seed, raft=drawn.raft, net=drawn.net, disk=drawn.disk)


@dataclass(frozen=True)
class FaultRates:
    """Per-tick probabilities of each fault (at most one fault happens per tick)."""

    reboot: float = 0.02  # crash (half the time the leader), restart within 2T ticks
    crash: float = 0.005  # crash, stay down until a random restart
    restart: float = 0.015
    partition: float = 0.005
    isolate_leader: float = 0.008
    one_way: float = 0.003
    heal: float = 0.02
    transfer: float = 0.004


# "churn" crashes the leader often with quick restarts: the Figure 8 family of histories
# (a leader with a tail on a minority dies, an older tail gets a new leader) needs that.
PROFILES = {
    "mixed": FaultRates(),
    "churn": FaultRates(reboot=0.06, crash=0.0, partition=0.002, isolate_leader=0.01),
}


def inject_fault(
    cluster: SimCluster, rng: random.Random, rates: FaultRates, reboots: dict[int, int]
) -> None:
    """At most one random fault (or none) for this tick; `reboots` maps node -> restart tick."""
    for node_id, at in list(reboots.items()):
        if at <= cluster.now:
            del reboots[node_id]
            if not cluster.nodes[node_id].alive:
                cluster.restart(node_id)
    roll = rng.random()
    for name in ("reboot", "crash", "restart", "partition", "isolate_leader", "one_way", "heal"):
        roll -= getattr(rates, name)
        if roll < 0:
            _FAULTS[name](cluster, rng, reboots)
            return
    if roll < rates.transfer:
        cluster.transfer(rng.choice(cluster.ids))


def _reboot(cluster: SimCluster, rng: random.Random, reboots: dict[int, int]) -> None:
    alive, leader = cluster.alive(), cluster.leader()
    if not alive:
        return
    victim = leader if leader is not None and rng.random() < 0.7 else rng.choice(alive)
    cluster.crash(victim)
    reboots[victim] = cluster.now + rng.randint(0, 2 * cluster.raft.election_timeout_ticks)


def _crash(cluster: SimCluster, rng: random.Random, _reboots: dict[int, int]) -> None:
    alive = cluster.alive()
    if alive:
        cluster.crash(rng.choice(alive))


def _restart(cluster: SimCluster, rng: random.Random, reboots: dict[int, int]) -> None:
    down = [i for i in cluster.ids if not cluster.nodes[i].alive and i not in reboots]
    if down:
        cluster.restart(rng.choice(down))


def _partition(cluster: SimCluster, rng: random.Random, _reboots: dict[int, int]) -> None:
    ids = list(cluster.ids)
    rng.shuffle(ids)
    cut = rng.randint(1, len(ids) - 1)
    cluster.partition(ids[:cut], ids[cut:])


def _isolate_leader(cluster: SimCluster, _rng: random.Random, _reboots: dict[int, int]) -> None:
    leader = cluster.leader()
    if leader is not None:
        cluster.isolate(leader)


def _one_way(cluster: SimCluster, rng: random.Random, _reboots: dict[int, int]) -> None:
    src, dst = rng.sample(cluster.ids, 2)
    cluster.block(src, dst)


def _heal(cluster: SimCluster, _rng: random.Random, _reboots: dict[int, int]) -> None:
    cluster.heal()


_FAULTS = {
    "reboot": _reboot,
    "crash": _crash,
    "restart": _restart,
    "partition": _partition,
    "isolate_leader": _isolate_leader,
    "one_way": _one_way,
    "heal": _heal,
}


def safety_phase(
    cluster: SimCluster,
    rng: random.Random,
    extra_fault: Callable[[SimCluster, random.Random], None] | None = None,
) -> None:
    """`extra_fault` is called each tick before the usual ones (the storage simulation's
    power losses)."""
    rates = PROFILES[rng.choice(("mixed", "mixed", "churn"))]
    reboots: dict[int, int] = {}
    for _ in range(SAFETY_TICKS):
        if extra_fault is not None:
            extra_fault(cluster, rng)
        inject_fault(cluster, rng, rates, reboots)
        if rng.random() < 0.3:
            cluster.propose()
        cluster.tick()


def _wait_for_stable_leader(cluster: SimCluster, timing: Timing) -> bool:
    """Wait until one leader has been followed by every node for two election timeouts.

    A leader that looked stable right after the heal may still step down (check quorum
    counts the partitioned window), so a single observation is not enough.
    """
    hold = 2 * cluster.raft.election_timeout_ticks
    deadline = cluster.now + timing.stable_leader_ticks
    held_since, held = cluster.now, cluster.stable_leader()
    while cluster.now < deadline:
        cluster.tick()
        current = cluster.stable_leader()
        if current is None or current != held:
            held_since, held = cluster.now, current
        elif cluster.now - held_since >= hold:
            return True
    return False


@dataclass(frozen=True)
class Liveness:
    """Ticks the liveness phase took and the bounds it was held to (bounds.py)."""

    ack_ticks: int
    ack_bound: int
    converge_ticks: int
    converge_bound: int


def liveness_phase(cluster: SimCluster) -> Liveness:
    cluster.heal()
    for node_id in cluster.ids:
        if not cluster.nodes[node_id].alive:
            cluster.restart(node_id)
    cluster.network.options.drop_rate = 0.0
    timing = Timing.of(cluster.raft, cluster.network.options, cluster.disk_options)
    if not _wait_for_stable_leader(cluster, timing):
        raise LivenessFailure("no stable leader after healing\n" + cluster.describe())
    leader = cluster.core(cluster.stable_leader() or 0)
    followers = [cluster.core(i) for i in cluster.ids if i != leader.node_id]
    catchup = Catchup.measure(leader, followers, LIVENESS_PROPOSALS)
    ack_bound = bounds.ack_ticks(timing, catchup, LIVENESS_PROPOSALS)
    converge_bound = bounds.converge_ticks(timing, catchup, LIVENESS_PROPOSALS)
    started = cluster.now
    proposals: list[Proposal] = []
    while len(proposals) < LIVENESS_PROPOSALS and cluster.now < started + ack_bound:
        result = cluster.propose()
        if isinstance(result, Proposal):
            proposals.append(result)
        cluster.tick()
    if not cluster.run_until(
        lambda: (
            all(p.acked_tick is not None for p in proposals)
            and len(proposals) == LIVENESS_PROPOSALS
        ),
        max(0, started + ack_bound - cluster.now),
    ):
        states = [(p.index, p.acked_tick, p.dropped) for p in proposals]
        raise LivenessFailure(
            f"proposals not acknowledged within {ack_bound} ticks ({timing}, {catchup}): "
            f"{states}\n" + cluster.describe()
        )
    acked = cluster.now - started
    if not cluster.run_until(cluster.converged, max(0, started + converge_bound - cluster.now)):
        raise LivenessFailure(
            f"logs did not converge within {converge_bound} ticks ({timing}, {catchup})\n"
            + cluster.describe()
        )
    cluster.checker.check_final([cluster.core(i) for i in cluster.ids])
    return Liveness(acked, ack_bound, cluster.now - started, converge_bound)


def run_seed(seed: int) -> RunResult:
    """Run one seed end to end; raises SafetyViolation or LivenessFailure."""
    cluster = build_cluster(seed)
    rng = random.Random(seed ^ 0xFA017)
    try:
        safety_phase(cluster, rng)
        liveness = liveness_phase(cluster)
    except AssertionError as error:
        if not isinstance(error, LivenessFailure):  # those describe the cluster already
            error.add_note(cluster.describe())
        raise
    return RunResult(
        seed=seed,
        ticks=cluster.now,
        trace_hash=cluster.trace_hash(),
        committed=len(cluster.checker.committed),
        acked=len(cluster.checker.acked),
        messages=cluster.network.sent,
        liveness=liveness,
    )
