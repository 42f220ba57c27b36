"""Consumer progress of a group on one broker group: per queue, the queue's range, the
group's committed offset, the lag, and when the last message it consumed was stored
(RocketMQ's consumer progress "last timestamp": how far behind in time, not only in count).

Read on the ReputActor's thread (it owns the Dispatcher), like every other read: the
`GroupProgress` query (broker/queries.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dledgermq.broker.dispatch import Dispatcher
from dledgermq.broker.store_reads import queue_range, store_time_at
from dledgermq.errors import TopicNotFound


@dataclass(frozen=True, slots=True)
class QueueProgress:
    queue_id: int
    min_offset: int
    max_offset: int
    consumer_offset: int | None  # None: the group never committed one here
    last_consumed_ms: int | None  # store time of the message before consumer_offset

    @property
    def lag(self) -> int:
        """Messages the group has not consumed yet (from the oldest kept, if it lags
        behind retention or never committed)."""
        start = self.min_offset if self.consumer_offset is None else self.consumer_offset
        return self.max_offset - max(self.min_offset, start)

    def to_wire(self) -> dict[str, Any]:
        return {
            "queue_id": self.queue_id,
            "min_offset": self.min_offset,
            "max_offset": self.max_offset,
            "consumer_offset": self.consumer_offset,
            "lag": self.lag,
            "last_consumed_ms": self.last_consumed_ms,
        }


def group_progress(dispatcher: Dispatcher, group: str, topic: str) -> list[QueueProgress]:
    """One row per read queue of `topic` on this broker group.

    Raises:
        TopicNotFound: no such topic here.
    """
    config = dispatcher.state.topics.get(topic)
    if config is None:
        raise TopicNotFound(f"topic {topic!r} does not exist on this broker", topic=topic)
    committed = dispatcher.state.offsets.get(group, {}).get(topic, {})
    rows = []
    for queue_id in range(config.read_queues):
        low, high = queue_range(dispatcher, topic, queue_id)
        offset = committed.get(queue_id)
        last = None
        if offset is not None and low < offset <= high:
            last = store_time_at(dispatcher, topic, queue_id, offset - 1)
        rows.append(QueueProgress(queue_id, low, high, offset, last))
    return rows
