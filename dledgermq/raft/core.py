"""`RaftCore`: one Raft node as a pure state machine (etcd's `raft` + `RawNode`).

Owns: the role, term, vote and leader of this node, its log mirror and persisted index,
the follower side of replication, the `Leader` (leader.py: progress, heartbeats, commit,
transfer) while it leads, and the outbox that `ready()` drains.
Must not: do I/O, read a clock, start threads, or use the global `random`. Time passes
only through `tick()`; randomness comes only from the `random.Random` passed in.

Inputs: `tick()`, `step(message)`, `propose(payload)`, `on_persisted(term, index)`,
`transfer_leadership(to)`. Output: `ready()`, which drains everything produced since the
previous call into one `Ready` (see ready.py for the driver's contract). There is no
separate `advance()`: draining is the acknowledgement, and durability is reported back
through `on_persisted`.

Role transitions (thesis §3.4, §9.6)::

    FOLLOWER ── election timeout ──► PRE_CANDIDATE ── majority pre-votes ──► CANDIDATE
       ▲   └──── TimeoutNow, or timeout with pre_vote off ─────────────────────┘  │
       │                                                                   majority votes
       │                                                                         ▼
       └── higher term seen / AppendEntries of this term / lost vote /        LEADER
           leader hears from no majority for an election timeout (check quorum)

Safety rules kept here: votes follow §5.2 and §5.4.1; a leader commits only entries of
its own term by majority match (§5.4.2) and counts itself only for entries it has
persisted (majority_fsync); a leader never truncates its log; a follower never truncates
a committed entry, and stops (`CommittedEntryConflict`) rather than append after one the
leader's log contradicts; vote grants and append acknowledgements are only ever emitted in
`messages_after_persist`.
"""

from __future__ import annotations

import random

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.leader import Leader
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from dledgermq.raft.progress import Progress
from dledgermq.raft.quorum import VoteResult, vote_result
from dledgermq.raft.ready import Ready
from dledgermq.raft.types import (
    NOOP,
    CommittedEntryConflict,
    Entry,
    HardState,
    Index,
    NodeId,
    ProposalRejected,
    RejectReason,
    Role,
    Term,
)


