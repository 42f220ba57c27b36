"""The CommitLog writer: append entries, recover a torn tail, truncate, retire old segments.

One owner (one actor thread) holds a `CommitLog`; other threads read through their own
`CommitLogReader` and fsync through a `CommitLogSyncer`, which share no state with it.

Invariants:
- Segments are contiguous; the last one is active, every earlier one is sealed with a BLANK
  and was fdatasynced before its successor was created. So everything below the active
  segment is durable, and `sync()` of the active file makes the whole log durable.
- A record never spans segments and each entry leaves room for an 8-byte BLANK after it.
- `write_offset` is always the end of a complete entry (or a segment start).

Recovery scans the last segment (and earlier ones only while the later one holds no complete
entry), keeps the longest valid prefix of complete entries, truncates the rest and deletes
any later segment files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dledgermq.store.entry_index import EntrySpan
from dledgermq.store.errors import CorruptRecord, EntryTooLarge, OffsetGone
from dledgermq.store.fileio import fdatasync, fsync, fsync_dir, write_all
from dledgermq.store.reader import CommitLogReader
from dledgermq.store.record import (
    BLANK_SIZE,
    F_FLAGS,
    F_INDEX,
    F_OFFSET,
    F_SIZE,
    F_TERM,
    FLAG_ENTRY_END,
    HEADER_SIZE,
    MessageDraft,
    check_record,
    encode_blank,
    encode_entry,
)
from dledgermq.store.recovery import (
    Recovery,
    ResumePoint,
    create_segment,
    delete_segments,
    recover,
)
from dledgermq.store.segment import (
    SegmentScan,
    place_entry,
    scan_segment,
    segment_path,
    segment_start,
)
from dledgermq.store.syncer import CommitLogSyncer

__all__ = [
    "AppendResult",
    "CommitLog",
    "CommitLogReader",
    "CommitLogSyncer",
    "EntryTooLarge",
    "OffsetGone",
    "Recovery",
]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended entry landed: [start_offset, end_offset) and each record's place."""

    start_offset: int
    end_offset: int
    positions: list[tuple[int, int]]


