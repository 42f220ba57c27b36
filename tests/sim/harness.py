"""Deterministic simulation of a Raft group: N nodes, a network, a disk per node.

Goal: drive the real core *through the real driver* (`raft/driver.py`, the code inside
the broker's RaftNodeActor: persist requests, persist-before-send, held acknowledgements,
proposals answered at commit) under faults, with no threads, no wall clock and no global
random, so one seed always replays the same run (TigerBeetle's VOPR, etcd's
`raft_test.go` network).

Method: time is a tick counter. Each `tick()`:
1. every live node's disk completes the persist requests that are due (in order): they
   become durable and the driver hears `persisted(seq, ...)`, which releases the messages
   it held back;
2. the network delivers every message that is due (seeded delay, so reordering falls out;
   seeded drop and duplication; partitions, also one-way, drop at delivery); each is
   stepped into its node's driver;
3. every live driver ticks.
The driver drains the core after every input; the checkers see every `Ready` before the
driver acts on it (`DriverIO.on_ready`).

A crash drops the node's unfinished writes (and whatever the driver held back for them)
and rebuilds the driver and core on restart from the durable hard state and log only.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.driver import DriverIO, PersistRequest, RaftDriver
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import (
    AppendEntriesResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from dledgermq.raft.ready import Ready
from dledgermq.raft.types import (
    Entry,
    HardState,
    Index,
    NodeId,
    ProposalRejected,
    RejectReason,
    Role,
)

from .checkers import SafetyChecker, SafetyViolation


@dataclass
class NetOptions:
    """Fault knobs of the simulated network (all seeded)."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_ticks_min: int = 1
    delay_ticks_max: int = 1


@dataclass
class DiskOptions:
    """Ticks between handing a write to the disk and it being durable; how often a crash
    tears the oldest unfinished write (its cut and a prefix of its entries reached the
    disk, its hard state did not: the order the broker's writer writes them in)."""

    delay_ticks_min: int = 0
    delay_ticks_max: int = 0
    torn_write_rate: float = 0.0


@dataclass
class RaftOptions:
    """The `RaftConfig` fields a simulation varies (node ids and peers are filled in)."""

    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 2
    entries_per_append_max: int = 64
    inflight_appends_max: int = 16
    pending_proposals_max: int = 10_000
    check_quorum: bool = True
    pre_vote: bool = True

    def config(self, node_id: NodeId, peers: tuple[NodeId, ...]) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            peers=peers,
            election_timeout_ticks=self.election_timeout_ticks,
            heartbeat_interval_ticks=self.heartbeat_interval_ticks,
            entries_per_append_max=self.entries_per_append_max,
            inflight_appends_max=self.inflight_appends_max,
            pending_proposals_max=self.pending_proposals_max,
            check_quorum=self.check_quorum,
            pre_vote=self.pre_vote,
        )


