"""Value types shared by the whole Raft core: ids, roles, log entries, the hard state.

Owns: the vocabulary (`NodeId`, `Term`, `Index`, `Role`, `Entry`, `HardState`, `NOOP`).
Must not: hold behaviour or state; everything here is an immutable value.

Decision on `HardState`: it is `(term, vote)` only. etcd also persists `commit`; we do not,
because a restarted node learns the commit index again from the leader (a follower's commit
index is only ever `min(leader_commit, last new entry)`), and a restarted leader-to-be
recomputes it from a majority's match indexes. Keeping commit out of the hard state means
the hard state changes (and must be fsynced) only on a new term or a vote, never per commit.
The price: a restarted node applies nothing until it hears from a leader; the broker's
dispatch checkpoint (docs/ARCHITECTURE.md) already remembers how far it had applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

NodeId = int
Term = int
Index = int


class Role(enum.Enum):
    """The role of a node in its current term (thesis §3.4 plus §9.6 pre-vote)."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class _Noop:
    """The payload of the entry a new leader appends at the start of its term (§8)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOOP"

    def __reduce__(self) -> str:
        # Pickling (or copying) returns the module-level singleton, so `is NOOP` holds.
        return "NOOP"


NOOP: Final = _Noop()


@dataclass(frozen=True, slots=True)
class Entry:
    """One Raft log entry. In dledgermq one entry is one producer batch (a run of records).

    `payload` is opaque to the core: bytes in the simulator, a handle or bytes in the
    broker, or `NOOP`. The core never inspects it.
    """

    term: Term
    index: Index
    payload: object

    @property
    def is_noop(self) -> bool:
        return self.payload is NOOP


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a vote or an append acknowledgement leaves the node.

    `vote` is the candidate voted for in `term`, or None.
    """

    term: Term = 0
    vote: NodeId | None = None


class RejectReason(enum.Enum):
    """Why a proposal was not accepted."""

    NOT_LEADER = "not_leader"
    BUSY = "busy"
    TRANSFERRING = "transferring"


@dataclass(frozen=True, slots=True)
class ProposalRejected:
    """`propose()` refused the payload; `leader_id` is the known leader (None if unknown)."""

    reason: RejectReason
    leader_id: NodeId | None = None


class CommittedEntryConflict(RuntimeError):
    """The leader's log differs from this node's at an entry this node knows committed.

    Raft's leader completeness makes that impossible while every acknowledged write is
    durable on a majority; it happens when committed entries were lost everywhere but
    here (`durability: majority_memory` and a power loss of a majority, or a disk that
    lied about an fsync). Appending after them would make the replicas differ for good,
    so the node stops instead (fail-stop) and says which entry."""

    def __init__(self, index: Index, local_term: Term, leader_term: Term) -> None:
        super().__init__(
            f"entry {index} is committed here in term {local_term} but the leader's log has "
            f"term {leader_term} there: committed entries from {index} on were lost on the "
            "other nodes (durability majority_memory and a power loss of a majority?). This "
            "node cannot rejoin with its log: keep its hard_state file (term and vote), move "
            "the rest of its data directory aside and restart it; it then copies the "
            "group's log from the leader"
        )
        self.index, self.local_term, self.leader_term = index, local_term, leader_term
