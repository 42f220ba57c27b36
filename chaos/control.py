"""A throw-away cluster for one chaos run (a three-node Raft group, or a master and its
slave), and the handles the nemesis pulls.

Writes a cluster file in a temporary directory (free loopback ports; each node listens for
peer traffic on a private port behind a `chaos.proxy.NodeProxy`), starts every process
with `launcher.start_process` (PID files in the run directory), and offers kill, pause,
resume, restart, power loss and partitions. Every process it started is stopped by PID in
`stop()`, also after a failure. It keeps each child it started and knows which ones it
killed, so `reap()` finds the processes that exited on their own (a request's content or
a bug ended them) and records each as a `NodeStop` with the tail of its log. Broker
processes journal their syncs (`DLEDGERMQ_SYNC_JOURNAL`) so that `power_loss` can cut what
never reached the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from chaos.history import NodeStop, Recorder
from chaos.power_loss import apply_power_loss
from chaos.proxy import Links, NodeProxy
from dledgermq.cli import launcher
from dledgermq.cli.launcher import fetch_status
from dledgermq.config import ClusterConfig, load_config

BROKER = "broker-a"
SYNC_JOURNAL_ENV = "DLEDGERMQ_SYNC_JOURNAL"
DISK_FULL_MARKER_ENV = "DLEDGERMQ_DISK_FULL_MARKER"
CLUSTER_FILE = """
cluster: Chaos
data_dir: ./data
secret: chaos-run-secret-0123456789
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {ns}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
store:
  segment_size_bytes: 1048576
  scrub_pass_pause_ms: 1000
  restart_scan_bytes: 262144
  checkpoint_interval_ms: 500
  cq_units_per_file: 10000
  index_slots_per_file: 4096
  index_entries_per_file: 16384
limits:
  send_timeout_ms: 3000
  max_long_poll_ms: 2000
  max_message_bytes: 65536
  max_batch_bytes: 262144
