"""Where a push consumer's queue loop starts, and where it resumes when its offset moved.

Owns: `from_where` (RocketMQ's ConsumeFromWhere: a queue the group never committed starts
at its "first" or "last" message, or at a time: by default the last half hour), the rule
that a retry queue always starts from its first message, reading the committed offset
(from the broker, or from the local offset file in broadcasting mode), and correcting an
offset the broker reports as moved to the nearest end of the valid range.

Must not: pull, deliver or commit (`push_consumer.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from dledgermq.client.consumer import PullConsumer
from dledgermq.client.delivery import backoff_s
from dledgermq.client.message import MessageQueue
from dledgermq.client.offset_store import LocalOffsetStore
from dledgermq.client.retry import is_retry_topic
from dledgermq.errors import OffsetOutOfRange

log = logging.getLogger(__name__)

FromWhere = Literal["first", "last", "timestamp"]
# RocketMQ's consumeTimestamp default: a group starting "from timestamp" without one given
# begins with what was stored in the last half hour.
DEFAULT_LOOKBACK_MS = 30 * 60 * 1000


def corrected_offset(offset: int, min_offset: int, max_offset: int) -> int:
    """Where to resume after OFFSET_MOVED: the nearest end of the valid range."""
    return max_offset if offset > max_offset else max(offset, min_offset)


def start_point(from_where: FromWhere, from_timestamp_ms: int | None) -> str | int:
    """Where a queue without a stored offset starts: "first", "last" or a time in ms.

    Raises:
        ValueError: `from_where` is none of those, or a time is given without "timestamp".
    """
    if from_where not in ("first", "last", "timestamp"):
        raise ValueError(f"from_where must be 'first', 'last' or 'timestamp', got {from_where!r}")
    if from_timestamp_ms is not None and from_where != "timestamp":
        raise ValueError("from_timestamp_ms needs from_where='timestamp'")
    if from_where != "timestamp":
        return from_where
    lookback = int(time.time() * 1000) - DEFAULT_LOOKBACK_MS
    return lookback if from_timestamp_ms is None else from_timestamp_ms


class StartOffsets:
    """The offset a queue's loop starts from, or resumes from after OFFSET_MOVED."""

    def __init__(
        self, pull: PullConsumer, offset_store: LocalOffsetStore | None, start: str | int
    ) -> None:
        """`offset_store` is the local one of a broadcasting consumer (else None: the
        broker keeps the offsets); `start` is what `start_point` returned."""
        self._pull = pull
        self._offset_store = offset_store
        self._start = start

    async def start(self, mq: MessageQueue) -> int:
        """The committed offset, else where `from_where` says; a retry queue always from
        its first message (RocketMQ's rule: retries are never old)."""
        failures = 0
        while True:
            try:
                if self._offset_store is not None:
                    committed = self._offset_store.get(mq)
                else:
                    committed = await self._pull.fetch_offset(mq)
                if committed is not None:
                    return committed
                start = "first" if is_retry_topic(mq.topic) else self._start
                return await self._pull.initial_offset(mq, start)
            except Exception as err:  # As in the pull loop: back off, never end the loop.
                failures += 1
                log.warning("%s: no start offset yet: %r", mq, err)
                await asyncio.sleep(backoff_s(failures))

    async def resume(self, mq: MessageQueue, offset: int, err: OffsetOutOfRange) -> int:
        """The valid offset nearest to `offset`, from the error's range or the broker."""
        try:
            bounds = int(err.details["min_offset"]), int(err.details["max_offset"])
        except (KeyError, TypeError, ValueError):
            bounds = await self._pull.queue_range(mq)
        resumed = corrected_offset(offset, *bounds)
        if resumed == offset:
            raise err  # The broker disagrees with itself; let the caller back off.
        log.warning("%s: offset %d moved; resuming at %d", mq, offset, resumed)
        return resumed
