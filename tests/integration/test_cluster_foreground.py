"""`dledgermq cluster up FILE` in the foreground (README command 1): it serves until
Ctrl-C, then stops every process it started and exits 0."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dledgermq.cli import launcher
from dledgermq.config import ClusterConfig, load_config
from tests.integration.conftest import write_cluster_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    path = write_cluster_file(tmp_path)
    config = load_config(path)
    pids: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-m", "dledgermq", "cluster", "up", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as up:
        try:
            run_and_interrupt(up, config, pids)
        finally:
            if up.poll() is None:
                up.kill()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(pid, signal.SIGKILL)


def run_and_interrupt(up: subprocess.Popen[str], config: ClusterConfig, pids: list[int]) -> None:
    """Wait for the cluster to be up, press Ctrl-C, check that nothing is left."""
    # The first line is printed once every process answers and is registered.
    assert "is up" in up.stdout.readline()
    assert launcher.registered_brokers(config.namesrv_addrs[0])
    processes = launcher.local_processes(config)
    pids.extend(launcher.read_pid(config, p.id) for p in processes)
    assert all(pids)
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=40) == 0
    assert "stopped 2 process(es)" in up.stderr.read()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
