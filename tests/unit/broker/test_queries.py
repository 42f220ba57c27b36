"""The typed queries answer what the closures they replaced answered.

Every read of the store is a `StoreQuery` value answered by `queries.answer` on the
dispatch owner's thread. Method: dispatch a small log (a topic, messages stored at known
times, an offset commit) and ask each query of the queues, groups, dead letters and
transactions; and check that every query type has its answer, so a new one cannot be
sent to a ReputActor that would fail on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dledgermq.broker.dispatch import Dispatcher, StoreOptions
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.message_id import make_msg_id
from dledgermq.broker.queries import (
    ANSWERS,
    DeadLetters,
    GetMessage,
    GroupOffsets,
    GroupProgress,
    Letters,
    OffsetByTime,
    PendingTransactionCount,
    PullMessages,
    QueueRanges,
    StoreQuery,
    Transactions,
    Unreadable,
    UnsentDeadLetters,
    answer,
)
from dledgermq.broker.state import offset_commit_draft, topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.errors import BadRequest, OffsetOutOfRange, TopicNotFound
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import MessageDraft

SEGMENT = 64 * 1024
OPTIONS = StoreOptions(cq_units_per_file=16, index_slots_per_file=64, index_entries_per_file=128)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Dispatcher]:
    """Topic T (2 queues): queue 0 holds m0..m3 stored at 1001..1004; group g committed 2."""
    log = CommitLog.open(tmp_path / "commitlog", SEGMENT)
    entries = [[topic_put_draft(TopicConfig("T", 2, 2), 1)]]
    entries += [[MessageDraft("T", 0, b"m%d" % i, {"UNIQ_KEY": f"U{i}"}, 1)] for i in range(4)]
    entries.append([offset_commit_draft("g", "T", {0: 2}, 1)])
    for index, drafts in enumerate(entries):
        log.append_entry(drafts, term=1, index=index + 1, store_timestamp_ms=1000 + index)
    end = log.write_offset
    log.close()
    reader = CommitLogReader(tmp_path / "commitlog", SEGMENT)
    dispatcher = Dispatcher("b", NodeLayout(tmp_path / "node"), OPTIONS, reader)
    dispatcher.dispatch_upto(end)
    yield dispatcher
    dispatcher.close()
    reader.close()


def test_every_query_has_its_answer() -> None:
    # By name: dataclass(slots=True) leaves the class it replaced among the subclasses.
    declared = {kind.__name__ for kind in StoreQuery.__subclasses__()}
    assert declared == {kind.__name__ for kind in ANSWERS}


def test_queue_reads(store: Dispatcher) -> None:
    assert answer(store, QueueRanges("T", (0, 1))) == {0: (0, 4), 1: (0, 0)}
    assert answer(store, OffsetByTime("T", 0, 1003)) == 2
    assert answer(store, OffsetByTime("T", 0, 5000)) == 4
    pulled = answer(store, PullMessages("T", 0, 1, 2))
    assert [m.record.body for m in pulled.messages] == [b"m1", b"m2"]
    assert answer(store, GetMessage("U3")).queue_offset == 3
    assert answer(store, Unreadable()) == {"count": 0, "recent": []}
    with pytest.raises(TopicNotFound):
        answer(store, OffsetByTime("nope", 0, 0))


def test_group_reads(store: Dispatcher) -> None:
    assert answer(store, GroupOffsets("g", "T")) == {0: 2}
    assert answer(store, GroupOffsets("other", "T")) == {}
    rows = answer(store, GroupProgress("g", "T"))
    assert [(r.queue_id, r.consumer_offset, r.lag, r.last_consumed_ms) for r in rows] == [
        (0, 2, 2, 1002),  # the message before offset 2 (m1) was stored at 1002
        (1, None, 0, None),
    ]


def test_dead_letter_and_transaction_reads(store: Dispatcher) -> None:
    page, mark = answer(store, DeadLetters("g", None, 10))
    assert (page.messages, page.max_offset, mark) == ([], 0, None)
    with pytest.raises(OffsetOutOfRange):
        answer(store, DeadLetters("g", 1, 10))
    start, unsent = answer(store, UnsentDeadLetters("g", 10))
    assert (start, unsent.messages) == (0, [])
    m0 = answer(store, GetMessage("U0"))
    [letter] = answer(store, Letters((m0.msg_id,)))
    assert letter.record.body == b"m0"
    with pytest.raises(BadRequest):
        answer(store, Letters((make_msg_id("FFFFFFFF", 0, 10),)))
    assert answer(store, PendingTransactionCount()) == 0
    listed = answer(store, Transactions(None, 10))
    assert (listed.pending, listed.ended, listed.pending_total) == ([], [], 0)
