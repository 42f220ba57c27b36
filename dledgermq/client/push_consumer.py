"""The push consumer: long-poll loops that hand messages to a callback, at least once.

Owns: one loop per assigned queue (long-poll, deliver, advance) and committing offsets
every `commit_interval_s` and on close. Where a loop starts (`from_where`) or resumes is
`start_offset.py`; how a batch reaches the callback, and what a failing one costs, is
`delivery.py` (clustering: sent back, to come again through the group's retry topic
`%RETRY%<group>`, which this consumer also consumes; broadcasting) and
`orderly_delivery.py`. Retried messages reach the callback with their original topic and
msg_id and the broker's `reconsume_times`. A group's members should all consume the same
topic: the retry topic is the group's, as in RocketMQ.

Must not: decide which member of the group owns which queue. In clustering mode (the
default) the writer of each broker group decides (its RebalancerActor): every rebalance is
a heartbeat to each broker group of the topic, answered with the queues this member may
consume now, under a lease the next heartbeat renews. A queue the answer leaves out is
stopped, its offset committed, then its lease released, so the next owner (which the
broker holds back until then, or until the lease expires) starts where this one stopped;
if no heartbeat reaches a broker group for most of a lease, its queues are stopped too.
`assign_queues` replaces all of that with a local choice (every queue by default): for
tools and tests that want fixed queues, not for several members of one group.

`orderly=True` (RocketMQ's MessageListenerOrderly): the member heartbeats as orderly and
names the queues it still holds, so a new writer lets it keep them through its grace
period; stopping a queue lets the message in the callback finish before the offset is
committed and the lease released. `mode="broadcasting"`: every member gets every message
of every queue; no heartbeat, no retry topic; offsets live in a local file
(`offset_store.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dledgermq.client.consumer import PullConsumer
from dledgermq.client.delivery import Delivery, MessageCallback, backoff_s, is_async_callable
from dledgermq.client.leases import LEASE_SAFETY, QueueLeases
from dledgermq.client.local_retry import SUSPEND_S
from dledgermq.client.message import MessageQueue
from dledgermq.client.offset_store import LocalOffsetStore, default_offset_file
from dledgermq.client.orderly_delivery import OrderlyDelivery
from dledgermq.client.retry import MAX_RECONSUME_TIMES_DEFAULT, TOPIC_NAME_MAX, retry_topic
from dledgermq.client.start_offset import FromWhere, StartOffsets, corrected_offset, start_point
from dledgermq.errors import MQError, NoRoute, OffsetOutOfRange

log = logging.getLogger(__name__)
# Re-exported: corrected_offset and is_async_callable moved with the code that uses them.
__all__ = ["LEASE_SAFETY", "PushConsumer", "PushOptions", "corrected_offset", "is_async_callable"]

AssignQueues = Callable[[list[MessageQueue]], list[MessageQueue]]
MessageModel = Literal["clustering", "broadcasting"]
CLUSTERING: MessageModel = "clustering"
BROADCASTING: MessageModel = "broadcasting"


def default_client_id() -> str:
    """host@pid@random, like RocketMQ's instance name: unique per consumer object."""
    return f"{socket.gethostname()}@{os.getpid()}@{secrets.token_hex(4)}"


