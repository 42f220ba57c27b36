"""The producer: send, send_async, send_oneway and send_batch over the topic's queues.

Owns: turning user input into `Msg` bodies (one client-generated unique key per message,
kept across retries so duplicates can be recognised), the retry policy (tenacity, on
`err.retryable`, plus QUEUE_NOT_FOUND for a queue picked from a route that went stale;
RocketMQ's 2 retries for sync sends), refreshing the route after a failure or an answer
showing the route is stale, steering the next attempt away from the broker group that
just failed (except for sharding-key sends, which must keep their queue to keep their order),
keeping write-disabled groups out of the queue choice (`write_disabled.py`), and sending a
topic without a route to a group that auto-creates topics (RocketMQ's TBW102 idea), and,
with `auto_batch=True`, handing plain sends to the `AutoBatcher` (`auto_batch.py`).

Must not: decide queue order itself (`selector.py`) or parse routes (`topic_route.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from dledgermq.client.auto_batch import AutoBatcher, BatchLimits
from dledgermq.client.http import HttpSession
from dledgermq.client.message import MessageQueue, OutgoingMessage, SendResult
from dledgermq.client.routes import DEFAULT_ROUTE_REFRESH_S, NameServerClient, RouteCache
from dledgermq.client.selector import QueueSelector, send_candidates
from dledgermq.client.topic_route import BrokerData
from dledgermq.client.write_disabled import WriteDisabledGroups, is_write_disabled
from dledgermq.errors import (
    BadRequest,
    BatchTooLarge,
    InvalidMessage,
    MQError,
    NoPermission,
    NoRoute,
    QueueNotFound,
    TopicNotFound,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH_MESSAGES = 1000
RETRY_WAIT_INITIAL_S = 0.05
RETRY_WAIT_MAX_S = 1.0

SendCallback = Callable[[SendResult | None, BaseException | None], None]
# Answers that mean the cached route no longer matches the broker's topic table (an admin
# changed or deleted the topic): the route is refreshed before the next send.
STALE_ROUTE_ERRORS = (QueueNotFound, TopicNotFound, NoPermission)
BatchItem = OutgoingMessage | Mapping[str, Any] | bytes | str


def is_retryable(exc: BaseException) -> bool:
    """Retry only what the error class says may succeed on a second try."""
    return isinstance(exc, MQError) and exc.retryable


class Producer:
    """Sends messages to a topic's writable queues across broker groups.

    `start()` is cheap (the HTTP session opens lazily); `close()` waits, bounded, for
    background sends and closes the session. Use `async with Producer(...) as p:`.
    """

    def __init__(  # noqa: PLR0913 - the RocketMQ producer knobs, all keyword-only
        self,
        namesrv_addrs: Sequence[str],
        group: str = "DEFAULT_PRODUCER",
        *,
        send_timeout_s: float = 3.0,
        retries: int = 2,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        http: HttpSession | None = None,
        rng: random.Random | None = None,
        auto_batch: bool = False,
        batch_limits: BatchLimits | None = None,
    ) -> None:
        """`auto_batch`: `send()`s of one topic that run concurrently (no sharding key, no
        explicit queue) travel as one batch while earlier ones are in flight, each still
        answered alone (RocketMQ 5's autoBatch; off by default as there). A lone send is
        never delayed. `batch_limits` bounds the requests in flight and the batch size."""
        assert retries >= 0, retries
        rng = rng or random.Random()
        self.group = group
        self.send_timeout_s = send_timeout_s
        self.retries = retries
        self._http = http or HttpSession(timeout_s=send_timeout_s)
        self._nameserver = NameServerClient(namesrv_addrs, http=self._http, rng=rng)
        self._routes = RouteCache(self._nameserver, refresh_s=route_refresh_s)
        self._selector = QueueSelector(start=rng.randrange(1 << 16))
        self._write_disabled = WriteDisabledGroups()
        self._background: set[asyncio.Task[Any]] = set()
        self._batcher = (
            AutoBatcher(self._send_plain, self._spawn, batch_limits) if auto_batch else None
        )

    async def start(self) -> None:
        """Nothing to connect up front; kept for the RocketMQ lifecycle shape."""

    async def close(self) -> None:
        """Wait for background sends (bounded by one full send), then close the session.

        A batch that ends may start the next (auto-batching), so wait until none is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_send_s()
        while pending := [t for t in self._background if not t.done()]:
            _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            if late:
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
                break
        await self._http.close()

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def send(  # noqa: PLR0913 - mirrors RocketMQ's send(Message) fields
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
        delay_level: int = 0,
        deliver_at_ms: int | None = None,
    ) -> SendResult:
        """Send one message and return once the broker has stored it; with `delay_level`
        or `deliver_at_ms` consumers get it only once its time comes.

        Raises:
            MQError: the last attempt's error once retries are spent (or a non-retryable one).
        """
        message = OutgoingMessage.build(
            body,
            tags=tags,
            keys=keys,
            properties=properties,
            delay_level=delay_level,
            deliver_at_ms=deliver_at_ms,
        )
        if self._batcher is not None and sharding_key is None and queue is None:
            return await self._batcher.submit(topic, message)
        [result] = await self._send(topic, [message], sharding_key, queue, self.retries)
        return result

    def send_async(  # noqa: PLR0913 - send()'s fields plus the callback
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
        callback: SendCallback | None = None,
    ) -> asyncio.Task[SendResult]:
        """Start a send in the background; `callback(result, exc)` runs when it ends."""
        coro = self.send(
            topic,
            body,
            tags=tags,
            keys=keys,
            properties=properties,
            sharding_key=sharding_key,
            queue=queue,
        )
        task = self._spawn(coro)
        if callback is not None:
            task.add_done_callback(lambda t: _run_callback(t, callback))
        return task

    async def send_oneway(  # noqa: PLR0913 - send()'s fields
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
    ) -> None:
        """Fire and forget: one attempt, no result, failures only logged (debug)."""
        message = OutgoingMessage.build(body, tags=tags, keys=keys, properties=properties)
        task = self._spawn(self._send(topic, [message], sharding_key, queue, 0))
        task.add_done_callback(_log_oneway_failure)

    async def send_batch(
        self,
        topic: str,
        messages: Sequence[BatchItem],
        *,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
    ) -> list[SendResult]:
        """Send messages as one batch: one request, one queue, stored together.

        Items are `OutgoingMessage`s, bodies, or dicts with `body` and optional `tags`,
        `keys`, `properties`.
        """
        if not messages:
            raise InvalidMessage("a batch needs at least one message")
        if len(messages) > MAX_BATCH_MESSAGES:
            raise BatchTooLarge(
                f"{len(messages)} messages in one batch; at most {MAX_BATCH_MESSAGES}",
                max_batch_messages=MAX_BATCH_MESSAGES,
            )
        batch = [OutgoingMessage.from_any(item) for item in messages]
        return await self._send(topic, batch, sharding_key, queue, self.retries)

    async def _send_plain(self, topic: str, messages: list[OutgoingMessage]) -> list[SendResult]:
        return await self._send(topic, messages, None, None, self.retries)

    async def _send(
        self,
        topic: str,
        messages: list[OutgoingMessage],
        sharding_key: str | None,
        queue: MessageQueue | None,
        retries: int,
    ) -> list[SendResult]:
        body: dict[str, Any] = {"messages": [m.to_wire() for m in messages]}
        failed_broker: str | None = None

        def should_retry(exc: BaseException) -> bool:
            # A queue the selector picked from a stale route (its topic lost write queues,
            # or its group was write-disabled) was refused before anything was stored: pick
            # again from a fresh route, elsewhere.
            picked = queue is None and (isinstance(exc, QueueNotFound) or is_write_disabled(exc))
            return is_retryable(exc) or picked

        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait_random_exponential(multiplier=RETRY_WAIT_INITIAL_S, max=RETRY_WAIT_MAX_S),
            retry=retry_if_exception(should_retry),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                mq, addr, pinned = await self._target(topic, sharding_key, queue, failed_broker)
                # Without a route (auto-create) the broker picks the queue.
                queue_field = {"queue_id": mq.queue_id} if pinned else {}
                try:
                    answer = await self._http.request(
                        "POST",
                        addr,
                        f"/topics/{quote(topic, safe='')}/messages",
                        body={**body, **queue_field},
                        timeout_s=self.send_timeout_s,
                    )
                except MQError as err:
                    if is_write_disabled(err):
                        self._write_disabled.mark(mq.broker_name)
                    if err.retryable or is_write_disabled(err):
                        log.info("send to %s failed (%s); retrying if allowed", addr, err.code)
                        failed_broker = mq.broker_name
                        self._routes.invalidate(topic)
                    elif isinstance(err, STALE_ROUTE_ERRORS):
                        self._routes.invalidate(topic)
                    raise
                if not pinned:
                    self._routes.invalidate(topic)  # The topic exists now: fetch its route.
                return [SendResult.from_wire(r, mq) for r in answer["results"]]
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _target(
        self,
        topic: str,
        sharding_key: str | None,
        queue: MessageQueue | None,
        failed_broker: str | None,
    ) -> tuple[MessageQueue, str, bool]:
        """The queue for this attempt, the address of its group's master, and whether the
        queue is the producer's choice (False: the broker picks, see `_auto_create_target`)."""
        if queue is not None and queue.topic != topic:
            raise BadRequest(f"queue {queue} does not belong to topic {topic!r}")
        try:
            route = await self._routes.get(topic)
        except NoRoute:
            if queue is not None:
                raise
            return await self._auto_create_target(topic)
        if queue is None:
            try:
                candidates = send_candidates(route, self._write_disabled.current())
            except NoPermission:
                self._routes.invalidate(topic)  # An admin may re-enable writes meanwhile.
                raise
            queue = self._selector.select(
                candidates, sharding_key=sharding_key, avoid_broker=failed_broker
            )
        addr = route.master_addr(queue.broker_name)
        if addr is None:
            self._routes.invalidate(topic)
            raise NoRoute(f"broker group {queue.broker_name!r} has no master", topic=topic)
        return queue, addr, True

    async def _auto_create_target(self, topic: str) -> tuple[MessageQueue, str, bool]:
        """No route: a writable group with a master that creates unknown topics on a send.

        Raises:
            NoRoute: no such group (auto-create is off everywhere: the topic must be
                created with `topic create`).
        """
        held_out = self._write_disabled.current()
        groups: list[BrokerData] = [
            g
            for g in await self._nameserver.broker_groups()
            if g.auto_create_topic and g.writable and g.master_addr is not None
            if g.broker_name not in held_out
        ]
        if not groups:
            raise NoRoute(
                f"no route for topic {topic!r}, and no writable broker group creates topics "
                "on a send (create it with `dledgermq topic create`)",
                topic=topic,
            )
        queues = [MessageQueue(topic, g.broker_name, 0) for g in groups]
        chosen = self._selector.select(queues)
        addr = next(g.master_addr for g in groups if g.broker_name == chosen.broker_name)
        assert addr is not None
        return chosen, addr, False

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Keep a reference until done: the loop holds tasks only weakly."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _max_send_s(self) -> float:
        return (self.send_timeout_s + RETRY_WAIT_MAX_S) * (self.retries + 1)


def _run_callback(task: asyncio.Task[SendResult], callback: SendCallback) -> None:
    if task.cancelled():
        error: BaseException | None = asyncio.CancelledError()
    else:
        error = task.exception()
    try:
        callback(None if error else task.result(), error)
    except Exception:
        log.exception("send callback failed")


def _log_oneway_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("oneway send failed: %r", task.exception())