class SimNetwork:
    """Seeded message delivery with drop, delay (hence reorder), duplication, partitions."""

    def __init__(self, rng: random.Random, options: NetOptions) -> None:
        self.options = options
        self._rng = rng
        self._queue: list[tuple[int, int, Message]] = []
        self._seq = 0
        # (src, dst) pairs that cannot talk; only membership is asked, never iteration.
        self._blocked: set[tuple[NodeId, NodeId]] = set()
        self.sent = 0
        self.dropped = 0

    def send(self, now: int, message: Message) -> None:
        self.sent += 1
        if self._rng.random() < self.options.drop_rate:
            self.dropped += 1
            return
        copies = 2 if self._rng.random() < self.options.duplicate_rate else 1
        for _ in range(copies):
            delay = self._rng.randint(self.options.delay_ticks_min, self.options.delay_ticks_max)
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, message))

    def due(self, now: int) -> list[Message]:
        """Pop every message due by `now`, in (tick, send order); blocked ones are lost."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            message = heapq.heappop(self._queue)[2]
            if (message.src, message.dst) in self._blocked:
                self.dropped += 1
                continue
            out.append(message)
        return out

    def block(self, src: NodeId, dst: NodeId) -> None:
        """One-way: `src` can no longer reach `dst`."""
        self._blocked.add((src, dst))

    def partition(self, groups: Sequence[Sequence[NodeId]]) -> None:
        """Nodes talk only within their group (both directions cut between groups)."""
        for i, group in enumerate(groups):
            for other in groups[i + 1 :]:
                for a in group:
                    for b in other:
                        self.block(a, b)
                        self.block(b, a)

    def heal(self) -> None:
        self._blocked.clear()

    def is_blocked(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) in self._blocked

    @property
    def in_flight(self) -> int:
        return len(self._queue)


@dataclass
class _Write:
    done_tick: int
    request: PersistRequest


class SimDisk:
    """One node's durable state; persist requests become durable in order after a seeded
    delay (the driver's storage)."""

    def __init__(self, rng: random.Random, options: DiskOptions) -> None:
        self._rng = rng
        self.options = options
        self.hard_state = HardState()
        self.log: list[Entry] = []  # durable entries; entry i sits at position i - 1
        self._pending: deque[_Write] = deque()
        self.now = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def persist(self, request: PersistRequest) -> None:
        done = self.now + self._rng.randint(
            self.options.delay_ticks_min, self.options.delay_ticks_max
        )
        if self._pending:
            done = max(done, self._pending[-1].done_tick)
        self._pending.append(_Write(done, request))

    def complete(self, now: int) -> int | None:
        """Make every request due by `now` durable, in order; the last seq made durable."""
        seq = None
        while self._pending and self._pending[0].done_tick <= now:
            request = self._pending.popleft().request
            if request.truncate_from is not None:
                del self.log[request.truncate_from - 1 :]
            if request.entries:
                assert request.entries[0].index == len(self.log) + 1, (
                    request.entries[0],
                    len(self.log),
                )
                self.log.extend(request.entries)
            if request.hard_state is not None:
                self.hard_state = request.hard_state
            seq = request.seq
        return seq

    def crash(self) -> int:
        """Lose every write that is not durable yet (maybe keeping part of the oldest);
        return how many were lost."""
        lost = len(self._pending)
        if self._pending and self._rng.random() < self.options.torn_write_rate:
            request = self._pending[0].request
            if request.truncate_from is not None:
                del self.log[request.truncate_from - 1 :]
            kept = self._rng.randint(0, len(request.entries))
            self.log.extend(request.entries[:kept])
        self._pending.clear()
        return lost


@dataclass
class Proposal:
    """A payload a leader accepted at (term, index); `acked_tick` once it reported commit."""

    payload: bytes
    node_id: NodeId
    incarnation: int
    term: int
    index: int
    proposed_tick: int
    acked_tick: int | None = None
    dropped: bool = False


class ProposalReply:
    """The driver's answer to one proposal: `ok(index)` = acknowledged to the client."""

    def __init__(self, cluster: SimCluster, proposal: Proposal) -> None:
        self._cluster = cluster
        self.proposal = proposal
        self.rejected: Exception | None = None

    def ok(self, value: Index) -> None:
        proposal = self.proposal
        assert value == proposal.index, (value, proposal)
        proposal.acked_tick = self._cluster.now
        self._cluster.checker.on_ack(
            proposal.term, proposal.index, proposal.payload, proposal.node_id
        )

    def fail(self, error: BaseException) -> None:
        assert isinstance(error, Exception), error
        self.rejected = error
        self.proposal.dropped = True  # outcome unknown: it may or may not commit


class _TransferReply:
    started = False

    def ok(self, value: bool) -> None:
        self.started = value

    def fail(self, error: BaseException) -> None:
        self.started = False


@dataclass
class SimNode:
    node_id: NodeId
    disk: SimDisk
    driver: RaftDriver | None
    incarnation: int = 0

    @property
    def alive(self) -> bool:
        return self.driver is not None

    @property
    def core(self) -> RaftCore | None:
        return self.driver.core if self.driver is not None else None


def _reject_reason(error: Exception) -> RejectReason:
    """Why the driver refused a proposal: a Raft refusal carries it as `reason`
    (raft/outcomes.py); an `MQError` (before raft/ had its own refusals) in `details`."""
    reason = getattr(error, "reason", None)
    if reason is None:
        reason = getattr(error, "details", {})["reason"]
    return RejectReason(reason)


def _must_wait_for_persist(message: Message) -> bool:
    """Messages that promise something about durable state (votes, append acks)."""
    if isinstance(message, AppendEntriesResponse):
        return True
    return isinstance(message, RequestVote | RequestVoteResponse) and not message.pre_vote


class SimCluster:
    """N Raft cores over a `SimNetwork`, each with a `SimDisk`; deterministic per seed."""

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        raft: RaftOptions | None = None,
        net: NetOptions | None = None,
        disk: DiskOptions | None = None,
    ) -> None:
        self.seed = seed
        self.now = 0
        self._rng = random.Random(seed)
        # Whether a proposal drains at once or is left to the node's next input (the
        # actor's burst batching); its own stream, so the other draws stay as they were.
        self._drain_rng = random.Random(seed ^ 0x5EED_BA7C)
        self.raft = raft or RaftOptions()
        self.ids = tuple(range(1, n + 1))
        self.network = SimNetwork(random.Random(self._rng.getrandbits(64)), net or NetOptions())
        disk = disk or DiskOptions()
        self.disk_options = disk
        self.nodes: dict[NodeId, SimNode] = {}
        for node_id in self.ids:
            sim_disk = self._make_disk(node_id, random.Random(self._rng.getrandbits(64)), disk)
            self.nodes[node_id] = SimNode(node_id, sim_disk, None)
            self._start(node_id)
        self.checker = SafetyChecker(self.ids)
        self.proposals: list[Proposal] = []
        self._trace = hashlib.blake2b(digest_size=16)
        self._payload_seq = 0
        self.log_lines: list[str] = []
        self._commit_checked: dict[NodeId, tuple[int, Index]] = {}

    def _make_disk(self, node_id: NodeId, rng: random.Random, options: DiskOptions) -> SimDisk:
        """One node's disk (the storage simulation puts the real store behind it)."""
        del node_id
        return SimDisk(rng, options)

    # -- driving -------------------------------------------------------------------------

    def tick(self) -> None:
        self.now += 1
        for node in self.nodes.values():
            node.disk.now = self.now
            if node.alive:
                self._complete_writes(node)
        for message in self.network.due(self.now):
            driver = self.nodes[message.dst].driver
            if driver is not None:
                driver.step(message)
        for node in self.nodes.values():
            if node.driver is not None:
                node.driver.tick()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def run_until(self, predicate: Callable[[], bool], max_ticks: int) -> bool:
        """Tick until `predicate()` holds (checked before each tick); False on timeout."""
        for _ in range(max_ticks):
            if predicate():
                return True
            self.tick()
        return predicate()

    def _complete_writes(self, node: SimNode) -> None:
        seq = node.disk.complete(self.now)
        if seq is None:
            return
        assert node.driver is not None
        last = node.disk.log[-1] if node.disk.log else Entry(0, 0, None)
        node.driver.persisted(seq, last.term, last.index)

    def _observe(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        """Every Ready of every node, before its driver acts on it."""
        for message in ready.messages:
            assert not _must_wait_for_persist(message), f"sent before persist: {message}"
        self.checker.on_ready(node_id, core, ready)
        self._check_commit_is_durable(node_id, core, ready)
        self._trace.update(
            b"%d %d %s %d %d %d %d %d;"
            % (
                self.now,
                node_id,
                ready.role.value.encode(),
                ready.term,
                ready.commit_index,
                core.last_index,
                len(ready.messages),
                len(ready.messages_after_persist),
            )
        )

    def _check_commit_is_durable(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        """When a leader's commit index moves, a majority of the *disks* (not of the
        in-memory logs) must already hold that entry: the durability promise checked
        directly, with no need for the crash that would expose a missing fsync. (Only
        when it moves: a power loss under `majority_memory` may take an entry off disks
        after it committed, which the storage simulation checks on its own.)"""
        index = ready.commit_index
        if ready.role is not Role.LEADER or index == 0:
            return
        if self._commit_checked.get(node_id) == (ready.term, index):
            return
        self._commit_checked[node_id] = (ready.term, index)
        term = core.log.term_at(index)
        durable = sum(
            1
            for other in self.nodes.values()
            if len(other.disk.log) >= index and other.disk.log[index - 1].term == term
        )
        if durable * 2 <= len(self.nodes):
            raise SafetyViolation(
                f"tick {self.now}: leader commit {index} (term {term}) is durable on only "
                f"{durable} of {len(self.nodes)} disks"
            )

    # -- faults --------------------------------------------------------------------------

    def crash(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        assert node.alive, node_id
        lost = node.disk.crash()
        node.driver = None  # its pending proposals are never answered: outcome unknown
        self.note(f"crash {node_id} (lost {lost} writes)")

    def restart(self, node_id: NodeId) -> None:
        assert not self.nodes[node_id].alive, node_id
        self._start(node_id)
        self.checker.on_restart(node_id)
        self.note(f"restart {node_id}")

    def _start(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        node.incarnation += 1
        config = self.raft.config(node_id, self.ids)
        core = RaftCore(
            config,
            random.Random(self._rng.getrandbits(64)),
            hard_state=node.disk.hard_state,
            log=RaftLog(list(node.disk.log)),
        )
        io = DriverIO(
            persist=node.disk.persist,
            send=lambda message: self.network.send(self.now, message),
            on_ready=lambda c, ready: self._observe(node_id, c, ready),
        )
        node.driver = RaftDriver(core, io, pending_proposals_max=config.pending_proposals_max)

    def partition(self, *groups: Sequence[NodeId]) -> None:
        self.network.partition(groups)
        self.note(f"partition {groups}")

    def isolate(self, node_id: NodeId) -> None:
        self.partition([node_id], [i for i in self.ids if i != node_id])

    def block(self, src: NodeId, dst: NodeId) -> None:
        self.network.block(src, dst)
        self.note(f"block {src}->{dst}")

    def heal(self) -> None:
        self.network.heal()
        self.note("heal")

    def note(self, line: str) -> None:
        self.log_lines.append(f"t={self.now} {line}")

    # -- clients -------------------------------------------------------------------------

    def propose(self, payload: bytes | None = None) -> Proposal | ProposalRejected | None:
        """Propose at the live leader of the highest term; None when there is none."""
        leader = self.leader()
        if leader is None:
            return None
        node = self.nodes[leader]
        assert node.driver is not None
        core = node.driver.core
        if payload is None:
            self._payload_seq += 1
            payload = b"s%d-p%d" % (self.seed, self._payload_seq)
        proposal = Proposal(
            payload, leader, node.incarnation, core.term, core.last_index + 1, self.now
        )
        reply = ProposalReply(self, proposal)
        node.driver.propose(payload, reply, drain=self._drain_rng.random() < 0.5)
        if reply.rejected is not None and core.last_index < proposal.index:
            reason = _reject_reason(reply.rejected)
            return ProposalRejected(reason, core.leader_id)
        self.proposals.append(proposal)
        return proposal

    def transfer(self, to: NodeId) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        driver = self.nodes[leader].driver
        assert driver is not None
        answer = _TransferReply()
        driver.transfer(to, answer)
        self.note(f"transfer {leader}->{to}: {answer.started}")
        return answer.started

    # -- observing -----------------------------------------------------------------------

    def core(self, node_id: NodeId) -> RaftCore:
        core = self.nodes[node_id].core
        assert core is not None, f"node {node_id} is down"
        return core

    def alive(self) -> list[NodeId]:
        return [i for i in self.ids if self.nodes[i].alive]

    def leaders(self) -> list[NodeId]:
        return [i for i in self.alive() if self.core(i).role is Role.LEADER]

    def leader(self) -> NodeId | None:
        """The live leader with the highest term, if any."""
        leaders = self.leaders()
        if not leaders:
            return None
        return max(leaders, key=lambda i: self.core(i).term)

    def stable_leader(self) -> NodeId | None:
        """A leader that every live node follows in its term, else None."""
        leader = self.leader()
        if leader is None:
            return None
        term = self.core(leader).term
        for node_id in self.alive():
            core = self.core(node_id)
            if core.term != term or core.leader_id != leader:
                return None
        return leader

    def converged(self) -> bool:
        """Every live node holds the same log and has committed all of it."""
        alive = self.alive()
        first = self.core(alive[0])
        for node_id in alive:
            core = self.core(node_id)
            if core.last_index != first.last_index or core.commit_index != core.last_index:
                return False
            if core.log.last_term != first.log.last_term:
                return False
        return True

    def trace_hash(self) -> str:
        return self._trace.copy().hexdigest()

    def describe(self) -> str:
        """A one-line-per-node summary for failure messages."""
        lines = [f"seed={self.seed} now={self.now} in_flight={self.network.in_flight}"]
        for node_id in self.ids:
            node = self.nodes[node_id]
            if node.core is None:
                lines.append(f"  {node_id}: down (durable last {len(node.disk.log)})")
                continue
            core = node.core
            lines.append(
                f"  {node_id}: {core.role.value} term={core.term} leader={core.leader_id} "
                f"last={core.last_index}/{core.log.last_term} commit={core.commit_index} "
                f"persisted={core.persisted_index} disk_pending={node.disk.pending}"
            )
        lines.extend(self.log_lines[-15:])
        return "\n".join(lines)
