"""Starting, watching and stopping the processes of a cluster on this host.

One OS process per NameServer and broker node (so chaos can SIGKILL a real leader). Pid
and log files live in `<data_dir>/run/`. Only PIDs recorded there, whose command line is
still ours, are ever signalled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dledgermq.config import ClusterConfig

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.1
STATUS_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Process:
    """One process of the cluster: what it is, where it listens, how to start it."""

    id: str
    kind: str  # "namesrv" | "broker"
    addr: str
    group: str | None

    def argv(self, config: ClusterConfig) -> list[str]:
        flag = "--id" if self.kind == "namesrv" else "--node"
        argv = [sys.executable, "-m", "dledgermq", self.kind, flag, self.id]
        if config.source != "<embedded default>":
            argv += ["--config", str(Path(config.source).resolve())]
        return argv


def all_processes(config: ClusterConfig) -> list[Process]:
    """NameServers first (brokers register with them), then broker nodes."""
    processes = [Process(ns.id, "namesrv", ns.addr, None) for ns in config.namesrvs]
    for group in config.groups:
        processes += [Process(n.id, "broker", n.addr, group.name) for n in group.nodes]
    return processes


def local_processes(config: ClusterConfig) -> list[Process]:
    """The processes this machine runs: those whose host is one of its addresses (a
    multi-host cluster.yml lists every host; each host starts its own share)."""
    return [p for p in all_processes(config) if is_local_host(p.addr.rpartition(":")[0])]


@functools.cache
def is_local_host(host: str) -> bool:
    """Whether `host` names this machine: something here can bind to it."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((sockaddr[0], 0))
            return True
    return False


def pid_file(config: ClusterConfig, process_id: str) -> Path:
    return config.run_dir / f"{process_id}.pid"


def log_file(config: ClusterConfig, process_id: str) -> Path:
    return config.run_dir / f"{process_id}.log"


def read_pid(config: ClusterConfig, process_id: str) -> int | None:
    """The recorded PID if that process is alive and still a dledgermq process."""
    try:
        pid = int(pid_file(config, process_id).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"dledgermq" in cmdline else None


def start_process(config: ClusterConfig, process: Process) -> subprocess.Popen[bytes]:
    config.run_dir.mkdir(parents=True, exist_ok=True)
    log = log_file(config, process.id).open("ab")
    try:
        child = subprocess.Popen(
            process.argv(config),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches `cluster up` only.
        )
    finally:
        log.close()
    pid_file(config, process.id).write_text(f"{child.pid}\n")
    return child


def fetch_status(addr: str, timeout_s: float = STATUS_TIMEOUT_S) -> dict[str, Any] | None:
    """GET /status of a process, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}/status", timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_until_up(
    config: ClusterConfig, started: dict[str, subprocess.Popen[bytes]], processes: list[Process]
) -> str | None:
    """Wait for every process to answer /status; returns an error message or None."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = {p.id: p for p in processes}
    while pending and time.monotonic() < deadline:
        for process_id, process in list(pending.items()):
            child = started.get(process_id)
            if child is not None and child.poll() is not None:
                return (
                    f"{process_id} exited with code {child.returncode}: {tail(config, process_id)}"
                )
            if fetch_status(process.addr, timeout_s=0.5) is not None:
                del pending[process_id]
        time.sleep(POLL_S)  # Polling other processes' readiness; nothing to await on.
    if pending:
        return f"not answering after {START_TIMEOUT_S:.0f}s: {', '.join(sorted(pending))}"
    return None


def registered_brokers(namesrv_addr: str) -> set[tuple[str, str, str]]:
    """(broker_name, broker_id, addr) triples a NameServer currently routes to."""
    try:
        with urllib.request.urlopen(
            f"http://{namesrv_addr}/brokers", timeout=STATUS_TIMEOUT_S
        ) as response:
            groups = json.loads(response.read())["brokers"]
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return set()
    return {
        (g["broker_name"], str(broker_id), addr)
        for g in groups
        for broker_id, addr in g.get("addrs", {}).items()
    }


def wait_until_registered(config: ClusterConfig, brokers: list[Process]) -> str | None:
    """Wait until every NameServer routes to every broker, and every group that has a
    broker here has a writer (brokerId 0: a Raft group elected its leader, its preferred
    leader if it names one); returns an error or None."""
    wanted = {(p.group or "", p.addr) for p in brokers}
    writers = _expected_writers(config, {p.group or "" for p in brokers})
    deadline = time.monotonic() + START_TIMEOUT_S
    missing: set[str] = set()
    while time.monotonic() < deadline:
        missing = set()
        for addr in config.namesrv_addrs:
            routed = registered_brokers(addr)
            missing |= {a for _, a in wanted - {(name, a) for name, _, a in routed}}
            for group, writer in writers.items():
                if not any(n == group and i == "0" and writer in (None, a) for n, i, a in routed):
                    missing.add(f"{group} (no {'leader ' + writer if writer else 'leader'} yet)")
        if not missing:
            return None
        time.sleep(POLL_S)  # Polling other processes' state; nothing to await on.
    return f"not registered with the NameServer: {', '.join(sorted(missing))}"


def _expected_writers(config: ClusterConfig, groups: set[str]) -> dict[str, str | None]:
    """Group -> the address that must lead it (its preferred leader), None for any node."""
    expected: dict[str, str | None] = {}
    for group in config.groups:
        if group.name in groups:
            preferred = group.replication.preferred_leader
            node = next((n for n in group.nodes if n.id == preferred), None)
            expected[group.name] = node.addr if node is not None else None
    return expected


def start_cluster(
    config: ClusterConfig, processes: list[Process]
) -> tuple[dict[str, subprocess.Popen[bytes]], str | None]:
    """NameServers first and answering, then brokers, answering and registered."""
    started: dict[str, subprocess.Popen[bytes]] = {}
    namesrvs = [p for p in processes if p.kind == "namesrv"]
    brokers = [p for p in processes if p.kind == "broker"]
    for wave in (namesrvs, brokers):
        started |= {p.id: start_process(config, p) for p in wave}
        failure = wait_until_up(config, started, wave)
        if failure is not None:
            return started, failure
    return started, wait_until_registered(config, brokers)


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM, wait, then SIGKILL; True if the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(POLL_S)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # A zombie has exited; its new parent just has not reaped it yet.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_all(config: ClusterConfig, processes: list[Process]) -> list[str]:
    """Stop recorded processes, brokers before NameServers; returns the ids stopped."""
    stopped = []
    for process in reversed(processes):
        pid = read_pid(config, process.id)
        if pid is not None and stop_pid(pid):
            stopped.append(process.id)
        pid_file(config, process.id).unlink(missing_ok=True)
    return stopped


def tail(config: ClusterConfig, process_id: str, lines: int = 15) -> str:
    try:
        text = log_file(config, process_id).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
