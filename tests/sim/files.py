"""The simulator's file layer: real files in a scratch directory, and what reached the disk.

Why real files: the store (`CommitLog`, recovery, the reader, the hard state) is written
against `os` (pwrite, ftruncate, fdatasync, rename); driving it over its own calls keeps
the simulated node exactly the code a broker runs. The directory sits on tmpfs
(`/dev/shm`) where there is one, so an fsync costs microseconds.

Why a journal: a crash only loses what the process had not handed to the kernel, but a
power loss also loses what the kernel had not written back. The store reports every data
sync through `store/fileio.py`'s sync journal hook (the one `chaos/power_loss.py` reads
after a SIGKILL); `SyncJournal` takes it over for the simulation and remembers, per file,
its size at its last sync. `power_loss` then cuts every CommitLog segment back to
somewhere between that size and its current one (unsynced bytes may or may not have been
written back, a prefix of them: a torn tail). The hard state needs no journal: it is
replaced with write-fsync-rename-fsync (`atomic_write`), so a saved one is durable.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dledgermq.store import fileio

_SEGMENT_NAME_DIGITS = 20


class SyncJournal:
    """Per file path, its size when it was last fsynced (by any node of the simulation)."""

    def __init__(self) -> None:
        self.synced: dict[str, int] = {}

    def record(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.synced[path] = os.fstat(fd).st_size

    def synced_size(self, path: Path) -> int:
        """0 for a file never synced (its creation is durable: the directory was fsynced)."""
        return self.synced.get(str(path), 0)


@contextmanager
def sync_journal() -> Iterator[SyncJournal]:
    """Route the store's sync journal hook to a `SyncJournal` while the block runs."""
    journal = SyncJournal()
    saved = fileio._journal  # The store's one fault-injection seam (chaos/ reads it too).
    fileio._journal = journal.record
    try:
        yield journal
    finally:
        fileio._journal = saved


@contextmanager
def scratch_root() -> Iterator[Path]:
    """A directory for one simulation's nodes, removed afterwards."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: fsyncs cost nothing
    root = Path(tempfile.mkdtemp(prefix="dledgermq-sim-", dir=base))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def segment_files(directory: Path) -> list[Path]:
    """The CommitLog segment files of `directory`, oldest first."""
    if not directory.is_dir():
        return []
    names = sorted(
        p.name
        for p in directory.iterdir()
        if len(p.name) == _SEGMENT_NAME_DIGITS and p.name.isdigit()
    )
    return [directory / name for name in names]


def power_loss(directory: Path, journal: SyncJournal, rng: random.Random) -> int:
    """Cut each segment of `directory` back to a size between its last sync and now;
    return how many unsynced bytes were lost."""
    lost = 0
    for path in segment_files(directory):
        size = path.stat().st_size
        synced = min(journal.synced_size(path), size)
        if size > synced:
            keep = rng.randint(synced, size)
            os.truncate(path, keep)
            lost += size - keep
    return lost


def cut_file(path: Path, size: int, journal: SyncJournal) -> None:
    """Cut `path` to `size` (a write torn by a crash); its sync no longer covers the cut."""
    os.truncate(path, size)
    key = str(path)
    if journal.synced.get(key, 0) > size:
        journal.synced[key] = size


def move_aside(directory: Path, keep: str) -> None:
    """What an operator does for a node stopped on `CommittedEntryConflict`: keep the hard
    state file `keep`, move the rest of the data directory aside (here: delete it)."""
    for path in directory.iterdir():
        if path.name == keep:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
