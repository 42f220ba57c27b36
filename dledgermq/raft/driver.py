"""`RaftDriver`: the one implementation of the driver contract of `ready.py` (DESIGN §5.2).

Goal: turn the pure core into a node: persist what it asks, send what it emits, hold the
messages that promise durability (vote grants, append acknowledgements) until the writes
before them are durable, and answer proposals once their entry commits. It is pure too
(no clock, threads or I/O; collaborators are callables), so the simulator drives exactly
this code under seeded faults, and `actors/raft_node.py` is a thin pykka shell around it.

Method: every input (`tick`, `step`, `propose`, `persisted`, `transfer`) ends with one
drain of the core's `Ready` (a `propose(..., drain=False)` leaves it to the next input or
an explicit `drain()`, so a burst of proposals becomes one persist request and one
AppendEntries per follower: group commit at the Raft layer):

1. `messages` go to `send` at once (they promise nothing durable, so they may leave
   before the writes below are even handed over: a follower starts on an AppendEntries
   while the leader's own write is on its way to the disk, Raft thesis §10.2.1);
2. its writes become `PersistRequest(seq, ...)` with the next `seq`, handed to `persist`
   (the storage makes them durable in seq order and later calls `persisted(seq, ...)`);
3. `messages_after_persist` are held, tagged with the seq of the latest persist request
   (sent at once when no request is waiting); `persisted(seq, last_term, last_index)`
   releases every held batch with tag <= seq, in order, then tells the core.

Proposals: a leader first hands the payload to `prepare(payload, reply, term, index)` if
given (the broker encodes records at their CommitLog place) and keeps the reply it returns
under (term, index): `reply.ok(index)` once the commit index covers it and the log still
holds that term there (a leader counts itself only up to its persisted index, so it
acknowledges only what a majority made durable; `ok` comes before the `on_commit` that
covers the entry, which the broker relies on to register the reply first). When the node
leaves that term or stops leading, the reply fails with `NotLeader` (the entry may still
commit under the new leader: the outcome is unknown to the client). During a transfer a
proposal gets `Busy`. `prepare` refuses a payload by raising `PrepareRefused(error)`; the
reply then fails with that error.
Pending replies are capped at `pending_proposals_max` (Busy beyond). These refusals are
Raft's own values (`outcomes.py`); the broker maps them to its errors.

Callbacks after a drain: `on_commit(index, term)` when the committed and locally durable
prefix grows; `on_role_change(role, term, leader)` when any of them changed; `on_ready`
(tests and the simulator) sees every Ready before it is acted on. With `compact_keep`, the
core's in-memory log drops the applied prefix except the last `compact_keep` entries (the
log must have a cold source). With `preferred_leader`, a leader hands over to that node
once it has caught up, tried every `HANDOVER_EVERY_TICKS` ticks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from dledgermq.raft.core import RaftCore
from dledgermq.raft.messages import AppendEntriesResponse, Message
from dledgermq.raft.outcomes import Busy, NotLeader, PrepareRefused
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

HANDOVER_EVERY_TICKS = 20
T_contra = TypeVar("T_contra", contravariant=True)


class Reply(Protocol[T_contra]):
    """Settle once with a value or an error (bridge.Reply and test replies fit)."""

    def ok(self, value: T_contra) -> None: ...

    def fail(self, error: BaseException) -> None: ...


@dataclass(frozen=True, slots=True)
class PersistRequest:
    """One Ready's writes, in this order: cut at `truncate_from`, append `entries`, write
    `hard_state`."""

    seq: int
    truncate_from: Index | None
    entries: tuple[Entry, ...]
    hard_state: HardState | None


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


Prepare = Callable[[object, Reply[Index], Term, Index], tuple[object, Reply[Index]]]


@dataclass(frozen=True, slots=True)
class DriverIO:
    """The node's collaborators (see the module docstring); `persist` must not block."""

    persist: Callable[[PersistRequest], None]
    send: Callable[[Message], None]
    on_commit: Callable[[Index, Term], None] | None = None
    on_role_change: Callable[[Role, Term, NodeId | None], None] | None = None
    prepare: Prepare | None = None
    compact_keep: int | None = None
    preferred_leader: NodeId | None = None
    on_ready: Callable[[RaftCore, Ready], None] | None = None


