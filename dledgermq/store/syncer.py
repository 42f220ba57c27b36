"""Makes a CommitLog range durable from the flusher's thread (group commit).

A `CommitLogSyncer` shares nothing mutable with the `CommitLog` writer: it derives segment
paths from offsets and keeps its own read-only fds (fdatasync works on them). It never writes.
A cached fd whose file was unlinked is reopened first (`st_nlink == 0`), so a truncation that
deleted and recreated a segment cannot make it sync a dead inode. A segment that no longer
exists is skipped: its data was truncated or retired, so there is nothing left to persist.
"""

from __future__ import annotations

from pathlib import Path

from dledgermq.store.fileio import fdatasync
from dledgermq.store.segment import SegmentFds, segment_start


class CommitLogSyncer:
    """fdatasyncs the segment files that cover a byte range of the log."""

    def __init__(self, directory: Path, segment_size_bytes: int) -> None:
        self._directory = directory
        self._segment_size = segment_size_bytes
        # Bounded: a flush touches one or two segments; older fds are closed below.
        self._files = SegmentFds(directory, max_open=4)

    def sync(self, from_offset: int, to_offset: int) -> None:
        """Make [from_offset, to_offset) durable (every segment that range touches)."""
        assert 0 <= from_offset <= to_offset, (from_offset, to_offset)
        if from_offset == to_offset:
            return
        first = segment_start(from_offset, self._segment_size)
        last = segment_start(to_offset - 1, self._segment_size)
        self._files.close_below(first)
        for start in range(first, last + 1, self._segment_size):
            fd = self._fd(start)
            if fd >= 0:
                fdatasync(fd)

    def _fd(self, start: int) -> int:
        """A live fd for the segment at `start`, or -1 if the file is gone."""
        try:
            return self._files.get(start)
        except FileNotFoundError:
            return -1

    def close(self) -> None:
        self._files.close()
