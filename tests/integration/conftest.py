"""A real cluster started through the CLI on 127.0.0.1, always stopped by its PIDs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dledgermq.config import ClusterConfig, load_config
from tests.support import SMALL_STORE

CLI_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    path: Path
    config: ClusterConfig

    @property
    def namesrv(self) -> str:
        return self.config.namesrv_addrs[0]

    @property
    def broker(self) -> str:
        return self.config.groups[0].nodes[0].addr

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `dledgermq ARGS --config FILE` and return the finished process."""
        argv = [sys.executable, "-m", "dledgermq", *args]
        if args[0] != "cluster":
            argv += ["--config", str(self.path)]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr}{done.stdout}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def pid(self, process_id: str) -> int:
        return int((self.config.run_dir / f"{process_id}.pid").read_text())

    def kill_all(self) -> None:
        """Last-resort cleanup: SIGKILL every PID this cluster recorded."""
        for pid_file in self.config.run_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def write_cluster_file(tmp_path: Path, *, flush: str = "sync") -> Path:
    return write_test_cluster(tmp_path, "ItCluster", store=SMALL_STORE.format(flush=flush))


def write_test_cluster(
    tmp_path: Path,
    name: str,
    *,
    mode: str = "standalone",
    store: str | None = None,
    head: str = "",
    tail: str = "",
) -> Path:
    """`tmp_path/cluster.yml`: one NameServer and one broker group `broker-a` on free ports:
    a single node (`standalone`), three Raft nodes with fast elections (`raft`), or a sync
    master/slave pair m1/s1 (`master_slave`); `head` is top-level YAML before the brokers,
    then `store` (default SMALL_STORE with sync flush) and `tail` (e.g. inside its
    `limits:` block)."""
    if mode == "raft":
        nodes = ", ".join(
            f"{{id: n{i}, port: {free_port()}, peer_port: {free_port()}}}" for i in (1, 2, 3)
        )
        group = "mode: raft, replication: {election_timeout_ms: 400, heartbeat_interval_ms: 60}"
    elif mode == "master_slave":
        nodes = ", ".join(
            f"{{id: {n}, port: {free_port()}, peer_port: {free_port()}}}" for n in ("m1", "s1")
        )
        group = "mode: master_slave, replication: {ha_mode: sync, sync_timeout_ms: 3000}"
    else:
        assert mode == "standalone", mode
        nodes, group = f"{{id: n1, port: {free_port()}}}", ""
    path = tmp_path / "cluster.yml"
    path.write_text(
        f"""
cluster: {name}
data_dir: ./data
secret: integration-test-secret
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
{head}brokers: [{{name: broker-a, {group + ", " if group else ""}nodes: [{nodes}]}}]
"""
        + (SMALL_STORE.format(flush="sync") if store is None else store)
        + tail
    )
    return path


@contextlib.contextmanager
def started(path: Path) -> Iterator[Cluster]:
    """`cluster up --detach` of a cluster file; on the way out, resume any node a test
    paused, `cluster down`, and SIGKILL whatever PID is left, also on failure."""
    running = Cluster(path, load_config(path))
    running.cli("cluster", "up", str(path), "--detach")
    try:
        yield running
    finally:
        for pid_file in running.config.run_dir.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                os.kill(int(pid_file.read_text()), signal.SIGCONT)
        running.cli("cluster", "down", str(path), check=False)
        running.kill_all()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with started(write_cluster_file(tmp_path)) as running:
        yield running
