"""Liveness bounds that follow from a run's configuration and from the logs at the heal.

Why: fixed bounds (100 ticks) were right for fast disks and in-order links and wrong for
the slowest configuration the workload draws (one entry per append, window 8, fsyncs of up
to 8 ticks, delays of 1-3 ticks): pipelined appends overtake each other, each overtaken
append sends the leader back to PROBE (correct, as etcd does), and catch-up then costs a
follower fsync per round trip: 102-128 ticks (seeds 501738, 503691, 506319, 510470,
513384, 528687). A bound must be an upper bound on what a correct Raft needs, so that
only a stuck or livelocked cluster fails it.

The argument, with no loss in the liveness phase (duplicates and reordering stay):

- one round trip `R` = a message there (<= `delay_max`), the follower's fsync (persist
  requests complete in order, each within `fsync_max` ticks of its arrival, plus the tick
  that completes it), the answer back (<= `delay_max`), plus one tick to send;
- in PROBE one AppendEntries is in flight; its answer either accepts `batch` entries (then
  the leader goes to REPLICATE, which can only send more), or rejects and moves
  `next_index` back by at least one entry. A fall-back from REPLICATE to PROBE never
  undoes an accepted entry (`match_index` never goes back unless the follower lost its
  log, which the liveness phase does not do). So a follower that agrees with the leader up
  to index `p` holds the leader's log up to `last` after at most
  `ceil((last - p) / batch) + divergent` round trips, where `divergent` is the length of
  its own tail past `p` (each back-off step skips at least one of those entries);
- an entry is acknowledged once a quorum (the leader included) holds it and the leader's
  own fsync is done: the quorum-th best follower's round trips, plus one for the leader;
- logs have converged once every follower holds everything and has heard the commit
  index: the worst follower's round trips plus a heartbeat interval and a delivery.

The window (`inflight_appends_max`) only speeds this up, so it enters no upper bound; it
shows in how far below its bound a run stays (`RunResult.slack`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dledgermq.raft.core import RaftCore

from .harness import DiskOptions, NetOptions, RaftOptions

# Elections: a stable leader (one every node follows for 2 T) within this many election
# timeouts of the heal. Pre-vote, check quorum and split votes need a few T; 10 T was
# 200 ticks at T = 20, which no seed of 0:530000 came near.
STABLE_LEADER_TIMEOUTS = 20


@dataclass(frozen=True)
class Timing:
    """The configuration drawn for a run, as far as liveness depends on it."""

    election_timeout: int
    heartbeat_interval: int
    batch: int
    delay_max: int
    fsync_max: int

    @classmethod
    def of(cls, raft: RaftOptions, net: NetOptions, disk: DiskOptions) -> Timing:
        return cls(
            election_timeout=raft.election_timeout_ticks,
            heartbeat_interval=raft.heartbeat_interval_ticks,
            batch=raft.entries_per_append_max,
            delay_max=net.delay_ticks_max,
            fsync_max=disk.delay_ticks_max,
        )

    @property
    def round_trip(self) -> int:
        return 2 * self.delay_max + (self.fsync_max + 1) + 1

    @property
    def stable_leader_ticks(self) -> int:
        return STABLE_LEADER_TIMEOUTS * self.election_timeout

    def rounds(self, behind: int, divergent: int) -> int:
        """Round trips to bring a follower `behind` entries short (with a `divergent`
        tail of its own) up to the leader."""
        return -(-behind // self.batch) + divergent


@dataclass(frozen=True)
class Catchup:
    """How far each follower is from the stable leader's log, measured at the heal."""

    behind: tuple[int, ...]  # entries the follower lacks, one per follower
    divergent: tuple[int, ...]  # entries of its own tail that the leader does not have

    @classmethod
    def measure(cls, leader: RaftCore, followers: Sequence[RaftCore], extra: int) -> Catchup:
        """`extra` entries will still be proposed (the liveness proposals)."""
        behind, divergent = [], []
        for follower in followers:
            agreed = _agreed_prefix(leader, follower)
            behind.append(leader.last_index + extra - agreed)
            divergent.append(follower.last_index - agreed)
        return cls(tuple(behind), tuple(divergent))


def _agreed_prefix(leader: RaftCore, follower: RaftCore) -> int:
    """The last index at which both logs hold the same term (log matching: the same
    entry, and everything before it the same too)."""
    index = min(leader.last_index, follower.last_index)
    while index > 0 and leader.log.term_at(index) != follower.log.term_at(index):
        index -= 1
    return index


def _rounds(timing: Timing, catchup: Catchup) -> list[int]:
    """Round trips per follower, fewest first."""
    pairs = zip(catchup.behind, catchup.divergent, strict=True)
    return sorted(timing.rounds(behind, divergent) for behind, divergent in pairs)


def ack_ticks(timing: Timing, catchup: Catchup, proposals: int) -> int:
    """Ticks from the first liveness proposal until every proposal is acknowledged."""
    rounds = _rounds(timing, catchup)
    quorum_followers = (len(rounds) + 1) // 2  # a majority counts the leader too
    slowest_needed = rounds[quorum_followers - 1] if rounds else 0
    return proposals + (slowest_needed + 1) * timing.round_trip + timing.heartbeat_interval


def converge_ticks(timing: Timing, catchup: Catchup, proposals: int) -> int:
    """Ticks from the first liveness proposal until every log is equal and committed."""
    slowest = max(_rounds(timing, catchup), default=0)
    return (
        proposals + (slowest + 1) * timing.round_trip + timing.heartbeat_interval + timing.delay_max
    )
