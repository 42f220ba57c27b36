"""The transactional producer: half message, local transaction, commit or rollback, and
answers to the broker's check-backs (RocketMQ's TransactionMQProducer).

`send_in_transaction` stores a half message (invisible to consumers), runs the user's
local transaction, and ends the transaction with its outcome, naming the transaction id
and the half message's commitlog offset the broker answered (so a late or repeated end can
never touch another transaction). Ends are idempotent on the broker, so they are retried
on transport errors and NOT_LEADER; if none gets through, the broker's check-back settles it.

While started, the producer long-polls every broker group's writer for check-backs of its
group and answers each with the user's `check` callback: that is how a transaction whose
end was lost (or whose producer crashed) is decided.

Must not: decide outcomes (the broker's log does) or parse routes (`topic_route.py`).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from dledgermq.client.http import HttpSession
from dledgermq.client.message import Message, MessageQueue, OutgoingMessage
from dledgermq.client.producer import (
    RETRY_WAIT_INITIAL_S,
    RETRY_WAIT_MAX_S,
    STALE_ROUTE_ERRORS,
    Producer,
    is_retryable,
)
from dledgermq.client.routes import DEFAULT_ROUTE_REFRESH_S
from dledgermq.errors import MQError, NoRoute, TransactionConflict

log = logging.getLogger(__name__)
POLL_WAIT_MS = 10_000
POLL_ERROR_PAUSE_S = (0.2, 3.0)  # back-off after a failed poll, doubling
END_ATTEMPTS = 5


class LocalTransactionState(enum.StrEnum):
    COMMIT = "commit"
    ROLLBACK = "rollback"
    UNKNOWN = "unknown"  # still open: the broker asks the check callback later


@dataclass(frozen=True, slots=True)
class HalfMessage:
    """A stored half message: what the local transaction and the end refer to."""

    transaction_id: str
    producer_group: str
    queue: MessageQueue
    commitlog_offset: int
    msg_id: str
    unique_key: str


@dataclass(frozen=True, slots=True)
class TransactionSendResult:
    half: HalfMessage
    state: LocalTransactionState  # what the local transaction answered
    msg_id: str | None = None  # the committed copy's, once the broker confirmed the commit
    ended: bool = False  # the broker confirmed the outcome (else a check-back settles it)


@dataclass(frozen=True, slots=True)
class TransactionCheck:
    """The broker asks: how did this transaction end? (`message` as it was sent)"""

    transaction_id: str
    producer_group: str
    broker_name: str
    commitlog_offset: int
    check_times: int
    message: Message


StateOrAwaitable = LocalTransactionState | Awaitable[LocalTransactionState]
LocalTransaction = Callable[[HalfMessage], StateOrAwaitable]
CheckListener = Callable[[TransactionCheck], StateOrAwaitable]


async def _run_user(function: Callable[[Any], StateOrAwaitable], arg: Any) -> LocalTransactionState:
    """Run a user callback (async, or sync in a worker thread); a raise means UNKNOWN."""
    try:
        if inspect.iscoroutinefunction(function):
            result = await function(arg)
        else:
            result = await asyncio.to_thread(function, arg)
            if inspect.isawaitable(result):
                result = await result
        return LocalTransactionState(result)
    except Exception:
        log.exception("transaction callback failed; the outcome stays unknown")
        return LocalTransactionState.UNKNOWN


class TransactionProducer(Producer):
    """A `Producer` that also sends in transactions and answers check-backs for `group`.

    `start()` begins the check-back polls; `close()` stops them.
    """

    def __init__(  # noqa: PLR0913 - the Producer knobs plus the check-back ones
        self,
        namesrv_addrs: Sequence[str],
        group: str,
        *,
        check: CheckListener,
        send_timeout_s: float = 3.0,
        retries: int = 2,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        poll_wait_ms: int = POLL_WAIT_MS,
        client_id: str | None = None,
        http: HttpSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            namesrv_addrs,
            group,
            send_timeout_s=send_timeout_s,
            retries=retries,
            route_refresh_s=route_refresh_s,
            http=http,
            rng=rng,
        )
        self.check = check
        self.client_id = client_id or f"{group}-{uuid.uuid4().hex[:12]}"
        self._poll_wait_ms = poll_wait_ms
        self._route_refresh_s = route_refresh_s
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        if self._watch is None:
            self._watch = asyncio.create_task(self._watch_groups())

    async def close(self) -> None:
        tasks = [t for t in (self._watch, *self._pollers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watch = None
        self._pollers.clear()
        await super().close()

    async def __aenter__(self) -> TransactionProducer:
        await self.start()
        return self

    # -- sending -------------------------------------------------------------------------------

    async def send_in_transaction(  # noqa: PLR0913 - send()'s fields plus the transaction's
        self,
        topic: str,
        body: bytes | str,
        local_transaction: LocalTransaction,
        *,
        tags: str | None = None,
        keys: str | Sequence[str] | None = None,
        properties: Mapping[str, str] | None = None,
        queue: MessageQueue | None = None,
        check_immunity_s: int | None = None,
    ) -> TransactionSendResult:
        """Store the message as a half message, run `local_transaction(half)`, and commit
        or roll back with its answer (UNKNOWN or a raise: the check callback decides later).

        Raises:
            MQError: the half message was not stored (nothing happened).
            TransactionConflict: the broker had already ended it the other way (it rolled
                back a transaction whose check-backs went unanswered).
        """
        message = OutgoingMessage.build(body, tags=tags, keys=keys, properties=properties)
        half = await self._send_half(topic, message, queue, check_immunity_s)
        state = await _run_user(local_transaction, half)
        if state is LocalTransactionState.UNKNOWN:
            return TransactionSendResult(half, state)
        try:
            answer = await self._end(
                half.queue.broker_name,
                half.transaction_id,
                half.commitlog_offset,
                state,
            )
        except TransactionConflict:
            raise
        except MQError as err:
            log.warning(
                "could not %s transaction %s (%s); a check-back will settle it",
                state,
                half.transaction_id,
                err,
            )
            return TransactionSendResult(half, state)
        return TransactionSendResult(half, state, answer.get("msg_id"), ended=True)

    async def _send_half(
        self,
        topic: str,
        message: OutgoingMessage,
        queue: MessageQueue | None,
        check_immunity_s: int | None,
    ) -> HalfMessage:
        body: dict[str, Any] = {"producer_group": self.group, "message": message.to_wire()}
        if check_immunity_s is not None:
            body["check_immunity_s"] = check_immunity_s
        failed_broker: str | None = None
        async for attempt in self._retrying(self.retries + 1):
            with attempt:
                mq, addr, pinned = await self._target(topic, None, queue, failed_broker)
                queue_field = {"queue_id": mq.queue_id} if pinned else {}
                try:
                    answer = await self._http.request(
                        "POST",
                        addr,
                        f"/topics/{quote(topic, safe='')}/transactions",
                        body={**body, **queue_field},
                        timeout_s=self.send_timeout_s,
                    )
                except MQError as err:
                    if err.retryable:
                        failed_broker = mq.broker_name
                    if err.retryable or isinstance(err, STALE_ROUTE_ERRORS):
                        self._routes.invalidate(topic)
                    raise
                return HalfMessage(
                    transaction_id=answer["transaction_id"],
                    producer_group=self.group,
                    queue=MessageQueue(topic, mq.broker_name, answer["queue_id"]),
                    commitlog_offset=answer["commitlog_offset"],
                    msg_id=answer["msg_id"],
                    unique_key=answer.get("unique_key", message.unique_key),
                )
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _end(
        self, broker_name: str, transaction_id: str, offset: int, state: LocalTransactionState
    ) -> dict[str, Any]:
        """End on the broker group's writer; retried (the broker answers repeats with the
        outcome that stands)."""
        body = {"producer_group": self.group, "commitlog_offset": offset, "outcome": str(state)}
        path = f"/transactions/{quote(transaction_id, safe='')}/end"
        async for attempt in self._retrying(END_ATTEMPTS):
            with attempt:
                addr = await self._writer(broker_name)
                return await self._http.request(
                    "POST", addr, path, body=body, timeout_s=self.send_timeout_s
                )
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _retrying(self, attempts: int) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=RETRY_WAIT_INITIAL_S, max=RETRY_WAIT_MAX_S),
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )

    async def _writer(self, broker_name: str) -> str:
        groups = await self._nameserver.broker_groups()
        addr = next((g.master_addr for g in groups if g.broker_name == broker_name), None)
        if addr is None:
            raise NoRoute(f"broker group {broker_name!r} has no writer now", broker=broker_name)
        return addr

    # -- check-backs ---------------------------------------------------------------------------

    async def _watch_groups(self) -> None:
        """Keep one poller per broker group the NameServer knows (new groups join)."""
        while True:
            try:
                names = [g.broker_name for g in await self._nameserver.broker_groups()]
            except MQError as err:
                log.info("cannot list broker groups for check-backs: %s", err)
                names = []
            for name in names:
                task = self._pollers.get(name)
                if task is None or task.done():
                    self._pollers[name] = asyncio.create_task(self._poll(name))
            await asyncio.sleep(self._route_refresh_s)  # a refresh period, not a handshake

    async def _poll(self, broker_name: str) -> None:
        """Long-poll the group's writer for checks and answer each (forever)."""
        pause = POLL_ERROR_PAUSE_S[0]
        path = f"/producers/{quote(self.group, safe='')}/checks"
        params = {"client_id": self.client_id, "wait_ms": self._poll_wait_ms}
        while True:
            try:
                addr = await self._writer(broker_name)
                page = await self._http.request(
                    "GET", addr, path, params=params, timeout_s=self._poll_wait_ms / 1000 + 5
                )
                pause = POLL_ERROR_PAUSE_S[0]
            except MQError as err:
                log.debug("check poll of %s failed: %s", broker_name, err)
                await asyncio.sleep(pause)  # back-off before polling again
                pause = min(pause * 2, POLL_ERROR_PAUSE_S[1])
                continue
            for raw in page.get("checks", []):
                await self._answer(broker_name, raw)

    async def _answer(self, broker_name: str, raw: Mapping[str, Any]) -> None:
        check = TransactionCheck(
            transaction_id=raw["transaction_id"],
            producer_group=raw["producer_group"],
            broker_name=broker_name,
            commitlog_offset=raw["commitlog_offset"],
            check_times=raw["check_times"],
            message=Message.from_wire(raw["message"]),
        )
        state = await _run_user(self.check, check)
        if state is LocalTransactionState.UNKNOWN:
            return
        try:
            await self._end(broker_name, check.transaction_id, check.commitlog_offset, state)
        except MQError as err:  # Asked again at the next interval (if still pending).
            log.info("answer to the check of %s failed: %s", check.transaction_id, err)
