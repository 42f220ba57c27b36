"""HAMasterActor: streams the master's CommitLog to its slaves and, in `ha_mode: sync`,
holds the confirm offset until a slave acknowledged (RocketMQ's HAService as one actor).

On a slave's report it checks that its log holds the slave's tail and restarts that
slave's stream there; it pushes whole entries (`replication/master_slave.py next_chunk`,
read through its own `CommitLogReader`) a bounded window ahead, and pushes again when the
writer reports a write (`Written`) or a flushed entry (`AwaitSlave`), an ack opens the
window, or on Tick.

It never pushes past the *flushed* offset: a slave holding bytes its master never
fsynced would diverge from it when the master loses power and comes back without them
(the chaos runner's master power loss found this: the slave then refused every push until
re-seeded). In sync flush those bytes were never acknowledged; in async flush they are the
documented loss of a dead master's unsynced tail. Replication trails the master's fsync:
at once in sync flush, by up to `flush_interval_ms` in async flush.

Sync mode: the writer hands over each flushed entry (`AwaitSlave`); the entry is confirmed
on the ReputActor once a slave acknowledged its end, or, after `sync_timeout_ms` (at once
when no slave has been heard for that long), confirmed anyway with its producer's reply
marked so that the producer gets SLAVE_NOT_AVAILABLE.

Owns: its reader, the per-slave `MasterLinks`, the `SyncWaiters`. Must not: write the log,
block, or fail because of what a slave sends (a problem with one slave stops pushes to
it until its next report and is logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from dledgermq.actors.published import Published, Watermarks
from dledgermq.actors.reput import Confirm
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.errors import SlaveNotAvailable
from dledgermq.replication.master_slave import (
    CHUNK_BYTES,
    PUSH_WINDOW,
    HAAck,
    HAFrame,
    HAPush,
    HAReport,
    HAStatus,
    LogMismatch,
    MasterLinks,
    Settled,
    SyncWaiters,
    check_tail,
    next_chunk,
    slave_views,
)
from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.reader import CommitLogReader

log = logging.getLogger(__name__)

# Hands a frame to the peer transport for a peer id; False if it could not (not running).
SendFrame = Callable[[int, HAFrame], bool]


@dataclass(frozen=True, slots=True)
class FromSlave:
    """A validated frame from slave `slave_id` (its peer id)."""

    slave_id: int
    frame: HAReport | HAAck


@dataclass(frozen=True, slots=True)
class Written:
    """The writer appended up to `end_offset`."""

    end_offset: int


@dataclass(frozen=True, slots=True)
class AwaitSlave:
    """Sync mode: confirm the entry ending at `end_offset` once a slave acknowledged it."""

    end_offset: int
    reply: SyncReply


class SyncReply:
    """A producer's reply in ha_mode sync; the ReputActor answers it at dispatch as usual.

    When the HA master gives up waiting for a slave it marks the reply *before* it tells the
    confirm that leads to the answer (pykka's inboxes order the two), so the producer of a
    message that is stored and visible but not replicated gets SLAVE_NOT_AVAILABLE.
    """

    __slots__ = ("_reply", "_unreplicated")

    def __init__(self, reply: ReplyTo[Any]) -> None:
        self._reply = reply
        self._unreplicated: str | None = None

    def mark_unreplicated(self, why: str) -> None:
        self._unreplicated = why

    def ok(self, value: Any) -> None:
        if self._unreplicated is None:
            self._reply.ok(value)
        else:
            self._reply.fail(SlaveNotAvailable(self._unreplicated))

    def fail(self, error: BaseException) -> None:
        self._reply.fail(error)


@dataclass(frozen=True, slots=True)
class HAMasterOptions:
    segment_size_bytes: int
    ha_mode: str  # "async" | "sync"
    sync_timeout_ms: int
    slave_names: dict[int, str]  # Peer id -> node id, for logs and /status.
    chunk_bytes: int = CHUNK_BYTES
    window: int = PUSH_WINDOW


class HAMasterActor(FailStopActor):
    def __init__(  # noqa: PLR0913 - the collaborators node.py wires in
        self,
        reader: CommitLogReader,
        *,
        log_end: int,
        marks: Watermarks,
        reput: pykka.ActorRef[Any],
        send: SendFrame,
        status: Published[HAStatus],
        options: HAMasterOptions,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._reader = reader
        self._log_end = log_end
        self._marks = marks
        self._reput = reput
        self._send = send
        self._status = status
        self._options = options
        self._links = MasterLinks(options.slave_names, window=options.window)
        self._waiters: SyncWaiters[SyncReply] = SyncWaiters(options.sync_timeout_ms)
        self._now_ms = 0
        self._publish()

    def on_receive(self, message: object) -> None:
        match message:
            case FromSlave(slave_id, HAReport() as report):
                self._report(slave_id, report)
            case FromSlave(slave_id, HAAck() as ack):
                if self._links.ack(slave_id, ack, now_ms=self._now_ms):
                    self._settle(self._waiters.ack(self._links.best_acked()))
                    self._pump(slave_id)
            case Written(end_offset):
                self._log_end = end_offset
                self._pump_all()
            case AwaitSlave(end_offset, reply):
                timeout_ms = self._options.sync_timeout_ms
                alive = self._links.alive(self._now_ms, silence_ms=timeout_ms)
                settled = self._waiters.add(
                    end_offset, reply, now_ms=self._now_ms, slaves_alive=alive
                )
                self._settle(settled, f"no slave has been heard for {timeout_ms} ms")
                self._pump_all()  # It was flushed before the writer handed it over.
            case Tick(now_ms):
                self._tick(now_ms)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _report(self, slave_id: int, report: HAReport) -> None:
        """Restart the slave's stream at its tail, if this log holds that tail."""
        problem = None
        try:
            check_tail(
                self._reader.read_bytes,
                report.tail,
                log_end=self._durable_end(),
                segment_size=self._options.segment_size_bytes,
            )
        except LogMismatch as exc:
            problem = f"{exc}; re-seed the slave (docs/ARCHITECTURE.md)"
        except OffsetGone:
            problem = f"its log ends at {report.tail.end_offset}, retired here; re-seed it"
        self._links.report(slave_id, report, now_ms=self._now_ms, verified=problem is None)
        if problem is not None:
            self._problem(slave_id, problem)
        self._settle(self._waiters.ack(self._links.best_acked()))
        self._pump(slave_id)
        self._publish()

    def _tick(self, now_ms: int) -> None:
        self._now_ms = now_ms
        if self._links.started_ms is None:
            self._links.started_ms = now_ms
        timeout_ms = self._options.sync_timeout_ms
        self._settle(
            self._waiters.expire(now_ms), f"no slave acknowledged it within {timeout_ms} ms"
        )
        self._pump_all()
        self._publish()

    def _durable_end(self) -> int:
        """Where pushes stop: the log's end, as far as it is fsynced here."""
        return min(self._log_end, self._marks.durable)

    def _pump_all(self) -> None:
        for slave_id in self._links.links:
            self._pump(slave_id)

    def _pump(self, slave_id: int) -> None:
        """Push whole entries to the slave until its window is full or it has everything."""
        links, link = self._links, self._links.links[slave_id]
        end = self._durable_end()
        while links.can_push(slave_id, end, self._now_ms):
            assert link.session is not None
            try:
                chunk = next_chunk(
                    self._reader.read_bytes,
                    link.cursor,
                    end,
                    segment_size=self._options.segment_size_bytes,
                    expect_index=link.expect_index,
                    max_bytes=self._options.chunk_bytes,
                )
            except (LogMismatch, CorruptRecord) as exc:
                self._problem(slave_id, f"its log diverges from this master's ({exc}); re-seed")
                return
            except OffsetGone:
                self._problem(
                    slave_id, f"needs offset {link.cursor}, which retention deleted here; re-seed"
                )
                return
            if chunk is None:
                return  # Nothing new yet.
            if not self._send(slave_id, HAPush(link.session, chunk.offset, chunk.data)):
                return  # The transport is not running yet: the slave reports again.
            links.pushed(slave_id, chunk)

    def _problem(self, slave_id: int, problem: str) -> None:
        if self._links.stall(slave_id, problem):
            name = self._options.slave_names.get(slave_id, slave_id)
            log.warning("slave %s: %s (no pushes until it reports again)", name, problem)

    def _settle(self, settled: Settled[SyncReply], why: str = "") -> None:
        """Mark the replies of unreplicated entries (`why` no slave acknowledged), then
        confirm: the ReputActor answers every settled producer once it dispatched."""
        for reply in settled.unreplicated:
            reply.mark_unreplicated(
                f"the message is stored on the master and visible to consumers, but {why}: "
                "it is NOT replicated (a master power loss may lose it); resending it would "
                "store it twice"
            )
        if settled.confirm is not None:
            tell(self._reput, Confirm(settled.confirm))

    def _publish(self) -> None:
        self._status.value = HAStatus(
            self._options.ha_mode,
            "master",
            slave_views(
                self._links,
                self._options.slave_names,
                now_ms=self._now_ms,
                silence_ms=self._options.sync_timeout_ms,
            ),
        )

    def on_stop(self) -> None:
        self._reader.close()
