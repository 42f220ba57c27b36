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
from collections.abc import Awaitable, Callable
from typing import Any

from bench.aggregate import e2e_summary, first_ack_after, summarize
from bench.peers import QUEUE, STREAM, SUBJECT, NatsCluster

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


# --- scenario 3: catch-up consume and send -> delivered at a fixed rate --------------------

# How long the consumer may lag behind the last send before the rest counts as lost.
DRAIN_S = 10.0
PULL_MAX = 256
PREFETCH = 1000
Deliver = Callable[[bytes], None]
Send = Callable[[bytes], Awaitable[Any]]


def stamped(pad: bytes) -> bytes:
    """A body that carries its send time (same host, one monotonic clock for all)."""
    return time.monotonic_ns().to_bytes(8, "big") + pad


def age_s(body: bytes) -> float:
    return (time.monotonic_ns() - int.from_bytes(body[:8], "big")) / 1e9


async def paced_send(
    send: Send, size: int, rate: float, count: int, inflight: int = 256
) -> tuple[int, list[float]]:
    """`count` sends at `rate` per second (not waiting for acks, at most `inflight`
    pending): a fixed offered load, so the latency measured is not the producer's.
    Returns the number of sends that failed and each acknowledged send's latency."""
    pad = os.urandom(max(0, size - 8))
    slots = asyncio.Semaphore(inflight)
    pending: set[asyncio.Task] = set()
    acked: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        try:
            t0 = time.perf_counter()
            await send(stamped(pad))
            acked.append(time.perf_counter() - t0)
        except Exception:  # Nack or timeout: counted, not fatal.
            errors += 1
        finally:
            slots.release()

    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=ACK_GRACE_S)
    return errors, acked


async def end_to_end(
    send: Send, receive: Callable[[Deliver], Awaitable[None]], size: int, rate: float, count: int
) -> dict[str, Any]:
    """Run `receive` (until cancelled) while `paced_send` produces; send -> delivered."""
    latencies: list[float] = []
    consumer = asyncio.create_task(receive(lambda body: latencies.append(age_s(body))))
    await asyncio.sleep(0.5)  # Let the consumer subscribe before the first send.
    started = time.perf_counter()
    errors, acks = await paced_send(send, size, rate, count)
    deadline = time.monotonic() + DRAIN_S
    while len(latencies) < count - errors and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # Waiting for the consumer task to catch up.
    elapsed = time.perf_counter() - started
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await consumer
    return e2e_summary(latencies, count, size, elapsed, acks)


def _throughput(read: int, size: int, elapsed: float) -> dict[str, Any]:
    figures = summarize([], read, size, elapsed)
    return {k: v for k, v in figures.items() if not k.startswith("p")}


# dledgermq over its HTTP API (msgpack), as bench.load does.


async def dledgermq_e2e(
    addr: str, topic: str, size: int, rate: float, count: int
) -> dict[str, Any]:
    import aiohttp
    import msgpack

    base = f"http://{addr}"
    headers = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/topics", json={"topic": topic, "queues": 8}) as answer:
            if answer.status not in (201, 409):
                raise RuntimeError(f"cannot create topic: {answer.status}")
        async with session.get(f"{base}/topics/{topic}") as answer:
            queues = [q["queue_id"] for q in (await answer.json())["queues"]]

        async def send(body: bytes) -> None:
            data = msgpack.packb({"messages": [{"body": body}]})
            url = f"{base}/topics/{topic}/messages"
            async with session.post(url, data=data, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"send: {answer.status}")

        async def pull_queue(queue_id: int, deliver: Deliver) -> None:
            offset = 0
            url = f"{base}/topics/{topic}/queues/{queue_id}/messages"
            while True:
                params = {"offset": offset, "max": PULL_MAX, "wait_ms": 1000}
                async with session.get(url, params=params, headers=headers) as answer:
                    page = msgpack.unpackb(await answer.read())
                for message in page.get("messages", []):
                    deliver(message["body"])
                offset = page.get("next_offset", offset)

        async def receive(deliver: Deliver) -> None:
            await asyncio.gather(*(pull_queue(q, deliver) for q in queues))

        return await end_to_end(send, receive, size, rate, count)


# NATS JetStream: the stream is purged first, so a backlog is exactly this measurement's.


async def _nats_pull(js: Any, durable: str, deliver_new: bool) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    policy = DeliverPolicy.NEW if deliver_new else DeliverPolicy.ALL
    config = ConsumerConfig(deliver_policy=policy, ack_policy=AckPolicy.ALL)
    return await js.pull_subscribe(SUBJECT, durable=durable, stream=STREAM, config=config)


async def _nats_fetch(sub: Any, deliver: Callable[[Any], None]) -> int:
    """One long-poll fetch; acknowledges the batch with one cumulative ack (AckPolicy.ALL)."""
    try:
        messages = await sub.fetch(PULL_MAX, timeout=1.0)
    except TimeoutError:  # nats.errors.TimeoutError derives from it: nothing new.
        return 0
    for message in messages:
        deliver(message)
    if messages:
        await messages[-1].ack()
    return len(messages)


