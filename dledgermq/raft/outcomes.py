"""What the driver answers a proposal or a leadership transfer with when it does not succeed.

`Reply.fail` takes an exception, so these are exceptions; they carry Raft facts only (a
node id, a term, why), no HTTP status and no wire code. The broker's side of the Raft
node (`actors/raft_node.py`) turns them into its own errors (errors.py: `NOT_LEADER` 421,
`BUSY` 503) before any reply leaves it, so the API and the broker's own proposers see
exactly what they saw when the driver raised those directly.

- `NotLeader`: this node does not lead, or lost the term the proposal was taken in (the
  entry may still commit under the new leader: the outcome is unknown to the client);
- `Busy`: admission refused: too many pending proposals, too many uncommitted entries,
  or a leadership transfer in progress;
- `PrepareRefused`: raised by `DriverIO.prepare` to refuse a payload (the storage's
  reason, e.g. a full disk); the driver fails the reply with its `error`, unchanged.
"""

from __future__ import annotations

from dledgermq.raft.types import NodeId, RejectReason, Term


class RaftRefusal(Exception):
    """A proposal or transfer the driver did not take (or whose entry it lost); the
    message says why."""


class NotLeader(RaftRefusal):
    """`leader_id` is the leader this node knows of in `term` (None while electing)."""

    def __init__(self, why: str, *, leader_id: NodeId | None, term: Term) -> None:
        super().__init__(f"{why}; leader is {leader_id}")
        self.leader_id = leader_id
        self.term = term
        self.reason = RejectReason.NOT_LEADER


class Busy(RaftRefusal):
    """Retry later. `pending` is set when the pending proposals are at their cap, `reason`
    when the core refused (`RejectReason.BUSY` or `RejectReason.TRANSFERRING`)."""

    def __init__(
        self, why: str, *, pending: int | None = None, reason: RejectReason | None = None
    ) -> None:
        super().__init__(why)
        self.pending = pending
        self.reason = reason


class PrepareRefused(Exception):
    """`DriverIO.prepare` refused the payload: the reply fails with `error` as it is."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
