"""The push consumer: long-poll loops that hand messages to a callback, at least once.

Owns: one loop per assigned queue (long-poll, deliver, advance), the starting offset of a
queue the group never committed (`from_where`), correcting an offset the broker reports as
moved, sending a batch whose callback failed back to its broker (RocketMQ's concurrent
consumer: it comes again through the group's retry topic `%RETRY%<group>`, which this
consumer also consumes, or goes to `%DLQ%<group>` after `max_reconsume_times` retries;
only while the send-back itself fails is the batch retried here, so no message is ever
skipped), and committing offsets every `commit_interval_s` and on close. Retried
messages reach the callback with their original topic and msg_id and the broker's
`reconsume_times`. A group's members should all consume the same topic: the retry topic
is the group's, as in RocketMQ.

Must not: decide which member of the group owns which queue. In clustering mode (the
default) the writer of each broker group decides (its RebalancerActor): every rebalance is
a heartbeat to each broker group of the topic, answered with the queues this member may
consume now, under a lease the next heartbeat renews. A queue the answer leaves out is
stopped, its offset committed, then its lease released, so the next owner (which the
broker holds back until then, or until the lease expires) starts where this one stopped;
if no heartbeat reaches a broker group for most of a lease, its queues are stopped too.
`assign_queues` replaces all of that with a local choice (every queue by default): for
tools and tests that want fixed queues, not for several members of one group.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dledgermq.client.consumer import PullConsumer
from dledgermq.client.message import Message, MessageQueue
from dledgermq.client.retry import (
    MAX_RECONSUME_TIMES_DEFAULT,
    TOPIC_NAME_MAX,
    as_delivered,
    is_retry_topic,
    retry_topic,
)
from dledgermq.errors import MQError, NoRoute, OffsetOutOfRange

log = logging.getLogger(__name__)
# Queues of a broker group that stops answering heartbeats are kept for this share of
# their lease at most, so they are stopped before the broker may give them to another.
LEASE_SAFETY = 0.75

MessageCallback = Callable[[list[Message]], Awaitable[None] | None]
AssignQueues = Callable[[list[MessageQueue]], list[MessageQueue]]
FromWhere = Literal["first", "last"]


def is_async_callable(fn: object) -> bool:
    """True for `async def` functions and objects whose `__call__` is `async def`."""
    if inspect.iscoroutinefunction(fn):
        return True
    return callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)


def default_client_id() -> str:
    """host@pid@random, like RocketMQ's instance name: unique per consumer object."""
    return f"{socket.gethostname()}@{os.getpid()}@{secrets.token_hex(4)}"


def assign_all(queues: list[MessageQueue]) -> list[MessageQueue]:
    """The single-member strategy: this consumer owns every readable queue."""
    return list(queues)


def corrected_offset(offset: int, min_offset: int, max_offset: int) -> int:
    """Where to resume after OFFSET_MOVED: the nearest end of the valid range."""
    return max_offset if offset > max_offset else max(offset, min_offset)


