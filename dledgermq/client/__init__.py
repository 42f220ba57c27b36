"""The dledgermq Python client: asyncio-first producer, consumers and admin, plus sync facades.

Start with `Producer`, `PullConsumer`/`PushConsumer` and `Admin`; the `Sync*` classes run the
same code on a private event loop for blocking programs.
"""

from dledgermq.client.admin import Admin
from dledgermq.client.consumer import PullConsumer
from dledgermq.client.message import (
    Message,
    MessageQueue,
    OutgoingMessage,
    PullResult,
    SendResult,
)
from dledgermq.client.producer import Producer
from dledgermq.client.push_consumer import PushConsumer, PushOptions, assign_all
from dledgermq.client.sync import SyncAdmin, SyncProducer, SyncPullConsumer
from dledgermq.client.sync_transaction import SyncTransactionProducer
from dledgermq.client.transaction_producer import (
    HalfMessage,
    LocalTransactionState,
    TransactionCheck,
    TransactionProducer,
    TransactionSendResult,
)

__all__ = [
    "Admin",
    "HalfMessage",
    "LocalTransactionState",
    "Message",
    "MessageQueue",
    "OutgoingMessage",
    "Producer",
    "PullConsumer",
    "PullResult",
    "PushConsumer",
    "PushOptions",
    "SendResult",
    "SyncAdmin",
    "SyncProducer",
    "SyncPullConsumer",
    "SyncTransactionProducer",
    "TransactionCheck",
    "TransactionProducer",
    "TransactionSendResult",
    "assign_all",
]
