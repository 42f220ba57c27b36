"""`RaftConfig`: the static settings of one Raft node, validated once.

Owns: defaults and their relationships. Must not: read files or the environment (the
broker's `config.py` builds a `RaftConfig` from cluster.yml).
"""

from __future__ import annotations

from dataclasses import dataclass

from dledgermq.raft.types import NodeId


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Settings of one node in one Raft group.

    Args:
        node_id: this node.
        peers: every voter of the group, this node included.
        election_timeout_ticks: T; a follower's timeout is drawn from [T, 2T).
        heartbeat_interval_ticks: how often the leader sends heartbeats.
        entries_per_append_max: entries in one AppendEntries.
        bytes_per_append_max: payload bytes in one AppendEntries (bytes payloads are
            measured with len(); one entry is always sent, however large).
        inflight_appends_max: unacknowledged AppendEntries per follower (pipelining).
        pending_proposals_max: uncommitted entries a leader holds before it answers BUSY.
        check_quorum: a leader steps down when it has not heard from a majority within an
            election timeout, and voters ignore vote requests while they have a leader.
        pre_vote: run a pre-vote round before bumping the term (thesis §9.6).
    """

    node_id: NodeId
    peers: tuple[NodeId, ...]
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 2
    entries_per_append_max: int = 64
    bytes_per_append_max: int = 4 * 1024 * 1024
    inflight_appends_max: int = 16
    pending_proposals_max: int = 10_000
    check_quorum: bool = True
    pre_vote: bool = True

    def validate(self) -> RaftConfig:
        """Check every relationship once; return self so construction can chain.

        Raises:
            ValueError: a setting is out of range or inconsistent with another.
        """
        problems = []
        if self.node_id not in self.peers:
            problems.append(f"node_id {self.node_id} is not in peers {self.peers}")
        if len(set(self.peers)) != len(self.peers):
            problems.append(f"peers are not unique: {self.peers}")
        if self.heartbeat_interval_ticks < 1:
            problems.append("heartbeat_interval_ticks must be >= 1")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            problems.append("election_timeout_ticks must exceed heartbeat_interval_ticks")
        for name in (
            "entries_per_append_max",
            "bytes_per_append_max",
            "inflight_appends_max",
            "pending_proposals_max",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def quorum(self) -> int:
        """How many voters make a majority."""
        return len(self.peers) // 2 + 1
