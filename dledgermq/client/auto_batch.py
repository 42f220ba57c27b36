"""Coalescing concurrent sends into batches (RocketMQ 5's autoBatch, Kafka's batching).

A broker stores a batch of 100 messages for about the cost of one message sent alone
(bench/README.md: ~46,000 msgs/s in batches against ~2,300 for independent single
sends), so many coroutines each awaiting `send()` get far more through when their
messages travel together. The batcher adds no wait of its own: a topic's first send
leaves at once, as does every send while fewer than `max_inflight` requests for that
topic are out; only sends that arrive while all are out wait, and they leave together,
as one batch, when the first of those requests is answered (DLedger's batch push does
the same: it batches only while the previous push is still in flight).

Each caller still gets its own result or error. A batch refused for its content (a
message too large or malformed, or a batch over the broker's limits) is sent again in
halves, down to single messages, so one bad message fails only its own sender. Errors
that concern the topic or the cluster (no route, no permission, retries spent) reach
every sender of the batch.

Owns: per-topic lanes (waiting messages and requests in flight), cutting batches by
count and bytes. Must not: pick queues, retry or talk HTTP: `flush` does all of that
(the producer's own `_send`, with its retries and route handling).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from dledgermq.client.message import OutgoingMessage, SendResult
from dledgermq.errors import BadRequest, BatchTooLarge, InvalidMessage, MessageTooLarge

__all__ = ["AutoBatcher", "BatchLimits"]

Flush = Callable[[str, list[OutgoingMessage]], Awaitable[list[SendResult]]]
Spawn = Callable[[Coroutine[Any, Any, None]], object]
# Refusals that concern what a message holds, not where it goes: worth a retry alone.
CONTENT_ERRORS = (BadRequest, BatchTooLarge, InvalidMessage, MessageTooLarge)
# Counted per message on top of its body: properties, keys and framing, roughly.
MESSAGE_OVERHEAD_BYTES = 256
# A message waiting in a lane, and the future its sender awaits.
Waiter = tuple[OutgoingMessage, asyncio.Future[SendResult]]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How many requests per topic may be out at once, and how large a batch may grow.

    The defaults stay inside the broker's (1,000 messages, 4 MiB per batch by default);
    a broker configured lower refuses a batch, which is then sent in halves."""

    max_inflight: int = 2
    max_messages: int = 100
    max_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_inflight", "max_messages", "max_bytes"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"BatchLimits.{name} must be at least 1, got {value}")


@dataclass(slots=True)
class _Lane:
    waiting: deque[Waiter] = field(default_factory=deque)
    inflight: int = 0


def message_bytes(message: OutgoingMessage) -> int:
    return len(message.body) + MESSAGE_OVERHEAD_BYTES


class AutoBatcher:
    """One per producer; `submit` is called on the producer's event loop only."""

    def __init__(self, flush: Flush, spawn: Spawn, limits: BatchLimits | None = None) -> None:
        self._flush = flush
        self._spawn = spawn
        self.limits = limits or BatchLimits()
        self._lanes: dict[str, _Lane] = {}

    async def submit(self, topic: str, message: OutgoingMessage) -> SendResult:
        """Send `message` with whatever else is waiting for `topic`; its own result."""
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        lane = self._lanes.setdefault(topic, _Lane())
        lane.waiting.append((message, future))
        self._dispatch(topic, lane)
        return await future

    def _dispatch(self, topic: str, lane: _Lane) -> None:
        while lane.waiting and lane.inflight < self.limits.max_inflight:
            batch = self._cut(lane)
            if batch:
                lane.inflight += 1
                self._spawn(self._send(topic, lane, batch))
        if not lane.waiting and not lane.inflight and self._lanes.get(topic) is lane:
            del self._lanes[topic]

    def _cut(self, lane: _Lane) -> list[Waiter]:
        """The next batch from the front of the lane: its first message always (however
        large), then as many as fit; senders that gave up meanwhile are dropped."""
        batch: list[Waiter] = []
        size = 0
        while lane.waiting and len(batch) < self.limits.max_messages:
            message, future = lane.waiting[0]
            grown = size + message_bytes(message)
            if batch and grown > self.limits.max_bytes:
                break
            lane.waiting.popleft()
            if not future.done():  # A cancelled sender's message is not sent.
                batch.append((message, future))
                size = grown
        return batch

    async def _send(self, topic: str, lane: _Lane, batch: list[Waiter]) -> None:
        try:
            await self._settle(topic, batch)
        finally:
            lane.inflight -= 1
            self._dispatch(topic, lane)

    async def _settle(self, topic: str, batch: list[Waiter]) -> None:
        try:
            results = await self._flush(topic, [message for message, _ in batch])
        except CONTENT_ERRORS as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # Halves: a batch over the broker's limits fits again, a bad message is found
            # in O(log n) requests, and every good one is still stored.
            half = len(batch) // 2
            await asyncio.gather(
                self._settle(topic, batch[:half]), self._settle(topic, batch[half:])
            )
            return
        except BaseException as exc:  # Every sender learns the outcome, then it propagates.
            for _, future in batch:
                _fail(future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        assert len(results) == len(batch), (len(results), len(batch))
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[SendResult], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
