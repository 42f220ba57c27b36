"""Dispatch from the writer's memory and dispatch from the log must agree exactly.

The leader dispatches entries it just wrote from their drafts, a Raft follower from the
bytes its writer verified; recovery reads them back from the log. Method: write a log with
topic records, several queues, tags, keys and segment roll-overs; dispatch it from drafts,
from entry bytes and from the log, each into its own ConsumeQueues; compare results,
queue units and lookups (the typed queries of broker/queries.py).
"""

from __future__ import annotations

import random
from pathlib import Path

from dledgermq.broker.dispatch import Dispatcher, ReplicatedEntry, StoreOptions, WrittenEntry
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.queries import GetMessage, PullMessages, QueryByKey, answer
from dledgermq.broker.state import offset_commit_draft, topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import MessageDraft

SEGMENT = 64 * 1024
OPTIONS = StoreOptions(cq_units_per_file=16, index_slots_per_file=64, index_entries_per_file=128)


def write_log(directory: Path, seed: int) -> list[WrittenEntry]:
    rng = random.Random(seed)
    log = CommitLog.open(directory, SEGMENT)
    batches = [
        [topic_put_draft(TopicConfig("A", 3, 3), 1)],
        [topic_put_draft(TopicConfig("B", 2, 2), 1)],
    ]
    for n in range(60):
        topic = rng.choice("AB")
        queue = rng.randrange(3 if topic == "A" else 2)
        batch = [
            MessageDraft(
                topic,
                queue,
                rng.randbytes(rng.randrange(1, 4000)),
                {"TAGS": rng.choice("XYZ"), "KEYS": f"k{n} shared", "UNIQ_KEY": f"U{n}-{i}"},
                born_timestamp_ms=n,
            )
            for i in range(rng.randrange(1, 6))
        ]
        batches.append(batch)
        if n % 17 == 0:
            batches.append([offset_commit_draft("g", topic, {queue: n}, n)])
    written = []
    for index, drafts in enumerate(batches, start=1):
        before = log.write_offset
        result = log.append_entry(drafts, term=1, index=index, store_timestamp_ms=1000 + index)
        written.append(WrittenEntry(before, tuple(drafts), result.positions, 1000 + index))
    log.close()
    return written


def snapshot(dispatcher: Dispatcher) -> dict:
    queues = {}
    for topic, count in (("A", 3), ("B", 2)):
        for queue in range(count):
            pulled = answer(dispatcher, PullMessages(topic, queue, 0, 256))
            queues[topic, queue] = [
                (m.queue_offset, m.msg_id, m.record.body) for m in pulled.messages
            ]
    return {
        "queues": queues,
        "state": dispatcher.state.snapshot(),
        "by_key": [m.msg_id for m in answer(dispatcher, QueryByKey(None, "shared", 0, 2**62, 64))],
        "by_unique": answer(dispatcher, GetMessage("U30-0")).msg_id,
    }


def test_memory_and_log_dispatch_agree(tmp_path: Path) -> None:
    written = write_log(tmp_path / "commitlog", seed=7)
    end = written[-1].end_offset
    results = {}
    for mode in ("memory", "replicated", "log"):
        layout = NodeLayout(tmp_path / mode)
        reader = CommitLogReader(tmp_path / "commitlog", SEGMENT)
        dispatcher = Dispatcher("broker-a", layout, OPTIONS, reader)
        pending: dict[int, WrittenEntry | ReplicatedEntry] = {}
        if mode == "memory":
            pending = {e.before: e for e in written}
        elif mode == "replicated":
            for e in written:
                start = e.positions[0][0]
                data = reader.read_bytes(start, e.end_offset - start)
                pending[e.before] = ReplicatedEntry(e.before, start, data)
        entries = []
        while dispatcher.dispatched_offset < end:
            entries += dispatcher.dispatch_upto(end, pending, max_bytes=20_000).entries
        assert pending == {}
        results[mode] = (entries, snapshot(dispatcher))
        dispatcher.close()
        reader.close()
    assert results["memory"] == results["log"]
    assert results["replicated"] == results["log"]
    entries, _ = results["log"]
    assert [e.start_offset for e in entries] == [e.positions[0][0] for e in written]
    assert sum(len(e.messages) for e in entries) == sum(
        len(e.drafts) for e in written if e.drafts[0].topic in "AB"
    )
