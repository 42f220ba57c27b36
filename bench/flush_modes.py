"""Produce throughput and latency of one broker per flush mode, several runs each.

    python -m bench.flush_modes --runs 3 --count 200000 --batch 100

Starts a throw-away cluster (temp dir, free loopback ports) for `sync` and `async` flush,
runs `bench.load` against it `runs` times, prints one JSON line per run and one summary
line with medians per mode; stops every process it started by PID.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CLUSTER = """
cluster: Bench
data_dir: ./data
namesrvs: [{{id: ns1, port: {ns}}}]
store: {{flush: {flush}}}
brokers: [{{name: broker-a, nodes: [{{id: n1, port: {broker}}}]}}]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dledgermq", *args],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )


def run_mode(flush: str, args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{flush}-") as tmp:
        broker = free_port()
        path = Path(tmp) / "cluster.yml"
        path.write_text(CLUSTER.format(ns=free_port(), broker=broker, flush=flush))
        cli("cluster", "up", str(path), "--detach")
        results = []
        try:
            for run in range(args.runs):
                load = [
                    sys.executable,
                    "-m",
                    "bench.load",
                    "--broker",
                    f"127.0.0.1:{broker}",
                    "--topic",
                    f"Bench{run}",
                    "--size",
                    str(args.size),
                    "--batch",
                    str(args.batch),
                    "--concurrency",
                    str(args.concurrency),
                    "--count",
                    str(args.count),
                    "--duration",
                    "120",
                ]
                out = subprocess.run(load, check=True, capture_output=True, text=True, timeout=300)
                result = {"flush": flush, "run": run, **json.loads(out.stdout)}
                print(json.dumps(result), flush=True)
                results.append(result)
        finally:
            cli("cluster", "down", str(path))
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--modes", default="sync,async")
    args = parser.parse_args()
    summary = {}
    for flush in args.modes.split(","):
        results = run_mode(flush, args)
        summary[flush] = {
            key: statistics.median(r[key] for r in results)
            for key in ("msgs_per_s", "mb_per_s", "p50_ms", "p99_ms", "p999_ms")
        }
    print(
        json.dumps(
            {
                "bench": "flush_modes",
                "size": args.size,
                "batch": args.batch,
                "runs": args.runs,
                "median": summary,
            }
        )
    )


if __name__ == "__main__":
    main()
