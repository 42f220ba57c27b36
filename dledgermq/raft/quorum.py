"""Majority arithmetic as pure functions (etcd `quorum/majority.go`).

Owns: "the highest index stored on a majority" and the vote tally.
Must not: know about roles, terms or messages.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

from dledgermq.raft.types import Index, NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voter_count: int) -> int:
    return voter_count // 2 + 1


def committed_index(match_indexes: Sequence[Index]) -> Index:
    """The highest index that a majority of `match_indexes` (one per voter) has reached."""
    assert match_indexes
    ordered = sorted(match_indexes, reverse=True)
    return ordered[quorum_size(len(ordered)) - 1]


def vote_result(voters: Sequence[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON with a majority of grants, LOST once a majority can no longer be reached."""
    need = quorum_size(len(voters))
    granted = sum(1 for voter in voters if votes.get(voter) is True)
    rejected = sum(1 for voter in voters if votes.get(voter) is False)
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING
