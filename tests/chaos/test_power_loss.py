"""Simulated power loss: a CommitLog cut back to its last sync recovers to exactly the
entries that were synced, and no further.

Method: a real CommitLog in tmp_path with the sync journal enabled for this process
(reset afterwards); entries are appended, some synced, more appended unsynced, then the
journal is applied and the log reopened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.power_loss import apply_power_loss
from dledgermq.store import fileio
from dledgermq.store.commitlog import CommitLog
from dledgermq.store.record import MessageDraft

SEGMENT = 8 * 1024


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sync.journal"
    fileio.enable_sync_journal(path)
    try:
        yield path
    finally:
        fd, fileio._journal_fd = fileio._journal_fd, None
        assert fd is not None
        import os

        os.close(fd)


def append(log: CommitLog, index: int) -> None:
    log.append_entry([MessageDraft("T", 0, b"x" * 1500)], term=1, index=index, store_timestamp_ms=1)


def test_power_loss_keeps_exactly_the_synced_entries(tmp_path: Path, journal: Path) -> None:
    directory = tmp_path / "commitlog"
    log = CommitLog.open(directory, SEGMENT)
    for index in range(1, 9):  # rolls a segment: sealed segments are synced on roll
        append(log, index)
    log.sync()
    synced_last = log.last_index
    for index in range(9, 15):  # not synced, except what a roll seals (rolls fdatasync)
        append(log, index)
    active_start = log.segments[-1]
    assert active_start > 0
    assert log.write_offset > active_start  # the active segment holds unsynced entries
    log.close()
    dropped = apply_power_loss(journal, directory)
    assert sum(dropped.values()) == log.write_offset - active_start
    reopened = CommitLog.open(directory, SEGMENT)
    assert reopened.write_offset == active_start  # everything sealed survives, no more
    assert synced_last <= reopened.last_index < 14
    reopened.close()


def test_files_untouched_since_the_journal_started_are_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "commitlog"
    log = CommitLog.open(directory, SEGMENT)
    for index in range(1, 4):
        append(log, index)
    log.close()  # never synced, but written before any journal existed
    journal = tmp_path / "late.journal"
    journal.write_text(f"start {2**62}\n")
    assert apply_power_loss(journal, directory) == {}
