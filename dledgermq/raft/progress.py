"""`Progress`: what a leader knows about one follower's log, and how it sends to it.

Owns: `match_index`, `next_index`, the PROBE/REPLICATE state with its in-flight window,
and the "heard from it lately" flag used by check quorum.
Must not: build messages or read the log (the core does both).

State diagram (etcd `tracker/progress.go`; DLedger's `EntryDispatcher` is the same machine:
its COMPARE+TRUNCATE is our PROBE, where the follower truncates on the first matching
AppendEntries, and its APPEND is our REPLICATE)::

                 become_leader (next_index = leader's last_index + 1)
                               │
                               ▼
       ┌──────────────────► PROBE ─────── success (match_index raised) ─────┐
       │               one AppendEntries at a time;                          │
       │               resent every heartbeat interval                       ▼
       │                                                                 REPLICATE
       └──── rejection that is not stale ─────────────────────────── pipelined: up to
                                                                        inflight_appends_max
                                                                        unacknowledged

Lost appends: in REPLICATE the heartbeat checks the follower's log at `next_index - 1`
(the end of what was sent), so a follower that lost an append rejects the heartbeat and
the leader falls back to PROBE (etcd reaches the same point through an empty append after
the heartbeat response). In PROBE the heartbeat checks `match_index`, which always matches,
and un-pauses the probe so a lost probe is sent again.

A rejection moves `next_index` back using the follower's hints (fast back-off) but never
to or below `match_index`, and never past the index that was rejected. A rejection that
shows the follower's log ending before `match_index` means it lost acknowledged entries:
the match is forgotten and the probe starts at its end (`lost_entries`; a late rejection
that only looks like that costs a re-probe, never safety).
"""

from __future__ import annotations

import enum
from collections import deque

from dledgermq.raft.types import Index


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"


class Progress:
    """The leader's view of one follower."""

    __slots__ = (
        "inflight",
        "match_index",
        "next_index",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: Index) -> None:
        self.match_index: Index = 0
        self.next_index: Index = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        # The last index of every unacknowledged AppendEntries sent in REPLICATE, in order.
        self.inflight: deque[Index] = deque()
        self.recent_active = False

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value}, match={self.match_index}, next={self.next_index}, "
            f"inflight={len(self.inflight)})"
        )

    def is_paused(self, inflight_appends_max: int) -> bool:
        """Whether no further AppendEntries with entries may be sent now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        return len(self.inflight) >= inflight_appends_max

    def sent(self, last_index: Index, entry_count: int) -> None:
        """Record an AppendEntries whose last entry is `last_index` (`entry_count` entries)."""
        if self.state is ProgressState.PROBE:
            self.probe_sent = True
        elif entry_count:
            assert last_index >= self.next_index, (last_index, self.next_index)
            self.next_index = last_index + 1
            self.inflight.append(last_index)

    def update(self, match_index: Index) -> bool:
        """Take a success; return whether `match_index` rose."""
        if match_index <= self.match_index:
            return False
        self.match_index = match_index
        self.next_index = max(self.next_index, match_index + 1)
        while self.inflight and self.inflight[0] <= match_index:
            self.inflight.popleft()
        if self.state is ProgressState.PROBE:
            self.become_replicate()
        return True

    def reject(self, rejected_prev_index: Index, next_hint: Index) -> bool:
        """Take a rejection of the AppendEntries with `rejected_prev_index`.

        Returns:
            False when the rejection is stale (it answers an older request), else True
            after moving to PROBE at the hinted `next_index`.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected_prev_index <= self.match_index:
                return False
        elif rejected_prev_index != self.next_index - 1:
            return False
        self.become_probe()
        self.next_index = max(self.match_index + 1, min(next_hint, rejected_prev_index))
        return True

    def lost_entries(self, last_index: Index) -> None:
        """The follower's log ends at `last_index`, before what it acknowledged: it lost
        entries (a power loss under `majority_memory`, a data directory moved aside).
        Forget the match and probe from its end, or it would be probed at the old match
        forever and never catch up."""
        assert last_index < self.match_index, (last_index, self.match_index)
        self.match_index = 0
        self.become_probe()
        self.next_index = last_index + 1

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = self.match_index + 1
        self.probe_sent = False
        self.inflight.clear()
