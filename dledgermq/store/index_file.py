"""IndexStore: a hash index from message keys (and unique ids) to commitlog offsets.

Like RocketMQ's IndexFile, in our own layout. Each file (little-endian, fixed size via
ftruncate, named by a 20-digit sequence number) holds::

    [0, 64) [64, 128)   two header copies (written alternately; the valid one with the
                        higher generation wins, so a torn header write loses nothing)
    [128, +4*slots)     slot heads: entry number (1-based) of the newest entry whose key
                        hashes to the slot; 0 = empty
    then 24-byte entries, appended in commitlog order:
                        key_hash u32, commitlog_offset u64, store_timestamp_ms u64, prev u32
                        (prev = the slot's previous head, so each slot is a chain)

Entries are buffered in memory and written with pwrite; the active file's slot heads live in
memory. Durability rule (`flush`): (1) write new entries, fsync; (2) write the slot table,
fsync; (3) write the header with the new entry count, fsync. On open the header's count is
trusted; a slot head above it was written in a step (2) whose entries were already fsynced in
step (1), so it is walked down its prev links to the newest counted entry. Entries past the
count are ignored and later overwritten.

Derived data: the owner truncates from its checkpoint on start and re-dispatches. One owner
thread calls everything here, queries included (route key queries through it).
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dledgermq.store.errors import CorruptIndex
from dledgermq.store.fileio import fsync_dir, read_at_most, write_all

MAGIC = 0x1DE8F11E
VERSION = 1
_HEADER = struct.Struct("<IHHQIIIQQQQ")
_CRC = struct.Struct("<I")
HEADER_COPY_BYTES = 64
SLOTS_AT = 2 * HEADER_COPY_BYTES
ENTRY = struct.Struct("<IQQI")
ENTRY_SIZE = ENTRY.size
_SLOT = struct.Struct("<I")
_PREV = struct.Struct("<20xI")  # the prev field of an entry
_SPILL_BYTES = 4096 * ENTRY_SIZE
assert _HEADER.size + _CRC.size <= HEADER_COPY_BYTES
assert array("I").itemsize == 4


def key_hash(key: str) -> int:
    return zlib.crc32(key.encode())


@dataclass(slots=True)
class _IndexFile:
    """One file's header fields (kept current in memory for the active file)."""

    seq: int
    path: Path
    slot_count: int
    capacity: int
    generation: int = 1
    count: int = 0
    begin_ts: int = 0
    end_ts: int = 0
    begin_offset: int = 0
    end_offset: int = 0

    @property
    def entries_at(self) -> int:
        return SLOTS_AT + 4 * self.slot_count

    @property
    def size_bytes(self) -> int:
        return self.entries_at + ENTRY_SIZE * self.capacity

    def header_copy(self) -> tuple[int, bytes]:
        """(file position, bytes) of this generation's header copy."""
        body = _HEADER.pack(
            MAGIC,
            VERSION,
            0,
            self.generation,
            self.slot_count,
            self.capacity,
            self.count,
            self.begin_ts,
            self.end_ts,
            self.begin_offset,
            self.end_offset,
        )
        return (self.generation % 2) * HEADER_COPY_BYTES, body + _CRC.pack(zlib.crc32(body))


def _parse_header(path: Path, seq: int, raw: bytes) -> _IndexFile | None:
    """The valid header copy with the highest generation, or None if neither is valid."""
    best: _IndexFile | None = None
    for at in (0, HEADER_COPY_BYTES):
        body = raw[at : at + _HEADER.size]
        if len(body) < _HEADER.size:
            continue
        (crc,) = _CRC.unpack_from(raw, at + _HEADER.size)
        fields = _HEADER.unpack(body)
        if fields[0] != MAGIC or fields[1] != VERSION or zlib.crc32(body) != crc:
            continue
        meta = _IndexFile(seq, path, fields[4], fields[5], fields[3], *fields[6:])
        if best is None or meta.generation > best.generation:
            best = meta
    return best


def _create_file(directory: Path, seq: int, slot_count: int, capacity: int) -> _IndexFile:
    """Create a zeroed (sparse) file of full size with a valid empty header, durably."""
    meta = _IndexFile(seq, directory / f"{seq:020d}", slot_count, capacity)
    fd = os.open(meta.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, meta.size_bytes)
        at, header = meta.header_copy()
        write_all(fd, header, at)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(directory)
    return meta


_Entry = tuple[int, int, int, int]
_EntryReader = Callable[[int], _Entry]


def _read_entry(fd: int, meta: _IndexFile, number: int) -> _Entry:
    data = read_at_most(fd, ENTRY_SIZE, meta.entries_at + (number - 1) * ENTRY_SIZE)
    if len(data) < ENTRY_SIZE:
        return (0, 0, 0, 0)
    return ENTRY.unpack(data)


