"""Opening a broker's store: recover the CommitLog, check it against the checkpoint, and
re-dispatch what the checkpoint does not cover, before any actor starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dledgermq.broker.dispatch import Dispatcher, StoreOptions
from dledgermq.broker.handlers import broker_handlers
from dledgermq.broker.layout import NodeLayout
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.store.checkpoint import load_checkpoint
from dledgermq.store.commitlog import CommitLog, CommitLogReader, CommitLogSyncer
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.entry_start import (
    LogBounds,
    end_log_at_last_entry,
    load_entries,
    read_summary,
    resume_point,
)
from dledgermq.store.errors import CorruptCheckpoint, DamagedRecord, StoreDamaged

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveredStore:
    """The store after recovery: a complete log, durable, and dispatched to its end."""

    commitlog: CommitLog
    syncer: CommitLogSyncer
    dispatcher: Dispatcher
    entries: EntryLayout | None  # Raft mode: every entry of the log (`load_entries`).


def recover_store(
    config: ClusterConfig, group: BrokerGroupConfig, node: NodeConfig
) -> RecoveredStore:
    """Open the CommitLog (cutting a torn tail), make it durable, check the derived files
    against the checkpoint and re-dispatch what the checkpoint does not cover.

    Raises:
        StoreDamaged: the files contradict each other beyond what the log can repair.
        DamagedRecord: a fsynced record fails its checks (a replica repairs it, then
            recovers again); nothing was changed or started.
    """
    store = group.store
    layout = NodeLayout(config.node_dir(node.id))
    floor = durable_floor(layout)
    raft_mode = group.mode == "raft"
    summary = read_summary(layout.entry_summary) if raft_mode and store.restart_scan_bytes else None
    try:
        commitlog = CommitLog.open(
            layout.commitlog, store.segment_size_bytes, floor, resume_point(summary, floor)
        )
    except DamagedRecord as damage:
        if raft_mode and len(group.nodes) > 1:
            raise  # A peer has a copy.
        raise StoreDamaged(
            f"{damage}: fsynced CommitLog data below the checkpoint at {floor} is damaged or "
            "missing, and there is no replica to repair it from. Restore the node's files."
        ) from damage
    reader = CommitLogReader(layout.commitlog, store.segment_size_bytes)
    entries = None
    if raft_mode:
        bounds = LogBounds(
            layout.commitlog,
            commitlog.segments,
            commitlog.write_offset,
            floor,
            store.segment_size_bytes,
        )
        try:
            entries = load_entries(reader, summary, bounds)
        except DamagedRecord:
            reader.close()
            commitlog.close()
            raise
        end_log_at_last_entry(commitlog, entries)
    syncer = CommitLogSyncer(layout.commitlog, store.segment_size_bytes)
    # What recovery kept may sit only in the page cache (a killed process): make it durable
    # before it counts as flushed.
    syncer.sync(commitlog.min_offset, commitlog.write_offset)
    dispatcher = Dispatcher(
        group.name,
        layout,
        StoreOptions(
            store.cq_units_per_file, store.index_slots_per_file, store.index_entries_per_file
        ),
        reader,
        log_start=commitlog.min_offset,
        handlers=broker_handlers(store.delay_levels),
    )
    if dispatcher.dispatched_offset > commitlog.write_offset:
        # A checkpoint is written only once the log below it is fsynced, so this means
        # durable data was lost (disk fault, files removed): refuse rather than serve a
        # state that no longer matches the log.
        raise StoreDamaged(
            f"{layout.commitlog} ends at {commitlog.write_offset}, below the checkpoint at "
            f"{dispatcher.dispatched_offset}: fsynced CommitLog data is missing. Restore the "
            f"node's files, or delete {layout.checkpoint} and {layout.consume_queues} to "
            "rebuild them from the log that is left."
        )
    # A Raft node's tail may be uncommitted (to be truncated): it is dispatched once the
    # leader says it committed. Standalone, everything the log kept was acknowledged; a
    # master's log is its own writes (at worst not replicated), a slave's is all replicated.
    whole_log = group.mode in ("standalone", "master_slave")
    while whole_log and dispatcher.dispatched_offset < commitlog.write_offset:
        dispatcher.dispatch_upto(commitlog.write_offset)
    log.info(
        "recovered %s: commitlog [%d, %d), dispatched %d",
        node.id,
        commitlog.min_offset,
        commitlog.write_offset,
        dispatcher.dispatched_offset,
    )
    return RecoveredStore(commitlog, syncer, dispatcher, entries)


def durable_floor(layout: NodeLayout) -> int:
    """Where the log is known fsynced: the checkpoint (0 if it is missing or damaged)."""
    try:
        checkpoint = load_checkpoint(layout.checkpoint)
    except CorruptCheckpoint:
        return 0
    return 0 if checkpoint is None else checkpoint.dispatched_offset
