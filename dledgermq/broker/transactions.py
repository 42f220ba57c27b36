"""Transactional messages: half messages, their outcomes and check-backs, the pure rules.

RocketMQ's two-phase scheme, in our log (DESIGN.md §5 rule 5):

- A **half message** is stored in the built-in topic `HALF_TOPIC` (one queue, never
  readable by clients) with its real topic and queue in properties. Dispatching it adds it
  to the `TransactionTable` (part of the replicated `BrokerState`): pending, no outcome.
- A **commit** is the copy of the half message in its real topic, written with
  `FLAG_TRANSACTION_END`: dispatching that copy *is* the end of the transaction. The first
  end applied for a half message wins; a copy whose transaction had already ended is not
  dispatched (never visible), so duplicated or racing commits deliver the message once,
  whoever appended them and under whichever leader.
- A **rollback**, a **check** (the count of check-backs asked so far) and the checker's
  **expiry** (rolled back after `max_check_times`) are internal `%SYS%TXN` records.

Every outcome is a function of the committed log, so each replica, and any later leader,
knows exactly which transactions are pending and how each ended.

Pure: no clock reads, no I/O; callers pass times and records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import msgpack

from dledgermq.broker.delay import draft_of
from dledgermq.broker.record_handlers import Applying, Placement
from dledgermq.broker.reserved import (
    PROPERTY_CHECK_IMMUNITY,
    PROPERTY_HALF_OFFSET,
    PROPERTY_PRODUCER_GROUP,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TRANSACTION,
    PROPERTY_TRANSACTION_ID,
    parse_decimal,
)
from dledgermq.broker.topics import PERM_READ_WRITE, TRANSACTION_OP_TOPIC, TopicConfig
from dledgermq.errors import TransactionConflict, TransactionNotFound
from dledgermq.store.record import MessageDraft, Record, RecordMeta

HALF_TOPIC = "%TRANS%HALF"
HALF_PREFIX = "%TRANS%"
# Record flag of a commit copy (bit 0 is the store's entry end): applying it ends its
# transaction. Flags describe a stored record, so copies of a copy never carry it.
FLAG_TRANSACTION_END = 2
_HALF_ONLY = (PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_CHECK_IMMUNITY)

Outcome = Literal["commit", "rollback"]
COMMIT: Outcome = "commit"
ROLLBACK: Outcome = "rollback"
OUTCOMES = (COMMIT, ROLLBACK)
BY_PRODUCER = "producer"  # The producer ended it (directly or answering a check).
BY_MAX_CHECKS = "max_checks"  # Nobody answered `max_check_times` check-backs.
BY_GONE = "gone"  # Retention removed the half message before anyone ended it.
# Ended transactions remembered (newest kept) to answer a repeated end with its outcome.
ENDED_KEPT = 4_096


def half_topic_config() -> TopicConfig:
    """The built-in half topic: one queue, not listed, not for clients."""
    return TopicConfig(HALF_TOPIC, 1, 1, PERM_READ_WRITE)


@dataclass(slots=True)
class HalfTxn:
    """A pending transaction: where its half message is and how often it was checked."""

    offset: int  # the half message's commitlog offset (with the id, its identity)
    size: int
    transaction_id: str
    producer_group: str
    topic: str
    queue_id: int
    stored_ms: int
    immunity_ms: int | None  # per-message first-check delay (None: the broker's default)
    checks: int = 0
    last_check_ms: int = 0

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EndedTxn:
    """How a transaction ended; `copy_offset`/`copy_size` locate a committed copy."""

    offset: int
    transaction_id: str
    producer_group: str
    topic: str
    outcome: Outcome
    by: str
    ended_ms: int
    checks: int
    copy_offset: int | None = None
    copy_size: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TransactionTable:
    """Pending half messages by offset and the last `ENDED_KEPT` outcomes (both in log
    order), applied by dispatch on every replica."""

    pending: dict[int, HalfTxn]
    ended: dict[int, EndedTxn]

    def __init__(self) -> None:
        self.pending, self.ended = {}, {}

    def add_half(self, offset: int, size: int, properties: Mapping[str, str], at_ms: int) -> None:
        """A half message was dispatched (its properties were checked when it was sent)."""
        immunity = properties.get(PROPERTY_CHECK_IMMUNITY)
        self.pending[offset] = HalfTxn(
            offset=offset,
            size=size,
            transaction_id=properties.get(PROPERTY_TRANSACTION_ID, ""),
            producer_group=properties.get(PROPERTY_PRODUCER_GROUP, ""),
            topic=properties.get(PROPERTY_REAL_TOPIC, ""),
            queue_id=_int(properties.get(PROPERTY_REAL_QID), 0),
            stored_ms=at_ms,
            immunity_ms=None if immunity is None else _int(immunity, 0) * 1_000,
        )

    def end(
        self,
        offset: int,
        transaction_id: str,
        outcome: Outcome,
        by: str,
        at_ms: int,
        copy: tuple[int, int] | None = None,
    ) -> bool:
        """End a pending transaction; False (and nothing changes) unless `offset` holds a
        pending half message with this id: the first end wins, later ones are void."""
        txn = self.pending.get(offset)
        if txn is None or txn.transaction_id != transaction_id:
            return False
        del self.pending[offset]
        copy_offset, copy_size = copy if copy is not None else (None, None)
        self.ended[offset] = EndedTxn(
            offset,
            transaction_id,
            txn.producer_group,
            txn.topic,
            outcome,
            by,
            at_ms,
            txn.checks,
            copy_offset,
            copy_size,
        )
        while len(self.ended) > ENDED_KEPT:
            del self.ended[next(iter(self.ended))]
        return True

    def apply_commit_copy(
        self, offset: int, size: int, properties: Mapping[str, str], at_ms: int
    ) -> bool:
        """A dispatched commit copy (`FLAG_TRANSACTION_END`): whether it won, i.e. may be
        delivered."""
        half = _int(properties.get(PROPERTY_HALF_OFFSET), -1)
        transaction_id = properties.get(PROPERTY_TRANSACTION_ID, "")
        return self.end(half, transaction_id, COMMIT, BY_PRODUCER, at_ms, (offset, size))

    def apply(self, change: Mapping[str, Any]) -> None:
        """Apply one `%SYS%TXN` record (an unknown op, from a later version, is ignored).

        Raises:
            TypeError, ValueError: a malformed record (read whole before anything changes).
        """
        at_ms = change.get("at_ms", 0)
        if type(at_ms) is not int:
            raise TypeError(f"at_ms {at_ms!r} is not an integer")
        if change.get("op") == "check":
            offsets = [int(offset) for offset in change["offsets"]]
            for offset in offsets:
                txn = self.pending.get(offset)
                if txn is not None:
                    txn.checks += 1
                    txn.last_check_ms = at_ms
        elif change.get("op") == "end":
            ends = [(int(o), str(t), outcome, str(by)) for o, t, outcome, by in change["ends"]]
            for offset, transaction_id, outcome, by in ends:
                if outcome in OUTCOMES:
                    self.end(offset, transaction_id, outcome, by, at_ms)

    def lookup(self, offset: int, transaction_id: str) -> HalfTxn | EndedTxn | None:
        """The transaction at `offset` if it has this id (pending or remembered)."""
        found = self.pending.get(offset) or self.ended.get(offset)
        return found if found is not None and found.transaction_id == transaction_id else None

    def to_wire(self) -> dict[str, Any]:
        return {
            "pending": [t.to_wire() for t in self.pending.values()],
            "ended": [t.to_wire() for t in self.ended.values()],
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> TransactionTable:
        table = cls()
        for item in raw.get("pending", ()):
            table.pending[int(item["offset"])] = HalfTxn(**item)
        for item in raw.get("ended", ()):
            table.ended[int(item["offset"])] = EndedTxn(**item)
        return table


class HalfMessages:
    """The half topic's handler (broker/record_handlers.py): a half message is pending
    from now on; it is queued (kept in order for retention) but never indexed: its
    committed copy will be."""

    def place(self, record: RecordMeta, target: Applying) -> Placement:
        target.state.transactions.add_half(
            record.commitlog_offset, record.size, record.properties, record.store_timestamp_ms
        )
        return Placement(0, indexed=False)


class CommitCopies:
    """The gate of `FLAG_TRANSACTION_END` (broker/record_handlers.py): a commit copy ends
    its transaction and is delivered, unless the transaction had already ended (the first
    end wins; a later copy is void)."""

    def admit(self, record: RecordMeta, target: Applying) -> bool:
        return target.state.transactions.apply_commit_copy(
            record.commitlog_offset, record.size, record.properties, record.store_timestamp_ms
        )


def _int(value: str | None, default: int) -> int:
    parsed = parse_decimal(value)
    return default if parsed is None else parsed


# -- the entries the broker appends ----------------------------------------------------------


def half_draft(
    draft: MessageDraft, producer_group: str, transaction_id: str, immunity_s: int | None
) -> MessageDraft:
    """A message as the half message of a new transaction: stored, never delivered."""
    properties = dict(draft.properties)
    properties[PROPERTY_REAL_TOPIC] = draft.topic
    properties[PROPERTY_REAL_QID] = str(draft.queue_id)
    properties[PROPERTY_PRODUCER_GROUP] = producer_group
    properties[PROPERTY_TRANSACTION_ID] = transaction_id
    properties[PROPERTY_TRANSACTION] = "true"
    if immunity_s is not None:
        properties[PROPERTY_CHECK_IMMUNITY] = str(immunity_s)
    return draft._replace(topic=HALF_TOPIC, queue_id=0, properties=properties)


def real_view(record: Record) -> Record:
    """A half message as its producer sent it: real topic and queue, no half bookkeeping."""
    properties = record.properties
    return record._replace(
        topic=properties.get(PROPERTY_REAL_TOPIC, record.topic),
        queue_id=_int(properties.get(PROPERTY_REAL_QID), 0),
        properties={k: v for k, v in properties.items() if k not in _HALF_ONLY},
    )


def commit_draft(half: Record, write_queues: int) -> MessageDraft:
    """The commit copy of a half message: its real topic (the queue it chose, folded into
    the topic's write queues if they shrank meanwhile), ending the transaction."""
    view = real_view(half)
    properties = dict(view.properties)
    properties[PROPERTY_HALF_OFFSET] = str(half.commitlog_offset)
    return draft_of(view)._replace(
        queue_id=view.queue_id % write_queues,
        properties=properties,
        prepared_transaction_offset=half.commitlog_offset,
        flags=FLAG_TRANSACTION_END,
    )


def end_draft(ends: Iterable[tuple[int, str, Outcome, str]], now_ms: int) -> MessageDraft:
    """Rollbacks: (half offset, transaction id, outcome, by) each, in one record."""
    change = {"op": "end", "ends": [list(e) for e in ends], "at_ms": now_ms}
    return _op_draft(change, now_ms)


def check_draft(offsets: Iterable[int], now_ms: int) -> MessageDraft:
    """Check-backs asked now: counted before any producer is asked, so the count survives
    a failover (a check lost with its leader still counts; it is asked again later)."""
    return _op_draft({"op": "check", "offsets": list(offsets), "at_ms": now_ms}, now_ms)


def _op_draft(change: dict[str, Any], now_ms: int) -> MessageDraft:
    return MessageDraft(
        topic=TRANSACTION_OP_TOPIC,
        queue_id=0,
        body=msgpack.packb(change),
        properties={},
        born_timestamp_ms=now_ms,
    )


# -- check-backs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckPolicy:
    immunity_ms: int = 6_000  # RocketMQ's transactionTimeOut
    interval_ms: int = 30_000  # RocketMQ's transactionCheckInterval
    max_checks: int = 15  # RocketMQ's transactionCheckMax


@dataclass(frozen=True, slots=True)
class CheckRound:
    """What is due now: transactions to check back, and ones to roll back (checked
    `max_checks` times without an outcome)."""

    check: list[HalfTxn]
    expire: list[HalfTxn]


def next_check_ms(txn: HalfTxn, policy: CheckPolicy) -> int:
    """When `txn` is next due: its immunity after it was stored, then every interval."""
    if txn.checks == 0:
        immunity = policy.immunity_ms if txn.immunity_ms is None else txn.immunity_ms
        return txn.stored_ms + immunity
    return txn.last_check_ms + policy.interval_ms


def due_round(table: TransactionTable, policy: CheckPolicy, now_ms: int, limit: int) -> CheckRound:
    """At most `limit` due transactions, oldest half messages first."""
    check: list[HalfTxn] = []
    expire: list[HalfTxn] = []
    for txn in table.pending.values():
        if len(check) + len(expire) >= limit:
            break
        if next_check_ms(txn, policy) > now_ms:
            continue
        (expire if txn.checks >= policy.max_checks else check).append(txn)
    return CheckRound(check, expire)


# -- answering an end request --------------------------------------------------------------


def check_end_target(
    found: HalfTxn | EndedTxn | None, producer_group: str, transaction_id: str, offset: int
) -> HalfTxn | EndedTxn:
    """The transaction an end request names, bound to its id, offset *and* group.

    Raises:
        TransactionNotFound: no such transaction (or not of this group), so a stray or
            delayed request never touches another transaction.
    """
    if found is None or found.producer_group != producer_group:
        raise TransactionNotFound(
            f"no transaction {transaction_id!r} of group {producer_group!r} with its half "
            f"message at commitlog offset {offset} (pending or recently ended)",
            transaction_id=transaction_id,
            commitlog_offset=offset,
        )
    return found


def check_same_outcome(ended: EndedTxn, outcome: Outcome) -> None:
    """A repeated end is answered with the outcome that stands; a contrary one is refused.

    Raises:
        TransactionConflict: it ended the other way (`outcome` and `by` say how).
    """
    if ended.outcome != outcome:
        raise TransactionConflict(
            f"transaction {ended.transaction_id!r} already ended: {ended.outcome} "
            f"(by {ended.by}); it cannot {outcome} now",
            transaction_id=ended.transaction_id,
            outcome=ended.outcome,
            by=ended.by,
        )
