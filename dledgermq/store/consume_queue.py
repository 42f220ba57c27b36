"""ConsumeQueue: the per (topic, queue_id) array of 20-byte units pointing into the CommitLog.

Unit i (queue offset i) is (commitlog_offset u64, size u32, tag_hash u64), big-endian, at
byte i * 20 of the queue's files; each file holds `units_per_file` units and is named by its
first byte position (20 digits), as in RocketMQ. Queue offset -> position is a multiplication.

It is derived data: everything above the broker's checkpoint is rebuilt from the CommitLog
after a crash (`truncate_from(checkpoint)` then re-dispatch), so appends are buffered in
memory and written in batches; `flush()` writes and fsyncs them before a checkpoint.

One owner appends, truncates and deletes. `get`, `min_offset` and `max_offset` may also be
called from other threads: the buffered tail is swapped as one (written, bytes) tuple and
`max_offset` is read before it, so a concurrent reader sees a consistent prefix. Holds no fds
between calls, so thousands of queues cost no file handles.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from dledgermq.store.errors import CorruptLog
from dledgermq.store.fileio import fsync_dir, read_at_most, sync_filesystem, write_all

UNIT = struct.Struct(">QIQ")
UNIT_SIZE = UNIT.size
assert UNIT_SIZE == 20
DEFAULT_UNITS_PER_FILE = 300_000
# Buffered units are written out (without fsync) beyond this, to bound memory per queue.
_SPILL_BYTES = 4096 * UNIT_SIZE
_SCAN_BACK_BYTES = 64 * 1024 - (64 * 1024) % UNIT_SIZE


def tag_hash(tag: str | None) -> int:
    """The unit's tag hash: CRC32 of the tag's UTF-8, 0 when there is no tag."""
    return zlib.crc32(tag.encode()) if tag else 0


class CQUnit(NamedTuple):
    queue_offset: int
    commitlog_offset: int
    size: int
    tag_hash: int


class ConsumeQueue:
    """One queue's units; see the module docstring for the threading rule."""

    def __init__(self, directory: Path, units_per_file: int, files: list[int], count: int) -> None:
        """Use `ConsumeQueue.open`. `files` are first queue offsets; `count` units on disk."""
        self._directory = directory
        self._per_file = units_per_file
        self._files = files
        self._min_offset = files[0] if files else 0
        self._max_offset = count
        # (queue offset of the first buffered unit, buffered units): swapped as one value.
        self._tail: tuple[int, bytearray] = (count, bytearray())
        self._dirty: set[int] = set()
        self._dir_dirty = False
        self._last_commitlog_offset = -1
        self._last_commitlog_end = 0
        self._refresh_last_unit()

    @classmethod
    def open(cls, directory: Path, units_per_file: int = DEFAULT_UNITS_PER_FILE) -> ConsumeQueue:
        """Open (creating the directory if needed) and drop a torn tail.

        Recovery rule: the last valid unit is the last non-zero unit of the last file; a
        partial trailing unit and trailing all-zero units are cut (a real unit has size > 0,
        so it is never all zeros). Deeper damage sits above the checkpoint and is removed by
        the owner's `truncate_from(checkpoint)`.
        """
        assert units_per_file > 0
        directory.mkdir(parents=True, exist_ok=True)
        file_bytes = units_per_file * UNIT_SIZE
        names = sorted(p.name for p in directory.iterdir() if p.name.isdigit())
        files = []
        for name in names:
            if int(name) % file_bytes:
                raise CorruptLog(f"{directory / name} is not aligned (units_per_file changed?)")
            files.append(int(name) // UNIT_SIZE)
        count = 0
        while files:
            path = directory / _file_name(files[-1])
            kept = _valid_units(path)
            if kept == 0 and len(files) > 1:
                path.unlink()
                files.pop()
                continue
            count = files[-1] + kept
            break
        return cls(directory, units_per_file, files, count)

    # -- reading ---------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def min_offset(self) -> int:
        """The first queue offset still readable."""
        return self._min_offset

    @property
    def max_offset(self) -> int:
        """The next queue offset to assign (one past the last unit)."""
        return self._max_offset

    def last_commitlog_end(self) -> int:
        """End (offset + size) of the last unit's record, 0 if the queue is empty."""
        return self._last_commitlog_end

    def get(self, queue_offset: int, max_count: int) -> list[CQUnit]:
        """Up to `max_count` units from `queue_offset`; [] outside [min_offset, max_offset)."""
        end = self._max_offset  # read before the tail: see the module docstring
        if max_count <= 0 or not self._min_offset <= queue_offset < end:
            return []
        return self._units(queue_offset, min(end, queue_offset + max_count))

    def _units(self, begin: int, end: int) -> list[CQUnit]:
        """Units [begin, end) from disk and the buffer (fewer if a file vanished)."""
        written, buffered = self._tail
        data = b""
        on_disk = min(end, written) - begin
        if on_disk > 0:
            data = self._read_disk(begin, begin + on_disk)
        if end > written and len(data) == max(0, on_disk) * UNIT_SIZE:
            first = max(begin, written) - written
            data += bytes(buffered[first * UNIT_SIZE : (end - written) * UNIT_SIZE])
        return [
            CQUnit(begin + i, offset, size, tag)
            for i, (offset, size, tag) in enumerate(
                UNIT.iter_unpack(data[: len(data) - len(data) % UNIT_SIZE])
            )
        ]

    def first_offset_where(self, predicate: Callable[[CQUnit], bool]) -> int:
        """Binary search: the first queue offset whose unit satisfies a monotone predicate
        (false...false true...true), or `max_offset` if none does. E.g. offset by time."""
        lo, hi = self._min_offset, self._max_offset
        while lo < hi:
            mid = (lo + hi) // 2
            units = self.get(mid, 1)
            if units and not predicate(units[0]):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _read_disk(self, begin: int, end: int) -> bytes:
        """Units [begin, end) from the files (short if a file vanished or is short)."""
        parts = []
        q = begin
        while q < end:
            first = q - q % self._per_file
            n = min(end, first + self._per_file) - q
            try:
                fd = os.open(self._path(first), os.O_RDONLY)
            except FileNotFoundError:
                break
            try:
                chunk = read_at_most(fd, n * UNIT_SIZE, (q - first) * UNIT_SIZE)
            finally:
                os.close(fd)
            parts.append(chunk)
            if len(chunk) < n * UNIT_SIZE:
                break
            q += n
        return b"".join(parts)

    # -- writing ---------------------------------------------------------------------------

    def append(self, commitlog_offset: int, size: int, tag_hash: int) -> int:
        """Add the unit for the next message of this queue; returns its queue offset."""
        assert commitlog_offset >= self._last_commitlog_end, (
            f"commitlog offset {commitlog_offset} below {self._last_commitlog_end}"
        )
        assert size > 0, size
        queue_offset = self._max_offset
        _, buffered = self._tail
        buffered += UNIT.pack(commitlog_offset, size, tag_hash)
        self._max_offset = queue_offset + 1
        self._last_commitlog_offset = commitlog_offset
        self._last_commitlog_end = commitlog_offset + size
        if len(buffered) >= _SPILL_BYTES:
            self._write_buffered()
        return queue_offset

    def _write_buffered(self) -> None:
        """Write buffered units to their files (no fsync), one pwrite per file touched."""
        written, buffered = self._tail
        q = written
        with memoryview(buffered) as view:
            while q - written < len(buffered) // UNIT_SIZE:
                first = q - q % self._per_file
                n = min(written + len(buffered) // UNIT_SIZE, first + self._per_file) - q
                if first not in self._files:
                    self._files.append(first)
                    self._dir_dirty = True
                fd = os.open(self._path(first), os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    chunk = view[(q - written) * UNIT_SIZE : (q - written + n) * UNIT_SIZE]
                    write_all(fd, chunk, (q - first) * UNIT_SIZE)
                finally:
                    os.close(fd)
                self._dirty.add(first)
                q += n
        self._tail = (q, bytearray())

    def write_out(self) -> PendingSync:
        """Write every buffered unit; the files (and directory) to fsync before a checkpoint
        may count them, which any thread may do (`PendingSync.run`)."""
        self._write_buffered()
        pending = PendingSync([self._path(first) for first in sorted(self._dirty)])
        self._dirty.clear()
        if self._dir_dirty:
            pending.dirs.append(self._directory)
            self._dir_dirty = False
        return pending

    def flush(self) -> None:
        """Write every buffered unit and fsync every file written since the last flush."""
        self.write_out().run()

    def truncate_from(self, commitlog_offset: int) -> None:
        """Drop the tail of units pointing at or beyond `commitlog_offset` (all-zero units
        left by a power loss are dropped too), so those records can be re-dispatched."""
        self._write_buffered()
        q = self._max_offset
        stop = self._files[0] if self._files else 0
        while q > stop:
            first = (q - 1) - (q - 1) % self._per_file  # the file holding unit q - 1
            keep = _scan_back(self._path(first), first, q, commitlog_offset)
            q = keep
            if keep > first:
                break
        self._cut_files(q)
        self._max_offset = q
        self._min_offset = min(self._min_offset, q)
        self._tail = (q, bytearray())
        self._refresh_last_unit()

    def _cut_files(self, new_max: int) -> None:
        """Delete files wholly at/after `new_max` (keeping one) and shorten the last kept."""
        doomed = [f for f in self._files if f >= new_max and f != self._files[0]]
        for first in sorted(doomed, reverse=True):
            self._path(first).unlink()
            self._files.remove(first)
            self._dirty.discard(first)
        if doomed:
            fsync_dir(self._directory)
        if self._files:
            last = self._files[-1]
            path = self._path(last)
            if path.exists() and path.stat().st_size > (new_max - last) * UNIT_SIZE:
                os.truncate(path, (new_max - last) * UNIT_SIZE)
                self._dirty.add(last)

    def delete_before(self, min_commitlog_offset: int) -> int:
        """Forget units pointing below the CommitLog's min offset; delete files wholly below.

        Returns:
            The number of files deleted. The last file is always kept (it fixes max_offset).
        """
        first_unit = self.get(self._min_offset, 1)
        if first_unit and first_unit[0].commitlog_offset < min_commitlog_offset:
            self._min_offset = self.first_offset_where(
                lambda unit: unit.commitlog_offset >= min_commitlog_offset
            )
        deleted = 0
        while len(self._files) > 1 and self._files[0] + self._per_file <= self._min_offset:
            first = self._files.pop(0)
            self._path(first).unlink()
            self._dirty.discard(first)
            deleted += 1
        if deleted:
            fsync_dir(self._directory)
        return deleted

    def close(self) -> None:
        """Flush; the queue holds no open files."""
        self.flush()

    def _refresh_last_unit(self) -> None:
        first_on_disk = self._files[0] if self._files else self._tail[0]
        last = self._max_offset - 1
        units = self._units(last, last + 1) if last >= first_on_disk else []
        if units:
            self._last_commitlog_offset = units[0].commitlog_offset
            self._last_commitlog_end = units[0].commitlog_offset + units[0].size
        else:
            self._last_commitlog_offset, self._last_commitlog_end = -1, 0

    def _path(self, first: int) -> Path:
        return self._directory / _file_name(first)


def _file_name(first_unit: int) -> str:
    return f"{first_unit * UNIT_SIZE:020d}"


def _valid_units(path: Path) -> int:
    """Cut a partial unit and trailing all-zero units off the file; return units kept."""
    size = path.stat().st_size
    kept_bytes = size - size % UNIT_SIZE
    fd = os.open(path, os.O_RDWR)
    try:
        while kept_bytes:
            begin = max(0, kept_bytes - _SCAN_BACK_BYTES)
            data = read_at_most(fd, kept_bytes - begin, begin).rstrip(b"\0")
            if data:
                # A unit's trailing bytes may be zero (tag hash 0): round up to its end.
                kept_bytes = begin + -(-len(data) // UNIT_SIZE) * UNIT_SIZE
                break
            kept_bytes = begin
        if kept_bytes != size:
            os.ftruncate(fd, kept_bytes)
            os.fsync(fd)
    finally:
        os.close(fd)
    return kept_bytes // UNIT_SIZE


def _scan_back(path: Path, first: int, end: int, commitlog_offset: int) -> int:
    """Walk units [first, end) of one file backwards; return one past the last unit that
    is non-zero and points below `commitlog_offset` (`first` if there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return first
    try:
        q = end
        while q > first:
            begin = max(first, q - _SCAN_BACK_BYTES // UNIT_SIZE)
            data = read_at_most(fd, (q - begin) * UNIT_SIZE, (begin - first) * UNIT_SIZE)
            data += bytes((q - begin) * UNIT_SIZE - len(data))  # missing bytes read as zeros
            for i in range(q - begin - 1, -1, -1):
                offset, size, _ = UNIT.unpack_from(data, i * UNIT_SIZE)
                if size and offset < commitlog_offset:
                    return begin + i + 1
            q = begin
        return first
    finally:
        os.close(fd)


class ConsumeQueues:
    """Every ConsumeQueue under one root: `root/topic/queue_id/`."""

    def __init__(
        self, root: Path, units_per_file: int, queues: dict[tuple[str, int], ConsumeQueue]
    ) -> None:
        """Use `ConsumeQueues.open`."""
        self._root = root
        self._per_file = units_per_file
        self._dirty_dirs: set[Path] = set()
        self._queues = queues

    @classmethod
    def open(
        cls,
        root: Path,
        units_per_file: int = DEFAULT_UNITS_PER_FILE,
        *,
        checkpoint_offset: int = 0,
    ) -> ConsumeQueues:
        """Open every existing topic/queue directory under `root` (created if needed).

        Topic deletes not covered by the checkpoint are undone first (see
        `delete_topic`): recovery replays the log from the checkpoint and deletes again
        whatever the log still says to delete.
        """
        root.mkdir(parents=True, exist_ok=True)
        _settle_tombstones(root, checkpoint_offset)
        queues: dict[tuple[str, int], ConsumeQueue] = {}
        for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            if topic_dir.name.startswith("."):
                continue  # Not a topic (topic names cannot start with a dot).
            for queue_dir in sorted(p for p in topic_dir.iterdir() if p.is_dir()):
                if queue_dir.name.isdigit():
                    key = (topic_dir.name, int(queue_dir.name))
                    queues[key] = ConsumeQueue.open(queue_dir, units_per_file)
        return cls(root, units_per_file, queues)

    def get(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        return self._queues.get((topic, queue_id))

    def get_or_create(self, topic: str, queue_id: int) -> ConsumeQueue:
        """The queue, creating its directories durably on first use."""
        queue = self._queues.get((topic, queue_id))
        if queue is not None:
            return queue
        assert topic not in {"", ".", ".."}, topic
        assert "/" not in topic, topic
        assert "\0" not in topic, topic
        assert queue_id >= 0, queue_id
        topic_dir = self._root / topic
        if not topic_dir.exists():
            topic_dir.mkdir()
            self._dirty_dirs.add(self._root)
        queue_dir = topic_dir / str(queue_id)
        queue_dir.mkdir(exist_ok=True)
        # Made durable with the next checkpoint, which is what counts them (recovery
        # re-dispatches what a checkpoint does not cover): no fsync on the dispatch path.
        self._dirty_dirs.add(topic_dir)
        queue = ConsumeQueue.open(queue_dir, self._per_file)
        self._queues[(topic, queue_id)] = queue
        return queue

    def items(self) -> Iterator[tuple[tuple[str, int], ConsumeQueue]]:
        """((topic, queue_id), queue) pairs, over a snapshot (safe while queues are added)."""
        return iter(list(self._queues.items()))

    def max_commitlog_end(self) -> int:
        """The highest record end any unit points at (0 if no units)."""
        return max((q.last_commitlog_end() for q in self._queues.values()), default=0)

    def write_out_all(self) -> PendingSync:
        """`write_out` of every queue, plus the directories created since the last one."""
        pending = PendingSync([], sorted(self._dirty_dirs))
        self._dirty_dirs.clear()
        for queue in list(self._queues.values()):
            pending.extend(queue.write_out())
        return pending

    def flush_all(self) -> None:
        self.write_out_all().run()

    def truncate_from(self, commitlog_offset: int) -> None:
        for queue in list(self._queues.values()):
            queue.truncate_from(commitlog_offset)

    def delete_before(self, min_commitlog_offset: int) -> int:
        """Apply retention to every queue; returns the number of files deleted."""
        return sum(q.delete_before(min_commitlog_offset) for q in list(self._queues.values()))

    def delete_topic(self, topic: str, *, at_offset: int) -> None:
        """Forget the topic's queues; keep their files as a tombstone until checkpointed.

        The delete record at `at_offset` may not be durable yet (async flush): if it is
        lost, the topic must come back with its queues, or their offsets would be reused.
        `purge_deleted` removes tombstones a checkpoint covers.
        """
        for key in [k for k in self._queues if k[0] == topic]:
            self._queues.pop(key).close()
        topic_dir = self._root / topic
        if topic_dir.exists():
            graveyard = self._root / TOMBSTONES
            graveyard.mkdir(exist_ok=True)
            topic_dir.rename(graveyard / f"{at_offset:020d}-{topic}")
            fsync_dir(graveyard)
            fsync_dir(self._root)

    def purge_deleted(self, below_offset: int) -> None:
        """Delete tombstones of topic deletes recorded below `below_offset`."""
        graveyard = self._root / TOMBSTONES
        if graveyard.exists():
            for stone in sorted(graveyard.iterdir()):
                if int(stone.name.partition("-")[0]) < below_offset:
                    shutil.rmtree(stone)

    def close(self) -> None:
        """Flush every queue."""
        self.flush_all()


TOMBSTONES = ".deleted"
SYNC_FILESYSTEM_MIN_FILES = 64


@dataclass(slots=True)
class PendingSync:
    """Files and directories written but not yet fsynced, for a checkpoint."""

    files: list[Path]
    dirs: list[Path] = field(default_factory=list)

    def extend(self, other: PendingSync) -> None:
        self.files += other.files
        self.dirs += other.dirs

    def run(self) -> None:
        """fsync them all; one deleted meanwhile (truncation, retention) needs none.

        From `SYNC_FILESYSTEM_MIN_FILES` files on, one syncfs of their filesystem does it
        instead: with 10,000 queues a checkpoint's fsyncs took 1.3-2 s of disk time and
        ~1 s of system CPU per 3 s here, one syncfs 0.05-0.14 s. It also flushes whatever
        else is dirty on that filesystem, which is why a few files are still fsynced alone.
        """
        if len(self.files) >= SYNC_FILESYSTEM_MIN_FILES and self._sync_filesystem():
            return
        for fd in _open_existing(self.files):
            os.fsync(fd)
        for directory in self.dirs:
            with contextlib.suppress(FileNotFoundError):
                fsync_dir(directory)

    def _sync_filesystem(self) -> bool:
        """syncfs through the first file still there; False if unsupported or none is."""
        with contextlib.closing(_open_existing(self.files)) as fds:
            fd = next(fds, None)
            return fd is not None and sync_filesystem(fd)


def _open_existing(paths: list[Path]) -> Generator[int, None, None]:
    """A read-only fd for each path still there, closed when the next is asked for."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            yield fd
        finally:
            os.close(fd)


def _settle_tombstones(root: Path, checkpoint_offset: int) -> None:
    """Purge tombstones the checkpoint covers; put back (earliest first) the others."""
    graveyard = root / TOMBSTONES
    if not graveyard.exists():
        return
    restored: set[str] = set()
    for stone in sorted(graveyard.iterdir()):  # Named by 20-digit offset: log order.
        offset, _, topic = stone.name.partition("-")
        if int(offset) >= checkpoint_offset and topic not in restored:
            live = root / topic
            if live.exists():  # Re-created after the delete: only units past it, redone.
                shutil.rmtree(live)
            stone.rename(live)
            restored.add(topic)
        else:
            shutil.rmtree(stone)
    fsync_dir(graveyard)
    fsync_dir(root)
