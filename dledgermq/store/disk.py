"""Disk usage and the pure retention decision built on it.

Reads filesystem statistics only; deletes nothing (the CommitLog and the indexes do, when
their owner acts on a `RetentionDecision`). The thresholds default to RocketMQ's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


def disk_used_ratio(path: Path) -> float:
    """Fraction of the filesystem holding `path` that is not available to us (0.0-1.0).

    Counts root-reserved blocks as used, since this process cannot write into them.
    """
    usage = shutil.disk_usage(path)
    if usage.total == 0:
        return 1.0
    return 1.0 - usage.free / usage.total


@dataclass(frozen=True, slots=True)
class RetentionDecision:
    """What to do at a given disk usage."""

    force_delete: bool  # delete the oldest segments even if not yet expired
    refuse_writes: bool  # reject appends with DiskFull; reads go on


def retention_decision(
    used_ratio: float, *, force_ratio: float = 0.85, refuse_ratio: float = 0.90
) -> RetentionDecision:
    """Decide from the used ratio (pure; pass `disk_used_ratio(...)`)."""
    assert 0.0 < force_ratio <= refuse_ratio <= 1.0, (force_ratio, refuse_ratio)
    return RetentionDecision(
        force_delete=used_ratio >= force_ratio, refuse_writes=used_ratio >= refuse_ratio
    )
