"""Committed records the broker passed over because it could not interpret them.

A committed record is never a reason for a node to stop (DESIGN.md §5): a node that fails
on a record fails on it again at every restart, and so does every replica, so one bad
record would take a whole group down for good. What a client controls is checked at the
edge before it is proposed; whatever still cannot be interpreted when it is applied (an
internal record of a later version, a delayed message written before the edge checked
its properties) is kept in the log, counted, logged with its offset and shown in
`/status`, and dispatch goes on. Fail-stop stays for what only a bug or a broken disk can
cause (a CRC failure, an invariant our own bytes break).

Pure bookkeeping: the log line is the only side effect.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)
RECENT_KEPT = 16


class Unreadable(NamedTuple):
    commitlog_offset: int
    topic: str
    reason: str


@dataclass(slots=True)
class UnreadableRecords:
    """How many records were passed over since start, and the last few (for status)."""

    count: int = 0
    recent: deque[Unreadable] = field(default_factory=lambda: deque(maxlen=RECENT_KEPT))

    def add(self, commitlog_offset: int, topic: str, reason: str) -> None:
        self.count += 1
        self.recent.append(Unreadable(commitlog_offset, topic, reason))
        log.warning(
            "passed over the record at commitlog offset %d (topic %s): %s; it stays in the "
            "log, dispatch goes on",
            commitlog_offset,
            topic,
            reason,
        )

    def to_wire(self) -> dict[str, Any]:
        return {"count": self.count, "recent": [u._asdict() for u in self.recent]}
