"""`StorageCluster`: the simulated Raft group with the real store under every node.

Why a subclass: the network, the clock, the faults and the checkers stay those of
`SimCluster`; only what a node runs on changes (storage.py), plus what a store adds:

- proposals are producer batches (`ProposedBatch`), which the adapter encodes at their
  CommitLog place before the core sees them;
- a node may fail-stop (an exception out of the driver or the writer). The broker's
  answer to that is to exit; here the node goes down. `CommittedEntryConflict` is the
  one expected stop, and only once committed entries were lost on a majority
  (`majority_memory` and a power loss): the node then comes back at once the way the
  error says (hard state kept, log moved aside), as chaos/ does. Any other stop fails the seed;
- a power loss cuts unsynced bytes. After one, the entries a majority still holds are
  what the group can still know as committed: in `majority_fsync` that must be every
  committed entry (checked); in `majority_memory` the checker stops taking the committed
  prefix for a fact (`SafetyChecker.committed_lost`) and counts acknowledged writes lost;
- at the end, the CommitLog bytes below each node's confirm offset must be identical
  (the leader encodes each entry at the offsets every replica stores it at).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from pathlib import Path

from dledgermq.raft.core import RaftCore
from dledgermq.raft.driver import DriverIO, RaftDriver
from dledgermq.raft.ready import Ready
from dledgermq.raft.types import NOOP, CommittedEntryConflict, NodeId
from dledgermq.replication.raft_log import ProposedBatch
from dledgermq.store.entry_layout import NOOP_TOPIC
from dledgermq.store.record import MessageDraft, decode_meta

from . import files
from .checkers import SafetyViolation, entry_at
from .harness import (
    DiskOptions,
    NetOptions,
    Proposal,
    ProposalReply,
    RaftOptions,
    SimCluster,
    SimNode,
)
from .storage import StorageDisk, StorageOptions, term_of


class NodeStopped(AssertionError):
    """A node fail-stopped where the store should have gone on."""


def payload_key(payload: object) -> object:
    """A no-op is `NOOP` in memory and its encoded record once read back from the log."""
    if payload is NOOP:
        return NOOP
    data = bytes(payload)  # type: ignore[call-overload]
    return NOOP if decode_meta(data).topic == NOOP_TOPIC else data


class StorageReply(ProposalReply):
    """The adapter's `CommittedReply` hands the producer's reply to the ReputActor, which
    answers without the index: the acknowledged entry is the leader's at that index."""

    def ok(self, value: object) -> None:
        del value
        proposal = self.proposal
        leader = self._cluster.nodes[proposal.node_id]
        assert leader.core is not None, "acknowledged by a node that is down"
        proposal.payload = entry_at(leader.core, proposal.index).payload  # type: ignore[assignment]
        super().ok(proposal.index)