class IndexStore:
    """All index files in one directory; the newest is active."""

    def __init__(
        self, directory: Path, slots_per_file: int, entries_per_file: int, files: list[_IndexFile]
    ) -> None:
        """Use `IndexStore.open`."""
        assert files
        self._directory = directory
        self._slots_per_file = slots_per_file
        self._entries_per_file = entries_per_file
        self._files = files
        self._fd = -1
        self._heads = array("I")
        self._buffered = bytearray()  # entries (written, count] of the active file
        self._written = 0
        self._dirty = False
        self._activate()
        self._last_offset = self._last_end_offset()

    @classmethod
    def open(
        cls, directory: Path, slots_per_file: int = 500_000, entries_per_file: int = 2_000_000
    ) -> IndexStore:
        """Open (creating if needed); see the module docstring for the recovery rule.

        Raises:
            CorruptIndex: a file older than the newest has no valid header.
        """
        assert slots_per_file > 0
        assert entries_per_file > 0
        directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(p for p in directory.iterdir() if len(p.name) == 20 and p.name.isdigit())
        files = []
        for i, path in enumerate(paths):
            with path.open("rb") as f:
                meta = _parse_header(path, int(path.name), f.read(SLOTS_AT))
            if meta is not None:
                files.append(meta)
            elif i == len(paths) - 1:
                path.unlink()  # its creation never completed: it holds nothing durable
                fsync_dir(directory)
            else:
                raise CorruptIndex(f"{path} has no valid header")
        if not files:
            files.append(_create_file(directory, 0, slots_per_file, entries_per_file))
        return cls(directory, slots_per_file, entries_per_file, files)

    # -- the active file -------------------------------------------------------------------

    @property
    def _active(self) -> _IndexFile:
        return self._files[-1]

    def _activate(self) -> None:
        """Open the newest file for writing, load its slot heads, repair heads past count."""
        if self._fd >= 0:
            os.close(self._fd)
        meta = self._active
        self._fd = os.open(meta.path, os.O_RDWR)
        raw = read_at_most(self._fd, 4 * meta.slot_count, SLOTS_AT)
        assert len(raw) == 4 * meta.slot_count, f"{meta.path} is shorter than its header says"
        self._heads = array("I")
        self._heads.frombytes(raw)
        if sys.byteorder == "big":
            self._heads.byteswap()
        self._buffered = bytearray()
        self._written = meta.count
        self._dirty = False
        if self._unwind_heads(meta.count + 1):
            self._write_slots()
            os.fsync(self._fd)

    def _unwind_heads(self, first_dropped: int) -> bool:
        """Point every slot head at or above `first_dropped` to its newest older entry.

        Runs with nothing buffered (after a flush, or on open), so the dropped entries are
        on disk: they are read in one block, and each is visited once across all chains.
        """
        assert not self._buffered
        heads = self._heads
        top = max(heads, default=0)
        if top < first_dropped:
            return False
        meta = self._active
        size = (top - first_dropped + 1) * ENTRY_SIZE
        block = read_at_most(self._fd, size, meta.entries_at + (first_dropped - 1) * ENTRY_SIZE)
        block += bytes(size - len(block))
        for slot, head in enumerate(heads):
            number = head
            while number >= first_dropped:
                (prev,) = _PREV.unpack_from(block, (number - first_dropped) * ENTRY_SIZE)
                number = prev if prev < number else 0
            if number != head:
                heads[slot] = number
        return True

    def _entry(self, number: int) -> _Entry:
        """Entry `number` of the active file, from the buffer or the disk (uncounted
        entries past the count, walked during repair, are on disk)."""
        if self._written < number <= self._active.count:
            at = (number - self._written - 1) * ENTRY_SIZE
            return ENTRY.unpack_from(self._buffered, at)
        return _read_entry(self._fd, self._active, number)

    def _write_slots(self) -> None:
        heads = self._heads
        if sys.byteorder == "big":
            heads = array("I", heads)
            heads.byteswap()
        write_all(self._fd, heads.tobytes(), SLOTS_AT)

    def _write_buffered(self) -> None:
        if self._buffered:
            at = self._active.entries_at + self._written * ENTRY_SIZE
            write_all(self._fd, self._buffered, at)
            self._written = self._active.count
            self._buffered = bytearray()

    def _last_end_offset(self) -> int:
        for meta in reversed(self._files):
            if meta.count:
                return meta.end_offset
        return 0

    # -- writing ---------------------------------------------------------------------------

    def put(self, key: str, commitlog_offset: int, store_timestamp_ms: int) -> None:
        """Index `key` for the record at `commitlog_offset` (calls come in commitlog order)."""
        assert commitlog_offset >= self._last_offset, (commitlog_offset, self._last_offset)
        meta = self._active
        if meta.count == meta.capacity:
            self._roll()
            meta = self._active
        hashed = zlib.crc32(key.encode())
        slot = hashed % meta.slot_count
        number = meta.count + 1
        self._buffered += ENTRY.pack(
            hashed, commitlog_offset, store_timestamp_ms, self._heads[slot]
        )
        self._heads[slot] = number
        meta.count = number
        if number == 1:
            meta.begin_ts = meta.end_ts = store_timestamp_ms
            meta.begin_offset = commitlog_offset
        elif store_timestamp_ms < meta.begin_ts:
            meta.begin_ts = store_timestamp_ms
        elif store_timestamp_ms > meta.end_ts:
            meta.end_ts = store_timestamp_ms
        meta.end_offset = self._last_offset = commitlog_offset
        self._dirty = True
        if len(self._buffered) >= _SPILL_BYTES:
            self._write_buffered()

    def flush(self) -> None:
        """Make every put durable: entries, then slot heads, then the header (3 fsyncs)."""
        if not self._dirty:
            return
        self._write_buffered()
        os.fsync(self._fd)
        self._write_slots()
        os.fsync(self._fd)
        meta = self._active
        meta.generation += 1
        at, header = meta.header_copy()
        write_all(self._fd, header, at)
        os.fsync(self._fd)
        self._dirty = False

    def _roll(self) -> None:
        self.flush()
        meta = self._active
        self._files.append(
            _create_file(
                self._directory, meta.seq + 1, self._slots_per_file, self._entries_per_file
            )
        )
        self._activate()

    def truncate_from(self, commitlog_offset: int) -> None:
        """Remove entries at or beyond `commitlog_offset` and repair the slot chains, so
        that recovery can re-dispatch from there without duplicates. Durable on return."""
        self.flush()
        dropped = False
        while len(self._files) > 1 and (
            self._active.count == 0 or self._active.begin_offset >= commitlog_offset
        ):
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._files.pop().path.unlink()
            dropped = True
        if dropped:
            fsync_dir(self._directory)
            self._activate()
        meta = self._active
        lo, hi = 1, meta.count + 1  # first entry number pointing at or beyond the cut
        while lo < hi:
            mid = (lo + hi) // 2
            if self._entry(mid)[1] < commitlog_offset:
                lo = mid + 1
            else:
                hi = mid
        if lo <= meta.count:
            self._unwind_heads(lo)
            meta.count = self._written = lo - 1
            if meta.count == 0:
                meta.begin_ts = meta.end_ts = meta.begin_offset = meta.end_offset = 0
            else:
                meta.end_offset = self._entry(meta.count)[1]
            self._dirty = True
            self.flush()
        self._last_offset = self._last_end_offset()

    def delete_before(self, min_commitlog_offset: int) -> int:
        """Delete old files whose every entry points below `min_commitlog_offset`.

        Returns:
            The number of files deleted (never the active one).
        """
        deleted = 0
        while len(self._files) > 1 and self._files[0].end_offset < min_commitlog_offset:
            self._files.pop(0).path.unlink()
            deleted += 1
        if deleted:
            fsync_dir(self._directory)
        return deleted

    # -- reading ---------------------------------------------------------------------------

    def query(self, key: str, begin_ms: int, end_ms: int, max_count: int) -> list[int]:
        """Commitlog offsets of entries for `key` stored in [begin_ms, end_ms], newest first.

        Hash collisions can add offsets of other keys: read the record and check its key.
        """
        hashed = zlib.crc32(key.encode())
        found: list[int] = []
        for meta in reversed(self._files):
            if len(found) >= max_count:
                break
            if meta.count == 0 or meta.end_ts < begin_ms or meta.begin_ts > end_ms:
                continue
            if meta is self._active:
                head = self._heads[hashed % meta.slot_count]
                self._walk(self._entry, meta, head, (hashed, begin_ms, end_ms), found, max_count)
                continue
            fd = os.open(meta.path, os.O_RDONLY)
            try:
                (head,) = _SLOT.unpack(
                    read_at_most(fd, 4, SLOTS_AT + 4 * (hashed % meta.slot_count))
                )

                def entry(number: int, fd: int = fd, meta: _IndexFile = meta) -> _Entry:
                    return _read_entry(fd, meta, number)

                self._walk(entry, meta, head, (hashed, begin_ms, end_ms), found, max_count)
            finally:
                os.close(fd)
        return found

    @staticmethod
    def _walk(
        entry: _EntryReader,
        meta: _IndexFile,
        head: int,
        wanted: tuple[int, int, int],
        found: list[int],
        max_count: int,
    ) -> None:
        """Follow one slot chain (newest first), collecting matching offsets."""
        hashed, begin_ms, end_ms = wanted
        number = head
        while number and len(found) < max_count:
            h, offset, ts, prev = entry(number)
            if number <= meta.count and h == hashed and begin_ms <= ts <= end_ms:
                found.append(offset)
            number = prev if prev < number else 0  # links only point back; else corrupt

    def close(self) -> None:
        """Flush and close the active file."""
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