async def nats_consume(url: str, size: int, count: int, duration_s: float) -> dict[str, Any]:
    import nats

    client = await nats.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = client.jetstream(timeout=ACK_GRACE_S)
        await js.purge_stream(STREAM)
        produced = await nats_publish(url, size, count, duration_s, 256)
        sub = await _nats_pull(js, f"consume{size}", deliver_new=False)
        read = 0
        deadline = time.monotonic() + duration_s
        started = time.perf_counter()
        while read < produced["messages"] and time.monotonic() < deadline:
            read += await _nats_fetch(sub, lambda _m: None)
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return _throughput(read, size, elapsed)


async def nats_e2e(url: str, size: int, rate: float, count: int) -> dict[str, Any]:
    import nats

    client = await nats.connect(servers=[url], connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = client.jetstream(timeout=ACK_GRACE_S)
        await js.purge_stream(STREAM)
        sub = await _nats_pull(js, f"e2e{size}", deliver_new=True)

        async def receive(deliver: Deliver) -> None:
            while True:
                await _nats_fetch(sub, lambda message: deliver(message.data))

        return await end_to_end(lambda body: js.publish(SUBJECT, body), receive, size, rate, count)
    finally:
        await client.close()


# RabbitMQ: basic_consume with a prefetch window, acknowledged every 100 (multiple=True).


async def _rabbit_receive(connection: Any, deliver: Callable[[bytes], None]) -> None:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.get_queue(QUEUE)
    seen = 0
    async with queue.iterator() as messages:
        async for message in messages:
            deliver(message.body)
            seen += 1
            if seen % 100 == 0:
                await message.ack(multiple=True)


async def _rabbit_purge(connection: Any) -> None:
    channel = await connection.channel()
    await (await channel.get_queue(QUEUE)).purge()
    await channel.close()


async def rabbitmq_consume(url: str, size: int, count: int, duration_s: float) -> dict[str, Any]:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        await _rabbit_purge(connection)
        produced = await rabbitmq_publish(url, size, count, duration_s, 256)
        read = 0
        done = asyncio.Event()

        def deliver(_body: bytes) -> None:
            nonlocal read
            read += 1
            if read >= produced["messages"]:
                done.set()

        started = time.perf_counter()
        consumer = asyncio.create_task(_rabbit_receive(connection, deliver))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), duration_s)
        elapsed = time.perf_counter() - started
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
    return _throughput(read, size, elapsed)


async def rabbitmq_e2e(url: str, size: int, rate: float, count: int) -> dict[str, Any]:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        await _rabbit_purge(connection)
        channel = await connection.channel(publisher_confirms=True)

        async def send(body: bytes) -> None:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=QUEUE, timeout=ACK_GRACE_S)

        return await end_to_end(
            send, lambda deliver: _rabbit_receive(connection, deliver), size, rate, count
        )


# --- scenario 4: failover, NATS (dledgermq's is in bench.suite, next to its cluster) ------


async def nats_failover(cluster: NatsCluster, kills: int, pause_s: float) -> list[float]:
    """SIGKILL the stream leader's nats-server `kills` times under one-at-a-time publish."""
    import nats

    client = await nats.connect(
        servers=cluster.urls(),
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        error_cb=_expected,  # Resets and refused reconnects are the point here.
    )
    js = client.jetstream(timeout=1.0)
    body = os.urandom(128)
    acks: list[tuple[float, float]] = []
    stopping = asyncio.Event()

    async def sender() -> None:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                await js.publish(SUBJECT, body, timeout=1.0)
            except Exception:  # No leader yet, or reconnecting: try again shortly.
                await asyncio.sleep(0.01)
                continue
            acks.append((started, time.monotonic()))

    task = asyncio.create_task(sender())
    gaps: list[float] = []
    try:
        for _ in range(kills):
            await asyncio.sleep(pause_s)  # Steady load between kills.
            leader = await _nats_stream_leader(js, cluster)
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, leader)
            deadline = killed_at + 60
            while not (acks and acks[-1][0] > killed_at) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # Polling the sender's progress.
            gaps.append(first_ack_after(acks[-200:], killed_at))
            await asyncio.to_thread(cluster.restart, leader)
            await _nats_stream_whole(js)
    finally:
        stopping.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        await client.close()
    return gaps


async def _expected(_error: Exception) -> None:
    """nats-py prints a traceback per connection error unless given a callback."""


async def _nats_stream_leader(js: Any, cluster: NatsCluster, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        first = await _nats_leader_once(js)
        await asyncio.sleep(0.5)  # The same answer twice: leadership is not moving.
        if first in cluster.nodes and await _nats_leader_once(js) == first:
            return first
    raise RuntimeError("no stable NATS stream leader")


async def _nats_leader_once(js: Any) -> str | None:
    with contextlib.suppress(Exception):
        info = await js.stream_info(STREAM)
        return info.cluster.leader if info.cluster else None
    return None


async def _nats_stream_whole(js: Any, timeout_s: float = 30.0) -> None:
    """Wait until both followers are current again, so the next kill leaves a quorum."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            info = await js.stream_info(STREAM)
            replicas = info.cluster.replicas or []
            if len(replicas) == 2 and all(r.current for r in replicas):
                return
        await asyncio.sleep(0.1)
