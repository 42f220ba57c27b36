"""Safety checkers for simulated Raft runs (Raft paper Figure 3, plus acknowledged writes).

Goal: fail at the first tick a safety property breaks, naming the property.
Method: the harness shows every `Ready` to `SafetyChecker.on_ready` (with the core it came
from) and every acknowledged proposal to `on_ack`; the checker keeps the facts it needs
incrementally, so a check costs work proportional to what changed:

- election safety: at most one leader per term (`leaders_by_term`);
- log matching: an entry (index, term) has one payload and one predecessor term wherever
  it appears, which by induction makes logs identical up to any shared (index, term);
- committed-prefix agreement / state machine safety: every node's committed entries agree
  with one global committed log, which only grows and never changes ("never
  un-committed");
- leader completeness: when a node first acts as leader of term T, its log holds every
  entry committed in a term below T;
- acknowledged proposals: each one is in the global committed log at its index, so leader
  completeness also puts it in every later leader's log; `check_final` asks every node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dledgermq.raft.types import Entry, NodeId, Role

if TYPE_CHECKING:
    from dledgermq.raft.core import RaftCore
    from dledgermq.raft.ready import Ready


class SafetyViolation(AssertionError):
    """A Raft safety property did not hold."""


def entry_at(core: RaftCore, index: int) -> Entry:
    """The entry at `index`, also below a compacted log's base (read back from storage)."""
    log = core.log
    if index > log.base_index:
        return log.entry(index)
    return log.slice(index, index + 1, 1)[0]


class SafetyChecker:
    """Incremental checks over every `Ready` of every node.

    `payload_key` maps a payload to what identifies it: the storage simulation reads a
    no-op back from the log as its encoded record, which must count as the same entry.
    """

    def __init__(
        self, ids: Sequence[NodeId], payload_key: Callable[[object], object] = lambda p: p
    ) -> None:
        self.payload_key = payload_key
        self.leaders_by_term: dict[int, NodeId] = {}
        # Global committed log: position i holds (term, payload) of index i + 1, and the
        # smallest term in which a node was seen to have it committed.
        self.committed: list[tuple[int, object]] = []
        self.commit_term: list[int] = []
        self.acked: list[tuple[int, int, bytes]] = []
        self._entries: dict[tuple[int, int], tuple[object, int | None]] = {}
        self._checked_commit: dict[NodeId, int] = dict.fromkeys(ids, 0)
        self._leader_seen: set[tuple[NodeId, int]] = set()
        # `majority_memory` after a power loss: an acknowledged entry may be gone (an
        # acknowledgement may even leave a node that loses the entry a tick later), so
        # `check_final` counts those in `lost_acks` instead of failing.
        self.acks_may_be_lost = False
        self.lost_acks = 0
        # Committed entries were lost on a majority (see `committed_lost`).
        self.lost_committed = False

    def on_restart(self, node_id: NodeId) -> None:
        """A restarted node starts over with commit index 0 (commit is not persisted)."""
        self._checked_commit[node_id] = 0

    def on_ready(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        self._check_invariants(node_id, core, ready)
        if ready.role is Role.LEADER:
            self._check_leader(node_id, core, ready.term)
        self._check_new_entries(core, ready)
        if self.lost_committed:
            self._checked_commit[node_id] = ready.commit_index
        else:
            self._check_committed(node_id, core, ready)

    def on_ack(self, term: int, index: int, payload: object, leader: NodeId) -> None:
        """A leader reported (term, index) committed: it must be in the committed log
        (once committed entries were lost, only `check_final` looks at acks)."""
        del leader
        payload = self.payload_key(payload)
        if self.lost_committed:
            self.acked.append((term, index, payload))
            return
        if index > len(self.committed) or self.committed[index - 1] != (term, payload):
            raise SafetyViolation(f"acked ({term}, {index}) is not the committed entry")
        self.acked.append((term, index, payload))

    def _check_invariants(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        if not ready.commit_index <= core.last_index:
            raise SafetyViolation(f"node {node_id}: commit beyond last index")
        if ready.commit_index < self._checked_commit[node_id]:
            raise SafetyViolation(f"node {node_id}: commit index went back")

    def _check_leader(self, node_id: NodeId, core: RaftCore, term: int) -> None:
        holder = self.leaders_by_term.setdefault(term, node_id)
        if holder != node_id:
            raise SafetyViolation(f"election safety: {holder} and {node_id} lead term {term}")
        if (node_id, term) in self._leader_seen or self.lost_committed:
            return
        self._leader_seen.add((node_id, term))
        for position, (entry_term, payload) in enumerate(self.committed):
            if self.commit_term[position] >= term:
                continue
            index = position + 1
            if core.log.term_at(index) != entry_term or self._payload(core, index) != payload:
                raise SafetyViolation(
                    f"leader completeness: leader {node_id} of term {term} lacks committed "
                    f"entry ({entry_term}, {index})"
                )

    def _check_new_entries(self, core: RaftCore, ready: Ready) -> None:
        for entry in ready.entries_to_persist:
            fact = (self.payload_key(entry.payload), core.log.term_at(entry.index - 1))
            known = self._entries.setdefault((entry.index, entry.term), fact)
            if known != fact:
                raise SafetyViolation(
                    f"log matching: ({entry.index}, {entry.term}) is {fact} here, {known} before"
                )

    def _check_committed(self, node_id: NodeId, core: RaftCore, ready: Ready) -> None:
        start = self._checked_commit[node_id]
        for index in range(start + 1, ready.commit_index + 1):
            entry = entry_at(core, index)
            fact = (entry.term, self.payload_key(entry.payload))
            if index <= len(self.committed):
                if self.committed[index - 1] != fact:
                    raise SafetyViolation(
                        f"committed prefix: node {node_id} committed {fact} at {index}, "
                        f"others {self.committed[index - 1]}"
                    )
                self.commit_term[index - 1] = min(self.commit_term[index - 1], ready.term)
            else:
                self.committed.append(fact)
                self.commit_term.append(ready.term)
        self._checked_commit[node_id] = ready.commit_index

    def _payload(self, core: RaftCore, index: int) -> object:
        return self.payload_key(entry_at(core, index).payload)

    def committed_lost(self) -> None:
        """Committed entries were lost on a majority (`majority_memory` and a power
        loss). From now on the committed prefix is no fact: a node may still commit, from
        what it heard before the loss, an entry the others no longer hold, and a leader
        may lack one. What still holds and stays checked: election safety, log matching
        (which alone catches a node appending after entries the leader's log
        contradicts), the durability of the hard state, and that every log converges."""
        self.lost_committed = True
        self.acks_may_be_lost = True

    def check_final(self, cores: Sequence[RaftCore]) -> None:
        """After the liveness phase: every node holds the committed log and every ack."""
        committed = [] if self.lost_committed else self.committed
        for core in cores:
            for position, (term, payload) in enumerate(committed):
                index = position + 1
                if core.log.term_at(index) != term or self._payload(core, index) != payload:
                    raise SafetyViolation(f"node {core.node_id} lacks committed entry {index}")
            for term, index, payload in list(self.acked):
                if core.log.term_at(index) != term or self._payload(core, index) != payload:
                    if self.acks_may_be_lost:
                        self.acked.remove((term, index, payload))
                        self.lost_acks += 1
                        continue
                    raise SafetyViolation(f"node {core.node_id} lost acked entry {index}")