class RaftCore:
    """One Raft node. Not thread-safe: one owner (the RaftNode driver) calls it."""

    def __init__(
        self, config: RaftConfig, rng: random.Random, *, hard_state: HardState, log: RaftLog
    ) -> None:
        """Start as a follower from durable state.

        Args:
            config: validated here.
            rng: the only source of randomness (election timeouts).
            hard_state: the durable term and vote.
            log: the durable log; everything in it counts as persisted.
        """
        self._config = config.validate()
        self._rng = rng
        self._log = log
        self._id = config.node_id
        self._peers = tuple(sorted(config.peers))
        self._others = tuple(p for p in self._peers if p != self._id)
        # A log entry of a later term than the durable hard state means the term bump was
        # lost in a crash after the entries were written; the log's term is a lower bound.
        self._term: Term = max(hard_state.term, log.last_term)
        self._vote = hard_state.vote if self._term == hard_state.term else None
        self._role = Role.FOLLOWER
        self._leader_id: NodeId | None = None
        self._persisted_index: Index = log.last_index
        self._election_elapsed = 0
        self._randomized_election_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        self._leader: Leader | None = None  # only while this node leads
        # The outbox, drained by ready().
        self._last_hard_state = hard_state
        self._entries_to_persist: list[Entry] = []
        self._truncate_from: Index | None = None
        self._messages: list[Message] = []
        self._messages_after_persist: list[Message] = []
        self._reset_election_timer()

    # -- read-only views -----------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def peers(self) -> tuple[NodeId, ...]:
        """Every voter, this node included, in sorted order."""
        return self._peers

    @property
    def term(self) -> Term:
        return self._term

    @property
    def vote(self) -> NodeId | None:
        return self._vote

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> NodeId | None:
        return self._leader_id

    @property
    def commit_index(self) -> Index:
        return self._log.commit_index

    @property
    def last_index(self) -> Index:
        return self._log.last_index

    @property
    def persisted_index(self) -> Index:
        return self._persisted_index

    @property
    def log(self) -> RaftLog:
        """The log mirror, for reading only (the driver maps index -> payload with it)."""
        return self._log

    @property
    def transferee(self) -> NodeId | None:
        return self._leader.transferee if self._leader is not None else None

    def progress(self, peer: NodeId) -> Progress | None:
        """The leader's progress of `peer` (None when not leader), for tests and status."""
        return self._leader.progress.get(peer) if self._leader is not None else None

    # -- inputs --------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time."""
        if self._role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._randomized_election_timeout:
            self._campaign(transfer=False)

    def step(self, message: Message) -> None:
        """Take one message addressed to this node."""
        assert message.dst == self._id, message
        if message.term > self._term:
            if not self._accept_higher_term(message):
                return
        elif message.term < self._term:
            self._answer_stale(message)
            return
        match message:
            case RequestVote():
                self._handle_request_vote(message)
            case RequestVoteResponse():
                self._handle_vote_response(message)
            case AppendEntries():
                self._handle_append_entries(message)
            case AppendEntriesResponse():
                if self._leader is not None:
                    self._leader.on_append_response(message, self._persisted_index)
            case TimeoutNow():
                self._handle_timeout_now(message)

    def propose(self, payload: object) -> Index | ProposalRejected:
        """Append `payload` as a new entry if this node is a leader that accepts writes.

        Returns:
            The entry's index (its term is `self.term`), or why it was rejected.
        """
        if self._role is not Role.LEADER:
            return ProposalRejected(RejectReason.NOT_LEADER, self._leader_id)
        if self.transferee is not None:
            return ProposalRejected(RejectReason.TRANSFERRING, self._id)
        if self._log.last_index - self._log.commit_index >= self._config.pending_proposals_max:
            return ProposalRejected(RejectReason.BUSY, self._id)
        return self._append_as_leader(payload)

    def on_persisted(self, term: Term, index: Index) -> None:
        """The driver made the log durable up to `index`, whose entry has `term`.

        A report about an entry that has since been truncated is ignored: (term, index)
        names one entry cluster-wide, so a matching term means the whole prefix is durable.
        """
        if index <= self._persisted_index or self._log.term_at(index) != term:
            return
        self._persisted_index = index
        if self._leader is not None:
            self._leader.maybe_commit(index)

    def transfer_leadership(self, to: NodeId) -> bool:
        """Hand leadership to `to` (thesis §3.10); return whether a transfer started.

        The leader stops accepting proposals, brings `to` up to date, then sends it
        `TimeoutNow`. The transfer is aborted after an election timeout.
        """
        if self._leader is None or to not in self._others:
            return False
        self._leader.transfer(to)
        return True

    def ready(self) -> Ready:
        """Drain everything produced since the previous call into one `Ready`."""
        if self._leader is not None and self._leader.broadcast_pending:
            self._leader.broadcast()
        hard_state = HardState(self._term, self._vote)
        changed = hard_state if hard_state != self._last_hard_state else None
        self._last_hard_state = hard_state
        ready = Ready(
            entries_to_persist=self._entries_to_persist,
            truncate_from=self._truncate_from,
            hard_state=changed,
            messages=self._messages,
            messages_after_persist=self._messages_after_persist,
            commit_index=self._log.commit_index,
            role=self._role,
            term=self._term,
            leader_id=self._leader_id,
        )
        self._entries_to_persist = []
        self._truncate_from = None
        self._messages = []
        self._messages_after_persist = []
        return ready

    # -- role changes --------------------------------------------------------------------

    def _become_follower(
        self, term: Term, leader_id: NodeId | None, *, reset_timer: bool = True
    ) -> None:
        assert term >= self._term, f"term {term} < {self._term}"
        if term > self._term:
            self._term = term
            self._vote = None
        self._role = Role.FOLLOWER
        self._leader_id = leader_id
        elapsed, timeout = self._election_elapsed, self._randomized_election_timeout
        self._leave_role()
        if not reset_timer:
            self._election_elapsed, self._randomized_election_timeout = elapsed, timeout

    def _become_pre_candidate(self) -> None:
        self._role = Role.PRE_CANDIDATE
        self._leader_id = None
        self._leave_role()
        self._votes = {self._id: True}
        if vote_result(self._peers, self._votes) is VoteResult.WON:
            self._become_candidate(transfer=False)
            return
        for peer in self._others:
            self._send(self._request_vote(peer, self._term + 1, pre_vote=True, transfer=False))

    def _become_candidate(self, *, transfer: bool) -> None:
        self._term += 1
        self._vote = self._id
        self._role = Role.CANDIDATE
        self._leader_id = None
        self._leave_role()
        self._votes = {self._id: True}
        if vote_result(self._peers, self._votes) is VoteResult.WON:
            self._become_leader()
            return
        for peer in self._others:
            # The self-vote must be durable before anyone can count on this election.
            self._send_after_persist(
                self._request_vote(peer, self._term, pre_vote=False, transfer=transfer)
            )

    def _become_leader(self) -> None:
        assert self._role is Role.CANDIDATE, self._role
        self._role = Role.LEADER
        self._leader_id = self._id
        self._leave_role()
        self._leader = Leader(self._config, self._log, self._term, self._send)
        # The no-op lets the leader commit (and so learn) everything before its term (§8).
        self._append_as_leader(NOOP)

    def _leave_role(self) -> None:
        """Reset what belongs to the previous role (timers, votes, leader state)."""
        self._election_elapsed = 0
        self._reset_election_timer()
        self._votes = {}
        self._leader = None

    def _reset_election_timer(self) -> None:
        timeout = self._config.election_timeout_ticks
        self._randomized_election_timeout = self._rng.randrange(timeout, 2 * timeout)

    def _campaign(self, *, transfer: bool) -> None:
        if self._config.pre_vote and not transfer:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=transfer)

    # -- term rules ----------------------------------------------------------------------

    def _in_lease(self, *, pre_vote: bool) -> bool:
        """Whether this node heard from a leader within the election timeout.

        Real votes respect the lease only under check quorum (a leader that lost its
        majority steps down, so the lease cannot outlive it); pre-votes always do.
        """
        if not (pre_vote or self._config.check_quorum):
            return False
        return (
            self._leader_id is not None
            and self._election_elapsed < self._config.election_timeout_ticks
        )

    def _accept_higher_term(self, message: Message) -> bool:
        """Apply the higher-term rule (§5.1, thesis §9.6); return whether to go on."""
        if isinstance(message, RequestVote):
            if not message.transfer and self._in_lease(pre_vote=message.pre_vote):
                return False
            if not message.pre_vote:
                # Only a granted vote resets the election timer (§5.2): a node that cannot
                # win must not line everybody's timers up by bumping the term (seed 12726).
                self._become_follower(message.term, None, reset_timer=False)
            return True
        if isinstance(message, RequestVoteResponse) and message.pre_vote and message.vote_granted:
            return True  # a pre-vote grant echoes the term asked for; nobody bumps the term
        leader = message.src if isinstance(message, AppendEntries | TimeoutNow) else None
        self._become_follower(message.term, leader)
        return True

    def _answer_stale(self, message: Message) -> None:
        """Tell a sender of an older term about ours, where that helps it move on."""
        match message:
            case AppendEntries():
                # Lets a deposed leader (e.g. back from a partition) step down.
                self._send_after_persist(
                    AppendEntriesResponse(
                        self._id,
                        message.src,
                        self._term,
                        success=False,
                        prev_log_index=message.prev_log_index,
                        last_index=self._log.last_index,
                    )
                )
            case RequestVote(pre_vote=True):
                self._send(
                    RequestVoteResponse(self._id, message.src, self._term, False, pre_vote=True)
                )
            case RequestVote():
                self._send_after_persist(
                    RequestVoteResponse(self._id, message.src, self._term, False)
                )
            case _:
                pass

    # -- elections -----------------------------------------------------------------------

    def _request_vote(
        self, peer: NodeId, term: Term, *, pre_vote: bool, transfer: bool
    ) -> RequestVote:
        return RequestVote(
            self._id,
            peer,
            term,
            last_log_index=self._log.last_index,
            last_log_term=self._log.last_term,
            pre_vote=pre_vote,
            transfer=transfer,
        )

    def _handle_request_vote(self, message: RequestVote) -> None:
        can_vote = (
            self._vote == message.src
            or (self._vote is None and self._leader_id is None)
            or (message.pre_vote and message.term > self._term)
        )
        grant = can_vote and self._log.is_up_to_date(message.last_log_term, message.last_log_index)
        if message.pre_vote:
            term = message.term if grant else self._term
            self._send(RequestVoteResponse(self._id, message.src, term, grant, pre_vote=True))
            return
        if grant:
            self._vote = message.src
            self._election_elapsed = 0
        self._send_after_persist(RequestVoteResponse(self._id, message.src, self._term, grant))

    def _handle_vote_response(self, message: RequestVoteResponse) -> None:
        if message.pre_vote:
            if self._role is not Role.PRE_CANDIDATE:
                return
            if message.vote_granted and message.term != self._term + 1:
                return
        elif self._role is not Role.CANDIDATE:
            return
        self._votes.setdefault(message.src, message.vote_granted)
        result = vote_result(self._peers, self._votes)
        if result is VoteResult.WON:
            if self._role is Role.PRE_CANDIDATE:
                self._become_candidate(transfer=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self._term, None)

    def _handle_timeout_now(self, message: TimeoutNow) -> None:
        if self._role is Role.LEADER:
            return
        assert message.src == self._leader_id or self._leader_id is None, message
        self._campaign(transfer=True)

    # -- replication: follower side ------------------------------------------------------

    def _handle_append_entries(self, message: AppendEntries) -> None:
        assert self._role is not Role.LEADER, f"two leaders in term {self._term}"
        if self._role is not Role.FOLLOWER:
            self._become_follower(self._term, message.src)
        self._leader_id = message.src
        self._election_elapsed = 0
        prev_index, prev_term = message.prev_log_index, message.prev_log_term
        entries = message.entries
        commit_index = self._log.commit_index
        if prev_index <= commit_index:
            # The committed prefix matches the leader's log (leader completeness), so skip
            # what the message repeats of it, once it is checked to match (the entry at
            # `prev_index` too: a probe at the commit index with another term must stop
            # the node, or leader and follower reject each other forever).
            self._check_committed(prev_index, prev_term, entries[: commit_index - prev_index])
            entries = entries[commit_index - prev_index :]
            prev_index = commit_index
            term = self._log.term_at(commit_index)
            assert term is not None
            prev_term = term
        local_term = self._log.term_at(prev_index)
        if local_term != prev_term:
            self._reject_append(message, local_term)
            return
        self._append_as_follower(entries)
        match_index = max(prev_index + len(entries), commit_index)
        self._log.commit_to(min(message.leader_commit, match_index))
        self._send_after_persist(
            AppendEntriesResponse(
                self._id,
                message.src,
                self._term,
                success=True,
                prev_log_index=message.prev_log_index,
                match_index=match_index,
                last_index=self._log.last_index,
            )
        )

    def _check_committed(
        self, prev_index: Index, prev_term: Term, entries: tuple[Entry, ...]
    ) -> None:
        """Raise `CommittedEntryConflict` if the leader's log differs from ours at or below
        our commit index (where this node can still tell: the terms it knows)."""
        for index, term in ((prev_index, prev_term), *((e.index, e.term) for e in entries)):
            local = self._log.term_at(index)
            if local is not None and local != term:
                raise CommittedEntryConflict(index, local, term)

    def _reject_append(self, message: AppendEntries, local_term: Term | None) -> None:
        conflict_index = 0
        if local_term is not None:
            conflict_index = self._log.first_index_of_term(message.prev_log_index)
        self._send_after_persist(
            AppendEntriesResponse(
                self._id,
                message.src,
                self._term,
                success=False,
                prev_log_index=message.prev_log_index,
                conflict_term=local_term,
                conflict_index=conflict_index,
                last_index=self._log.last_index,
            )
        )

    def _append_as_follower(self, entries: tuple[Entry, ...]) -> None:
        """Append what is new in `entries`, truncating a conflicting suffix first (§5.3)."""
        for position, entry in enumerate(entries):
            local_term = self._log.term_at(entry.index)
            if local_term == entry.term:
                continue
            if local_term is not None:
                self._truncate_from_index(entry.index)
            new = list(entries[position:])
            self._log.append(new)
            self._entries_to_persist.extend(new)
            return

    def _truncate_from_index(self, index: Index) -> None:
        assert self._role is not Role.LEADER, "a leader never truncates its own log"
        assert index > self._log.commit_index, (index, self._log.commit_index)
        self._log.truncate_from(index)
        self._persisted_index = min(self._persisted_index, index - 1)
        self._entries_to_persist = [e for e in self._entries_to_persist if e.index < index]
        if self._truncate_from is None or index < self._truncate_from:
            self._truncate_from = index

    # -- replication: leader side --------------------------------------------------------

    def _append_as_leader(self, payload: object) -> Index:
        assert self._leader is not None
        entry = Entry(self._term, self._log.last_index + 1, payload)
        self._log.append([entry])
        self._entries_to_persist.append(entry)
        self._leader.broadcast_pending = True
        return entry.index

    def _tick_leader(self) -> None:
        assert self._leader is not None
        self._election_elapsed += 1
        if self._election_elapsed >= self._config.election_timeout_ticks:
            self._election_elapsed = 0
            if self._config.check_quorum and not self._leader.quorum_active():
                self._become_follower(self._term, None)
                return
        self._leader.tick()

    # -- outbox --------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._messages.append(message)

    def _send_after_persist(self, message: Message) -> None:
        self._messages_after_persist.append(message)
