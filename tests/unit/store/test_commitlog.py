"""CommitLog writer, reader and syncer on small (4 KiB) segments.

Goal: appends land where the format says (padding, roll-over, honest file sizes), reads
verify and cross segments, reopen/truncate/retention keep the log consistent, and followers
rebuild byte-identical logs from raw entries. Method: real files under tmp_path; file ages
are set with os.utime instead of sleeping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dledgermq.store import syncer as syncer_module
from dledgermq.store.commitlog import (
    CommitLog,
    CommitLogReader,
    CommitLogSyncer,
    EntryTooLarge,
    OffsetGone,
)
from dledgermq.store.errors import CorruptLog, CorruptRecord
from dledgermq.store.record import BLANK_SIZE, encode_record, read_blank
from dledgermq.store.segment import segment_path

from .helpers import SEGMENT, draft, fill, record_size


@pytest.fixture
def log(tmp_path: Path) -> Iterator[CommitLog]:
    log = CommitLog.open(tmp_path / "cl", SEGMENT)
    yield log
    log.close()


def reader_for(log: CommitLog) -> CommitLogReader:
    return CommitLogReader(log.directory, log.segment_size_bytes)


def test_empty_log(log: CommitLog) -> None:
    assert (log.write_offset, log.min_offset, log.last_term, log.last_index) == (0, 0, 0, 0)
    assert segment_path(log.directory, 0).exists()


def test_append_and_read_back(log: CommitLog) -> None:
    result = log.append_entry([draft(10), draft(20)], term=1, index=1, store_timestamp_ms=55)
    assert result.start_offset == 0
    assert result.positions == [(0, record_size(10)), (record_size(10), record_size(20))]
    assert result.end_offset == log.write_offset == record_size(10) + record_size(20)
    assert (log.last_term, log.last_index) == (1, 1)
    reader = reader_for(log)
    first = reader.read_record(0)
    second = reader.read_record(*result.positions[1])
    assert (first.body, first.store_timestamp_ms, first.is_entry_end) == (draft(10).body, 55, False)
    assert (second.body, second.is_entry_end) == (draft(20).body, True)
    assert (
        reader.read_bytes(0, 4)
        == encode_record(
            draft(10), term=1, index=1, commitlog_offset=0, store_timestamp_ms=55, entry_end=False
        )[:4]
    )
    assert [r.commitlog_offset for r in reader.iter_records(0, log.write_offset)] == [
        0,
        record_size(10),
    ]
    reader.close()


def test_roll_over_pads_and_seals_segments(log: CommitLog) -> None:
    results = fill(log, [[1000]] * 7)  # 1088-byte records: three per 4 KiB segment
    assert [r.start_offset for r in results] == [0, 1088, 2176, 4096, 5184, 6272, 8192]
    first = segment_path(log.directory, 0)
    assert first.stat().st_size == SEGMENT  # sealed segments are exactly one segment long
    assert read_blank(first.read_bytes(), 3264) == SEGMENT - 3264
    assert segment_path(log.directory, 8192).stat().st_size == 1088  # not preallocated
    assert log.segments == [0, 4096, 8192]
    reader = reader_for(log)
    records = list(reader.iter_records(0, log.write_offset))
    assert [r.commitlog_offset for r in records] == [r.start_offset for r in results]
    assert [r.index for r in records] == list(range(1, 8))
    assert [r.commitlog_offset for r in reader.iter_records(4096, 8192)] == [4096, 5184, 6272]
    assert [r.commitlog_offset for r in reader.iter_records(2176, 5184)] == [2176, 4096]
    reader.close()


def test_entry_leaves_room_for_padding(log: CommitLog) -> None:
    exact = SEGMENT - BLANK_SIZE - record_size(0)  # body that fills the segment but for 8 bytes
    fill(log, [[exact]])
    assert log.write_offset == SEGMENT - BLANK_SIZE
    fill(log, [[0]])
    assert log.segments == [0, 4096]
    assert log.write_offset == SEGMENT + record_size(0)


def test_entry_too_large(log: CommitLog) -> None:
    with pytest.raises(EntryTooLarge):
        fill(log, [[SEGMENT]])
    with pytest.raises(EntryTooLarge):
        fill(log, [[2000, 2000]])  # each record fits, the entry does not
    assert log.write_offset == 0
    fill(log, [[100]])
    assert log.last_index == 1


def test_reopen_recovers_same_state(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    fill(log, [[1000], [10, 20, 30], [1000], [1000], [500, 500]], term=4)
    end, last = log.write_offset, (log.last_term, log.last_index)
    log.close()
    again = CommitLog.open(tmp_path, SEGMENT)
    assert (again.write_offset, (again.last_term, again.last_index)) == (end, last)
    assert again.recovery.truncated_bytes == 0
    fill(again, [[1]])
    assert again.last_index == last[1] + 1
    again.close()


def test_partial_entry_is_dropped_on_recovery(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    fill(log, [[100], [100]])
    end = log.write_offset
    log.close()
    # A crash in the middle of a 2-record entry: only its first record reached the disk.
    orphan = encode_record(
        draft(50), term=1, index=3, commitlog_offset=end, store_timestamp_ms=1, entry_end=False
    )
    with segment_path(tmp_path, 0).open("ab") as f:
        f.write(orphan)
    again = CommitLog.open(tmp_path, SEGMENT)
    assert again.write_offset == end
    assert again.last_index == 2
    assert again.recovery.truncated_bytes == len(orphan)
    assert segment_path(tmp_path, 0).stat().st_size == end
    again.close()


def test_recovery_finishes_an_interrupted_roll(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    fill(log, [[1000]] * 4)
    log.close()
    # Crash after sealing segment 0 but before segment 4096 was created (or it was empty).
    segment_path(tmp_path, 4096).unlink()
    with segment_path(tmp_path, 0).open("r+b") as f:
        f.truncate(3264 + BLANK_SIZE)  # ... and before the ftruncate to full size
    again = CommitLog.open(tmp_path, SEGMENT)
    assert again.write_offset == 4096
    assert again.segments == [0, 4096]
    assert again.last_index == 3
    assert segment_path(tmp_path, 0).stat().st_size == SEGMENT
    fill(again, [[10]])
    assert again.last_index == 4
    again.close()


def test_empty_newest_segment_recovers_from_the_previous(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    fill(log, [[1000]] * 4)
    log.close()
    with segment_path(tmp_path, 4096).open("r+b") as f:
        f.truncate(500)  # the only entry of the newest segment is torn
    again = CommitLog.open(tmp_path, SEGMENT)
    assert (again.write_offset, again.last_index) == (4096, 3)
    again.close()


def test_gap_between_segments_is_refused(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    fill(log, [[1000]] * 8)
    log.close()
    segment_path(tmp_path, 4096).unlink()
    with pytest.raises(CorruptLog):
        CommitLog.open(tmp_path, SEGMENT)


def test_truncate_inside_a_segment(log: CommitLog) -> None:
    results = fill(log, [[100], [100, 100], [100]])
    log.truncate(results[1].end_offset)
    assert (log.write_offset, log.last_index) == (results[1].end_offset, 2)
    with pytest.raises(ValueError, match="boundary"):
        log.truncate(results[1].start_offset + 10)
    with pytest.raises(ValueError, match="boundary"):
        log.truncate(results[1].positions[1][0])  # a record boundary inside an entry
    log.truncate(0)
    assert (log.write_offset, log.last_term, log.last_index) == (0, 0, 0)
    fill(log, [[5]], term=2)
    assert (log.last_term, log.last_index) == (2, 1)


def test_truncate_across_segments_and_read_the_rewritten_tail(log: CommitLog) -> None:
    results = fill(log, [[1000]] * 8)
    reader = reader_for(log)
    assert reader.read_record(results[3].start_offset).index == 4  # caches segment 4096's fd
    log.truncate(results[3].start_offset)  # a segment start: segments 4096, 8192 go
    assert log.segments == [0, 4096]
    assert (log.write_offset, log.last_index) == (4096, 3)
    fill(log, [[900]], term=2)
    # The reader's cached fd pointed at the deleted file; it must see the new one.
    record = reader.read_record(4096)
    assert (record.term, record.index, len(record.body)) == (2, 4, 900)
    log.truncate(results[2].end_offset)  # the padding position in segment 0
    assert log.segments == [0]
    assert (log.write_offset, log.last_index) == (results[2].end_offset, 3)
    fill(log, [[10]], term=3)
    assert log.write_offset == results[2].end_offset + record_size(10)
    assert [r.index for r in reader.iter_records(0, log.write_offset)] == [1, 2, 3, 4]
    reader.close()


def test_truncate_then_reopen(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    results = fill(log, [[1000]] * 8)
    log.truncate(results[4].end_offset)
    log.close()
    again = CommitLog.open(tmp_path, SEGMENT)
    assert (again.write_offset, again.last_index) == (results[4].end_offset, 5)
    again.close()


def test_delete_expired(log: CommitLog) -> None:
    fill(log, [[1000]] * 12)  # segments 0, 4096, 8192, 12288
    now_ms = 10_000_000_000
    ages_ms = {0: 5000, 4096: 4000, 8192: 1000, 12288: 9000}
    for start, age in ages_ms.items():
        seconds = (now_ms - age) / 1000
        os.utime(segment_path(log.directory, start), (seconds, seconds))
    reader = reader_for(log)
    assert reader.read_record(0).index == 1
    assert log.delete_expired(now_ms, 3000, protect_from=4096) == [0]
    assert log.delete_expired(now_ms, 3000) == [4096]  # 8192 is too young: stop there
    assert log.min_offset == 8192
    with pytest.raises(OffsetGone):
        reader.read_record(4096)
    assert log.delete_expired(now_ms, 3000, force=True, max_files=5) == [8192]  # not the active
    assert log.segments == [12288]
    assert [r.index for r in reader.iter_records(12288, log.write_offset)] == [10, 11, 12]
    reader.close()


def test_reader_errors(log: CommitLog) -> None:
    results = fill(log, [[100], [100]])
    reader = reader_for(log)
    with pytest.raises(OffsetGone):
        reader.read_record(log.write_offset)
    with pytest.raises(CorruptRecord):
        reader.read_record(10)
    with pytest.raises(CorruptRecord):
        reader.read_record(0, record_size(100) + 1)
    with pytest.raises(ValueError, match="crosses"):
        list(reader.iter_records(0, results[0].end_offset + 5))
    with pytest.raises(OffsetGone):
        list(reader.iter_records(0, log.write_offset + 4))
    reader.close()


def test_read_records_coalesces_neighbours(log: CommitLog) -> None:
    results = fill(log, [[100, 200, 300], [400], [1000], [1000], [5, 6]])
    positions = [p for r in results for p in r.positions]
    wanted = positions[::2]  # every other record: gaps, and a segment change
    reader = reader_for(log)
    records = reader.read_records(wanted)
    assert [(r.commitlog_offset, r.size) for r in records] == wanted
    reader.close()


def test_syncer_covers_ranges(log: CommitLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the segments a range touches are fdatasynced, each through an fd of the file
    now at its path (not one a truncation unlinked); segments that do not exist are
    skipped. Every fdatasync is recorded by the inode it reached."""
    calls: list[os.stat_result] = []
    real_fdatasync = syncer_module.fdatasync

    def recording_fdatasync(fd: int) -> None:
        calls.append(os.fstat(fd))
        real_fdatasync(fd)

    monkeypatch.setattr(syncer_module, "fdatasync", recording_fdatasync)
    syncer = CommitLogSyncer(log.directory, log.segment_size_bytes)

    def synced(from_offset: int, to_offset: int) -> list[int | str]:
        """The segments one sync reached, by start offset ("unlinked": a dead inode)."""
        calls.clear()
        syncer.sync(from_offset, to_offset)
        live = {os.stat(segment_path(log.directory, s)).st_ino: s for s in log.segments}
        return [
            live.get(stat.st_ino, "another file") if stat.st_nlink else "unlinked" for stat in calls
        ]

    fill(log, [[1000]] * 9)
    assert log.segments == [0, SEGMENT, 2 * SEGMENT]
    assert synced(0, log.write_offset) == [0, SEGMENT, 2 * SEGMENT]
    assert synced(log.write_offset, log.write_offset) == []
    assert synced(SEGMENT, 2 * SEGMENT) == [SEGMENT]  # the end is exclusive
    assert synced(SEGMENT - 1, SEGMENT + 1) == [0, SEGMENT]  # across a roll: both
    assert synced(2 * SEGMENT + 1, 2 * SEGMENT + 2) == [2 * SEGMENT]

    log.truncate(SEGMENT)  # unlinks the last segment, whose fd the syncer keeps
    fill(log, [[1000]] * 5, term=2)  # and writes a new file at its path
    assert log.segments == [0, SEGMENT, 2 * SEGMENT]
    assert synced(SEGMENT, log.write_offset) == [SEGMENT, 2 * SEGMENT]  # the new file

    log.truncate(SEGMENT)
    assert synced(0, 100_000) == [0, SEGMENT]  # segments that do not exist are skipped
    syncer.close()


