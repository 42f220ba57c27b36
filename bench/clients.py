"""Load generators for the peers, with the acknowledgement semantics `bench.load` uses.

Every message counts only once the broker acknowledged it as durably replicated:
- NATS: the JetStream publish ack of an R3 file-storage stream (`js.publish`, or
  `js.publish_async` with `inflight` acks pending);
- RabbitMQ: the publisher confirm of a persistent message on a quorum queue
  (`inflight` publishers, each waiting for its confirm before the next publish).
`inflight == 1` is the one-at-a-time scenario (latency per message); more is the
pipelined one. Bounded by `count` messages and `duration_s` seconds; loopback only.
Results use the keys of `bench.load` (see `bench.aggregate.summarize`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from bench.aggregate import summarize
from bench.peers import QUEUE, STREAM, SUBJECT

# An acknowledgement still missing this long after the last send counts as an error.
ACK_GRACE_S = 30.0


async def nats_publish(
    url: str, size: int, count: int, duration_s: float, inflight: int
) -> dict[str, Any]:
    import nats

    body = os.urandom(size)
    client = await nats.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = client.jetstream(timeout=ACK_GRACE_S, publish_async_max_pending=max(1, inflight))
        latencies: list[float] = []
        acked = errors = 0
        deadline = time.monotonic() + duration_s
        started = time.perf_counter()
        if inflight <= 1:
            while len(latencies) + errors < count and time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    ack = await js.publish(SUBJECT, body)
                except Exception:  # Timeout or JetStream error: counted, not fatal.
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                acked += 1
                assert ack.stream == STREAM
        else:
            futures: list[asyncio.Future] = []
            while len(futures) < count and time.monotonic() < deadline:
                futures.append(await js.publish_async(SUBJECT, body, wait_stall=ACK_GRACE_S))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(js.publish_async_completed(), ACK_GRACE_S)
            # No per-message ack time here (a callback per message would slow the client):
            # the pipelined scenario reports throughput only.
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    acked += 1
                else:
                    errors += 1
                    if not future.done():
                        future.cancel()
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    result = summarize(latencies, acked, size, elapsed, errors)
    if inflight > 1:
        result = {k: v for k, v in result.items() if not k.startswith("p")}
    return result


async def rabbitmq_publish(
    url: str, size: int, count: int, duration_s: float, inflight: int
) -> dict[str, Any]:
    import aio_pika

    body = os.urandom(size)
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + duration_s
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = channel.default_exchange

        async def publisher() -> None:
            nonlocal sent, errors
            while sent < count and time.monotonic() < deadline:
                sent += 1
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                t0 = time.perf_counter()
                try:
                    await exchange.publish(message, routing_key=QUEUE, timeout=ACK_GRACE_S)
                except Exception:  # Nack, return or timeout: counted, not fatal.
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(max(1, inflight))))
        elapsed = time.perf_counter() - started
    return summarize(latencies, len(latencies), size, elapsed, errors)
