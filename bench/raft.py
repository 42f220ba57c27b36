"""A three-node Raft group: produce throughput per durability mode, and failover time.

    python -m bench.raft throughput --runs 3 --count 200000 --batch 100 --concurrency 8
    python -m bench.raft latency --runs 3 --count 3000
    python -m bench.raft failover --kills 10

Each starts a throw-away cluster (temp dir, free loopback ports) through the CLI, finds
the leader from /status, and stops every process it started by PID (`cluster down`, and
SIGKILL of the recorded PIDs as a last resort).

- throughput: `bench.load` batched against the leader, per durability mode
  (`majority_fsync`, `majority_memory`), `runs` times each; JSON per run + medians.
- latency: one message at a time, one in flight (p50/p99/p999), majority_fsync.
- failover: a sender sends one message at a time through the Python client (which finds
  the new leader itself); the leader is SIGKILLed `kills` times (restarted after each
  recovery); the time from each kill to the next acknowledged send is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from bench.aggregate import first_ack_after
from dledgermq.cli.launcher import read_pid
from dledgermq.config import load_config

CLUSTER = """
cluster: BenchRaft
data_dir: ./data
secret: bench-secret-0123456789
tick_ms: 20
namesrvs: [{{id: ns1, port: {ns}}}]
store: {{segment_size_bytes: 268435456}}
brokers:
  - name: broker-a
    mode: raft
    replication:
      durability: {durability}
      election_timeout_ms: {election_ms}
      heartbeat_interval_ms: 100
    nodes:
      - {{id: n1, port: {b1}, peer_port: {p1}}}
      - {{id: n2, port: {b2}, peer_port: {p2}}}
      - {{id: n3, port: {b3}, peer_port: {p3}}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dledgermq", *args],
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    return done.stdout


def status(addr: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{addr}/status", timeout=1) as response:
            return json.loads(response.read())
    except OSError:
        return None


class RaftCluster:
    def __init__(self, directory: Path, durability: str, election_ms: int) -> None:
        ports = {k: free_port() for k in ("ns", "b1", "b2", "b3", "p1", "p2", "p3")}
        self.path = directory / "cluster.yml"
        self.path.write_text(
            CLUSTER.format(durability=durability, election_ms=election_ms, **ports)
        )
        self.namesrv = f"127.0.0.1:{ports['ns']}"
        self.nodes = {f"n{i}": f"127.0.0.1:{ports[f'b{i}']}" for i in (1, 2, 3)}
        self.run_dir = directory / "data" / "run"

    def up(self) -> None:
        cli("cluster", "up", str(self.path), "--detach")

    def leader(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node, addr in self.nodes.items():
                answer = status(addr)
                if answer and answer["role"] == "leader":
                    return node
            time.sleep(0.05)  # Polling other processes; nothing to await on.
        raise SystemExit("no leader elected")

    def pid(self, node: str) -> int:
        return int((self.run_dir / f"{node}.pid").read_text())

    def down(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            cli("cluster", "down", str(self.path))
        config = load_config(self.path)
        for pid_file in self.run_dir.glob("*.pid"):
            pid = read_pid(config, pid_file.stem)  # still ours (not a reused PID)
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def raft_cluster(durability: str, election_ms: int = 800) -> Iterator[RaftCluster]:
    with tempfile.TemporaryDirectory(prefix=f"bench-raft-{durability}-") as tmp:
        cluster = RaftCluster(Path(tmp), durability, election_ms)
        try:
            cluster.up()
            yield cluster
        finally:
            cluster.down()


def load(addr: str, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.load", "--broker", addr, *extra],
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc; None once it is
    gone): tells a slower run from a busier machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def cpu_per_message(
    cluster: RaftCluster, leader: str, run: Callable[[], dict]
) -> tuple[dict, dict[str, float]]:
    """`run()`'s result, and the CPU microseconds per message it cost the leader, the two
    followers together, and the load generator (this process's reaped children, its
    start-up included: use counts that run for seconds).

    CPU per message moves with the machine's speed (a shared VM's other tenants), the
    load generator's with it: compare `leader_us` and `followers_us` relative to
    `client_us` between runs (its code does not change), not raw."""
    pids = {node: cluster.pid(node) for node in cluster.nodes}
    before = {node: cpu_seconds(pid) or 0.0 for node, pid in pids.items()}
    client_before = children_cpu_seconds()
    result = run()
    used = {node: (cpu_seconds(pid) or 0.0) - before[node] for node, pid in pids.items()}
    per_message = 1e6 / max(1, result["messages"])
    return result, {
        "leader_us": round(used[leader] * per_message, 2),
        "followers_us": round((sum(used.values()) - used[leader]) * per_message, 2),
        "client_us": round((children_cpu_seconds() - client_before) * per_message, 2),
    }


def throughput(args: argparse.Namespace) -> None:
    medians = {}
    for durability in ("majority_fsync", "majority_memory"):
        rates = []
        for run in range(args.runs):
            with raft_cluster(durability) as cluster:
                leader = cluster.leader()
                shape = ("--batch", str(args.batch), "--concurrency", str(args.concurrency))
                sizes = ("--count", str(args.count), "--size", str(args.size))
                result, cpu = cpu_per_message(
                    cluster, leader, partial(load, cluster.nodes[leader], *shape, *sizes)
                )
            result.update(durability=durability, run=run, cpu_us_per_msg=cpu)
            print(json.dumps(result), flush=True)
            rates.append(result["msgs_per_s"])
        medians[durability] = statistics.median(rates)
    print(
        json.dumps({"bench": "raft_throughput", "batch": args.batch, "median_msgs_per_s": medians})
    )


def latency(args: argparse.Namespace) -> None:
    results = []
    for run in range(args.runs):
        with raft_cluster("majority_fsync") as cluster:
            leader = cluster.nodes[cluster.leader()]
            result = load(leader, "--batch", "1", "--concurrency", "1", "--count", str(args.count))
        result.update(run=run)
        print(json.dumps(result), flush=True)
        results.append(result)
    summary = {
        key: statistics.median(r[key] for r in results) for key in ("p50_ms", "p99_ms", "p999_ms")
    }
    print(json.dumps({"bench": "raft_latency", "median": summary}))


def measure_failover(
    cluster: RaftCluster, kills: int, pause_s: float, on_kill: Callable[[dict], None] | None = None
) -> list[float]:
    """SIGKILL the leader `kills` times under one-at-a-time sends through the Python client
    (which finds the new leader itself), restarting the victim after each; per kill, the
    seconds to the first acknowledgement of a send that *started* after the kill (an answer
    already on its way from the old leader does not count)."""
    from dledgermq.client import SyncProducer

    cli("topic", "create", "Failover", "--config", str(cluster.path))
    acks: list[tuple[float, float]] = []  # (started, acknowledged) per send
    stop = threading.Event()
    producer = SyncProducer([cluster.namesrv], send_timeout_s=1.0, retries=20)
    producer.start()

    def sender() -> None:
        while not stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):
                producer.send("Failover", b"x" * 128)
                acks.append((started, time.monotonic()))

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    gaps: list[float] = []
    try:
        for kill in range(kills):
            time.sleep(pause_s)  # Steady load between kills (the quantity measured).
            victim = cluster.leader()
            killed_at = time.monotonic()
            os.kill(cluster.pid(victim), signal.SIGKILL)
            deadline = killed_at + 60
            while not (acks and acks[-1][0] > killed_at) and time.monotonic() < deadline:
                time.sleep(0.005)  # Polling the sender's progress.
            gaps.append(first_ack_after(acks[-200:], killed_at))
            if on_kill is not None:
                on_kill({"kill": kill, "victim": victim, "first_ack_s": round(gaps[-1], 3)})
            cli("cluster", "up", str(cluster.path), "--detach")
    finally:
        stop.set()
        thread.join(timeout=30)
        producer.close()
    return gaps


def failover(args: argparse.Namespace) -> None:
    with raft_cluster("majority_fsync", election_ms=args.election_ms) as cluster:
        gaps = measure_failover(
            cluster, args.kills, args.pause_s, lambda row: print(json.dumps(row), flush=True)
        )
    print(
        json.dumps(
            {
                "bench": "raft_failover",
                "kills": len(gaps),
                "election_timeout_ms": args.election_ms,
                "median_s": round(statistics.median(gaps), 3),
                "max_s": round(max(gaps), 3),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tp = commands.add_parser("throughput")
    tp.add_argument("--runs", type=int, default=3)
    tp.add_argument("--count", type=int, default=200_000)
    tp.add_argument("--batch", type=int, default=100)
    tp.add_argument("--concurrency", type=int, default=8)
    tp.add_argument("--size", type=int, default=1024)
    tp.set_defaults(run=throughput)
    lat = commands.add_parser("latency")
    lat.add_argument("--runs", type=int, default=3)
    lat.add_argument("--count", type=int, default=3_000)
    lat.set_defaults(run=latency)
    fo = commands.add_parser("failover")
    fo.add_argument("--kills", type=int, default=10)
    fo.add_argument("--pause-s", type=float, default=2.0)
    fo.add_argument("--election-ms", type=int, default=800)
    fo.set_defaults(run=failover)
    args = parser.parse_args()
    assert 1 <= getattr(args, "runs", 1) <= 20
    assert 1 <= getattr(args, "kills", 1) <= 100
    args.run(args)


if __name__ == "__main__":
    main()
