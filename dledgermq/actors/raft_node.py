"""RaftNodeActor: drives one `RaftCore` (the driver contract of raft/ready.py) on one thread.

Goal: turn the pure core into a live node: persist what it asks, send what it emits, hold
the messages that promise durability (vote grants, append acknowledgements) until the
storage says the writes are durable, and answer proposals once their entry commits.

Method: every message is handled, then `_drain()` takes one `Ready`:

1. its writes become `PersistRequest(seq, ...)` with the next `seq`, handed to
   `storage.persist` (the storage must make them durable in seq order, a FIFO);
2. `messages` go to `send` at once;
3. `messages_after_persist` are held, tagged with the seq of the latest persist request
   (sent at once when no request is waiting). The storage later tells
   `Persisted(seq, last_term, last_index)`: every held batch with tag <= seq leaves, in
   order, then `core.on_persisted(last_term, last_index)` and another drain.

Proposals: `Propose(payload, reply)` -> `reply.ok(index)` once `commit_index >= index` and
the log still holds the proposal's term at that index (so a leader, which counts itself only
up to its persisted index, acknowledges only what a majority made durable). When the node
leaves that term or stops leading, every pending reply fails with `NotLeader` carrying the
known leader: the entry may still commit under the new leader, so the outcome is unknown
to the client, which retries with the same unique key. A proposal during a leadership
transfer gets `Busy` (retryable: this node still leads; a retry after the transfer gets
`NotLeader` with the new leader). Pending replies are capped at `pending_proposals_max`.

Preparing proposals: a leader hands each payload to `prepare(payload, reply, term, index)`
first (the broker encodes the batch as records at their CommitLog place, DESIGN.md §6) and
replicates what it returns; an `MQError` it raises fails the proposal alone.

Compaction: with `compact_keep` set (and a cold source in the core's log), the in-memory
mirror drops the applied prefix except the last `compact_keep` entries, so memory stays
bounded however long the log grows; older entries are read back from storage on demand.

Callbacks (plain callables, called on this actor's thread after a drain):
`on_commit(index, term)` when `min(commit_index, persisted_index)` advances (the entries
up to `index` are committed *and* durable here; `term` is the term of the entry at
`index`): the store's confirm offset is the end of that entry. `on_role_change(role, term,
leader_id)` when any of the three changed.

Owns: the core, the pending replies, the held after-persist batches. Must not: block, do
I/O itself, or `.get()` another actor.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.errors import Busy, MQError, NotLeader
from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import Message
from dledgermq.raft.ready import Ready
from dledgermq.raft.types import (
    Entry,
    HardState,
    Index,
    NodeId,
    ProposalRejected,
    RejectReason,
    Role,
    Term,
)

log = logging.getLogger(__name__)
HANDOVER_EVERY_TICKS = 20

__all__ = [
    "Inbound",
    "PersistRequest",
    "Persisted",
    "Propose",
    "RaftIO",
    "RaftNodeActor",
    "RaftStatus",
    "RaftStorage",
    "Status",
    "Tick",
    "TransferLeadership",
]

# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """A Raft message from a peer, addressed to this node."""

    message: Message


@dataclass(frozen=True, slots=True)
class Propose:
    """Replicate `payload`; `reply.ok(index)` once committed, else NotLeader or Busy."""

    payload: object
    reply: ReplyTo[Index]


@dataclass(frozen=True, slots=True)
class Persisted:
    """From the storage: every request up to `seq` is durable; the durable log ends at
    `(last_term, last_index)`. May be told from any thread."""

    seq: int
    last_term: Term
    last_index: Index


@dataclass(frozen=True, slots=True)
class TransferLeadership:
    """Hand leadership to `to`; `reply.ok(True)` when the transfer started, else NotLeader."""

    to: NodeId
    reply: ReplyTo[bool]


@dataclass(frozen=True, slots=True)
class RaftStatus:
    node_id: NodeId
    role: Role
    term: Term
    leader_id: NodeId | None
    commit_index: Index
    last_index: Index
    persisted_index: Index
    pending_proposals: int
    held_batches: int
    # On a leader: each other voter's match index (what it holds in agreement).
    match_index: dict[NodeId, Index]


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the node (status pages, tests)."""

    reply: ReplyTo[RaftStatus]


