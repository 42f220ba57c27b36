"""Orderly queue locks across a change of writer: the grace period (pure).

Queue leases live in the memory of the broker group's writer (`membership.QueueLocks`).
A new writer (a Raft leader after a failover, a restarted standalone broker or master)
starts with an empty table while consumers may still be processing queues under leases an
earlier writer granted. Giving such a queue to another orderly consumer at once would let
two consumers process it at the same time and break the order of its sharding keys.

So a writer epoch (a term, on this node) begins with a *grace period* of
`lease_ms + stale_writer_ms`. During it an orderly consumer is granted only the queues it
says it already holds (`held`, queues whose lease it still considers valid), first claim
wins; a queue nobody claims is granted to nobody. Once the grace is over every lease an
earlier writer granted has ended (see the argument below), and queues are granted by
allocation again, with the usual hand-over (`membership.handover`).

Why it is safe (every consumer stops processing a queue `LEASE_SAFETY` x lease after it
*sent* the heartbeat that granted it, so before the granting writer's lease ends):

- an earlier writer grants nothing after it stopped being writer plus `stale_writer_ms`
  (a Raft leader cut off from its majority steps down within two election timeouts,
  check quorum), so its last lease ends before `since + stale_writer_ms + lease_ms`;
- a claim is honest: a consumer claims only queues it holds now, and at any moment at
  most one consumer holds a valid lease on a queue; so the first claim is the holder's;
- an earlier writer that still acts after this one began could hand a claimed queue to
  another consumer only once the claimant's lease there ended, which is at least
  (1 - LEASE_SAFETY) x lease after the claimant last heard from it; the configuration
  keeps that above two election timeouts (`config.py` checks it), so it cannot happen.

Pure: no clock (callers pass `now_ms`), no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from dledgermq.broker.membership import QueueLocks
from dledgermq.broker.rebalance import MessageQueue

# Requests already inside the old writer when it lost its role, clock-rate differences.
STALE_WRITER_SLACK_MS = 1_000


def stale_writer_ms(election_timeout_ms: int | None) -> int:
    """How long an earlier writer may still grant leases after this one began: two
    election timeouts for a Raft group (check quorum), plus slack; a group whose writer
    never changes while it runs (standalone, master/slave) needs only the slack."""
    return (2 * election_timeout_ms if election_timeout_ms else 0) + STALE_WRITER_SLACK_MS


@dataclass(frozen=True, slots=True)
class WriterEpoch:
    """This node has been the group's writer in `term` since `since_ms`."""

    term: int
    since_ms: int
    grace_ms: int

    def in_grace(self, now_ms: int) -> bool:
        return now_ms < self.since_ms + self.grace_ms

    def grace_left_ms(self, now_ms: int) -> int:
        return max(0, self.since_ms + self.grace_ms - now_ms)


def grant_orderly(  # noqa: PLR0913 - the lock table and everything a grant depends on
    locks: QueueLocks,
    group: str,
    client_id: str,
    *,
    allocated: Sequence[MessageQueue],
    held: Iterable[MessageQueue],
    readable: Collection[MessageQueue],
    epoch: WriterEpoch,
    now_ms: int,
    lease_ms: int,
) -> tuple[MessageQueue, ...]:
    """The queues an orderly consumer may process now (their leases taken or renewed).

    In the grace period: the readable queues it claims to hold and nobody claimed first.
    After it: the queues allocated to it whose lease is free or its own.
    """
    if epoch.in_grace(now_ms):
        candidates = sorted({q for q in held if q in readable})
    else:
        candidates = list(allocated)
    return tuple(q for q in candidates if locks.try_lock(group, q, client_id, now_ms, lease_ms))
