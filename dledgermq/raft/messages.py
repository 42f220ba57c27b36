"""The messages Raft nodes exchange (one-way, etcd style: a response is just a message).

Owns: the message dataclasses and the `Message` union.
Must not: encode bytes (the transport's codec does that) or carry behaviour.

Every message has `src`, `dst` and `term` (the sender's term, except a granted pre-vote,
which echoes the term the pre-candidate asked for: thesis §9.6, etcd).
"""

from __future__ import annotations

from dataclasses import dataclass

from dledgermq.raft.types import Entry, Index, NodeId, Term


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A (pre-)candidate asks for a vote in `term` (§5.2).

    A pre-vote (`pre_vote`) asks "would you vote for me in `term`?" without the sender or
    the voter changing term. `transfer` marks the election a leader asked for with
    `TimeoutNow`: voters then grant even if they heard from a leader recently.
    """

    src: NodeId
    dst: NodeId
    term: Term
    last_log_index: Index
    last_log_term: Term
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    src: NodeId
    dst: NodeId
    term: Term
    vote_granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Entries after `prev_log_index` (none for a heartbeat), and the leader's commit."""

    src: NodeId
    dst: NodeId
    term: Term
    leader_id: NodeId
    prev_log_index: Index
    prev_log_term: Term
    entries: tuple[Entry, ...]
    leader_commit: Index


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """The answer to the AppendEntries that had `prev_log_index`.

    On success, `match_index` is the highest index known to match the leader's log. On
    failure the fast back-off hints say where to retry: `conflict_term` is the follower's
    term at `prev_log_index` and `conflict_index` the first index it holds of that term;
    when the follower is too short `conflict_term` is None. `last_index` is always the
    follower's last index.
    """

    src: NodeId
    dst: NodeId
    term: Term
    success: bool
    prev_log_index: Index
    match_index: Index = 0
    conflict_term: Term | None = None
    conflict_index: Index = 0
    last_index: Index = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """The leader tells the target of a leadership transfer to start an election now."""

    src: NodeId
    dst: NodeId
    term: Term


Message = RequestVote | RequestVoteResponse | AppendEntries | AppendEntriesResponse | TimeoutNow
