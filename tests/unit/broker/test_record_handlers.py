"""A new kind of record is one handler registered at composition, no edit of dispatch.

Goal: the seam POP consumption (and any later model) plugs into: a built-in topic whose
handler decides each record's queue tag and indexing, a gate that voids records by flag,
and the system handler, all called in log order on the records they own and on no other.
Method: a Dispatcher over a real CommitLog in a temp dir, composed with the broker's own
handlers plus a test topic and a test gate.
"""

from __future__ import annotations

from pathlib import Path

from dledgermq.broker.dispatch import Dispatcher, StoreOptions
from dledgermq.broker.handlers import broker_handlers
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.queries import PullMessages, QueryByKey, answer
from dledgermq.broker.record_handlers import Applying, BuiltinTopic, Placement, RecordHandlers
from dledgermq.broker.state import topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import MessageDraft, RecordMeta

SEGMENT = 64 * 1024
OPTIONS = StoreOptions(cq_units_per_file=16, index_slots_per_file=64, index_entries_per_file=128)
TEST_TOPIC = "%TEST%STATE"
FLAG_TEST_VOID = 4


class CountingTopic:
    """Tags each unit with how many records it has seen; keeps them out of the index."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def place(self, record: RecordMeta, target: Applying) -> Placement:
        self.seen.append(bytes(record.body))
        return Placement(len(self.seen), indexed=False)


class VoidGate:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def admit(self, record: RecordMeta, target: Applying) -> bool:
        self.asked.append(record.commitlog_offset)
        return False


def message(topic: str, body: bytes, flags: int = 0) -> MessageDraft:
    return MessageDraft(topic, 0, body, {"KEYS": "k", "UNIQ_KEY": body.hex()}, 0, flags=flags)


def test_registered_handlers_get_their_records_and_dispatch_does_the_rest(
    tmp_path: Path,
) -> None:
    log = CommitLog.open(tmp_path / "commitlog", SEGMENT)
    entries = [
        [topic_put_draft(TopicConfig("T", 1, 1), 1)],
        [message("T", b"plain"), message(TEST_TOPIC, b"one")],
        [message("T", b"voided", flags=FLAG_TEST_VOID), message(TEST_TOPIC, b"two")],
    ]
    for index, drafts in enumerate(entries, start=1):
        log.append_entry(drafts, term=1, index=index, store_timestamp_ms=1000)
    end = log.write_offset
    log.close()
    standard = broker_handlers()
    counting, gate = CountingTopic(), VoidGate()
    handlers = RecordHandlers(
        system=standard.system,
        builtin={
            **standard.builtin,
            TEST_TOPIC: BuiltinTopic(TopicConfig(TEST_TOPIC, 1, 1), counting),
        },
        gates={**standard.gates, FLAG_TEST_VOID: gate},
    )
    reader = CommitLogReader(tmp_path / "commitlog", SEGMENT)
    dispatcher = Dispatcher("b", NodeLayout(tmp_path / "node"), OPTIONS, reader, handlers=handlers)
    try:
        dispatcher.dispatch_upto(end)
        assert counting.seen == [b"one", b"two"]  # Its records only, in log order.
        assert len(gate.asked) == 1  # Asked about the flagged record only.
        units = dispatcher.cqs.get(TEST_TOPIC, 0).get(0, 10)
        assert [u.tag_hash for u in units] == [1, 2]  # The handler's placement.
        # The system handler created T; the gate voided the flagged message.
        pulled = answer(dispatcher, PullMessages("T", 0, 0, 10))
        assert [m.record.body for m in pulled.messages] == [b"plain"]
        by_key = answer(dispatcher, QueryByKey(None, "k", 0, 2**62, 10))
        assert [m.record.body for m in by_key] == [b"plain"]  # The test topic: not indexed.
    finally:
        dispatcher.close()
        reader.close()
