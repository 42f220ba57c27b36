"""The Python client's producer with and without auto-batching, on a three-node Raft group.

    python -m bench.producer --senders 1,16,256 --count 20000 --runs 3

`senders` coroutines share one `Producer` and each awaits `send()` in a loop (the shape
of an application that sends one message per request it serves) until `count` messages
are acknowledged or `duration` seconds pass. Per run a fresh group (`majority_fsync`,
through `bench.raft`), then, for every sender count, auto-batching off and on, in an
order that alternates per run. One JSON line per measurement (msgs/s, p50/p99 of one
send), then the medians and the on/off ratio per run. Loopback only, bounded in count
and time; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from bench.load import percentile
from bench.raft import cli, raft_cluster
from dledgermq.client import Producer
from dledgermq.client.auto_batch import BatchLimits

TOPIC = "BenchProducer"


async def measure(  # noqa: PLR0913, PLR0917 - one measurement's knobs
    namesrv: str,
    senders: int,
    count: int,
    size: int,
    auto_batch: bool,
    duration_s: float,
    limits: BatchLimits,
) -> dict:
    body = b"x" * size
    latencies: list[float] = []
    deadline = time.monotonic() + duration_s
    async with Producer([namesrv], auto_batch=auto_batch, batch_limits=limits) as producer:
        await producer.send(TOPIC, body)  # Route lookup and connection, not measured.

        async def sender() -> None:
            while len(latencies) < count and time.monotonic() < deadline:
                started = time.perf_counter()
                await producer.send(TOPIC, body)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)))
        elapsed = time.perf_counter() - started
    return {
        "bench": "producer",
        "senders": senders,
        "auto_batch": auto_batch,
        "size": size,
        "messages": len(latencies),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3),
        "max_inflight": limits.max_inflight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", default="1,16,256", help="comma-separated")
    parser.add_argument("--count", type=int, default=20_000, help="messages per measurement")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--max-inflight", type=int, default=BatchLimits().max_inflight)
    args = parser.parse_args()
    senders = [int(s) for s in args.senders.split(",")]
    assert all(0 < s <= 4096 for s in senders), senders
    assert 0 < args.count <= 10_000_000, args.count
    rates: dict[tuple[int, bool], list[float]] = {}
    ratios: dict[int, list[float]] = {}
    for run in range(args.runs):
        with raft_cluster("majority_fsync") as cluster:
            cluster.leader()
            cli("topic", "create", TOPIC, "--queues", "8", "--config", str(cluster.path))
            for n in senders:
                pair = {}
                for auto_batch in (run % 2 == 0, run % 2 == 1):  # Alternate who goes first.
                    result = asyncio.run(
                        measure(
                            cluster.namesrv,
                            n,
                            args.count,
                            args.size,
                            auto_batch,
                            args.duration,
                            BatchLimits(max_inflight=args.max_inflight),
                        )
                    )
                    result["run"] = run
                    print(json.dumps(result), flush=True)
                    print(
                        f"[run {run + 1}] {n} senders, auto_batch={auto_batch}: "
                        f"{result['msgs_per_s']:,.0f} msgs/s",
                        file=sys.stderr,
                    )
                    pair[auto_batch] = result["msgs_per_s"]
                    rates.setdefault((n, auto_batch), []).append(result["msgs_per_s"])
                ratios.setdefault(n, []).append(pair[True] / pair[False])
    print(
        json.dumps(
            {
                "bench": "producer_summary",
                "median_msgs_per_s": {
                    f"{n}/{'on' if on else 'off'}": statistics.median(v)
                    for (n, on), v in rates.items()
                },
                "on_over_off": {n: round(statistics.median(v), 2) for n, v in ratios.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
