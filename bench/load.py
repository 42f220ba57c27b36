"""Producer/consumer load against a running broker; prints one JSON line.

    python -m bench.load --broker 127.0.0.1:10911 --size 1024 --batch 100 \
        --concurrency 8 --count 200000 --duration 60

Produce: `concurrency` workers each send batches of `batch` messages of `size` bytes
(msgpack bodies, one request = one CommitLog entry) until `count` messages or `duration`
seconds; latency is per request (send → acknowledged). Consume (`--consume`): pulls every
queue of the topic from offset 0 until `count` messages were read. Bounded in count and
time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable

import aiohttp
import msgpack

MSGPACK = "application/msgpack"


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def ensure_topic(session: aiohttp.ClientSession, base: str, topic: str, queues: int) -> None:
    async with session.post(f"{base}/topics", json={"topic": topic, "queues": queues}) as response:
        if response.status not in (201, 409):
            raise SystemExit(f"cannot create topic: {response.status} {await response.text()}")


async def post_batches(
    session: aiohttp.ClientSession,
    next_request: Callable[[], tuple[str, bytes]],
    *,
    count: int,
    batch: int,
    concurrency: int,
    deadline: float,
) -> tuple[list[float], int, float]:
    """POST batches from `concurrency` workers until `count` messages are acknowledged or
    `deadline` (monotonic) passes; a refused batch is counted and sent again.

    Returns:
        (seconds per acknowledged batch, refused batches, elapsed seconds).
    """
    headers = {"Content-Type": MSGPACK, "Accept": MSGPACK}
    latencies: list[float] = []
    errors = sent = 0

    async def worker() -> None:
        nonlocal sent, errors
        while sent < count and time.monotonic() < deadline:
            sent += batch
            url, payload = next_request()
            started = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    sent -= batch
                    continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def produce(args: argparse.Namespace) -> dict:
    base = f"http://{args.broker}"
    body = os.urandom(args.size)
    payload = msgpack.packb({"messages": [{"body": body}] * args.batch})
    url = f"{base}/topics/{args.topic}/messages"
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await ensure_topic(session, base, args.topic, args.queues)
        latencies, errors, elapsed = await post_batches(
            session,
            lambda: (url, payload),
            count=args.count,
            batch=args.batch,
            concurrency=args.concurrency,
            deadline=time.monotonic() + args.duration,
        )
    acked = len(latencies) * args.batch
    return {
        "bench": "produce",
        "size": args.size,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "messages": acked,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(acked / elapsed, 1),
        "mb_per_s": round(acked * args.size / elapsed / 1e6, 2),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "p999_ms": round(percentile(latencies, 0.999) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else 0.0,
    }


async def consume(args: argparse.Namespace) -> dict:
    base = f"http://{args.broker}"
    headers = {"Accept": MSGPACK}
    read = 0
    latencies: list[float] = []
    deadline = time.monotonic() + args.duration
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/topics/{args.topic}") as response:
            info = await response.json()
        queues = [q["queue_id"] for q in info["queues"]]
        offsets = dict.fromkeys(queues, 0)
        started = time.perf_counter()

        async def worker(queue_id: int) -> None:
            nonlocal read
            while read < args.count and time.monotonic() < deadline:
                t0 = time.perf_counter()
                params = {"offset": offsets[queue_id], "max": 256}
                async with session.get(
                    f"{base}/topics/{args.topic}/queues/{queue_id}/messages",
                    params=params,
                    headers=headers,
                ) as response:
                    body = msgpack.unpackb(await response.read())
                latencies.append(time.perf_counter() - t0)
                if not body.get("messages"):
                    return
                read += len(body["messages"])
                offsets[queue_id] = body["next_offset"]

        await asyncio.gather(*(worker(q) for q in queues))
        elapsed = time.perf_counter() - started
    return {
        "bench": "consume",
        "messages": read,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(read / elapsed, 1),
        "p50_pull_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "p99_pull_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="127.0.0.1:10911")
    parser.add_argument("--topic", default="BenchTopic")
    parser.add_argument("--queues", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=60.0, help="upper bound in seconds")
    parser.add_argument("--consume", action="store_true")
    args = parser.parse_args()
    assert 1 <= args.count <= 50_000_000
    assert 0 < args.duration <= 3_600
    result = asyncio.run(consume(args) if args.consume else produce(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
