"""Group commit: one fsync covers every Flush that queued up while the previous one ran.

Method: a syncer that blocks inside its first fsync until released, so that requests pile
up in the flusher's inbox deterministically; then count fsyncs and check every waiter is
answered only after its offset is durable.
"""

from __future__ import annotations

from dledgermq.actors.flusher import Flush, FlusherActor, FlusherOptions, Truncated
from dledgermq.actors.published import Watermarks
from dledgermq.actors.ticker import Tick
from tests.conftest import wait_until
from tests.support import GatedSyncer


def test_one_fsync_serves_every_waiter_that_queued_during_the_previous_one() -> None:
    syncer = GatedSyncer()
    marks = Watermarks(0)
    written, flushed = marks.written, marks.flushed
    flusher = FlusherActor.start(
        syncer,
        marks=marks,
        options=FlusherOptions(interval_ms=None, start_offset=0),
    )
    try:
        done: list[tuple[int, int]] = []
        written.value = 10
        flusher.tell(Flush(10, lambda: done.append((10, flushed.value))))
        assert syncer.entered.wait(5)  # the first fsync is running and blocked
        written.value = 40
        for upto in (20, 30, 40):
            flusher.tell(Flush(upto, lambda upto=upto: done.append((upto, flushed.value))))
        syncer.release.set()
        wait_until(lambda: len(done) == 4, what="all flush waiters answered")
        assert syncer.calls == [(0, 10), (10, 40)]  # 4 waiters, 2 fsyncs
        assert all(durable >= upto for upto, durable in done)
    finally:
        syncer.release.set()
        flusher.stop()


def test_async_mode_flushes_on_ticks_only_when_something_was_written() -> None:
    syncer = GatedSyncer()
    syncer.release.set()
    marks = Watermarks(0)
    written, flushed = marks.written, marks.flushed
    flusher = FlusherActor.start(
        syncer,
        marks=marks,
        options=FlusherOptions(interval_ms=100, start_offset=0),
    )
    try:
        flusher.tell(Tick(1_000))
        written.value = 50
        flusher.tell(Tick(1_050))  # not due yet
        flusher.tell(Tick(1_100))
        wait_until(lambda: flushed.value == 50, what="tick flush")
        assert syncer.calls == [(0, 50)]
    finally:
        flusher.stop()


class CountingSyncer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def sync(self, start: int, end: int) -> None:
        assert start <= end, (start, end)
        self.calls.append((start, end))

    def close(self) -> None:
        pass


def test_a_flush_past_a_log_the_follower_cut_meanwhile_is_answered() -> None:
    """Regression (review): a Raft follower's writer ran ahead and cut its log below an
    earlier request's offset before the flusher reached it; the flusher asserted. The
    writer syncs before every cut, so the early request was met; what follows the cut is
    synced once `Truncated` lowered the watermark."""
    syncer = CountingSyncer()
    marks = Watermarks(0)
    flusher = FlusherActor.start(
        syncer, marks=marks, options=FlusherOptions(interval_ms=None, start_offset=0)
    )
    try:
        done: list[int] = []
        marks.written.value = 600  # wrote to 1000, synced, cut at 400, wrote to 600
        flusher.tell(Flush(1000, lambda: done.append(1000)))  # asked before the cut
        flusher.tell(Truncated(400))
        flusher.tell(Flush(600, lambda: done.append(600)))
        wait_until(lambda: done == [1000, 600])
        assert marks.flushed.value == 600
        assert syncer.calls[-1] == (400, 600)  # the bytes after the cut were synced
    finally:
        flusher.stop()