class RaftDriver:
    def __init__(self, core: RaftCore, io: DriverIO, *, pending_proposals_max: int) -> None:
        """Drive `core`, whose log and hard state must all be durable already."""
        self.core = core
        self._io = io
        self._pending_max = pending_proposals_max
        # (term, index, reply) in proposal order, which is index order: settling looks only
        # at the front, so a drain costs what it settles, not the number pending.
        self._pending: deque[tuple[Term, Index, Reply[Index]]] = deque()
        self._held: deque[tuple[int, list[Message]]] = deque()
        self._requested_seq = 0  # The seq of the latest persist request.
        self._durable_seq = 0
        self._committed = core.log.commit_index
        self._role_seen: tuple[Role, Term, NodeId | None] | None = None
        self._ticks = 0

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        self.core.tick()
        self._ticks += 1
        if self._ticks % HANDOVER_EVERY_TICKS == 0:
            self._hand_over_to_preferred()
        self._drain()

    def step(self, message: Message) -> None:
        self.core.step(message)
        self._drain()

    def propose(self, payload: object, reply: Reply[Index], *, drain: bool = True) -> None:
        core = self.core
        if len(self._pending) >= self._pending_max and core.role is Role.LEADER:
            reply.fail(Busy("too many pending proposals", pending=len(self._pending)))
            return
        if self._io.prepare is not None and core.role is Role.LEADER:
            try:
                payload, reply = self._io.prepare(payload, reply, core.term, core.last_index + 1)
            except PrepareRefused as refused:
                reply.fail(refused.error)
                return
        result = core.propose(payload)
        match result:
            case ProposalRejected(RejectReason.NOT_LEADER):
                reply.fail(self._not_leader("not the leader"))
            case ProposalRejected(RejectReason.TRANSFERRING as reason):
                reply.fail(Busy("leadership transfer in progress", reason=reason))
            case ProposalRejected(reason):
                reply.fail(Busy("too many uncommitted entries", reason=reason))
            case int(index):
                self._pending.append((core.term, index, reply))
        if drain:
            self._drain()

    def persisted(self, seq: int, last_term: Term, last_index: Index) -> None:
        """Every request up to `seq` is durable; the durable log ends at (term, index)."""
        assert seq <= self._requested_seq, (seq, self._requested_seq)
        self._durable_seq = max(self._durable_seq, seq)
        while self._held and self._held[0][0] <= self._durable_seq:
            for message in self._held.popleft()[1]:
                self._io.send(message)
        self.core.on_persisted(last_term, last_index)
        self._drain()

    def transfer(self, to: NodeId, reply: Reply[bool]) -> None:
        if self.core.transfer_leadership(to):
            reply.ok(True)
        else:
            reply.fail(self._not_leader(f"cannot transfer leadership to {to}"))
        self._drain()

    def status(self) -> RaftStatus:
        core = self.core
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

    # -- the drain ------------------------------------------------------------------------

    def drain(self) -> None:
        """Act on what undrained proposals left in the core (cheap when nothing is)."""
        self._drain()

    def _drain(self) -> None:
        ready = self.core.ready()
        if self._io.on_ready is not None:
            self._io.on_ready(self.core, ready)
        # `messages` need nothing durable and `persist` only hands the writes over, so the
        # order of the two is free: sending first lets a follower start on an
        # AppendEntries while the leader's own write is still being handed to its writer.
        for message in ready.messages:
            self._io.send(message)
        if ready.must_persist:
            self._requested_seq += 1
            self._io.persist(
                PersistRequest(
                    self._requested_seq,
                    ready.truncate_from,
                    tuple(ready.entries_to_persist),
                    ready.hard_state,
                )
            )
        if ready.messages_after_persist:
            if self._requested_seq > self._durable_seq:
                self._hold(ready.messages_after_persist)
            else:
                for message in ready.messages_after_persist:
                    self._io.send(message)
        self._settle_proposals(ready)
        self._report(ready)

    def _hold(self, messages: list[Message]) -> None:
        """Hold `messages` until the latest persist request is durable. Answers to the same
        leader waiting on the same request keep only the newest (each heartbeat brings
        one, and a slow or full disk must not make them pile up): dropping an older one
        is like losing it on the network, which Raft repairs."""
        if not self._held or self._held[-1][0] != self._requested_seq:
            self._held.append((self._requested_seq, []))
        batch = self._held[-1][1]
        for message in messages:
            if isinstance(message, AppendEntriesResponse):
                batch[:] = [
                    m
                    for m in batch
                    if not (isinstance(m, AppendEntriesResponse) and m.dst == message.dst)
                ]
            batch.append(message)

    def _settle_proposals(self, ready: Ready) -> None:
        pending, core_log = self._pending, self.core.log
        leading = ready.role is Role.LEADER
        while pending:
            term, index, reply = pending[0]
            if core_log.term_at(index) != term:
                pending.popleft()
                reply.fail(self._not_leader("entry truncated"))
            elif ready.commit_index >= index:
                pending.popleft()
                reply.ok(index)
            elif not leading or term != ready.term:
                pending.popleft()
                reply.fail(self._not_leader("leadership lost"))
            else:
                break  # Everything after it is of this term and not committed either.

    def _report(self, ready: Ready) -> None:
        role = (ready.role, ready.term, ready.leader_id)
        if role != self._role_seen:
            self._role_seen = role
            if self._io.on_role_change is not None:
                self._io.on_role_change(*role)
        applied = min(ready.commit_index, self.core.persisted_index)
        if applied > self._committed:
            self._committed = applied
            if self._io.on_commit is not None:
                term = self.core.log.term_at(applied)
                assert term is not None, applied
                self._io.on_commit(applied, term)
            self._compact(applied)

    def _compact(self, applied: Index) -> None:
        keep, log_ = self._io.compact_keep, self.core.log
        if keep is not None and log_.has_cold and applied - log_.base_index >= 2 * keep:
            log_.compact(applied - keep)

    def _hand_over_to_preferred(self) -> None:
        core, preferred = self.core, self._io.preferred_leader
        if preferred is None or preferred == core.node_id or core.role is not Role.LEADER:
            return
        progress = core.progress(preferred)
        caught_up = progress is not None and progress.match_index == core.last_index
        if core.transferee is None and caught_up:
            core.transfer_leadership(preferred)

    def _not_leader(self, why: str) -> NotLeader:
        return NotLeader(why, leader_id=self.core.leader_id, term=self.core.term)
