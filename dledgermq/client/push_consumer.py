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

`orderly=True` (RocketMQ's MessageListenerOrderly): each queue's messages reach the
callback one at a time, in queue order. The member heartbeats as orderly and names the
queues it still holds, so a new writer lets it keep them through its grace period; it
processes a message only while its lease is valid (`client/leases.py`), and stopping a
queue waits for the message in the callback to finish before the offset is committed and
the lease released. A failing message is retried here after a pause (1 s) up to
`max_reconsume_times` times, then moved to the group's DLQ (`local_retry.py`).

`mode="broadcasting"`: every member gets every message of every queue; no heartbeat, no
retry topic; offsets live in a local file (`offset_store.py`); a failing batch is
retried here up to `max_reconsume_times` times, then logged and skipped.
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
from pathlib import Path
from typing import Literal

from dledgermq.client.consumer import PullConsumer
from dledgermq.client.leases import LEASE_SAFETY, QueueLeases
from dledgermq.client.local_retry import (
    SUSPEND_S,
    Consumed,
    GaveUp,
    Interrupted,
    retry_locally,
)
from dledgermq.client.message import Message, MessageQueue
from dledgermq.client.offset_store import LocalOffsetStore, default_offset_file
from dledgermq.client.retry import (
    MAX_RECONSUME_TIMES_DEFAULT,
    TOPIC_NAME_MAX,
    as_delivered,
    is_retry_topic,
    retry_topic,
)
from dledgermq.errors import MQError, NoRoute, OffsetOutOfRange

log = logging.getLogger(__name__)
__all__ = ["LEASE_SAFETY", "PushConsumer", "PushOptions"]
# How often an orderly queue whose lease lapsed looks again (a heartbeat may renew it).
LEASE_WAIT_S = 0.1

MessageCallback = Callable[[list[Message]], Awaitable[None] | None]
AssignQueues = Callable[[list[MessageQueue]], list[MessageQueue]]
FromWhere = Literal["first", "last", "timestamp"]
# RocketMQ's consumeTimestamp default: a group starting "from timestamp" without one given
# begins with what was stored in the last half hour.
DEFAULT_LOOKBACK_MS = 30 * 60 * 1000
MessageModel = Literal["clustering", "broadcasting"]
CLUSTERING: MessageModel = "clustering"
BROADCASTING: MessageModel = "broadcasting"


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
        if from_where not in ("first", "last", "timestamp"):
            raise ValueError(
                f"from_where must be 'first', 'last' or 'timestamp', got {from_where!r}"
            )
        if from_timestamp_ms is not None and from_where != "timestamp":
            raise ValueError("from_timestamp_ms needs from_where='timestamp'")
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
        self._callback = callback
        self._tags = tags
        # Where a queue without a stored offset starts: "first", "last" or a time in ms.
        self._start: str | int = from_where
        if from_where == "timestamp":
            lookback = int(time.time() * 1000) - DEFAULT_LOOKBACK_MS
            self._start = lookback if from_timestamp_ms is None else from_timestamp_ms
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
        self._busy: set[MessageQueue] = set()  # Orderly: the callback runs for this queue.
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
            if self.orderly and mq in self._busy:
                budget = self._leases.left_s(mq, time.monotonic()) if self._leased_mode else None
                await asyncio.wait({task}, timeout=budget)
            if task.done() or mq not in self._busy:
                clean.append(mq)
            else:
                log.warning("%s: the callback outlived the lease; the queue is abandoned", mq)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._stopping.discard(mq)
            self._busy.discard(mq)
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
        offset = await self._start_offset(mq)
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
            return await self._resume_offset(mq, offset, err)
        if result.messages and self.orderly:
            return await self._deliver_orderly(mq, result.messages, result.next_offset)
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
            except Exception as err:  # As in _consume: back off, never end the loop.
                failures += 1
                log.warning("%s: no start offset yet: %r", mq, err)
                await asyncio.sleep(backoff_s(failures))

    async def _deliver(self, mq: MessageQueue, messages: list[Message]) -> None:
        """Call back; if that fails, send the batch back to its broker group. Returns
        only once the batch was consumed or sent back (so the offset, and the commit,
        never pass a message that was neither); while sending back fails, the batch is
        consumed again here after a pause, its `reconsume_times` counted up locally."""
        if self.mode == BROADCASTING:
            await self._deliver_broadcast(mq, messages)
            return
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

    async def _deliver_broadcast(self, mq: MessageQueue, messages: list[Message]) -> None:
        """Broadcasting: retried here, then logged and skipped (no retry topic)."""

        async def attempt(failures: int) -> bool:
            batch = [
                dataclasses.replace(m, reconsume_times=m.reconsume_times + failures)
                for m in messages
            ]
            return await self._attempt(mq, batch)

        outcome = await retry_locally(
            attempt,
            max_reconsume_times=self._options.max_reconsume_times,
            may_go_on=lambda: True,
            suspend_s=self._options.suspend_s,
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

    async def _deliver_orderly(
        self, mq: MessageQueue, messages: list[Message], next_offset: int
    ) -> int:
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
                return await self._attempt(mq, [delivered])

            outcome = await retry_locally(
                attempt,
                max_reconsume_times=self._options.max_reconsume_times,
                may_go_on=lambda: self._may_process(mq),
                suspend_s=self._options.suspend_s,
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

    def _may_process(self, mq: MessageQueue) -> bool:
        if mq in self._stopping:
            return False
        return not self._leased_mode or self._leases.valid(mq, time.monotonic())

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
        if self.mode == BROADCASTING:
            log.error(
                "%s: offset %d skipped after %d failed attempts", mq, message.queue_offset, failures
            )
            return True
        reconsumes = message.reconsume_times + failures - 1
        tries = 0
        while self._may_process(mq):
            try:
                await self._pull.send_back(
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

    async def _attempt(self, mq: MessageQueue, messages: list[Message]) -> bool:
        """One callback; True when it succeeded. Marks the queue busy meanwhile, so that
        stopping an orderly queue waits for the message to finish."""
        self._busy.add(mq)
        try:
            await self._invoke(messages)
        except Exception:
            first, last = messages[0].queue_offset, messages[-1].queue_offset
            log.exception("%s: callback failed for offsets %d..%d", mq, first, last)
            return False
        finally:
            self._busy.discard(mq)
        return True

    async def _invoke(self, messages: list[Message]) -> None:
        # A sync callback runs in a worker thread so it cannot stall the event loop.
        if is_async_callable(self._callback):
            result = self._callback(messages)
            assert result is not None
            await result
        else:
            await asyncio.to_thread(self._callback, messages)
