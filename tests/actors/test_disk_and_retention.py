"""Disk high-water mark and retention, with a manual clock and an injected disk probe.

Above the high-water mark appends are refused with DISK_FULL while reads go on, and
writes resume when space returns. Segments older than file_reserved_hours are deleted
(never the active one, never undispatched data), the ConsumeQueues follow, and a pull
below the new minimum answers OFFSET_MOVED with the valid range. The sends roll over
several segments (an entry placed after end-of-segment padding must still be answered).
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import pytest

from dledgermq.actors.commitlog_writer import Append, WriteRaw
from dledgermq.actors.reput import Read
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.queries import PullMessages, QueueRanges
from dledgermq.broker.state import topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.config import ClusterConfig, parse_config
from dledgermq.errors import DiskFull, OffsetOutOfRange
from dledgermq.node import BrokerHooks, open_broker
from dledgermq.store.commitlog import CommitLogReader
from dledgermq.store.entry_index import decode_position
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.record import MessageDraft
from tests.conftest import wait_until
from tests.support import TINY_SEGMENTS, ThreadReply


class Disk:
    def __init__(self) -> None:
        self.ratio = 0.10

    def __call__(self, path: Path) -> float:
        return self.ratio


@pytest.fixture
def disk() -> Disk:
    return Disk()


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return parse_config(TINY_SEGMENTS, base_dir=tmp_path)


@pytest.fixture
def broker(config: ClusterConfig, disk: Disk):
    group, node = config.node("n1")
    hooks = BrokerHooks(manual_ticks=True, disk_used_ratio=disk)
    started = open_broker(config, group, node, hooks=hooks)
    ask(started.writer, Append((topic_put_draft(TopicConfig("T", 1, 1), 1),), ThreadReply()))
    yield started
    started.stop()


def ask(ref, message: Append | Read):
    ref.tell(message)
    return message.reply.wait()


def send(broker, body: bytes) -> list:
    draft = MessageDraft(topic="T", queue_id=0, body=body, properties={}, born_timestamp_ms=1)
    return ask(broker.writer, Append((draft,), ThreadReply()))


def read(broker, query):
    return ask(broker.reput, Read(query, ThreadReply()))


def test_writes_are_refused_above_the_high_water_mark_and_reads_go_on(broker, disk: Disk) -> None:
    [first] = send(broker, b"before")
    disk.ratio = 0.95
    broker.ticker.tick_once(now_ms=10_000)
    with pytest.raises(DiskFull):
        send(broker, b"refused")
    pulled = read(broker, PullMessages("T", 0, 0, 10))
    assert [m.record.body for m in pulled.messages] == [b"before"]
    assert pulled.max_offset == first.queue_offset + 1  # the refused send stored nothing
    disk.ratio = 0.50
    broker.ticker.tick_once(now_ms=20_000)
    assert send(broker, b"after")[0].queue_offset == 1


def test_expired_segments_are_deleted_and_pulls_below_them_are_moved(
    broker, config: ClusterConfig
) -> None:
    commitlog = NodeLayout(config.node_dir("n1")).commitlog
    body = os.urandom(7_000)
    for _ in range(60):  # ~420 KB: four segments of 128 KiB
        send(broker, body)
    segments = sorted(commitlog.iterdir())
    assert len(segments) >= 4
    two_hours_ago = time.time() - 7_200
    for path in segments[:-1]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    marks = broker.context.published.marks
    broker.ticker.tick_once(now_ms=10_000)  # first a checkpoint: recovery replays from it
    wait_until(lambda: marks.checkpointed.value == marks.dispatched.value, what="checkpoint")
    assert len(list(commitlog.iterdir())) == len(segments)  # nothing expired before it
    broker.ticker.tick_once(now_ms=50_000)
    low, high = wait_for_range(broker, lambda r: r[0] > 0)
    assert high == 60
    assert len(list(commitlog.iterdir())) == 1  # only the active segment is left
    with pytest.raises(OffsetOutOfRange) as moved:
        read(broker, PullMessages("T", 0, 0, 10))
    assert moved.value.details["min_offset"] == low
    pulled = read(broker, PullMessages("T", 0, low, 100))
    assert [m.queue_offset for m in pulled.messages] == list(range(low, 60))


def wait_for_range(broker, done) -> tuple[int, int]:
    """The ReputActor applies DeleteBefore after the writer's tick: poll its answer."""
    return wait_until(lambda: done(r := read(broker, QueueRanges("T", (0,)))[0]) and r)


