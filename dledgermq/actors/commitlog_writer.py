"""CommitLogWriterActor: the single writer of the CommitLog.

Standalone: appends one entry per producer batch, publishes the written offset, registers
the producer's reply with the ReputActor (which answers once the entry is dispatched, so
the answer carries final queue offsets), and asks for durability: a `Flush` in sync mode,
a direct `Confirm` in async mode.

Replicated (`WriteRaw`): writes entries already encoded at their places (by the Raft
node's `EntryLayout`), after cutting a divergent tail, saves the Raft hard state, and
reports durability through the flusher so that reports keep the order of the requests.

Also enforces the disk high-water mark and retention.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pykka

from dledgermq.actors.flusher import Flush, Truncated
from dledgermq.actors.published import Watermarks
from dledgermq.actors.reput import Appended, Confirm, DeleteBefore
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.broker.dispatch import WrittenEntry
from dledgermq.errors import DiskFull, InvalidMessage, MessageTooLarge
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
    `on_durable` (on the flusher's thread) once the write is fsynced, or, without `fsync`,
    once every earlier request was reported (majority_memory: written is enough)."""

    write: LogWrite
    hard_state: StoredHardState | None
    fsync: bool
    on_durable: Callable[[], None]


@dataclass(frozen=True, slots=True)
class WriterOptions:
    sync_flush: bool
    file_reserved_ms: int
    retention_check_interval_ms: int
    disk_high_water_ratio: float
    disk_clean_ratio: float
    # How full the CommitLog's disk is (0..1); injected so tests can fill a disk.
    disk_used_ratio: Callable[[Path], float] = disk_used_ratio
    hard_state_path: Path | None = None  # Raft mode: where `WriteRaw.hard_state` goes.


class CommitLogWriterActor(FailStopActor):
    def __init__(
        self,
        commitlog: CommitLog,
        *,
        reput: pykka.ActorRef[Any],
        flusher: pykka.ActorRef[Any],
        marks: Watermarks,
        options: WriterOptions,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._log = commitlog
        self._reput = reput
        self._flusher = flusher
        self._written = marks.written
        self._checkpointed = marks.checkpointed
        self._options = options
        self._disk_full = False
        self._last_disk_check_ms = -DISK_CHECK_INTERVAL_MS
        self._last_retention_ms = 0
        marks.written.value = commitlog.write_offset

    def on_receive(self, message: object) -> None:
        match message:
            case Append(drafts, reply):
                self._append(drafts, reply)
            case WriteRaw() as raw:
                self._write_raw(raw)
            case Tick(now_ms):
                self._tick(now_ms)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _append(self, drafts: tuple[MessageDraft, ...], reply: ReplyTo[Any]) -> None:
        if self._disk_full:
            reply.fail(DiskFull("disk usage is above the high-water mark; writes are refused"))
            return
        before = self._log.write_offset
        store_timestamp_ms = time.time_ns() // 1_000_000
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
        tell(self._reput, Appended(result.start_offset, reply, entry))
        if self._options.sync_flush:
            confirm = Confirm(result.end_offset)
            tell(self._flusher, Flush(result.end_offset, partial(tell, self._reput, confirm)))
        else:
            tell(self._reput, Confirm(result.end_offset))

    def _write_raw(self, raw: WriteRaw) -> None:
        write = raw.write
        if write.cut_offset is not None:
            self._log.truncate(write.cut_offset)
            self._written.value = write.cut_offset
            tell(self._flusher, Truncated(write.cut_offset))
        if write.data:
            self._log.append_raw(write.data)
            self._written.value = self._log.write_offset
        got = (self._log.write_offset, self._log.last_term, self._log.last_index)
        if got != (write.end_offset, write.last_term, write.last_index):
            # The bytes hold other entries than the layout placed: never go on from here.
            raise CorruptRecord(f"log ends at {got}, layout expected {write}")
        if raw.hard_state is not None:
            assert self._options.hard_state_path is not None, "hard state outside Raft mode"
            save_hard_state(self._options.hard_state_path, raw.hard_state)
        tell(self._flusher, Flush(self._log.write_offset if raw.fsync else 0, raw.on_durable))

    def _tick(self, now_ms: int) -> None:
        if now_ms - self._last_disk_check_ms < DISK_CHECK_INTERVAL_MS:
            return
        self._last_disk_check_ms = now_ms
        ratio = self._options.disk_used_ratio(self._log.directory)
        self._disk_full = ratio >= self._options.disk_high_water_ratio
        force = ratio >= self._options.disk_clean_ratio
        if force or now_ms - self._last_retention_ms >= self._options.retention_check_interval_ms:
            self._last_retention_ms = now_ms
            deleted = self._log.delete_expired(
                time.time_ns() // 1_000_000,
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