# -- collaborators ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistRequest:
    """One Ready's writes, in this order: cut at `truncate_from`, append `entries`, write
    `hard_state`."""

    seq: int
    truncate_from: Index | None
    entries: tuple[Entry, ...]
    hard_state: HardState | None


class RaftStorage(Protocol):
    """The durable log and hard state (the CommitLog writer and flusher in the broker).

    `persist` must not block; the storage makes requests durable in seq order and then
    tells the actor `Persisted(seq, last_term, last_index)` (one answer may cover several).
    """

    def persist(self, request: PersistRequest) -> None: ...


Send = Callable[[Message], None]
OnCommit = Callable[[Index, Term], None]
OnRoleChange = Callable[[Role, Term, NodeId | None], None]
Prepare = Callable[[object, ReplyTo[Index], Term, Index], tuple[object, ReplyTo[Index]]]


@dataclass(frozen=True, slots=True)
class RaftIO:
    """The node's collaborators; every callable is called on the actor's thread.

    Args:
        storage: makes `PersistRequest`s durable, answers `Persisted`.
        send: hands a message to the network (must not block).
        on_commit: `(index, term)` when the committed and locally durable prefix grows.
        on_role_change: `(role, term, leader_id)` when any of them changed.
        prepare: `(payload, reply, term, index) -> (entry payload, reply to settle)` for a
            proposal the leader is about to append as entry (term, index).
        compact_keep: applied entries kept in memory (None: never compact).
        preferred_leader: a leader hands over to this node once it has caught up
            (DLedger's preferredLeaderId), tried at most once per `HANDOVER_EVERY_TICKS`.
    """

    storage: RaftStorage
    send: Send
    on_commit: OnCommit | None = None
    on_role_change: OnRoleChange | None = None
    prepare: Prepare | None = None
    compact_keep: int | None = None
    preferred_leader: NodeId | None = None


