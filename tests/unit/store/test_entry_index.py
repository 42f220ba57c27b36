"""EntryIndex: Raft index -> (term, span) of CommitLog entries.

Checked against the CommitLog itself: rebuilt from a scan it equals the index built while
appending (with segment roll-overs), truncation returns the offset the log must be cut
at, and compaction keeps the base entry's term and end. With tiny limits (so that most
entries are forgotten and read back from the log between marks), random appends, settles,
truncations and compactions answer like a plain list of every entry; memory stays bounded.
"""

from __future__ import annotations

import random
import tracemalloc
from functools import partial
from pathlib import Path

import pytest

from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_index import EntryIndex, EntryPosition, decode_position
from dledgermq.store.errors import CorruptRecord, UnreadableEntries
from dledgermq.store.record import FLAG_ENTRY_END, MessageDraft

SEGMENT = 8 * 1024
# Forget all but 3 entries in chunks of 2, a mark every 4 entries or 3,000 bytes.
TINY = {"keep_exact": 3, "settle_chunk": 2, "mark_every_entries": 4, "mark_every_bytes": 3000}


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


@pytest.mark.parametrize("limits", [{}, TINY], ids=["default", "tiny"])
def test_rebuild_from_the_log_equals_the_index_built_while_appending(
    tmp_path: Path, limits: dict[str, int]
) -> None:
    log, built = write(tmp_path, 60)
    assert len(log.segments) > 3  # entries after padding records are covered
    reader = CommitLogReader(tmp_path, SEGMENT)
    rebuilt = EntryIndex.rebuild(
        reader.iter_records(0, log.write_offset, decode_position), **limits
    )
    rebuilt.scan = partial(reader.iter_records, decode=decode_position)
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


class ListModel:
    """Every entry's (term, start, end) in a list: what the index must answer."""

    def __init__(self) -> None:
        self.base_index, self.base_term, self.base_end = 0, 0, 0
        self.rows: list[tuple[int, int, int]] = []

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.rows)

    def end_of(self, index: int) -> int:
        return (
            self.base_end if index == self.base_index else self.rows[index - self.base_index - 1][2]
        )

    def last_index_ending_by(self, offset: int) -> int:
        return self.base_index + sum(1 for _, _, end in self.rows if end <= offset)


@pytest.mark.parametrize("seed", range(8))
def test_forgotten_entries_are_read_back_from_the_log_exactly(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    log = CommitLog.open(tmp_path, SEGMENT)
    reader = CommitLogReader(tmp_path, SEGMENT)
    entries = EntryIndex(**TINY)
    entries.scan = partial(reader.iter_records, decode=decode_position)
    model = ListModel()
    term = 1

    def append(count: int) -> None:
        nonlocal term
        for _ in range(count):
            term += rng.random() < 0.1
            index = model.last_index + 1
            drafts = [MessageDraft("T", 0, rng.randbytes(rng.randrange(1, 1500)))]
            result = log.append_entry(drafts, term=term, index=index, store_timestamp_ms=1)
            entries.append(index, term, result.start_offset, result.end_offset)
            model.rows.append((term, result.start_offset, result.end_offset))

    def check() -> None:
        assert (entries.base_index, entries.last_index) == (model.base_index, model.last_index)
        assert entries.end_offset == model.end_of(model.last_index) == log.write_offset
        assert entries.term_at(model.base_index) == model.base_term
        indexes = list(range(model.base_index + 1, model.last_index + 1))
        for index in rng.sample(indexes, min(len(indexes), 12)) + indexes[:2]:
            row = model.rows[index - model.base_index - 1]
            assert (entries.term_at(index), *entries.span(index)) == row, index
            offset = rng.choice([row[1], row[2], row[2] - 1, row[2] + 1])
            assert entries.last_index_ending_by(offset) == model.last_index_ending_by(offset)
        assert entries.last_index_ending_by(0) == model.last_index_ending_by(0)

    append(40)
    for _ in range(60):
        op = rng.random()
        if op < 0.4:
            append(rng.randrange(1, 12))
        elif op < 0.7:
            entries.settle(rng.randrange(model.base_index, model.last_index + 1))
        elif op < 0.85 and model.last_index > model.base_index + 1:
            cut = rng.randrange(model.base_index + 1, model.last_index + 1)
            entries.truncate_from(cut)
            del model.rows[cut - model.base_index - 1 :]
            log.truncate(entries.end_offset)
            term += 1  # a new leader's entries follow a cut
        elif model.last_index > model.base_index + 20:
            upto = rng.randrange(model.base_index, model.last_index - 10)
            model.base_term = (
                model.rows[upto - model.base_index - 1][0]
                if upto > model.base_index
                else model.base_term
            )
            model.base_end = model.end_of(upto)
            del model.rows[: upto - model.base_index]
            model.base_index = upto
            entries.compact(upto)
        check()
    reader.close()
    log.close()


def test_a_log_that_disagrees_with_the_marks_is_refused_with_the_range_to_check() -> None:
    def scan_of(entries: list[tuple[int, int]]) -> list[EntryPosition]:
        return [EntryPosition(t, i, (i - 1) * 100, 100, FLAG_ENTRY_END) for t, i in entries]

    entries = EntryIndex(**TINY)
    for index in range(1, 21):
        entries.append(index, 1 + index // 10, (index - 1) * 100, index * 100)
    entries.settle(20)
    entries.scan = lambda start, end: scan_of([(1, 1), (1, 2), (1, 3), (1, 4)])
    assert entries.span(2) == (100, 200)
    entries.scan = lambda start, end: scan_of([(1, 5), (1, 6), (1, 8), (1, 9)])
    with pytest.raises(UnreadableEntries, match=r"expected \(1, 7\)") as missing:
        entries.span(7)
    assert (missing.value.start, missing.value.end) == (400, 800)  # marks 4 and 8
    entries.scan = lambda start, end: scan_of([(1, 9), (2, 10), (1, 11), (2, 12)])
    with pytest.raises(UnreadableEntries, match=r"expected \(2, 11\)"):
        entries.span(11)  # right index, wrong term

    def damaged(start: int, end: int) -> list[EntryPosition]:
        raise CorruptRecord(f"CRC mismatch at {start + 100}")

    entries.scan = damaged
    with pytest.raises(UnreadableEntries, match="CRC mismatch at 1300") as bad:
        entries.span(14)
    assert (bad.value.start, bad.value.end) == (1200, 1600)


def _traced_bytes_of_index(count: int) -> int:
    positions = (
        EntryPosition(1, i, (i - 1) * 300, 300, FLAG_ENTRY_END) for i in range(1, count + 1)
    )
    tracemalloc.start()
    try:
        entries = EntryIndex.rebuild(positions)
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert entries.last_index == count
    return used


def test_memory_does_not_grow_with_the_number_of_entries() -> None:
    """The old index kept 24 B per entry (3.9 MB for 160k); this one keeps a mark per 64
    entries on top of a window of at most 32k entries whose places it knows exactly."""
    small, large = _traced_bytes_of_index(40_000), _traced_bytes_of_index(160_000)
    per_added_entry = (large - small) / 120_000
    assert per_added_entry < 3, (small, large)  # the window's size varies by 16k entries
    assert large < 1_000_000, large