def test_append_raw_rebuilds_an_identical_log(tmp_path: Path) -> None:
    leader = CommitLog.open(tmp_path / "leader", SEGMENT)
    results = fill(leader, [[1000], [10, 20], [1500], [900, 900], [3000], [7], [2000, 100]])
    reader = CommitLogReader(leader.directory, SEGMENT)
    follower = CommitLog.open(tmp_path / "follower", SEGMENT)
    # Ship the first entry alone, then the rest in one batch (crossing segment rolls).
    follower.append_raw(reader.read_bytes(results[0].start_offset, 1088))
    rest = b"".join(
        reader.read_bytes(r.start_offset, r.end_offset - r.start_offset) for r in results[1:]
    )
    shipped = follower.append_raw(rest)
    assert shipped.end_offset == leader.write_offset == follower.write_offset
    assert shipped.positions == [p for r in results[1:] for p in r.positions]
    assert (follower.last_term, follower.last_index) == (leader.last_term, leader.last_index)
    for start in leader.segments:
        ours = segment_path(follower.directory, start).read_bytes()
        theirs = segment_path(leader.directory, start).read_bytes()
        assert ours == theirs
    reader.close()
    leader.close()
    follower.close()


def test_append_raw_rejects_bad_input_without_writing(tmp_path: Path) -> None:
    leader = CommitLog.open(tmp_path / "leader", SEGMENT)
    results = fill(leader, [[100], [100, 100]])
    raw = segment_path(leader.directory, 0).read_bytes()
    follower = CommitLog.open(tmp_path / "follower", SEGMENT)
    damaged = bytearray(raw)
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptRecord):
        follower.append_raw(bytes(damaged))
    with pytest.raises(CorruptRecord, match="inside an entry"):
        follower.append_raw(raw[: results[1].positions[1][0]])
    with pytest.raises(CorruptRecord):
        follower.append_raw(raw[results[1].start_offset :])  # not where the log continues
    assert follower.write_offset == 0
    assert segment_path(follower.directory, 0).stat().st_size == 0
    follower.append_raw(raw)
    with pytest.raises(CorruptRecord):
        follower.append_raw(raw[results[1].start_offset :])  # index not above last_index
    leader.close()
    follower.close()


def test_append_asserts_raft_order(log: CommitLog) -> None:
    fill(log, [[1]], term=3)
    with pytest.raises(AssertionError):
        log.append_entry([draft(1)], term=3, index=1, store_timestamp_ms=0)
    with pytest.raises(AssertionError):
        log.append_entry([draft(1)], term=2, index=2, store_timestamp_ms=0)
