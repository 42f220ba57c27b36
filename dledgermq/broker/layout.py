"""Where one broker node keeps its files, in one place so recovery and tools agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class NodeLayout:
    root: Path

    @property
    def commitlog(self) -> Path:
        return self.root / "commitlog"

    @property
    def consume_queues(self) -> Path:
        return self.root / "consumequeue"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def hard_state(self) -> Path:
        """Raft term and vote (Raft mode only)."""
        return self.root / "hard_state"

    @property
    def entry_summary(self) -> Path:
        """The entry index's summary, for a fast restart (Raft mode only)."""
        return self.root / "entry_summary"