def backoff_s(failures: int, *, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Exponential, capped: a broken broker is retried at most every `cap_s`."""
    return min(cap_s, base_s * 2 ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class PushOptions:
    """Tuning for the pull loops; the defaults follow RocketMQ's push consumer."""

    wait_ms: int = 15_000
    max_messages: int = 32
    # Also the heartbeat interval: well inside the broker's lease (20 s) and member expiry.
    rebalance_interval_s: float = 5.0
    # Retries through the broker before a failing message goes to the group's DLQ.
    max_reconsume_times: int = MAX_RECONSUME_TIMES_DEFAULT
    strategy: str = "average"  # average | average_by_circle | consistent_hash | zone_aware
    zone: str | None = None


class PushConsumer:
    """Consumes a topic by calling `callback(messages)` for each pulled batch."""

    def __init__(  # noqa: PLR0913 - RocketMQ push consumer settings, keyword-only
        self,
        namesrv_addrs: Sequence[str],
        group: str,
        topic: str,
        *,
        callback: MessageCallback,
        tags: str = "*",
        from_where: FromWhere = "last",
        commit_interval_s: float = 5.0,
        assign_queues: AssignQueues | None = None,
        options: PushOptions | None = None,
        pull_consumer: PullConsumer | None = None,
        client_id: str | None = None,
    ) -> None:
        if from_where not in ("first", "last"):
            raise ValueError(f"from_where must be 'first' or 'last', got {from_where!r}")
        self.topic = topic
        self.group = group
        self._retry_topic = retry_topic(group)
        # Clustering mode heartbeats both: failed messages come back through the retry
        # topic, whatever their tags (they matched when first delivered). A group name too
        # long for a topic name has no retry topic (the broker refuses its send-backs).
        self._subscriptions = {topic: tags}
        if len(self._retry_topic) <= TOPIC_NAME_MAX:
            self._subscriptions[self._retry_topic] = "*"
        self._callback = callback
        self._tags = tags
        self._from_where = from_where
        self._commit_interval_s = commit_interval_s
        self._assign = assign_queues
        self.client_id = client_id or default_client_id()
        self._options = options or PushOptions()
        # Broker group -> (monotonic time of its last answered heartbeat, its lease in s).
        self._leased: dict[str, tuple[float, float]] = {}
        self._pull = pull_consumer or PullConsumer(namesrv_addrs, group)
        self._loops: dict[MessageQueue, asyncio.Task[None]] = {}
        self._offsets: dict[MessageQueue, int] = {}
        self._committed: dict[MessageQueue, int] = {}
        self._services: list[asyncio.Task[None]] = []

    @property
    def assigned_queues(self) -> list[MessageQueue]:
        return sorted(self._loops)

    @property
    def offsets(self) -> dict[MessageQueue, int]:
        """The next offset to consume per queue (what the next commit will store)."""
        return dict(self._offsets)

    async def start(self) -> None:
        """Assign queues and start pulling; later rebalances run in the background."""
        await self._pull.start()
        await self.rebalance()
        self._services = [
            asyncio.create_task(self._every(self._commit_interval_s, self.commit)),
            asyncio.create_task(self._every(self._options.rebalance_interval_s, self.rebalance)),
        ]

    async def close(self) -> None:
        """Stop every loop, commit the offsets reached, leave the group (its leases are
        freed at once), and close the connection."""
        tasks = [*self._services, *self._loops.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._services.clear()
        self._loops.clear()
        try:
            await self.commit()
            if self._assign is None:
                for broker in sorted(self._leased):
                    try:
                        await self._pull.leave(self.topic, broker, self.client_id)
                    except MQError as err:  # Its leases expire by themselves.
                        log.warning("%s: leaving %s failed: %s", self.topic, broker, err)
        finally:
            await self._pull.close()

    async def __aenter__(self) -> PushConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def rebalance(self) -> None:
        """Start loops for newly assigned queues; stop, commit and release the others.

        The queues are the topic's and the group's retry topic's (`assign_queues` gets
        both lists, in that order)."""
        try:
            queues = await self._pull.fetch_queues(self.topic)
        except MQError as err:
            log.warning("rebalance of %s skipped: %s", self.topic, err)
            return
        topic_brokers = {mq.broker_name for mq in queues}
        queues += await self._retry_queues()
        if self._assign is not None:
            wanted = set(self._assign(queues))
        else:
            brokers = sorted({mq.broker_name for mq in queues})
            wanted = await self._heartbeat(brokers, topic_brokers)
        dropped = sorted(set(self._loops) - wanted)
        for mq in dropped:
            task = self._loops.pop(mq)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if dropped and self._assign is None:
            await self.commit()  # Before the release: the next owner starts from here.
            try:
                await self._pull.release(self.client_id, dropped)
            except MQError as err:  # The lease then expires by itself.
                log.warning("%s: releasing %d queues failed: %s", self.topic, len(dropped), err)
        for mq in sorted(wanted - set(self._loops)):
            self._loops[mq] = asyncio.create_task(self._consume(mq))

    async def _retry_queues(self) -> list[MessageQueue]:
        """The group's retry queues (none until a broker group created its retry topic)."""
        if self._retry_topic not in self._subscriptions:
            return []
        try:
            return await self._pull.fetch_queues(self._retry_topic)
        except NoRoute:
            return []
        except MQError as err:
            log.warning("%s: no route to %s now: %s", self.topic, self._retry_topic, err)
            return []

    async def _heartbeat(self, brokers: list[str], topic_brokers: set[str]) -> set[MessageQueue]:
        """The queues each broker group grants this member now; a group that does not
        answer keeps its queues here only while their lease may still run."""
        wanted: set[MessageQueue] = set()
        now = time.monotonic()
        for broker in brokers:
            route_topic = self.topic if broker in topic_brokers else self._retry_topic
            try:
                granted, lease_ms = await self._pull.heartbeat_topics(
                    route_topic,
                    broker,
                    self._subscriptions,
                    client_id=self.client_id,
                    strategy=self._options.strategy,
                    zone=self._options.zone,
                )
            except MQError as err:
                answered_at, lease_s = self._leased.get(broker, (0.0, 0.0))
                keep = now - answered_at < lease_s * LEASE_SAFETY
                log.warning("%s: heartbeat to %s failed (%s)", self.topic, broker, err)
                if keep:
                    wanted |= {mq for mq in self._loops if mq.broker_name == broker}
                continue
            self._leased[broker] = (now, lease_ms / 1000)
            wanted |= {
                MessageQueue(topic, broker, q)
                for topic, queue_ids in granted.items()
                if topic in self._subscriptions
                for q in queue_ids
            }
        return wanted

    async def commit(self) -> None:
        """Store every offset that moved since the last commit."""
        moved = {mq: o for mq, o in self._offsets.items() if self._committed.get(mq) != o}
        if not moved:
            return
        try:
            await self._pull.commit_offsets(moved)
        except MQError as err:
            log.warning("offset commit failed (%s); retrying next interval", err)
            return
        self._committed.update(moved)
        for mq in [mq for mq in self._offsets if mq not in self._loops]:
            del self._offsets[mq]

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:  # A bug in one round must not end the periodic job.
                log.exception("%s: periodic %s failed", self.topic, job.__name__)

    async def _consume(self, mq: MessageQueue) -> None:
        """The loop of one queue: pull, deliver, advance; errors back off and retry."""
        offset = await self._start_offset(mq)
        self._offsets[mq] = offset
        failures = 0
        while True:
            try:
                offset = await self._pull_and_deliver(mq, offset)
                failures = 0
            except Exception as err:  # Broker errors, and bugs: the loop must outlive both.
                failures += 1
                log.warning("%s: pull failed: %r", mq, err, exc_info=not isinstance(err, MQError))
                await asyncio.sleep(backoff_s(failures))
            self._offsets[mq] = offset

    async def _pull_and_deliver(self, mq: MessageQueue, offset: int) -> int:
        """One long-poll and its delivery; returns the next offset to pull."""
        try:
            result = await self._pull.pull(
                mq,
                offset,
                max_messages=self._options.max_messages,
                tags=self._tags,
                wait_ms=self._options.wait_ms,
            )
        except OffsetOutOfRange as err:
            return await self._resume_offset(mq, offset, err)
        if result.messages:
            await self._deliver(mq, result.messages)
        return result.next_offset

    async def _resume_offset(self, mq: MessageQueue, offset: int, err: OffsetOutOfRange) -> int:
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

    async def _start_offset(self, mq: MessageQueue) -> int:
        """The committed offset, else min/max of the queue as `from_where` says; a retry
        queue always from its first message (RocketMQ's rule: retries are never old)."""
        failures = 0
        while True:
            try:
                committed = await self._pull.fetch_offset(mq)
                if committed is not None:
                    return committed
                min_offset, max_offset = await self._pull.queue_range(mq)
            except Exception as err:  # As in _consume: back off, never end the loop.
                failures += 1
                log.warning("%s: no start offset yet: %r", mq, err)
                await asyncio.sleep(backoff_s(failures))
                continue
            first = self._from_where == "first" or is_retry_topic(mq.topic)
            return min_offset if first else max_offset

    async def _deliver(self, mq: MessageQueue, messages: list[Message]) -> None:
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
                first, last = messages[0].queue_offset, messages[-1].queue_offset
                log.exception("%s: callback failed for offsets %d..%d", mq, first, last)
            else:
                return
            try:
                await self._pull.send_back(
                    messages,
                    broker_name=mq.broker_name,
                    max_reconsume_times=self._options.max_reconsume_times,
                )
            except MQError as err:
                log.warning("%s: send-back failed (%s); consuming again here", mq, err)
            else:
                return
            await asyncio.sleep(backoff_s(failures))
            delivered = [
                dataclasses.replace(m, reconsume_times=m.reconsume_times + 1) for m in delivered
            ]

    async def _invoke(self, messages: list[Message]) -> None:
        # A sync callback runs in a worker thread so it cannot stall the event loop.
        if is_async_callable(self._callback):
            result = self._callback(messages)
            assert result is not None
            await result
        else:
            await asyncio.to_thread(self._callback, messages)
