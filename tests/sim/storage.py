"""One simulated node's storage: the broker's real Raft log adapter over real files.

Why: the Raft simulator alone proves the core; the bugs that stop a broker also live
between the core and the disk: `CommitLogRaftLog` (replication/raft_log.py) laying
entries out at their CommitLog offsets (`EntryLayout`), the writer cutting and appending
them (`CommitLogWriterActor`), recovery cutting a torn tail, the hard state file. The
`CommittedEntryConflict` bug showed there as a node that fail-stopped on a layout
mismatch forever, and only a slow chaos run found it.

Method: `StorageDisk` offers the simulator what `SimDisk` does (`persist`, `complete`,
`crash`, the written log for the durability check) and runs the broker's code for it,
composed as `replication/raft_member.py` and `node.py` compose it, without threads:

- the adapter's `persist` lays a Ready out and tells the writer a `WriteRaw`; the writer's
  mailbox here is a queue that the simulation empties after a seeded delay, calling the
  real `CommitLogWriterActor.on_receive` (never started: no thread), which writes, cuts,
  saves the hard state and, in `majority_fsync`, fsyncs; its `Persisted` report reaches
  the driver like the Raft node actor's inbox would;
- in `majority_memory` the writer reports once written; a background flush (the
  flusher's interval) fsyncs now and then, and a power loss cuts each file back to
  somewhere past its last fsync (`files.power_loss`);
- a crash loses the writer's queue; the oldest write may be torn (written, then cut
  inside its bytes, its hard state not saved); restart recovers the directory as a broker
  does (`CommitLog.open`, the entry index rebuilt by a scan, the hard state loaded) and
  starts the core from the adapter's `mirror`;
- the ReputActor is a recorder: commits arrive as `Appended` (a proposal's reply) and
  `Confirm` (the confirm offset, which must never go back).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dledgermq.actors.commitlog_writer import CommitLogWriterActor, WriteRaw, WriterOptions
from dledgermq.actors.published import Watermarks
from dledgermq.actors.raft_node import Persisted, PersistRequest
from dledgermq.actors.reput import Appended, Confirm
from dledgermq.raft.log import RaftLog
from dledgermq.raft.types import Entry, HardState, Index
from dledgermq.replication.raft_log import CommitLogRaftLog
from dledgermq.store.commitlog import CommitLog
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.entry_start import end_log_at_last_entry, rebuild_entries
from dledgermq.store.errors import CorruptRecord
from dledgermq.store.hard_state import load_hard_state
from dledgermq.store.reader import CommitLogReader

from . import files
from .harness import DiskOptions

HARD_STATE = "hard_state"


@dataclass
class StorageOptions:
    """What a seed draws for the store: the durability mode, a segment size small enough
    that entries roll segments often, the background flush interval, and how many
    applied entries the core keeps in memory (None: all; else older ones are read back
    from the CommitLog through the adapter)."""

    durability: str = "majority_fsync"  # or "majority_memory"
    segment_size: int = 4096
    flush_every_ticks: int = 10
    compact_keep: int | None = None

    @property
    def fsync(self) -> bool:
        return self.durability == "majority_fsync"


class Mailbox:
    """A stand-in for an actor's ref: `tell` keeps the message for the simulation (or
    hands it to `on_tell`); nothing runs on another thread."""

    def __init__(self, on_tell: Callable[[object], None] | None = None) -> None:
        self.messages: list[object] = []
        self._on_tell = on_tell

    def tell(self, message: object) -> None:
        if self._on_tell is not None:
            self._on_tell(message)
        else:
            self.messages.append(message)


@dataclass
class _Queued:
    done_tick: int
    raw: WriteRaw
    request: PersistRequest


@dataclass
class _Store:
    """What one incarnation of the node has open."""

    commitlog: CommitLog
    reader: CommitLogReader
    writer: CommitLogWriterActor
    raft_log: CommitLogRaftLog
    confirmed: int = 0
    durable: list[Persisted] = field(default_factory=list)

    def close(self) -> None:
        self.commitlog.close()
        self.reader.close()


class StorageDisk:
    """The real store of one node in a scratch directory, driven tick by tick."""

    def __init__(
        self,
        directory: Path,
        rng: random.Random,
        options: DiskOptions,
        storage: StorageOptions,
        journal: files.SyncJournal,
    ) -> None:
        self.directory = directory
        self.options = options
        self.storage = storage
        self.now = 0
        self.log: list[Entry] = []  # The written log's (term, index), for the cluster's checks.
        self._rng = rng
        self._journal = journal
        self._queue: deque[_Queued] = deque()
        self._store: _Store | None = None
        self._persisting: PersistRequest | None = None  # The request being laid out.
        self._reput = Mailbox(self._on_reput)
        self._next_flush = 0

    @property
    def commitlog_dir(self) -> Path:
        return self.directory / "commitlog"

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def confirmed(self) -> int:
        """The confirm offset this incarnation told the ReputActor."""
        return self._store.confirmed if self._store is not None else 0

    # -- start -------------------------------------------------------------------------

    def boot(self) -> tuple[HardState, RaftLog, CommitLogRaftLog]:
        """Recover the directory as a broker does; the core's hard state and log."""
        assert self._store is None, "boot twice without a crash"
        segment_size = self.storage.segment_size
        commitlog = CommitLog.open(self.commitlog_dir, segment_size)
        commitlog.sync()  # What recovery kept may sit only in the page cache (node.py).
        reader = CommitLogReader(self.commitlog_dir, segment_size)
        layout: EntryLayout = rebuild_entries(
            reader, commitlog.min_offset, commitlog.write_offset, segment_size
        )
        end_log_at_last_entry(commitlog, layout)  # As node/recovery.py does (seed 43).
        writer = CommitLogWriterActor(
            commitlog,
            reput=self._reput,  # type: ignore[arg-type]
            flusher=Mailbox(),  # type: ignore[arg-type]
            marks=Watermarks(commitlog.write_offset),
            options=WriterOptions(
                sync_flush=True,
                file_reserved_ms=0,
                retention_check_interval_ms=10**12,
                disk_high_water_ratio=2.0,
                disk_clean_ratio=0.0,
                disk_used_ratio=lambda _path: 0.0,
                hard_state_path=self.directory / HARD_STATE,
            ),
        )
        raft_log = CommitLogRaftLog(
            layout,
            reader,
            writer=Mailbox(self._on_write),  # type: ignore[arg-type]
            reput=self._reput,  # type: ignore[arg-type]
            fsync=self.storage.fsync,
        )
        store = _Store(commitlog, reader, writer, raft_log)
        raft_log.node = Mailbox(store.durable.append)  # type: ignore[assignment]
        self._store = store
        entries = layout.entries
        self.log = [
            Entry(entries.term_at(i) or 0, i, None) for i in range(1, entries.last_index + 1)
        ]
        stored = load_hard_state(self.directory / HARD_STATE)
        hard_state = HardState(stored.term, stored.vote) if stored else HardState()
        return hard_state, raft_log.mirror(0), raft_log

    # -- the writer's mailbox ------------------------------------------------------------

    def persist(self, request: PersistRequest) -> None:
        """The driver's persist: the real adapter lays it out and tells the writer."""
        assert self._store is not None
        self._persisting = request
        self._store.raft_log.persist(request)  # Tells the writer: `_on_write`.
        self._persisting = None

    def _on_write(self, raw: object) -> None:
        assert isinstance(raw, WriteRaw), raw
        assert self._persisting is not None, "the writer is told only from `persist`"
        done = self.now + self._rng.randint(
            self.options.delay_ticks_min, self.options.delay_ticks_max
        )
        if self._queue:
            done = max(done, self._queue[-1].done_tick)
        self._queue.append(_Queued(done, raw, self._persisting))

    def complete(self, now: int) -> Persisted | None:
        """Run the writer over every write due by `now`; the last durability report."""
        store = self._store
        assert store is not None
        while self._queue and self._queue[0].done_tick <= now:
            queued = self._queue.popleft()
            store.writer.on_receive(queued.raw)
            self._apply_to_mirror(queued.request)
        if not self.storage.fsync and now >= self._next_flush:
            self._next_flush = now + self.storage.flush_every_ticks
            store.commitlog.sync()  # The flusher's interval flush.
        durable, store.durable[:] = store.durable[-1:], []
        return durable[0] if durable else None

    def _apply_to_mirror(self, request: PersistRequest) -> None:
        if request.truncate_from is not None:
            del self.log[request.truncate_from - 1 :]
        self.log.extend(Entry(e.term, e.index, None) for e in request.entries)

    def _on_reput(self, message: object) -> None:
        store = self._store
        assert store is not None
        match message:
            case Appended(reply=reply):
                reply.ok(None)  # The ReputActor answers once dispatched; here at once.
            case Confirm(offset=offset):
                assert offset >= store.confirmed, f"confirm offset went back: {offset}"
                store.confirmed = offset
            case _:
                raise AssertionError(f"unexpected message to the ReputActor: {message!r}")

    # -- faults ------------------------------------------------------------------------

    def crash(self, *, torn: bool) -> int:
        """The process dies: the writer's queue is lost, the oldest write maybe torn.
        Returns how many writes were lost."""
        store = self._store
        assert store is not None
        lost = len(self._queue)
        if torn and self._queue:
            self._tear(store, self._queue[0].raw)
        self._queue.clear()
        store.close()
        self._store = None
        return lost

    def _tear(self, store: _Store, raw: WriteRaw) -> None:
        """Write `raw` without its hard state and report, then cut the bytes it appended
        to the last segment somewhere (never what was there before it: a cut may have
        reopened an older segment, whose earlier entries are durable)."""
        try:
            store.writer.on_receive(replace(raw, hard_state=None, on_durable=lambda: None))
        except CorruptRecord:
            return  # The writer refused it (the node would stop): nothing more to tear.
        last = files.segment_files(self.commitlog_dir)[-1]
        last_start = int(last.name)
        begin = max(raw.write.start_offset, last_start)
        end = raw.write.end_offset
        if end > begin:
            files.cut_file(last, self._rng.randint(begin, end) - last_start, self._journal)

    def power_loss(self) -> int:
        """After `crash`: unsynced bytes of every segment may be lost (a torn tail).
        Returns the bytes lost."""
        assert self._store is None, "crash first"
        lost = files.power_loss(self.commitlog_dir, self._journal, self._rng)
        self.log = self._read_written_log()
        return lost

    def move_aside(self) -> None:
        """A node stopped on `CommittedEntryConflict` restarts as its error says: the hard
        state kept, the log gone."""
        assert self._store is None, "crash first"
        files.move_aside(self.directory, keep=HARD_STATE)
        self.log = []

    def _read_written_log(self) -> list[Entry]:
        """The entries the directory holds now (recovery cuts what a power loss tore)."""
        segment_size = self.storage.segment_size
        commitlog = CommitLog.open(self.commitlog_dir, segment_size)
        reader = CommitLogReader(self.commitlog_dir, segment_size)
        try:
            entries = rebuild_entries(
                reader, commitlog.min_offset, commitlog.write_offset, segment_size
            ).entries
            return [
                Entry(entries.term_at(i) or 0, i, None) for i in range(1, entries.last_index + 1)
            ]
        finally:
            commitlog.close()
            reader.close()

    def committed_bytes(self) -> bytes:
        """The CommitLog's bytes below the confirm offset (identical on every replica)."""
        data = b"".join(path.read_bytes() for path in files.segment_files(self.commitlog_dir))
        return data[: self.confirmed]


def term_of(log: list[Entry], index: Index) -> int | None:
    return log[index - 1].term if 0 < index <= len(log) else None
