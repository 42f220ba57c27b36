"""The chaos smoke run (part of the test command): leader kills, a partition of the leader,
a power loss of the leader, a follower restarting with a flipped bit in its committed log
(repaired from a peer before it starts) and one restarting with a CommitLog file cut short
(refilled from peers) against a three-node Raft group under load.

Runs `python -m chaos run --scenario smoke` as a child process (it starts and stops its
own cluster by PID) and requires the checker to find nothing: no acknowledged message
lost, none unexpected, no offset reused, order per sharding key kept, every node holding
the same committed messages; and the same faults but the Raft-only ones against a
master/slave pair with sync replication. Both run with the hostile writer on (adversarial
requests to every node's HTTP API: `chaos/hostile.py`): no node may stop without the
nemesis killing it, and no hostile request may get a 5xx. The long runs are
`python -m chaos run --scenario mixed [--mode ...]`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def run_chaos(tmp_path: Path, *args: str) -> dict[str, Any]:
    """`python -m chaos run ARGS` in a child process; its summary (the last JSON line),
    with the table printed for the test log. Fails on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "chaos", "run", *args, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    print("\n".join(lines[:-1]))
    assert done.returncode == 0, "\n".join(lines[:-1])
    summary: dict[str, Any] = json.loads(lines[-1])
    assert summary["ok"]
    report = summary["report"]
    assert report["hostile_requests"] > 50, "the hostile writer hardly ran"
    assert report["hostile_5xx"]["count"] == 0
    assert report["unexpected_stops"]["count"] == 0
    assert summary["write_disabled"] == []
    return summary


def test_smoke_scenario_loses_no_acknowledged_message(tmp_path: Path) -> None:
    summary = run_chaos(tmp_path, "--scenario", "smoke", "--duration", "36", "--seed", "7")
    report = summary["report"]
    assert report["acknowledged"] > 1000
    assert report["lost"]["count"] == 0
    assert len(summary["faults"]) == 6
    assert summary["flips"], "the bit flip found no checkpointed data to damage"
    assert summary["cuts"], "the truncation found no checkpointed data to cut"
    assert summary["unrepaired"] == []


def test_master_slave_sync_smoke_loses_no_acknowledged_message(tmp_path: Path) -> None:
    """Master kills, a partition between master and slave and a master power loss: with
    sync replication and a sync-flushing master no acknowledged message is lost."""
    summary = run_chaos(
        tmp_path,
        "--mode",
        "master-slave-sync",
        "--scenario",
        "smoke",
        "--duration",
        "30",
        "--seed",
        "7",
    )
    report = summary["report"]
    assert summary["mode"] == "master-slave-sync"
    assert report["acknowledged"] > 1000
    assert report["lost"]["count"] == 0
    assert report["lost_allowed"]["count"] == 0
    assert len(summary["faults"]) == 4
