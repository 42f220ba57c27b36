"""Which queue a producer sends to (RocketMQ `MQFaultStrategy`, minus latency tracking).

Owns: the three rules, in order: an explicit queue wins; a sharding key always maps to the
same queue (crc32 over the ordered writable queues, so every process and every run agrees,
unlike Python's salted `hash()`); otherwise round-robin, skipping the broker group that
just failed when another group is available.

Must not: do I/O or read clocks; the counter is the only state.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from dledgermq.client.message import MessageQueue
from dledgermq.errors import NoRoute


def sharding_index(sharding_key: str, queue_count: int) -> int:
    """A stable queue index for a key: the same key always lands on the same queue."""
    assert queue_count > 0, queue_count
    return (zlib.crc32(sharding_key.encode()) & 0xFFFFFFFF) % queue_count


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
