"""Orderly delivery (RocketMQ's MessageListenerOrderly): one message at a time, in queue order.

Owns: processing a queue's message only while this member's lease on it is valid
(`leases.py`; without leases, when queues are chosen locally, always), waiting while the
lease has lapsed (a heartbeat may renew it), and letting a queue being stopped finish
the message in its callback within what is left of the lease. A failing message is
retried here after a pause up to `max_reconsume_times` times (`local_retry.py`), then
moved to the group's DLQ (clustering; tried until stored or the lease is lost) or logged
and skipped (broadcasting).

Must not: pull, commit, or decide which queues this member holds (`push_consumer.py`);
it only advances the shared `offsets` past each message consumed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from dledgermq.client.delivery import Delivery, backoff_s
from dledgermq.client.leases import QueueLeases
from dledgermq.client.local_retry import Consumed, GaveUp, Interrupted, retry_locally
from dledgermq.client.message import Message, MessageQueue
from dledgermq.client.retry import as_delivered
from dledgermq.errors import MQError

log = logging.getLogger(__name__)
# How often an orderly queue whose lease lapsed looks again (a heartbeat may renew it).
LEASE_WAIT_S = 0.1


class OrderlyDelivery:
    """Delivers a queue's messages one at a time, each under a valid lease."""

    def __init__(
        self,
        delivery: Delivery,
        *,
        leases: QueueLeases | None,
        stopping: set[MessageQueue],
        offsets: dict[MessageQueue, int],
        broadcasting: bool,
    ) -> None:
        """`leases` is None when the queues are not leased; `stopping` and `offsets`
        are the consumer's own (queues being stopped; next offset per queue)."""
        self._delivery = delivery
        self._leases = leases
        self._stopping = stopping
        self._offsets = offsets
        self._broadcasting = broadcasting

    async def deliver(self, mq: MessageQueue, messages: list[Message], next_offset: int) -> int:
        """One message at a time, in queue order, only under a valid lease; returns the
        offset to go on from (a message not consumed is where the next pull starts)."""
        for message in messages:
            if not await self._wait_for_lease(mq):
                return message.queue_offset

            async def attempt(failures: int, message: Message = message) -> bool:
                delivered = as_delivered(message)
                if failures:
                    extra = message.reconsume_times + failures
                    delivered = dataclasses.replace(delivered, reconsume_times=extra)
                return await self._delivery.attempt(mq, [delivered])

            outcome = await retry_locally(
                attempt,
                max_reconsume_times=self._delivery.max_reconsume_times,
                may_go_on=lambda: self._may_process(mq),
                suspend_s=self._delivery.suspend_s,
            )
            match outcome:
                case Interrupted():
                    return message.queue_offset
                case GaveUp(failures) if not await self._give_up(mq, message, failures):
                    return message.queue_offset
                case Consumed() | GaveUp():
                    pass
            self._offsets[mq] = message.queue_offset + 1
            if mq in self._stopping:
                return message.queue_offset + 1
        return next_offset

    async def let_finish(self, mq: MessageQueue, task: asyncio.Task[None]) -> None:
        """The queue is being stopped: wait for the message in its callback to finish,
        within what is left of its lease (no longer)."""
        if mq in self._delivery.busy:
            now = time.monotonic()
            budget = self._leases.left_s(mq, now) if self._leases is not None else None
            await asyncio.wait({task}, timeout=budget)

    def _may_process(self, mq: MessageQueue) -> bool:
        if mq in self._stopping:
            return False
        return self._leases is None or self._leases.valid(mq, time.monotonic())

    async def _wait_for_lease(self, mq: MessageQueue) -> bool:
        """Wait while the queue's lease is not valid (a heartbeat may renew it); False
        when the queue is being stopped instead."""
        while not self._may_process(mq):
            if mq in self._stopping:
                return False
            await asyncio.sleep(LEASE_WAIT_S)
        return True

    async def _give_up(self, mq: MessageQueue, message: Message, failures: int) -> bool:
        """After the last local retry: broadcasting skips the message; clustering moves it
        to the group's DLQ (recording its reconsumes), trying until that is stored or the
        lease is lost (False: the message stays, the next owner consumes it again)."""
        if self._broadcasting:
            log.error(
                "%s: offset %d skipped after %d failed attempts", mq, message.queue_offset, failures
            )
            return True
        reconsumes = message.reconsume_times + failures - 1
        tries = 0
        while self._may_process(mq):
            try:
                await self._delivery.pull.send_back(
                    message, broker_name=mq.broker_name, dead_letter_times=reconsumes
                )
            except MQError as err:
                tries += 1
                log.warning(
                    "%s: moving offset %d to the DLQ failed (%s)", mq, message.queue_offset, err
                )
                await asyncio.sleep(backoff_s(tries))
                continue
            log.error(
                "%s: offset %d moved to the DLQ after %d failed attempts",
                mq,
                message.queue_offset,
                failures,
            )
            return True
        return False