class RaftNodeActor(FailStopActor):
    def __init__(
        self,
        config: RaftConfig,
        io: RaftIO,
        *,
        hard_state: HardState,
        log: RaftLog,
        rng: random.Random | None = None,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        """Start from the durable `hard_state` and `log` (everything in it is durable)."""
        super().__init__(on_fatal)
        self._core = RaftCore(config, rng or random.Random(), hard_state=hard_state, log=log)
        self._storage = io.storage
        self._send = io.send
        self._on_commit = io.on_commit
        self._on_role_change = io.on_role_change
        self._prepare = io.prepare
        self._compact_keep = io.compact_keep
        self._preferred = io.preferred_leader
        self._ticks = 0
        self._pending_max = config.pending_proposals_max
        self._pending: dict[tuple[Term, Index], ReplyTo[Index]] = {}
        self._held: deque[tuple[int, list[Message]]] = deque()
        self._requested_seq = 0  # The seq of the latest persist request.
        self._durable_seq = 0
        self._committed = log.commit_index
        self._role_seen: tuple[Role, Term, NodeId | None] | None = None

    def on_receive(self, message: object) -> None:
        match message:
            case Tick():
                self._core.tick()
                self._ticks += 1
                if self._ticks % HANDOVER_EVERY_TICKS == 0:
                    self._hand_over_to_preferred()
            case Inbound(raft_message):
                self._core.step(raft_message)
            case Propose(payload, reply):
                self._propose(payload, reply)
            case Persisted(seq, last_term, last_index):
                self._persisted(seq, last_term, last_index)
            case TransferLeadership(to, reply):
                if self._core.transfer_leadership(to):
                    reply.ok(True)
                else:
                    reply.fail(self._not_leader(f"cannot transfer leadership to {to}"))
            case Status(reply):
                reply.ok(self._status())
                return
            case _:
                raise AssertionError(f"unexpected message {message!r}")
        self._drain()

    # -- handlers -------------------------------------------------------------------------

    def _propose(self, payload: object, reply: ReplyTo[Index]) -> None:
        core = self._core
        if len(self._pending) >= self._pending_max and core.role is Role.LEADER:
            reply.fail(Busy("too many pending proposals", pending=len(self._pending)))
            return
        if self._prepare is not None and core.role is Role.LEADER:
            try:
                payload, reply = self._prepare(payload, reply, core.term, core.last_index + 1)
            except MQError as exc:
                reply.fail(exc)
                return
        result = core.propose(payload)
        match result:
            case ProposalRejected(RejectReason.NOT_LEADER):
                reply.fail(self._not_leader("not the leader"))
            case ProposalRejected(RejectReason.TRANSFERRING):
                reply.fail(Busy("leadership transfer in progress", leader=self._core.node_id))
            case ProposalRejected():
                reply.fail(Busy("too many uncommitted entries", leader=self._core.node_id))
            case int(index):
                self._pending[(core.term, index)] = reply

    def _persisted(self, seq: int, last_term: Term, last_index: Index) -> None:
        assert seq <= self._requested_seq, (seq, self._requested_seq)
        self._durable_seq = max(self._durable_seq, seq)
        while self._held and self._held[0][0] <= self._durable_seq:
            for message in self._held.popleft()[1]:
                self._send(message)
        self._core.on_persisted(last_term, last_index)

    def _hand_over_to_preferred(self) -> None:
        core, preferred = self._core, self._preferred
        if preferred is None or preferred == core.node_id or core.role is not Role.LEADER:
            return
        progress = core.progress(preferred)
        caught_up = progress is not None and progress.match_index == core.last_index
        if core.transferee is None and caught_up:
            log.info("raft node %s: handing over to preferred %s", core.node_id, preferred)
            core.transfer_leadership(preferred)

    # -- the driver loop ------------------------------------------------------------------

    def _drain(self) -> None:
        ready = self._core.ready()
        if ready.must_persist:
            self._requested_seq += 1
            request = PersistRequest(
                self._requested_seq,
                ready.truncate_from,
                tuple(ready.entries_to_persist),
                ready.hard_state,
            )
            self._storage.persist(request)
        for message in ready.messages:
            self._send(message)
        if ready.messages_after_persist:
            if self._requested_seq > self._durable_seq:
                self._held.append((self._requested_seq, list(ready.messages_after_persist)))
            else:
                for message in ready.messages_after_persist:
                    self._send(message)
        self._settle_proposals(ready)
        self._report(ready)

    def _settle_proposals(self, ready: Ready) -> None:
        if not self._pending:
            return
        leading = ready.role is Role.LEADER
        core_log = self._core.log
        for key in list(self._pending):
            term, index = key
            if core_log.term_at(index) != term:
                self._pending.pop(key).fail(self._not_leader("entry truncated"))
            elif ready.commit_index >= index:
                self._pending.pop(key).ok(index)
            elif not leading or term != ready.term:
                self._pending.pop(key).fail(self._not_leader("leadership lost"))

    def _report(self, ready: Ready) -> None:
        role = (ready.role, ready.term, ready.leader_id)
        if role != self._role_seen:
            self._role_seen = role
            log.info("raft node %s: %s in term %s, leader %s", self._core.node_id, *role)
            if self._on_role_change is not None:
                self._on_role_change(*role)
        applied = min(ready.commit_index, self._core.persisted_index)
        if applied > self._committed:
            self._committed = applied
            if self._on_commit is not None:
                term = self._core.log.term_at(applied)
                assert term is not None, applied
                self._on_commit(applied, term)
            self._compact(applied)

    def _compact(self, applied: Index) -> None:
        keep, log_ = self._compact_keep, self._core.log
        if keep is not None and log_.has_cold and applied - log_.base_index >= 2 * keep:
            log_.compact(applied - keep)

    # -- helpers --------------------------------------------------------------------------

    def _not_leader(self, why: str) -> NotLeader:
        leader = self._core.leader_id
        return NotLeader(f"{why}; leader is {leader}", leader=leader, term=self._core.term)

    def _status(self) -> RaftStatus:
        core = self._core
        return RaftStatus(
            node_id=core.node_id,
            role=core.role,
            term=core.term,
            leader_id=core.leader_id,
            commit_index=core.commit_index,
            last_index=core.last_index,
            persisted_index=core.persisted_index,
            pending_proposals=len(self._pending),
            held_batches=len(self._held),
            match_index={
                peer: progress.match_index
                for peer in core.peers
                if (progress := core.progress(peer)) is not None and peer != core.node_id
            },
        )