def test_replicated_writes_wait_while_the_disk_is_full_then_go_on_in_order(
    broker, disk: Disk, config: ClusterConfig
) -> None:
    """A Raft write is never refused (that would break the order of durability reports)
    nor attempted on a full disk: it waits, unacknowledged, until space returns."""
    log_end = broker.context.published.marks.written.value
    segment = config.groups[0].store.segment_size_bytes
    reader = CommitLogReader(NodeLayout(config.node_dir("n1")).commitlog, segment)
    layout = EntryLayout.rebuild(
        reader.iter_records(0, log_end, decode_position), segment, start_offset=0
    )
    reader.close()
    disk.ratio = 0.95
    broker.ticker.tick_once(now_ms=10_000)
    wait_until(lambda: broker.context.published.marks.disk_full.value, timeout_s=10)
    durable: list[int] = []
    last = layout.entries.last_index
    for index in (last + 1, last + 2):
        data = layout.encode_batch(
            [MessageDraft("T", 0, b"raft")], term=1, index=index, store_timestamp_ms=1
        ).data
        write = layout.lay_out(None, [(1, index, data)])
        broker.writer.tell(WriteRaw(write, None, True, partial(durable.append, index)))
    broker.ticker.tick_once(now_ms=10_500)  # within the check interval: still full
    with pytest.raises(DiskFull):  # the writer's answer: it handled everything told before
        send(broker, b"refused")
    assert durable == []
    assert broker.context.published.marks.written.value == log_end
    disk.ratio = 0.10
    broker.ticker.tick_once(now_ms=20_000)
    wait_until(lambda: durable == [last + 1, last + 2], timeout_s=10)
    assert broker.context.published.marks.written.value == layout.end_offset


@pytest.mark.parametrize("clean_ratio", [None, 0.85])
def test_a_full_disk_deletes_young_segments_only_where_forced_clean_is_on(
    tmp_path: Path, disk: Disk, clean_ratio: float | None
) -> None:
    """By default a full disk keeps every message (writes wait for space); the operator's
    `disk_clean_ratio` opts in to RocketMQ's forced clean of the oldest segments."""
    text = TINY_SEGMENTS
    if clean_ratio is not None:
        text = text.replace("store:\n", f"store:\n  disk_clean_ratio: {clean_ratio}\n")
    config = parse_config(text, base_dir=tmp_path)
    commitlog = NodeLayout(config.node_dir("n1")).commitlog
    started = open_broker(
        config, *config.node("n1"), hooks=BrokerHooks(manual_ticks=True, disk_used_ratio=disk)
    )
    try:
        ask(started.writer, Append((topic_put_draft(TopicConfig("T", 1, 1), 1),), ThreadReply()))
        for _ in range(60):  # young segments: retention alone deletes none of them
            send(started, os.urandom(7_000))
        segments = len(list(commitlog.iterdir()))
        marks = started.context.published.marks
        started.ticker.tick_once(now_ms=10_000)
        wait_until(lambda: marks.checkpointed.value == marks.dispatched.value, what="checkpoint")
        disk.ratio = 0.95
        started.ticker.tick_once(now_ms=50_000)
        with pytest.raises(DiskFull):  # the writer has handled the tick
            send(started, b"refused")
        if clean_ratio is None:
            assert len(list(commitlog.iterdir())) == segments
            pulled = read(started, PullMessages("T", 0, 0, 100))
            assert [m.queue_offset for m in pulled.messages] == list(range(60))
        else:
            assert len(list(commitlog.iterdir())) == 1
            low, _ = wait_for_range(started, lambda r: r[0] > 0)
            assert low > 0
    finally:
        started.stop()