class CommitLog:
    """The single-writer CommitLog over a directory of segment files."""

    def __init__(
        self, directory: Path, segment_size_bytes: int, segments: list[int], recovery: Recovery
    ) -> None:
        """Use `CommitLog.open`; this adopts the state that recovery established."""
        self._directory = directory
        self._segment_size = segment_size_bytes
        self._segments = segments
        self._fd = os.open(segment_path(directory, segments[-1]), os.O_WRONLY)
        self._write_offset = recovery.write_offset
        self._last_term = recovery.last_term
        self._last_index = recovery.last_index
        self.recovery = recovery

    @classmethod
    def open(
        cls,
        directory: Path,
        segment_size_bytes: int,
        durable_floor: int = 0,
        resume: ResumePoint | None = None,
    ) -> CommitLog:
        """Open (creating if needed) and recover the log in `directory`.

        Raises:
            DamagedRecord: below `durable_floor` (see `recover`).
        """
        assert segment_size_bytes >= HEADER_SIZE + 2 * BLANK_SIZE, segment_size_bytes
        segments, recovery = recover(directory, segment_size_bytes, durable_floor, resume)
        return cls(directory, segment_size_bytes, segments, recovery)

    # -- properties ----------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def segment_size_bytes(self) -> int:
        return self._segment_size

    @property
    def write_offset(self) -> int:
        """End of the last complete entry: where the next entry goes (before padding)."""
        return self._write_offset

    @property
    def min_offset(self) -> int:
        """Start of the oldest segment still on disk."""
        return self._segments[0]

    @property
    def last_term(self) -> int:
        """Term of the last complete entry; with `last_index`, (0, 0) when the retained
        segments hold no entry (the log is empty, or everything older was retired)."""
        return self._last_term

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def segments(self) -> list[int]:
        """Start offsets of the segments on disk, oldest first (a copy)."""
        return list(self._segments)

    # -- appending -----------------------------------------------------------------------

    def append_entry(
        self, drafts: list[MessageDraft], *, term: int, index: int, store_timestamp_ms: int
    ) -> AppendResult:
        """Append one log entry (a producer batch) with a single write.

        Raises:
            EntryTooLarge: the entry plus padding room exceeds a whole segment.
        """
        assert drafts, "an entry holds at least one record"
        assert index > self._last_index, f"index {index} after {self._last_index}"
        assert term >= self._last_term, f"term {term} after {self._last_term}"
        data, positions = encode_entry(
            drafts,
            term=term,
            index=index,
            start_offset=self._write_offset,
            store_timestamp_ms=store_timestamp_ms,
        )
        if self._place(len(data)) != self._write_offset:
            self._roll()
            data, positions = encode_entry(
                drafts,
                term=term,
                index=index,
                start_offset=self._write_offset,
                store_timestamp_ms=store_timestamp_ms,
            )
        start = self._write_offset
        write_all(self._fd, data, start - self._segments[-1])
        self._write_offset = start + len(data)
        self._last_term, self._last_index = term, index
        return AppendResult(start, self._write_offset, positions)

    def append_raw(self, data: bytes | bytearray | memoryview) -> AppendResult:
        """Append complete, already-encoded entries as a replication leader sent them.

        `data` is records only (no BLANK padding). Every record is verified first; the first
        record of each entry must sit at `write_offset`, or at the next segment start when
        the entry does not fit here (the leader padded there), and nothing is written unless
        all of `data` is valid.

        Raises:
            CorruptRecord: a record is damaged, incomplete, or not where it belongs.
        """
        view = data if isinstance(data, memoryview) else memoryview(data)
        entries, positions = _split_entries(view, (self._last_term, self._last_index))
        self._write_entries(view, entries)
        start = positions[0][0] if positions else self._write_offset
        return AppendResult(start, self._write_offset, positions)

    def append_encoded(self, data: bytes, entries: Sequence[EntrySpan]) -> None:
        """Append entries this node encoded itself at their places (a Raft leader's own
        proposals and no-ops): their records are not verified again, only their places."""
        self._write_entries(memoryview(data), entries)

    def _write_entries(self, view: memoryview, entries: Sequence[EntrySpan]) -> None:
        """Write whole entries of `view` where they belong, or nothing if one is misplaced."""
        planned = self._write_offset
        for entry in entries:
            planned = self._place_raw(planned, entry)
        for entry in entries:
            if entry.offset != self._write_offset:
                self._roll()
            assert entry.offset == self._write_offset
            write_all(self._fd, view[entry.begin : entry.end], entry.offset - self._segments[-1])
            self._write_offset = entry.offset + entry.end - entry.begin
            self._last_term, self._last_index = entry.term, entry.index

    def _place(self, size: int, end: int | None = None) -> int:
        """Where an entry of `size` bytes goes after `end` (default: the log's end).

        Raises:
            EntryTooLarge: the entry plus padding room exceeds a whole segment.
        """
        start = place_entry(self._write_offset if end is None else end, size, self._segment_size)
        if start is None:
            raise EntryTooLarge(
                f"entry of {size} bytes cannot fit a {self._segment_size}-byte segment"
            )
        return start

    def _place_raw(self, planned: int, entry: EntrySpan) -> int:
        """Check a replicated entry sits where this log would put it; return its end."""
        expected = self._place(entry.end - entry.begin, planned)
        if entry.offset != expected:
            raise CorruptRecord(f"entry at {entry.offset}, but the log continues at {expected}")
        return entry.end - entry.begin + entry.offset

    def _roll(self) -> None:
        """Seal the active segment with a BLANK, make it durable, start the next one."""
        active = self._segments[-1]
        used = self._write_offset - active
        write_all(self._fd, encode_blank(self._segment_size - used), used)
        os.ftruncate(self._fd, self._segment_size)
        fdatasync(self._fd)
        os.close(self._fd)
        nxt = active + self._segment_size
        self._fd = create_segment(self._directory, nxt)
        self._segments.append(nxt)
        self._write_offset = nxt

    # -- durability, truncation, retention -----------------------------------------------

    def sync(self) -> None:
        """fdatasync the active segment: with sealed segments durable, the whole log is."""
        fdatasync(self._fd)

    def truncate(self, offset: int) -> None:
        """Cut the log at `offset`, an entry boundary; later segments are deleted.

        Raises:
            ValueError: `offset` is not the end of a complete entry (or a segment start).
        """
        assert self.min_offset <= offset <= self._write_offset, (offset, self.min_offset)
        if offset == self._write_offset:
            return
        start = segment_start(offset, self._segment_size)
        scan = self._scan(start, limit=offset)
        if scan.valid_end != offset:
            raise ValueError(f"{offset} is not an entry boundary ({scan.stop})")
        last = (scan.last_term, scan.last_index)
        if not scan.entries and start - self._segment_size in self._segments:
            previous = self._scan(start - self._segment_size)
            last = (previous.last_term, previous.last_index)
        elif not scan.entries:
            last = (0, 0)
        os.close(self._fd)
        self._fd = -1
        delete_segments(self._directory, [s for s in self._segments if s > start])
        self._segments = [s for s in self._segments if s <= start]
        fd = os.open(segment_path(self._directory, start), os.O_WRONLY)
        self._fd = fd
        os.ftruncate(fd, offset - start)
        fsync(fd)
        self._write_offset = offset
        self._last_term, self._last_index = last

    def repair(self, offset: int, data: bytes) -> bool:
        """Write a verified copy of a damaged record over it, in place, and fdatasync.

        The caller checked the copy (`replication.repair.check_repair`); this only makes sure it
        stays inside the written log and one segment. The segment keeps its mtime, so a
        repair does not postpone its retention.

        Returns:
            False if retention deleted the segment meanwhile (nothing left to repair).
        """
        start = segment_start(offset, self._segment_size)
        if start not in self._segments:
            return False
        assert offset + len(data) <= self._write_offset, (offset, self._write_offset)
        write_in_place(self._directory, self._segment_size, offset, data)
        return True

    def _scan(self, start: int, *, limit: int | None = None) -> SegmentScan:
        """Verify the segment at `start` from its beginning (up to `limit`)."""
        fd = os.open(segment_path(self._directory, start), os.O_RDONLY)
        try:
            return scan_segment(fd, start, self._segment_size, limit=limit)
        finally:
            os.close(fd)

    def delete_expired(
        self,
        now_ms: int,
        reserved_ms: int,
        *,
        force: bool = False,
        max_files: int = 10,
        protect_from: int | None = None,
    ) -> list[int]:
        """Delete old whole segments, oldest first; never the active one.

        A segment goes when its file mtime is at least `reserved_ms` before `now_ms`, or
        unconditionally with `force` (disk above its high-water mark). Segments reaching
        `protect_from` or beyond (e.g. not yet dispatched) are always kept.

        Returns:
            Start offsets of the deleted segments.
        """
        deleted: list[int] = []
        while len(self._segments) > 1 and len(deleted) < max_files:
            start = self._segments[0]
            if protect_from is not None and start + self._segment_size > protect_from:
                break
            path = segment_path(self._directory, start)
            if not force and now_ms - os.stat(path).st_mtime_ns // 1_000_000 < reserved_ms:
                break
            path.unlink()
            self._segments.pop(0)
            deleted.append(start)
        if deleted:
            fsync_dir(self._directory)
        return deleted

    def close(self) -> None:
        """Close the active file (does not sync: call `sync()` first for a clean stop)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_in_place(directory: Path, segment_size: int, offset: int, data: bytes) -> None:
    """pwrite `data` at `offset` inside its existing segment file and fdatasync it, keeping
    the file's mtime (retention goes by it)."""
    start = segment_start(offset, segment_size)
    assert offset + len(data) <= start + segment_size, "a record never spans segments"
    path = segment_path(directory, start)
    stat = path.stat()
    assert offset + len(data) <= start + stat.st_size, "repairs only overwrite"
    fd = os.open(path, os.O_WRONLY)
    try:
        write_all(fd, data, offset - start)
        fdatasync(fd)
    finally:
        os.close(fd)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def refill_at(directory: Path, segment_size: int, offset: int, data: bytes, *, seal: bool) -> None:
    """Cut a segment file cut short inside a record back to `offset`, write `data` (a peer's
    copy of what followed) there and fdatasync, keeping the file's mtime. `seal`: `data`
    ends with the segment's padding, so the file gets its full size, as `_roll` leaves it."""
    start = segment_start(offset, segment_size)
    assert offset + len(data) <= start + segment_size, "a record never spans segments"
    path = segment_path(directory, start)
    stat = path.stat()
    assert offset - start <= stat.st_size, "a refill never leaves a hole"
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, offset - start)
        write_all(fd, data, offset - start)
        if seal:
            os.ftruncate(fd, segment_size)
        fdatasync(fd)
    finally:
        os.close(fd)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _split_entries(
    view: memoryview, last: tuple[int, int]
) -> tuple[list[EntrySpan], list[tuple[int, int]]]:
    """Verify every record of `view` and group them into complete entries.

    Raises:
        CorruptRecord: a damaged record, records of an entry not contiguous or not sharing
            (term, index), an entry out of sequence after `last`, or a trailing partial entry.
    """
    entries: list[EntrySpan] = []
    positions: list[tuple[int, int]] = []
    last_term, last_index = last
    pos = begin = first_offset = next_offset = 0
    in_entry = False
    while pos < len(view):
        header = check_record(view, pos)
        term, index, offset, size = (
            header[F_TERM],
            header[F_INDEX],
            header[F_OFFSET],
            header[F_SIZE],
        )
        if not in_entry:
            if index <= last_index or term < last_term:
                raise CorruptRecord(f"entry ({term}, {index}) after ({last_term}, {last_index})")
            in_entry, begin, first_offset = True, pos, offset
            last_term, last_index = term, index
        elif (term, index) != (last_term, last_index) or offset != next_offset:
            raise CorruptRecord(f"record at {offset} breaks entry ({last_term}, {last_index})")
        positions.append((offset, size))
        next_offset = offset + size
        pos += size
        if header[F_FLAGS] & FLAG_ENTRY_END:
            entries.append(EntrySpan(begin, pos, first_offset, term, index))
            in_entry = False
    if in_entry:
        raise CorruptRecord("replicated data ends inside an entry")
    return entries, positions
