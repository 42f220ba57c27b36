"""Small durable-file helpers: whole writes, exact reads, atomic replace, directory fsync.

Keeps no state, except the chaos suite's sync journal: when enabled
(`enable_sync_journal`, only ever by a process the chaos runner started), every data
sync appends `sync <size> <path>` to a journal, so that after a SIGKILL the runner can
cut each file back to what had reached the disk and so simulate a power loss
(`chaos/power_loss.py`). Every `OSError` propagates: the store is fail-stop, so a failed
write or fsync must crash the owner rather than be retried or logged away.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable
from pathlib import Path

_journal_fd: int | None = None


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) where there is one (Linux), else None (macOS)."""
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).syncfs  # Called without the GIL.
    return None


_syncfs = _load_syncfs()


def enable_sync_journal(path: Path) -> None:
    """Record every data sync of this process from now on (fault injection only)."""
    global _journal_fd  # noqa: PLW0603 - one process-wide switch, set once at start-up
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"start {time.time_ns()}\n".encode())
    _journal_fd = fd


def _journal(fd: int) -> None:
    journal = _journal_fd
    if journal is not None:
        size = os.fstat(fd).st_size
        name = os.readlink(f"/proc/self/fd/{fd}")
        os.write(journal, f"sync {size} {name}\n".encode())  # One O_APPEND write: atomic.


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """pwrite every byte of `data` at `offset` (regular files may accept fewer bytes)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        assert written > 0, "pwrite wrote nothing"
        view = view[written:]
        offset += written


def read_at_most(fd: int, size: int, offset: int) -> bytes:
    """pread up to `size` bytes at `offset`; shorter only at end of file."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that file creations, renames and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file.

    Write a temporary sibling, fsync it, rename it over `path`, then fsync the directory
    so that the rename itself survives a power loss.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fdatasync(fd: int) -> None:
    """fdatasync where the platform has it (Linux), else a full fsync."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
    _journal(fd)


def sync_filesystem(fd: int) -> bool:
    """Make every file of `fd`'s filesystem durable with one syncfs(2), data and metadata
    (one journal commit, where one fsync per file commits it once per file); False where the
    platform has no syncfs, so the caller fsyncs file by file."""
    if _syncfs is None:
        return False
    if _syncfs(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return True


def fsync(fd: int) -> None:
    """fsync (data and metadata)."""
    os.fsync(fd)
    _journal(fd)
