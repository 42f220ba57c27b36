"""Durable-file helpers and the disk retention decision.

Goal: atomic_write replaces whole files and leaves no temporary behind; disk usage is a
ratio; the retention decision follows its thresholds. Method: tmp_path and pure calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dledgermq.store.disk import RetentionDecision, disk_used_ratio, retention_decision
from dledgermq.store.fileio import atomic_write, fsync_dir


def test_atomic_write_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    atomic_write(path, b"two, longer")
    assert path.read_bytes() == b"two, longer"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
    fsync_dir(tmp_path)


def test_disk_used_ratio(tmp_path: Path) -> None:
    assert 0.0 <= disk_used_ratio(tmp_path) <= 1.0


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (0.5, RetentionDecision(force_delete=False, refuse_writes=False)),
        (0.85, RetentionDecision(force_delete=True, refuse_writes=False)),
        (0.95, RetentionDecision(force_delete=True, refuse_writes=True)),
    ],
)
def test_retention_decision(ratio: float, expected: RetentionDecision) -> None:
    assert retention_decision(ratio) == expected
