"""Typed queries: every read of a broker's store, one frozen dataclass each.

The API and the actors ask the ReputActor (which owns the Dispatcher) with
`Read(query, reply)`; it answers with `answer(store, query)` on its own thread. A query
is a value, never code: what can be read is the list below, and each is answered by one
function here, over `broker/store_reads.py` (queues, messages, records) and the reads
that belong to one handler (`broker/delay_due.py`, `broker/progress.py`). A
`StoreQuery[T]` is answered with a `T`; mutable parts of the broker state are copied, as
they belong to the dispatch owner.

Must not: write a file or change the Dispatcher's state (a delayed record that names no
queue is recorded as passed over, as dispatch would have).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from dledgermq.broker import store_reads
from dledgermq.broker.delay_due import DueMessage, due_delayed
from dledgermq.broker.dispatch import Dispatcher
from dledgermq.broker.filter import MATCH_ALL, TagFilter
from dledgermq.broker.message_id import decode_msg_id
from dledgermq.broker.progress import QueueProgress, group_progress
from dledgermq.broker.retry import dlq_topic
from dledgermq.broker.send_back import Letter
from dledgermq.broker.store_reads import PullResult, StoredMessage
from dledgermq.broker.transactions import CheckPolicy, EndedTxn, HalfTxn, due_round
from dledgermq.errors import BadRequest, CorruptData, OffsetOutOfRange
from dledgermq.store.record import Record

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class StoreQuery(Generic[T_co]):
    """A read of the store, answered with a `T_co`."""

    __slots__ = ()


# -- queues and messages --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullMessages(StoreQuery[PullResult]):
    """A pull answered at once (never held: `reput.Pull` is the consumer's, which waits)."""

    topic: str
    queue_id: int
    offset: int
    max_messages: int
    tags: TagFilter = MATCH_ALL


@dataclass(frozen=True, slots=True)
class QueueRanges(StoreQuery[dict[int, tuple[int, int]]]):
    """(min_offset, max_offset) of each queue; (0, 0) for one never written."""

    topic: str
    queue_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OffsetByTime(StoreQuery[int]):
    """The first queue offset stored at or after `timestamp_ms`."""

    topic: str
    queue_id: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class GetMessage(StoreQuery[StoredMessage]):
    """A message by its offset id or its unique key; MessageNotFound if none."""

    msg_id: str


@dataclass(frozen=True, slots=True)
class QueryByKey(StoreQuery[list[StoredMessage]]):
    """Messages carrying `key` (in `topic` if given), stored within the times, newest first."""

    topic: str | None
    key: str
    begin_ms: int
    end_ms: int
    max_messages: int


@dataclass(frozen=True, slots=True)
class Unreadable(StoreQuery[dict[str, Any]]):
    """The committed records dispatch passed over (`broker/unreadable.py`), as wire data."""


# -- consumer groups ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupOffsets(StoreQuery[dict[int, int]]):
    """The group's committed offsets in `topic`, by queue id (ascending)."""

    group: str
    topic: str


@dataclass(frozen=True, slots=True)
class GroupProgress(StoreQuery[list[QueueProgress]]):
    """Per read queue: range, committed offset, lag, last consumed store time."""

    group: str
    topic: str


# -- retries and dead letters ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Letters(StoreQuery[list[Letter]]):
    """The records `msg_ids` name on this broker (BadRequest for another broker's id)."""

    msg_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeadLetters(StoreQuery[tuple[PullResult, int | None]]):
    """A page of the group's dead letters from `offset` (None: the oldest kept), and how
    far "resend all" went (None: never)."""

    group: str
    offset: int | None
    max_messages: int


@dataclass(frozen=True, slots=True)
class UnsentDeadLetters(StoreQuery[tuple[int, PullResult]]):
    """The group's dead letters after its resend mark: where they start, and a page."""

    group: str
    max_messages: int


# -- delayed messages and transactions ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueDelayed(StoreQuery[list[DueMessage]]):
    """Scheduled messages due by `now_ms` (wall clock), at most `per_queue` a queue."""

    now_ms: int
    per_queue: int


@dataclass(frozen=True, slots=True)
class TransactionList:
    pending: list[HalfTxn]
    ended: list[EndedTxn]
    pending_total: int
    ended_total: int


@dataclass(frozen=True, slots=True)
class TransactionsDue:
    """Transactions to check (`checks` counting this one; the half message, None if
    retention removed it) and to roll back (checked too often)."""

    check: list[tuple[HalfTxn, Record | None]]
    expire: list[HalfTxn]


@dataclass(frozen=True, slots=True)
class PendingTransactionCount(StoreQuery[int]):
    """How many transactions await an outcome."""


@dataclass(frozen=True, slots=True)
class Transactions(StoreQuery[TransactionList]):
    """Pending (oldest first) and ended (newest first) transactions, of one producer
    group if given, at most `max_each` of each."""

    producer_group: str | None
    max_each: int


@dataclass(frozen=True, slots=True)
class FindTransaction(StoreQuery[tuple[HalfTxn | EndedTxn | None, Record | None]]):
    """The transaction at `offset` with this id, pending or ended, and (`with_record`, a
    pending one) its half message (None if retention removed it)."""

    offset: int
    transaction_id: str
    with_record: bool


@dataclass(frozen=True, slots=True)
class DueTransactions(StoreQuery[TransactionsDue]):
    """The checker's round: at most `limit` due transactions by `policy` at `now_ms`."""

    policy: CheckPolicy
    now_ms: int
    limit: int


# -- answers --------------------------------------------------------------------------------


def answer(store: Dispatcher, query: StoreQuery[T]) -> T:
    """Answer `query` over the store (on the thread that owns it).

    Raises:
        MQError: the read's refusal (e.g. TopicNotFound, OffsetOutOfRange, CorruptData).
    """
    answer_of = ANSWERS.get(type(query))
    assert answer_of is not None, f"no answer for {query!r}"
    return cast(T, answer_of(store, query))


def _pull(store: Dispatcher, q: PullMessages) -> PullResult:
    return store_reads.pull(store, q.topic, q.queue_id, q.offset, q.max_messages, q.tags)


def _queue_ranges(store: Dispatcher, q: QueueRanges) -> dict[int, tuple[int, int]]:
    return {queue_id: store_reads.queue_range(store, q.topic, queue_id) for queue_id in q.queue_ids}


def _offset_by_time(store: Dispatcher, q: OffsetByTime) -> int:
    return store_reads.offset_by_time(store, q.topic, q.queue_id, q.timestamp_ms)


def _get_message(store: Dispatcher, q: GetMessage) -> StoredMessage:
    return store_reads.get_message(store, q.msg_id)


def _query_by_key(store: Dispatcher, q: QueryByKey) -> list[StoredMessage]:
    return store_reads.query_by_key(store, q.topic, q.key, q.begin_ms, q.end_ms, q.max_messages)


def _unreadable(store: Dispatcher, _: Unreadable) -> dict[str, Any]:
    return store.unreadable.to_wire()


def _group_offsets(store: Dispatcher, q: GroupOffsets) -> dict[int, int]:
    return dict(sorted(store.state.offsets.get(q.group, {}).get(q.topic, {}).items()))


def _group_progress(store: Dispatcher, q: GroupProgress) -> list[QueueProgress]:
    return group_progress(store, q.group, q.topic)


def _letters(store: Dispatcher, q: Letters) -> list[Letter]:
    letters = []
    for msg_id in q.msg_ids:
        decoded = decode_msg_id(msg_id)
        if decoded is None or decoded.broker_hash != store.broker_hash:
            raise BadRequest(
                f"message {msg_id} was not stored by this broker group; send it back "
                "to the broker group whose hash its first 8 digits are",
                msg_id=msg_id,
            )
        letters.append(Letter(msg_id, store_reads.get_message(store, msg_id).record))
    return letters


def _dead_letters(store: Dispatcher, q: DeadLetters) -> tuple[PullResult, int | None]:
    return _dlq_page(store, q.group, q.offset, q.max_messages), _resend_mark(store, q.group)


def _unsent_dead_letters(store: Dispatcher, q: UnsentDeadLetters) -> tuple[int, PullResult]:
    mark = _resend_mark(store, q.group)
    low, _ = store_reads.queue_range(store, dlq_topic(q.group), 0)
    start = low if mark is None else max(mark, low)
    return start, _dlq_page(store, q.group, start, q.max_messages)


def _dlq_page(store: Dispatcher, group: str, offset: int | None, max_messages: int) -> PullResult:
    """A page of the group's dead letters from `offset` (default: the oldest kept)."""
    topic = dlq_topic(group)
    if topic not in store.state.topics:  # No dead letter yet: an empty queue.
        if offset:
            raise OffsetOutOfRange(
                f"offset {offset} is outside [0, 0] of {topic}/0", min_offset=0, max_offset=0
            )
        return PullResult([], 0, 0, 0)
    low, _ = store_reads.queue_range(store, topic, 0)
    start = low if offset is None else offset
    return store_reads.pull(store, topic, 0, start, max_messages, MATCH_ALL)


def _resend_mark(store: Dispatcher, group: str) -> int | None:
    """How far "resend all" went in the group's dead-letter queue (None: never)."""
    return store.state.offsets.get(group, {}).get(dlq_topic(group), {}).get(0)


def _due_delayed(store: Dispatcher, q: DueDelayed) -> list[DueMessage]:
    return due_delayed(store, q.now_ms, q.per_queue)


def _pending_count(store: Dispatcher, _: PendingTransactionCount) -> int:
    return len(store.state.transactions.pending)


def _transactions(store: Dispatcher, q: Transactions) -> TransactionList:
    table, group = store.state.transactions, q.producer_group
    pending = [t for t in table.pending.values() if group in (None, t.producer_group)]
    ended = [t for t in reversed(table.ended.values()) if group in (None, t.producer_group)]
    return TransactionList(
        [dataclasses.replace(t) for t in pending[: q.max_each]],
        ended[: q.max_each],
        len(pending),
        len(ended),
    )


def _find_transaction(
    store: Dispatcher, q: FindTransaction
) -> tuple[HalfTxn | EndedTxn | None, Record | None]:
    found = store.state.transactions.lookup(q.offset, q.transaction_id)
    if isinstance(found, HalfTxn):
        record = store_reads.read_record(store, found.offset, found.size) if q.with_record else None
        return dataclasses.replace(found), record
    return found, None


def _due_transactions(store: Dispatcher, q: DueTransactions) -> TransactionsDue:
    due = due_round(store.state.transactions, q.policy, q.now_ms, q.limit)
    check = []
    for txn in due.check:
        try:
            record = store_reads.read_record(store, txn.offset, txn.size)
        except CorruptData:  # Logged and reported for repair; asked again later.
            continue
        check.append((dataclasses.replace(txn, checks=txn.checks + 1), record))
    return TransactionsDue(check, [dataclasses.replace(t) for t in due.expire])


# Every query and the function that answers it: what can be read of the store, in one place.
ANSWERS: dict[type[StoreQuery[Any]], Callable[[Dispatcher, Any], Any]] = {
    PullMessages: _pull,
    QueueRanges: _queue_ranges,
    OffsetByTime: _offset_by_time,
    GetMessage: _get_message,
    QueryByKey: _query_by_key,
    Unreadable: _unreadable,
    GroupOffsets: _group_offsets,
    GroupProgress: _group_progress,
    Letters: _letters,
    DeadLetters: _dead_letters,
    UnsentDeadLetters: _unsent_dead_letters,
    DueDelayed: _due_delayed,
    PendingTransactionCount: _pending_count,
    Transactions: _transactions,
    FindTransaction: _find_transaction,
    DueTransactions: _due_transactions,
}