def assign_all(queues: list[MessageQueue]) -> list[MessageQueue]:
    """The single-member strategy: this consumer owns every readable queue."""
    return list(queues)


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
    # Orderly and broadcasting consumers: the pause before a failed message is retried here.
    suspend_s: float = SUSPEND_S


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
        from_timestamp_ms: int | None = None,
        commit_interval_s: float = 5.0,
        assign_queues: AssignQueues | None = None,
        options: PushOptions | None = None,
        pull_consumer: PullConsumer | None = None,
        client_id: str | None = None,
        orderly: bool = False,
        mode: MessageModel = CLUSTERING,
        offset_file: Path | str | None = None,
    ) -> None:
        start = start_point(from_where, from_timestamp_ms)
        if mode not in (CLUSTERING, BROADCASTING):
            raise ValueError(f"mode must be {CLUSTERING!r} or {BROADCASTING!r}, got {mode!r}")
        if offset_file is not None and mode != BROADCASTING:
            raise ValueError(
                "offset_file is for broadcasting mode (clustering stores offsets on the broker)"
            )
        self.topic = topic
        self.group = group
        self.mode = mode
        self.orderly = orderly
        self._retry_topic = retry_topic(group)
        # Clustering mode heartbeats both: failed messages come back through the retry
        # topic, whatever their tags (they matched when first delivered). A group name too
        # long for a topic name has no retry topic (the broker refuses its send-backs).
        self._subscriptions = {topic: tags}
        if mode == CLUSTERING and len(self._retry_topic) <= TOPIC_NAME_MAX:
            self._subscriptions[self._retry_topic] = "*"
        self._tags = tags
        self._commit_interval_s = commit_interval_s
        self._assign = (
            assign_all if mode == BROADCASTING and assign_queues is None else assign_queues
        )
        # Leases exist only where the broker decides (clustering without a local choice).
        self._leased_mode = mode == CLUSTERING and assign_queues is None
        self._offset_store = (
            LocalOffsetStore(offset_file or default_offset_file(group, client_id), group)
            if mode == BROADCASTING
            else None
        )
        self.client_id = client_id or default_client_id()
        self._options = options or PushOptions()
        self._leases = QueueLeases()
        self._brokers: set[str] = set()  # Broker groups that answered a heartbeat.
        self._pull = pull_consumer or PullConsumer(namesrv_addrs, group)
        self._loops: dict[MessageQueue, asyncio.Task[None]] = {}
        self._stopping: set[MessageQueue] = set()  # Orderly: finish the message, then stop.
        self._offsets: dict[MessageQueue, int] = {}
        self._committed: dict[MessageQueue, int] = {}
        self._services: list[asyncio.Task[None]] = []
        self._start_offsets = StartOffsets(self._pull, self._offset_store, start)
        self._delivery = Delivery(
            callback,
            self._pull,
            max_reconsume_times=self._options.max_reconsume_times,
            suspend_s=self._options.suspend_s,
        )
        self._orderly = (
            OrderlyDelivery(
                self._delivery,
                leases=self._leases if self._leased_mode else None,
                stopping=self._stopping,
                offsets=self._offsets,
                broadcasting=mode == BROADCASTING,
            )
            if orderly
            else None
        )

    @property
    def assigned_queues(self) -> list[MessageQueue]:
        return sorted(self._loops)

    @property
    def offsets(self) -> dict[MessageQueue, int]:
        """The next offset to consume per queue (what the next commit will store)."""
        return dict(self._offsets)

    @property
    def offset_file(self) -> Path | None:
        """Where a broadcasting consumer keeps its offsets (None in clustering mode)."""
        return self._offset_store.path if self._offset_store is not None else None

    async def start(self) -> None:
        """Assign queues and start pulling; later rebalances run in the background.

        Raises:
            OffsetFileError: (broadcasting) the offset file exists but is not readable.
        """
        if self._offset_store is not None:
            await asyncio.to_thread(self._offset_store.load)
        await self._pull.start()
        await self.rebalance()
        self._services = [
            asyncio.create_task(self._every(self._commit_interval_s, self.commit)),
            asyncio.create_task(self._every(self._options.rebalance_interval_s, self.rebalance)),
        ]

    async def close(self) -> None:
        """Stop every loop, commit the offsets reached, leave the group (its leases are
        freed at once), and close the connection."""
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        self._services.clear()
        queues = sorted(self._loops)
        stopped = await self._stop_queues(queues)
        try:
            committed = await self.commit()
            # A queue whose callback still runs keeps its lease until it expires.
            if self._leased_mode and committed and len(stopped) == len(queues):
                for broker in sorted(self._brokers):
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
        stopped = await self._stop_queues(dropped)
        # Commit before the release: the next owner starts from here. Without a commit the
        # leases expire by themselves (the next owner then repeats what this one did).
        if stopped and self._leased_mode and await self.commit():
            try:
                await self._pull.release(self.client_id, stopped)
            except MQError as err:  # The lease then expires by itself.
                log.warning("%s: releasing %d queues failed: %s", self.topic, len(stopped), err)
        for mq in sorted(wanted - set(self._loops)):
            self._loops[mq] = asyncio.create_task(self._consume(mq))

    async def _stop_queues(self, queues: Sequence[MessageQueue]) -> list[MessageQueue]:
        """Stop the loops of `queues`; the ones that stopped cleanly. An orderly loop in
        the middle of a callback is let finish that message (within what is left of its
        lease; if the callback outlives that, it is abandoned and not reported clean)."""
        tasks = {mq: self._loops.pop(mq) for mq in queues}
        self._stopping.update(tasks)
        clean: list[MessageQueue] = []
        for mq, task in tasks.items():
            if self._orderly is not None:
                await self._orderly.let_finish(mq, task)
            if task.done() or mq not in self._delivery.busy:
                clean.append(mq)
            else:
                log.warning("%s: the callback outlived the lease; the queue is abandoned", mq)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._stopping.discard(mq)
            self._delivery.busy.discard(mq)
            self._leases.forget(mq)
        return clean

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
        for broker in brokers:
            route_topic = self.topic if broker in topic_brokers else self._retry_topic
            sent_at = time.monotonic()
            held = self._leases.held(broker, self._loops, sent_at) if self.orderly else None
            try:
                granted, lease_ms = await self._pull.heartbeat_topics(
                    route_topic,
                    broker,
                    self._subscriptions,
                    client_id=self.client_id,
                    strategy=self._options.strategy,
                    zone=self._options.zone,
                    held=held,
                )
            except MQError as err:
                log.warning("%s: heartbeat to %s failed (%s)", self.topic, broker, err)
                now = time.monotonic()
                wanted |= {
                    mq
                    for mq in self._loops
                    if mq.broker_name == broker and self._leases.valid(mq, now)
                }
                continue
            self._brokers.add(broker)
            mine = {
                MessageQueue(topic, broker, q)
                for topic, queue_ids in granted.items()
                if topic in self._subscriptions
                for q in queue_ids
            }
            self._leases.granted(mine, sent_at, lease_ms / 1000)
            wanted |= mine
        return wanted

    async def commit(self) -> bool:
        """Store every offset that moved since the last commit (on the broker, or in the
        local offset file in broadcasting mode); False when that failed."""
        moved = {mq: o for mq, o in self._offsets.items() if self._committed.get(mq) != o}
        if not moved:
            return True
        try:
            if self._offset_store is not None:
                await asyncio.to_thread(self._offset_store.save, moved)
            else:
                await self._pull.commit_offsets(moved)
        except (MQError, OSError) as err:
            log.warning("offset commit failed (%s); retrying next interval", err)
            return False
        self._committed.update(moved)
        for mq in [mq for mq in self._offsets if mq not in self._loops]:
            del self._offsets[mq]
        return True

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:  # A bug in one round must not end the periodic job.
                log.exception("%s: periodic %s failed", self.topic, job.__name__)

    async def _consume(self, mq: MessageQueue) -> None:
        """The loop of one queue: pull, deliver, advance; errors back off and retry."""
        offset = await self._start_offsets.start(mq)
        self._offsets[mq] = offset
        failures = 0
        while mq not in self._stopping:
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
            return await self._start_offsets.resume(mq, offset, err)
        if result.messages and self._orderly is not None:
            return await self._orderly.deliver(mq, result.messages, result.next_offset)
        if result.messages and self.mode == BROADCASTING:
            await self._delivery.broadcast(mq, result.messages)
        elif result.messages:
            await self._delivery.concurrently(mq, result.messages)
        return result.next_offset
