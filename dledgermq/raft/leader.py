"""`Leader`: what only the leader of one term has (etcd's tracker plus `stepLeader`).

Owns: the per-follower `Progress`, the heartbeat clock, a leadership transfer in
progress, and the commit rule. One `Leader` lives for one term of one node: `RaftCore`
creates it in `become_leader` and drops it on any step-down, so none of this state can
leak into another term.
Must not: change role, term or vote (it reports "step down" to the core instead), or
write anywhere but the log's commit index and the outbox it was given.
"""

from __future__ import annotations

from collections.abc import Callable

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import AppendEntries, AppendEntriesResponse, Message, TimeoutNow
from dledgermq.raft.progress import Progress, ProgressState
from dledgermq.raft.quorum import committed_index
from dledgermq.raft.types import Entry, Index, NodeId, Term


class Leader:
    """Replication state of the leader of `term`."""

    def __init__(
        self, config: RaftConfig, log: RaftLog, term: Term, send: Callable[[Message], None]
    ) -> None:
        self._config = config
        self._log = log
        self._term = term
        self._send = send
        self._id = config.node_id
        self._others = tuple(p for p in sorted(config.peers) if p != self._id)
        self.progress = {peer: Progress(log.last_index + 1) for peer in self._others}
        self.transferee: NodeId | None = None
        self._transfer_elapsed = 0
        self._heartbeat_elapsed = 0
        self.broadcast_pending = False

    # -- replication ---------------------------------------------------------------------

    def broadcast(self) -> None:
        """Send every follower what it lacks (called once per Ready, which batches)."""
        self.broadcast_pending = False
        for peer in self._others:
            self.send_append(peer)

    def send_append(self, peer: NodeId) -> None:
        """Send `peer` what it lacks, in batches, as far as its window allows."""
        progress = self.progress[peer]
        last_index = self._log.last_index
        inflight_max = self._config.inflight_appends_max
        while not progress.is_paused(inflight_max) and progress.next_index <= last_index:
            entries = self._log.slice(
                progress.next_index, last_index + 1, self._config.entries_per_append_max
            )
            if not entries:
                break  # Below the compacted base and no longer stored: nothing to send.
            entries = _within_bytes(entries, self._config.bytes_per_append_max)
            self._send_entries(peer, progress.next_index - 1, entries, self._log.commit_index)
            progress.sent(entries[-1].index, len(entries))

    def _send_heartbeat(self, peer: NodeId) -> None:
        """An empty AppendEntries that also checks what the follower holds (progress.py)."""
        progress = self.progress[peer]
        commit = min(self._log.commit_index, progress.match_index)
        if progress.state is ProgressState.REPLICATE:
            prev_index = progress.next_index - 1
        else:
            prev_index = progress.match_index
            progress.probe_sent = False  # resend a probe that may have been lost
        self._send_entries(peer, prev_index, (), commit)
        self.send_append(peer)

    def _send_entries(
        self, peer: NodeId, prev_index: Index, entries: tuple[Entry, ...], commit: Index
    ) -> None:
        prev_term = self._log.term_at(prev_index)
        assert prev_term is not None, f"entry {prev_index} was compacted (no snapshots yet)"
        self._send(
            AppendEntries(
                self._id, peer, self._term, self._id, prev_index, prev_term, entries, commit
            )
        )

    def on_append_response(self, message: AppendEntriesResponse, persisted_index: Index) -> None:
        """Take a follower's answer: move its progress, maybe commit, send what is next."""
        progress = self.progress.get(message.src)
        if progress is None:
            return
        progress.recent_active = True
        if message.success:
            if progress.update(min(message.match_index, self._log.last_index)):
                self.maybe_commit(persisted_index)
                self._maybe_send_timeout_now(message.src)
            elif progress.state is ProgressState.PROBE:
                progress.probe_sent = False
        elif message.last_index < progress.match_index <= message.prev_log_index:
            # It answered a check at or past its match with a log ending before the match.
            progress.lost_entries(message.last_index)
        else:
            progress.reject(message.prev_log_index, self._next_hint(message))
        self.send_append(message.src)

    def _next_hint(self, message: AppendEntriesResponse) -> Index:
        """Where to retry after a rejection (fast back-off, thesis §5.3 / etcd)."""
        if message.conflict_term is None:
            return message.last_index + 1
        index = self._log.last_index_of_term(message.conflict_term, message.prev_log_index)
        return index + 1 if index is not None else message.conflict_index

    def maybe_commit(self, persisted_index: Index) -> None:
        """Commit the highest index of this term that a majority has persisted (§5.4.2).

        The leader counts itself only up to `persisted_index` (majority_fsync); followers
        acknowledge only what they persisted. Earlier terms' entries commit with it.
        """
        matches = [min(persisted_index, self._log.last_index)]
        matches.extend(self.progress[peer].match_index for peer in self._others)
        index = committed_index(matches)
        if index > self._log.commit_index and self._log.term_at(index) == self._term:
            self._log.commit_to(index)

    # -- time, liveness, transfer --------------------------------------------------------

    def tick(self) -> None:
        """Heartbeats and the transfer timeout."""
        if self.transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self._config.election_timeout_ticks:
                self.transferee = None
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self._config.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            for peer in self._others:
                self._send_heartbeat(peer)

    def quorum_active(self) -> bool:
        """Whether a majority (self included) was heard from since the last call; resets."""
        active = 1
        for peer in self._others:
            progress = self.progress[peer]
            active += progress.recent_active
            progress.recent_active = False
        return active >= self._config.quorum

    def transfer(self, to: NodeId) -> None:
        """Start handing leadership to `to`: catch it up, then send TimeoutNow."""
        if self.transferee == to:
            return
        self.transferee = to
        self._transfer_elapsed = 0
        if self.progress[to].match_index == self._log.last_index:
            self._send(TimeoutNow(self._id, to, self._term))
        else:
            self.send_append(to)

    def _maybe_send_timeout_now(self, peer: NodeId) -> None:
        if peer == self.transferee and self.progress[peer].match_index == self._log.last_index:
            self._send(TimeoutNow(self._id, peer, self._term))


def _within_bytes(entries: tuple[Entry, ...], limit: int) -> tuple[Entry, ...]:
    """The longest prefix (at least one entry) whose bytes payloads fit `limit`."""
    total = 0
    for count, entry in enumerate(entries):
        payload = entry.payload
        total += len(payload) if isinstance(payload, bytes | bytearray | memoryview) else 0
        if total > limit and count > 0:
            return entries[:count]
    return entries
