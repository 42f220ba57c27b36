"""EntryIndex: Raft index -> (term, span) of CommitLog entries.

Checked against the CommitLog itself: rebuilt from a scan it equals the index built while
appending (with segment roll-overs), truncation returns the offset the log must be cut
at, and compaction keeps the base entry's term and end.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_index import EntryIndex, decode_position
from dledgermq.store.record import MessageDraft

SEGMENT = 8 * 1024


def write(directory: Path, entries: int, seed: int = 1) -> tuple[CommitLog, EntryIndex]:
    rng = random.Random(seed)
    log = CommitLog.open(directory, SEGMENT)
    built = EntryIndex()
    term = 1
    for index in range(1, entries + 1):
        term += rng.random() < 0.2
        drafts = [
            MessageDraft("T", 0, rng.randbytes(rng.randrange(1, 900)))
            for _ in range(rng.randrange(1, 4))
        ]
        result = log.append_entry(drafts, term=term, index=index, store_timestamp_ms=1)
        built.append(index, term, result.start_offset, result.end_offset)
    return log, built


def as_list(entries: EntryIndex) -> list[tuple[int, int | None, tuple[int, int]]]:
    return [
        (i, entries.term_at(i), entries.span(i))
        for i in range(entries.base_index + 1, entries.last_index + 1)
    ]


def test_rebuild_from_the_log_equals_the_index_built_while_appending(tmp_path: Path) -> None:
    log, built = write(tmp_path, 60)
    assert len(log.segments) > 3  # entries after padding records are covered
    reader = CommitLogReader(tmp_path, SEGMENT)
    rebuilt = EntryIndex.rebuild(reader.iter_records(0, log.write_offset, decode_position))
    assert as_list(rebuilt) == as_list(built)
    assert (rebuilt.last_index, rebuilt.last_term) == (log.last_index, log.last_term)
    assert rebuilt.end_offset == log.write_offset
    reader.close()
    log.close()


def test_truncate_ends_the_index_where_the_commitlog_is_cut(tmp_path: Path) -> None:
    log, entries = write(tmp_path, 30)
    entries.truncate_from(21)
    log.truncate(entries.end_offset)
    assert (entries.last_index, log.last_index) == (20, 20)
    assert entries.end_offset == entries.span(20)[1] == log.write_offset
    entries.truncate_from(21)  # nothing left to cut
    assert entries.last_index == 20
    log.close()


def test_compaction_keeps_the_base_term_and_end(tmp_path: Path) -> None:
    log, entries = write(tmp_path, 20)
    term_10, end_10 = entries.term_at(10), entries.span(10)[1]
    entries.compact(10)
    assert (entries.base_index, entries.base_term) == (10, term_10)
    assert entries.term_at(10) == term_10
    assert entries.end_of(10) == end_10
    assert entries.term_at(9) is None
    assert entries.term_at(21) is None
    entries.compact(20)
    assert entries.end_offset == log.write_offset
    entries.append(21, entries.last_term, log.write_offset, log.write_offset + 100)
    log.close()


def test_rebuild_after_retired_segments_makes_the_first_entry_left_the_base(
    tmp_path: Path,
) -> None:
    log, built = write(tmp_path, 60)
    log.delete_expired(0, 0, force=True, max_files=2)
    reader = CommitLogReader(tmp_path, SEGMENT)
    rebuilt = EntryIndex.rebuild(
        reader.iter_records(log.min_offset, log.write_offset, decode_position),
        start_offset=log.min_offset,
    )
    base = rebuilt.base_index
    assert built.span(base)[0] == log.min_offset  # the first entry of the first segment left
    assert rebuilt.term_at(base) == built.term_at(base)  # its term is known, not 0
    assert rebuilt.end_of(base) == built.span(base)[1]
    assert as_list(rebuilt) == [row for row in as_list(built) if row[0] > base]
    reader.close()
    log.close()


def test_appends_must_continue_the_log() -> None:
    entries = EntryIndex()
    entries.append(1, 1, 0, 10)
    with pytest.raises(AssertionError):
        entries.append(3, 1, 10, 20)  # a gap in indexes
    with pytest.raises(AssertionError):
        entries.append(2, 0, 10, 20)  # a lower term
    with pytest.raises(AssertionError):
        entries.append(2, 1, 5, 20)  # overlapping bytes


def test_last_index_ending_by_finds_the_applied_entry(tmp_path: Path) -> None:
    log, entries = write(tmp_path, 10)
    for index in range(1, 11):
        end = entries.span(index)[1]
        assert entries.last_index_ending_by(end) == index
        assert entries.last_index_ending_by(end - 1) == index - 1
    assert entries.last_index_ending_by(0) == 0
    log.close()
