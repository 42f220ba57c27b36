"""CommitLog segment files: naming, listing, and the validating forward scan.

A segment holds the absolute offsets [k * segment_size_bytes, (k + 1) * segment_size_bytes)
and is named by its start offset as 20 zero-padded digits. This module only reads: it never
writes, truncates or deletes a file (the CommitLog does that from what the scan reports).
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from dledgermq.store.errors import CorruptLog, CorruptRecord
from dledgermq.store.fileio import read_at_most
from dledgermq.store.record import (
    BLANK_SIZE,
    F_FLAGS,
    F_INDEX,
    F_MAGIC,
    F_SIZE,
    F_TERM,
    FLAG_ENTRY_END,
    HEADER_SIZE,
    MAGIC_BLANK,
    MAGIC_MESSAGE,
    MAX_RECORD_SIZE,
    check_record,
    peek_header,
)

SCAN_CHUNK_BYTES = 1024 * 1024
_NAME_DIGITS = 20


def segment_name(start: int) -> str:
    """The file name of the segment starting at `start`."""
    return f"{start:0{_NAME_DIGITS}d}"


def segment_path(directory: Path, start: int) -> Path:
    return directory / segment_name(start)


def segment_start(offset: int, segment_size_bytes: int) -> int:
    """Start offset of the segment that holds `offset`."""
    return offset - offset % segment_size_bytes


def place_entry(end: int, size: int, segment_size_bytes: int) -> int | None:
    """Where an entry of `size` bytes goes when the log ends at `end`: there if it fits in
    that segment with room left for the closing BLANK, else at the next segment's start.
    None when it could not fit even a whole segment. The one placement rule: the writer,
    a follower checking the leader's bytes and the Raft layout must all agree on it."""
    if size + BLANK_SIZE > segment_size_bytes:
        return None
    start = segment_start(end, segment_size_bytes)
    if end - start + size + BLANK_SIZE <= segment_size_bytes:
        return end
    return start + segment_size_bytes


def list_segments(directory: Path, segment_size_bytes: int) -> list[int]:
    """Sorted start offsets of the segment files in `directory` (other files are ignored).

    Raises:
        CorruptLog: a start is not aligned (segment size changed?) or segments have a gap.
    """
    starts = sorted(
        int(p.name)
        for p in directory.iterdir()
        if len(p.name) == _NAME_DIGITS and p.name.isdigit() and p.is_file()
    )
    for start in starts:
        if start % segment_size_bytes:
            raise CorruptLog(f"segment {start} is not aligned to {segment_size_bytes} bytes")
    for before, after in itertools.pairwise(starts):
        if after != before + segment_size_bytes:
            raise CorruptLog(f"gap between segments {before} and {after} in {directory}")
    return starts


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What a forward scan of one segment found.

    Attributes:
        valid_end: absolute end of the last complete entry (the scan start if none).
        last_term, last_index: of that entry, or the values passed in if none was found.
        entries: complete entries found.
        sealed: a valid BLANK follows `valid_end`, so the segment is finished.
        stop: why the scan stopped ("eof", "limit", "sealed", or what was wrong).
    """

    valid_end: int
    last_term: int
    last_index: int
    entries: int
    sealed: bool
    stop: str


class _Window:
    """A sliding read buffer over one file, refilled in large chunks (not per record)."""

    def __init__(self, fd: int, file_start: int) -> None:
        self._fd = fd
        self._file_start = file_start
        self.start = file_start
        self.view = memoryview(b"")

    def ensure(self, pos: int, size: int) -> int:
        """Make [pos, pos + size) readable; return its index in `view` (or -1 at EOF)."""
        if pos >= self.start and pos + size <= self.start + len(self.view):
            return pos - self.start
        data = read_at_most(self._fd, max(SCAN_CHUNK_BYTES, size), pos - self._file_start)
        self.start = pos
        self.view = memoryview(data)
        return 0 if len(data) >= size else -1


def _header_at(window: _Window, pos: int, seg_end: int, file_end: int) -> tuple[int, ...] | str:
    """The verified header of the record at `pos`, or why there is none.

    A BLANK comes back as the 2-tuple (MAGIC_BLANK, size) without further checks.
    """
    at = window.ensure(pos, BLANK_SIZE) if pos + BLANK_SIZE <= file_end else -1
    if at < 0:
        return "eof"
    magic, size = peek_header(window.view, at)
    if magic == MAGIC_BLANK:
        return (magic, size)
    # Every entry leaves room for a BLANK after it, so no record ends in the last 8 bytes.
    in_bounds = HEADER_SIZE <= size <= MAX_RECORD_SIZE and pos + size + BLANK_SIZE <= seg_end
    if magic != MAGIC_MESSAGE or not in_bounds:
        return f"bad header at {pos}"
    at = window.ensure(pos, size) if pos + size <= file_end else -1
    if at < 0:
        return f"torn record at {pos}"
    try:
        return check_record(window.view, at, pos)
    except CorruptRecord as error:
        return str(error)


def scan_segment(
    fd: int,
    start: int,
    segment_size_bytes: int,
    *,
    limit: int | None = None,
    last: tuple[int, int] = (0, 0),
    begin: int | None = None,
) -> SegmentScan:
    """Walk and verify records from the segment start (or `begin`, the end of entry `last`
    inside it) until something is wrong or ends.

    Checks magic, size bounds, header offset == position and CRC for each record; records
    of an entry must share (term, index); a new entry must have a higher index and no lower
    term than `last` (when `last` is known, i.e. its index > 0). Only a BLANK that closes
    the segment exactly, outside an entry, seals it. With `limit`, stop at that offset.
    """
    seg_end = start + segment_size_bytes
    file_end = start + os.fstat(fd).st_size
    window = _Window(fd, start)
    last_term, last_index = last
    pos = valid_end = start if begin is None else begin
    entries = 0
    entry: tuple[int, int] | None = None  # (term, index) of the entry being read
    while limit is None or pos < limit:
        header = _header_at(window, pos, seg_end, file_end)
        if isinstance(header, str):
            return SegmentScan(valid_end, last_term, last_index, entries, False, header)
        if header[F_MAGIC] == MAGIC_BLANK:
            sealed = entry is None and header[F_SIZE] == seg_end - pos
            stop = "sealed" if sealed else f"bad blank at {pos}"
            return SegmentScan(valid_end, last_term, last_index, entries, sealed, stop)
        current = (header[F_TERM], header[F_INDEX])
        if entry is None and last_index and (current[1] <= last_index or current[0] < last_term):
            stop = f"entry {current} at {pos} out of sequence"
            return SegmentScan(valid_end, last_term, last_index, entries, False, stop)
        if entry is not None and current != entry:
            stop = f"partial entry {entry} before {pos}"
            return SegmentScan(valid_end, last_term, last_index, entries, False, stop)
        entry = current
        pos += header[F_SIZE]
        if header[F_FLAGS] & FLAG_ENTRY_END:
            entry = None
            valid_end, (last_term, last_index) = pos, current
            entries += 1
    return SegmentScan(valid_end, last_term, last_index, entries, False, "limit")


class SegmentFds:
    """Read-only fds of one log's segment files, for a thread other than the writer's.

    A cached fd whose file was unlinked is reopened (a truncation deletes and recreates
    segments, so an old fd would read or sync a dead inode); at most `max_open` are kept,
    least recently used closed first.
    """

    def __init__(self, directory: Path, max_open: int) -> None:
        assert max_open >= 1
        self._directory = directory
        self._max_open = max_open
        self._fds: OrderedDict[int, int] = OrderedDict()

    def get(self, start: int) -> int:
        """The live fd of the segment starting at `start`.

        Raises:
            FileNotFoundError: the segment no longer exists.
        """
        fd = self._fds.get(start)
        if fd is not None:
            if os.fstat(fd).st_nlink > 0:
                self._fds.move_to_end(start)
                return fd
            del self._fds[start]
            os.close(fd)
        fd = os.open(segment_path(self._directory, start), os.O_RDONLY)
        self._fds[start] = fd
        while len(self._fds) > self._max_open:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def close_below(self, start: int) -> None:
        """Close the fds of segments before `start` (no longer needed)."""
        for old in [s for s in self._fds if s < start]:
            os.close(self._fds.pop(old))

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])
