"""Blocking facade over `TransactionProducer`, like the ones in `sync.py`.

The local transaction and the check callback are plain functions; they run in worker
threads of the facade's private loop. A call waits at most its sends' own timeouts plus
`local_timeout_s` for the local transaction (then `errors.Timeout`; the half message stays
and a check-back decides it).

Must not: add behaviour; each method forwards to the async producer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dledgermq.client.message import MessageQueue
from dledgermq.client.producer import RETRY_WAIT_MAX_S
from dledgermq.client.routes import DEFAULT_ROUTE_REFRESH_S
from dledgermq.client.sync import MARGIN_S, StartedFacade
from dledgermq.client.transaction_producer import (
    END_ATTEMPTS,
    POLL_WAIT_MS,
    CheckListener,
    LocalTransaction,
    TransactionProducer,
    TransactionSendResult,
)


class SyncTransactionProducer(StartedFacade[TransactionProducer]):
    """Blocking `TransactionProducer`; check-backs are answered while it is open."""

    def __init__(  # noqa: PLR0913 - TransactionProducer's knobs
        self,
        namesrv_addrs: Sequence[str],
        group: str,
        *,
        check: CheckListener,
        send_timeout_s: float = 3.0,
        retries: int = 2,
        route_refresh_s: float = DEFAULT_ROUTE_REFRESH_S,
        poll_wait_ms: int = POLL_WAIT_MS,
        local_timeout_s: float = 60.0,
    ) -> None:
        producer = TransactionProducer(
            namesrv_addrs,
            group,
            check=check,
            send_timeout_s=send_timeout_s,
            retries=retries,
            route_refresh_s=route_refresh_s,
            poll_wait_ms=poll_wait_ms,
        )
        self._local_timeout_s = local_timeout_s
        attempts = retries + 1 + END_ATTEMPTS
        timeout_s = (send_timeout_s + RETRY_WAIT_MAX_S) * attempts + MARGIN_S
        super().__init__(producer, "dledgermq-txn-producer", timeout_s)

    @property
    def client_id(self) -> str:
        return self._client.client_id

    def send_in_transaction(  # noqa: PLR0913 - TransactionProducer.send_in_transaction's
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
        coro = self._client.send_in_transaction(
            topic,
            body,
            local_transaction,
            tags=tags,
            keys=keys,
            properties=properties,
            queue=queue,
            check_immunity_s=check_immunity_s,
        )
        return self._run(coro, self._timeout_s + self._local_timeout_s)
