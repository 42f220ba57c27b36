"""FileSyncerActor: fsyncs the ConsumeQueue files of a checkpoint off the ReputActor's thread.

A checkpoint makes every ConsumeQueue file written since the last one durable: one fsync
per file, so with thousands of queues the ReputActor (which answers producers once their
entry is dispatched) would stall for all of them (measured by `bench.scale queues`: p99
per batch 10x at 1,000 queues). The ReputActor writes the units out and hands the list
here; this actor fsyncs them, then calls `then` (which asks the flusher to save the
checkpoint once the CommitLog is durable below it). It also replaces small whole files for
a thread that must not wait for their fsync (`SaveFile`: the Raft node's entry index
summary).

Owns: nothing but its thread. Must not: write into the CommitLog or the ConsumeQueues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.store.consume_queue import PendingSync
from dledgermq.store.fileio import atomic_write


@dataclass(frozen=True, slots=True)
class SyncFiles:
    pending: PendingSync
    then: Callable[[], None]


@dataclass(frozen=True, slots=True)
class SaveFile:
    """Replace `path` with `data` (a crash leaves the old or the new file)."""

    path: Path
    data: bytes


class FileSyncerActor(FailStopActor):
    def __init__(self, on_fatal: FatalHandler = exit_process) -> None:
        super().__init__(on_fatal)

    def on_receive(self, message: object) -> None:
        match message:
            case SyncFiles(pending, then):
                pending.run()
                then()
            case SaveFile(path, data):
                atomic_write(path, data)
            case _:
                raise AssertionError(f"unexpected message {message!r}")
