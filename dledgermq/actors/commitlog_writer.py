"""CommitLogWriterActor: the single writer of the CommitLog.

Standalone: appends one entry per producer batch, publishes the written offset, registers
the producer's reply with the ReputActor (which answers once the entry is dispatched, so
the answer carries final queue offsets), and asks for durability: a `Flush` in sync mode,
a direct `Confirm` in async mode.

Replicated (`WriteRaw`): writes entries already encoded at their places (by the Raft
node's `EntryLayout`), after cutting a divergent tail, saves the Raft hard state, and
reports durability in the order of the requests.

Durability reports: when nothing else waits (the inbox is empty and every report handed
to the flusher was made), the writer fsyncs and reports itself, which saves a thread
hand-off on every one-at-a-time request; otherwise the flusher does, and one fsync of its
covers every write that queued up meanwhile (group commit).

Master/slave: a master tells its HA master actor about every write (`Written`), and in
`ha_mode: sync` hands the confirm to it (`AwaitSlave`) instead of confirming itself; the
producer's reply is wrapped so that an entry no slave acknowledged in time is answered
SLAVE_NOT_AVAILABLE. A slave appends what its master streamed (`AppendReplicated`) only
if it continues this log exactly, and refuses it otherwise (peer input never stops us).

Also enforces the disk high-water mark and retention.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pykka

from dledgermq.actors.flusher import Flush, Truncated
from dledgermq.actors.ha_master import AwaitSlave, SyncReply, Written
from dledgermq.actors.published import Watermarks
from dledgermq.actors.reput import Appended, Confirm, DeleteBefore
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.broker.dispatch import WrittenEntry
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.errors import DiskFull, InvalidMessage, MessageTooLarge
from dledgermq.replication.master_slave import LogMismatch, LogTail, check_continues, tail_after
from dledgermq.store.commitlog import CommitLog
from dledgermq.store.disk import disk_used_ratio
from dledgermq.store.entry_layout import LogWrite
from dledgermq.store.errors import CorruptRecord, EntryTooLarge
from dledgermq.store.hard_state import StoredHardState, save_hard_state
from dledgermq.store.record import MessageDraft

DISK_CHECK_INTERVAL_MS = 1_000


@dataclass(frozen=True, slots=True)
class Append:
    drafts: tuple[MessageDraft, ...]
    reply: ReplyTo[Any]


@dataclass(frozen=True, slots=True)
class WriteRaw:
    """Apply `write` (cut, then append encoded entries), save `hard_state`, then call
    `on_durable` (on the writer's or the flusher's thread) once the write is fsynced, or,
    without `fsync`, once every earlier request was reported (majority_memory: written is
    enough)."""

    write: LogWrite
    hard_state: StoredHardState | None
    fsync: bool
    on_durable: Callable[[], None]


@dataclass(frozen=True, slots=True)
class AppendReplicated:
    """Append whole entries a master streamed for position `offset` (master/slave mode).

    Written only if `offset` is where this log ends, the first entry follows its last one,
    and `CommitLog.append_raw` accepts every record (CRC, place, order). Then
    `on_stored(tail)` is called (on the flusher's thread) once written, and fsynced with
    `fsync`; else `on_refused(reason)` at once, with nothing written.
    """

    offset: int
    data: bytes
    fsync: bool
    on_stored: Callable[[LogTail], None]
    on_refused: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RepairRecord:
    """Overwrite the damaged record at `offset` with a peer's verified copy, fdatasync, then
    call `on_done(written)` (False: retention removed the segment meanwhile)."""

    offset: int
    data: bytes
    on_done: Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class WriterOptions:
    sync_flush: bool
    file_reserved_ms: int
    retention_check_interval_ms: int
    disk_high_water_ratio: float
    disk_clean_ratio: float  # 0: no forced clean
    # How full the CommitLog's disk is (0..1); injected so tests can fill a disk.
    disk_used_ratio: Callable[[Path], float] = disk_used_ratio
    hard_state_path: Path | None = None  # Raft mode: where `WriteRaw.hard_state` goes.
    ha_sync: bool = False  # A master in ha_mode sync: a slave's ack gates the confirm.


class CommitLogWriterActor(FailStopActor):
    def __init__(  # noqa: PLR0913 - the collaborators node.py wires in
        self,
        commitlog: CommitLog,
        *,
        reput: pykka.ActorRef[Any],
        flusher: pykka.ActorRef[Any],
        marks: Watermarks,
        options: WriterOptions,
        on_fatal: FatalHandler = exit_process,
        ha_master: pykka.ActorRef[Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(on_fatal)
        self._clock = clock
        assert ha_master is not None or not options.ha_sync, "ha_sync needs the HA master"
        self._log = commitlog
        self._ha_master = ha_master
        self._reput = reput
        self._flusher = flusher
        self._written = marks.written
        self._synced = marks.synced
        # Reports handed to the flusher, and how many it made (counted on its thread, the
        # only one that writes it): equal means no report is pending there.
        self._flushes_asked = 0
        self._flushes_answered = 0
        self._checkpointed = marks.checkpointed
        self._options = options
        self._disk_full = False
        self._disk_full_mark = marks.disk_full
        # Raft writes that arrived while the disk was full, kept in order until it is not:
        # refusing one would break the order of durability reports, and writing it could
        # fail the process. Meanwhile this node acknowledges nothing (it holds no vote).
        self._held_raw: deque[WriteRaw] = deque()
        self._last_disk_check_ms = -DISK_CHECK_INTERVAL_MS
        self._last_retention_ms = 0
        marks.written.value = commitlog.write_offset

    def on_receive(self, message: object) -> None:
        match message:
            case Append(drafts, reply):
                self._append(drafts, reply)
            case WriteRaw() as raw:
                if self._disk_full or self._held_raw:
                    self._held_raw.append(raw)
                else:
                    self._write_raw(raw)
            case AppendReplicated() as push:
                self._append_replicated(push)
            case RepairRecord(offset, data, on_done):
                on_done(self._log.repair(offset, data))
            case Tick(now_ms):
                self._tick(now_ms)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _append(self, drafts: tuple[MessageDraft, ...], reply: ReplyTo[Any]) -> None:
        if self._disk_full:
            reply.fail(DiskFull("disk usage is above the high-water mark; writes are refused"))
            return
        before = self._log.write_offset
        store_timestamp_ms = self._clock.wall_ms()
        try:
            result = self._log.append_entry(
                list(drafts),
                term=0,
                index=self._log.last_index + 1,
                store_timestamp_ms=store_timestamp_ms,
            )
        except EntryTooLarge as exc:
            reply.fail(MessageTooLarge(str(exc)))
            return
        except (ValueError, OverflowError, struct.error) as exc:
            # Encoding failed before anything was written (e.g. a string that is not valid
            # Unicode): the request is bad, the log is untouched.
            reply.fail(InvalidMessage(f"message cannot be stored: {exc}"))
            return
        self._written.value = result.end_offset
        entry = WrittenEntry(before, drafts, result.positions, store_timestamp_ms)
        gated = SyncReply(reply) if self._options.ha_sync else None
        tell(self._reput, Appended(result.start_offset, gated or reply, entry))
        if self._ha_master is not None:
            tell(self._ha_master, Written(result.end_offset))
        self._confirm(result.end_offset, gated)

    def _confirm(self, end_offset: int, gated: SyncReply | None) -> None:
        """Move the confirm offset over a new entry once it is flushed (sync flush) and, in
        ha_mode sync (`gated`), acknowledged by a slave: the HA master confirms then."""
        if gated is not None:
            assert self._ha_master is not None
            done = partial(tell, self._ha_master, AwaitSlave(end_offset, gated))
        else:
            done = partial(tell, self._reput, Confirm(end_offset))
        if self._options.sync_flush:
            self._after_durable(end_offset, done)
        else:
            done()

    def _after_durable(self, upto: int, on_done: Callable[[], None]) -> None:
        """Call `on_done` once the log is fsynced below `upto` (0: no fsync) and every earlier
        request was reported: here and now if nothing else waits, else by the flusher."""
        if self._flushes_answered == self._flushes_asked and self.actor_inbox.empty():
            if upto:
                self._log.sync()  # Sealed segments were synced when sealed.
                self._synced.value = self._log.write_offset
            on_done()
            return
        self._flushes_asked += 1
        tell(self._flusher, Flush(upto, partial(self._flush_answered, on_done)))

    def _flush_answered(self, on_done: Callable[[], None]) -> None:  # The flusher's thread.
        on_done()
        self._flushes_answered += 1

    def _write_raw(self, raw: WriteRaw) -> None:
        write = raw.write
        if write.cut_offset is not None:
            # Earlier requests may still wait for the flusher: make them durable before
            # any of it is cut, so that their durability reports (and the acknowledgements
            # they release) are true when they are answered.
            self._log.sync()
            self._log.truncate(write.cut_offset)
            self._written.value = write.cut_offset
            self._synced.value = min(self._synced.value, write.cut_offset)
            tell(self._flusher, Truncated(write.cut_offset))
        if write.local:
            self._log.append_encoded(write.data, write.spans)
        elif write.data:
            self._log.append_raw(write.data)
        self._written.value = self._log.write_offset
        got = (self._log.write_offset, self._log.last_term, self._log.last_index)
        if got != (write.end_offset, write.last_term, write.last_index):
            # The bytes hold other entries than the layout placed: never go on from here.
            raise CorruptRecord(f"log ends at {got}, layout expected {write}")
        if raw.hard_state is not None:
            assert self._options.hard_state_path is not None, "hard state outside Raft mode"
            save_hard_state(self._options.hard_state_path, raw.hard_state)
        self._after_durable(self._log.write_offset if raw.fsync else 0, raw.on_durable)

    def _append_replicated(self, push: AppendReplicated) -> None:
        log = self._log
        if self._disk_full:  # The slave keeps serving reads; the master sees it lag.
            push.on_refused("disk usage is above the high-water mark")
            return
        try:
            check_continues(
                push.data, push.offset, write_offset=log.write_offset, last_index=log.last_index
            )
            result = log.append_raw(push.data)
        except (LogMismatch, CorruptRecord, EntryTooLarge) as exc:
            push.on_refused(str(exc))
            return
        self._written.value = log.write_offset
        tail = tail_after(push.data, result.positions[-1], log.last_index)
        upto = tail.end_offset if push.fsync else 0  # 0: answer in order, without an fsync.
        self._after_durable(upto, partial(push.on_stored, tail))

    def _tick(self, now_ms: int) -> None:
        if now_ms - self._last_disk_check_ms < DISK_CHECK_INTERVAL_MS:
            return
        self._last_disk_check_ms = now_ms
        ratio = self._options.disk_used_ratio(self._log.directory)
        self._disk_full = ratio >= self._options.disk_high_water_ratio
        self._disk_full_mark.value = self._disk_full
        while self._held_raw and not self._disk_full:
            self._write_raw(self._held_raw.popleft())
        force = 0 < self._options.disk_clean_ratio <= ratio
        if force or now_ms - self._last_retention_ms >= self._options.retention_check_interval_ms:
            self._last_retention_ms = now_ms
            deleted = self._log.delete_expired(
                self._clock.wall_ms(),
                self._options.file_reserved_ms,
                force=force,
                # Recovery replays the log from the checkpoint (which is never past what
                # consumers can see): those segments must survive.
                protect_from=self._checkpointed.value,
            )
            if deleted:
                tell(self._reput, DeleteBefore(self._log.min_offset))

    def on_stop(self) -> None:
        self._log.close()