brokers:
  - name: broker-a
{group}
    nodes:
{nodes}
"""
RAFT_GROUP = """    mode: raft
    replication:
      durability: {durability}
      election_timeout_ms: 500
      heartbeat_interval_ms: 50"""
# RocketMQ's durable pairing (DESIGN.md §2): sync replication with a sync-flushing master;
# async replication acknowledges what the master wrote.
MASTER_SLAVE_GROUP = """    mode: master_slave
    replication: {{ha_mode: {ha_mode}, sync_timeout_ms: 2000}}
    store: {{flush: {flush}}}"""
MODES = ("raft", "master-slave-sync", "master-slave-async")
WRITER_ROLES = ("leader", "master")
LOG_TAIL_LINES = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChaosCluster:
    def __init__(
        self,
        directory: Path,
        *,
        mode: str = "raft",
        durability: str = "majority_fsync",
        recorder: Recorder | None = None,
    ) -> None:
        assert mode in MODES, mode
        self.directory = directory
        self.mode = mode
        self.raft = mode == "raft"
        nodes = 3 if self.raft else 2  # A master/slave pair: nodes[0] is the master.
        self.node_ids = [f"n{i}" for i in range(1, nodes + 1)]
        public = {n: free_port() for n in self.node_ids}
        private = {n: free_port() for n in self.node_ids}
        lines = "\n".join(
            f"      - {{id: {n}, port: {free_port()}, peer_port: {public[n]}, "
            f"peer_listen_port: {private[n]}}}"
            for n in self.node_ids
        )
        path = directory / "cluster.yml"
        if self.raft:
            group = RAFT_GROUP.format(durability=durability)
        else:
            ha_mode = mode.removeprefix("master-slave-")
            group = MASTER_SLAVE_GROUP.format(
                ha_mode=ha_mode, flush="sync" if ha_mode == "sync" else "async"
            )
        path.write_text(CLUSTER_FILE.format(ns=free_port(), group=group, nodes=lines))
        self.path = path
        self.config: ClusterConfig = load_config(path)
        self.group = self.config.groups[0]
        self.addrs = {n.id: n.addr for n in self.group.nodes}
        self.links = Links()
        self._proxies = [
            NodeProxy(
                self.group.raft_id(n),
                ("127.0.0.1", public[n]),
                ("127.0.0.1", private[n]),
                self.links,
            )
            for n in self.node_ids
        ]
        self._processes = {p.id: p for p in launcher.all_processes(self.config)}
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.paused: set[str] = set()
        self.down: set[str] = set()  # killed by the nemesis, or found stopped by `reap`
        self.stops: list[NodeStop] = []  # every exit `reap` found, in order
        self._recorder = recorder
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False
        # Kill, restart and reap run on the nemesis' and the runner's threads: one at a time,
        # so an exit is judged against the kills made before it.
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_thread.start()
        for proxy in self._proxies:
            self._run(proxy.start())
        os.environ[SYNC_JOURNAL_ENV] = str(self.directory / "{node}.sync-journal")
        os.environ[DISK_FULL_MARKER_ENV] = str(self.directory / "{node}.disk-full")
        for process_id in self._processes:
            self._spawn(process_id)
        self.wait_for_leader(timeout_s=30)

    def stop(self) -> None:
        """Stop every process this run started, by PID (resume paused ones first)."""
        with self._lock:
            self._stopping = True
        for process_id in self._processes:
            pid = launcher.read_pid(self.config, process_id)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                launcher.stop_pid(pid)
        for proxy in self._proxies:
            with contextlib.suppress(Exception):
                self._run(proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=5)

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _spawn(self, process_id: str) -> None:
        self._children[process_id] = launcher.start_process(
            self.config, self._processes[process_id]
        )

    def reap(self) -> list[NodeStop]:
        """Processes (brokers and the NameServer) that exited while this cluster did not
        kill them, each found once: recorded as `NodeStop` (with the tail of its log) and
        counted as down, so `heal_all` starts it again. Nothing once `stop()` began."""
        found = []
        with self._lock:
            if self._stopping:
                return []
            for process_id, child in list(self._children.items()):
                if process_id in self.down or child.poll() is None:
                    continue
                del self._children[process_id]
                stop = NodeStop(
                    node=process_id,
                    pid=child.pid,
                    returncode=child.returncode,
                    log_tail=launcher.tail(self.config, process_id, LOG_TAIL_LINES),
                )
                if self._recorder is not None:
                    recorded = self._recorder.record(stop)
                    assert isinstance(recorded, NodeStop)
                    stop = recorded
                self.stops.append(stop)
                self.down.add(process_id)
                self.paused.discard(process_id)
                found.append(stop)
        return found

    # -- observing ------------------------------------------------------------------------

    @property
    def namesrv(self) -> str:
        return self.config.namesrv_addrs[0]

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        return {
            n: None if n in self.down or n in self.paused else fetch_status(a, timeout_s=0.5)
            for n, a in self.addrs.items()
        }

    def leader(self) -> str | None:
        for node, status in self.statuses().items():
            if status and status.get("role") in WRITER_ROLES:
                return node
        return None

    def wait_for_leader(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)  # Polling other processes; nothing to await on.
        raise TimeoutError(f"no leader within {timeout_s:.0f}s")

    def converged(self) -> bool:
        """Every node up and agreeing on term, commit index and dispatched offset (a
        master/slave pair: on the written and dispatched offsets)."""
        seen = self.statuses().values()
        keys = {
            None
            if s is None
            else (s["term"], s["raft"]["commit_index"], s["dispatched_offset"])
            if self.raft
            else (s["write_offset"], s["dispatched_offset"])
            for s in seen
        }
        return None not in keys and len(keys) == 1

    # -- faults ---------------------------------------------------------------------------

    def pid(self, node: str) -> int | None:
        return launcher.read_pid(self.config, node)

    def kill(self, node: str) -> None:
        with self._lock:
            self.reap()  # A node that already stopped on its own did not die of this kill.
            pid = self.pid(node)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_dead(pid)
            self.down.add(node)
            self.paused.discard(node)

    def power_loss(self, node: str) -> dict[str, int]:
        """Kill `node` and drop every CommitLog byte it had not synced."""
        self.kill(node)
        journal = self.directory / f"{node}.sync-journal"
        return apply_power_loss(journal, self.config.node_dir(node) / "commitlog")

    def restart(self, node: str) -> None:
        with self._lock:
            if node in self.down:
                self._spawn(node)
                self.down.discard(node)

    def stopped_on_lost_commits(self) -> list[str]:
        """Nodes that are not running and whose last words were `CommittedEntryConflict`
        (committed entries lost on the other nodes: majority_memory, power loss)."""
        return [
            node
            for node in self.node_ids
            if self.pid(node) is None
            and "CommittedEntryConflict" in launcher.log_file(self.config, node).read_text()
        ]

    def rejoin_without_log(self, node: str) -> None:
        """What that error tells the operator to do: keep the node's hard state (term and
        vote), move the rest of its data aside (and its sync journal, which describes the
        files moved), and start it again; it copies the log from the leader."""
        self.kill(node)
        root = self.config.node_dir(node)
        aside = root.with_name(f"{root.name}.aside")
        aside.mkdir()
        for item in root.iterdir():
            if item.name != "hard_state":
                item.rename(aside / item.name)
        journal = self.directory / f"{node}.sync-journal"
        if journal.exists():
            journal.rename(aside / journal.name)
        self.restart(node)

    def pause(self, node: str) -> None:
        pid = self.pid(node)
        if pid is not None and node not in self.down:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(node)

    def resume(self, node: str) -> None:
        pid = self.pid(node)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused.discard(node)

    def flip_bit(self, node: str, below: int, rng: random.Random) -> int | None:
        """Flip one bit of `node`'s CommitLog at a random offset below `below` (committed
        data: the node must find and repair it, never serve it). Returns the offset."""
        picked = self._commitlog_place(node, below, rng)
        if picked is None:
            return None
        path, start, at = picked
        with path.open("r+b") as file:
            file.seek(at)
            byte = file.read(1)
            file.seek(at)
            file.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
        return start + at

    def cut_short(self, node: str, below: int, rng: random.Random) -> int | None:
        """Truncate one of (stopped) `node`'s CommitLog files at a random offset below
        `below` (fsynced, committed data is lost: the node must refill it from peers).
        Returns the offset."""
        picked = self._commitlog_place(node, below, rng)
        if picked is None:
            return None
        path, start, at = picked
        os.truncate(path, at)
        return start + at

    def _commitlog_place(
        self, node: str, below: int, rng: random.Random
    ) -> tuple[Path, int, int] | None:
        """A random (segment file, its start, position in it) holding log below `below`."""
        segment = self.group.store.segment_size_bytes
        directory = self.config.node_dir(node) / "commitlog"
        files = {int(p.name): p for p in directory.iterdir() if p.name.isdigit()}
        candidates = [
            (start, min(below - start, path.stat().st_size))
            for start, path in files.items()
            if start < below
        ]
        candidates = [(start, size) for start, size in candidates if size > 0]
        if not candidates:
            return None
        start, size = rng.choice(candidates)
        at = rng.randrange(size)
        assert at < segment
        return files[start], start, at

    def fill_disk(self, node: str, full: bool) -> None:
        """Make `node`'s disk probe report a full disk (within its one-second probe)."""
        marker = self.directory / f"{node}.disk-full"
        if full:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Cut exactly these (src, dst) node links; heal every other one."""
        ids = {n: self.group.raft_id(n) for n in self.node_ids}
        cut = {(ids[a], ids[b]) for a, b in links}
        self._loop.call_soon_threadsafe(self.links.set_cut, cut)

    def heal_all(self) -> None:
        """End every fault: heal links, resume paused nodes, restart dead ones."""
        self.cut(())
        for node in self.node_ids:
            self.fill_disk(node, full=False)
        for node in list(self.paused):
            self.resume(node)
        for node in list(self.down):
            self.restart(node)


def _wait_dead(pid: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)  # The kernel reaps asynchronously; nothing to await on.
