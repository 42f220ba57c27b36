"""Simulated power loss: cut a killed node's CommitLog back to what had reached the disk.

A SIGKILL alone loses nothing the process wrote (the page cache survives), so it cannot
show that an acknowledged message was really fsynced. The broker processes of a chaos run
record every data sync in a journal (`DLEDGERMQ_SYNC_JOURNAL`, see `store/fileio.py`);
after killing a node the runner calls `apply_power_loss`, which truncates every CommitLog
segment to the size it had at its last sync. A segment written since the journal started
but never synced loses everything. Files the journal never saw and that were not written
since it started are left alone (they were made durable by an earlier incarnation).

Only CommitLog segments are cut: term and vote, checkpoints and the derived files are
written with fsync + atomic rename, or rebuilt from the CommitLog past the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Journal:
    started_ns: int
    synced: dict[Path, int]  # file -> size at its last sync


def read_journal(path: Path) -> Journal:
    started_ns = 0
    synced: dict[Path, int] = {}
    for line in path.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "start":
            started_ns = started_ns or int(rest)
        elif kind == "sync":
            size, _, name = rest.partition(" ")
            synced[Path(name)] = int(size)
    return Journal(started_ns, synced)


def apply_power_loss(journal_path: Path, commitlog_dir: Path) -> dict[str, int]:
    """Cut every segment in `commitlog_dir` to its last synced size (the node must be dead).

    Returns:
        Bytes dropped per segment file name (only files that lost something).
    """
    journal = read_journal(journal_path) if journal_path.exists() else Journal(0, {})
    dropped: dict[str, int] = {}
    for segment in sorted(commitlog_dir.iterdir()):
        if not segment.name.isdigit():
            continue
        stat = segment.stat()
        keep = journal.synced.get(segment.resolve())
        if keep is None:
            if not journal.started_ns or stat.st_mtime_ns < journal.started_ns:
                continue  # untouched since an earlier incarnation made it durable
            keep = 0
        if stat.st_size > keep:
            with segment.open("r+b") as file:
                file.truncate(keep)
            dropped[segment.name] = stat.st_size - keep
    os.sync()
    return dropped
