"""FlusherActor: owns the CommitLog syncer and the flushed offset; group commit.

A `Flush(upto)` that is already covered is answered without I/O. Otherwise the flusher
fsyncs *everything written so far* (the writer publishes that watermark), so every
request that queued up during one fsync is then covered by it: RocketMQ's
GroupCommitService without a lock. In async mode a tick flushes every flush_interval_ms.
A write that nothing else waits behind is synced by the writer itself (`Watermarks.synced`);
the flusher counts that as durable too (`Watermarks.durable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dledgermq.actors.published import Watermarks
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.actors.ticker import Tick
from dledgermq.store.commitlog import CommitLogSyncer


@dataclass(frozen=True, slots=True)
class Flush:
    """Make the CommitLog durable below `upto`, then call `on_done` (on this thread)."""

    upto: int
    on_done: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Truncated:
    """The writer cut the log at `offset` (a Raft follower dropping an uncommitted tail):
    what it writes there next is new, so the flushed watermark must not cover it."""

    offset: int


@dataclass(frozen=True, slots=True)
class FlusherOptions:
    interval_ms: int | None  # None: sync mode, flush only on request.
    start_offset: int  # Everything below it is known durable at start.


class FlusherActor(FailStopActor):
    def __init__(
        self,
        syncer: CommitLogSyncer,
        *,
        marks: Watermarks,
        options: FlusherOptions,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._syncer = syncer
        self._marks = marks
        self._written = marks.written
        self._flushed = marks.flushed
        self._interval_ms = options.interval_ms
        self._last_flush_ms = 0
        self.fsyncs = 0  # Counted for tests and /status: proves group commit shares fsyncs.
        marks.flushed.value = options.start_offset

    def on_receive(self, message: object) -> None:
        match message:
            case Flush(upto, on_done):
                if self._marks.durable < upto:
                    self._sync()
                # Still below `upto` only if a Raft follower cut the log below it since the
                # request: the writer made everything durable before that cut, so the
                # request was met then (and what was cut is no longer ours to report).
                if on_done is not None:
                    on_done()
            case Truncated(offset):
                self._flushed.value = min(self._flushed.value, offset)
            case Tick(now_ms):
                due = (
                    self._interval_ms is not None
                    and now_ms - self._last_flush_ms >= self._interval_ms
                )
                if due:
                    self._last_flush_ms = now_ms
                    if self._written.value > self._marks.durable:
                        self._sync()
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _sync(self) -> None:
        target = self._written.value
        # `written` may be below `flushed` for a moment after a cut (its `Truncated` is
        # still queued): sync from the lower one, and never claim what is not written.
        self._syncer.sync(min(self._marks.durable, target), target)
        self.fsyncs += 1
        self._flushed.value = target

    def on_stop(self) -> None:
        if self._written.value > self._marks.durable:
            self._sync()
        self._syncer.close()
