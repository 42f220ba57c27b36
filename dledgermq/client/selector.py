"""Which queue a producer sends to (RocketMQ `MQFaultStrategy`, minus latency tracking).

Owns: which queues a send may pick (the route's writable queues minus broker groups that
just answered write-disabled) and the three rules, in order: an explicit queue wins; a
sharding key always maps to the same queue (crc32 over the ordered writable queues, so
every process and every run agrees, unlike Python's salted `hash()`); otherwise
round-robin, skipping the broker group that just failed when another group is available.

Must not: do I/O or read clocks; the counter is the only state.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from dledgermq.client.message import MessageQueue
from dledgermq.client.topic_route import TopicRouteData
from dledgermq.errors import NoPermission, NoRoute


def sharding_index(sharding_key: str, queue_count: int) -> int:
    """A stable queue index for a key: the same key always lands on the same queue."""
    assert queue_count > 0, queue_count
    return (zlib.crc32(sharding_key.encode()) & 0xFFFFFFFF) % queue_count


def send_candidates(route: TopicRouteData, held_out: frozenset[str]) -> list[MessageQueue]:
    """The queues a send may pick, in route order.

    Raises:
        NoPermission: no broker group takes writes for the topic (a read-only topic, or
            every group write-disabled, by the route or by a refusal just now).
        NoRoute: writable, but no group has a master now (an election; retryable).
    """
    writable = [q for q in route.queues if route.permits_write(q)]
    open_groups = sorted({q.broker_name for q in writable} - held_out)
    if route.queues and not open_groups:
        refused = sorted({q.broker_name for q in route.queues})
        raise NoPermission(
            f"no broker group takes writes for topic {route.topic!r} now: {refused} are "
            "write-disabled or the topic is read-only there",
            topic=route.topic,
            broker_names=refused,
        )
    return [q for q in route.writable_queues() if q.broker_name in open_groups]


class QueueSelector:
    """Round-robin over queues with a stable sharding-key path; one per producer."""

    def __init__(self, start: int = 0) -> None:
        assert start >= 0, start
        self._counter = start

    def select(
        self,
        queues: Sequence[MessageQueue],
        *,
        sharding_key: str | None = None,
        avoid_broker: str | None = None,
    ) -> MessageQueue:
        """Pick a queue among `queues` (ordered, writable).

        Args:
            queues: the topic's writable queues in route order.
            sharding_key: messages with the same key keep one queue (ordered messages);
                `avoid_broker` does not apply to them.
            avoid_broker: a group that just failed; skipped unless it is the only one.

        Raises:
            NoRoute: there is no writable queue.
        """
        if not queues:
            raise NoRoute("the topic has no writable queue")
        if sharding_key is not None:
            return queues[sharding_index(sharding_key, len(queues))]
        for _ in range(len(queues)):
            queue = self._next(queues)
            if queue.broker_name != avoid_broker:
                return queue
        return self._next(queues)

    def _next(self, queues: Sequence[MessageQueue]) -> MessageQueue:
        queue = queues[self._counter % len(queues)]
        self._counter += 1
        return queue
