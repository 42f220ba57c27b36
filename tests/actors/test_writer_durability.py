"""Who reports a Raft write durable: the writer itself when nothing else waits (one thread
hand-off fewer per one-at-a-time request), else the flusher (one fsync for every write
that queued up: group commit). Either way the reports keep the order of the writes.

Method: a real CommitLog and writer; the flusher's syncer blocks in its first fsync until
released, and the writer's disk probe blocks on a tick until released, so that writes
queue in the writer's inbox deterministically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pykka
import pytest

from dledgermq.actors.commitlog_writer import CommitLogWriterActor, WriteRaw, WriterOptions
from dledgermq.actors.flusher import Flush, FlusherActor, FlusherOptions
from dledgermq.actors.published import Watermarks
from dledgermq.actors.ticker import Tick
from dledgermq.store.commitlog import CommitLog
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.record import MessageDraft
from tests.conftest import wait_until
from tests.support import GatedSyncer

SEGMENT = 1 << 20


class GatedDisk:
    """The writer's disk probe: blocks the writer's thread (on a tick) until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: Path) -> float:
        self.entered.set()
        assert self.release.wait(10)
        return 0.0


@dataclass
class Writer:
    actor: pykka.ActorRef[CommitLogWriterActor]
    flusher: pykka.ActorRef[FlusherActor]
    syncer: GatedSyncer
    disk: GatedDisk
    marks: Watermarks
    layout: EntryLayout
    reports: list[tuple[int, str]]

    def write(self, index: int) -> None:
        """Tell the writer to append Raft entry `index`; its report lands in `reports`."""
        data = self.layout.encode_batch(
            [MessageDraft("T", 0, b"m%d" % index)], term=1, index=index, store_timestamp_ms=1
        ).data
        write = self.layout.lay_out(None, [(1, index, data)])
        self.actor.tell(WriteRaw(write, None, True, self._reporter(index)))

    def _reporter(self, index: int) -> Callable[[], None]:
        def report() -> None:
            self.reports.append((index, threading.current_thread().name))

        return report


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    log = CommitLog.open(tmp_path, SEGMENT)
    marks = Watermarks(log.write_offset)
    syncer, disk = GatedSyncer(), GatedDisk()
    flusher = FlusherActor.start(
        syncer, marks=marks, options=FlusherOptions(interval_ms=None, start_offset=0)
    )
    actor = CommitLogWriterActor.start(
        log,
        reput=flusher,  # never told anything on the Raft path
        flusher=flusher,
        marks=marks,
        options=WriterOptions(
            sync_flush=True,
            file_reserved_ms=3_600_000,
            retention_check_interval_ms=3_600_000,
            disk_high_water_ratio=0.9,
            disk_clean_ratio=0.0,
            disk_used_ratio=disk,
        ),
    )
    layout = EntryLayout.rebuild([], SEGMENT, start_offset=0)
    yield Writer(actor, flusher, syncer, disk, marks, layout, [])
    syncer.release.set()
    disk.release.set()
    actor.stop()
    flusher.stop()


def test_a_write_with_nothing_else_waiting_is_synced_and_reported_by_the_writer(
    writer: Writer,
) -> None:
    writer.write(1)
    wait_until(lambda: writer.reports, what="the write reported durable")
    [(index, thread)] = writer.reports
    assert index == 1
    assert thread.startswith("CommitLogWriterActor")
    assert writer.syncer.calls == []  # the flusher did nothing
    assert writer.marks.synced.value == writer.layout.end_offset == writer.marks.written.value
    assert writer.marks.durable == writer.layout.end_offset


def test_writes_that_queue_up_go_to_the_flusher_and_are_reported_in_order(
    writer: Writer,
) -> None:
    writer.actor.tell(Tick(10_000))  # the writer blocks in its disk check
    assert writer.disk.entered.wait(5)
    for index in (1, 2, 3):
        writer.write(index)
    writer.disk.release.set()
    # Write 1 had 2 and 3 behind it: the flusher syncs (and blocks); 2 and 3 must wait for
    # its report, or they could be reported before 1.
    assert writer.syncer.entered.wait(5)
    wait_until(lambda: writer.marks.written.value == writer.layout.end_offset)
    assert writer.reports == []
    writer.syncer.release.set()
    wait_until(lambda: len(writer.reports) == 3, what="three reports")
    assert [index for index, _ in writer.reports] == [1, 2, 3]
    assert all(thread.startswith("FlusherActor") for _, thread in writer.reports)
    assert writer.marks.synced.value == 0  # the writer synced nothing itself
    # Nothing pending any more once the flusher finished counting the third report (a
    # message behind it in its inbox runs after that): the next write is the writer's own.
    counted = threading.Event()
    writer.flusher.tell(Flush(0, counted.set))
    assert counted.wait(5)
    writer.write(4)
    wait_until(lambda: len(writer.reports) == 4, what="the fourth report")
    assert writer.reports[3][1].startswith("CommitLogWriterActor")
    assert writer.marks.synced.value == writer.layout.end_offset