class StorageCluster(SimCluster):
    def __init__(
        self,
        n: int,
        seed: int,
        *,
        root: Path,
        journal: files.SyncJournal,
        storage: StorageOptions,
        raft: RaftOptions | None = None,
        net: NetOptions | None = None,
        disk: DiskOptions | None = None,
    ) -> None:
        self.root = root
        self.journal = journal
        self.storage = storage
        self.lossy = False  # Committed entries were lost on a majority (majority_memory).
        self.power_losses = 0
        self.rejoined_without_log = 0
        self._stops: list[str] = []
        self._tear_rng = random.Random(seed ^ 0x7EA2)
        super().__init__(n, seed, raft=raft, net=net, disk=disk)
        self.checker.payload_key = payload_key

    def _make_disk(self, node_id: NodeId, rng: random.Random, options: DiskOptions) -> StorageDisk:  # type: ignore[override]
        directory = self.root / f"n{node_id}"
        directory.mkdir(parents=True, exist_ok=True)
        return StorageDisk(directory, rng, options, self.storage, self.journal)

    def disk(self, node_id: NodeId) -> StorageDisk:
        disk = self.nodes[node_id].disk
        assert isinstance(disk, StorageDisk)
        return disk

    # -- nodes -------------------------------------------------------------------------

    def _start(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        node.incarnation += 1
        config = self.raft.config(node_id, self.ids)
        disk = self.disk(node_id)
        hard_state, log, raft_log = disk.boot()
        core = RaftCore(
            config, random.Random(self._rng.getrandbits(64)), hard_state=hard_state, log=log
        )
        io = DriverIO(
            persist=disk.persist,
            send=lambda message: self.network.send(self.now, message),
            on_commit=raft_log.on_commit,
            prepare=raft_log.prepare,
            compact_keep=self.storage.compact_keep,
            on_ready=lambda c, ready: self._observe(node_id, c, ready),
        )
        node.driver = RaftDriver(core, io, pending_proposals_max=config.pending_proposals_max)

    def _guard(self, node_id: NodeId, action: Callable[[], None]) -> None:
        """Run `action()` on a node; a fail-stop takes the node down (see the module)."""
        try:
            action()
        except SafetyViolation:
            raise
        except CommittedEntryConflict as stop:
            if not self.lossy:
                message = f"node {node_id}: {stop} with no committed entry lost"
                raise NodeStopped(message) from stop
            self.note(f"stop {node_id}: CommittedEntryConflict at {stop.index}")
            self._down(node_id, torn=False)
            self.disk(node_id).move_aside()
            self.rejoined_without_log += 1
            self._after_data_loss()
            self.restart(node_id)  # As the operator (and chaos/) would, at once.
        except Exception as error:
            detail = "".join(traceback.format_exception_only(error)).strip()
            raise NodeStopped(f"node {node_id} fail-stopped: {detail}") from error

    def _down(self, node_id: NodeId, *, torn: bool) -> int:
        node = self.nodes[node_id]
        node.driver = None
        return self.disk(node_id).crash(torn=torn)

    # -- driving -----------------------------------------------------------------------

    def tick(self) -> None:
        self.now += 1
        for node_id, node in self.nodes.items():
            node.disk.now = self.now
            if node.alive:
                self._guard(node_id, lambda n=node: self._complete_writes(n))
        for message in self.network.due(self.now):
            driver = self.nodes[message.dst].driver
            if driver is not None:
                self._guard(message.dst, lambda d=driver, m=message: d.step(m))
        for node_id, node in self.nodes.items():
            if node.driver is not None:
                self._guard(node_id, node.driver.tick)

    def _complete_writes(self, node: SimNode) -> None:
        durable = self.disk(node.node_id).complete(self.now)
        if durable is not None and node.driver is not None:
            node.driver.persisted(durable.seq, durable.last_term, durable.last_index)

    # -- faults ------------------------------------------------------------------------

    def crash(self, node_id: NodeId) -> None:
        assert self.nodes[node_id].alive, node_id
        torn = self._tear_rng.random() < self.disk(node_id).options.torn_write_rate
        lost = self._down(node_id, torn=torn)
        self.note(f"crash {node_id} (lost {lost} writes{', torn' if torn else ''})")

    def power_loss(self, node_ids: list[NodeId]) -> None:
        """These nodes lose power at once: a crash each, then unsynced bytes go."""
        held_before = self._held_by_majority()
        lost = 0
        for node_id in node_ids:
            if self.nodes[node_id].alive:
                self._down(node_id, torn=True)
            lost += self.disk(node_id).power_loss()
        self.power_losses += 1
        self.checker.acks_may_be_lost = not self.storage.fsync
        self.note(f"power loss {node_ids} ({lost} unsynced bytes lost)")
        self._after_data_loss()
        if not self.storage.fsync and not held_before <= self._held_by_majority():
            # An entry a majority had written may be committed yet, by a leader hearing
            # an acknowledgement sent before the loss: the committed prefix is no fact.
            self._lose_committed("entries a majority had written are lost")

    def _held_by_majority(self) -> set[tuple[int, int]]:
        """(index, term) of every entry a majority of the nodes has written."""
        counts: dict[tuple[int, int], int] = {}
        for node_id in self.ids:
            for entry in self.disk(node_id).log:
                key = (entry.index, entry.term)
                counts[key] = counts.get(key, 0) + 1
        return {key for key, count in counts.items() if count * 2 > len(self.ids)}

    def _check_commit_is_durable(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        """`majority_memory` acknowledges a written entry; a power loss may take it off
        the disk of a node whose acknowledgement is still on its way, so after one the
        leader's commit proves nothing about disks (convergence is still checked)."""
        if self.storage.fsync or not self.power_losses:
            super()._check_commit_is_durable(node_id, core, ready)

    def _after_data_loss(self) -> None:
        """Whether every committed entry is still held by a majority of the disks."""
        if self.lossy:
            return
        committed = self.checker.committed
        kept = 0
        for position, (term, _) in enumerate(committed):
            index = position + 1
            holders = sum(1 for i in self.ids if term_of(self.disk(i).log, index) == term)
            if holders * 2 <= len(self.ids):
                break
            kept = index
        if kept == len(committed):
            return
        if self.storage.fsync:
            raise SafetyViolation(
                f"majority_fsync lost committed entries {kept + 1}..{len(committed)}"
            )
        self._lose_committed(f"committed entries after {kept} lost on a majority")

    def _lose_committed(self, why: str) -> None:
        if not self.lossy:
            self.lossy = True
            self.checker.committed_lost()
            self.note(why)

    # -- clients -----------------------------------------------------------------------

    def propose(self, payload: bytes | None = None) -> Proposal | None:  # type: ignore[override]
        leader = self.leader()
        if leader is None:
            return None
        node = self.nodes[leader]
        assert node.driver is not None
        core = node.driver.core
        self._payload_seq += 1
        body = payload if payload is not None else b"s%d-p%d" % (self.seed, self._payload_seq)
        body *= 1 + self._payload_seq % 7  # entries of many sizes: places differ
        batch = ProposedBatch((MessageDraft("TopicSim", self._payload_seq % 4, body),), self.now)
        proposal = Proposal(
            body, leader, node.incarnation, core.term, core.last_index + 1, self.now
        )
        reply = StorageReply(self, proposal)
        drain = self._drain_rng.random() < 0.5
        self._guard(leader, lambda: node.driver.propose(batch, reply, drain=drain))  # type: ignore[union-attr]
        if reply.rejected is not None:
            return None
        self.proposals.append(proposal)
        return proposal

    # -- observing ---------------------------------------------------------------------

    def check_committed_bytes(self) -> None:
        """Below each node's confirm offset, every CommitLog holds the same bytes."""
        logs = {i: self.disk(i).committed_bytes() for i in self.ids}
        shortest = min(len(data) for data in logs.values())
        first = logs[self.ids[0]][:shortest]
        for node_id, data in logs.items():
            if data[:shortest] != first:
                raise SafetyViolation(f"node {node_id}'s committed CommitLog bytes differ")
