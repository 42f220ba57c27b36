"""Builders for unit tests of the Raft core: cores from a seeded Random, elected leaders."""

from __future__ import annotations

import random

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Message,
    RequestVoteResponse,
)
from dledgermq.raft.ready import Ready
from dledgermq.raft.types import Entry, HardState, NodeId, Role


def log_of(*terms: int) -> list[Entry]:
    """Entries 1..n with the given terms and payloads b"e<index>"."""
    return [Entry(term, index, b"e%d" % index) for index, term in enumerate(terms, start=1)]


def make_core(
    node_id: NodeId = 1,
    peers: tuple[NodeId, ...] = (1, 2, 3),
    *,
    seed: int = 0,
    terms: tuple[int, ...] = (),
    term: int = 0,
    vote: NodeId | None = None,
    **config: object,
) -> RaftCore:
    raft_config = RaftConfig(node_id=node_id, peers=peers, **config)  # type: ignore[arg-type]
    return RaftCore(
        raft_config,
        random.Random(seed),
        hard_state=HardState(term, vote),
        log=RaftLog(log_of(*terms)),
    )


def tick_until(core: RaftCore, role: Role, limit: int = 100) -> Ready:
    """Tick until the core reaches `role`; return the Ready drained right after."""
    for _ in range(limit):
        core.tick()
        if core.role is role:
            return core.ready()
    raise AssertionError(f"never became {role}")


def make_leader(core: RaftCore) -> Ready:
    """Elect `core` with grants from every other peer; return the first leader Ready."""
    if core.role is Role.LEADER:
        return core.ready()
    core.ready()
    if core.role is Role.FOLLOWER:
        for _ in range(100):
            core.tick()
            if core.role is not Role.FOLLOWER:
                break
    others = [p for p in core.peers if p != core.node_id]
    if core.role is Role.PRE_CANDIDATE:
        core.ready()
        for peer in others:
            if core.role is Role.PRE_CANDIDATE:
                core.step(
                    RequestVoteResponse(peer, core.node_id, core.term + 1, True, pre_vote=True)
                )
    assert core.role in (Role.CANDIDATE, Role.LEADER), core.role
    for peer in others:
        if core.role is Role.CANDIDATE:
            core.step(RequestVoteResponse(peer, core.node_id, core.term, True))
    assert core.role is Role.LEADER, core.role
    return core.ready()


def persist_all(core: RaftCore) -> None:
    """Report the whole log as durable."""
    core.on_persisted(core.log.last_term, core.last_index)


def sent_to(messages: list[Message], dst: NodeId, kind: type) -> list:
    return [m for m in messages if m.dst == dst and isinstance(m, kind)]


def appends(ready: Ready, dst: NodeId) -> list[AppendEntries]:
    return sent_to(ready.messages, dst, AppendEntries)


def ack(leader: RaftCore, src: NodeId, match_index: int, prev: int | None = None) -> None:
    """A follower's successful AppendEntriesResponse."""
    leader.step(
        AppendEntriesResponse(
            src,
            leader.node_id,
            leader.term,
            success=True,
            prev_log_index=match_index if prev is None else prev,
            match_index=match_index,
            last_index=match_index,
        )
    )
