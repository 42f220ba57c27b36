"""Blocking facades over the asyncio clients, for scripts and threaded programs.

Owns: one private event loop per facade, run in a daemon thread; every call submits a
coroutine with `asyncio.run_coroutine_threadsafe` and waits at most a bounded time (the
operation's own timeouts plus a margin), raising `errors.Timeout` beyond it.

`SyncFacade` (and `StartedFacade`, for a client that is started) holds what the facades
share: the loop thread, the bounded wait, closing, and the `with` protocol; each facade
only forwards its own methods.

Must not: add behaviour; each method forwards to the async client of the same name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar

from dledgermq.client.admin import Admin
from dledgermq.client.consumer import DEFAULT_REQUEST_TIMEOUT_S, PullConsumer
from dledgermq.client.message import Message, MessageQueue, PullResult, SendResult
from dledgermq.client.producer import RETRY_WAIT_MAX_S, BatchItem, Producer, SendCallback
from dledgermq.client.retry import MAX_RECONSUME_TIMES_DEFAULT
from dledgermq.client.routes import DEFAULT_ROUTE_REFRESH_S
from dledgermq.errors import Timeout

T = TypeVar("T")
MARGIN_S = 2.0
STOP_TIMEOUT_S = 5.0


class LoopThread:
    """A private event loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        """Run `coro` on the loop and wait for it; cancel it after `timeout_s`."""
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise Timeout(f"no result within {timeout_s}s") from None

    def stop(self) -> None:
        """Stop the loop and close it once the thread has ended (bounded wait)."""
        if self._loop.is_closed():
            return
        self.run(self._loop.shutdown_asyncgens(), STOP_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()


class AsyncClient(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=AsyncClient)


class SyncFacade(Generic[C]):
    """Runs an async client on a private loop; closing also stops the loop. `with`
    closes it at the end (and starts nothing: see `StartedFacade`)."""

    def __init__(self, client: C, thread_name: str, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._runner = LoopThread(thread_name)  # Last: nothing can fail after it.

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the loop, waiting `timeout_s` (default: the facade's) at most."""
        return self._runner.run(coro, self._timeout_s if timeout_s is None else timeout_s)

    def close(self) -> None:
        try:
            self._run(self._client.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class StartedFacade(SyncFacade[C]):
    """A facade whose client must be started; `with` starts it."""

    def start(self) -> None:
        self._run(self._client.start())

    def __enter__(self) -> Self:
        self.start()
        return self


class SyncProducer(StartedFacade[Producer]):
    """Blocking `Producer`; `send_async` returns a `concurrent.futures.Future`."""

    def __init__(
        self,
        namesrv_addrs: Sequence[str],
        group: str = "DEFAULT_PRODUCER",
        *,
        send_timeout_s: float = 3.0,
        retries: int = 2,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        auto_batch: bool = False,
    ) -> None:
        """`auto_batch`: sends from several threads at once travel together (`Producer`)."""
        producer = Producer(
            namesrv_addrs,
            group,
            send_timeout_s=send_timeout_s,
            retries=retries,
            route_refresh_s=route_refresh_s,
            auto_batch=auto_batch,
        )
        timeout_s = (send_timeout_s + RETRY_WAIT_MAX_S) * (retries + 1) + MARGIN_S
        if auto_batch:  # A send may wait for a request in flight before its own leaves.
            timeout_s *= 2
        super().__init__(producer, "dledgermq-producer", timeout_s)

    def send(  # noqa: PLR0913 - Producer.send's fields
        self,
        topic: str,
        body: bytes | str,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
    ) -> SendResult:
        coro = self._client.send(
            topic,
            body,
            tags=tags,
            keys=keys,
            properties=properties,
            sharding_key=sharding_key,
            queue=queue,
        )
        return self._run(coro)

    def send_async(  # noqa: PLR0913 - Producer.send_async's fields
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
    ) -> concurrent.futures.Future[SendResult]:
        """Send in the background; `callback` runs on the facade's loop thread."""

        async def send() -> SendResult:
            return await self._client.send_async(
                topic,
                body,
                tags=tags,
                keys=keys,
                properties=properties,
                sharding_key=sharding_key,
                queue=queue,
                callback=callback,
            )

        return self._runner.submit(send())

    def send_oneway(  # noqa: PLR0913 - Producer.send_oneway's fields
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
        coro = self._client.send_oneway(
            topic,
            body,
            tags=tags,
            keys=keys,
            properties=properties,
            sharding_key=sharding_key,
            queue=queue,
        )
        self._run(coro)

    def send_batch(
        self,
        topic: str,
        messages: Sequence[BatchItem],
        *,
        sharding_key: str | None = None,
        queue: MessageQueue | None = None,
    ) -> list[SendResult]:
        coro = self._client.send_batch(topic, messages, sharding_key=sharding_key, queue=queue)
        return self._run(coro)


class SyncPullConsumer(StartedFacade[PullConsumer]):
    """Blocking `PullConsumer`."""

    def __init__(
        self,
        namesrv_addrs: Sequence[str],
        group: str,
        *,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
    ) -> None:
        consumer = PullConsumer(
            namesrv_addrs,
            group,
            request_timeout_s=request_timeout_s,
            route_refresh_s=route_refresh_s,
        )
        super().__init__(consumer, "dledgermq-pull-consumer", request_timeout_s + MARGIN_S)

    def fetch_queues(self, topic: str) -> list[MessageQueue]:
        return self._run(self._client.fetch_queues(topic))

    def pull(
        self,
        mq: MessageQueue,
        offset: int,
        *,
        max_messages: int = 32,
        tags: str = "*",
        wait_ms: int = 0,
    ) -> PullResult:
        coro = self._client.pull(mq, offset, max_messages=max_messages, tags=tags, wait_ms=wait_ms)
        return self._run(coro, self._timeout_s + wait_ms / 1000)

    def commit_offset(self, mq: MessageQueue, offset: int) -> None:
        self._run(self._client.commit_offset(mq, offset))

    def fetch_offset(self, mq: MessageQueue) -> int | None:
        return self._run(self._client.fetch_offset(mq))

    def offset_by_time(self, mq: MessageQueue, ts_ms: int) -> int:
        return self._run(self._client.offset_by_time(mq, ts_ms))

    def queue_range(self, mq: MessageQueue) -> tuple[int, int]:
        return self._run(self._client.queue_range(mq))

    def send_back(
        self,
        messages: Message | Sequence[Message],
        *,
        broker_name: str | None = None,
        max_reconsume_times: int = MAX_RECONSUME_TIMES_DEFAULT,
    ) -> list[dict[str, Any]]:
        coro = self._client.send_back(
            messages, broker_name=broker_name, max_reconsume_times=max_reconsume_times
        )
        return self._run(coro)


class SyncAdmin(SyncFacade[Admin]):
    """Blocking `Admin`."""

    def __init__(self, namesrv_addrs: Sequence[str], *, request_timeout_s: float = 5.0) -> None:
        admin = Admin(namesrv_addrs, request_timeout_s=request_timeout_s)
        # A call may ask the NameServer, then the brokers: two request timeouts.
        super().__init__(admin, "dledgermq-admin", 2 * request_timeout_s + MARGIN_S)

    def brokers(self) -> list[dict[str, Any]]:
        return self._run(self._client.brokers())

    def broker_status(self, addr: str) -> dict[str, Any]:
        return self._run(self._client.broker_status(addr))

    def list_topics(self) -> list[str]:
        return self._run(self._client.list_topics())

    def create_topic(
        self,
        topic: str,
        *,
        queues: int = 8,
        read_queues: int | None = None,
        write_queues: int | None = None,
        perm: int = 6,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        return self._run(
            self._client.create_topic(
                topic,
                queues=queues,
                read_queues=read_queues,
                write_queues=write_queues,
                perm=perm,
                broker_names=broker_names,
            )
        )

    def update_topic(
        self,
        topic: str,
        *,
        read_queues: int | None = None,
        write_queues: int | None = None,
        perm: int | None = None,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        return self._run(
            self._client.update_topic(
                topic,
                read_queues=read_queues,
                write_queues=write_queues,
                perm=perm,
                broker_names=broker_names,
            )
        )

    def delete_topic(self, topic: str, *, broker_names: Sequence[str] | None = None) -> list[str]:
        return self._run(self._client.delete_topic(topic, broker_names=broker_names))

    def topic_status(self, topic: str) -> dict[str, Any]:
        return self._run(self._client.topic_status(topic))

    def query_by_key(
        self,
        key: str,
        *,
        topic: str | None = None,
        begin_ms: int | None = None,
        end_ms: int | None = None,
        max_messages: int = 32,
    ) -> list[Message]:
        return self._run(
            self._client.query_by_key(
                key, topic=topic, begin_ms=begin_ms, end_ms=end_ms, max_messages=max_messages
            )
        )

    def query_by_id(self, msg_id: str) -> Message:
        return self._run(self._client.query_by_id(msg_id))

    def dead_letters(
        self,
        group: str,
        *,
        offset: int | None = None,
        max_messages: int = 32,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        return self._run(
            self._client.dead_letters(
                group, offset=offset, max_messages=max_messages, broker_names=broker_names
            )
        )

    def resend_dead_letters(
        self,
        group: str,
        *,
        msg_ids: Sequence[str] | None = None,
        resend_all: bool = False,
        broker_names: Sequence[str] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        # "All" runs in rounds of one request each: it may take longer than one call.
        return self._run(
            self._client.resend_dead_letters(
                group, msg_ids=msg_ids, resend_all=resend_all, broker_names=broker_names
            ),
            self._timeout_s * 10,
        )
