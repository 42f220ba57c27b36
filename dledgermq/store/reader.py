"""Read-only access to CommitLog records for threads other than the writer.

A `CommitLogReader` shares nothing mutable with the `CommitLog`: it derives segment paths
from offsets and keeps its own small cache of read-only fds. It never writes, truncates or
deletes. One instance belongs to one thread (its fd cache is not locked); give each reading
actor its own reader.

Callers read only below an offset the writer has published (confirm/dispatched offset), so a
short read means the data is gone (deleted or truncated away), reported as `OffsetGone`.
A cached fd whose file was unlinked (retention, or a truncation that deleted and recreated a
segment) is detected with `fstat().st_nlink == 0` and reopened, so stale inodes are never read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.fileio import read_at_most
from dledgermq.store.record import (
    BLANK_SIZE,
    F_SIZE,
    HEADER_SIZE,
    MAGIC_BLANK,
    MAGIC_MESSAGE,
    MAX_RECORD_SIZE,
    Record,
    check_record,
    decode_record,
    peek_header,
)
from dledgermq.store.segment import SegmentFds, segment_start

READ_CHUNK_BYTES = 1024 * 1024
_FIRST_READ_BYTES = 4096
# `read_records` reads neighbours with one pread when they are at most this far apart.
_COALESCE_GAP_BYTES = 64 * 1024

T = TypeVar("T")


class CommitLogReader:
    """Reads and verifies records by commitlog offset (CRC checked on every read)."""

    def __init__(
        self, directory: Path, segment_size_bytes: int, *, max_open_files: int = 8
    ) -> None:
        self._directory = directory
        self._segment_size = segment_size_bytes
        self._files = SegmentFds(directory, max_open_files)

    def _fd(self, start: int) -> int:
        try:
            return self._files.get(start)
        except FileNotFoundError:
            raise OffsetGone(f"segment {start} no longer exists") from None

    def _read(self, offset: int, size: int, *, exact: bool = True) -> bytes:
        """pread within one segment; with `exact`, a short read raises OffsetGone."""
        start = segment_start(offset, self._segment_size)
        assert offset + size <= start + self._segment_size, "a read never spans segments"
        data = read_at_most(self._fd(start), size, offset - start)
        if exact and len(data) != size:
            raise OffsetGone(f"only {len(data)} of {size} bytes at {offset}")
        return data

    def holds_record(self, offset: int, size: int) -> bool:
        """Whether (offset, size) could be a record: sane size, inside one segment.

        Offsets and sizes from outside (a message id) are checked with this before reading.
        """
        if offset < 0 or not HEADER_SIZE <= size <= MAX_RECORD_SIZE:
            return False
        return offset + size <= segment_start(offset, self._segment_size) + self._segment_size

    def read_bytes(self, offset: int, size: int) -> bytes:
        """Raw bytes [offset, offset + size), which must lie in one segment."""
        assert offset >= 0, offset
        assert size >= 0, size
        return self._read(offset, size)

    def read_record(self, offset: int, size: int | None = None) -> Record:
        """The verified record at `offset` (pass `size`, e.g. from a CQ unit, to save a read).

        Raises:
            OffsetGone: the segment was deleted or the bytes are not there.
            CorruptRecord: the bytes fail a check, or `size` does not match the record.
        """
        if size is None:
            room = segment_start(offset, self._segment_size) + self._segment_size - offset
            data = self._read(offset, min(_FIRST_READ_BYTES, room), exact=False)
            if len(data) < BLANK_SIZE:
                raise OffsetGone(f"no record at {offset}")
            magic, total = peek_header(data)
            if magic != MAGIC_MESSAGE or total > room:
                raise CorruptRecord(f"no message record at {offset}")
            if total > len(data):
                data = self._read(offset, total)
        else:
            data = self._read(offset, size)
        record = decode_record(data, expected_offset=offset)
        if size is not None and record.size != size:
            raise CorruptRecord(f"record at {offset} is {record.size} bytes, expected {size}")
        return record

    def read_records(self, positions: Sequence[tuple[int, int]]) -> list[Record]:
        """Verified records at (offset, size) positions, in order; near neighbours in one
        segment are fetched with one pread (a pull reads one queue's interleaved records)."""
        records: list[Record] = []
        i = 0
        while i < len(positions):
            run_start, first_size = positions[i]
            seg_end = segment_start(run_start, self._segment_size) + self._segment_size
            j, run_end = i + 1, run_start + first_size
            while j < len(positions):
                offset, size = positions[j]
                if (
                    not run_end <= offset <= run_end + _COALESCE_GAP_BYTES
                    or offset + size > seg_end
                ):
                    break
                run_end = offset + size
                j += 1
            view = memoryview(self._read(run_start, run_end - run_start))
            for offset, size in positions[i:j]:
                record = decode_record(view, offset - run_start, expected_offset=offset)
                if record.size != size:
                    raise CorruptRecord(f"record at {offset} is {record.size} bytes, not {size}")
                records.append(record)
            i = j
        return records

    def iter_records(
        self,
        start: int,
        end: int,
        decode: Callable[..., T] = decode_record,  # type: ignore[assignment]
    ) -> Iterator[T]:
        """Records in [start, end) in log order, skipping end-of-segment padding.

        `start` must be a record boundary and `end` an entry boundary (e.g. the confirm
        offset); data is read in large chunks, not one syscall per record. `decode` may be
        `decode_meta` where the body is not needed (dispatch); it verifies the CRC too.

        Raises:
            ValueError: a record crosses `end`.
            OffsetGone, CorruptRecord: as for `read_record`.
        """
        assert 0 <= start <= end, (start, end)
        pos = start
        buf_start, view = pos, memoryview(b"")
        while pos < end:
            seg_end = segment_start(pos, self._segment_size) + self._segment_size
            at = pos - buf_start
            if at < 0 or at + BLANK_SIZE > len(view):
                buf_start, view, at = pos, self._chunk(pos, seg_end, BLANK_SIZE), 0
            magic, size = peek_header(view, at)
            if magic == MAGIC_BLANK:
                if size != seg_end - pos:
                    raise CorruptRecord(f"padding at {pos} does not close its segment")
                pos = seg_end
                continue
            if magic != MAGIC_MESSAGE:
                raise CorruptRecord(f"bad magic {magic:#x} at {pos}")
            if not HEADER_SIZE <= size <= MAX_RECORD_SIZE or pos + size > seg_end:
                # A damaged size field: no record is that large or spans segments.
                raise CorruptRecord(f"record at {pos} claims an impossible {size} bytes")
            if pos + size > end:
                raise ValueError(f"record at {pos} ({size} bytes) crosses the end {end}")
            if at + size > len(view):
                buf_start, view, at = pos, self._chunk(pos, seg_end, size), 0
            yield decode(view, at, expected_offset=pos)
            pos += size

    def find_damage(self, start: int, end: int) -> int | None:
        """Offset of the first record (or padding) in [start, end) that fails its checks or
        is cut short (a segment file truncated)."""
        pos = start
        try:
            for pos in self.iter_records(start, end, _end_of_checked):  # noqa: B007
                pass
        except (CorruptRecord, OffsetGone):
            return self.past_padding(pos)
        return None

    def past_padding(self, pos: int) -> int:
        """`pos`, or the next segment's start if intact padding closes the segment there."""
        seg_end = segment_start(pos, self._segment_size) + self._segment_size
        try:
            magic, size = peek_header(self._read(pos, BLANK_SIZE), 0)
        except (OffsetGone, CorruptRecord):
            return pos
        return seg_end if magic == MAGIC_BLANK and size == seg_end - pos else pos

    def _chunk(self, pos: int, seg_end: int, need: int) -> memoryview:
        """At least `need` bytes at `pos`, up to a chunk, never past the segment end."""
        size = min(max(READ_CHUNK_BYTES, need), seg_end - pos)
        data = self._read(pos, size, exact=False)
        if len(data) < need:
            raise OffsetGone(f"only {len(data)} bytes at {pos}, need {need}")
        return memoryview(data)

    def close(self) -> None:
        """Close every cached fd."""
        self._files.close()


def _end_of_checked(buf: bytes | bytearray | memoryview, pos: int, *, expected_offset: int) -> int:
    """`iter_records` decoder that only verifies: the record's end offset."""
    return expected_offset + int(check_record(buf, pos, expected_offset)[F_SIZE])
