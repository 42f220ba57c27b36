"""The consumer's view of its queue leases: until when it may process each queue.

A broker group's writer grants a queue under a lease of `lease_ms` that starts when it
answers the heartbeat. The consumer counts from when it *sent* that heartbeat, which is
earlier, and keeps only `LEASE_SAFETY` of it, so it stops a queue before the writer may
give the queue to another member (RocketMQ's client lock, 30 s of the broker's 60 s). An
orderly member also tells a new writer which queues it still holds (`held`), so the new
writer can let it keep them through its grace period (`broker/lock_grace.py`).

Pure: the caller passes monotonic times in seconds; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from dledgermq.client.message import MessageQueue

# The share of a lease the consumer uses; the rest absorbs network delay, clock-rate
# differences and a deposed writer that has not noticed yet.
LEASE_SAFETY = 0.75


class QueueLeases:
    """Per queue, the monotonic time until which this member may process it."""

    def __init__(self, safety: float = LEASE_SAFETY) -> None:
        assert 0 < safety < 1, safety
        self._safety = safety
        self._valid_until: dict[MessageQueue, float] = {}

    def granted(self, queues: Iterable[MessageQueue], sent_at: float, lease_s: float) -> None:
        """A heartbeat sent at `sent_at` was answered with these queues under `lease_s`."""
        assert lease_s > 0, lease_s
        until = sent_at + lease_s * self._safety
        for mq in queues:
            self._valid_until[mq] = max(until, self._valid_until.get(mq, until))

    def valid(self, mq: MessageQueue, now: float) -> bool:
        return now < self._valid_until.get(mq, float("-inf"))

    def left_s(self, mq: MessageQueue, now: float) -> float:
        """How much longer the lease on `mq` may be used (0 when it ran out)."""
        return max(0.0, self._valid_until.get(mq, now) - now)

    def held(
        self, broker_name: str, queues: Iterable[MessageQueue], now: float
    ) -> dict[str, list[int]]:
        """Of `queues` (those being processed), the ones of `broker_name` still validly
        held, as {topic: [queue id]}: the claim an orderly heartbeat carries."""
        claim: dict[str, list[int]] = {}
        for mq in sorted(queues, key=lambda q: (q.topic, q.queue_id)):
            if mq.broker_name == broker_name and self.valid(mq, now):
                claim.setdefault(mq.topic, []).append(mq.queue_id)
        return claim

    def forget(self, mq: MessageQueue) -> None:
        """The queue was stopped (and released): its lease is no longer ours to use."""
        self._valid_until.pop(mq, None)
