"""Delivery: how a pulled batch reaches the push consumer's callback, and what a failure costs.

Owns: calling the callback (a sync one in a worker thread, so it cannot stall the event
loop) and knowing which queues are in the middle of one (`busy`). Two delivery styles:
- concurrent clustering (RocketMQ's concurrent consumer): a batch whose callback failed
  is sent back to its broker group; it comes again through the group's retry topic
  `%RETRY%<group>`, or goes to `%DLQ%<group>` after `max_reconsume_times` retries. Only
  while the send-back itself fails is the batch retried here, so no message is skipped;
- broadcasting: no retry topic, so a failing batch is retried here up to
  `max_reconsume_times` times (`local_retry.py`), then logged and skipped.

Must not: pull, move or commit offsets, or decide which queues are consumed
(`push_consumer.py`); the orderly style lives in `orderly_delivery.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable

from dledgermq.client.consumer import PullConsumer
from dledgermq.client.local_retry import GaveUp, retry_locally
from dledgermq.client.message import Message, MessageQueue
from dledgermq.client.retry import as_delivered
from dledgermq.errors import MQError

log = logging.getLogger(__name__)

MessageCallback = Callable[[list[Message]], Awaitable[None] | None]


def is_async_callable(fn: object) -> bool:
    """True for `async def` functions and objects whose `__call__` is `async def`."""
    if inspect.iscoroutinefunction(fn):
        return True
    return callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)


def backoff_s(failures: int, *, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Exponential, capped: a broken broker is retried at most every `cap_s`."""
    return min(cap_s, base_s * 2 ** max(0, failures - 1))


def log_failed(mq: MessageQueue, messages: list[Message]) -> None:
    """Log the exception being handled as the callback's failure on `messages`."""
    first, last = messages[0].queue_offset, messages[-1].queue_offset
    log.exception("%s: callback failed for offsets %d..%d", mq, first, last)


class Delivery:
    """Hands one consumer's pulled batches to its callback."""

    def __init__(
        self,
        callback: MessageCallback,
        pull: PullConsumer,
        *,
        max_reconsume_times: int,
        suspend_s: float,
    ) -> None:
        self.pull = pull
        self.max_reconsume_times = max_reconsume_times
        self.suspend_s = suspend_s  # The pause before a failed message is retried here.
        self.busy: set[MessageQueue] = set()  # The callback runs for these queues now.
        self._callback = callback

    async def concurrently(self, mq: MessageQueue, messages: list[Message]) -> None:
        """Call back; if that fails, send the batch back to its broker group. Returns
        only once the batch was consumed or sent back (so the offset, and the commit,
        never pass a message that was neither); while sending back fails, the batch is
        consumed again here after a pause, its `reconsume_times` counted up locally."""
        delivered = [as_delivered(m) for m in messages]
        failures = 0
        while True:
            try:
                await self._invoke(delivered)
            except Exception:
                failures += 1
                log_failed(mq, messages)
            else:
                return
            try:
                await self.pull.send_back(
                    messages,
                    broker_name=mq.broker_name,
                    max_reconsume_times=self.max_reconsume_times,
                )
            except MQError as err:
                log.warning("%s: send-back failed (%s); consuming again here", mq, err)
            else:
                return
            await asyncio.sleep(backoff_s(failures))
            delivered = [
                dataclasses.replace(m, reconsume_times=m.reconsume_times + 1) for m in delivered
            ]

    async def broadcast(self, mq: MessageQueue, messages: list[Message]) -> None:
        """Broadcasting: retried here, then logged and skipped (no retry topic)."""

        async def attempt(failures: int) -> bool:
            batch = [
                dataclasses.replace(m, reconsume_times=m.reconsume_times + failures)
                for m in messages
            ]
            return await self.attempt(mq, batch)

        outcome = await retry_locally(
            attempt,
            max_reconsume_times=self.max_reconsume_times,
            may_go_on=lambda: True,
            suspend_s=self.suspend_s,
        )
        if isinstance(outcome, GaveUp):
            first, last = messages[0].queue_offset, messages[-1].queue_offset
            log.error(
                "%s: offsets %d..%d skipped after %d failed attempts (broadcasting: no retry)",
                mq,
                first,
                last,
                outcome.failures,
            )

    async def attempt(self, mq: MessageQueue, messages: list[Message]) -> bool:
        """One callback; True when it succeeded. Marks the queue busy meanwhile, so that
        stopping an orderly queue waits for the message to finish."""
        self.busy.add(mq)
        try:
            await self._invoke(messages)
        except Exception:
            log_failed(mq, messages)
            return False
        finally:
            self.busy.discard(mq)
        return True

    async def _invoke(self, messages: list[Message]) -> None:
        # A sync callback runs in a worker thread so it cannot stall the event loop.
        if is_async_callable(self._callback):
            result = self._callback(messages)
            assert result is not None
            await result
        else:
            await asyncio.to_thread(self._callback, messages)
