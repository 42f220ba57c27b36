"""Writer, flusher and ReputActor together on a real store, with real pykka threads.

Checks the contracts the API relies on: a producer is answered only after its entry is
durable and dispatched, with final queue offsets; group commit shares fsyncs under
concurrent appends; the ReputActor never dispatches past the confirm offset; a failing
actor takes the process down (fail-stop) instead of limping on.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dledgermq.actors.commitlog_writer import Append
from dledgermq.actors.file_syncer import SyncFiles
from dledgermq.actors.published import Watermarks
from dledgermq.actors.reput import Confirm, Read, ReputActor, ReputOptions, ReputPublished
from dledgermq.broker.dispatch import Dispatcher, StoreOptions
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.queries import QueueRanges
from dledgermq.broker.state import topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.node import BrokerHooks, open_broker
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.consume_queue import PendingSync
from dledgermq.store.record import MessageDraft
from tests.conftest import wait_until
from tests.support import ThreadReply, small_cluster


def draft(body: bytes, queue_id: int = 0, topic: str = "T") -> MessageDraft:
    return MessageDraft(
        topic=topic, queue_id=queue_id, body=body, properties={}, born_timestamp_ms=1
    )


def append(writer, drafts: list[MessageDraft]) -> ThreadReply:
    reply = ThreadReply()
    writer.tell(Append(tuple(drafts), reply))
    return reply


@pytest.fixture
def broker(tmp_path: Path):
    config = small_cluster(tmp_path)
    group, node = config.node("n1")
    node_ = open_broker(config, group, node)
    append(node_.context.writer, [topic_put_draft(TopicConfig("T", 4, 4), 1)]).wait()
    yield node_
    node_.stop()


def test_answer_comes_after_flush_with_final_queue_offsets(broker) -> None:
    messages = append(broker.context.writer, [draft(b"a", 1), draft(b"b", 1)]).wait()
    assert [m.queue_offset for m in messages] == [0, 1]
    marks = broker.context.published.marks
    # Sync flush: nothing is dispatched (so nothing answered) before it is fsynced.
    assert marks.dispatched.value > messages[-1].commitlog_offset
    assert marks.durable >= marks.dispatched.value


def test_group_commit_shares_fsyncs_between_concurrent_appends(broker) -> None:
    flusher = broker.flusher
    before = flusher.proxy().fsyncs.get()
    replies = [append(broker.context.writer, [draft(b"x" * 100)]) for _ in range(300)]
    offsets = [reply.wait().__getitem__(0).queue_offset for reply in replies]
    assert offsets == list(range(300))
    fsyncs = flusher.proxy().fsyncs.get() - before
    assert 0 < fsyncs < 300, fsyncs  # at least one fsync, and far fewer than appends


def test_reput_never_dispatches_past_the_confirm_offset(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    log = CommitLog.open(layout.commitlog, 1 << 20)
    ends = [
        log.append_entry(
            [topic_put_draft(TopicConfig("T", 1, 1), 1)], term=0, index=1, store_timestamp_ms=1
        ).end_offset
    ]
    for i in range(3):
        ends.append(
            log.append_entry(
                [draft(b"m%d" % i)], term=0, index=i + 2, store_timestamp_ms=1
            ).end_offset
        )
    reader = CommitLogReader(layout.commitlog, 1 << 20)
    dispatcher = Dispatcher("b", layout, StoreOptions(100, 64, 256), reader)
    published = ReputPublished(Watermarks(0))
    reput = ReputActor.start(
        dispatcher,
        flusher=None,
        published=published,
        options=ReputOptions(checkpoint_interval_ms=10**9, long_polls_max=10),
    )
    try:

        def state() -> tuple[int, tuple[int, int]]:
            reply = ThreadReply()
            reput.tell(Read(QueueRanges("T", (0,)), reply))
            ranges = reply.wait()  # Answered after the confirms told before it.
            return published.marks.dispatched.value, ranges[0]

        assert state() == (0, (0, 0))
        reput.tell(Confirm(ends[1]))
        assert state() == (ends[1], (0, 1))
        reput.tell(Confirm(ends[0]))  # an older confirm never moves anything back
        assert state() == (ends[1], (0, 1))
        reput.tell(Confirm(ends[3]))
        assert state() == (ends[3], (0, 3))
    finally:
        reput.stop()
        log.close()


def test_an_actor_failure_is_fatal(tmp_path: Path) -> None:
    from dledgermq.actors.flusher import Flush, FlusherActor, FlusherOptions

    class BrokenSyncer:
        def sync(self, start: int, end: int) -> None:
            raise OSError(5, "EIO from fsync")

        def close(self) -> None:
            pass

    fatal: list[tuple[str, BaseException]] = []
    marks = Watermarks(0)
    marks.written.value = 10
    flusher = FlusherActor.start(
        BrokenSyncer(),
        marks=marks,
        options=FlusherOptions(interval_ms=None, start_offset=0),
        on_fatal=lambda name, error: fatal.append((name, error)),
    )
    flusher.tell(Flush(10))
    wait_until(lambda: fatal, what="fatal handler called")
    assert fatal[0][0] == "FlusherActor"
    assert isinstance(fatal[0][1], OSError)
    wait_until(lambda: not flusher.is_alive(), what="failed actor stopped")


def test_a_checkpoint_fsyncs_queue_files_off_the_dispatch_path(tmp_path: Path) -> None:
    """While the file syncer fsyncs a checkpoint's ConsumeQueue files (held here), the
    ReputActor goes on dispatching and answering producers; the checkpoint is saved only
    once those fsyncs ran (and the CommitLog is durable below it)."""
    config = small_cluster(tmp_path)
    group, node = config.node("n1")
    started = open_broker(config, group, node, hooks=BrokerHooks(manual_ticks=True))
    try:
        writer, marks = started.context.writer, started.context.published.marks
        append(writer, [topic_put_draft(TopicConfig("T", 4, 4), 1)]).wait()
        for queue in range(4):
            append(writer, [draft(b"before", queue_id=queue)]).wait()
        release = threading.Event()
        started.file_syncer.tell(SyncFiles(PendingSync([]), lambda: release.wait(10)))
        started.ticker.tick_once(now_ms=10_000)  # a checkpoint: its fsyncs wait in line
        during = [append(writer, [draft(b"during", queue_id=q)]).wait() for q in range(4)]
        assert [m[0].queue_offset for m in during] == [1, 1, 1, 1]
        assert marks.checkpointed.value == 0
        release.set()
        wait_until(lambda: marks.checkpointed.value > 0, what="the checkpoint")
        assert marks.checkpointed.value < marks.dispatched.value  # it predates "during"
    finally:
        started.stop()
