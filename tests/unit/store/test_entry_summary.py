"""The entry index's saved summary: a restart resumes from it and scans only the log's tail.

Checked against a real CommitLog: an index resumed from the summary (through its encoded
bytes) and continued by a scan of the tail answers exactly like the index built while
appending, for every trusted end and after retention removed the log's first segments; the
summary stays small however many entries there are; a log that disagrees with it is caught
by the check of the newest block; a damaged or foreign file is refused, never trusted.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import pytest

from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_index import EntryIndex, EntryPosition, decode_position
from dledgermq.store.entry_summary import (
    CorruptSummary,
    EntrySummary,
    decode_summary,
    encode_summary,
    load_summary,
)
from dledgermq.store.errors import UnreadableEntries
from dledgermq.store.record import FLAG_ENTRY_END
from tests.unit.store.test_entry_index import SEGMENT, TINY, as_list, write


def resumed(
    reader: CommitLogReader, summary: EntrySummary, trusted_end: int, log: CommitLog
) -> EntryIndex | None:
    """What node.load_entries does: resume, check the newest block, scan the tail."""
    entries = EntryIndex.resume(
        decode_summary(encode_summary(summary)),
        trusted_end=trusted_end,
        min_offset=log.min_offset,
        **TINY,
    )
    if entries is None:
        return None
    entries.scan = partial(reader.iter_records, decode=decode_position)
    entries.verify_newest_block()
    entries.add_scanned(reader.iter_records(entries.end_offset, log.write_offset, decode_position))
    return entries


@pytest.mark.parametrize("seed", range(6))
def test_an_index_resumed_from_its_summary_answers_like_the_one_built_while_appending(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    log, built = write(tmp_path, 80, seed)
    reader = CommitLogReader(tmp_path, SEGMENT)
    running = EntryIndex.rebuild(reader.iter_records(0, log.write_offset, decode_position), **TINY)
    running.scan = partial(reader.iter_records, decode=decode_position)
    committed = rng.randrange(10, 80)
    running.settle(committed)
    summary = running.summary(committed, marks_max=rng.choice([3, 8, 1000]))
    assert summary.mark_index[-1] == committed  # a restart scans on from the commit point
    assert summary.mark_end[-1] == built.span(committed)[1]
    for _ in range(5):
        trusted_end = rng.randrange(0, log.write_offset + 1)
        entries = resumed(reader, summary, trusted_end, log)
        if entries is None:
            assert trusted_end < summary.mark_end[0]
            continue
        assert entries.end_offset == log.write_offset
        assert as_list(entries) == as_list(built)
        assert entries.term_at(0) == 0
    reader.close()
    log.close()


def test_after_retention_the_first_mark_left_becomes_the_base(tmp_path: Path) -> None:
    log, built = write(tmp_path, 80)
    summary = built.summary(70, marks_max=20)
    log.delete_expired(0, 0, force=True, max_files=2)
    reader = CommitLogReader(tmp_path, SEGMENT)
    entries = resumed(reader, summary, log.write_offset, log)
    assert entries is not None
    base = entries.base_index
    assert base in summary.mark_index
    assert built.span(base)[1] > log.min_offset  # every entry above the base is on disk
    assert (entries.term_at(base), entries.end_of(base)) == (
        built.term_at(base),
        built.span(base)[1],
    )
    assert as_list(entries) == [row for row in as_list(built) if row[0] > base]
    reader.close()
    log.close()


def test_the_summary_stays_small_however_many_entries_there_are() -> None:
    entries = EntryIndex.rebuild(
        EntryPosition(1 + i // 50_000, i, (i - 1) * 300, 300, FLAG_ENTRY_END)
        for i in range(1, 400_001)
    )
    summary = entries.summary(399_000, marks_max=4096)
    assert len(summary.mark_index) <= 4097
    assert len(summary.run_first) == 8
    assert len(encode_summary(summary)) < 80_000


def test_a_log_that_is_not_the_summarys_is_caught_before_it_is_trusted(tmp_path: Path) -> None:
    log, built = write(tmp_path / "a", 40, seed=1)
    other, _ = write(tmp_path / "b", 40, seed=2)  # other entry sizes and terms
    reader = CommitLogReader(tmp_path / "b", SEGMENT)
    with pytest.raises(UnreadableEntries):
        resumed(reader, built.summary(40, marks_max=10), other.write_offset, other)
    reader.close()
    log.close()
    other.close()


def test_a_damaged_or_foreign_summary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "entry_summary"
    assert load_summary(path) is None
    summary = EntrySummary(10, 2, 5000, (11, 20), (2, 3), (15, 30), (6000, 9000))
    path.write_bytes(encode_summary(summary))
    assert load_summary(path) == summary
    data = bytearray(encode_summary(summary))
    for position in (0, 5, len(data) // 2, len(data) - 1):
        damaged = data.copy()
        damaged[position] ^= 0x10
        with pytest.raises(CorruptSummary):
            decode_summary(bytes(damaged))
    with pytest.raises(CorruptSummary):
        decode_summary(bytes(data[:-3]))
    out_of_order = EntrySummary(10, 2, 5000, (11, 20), (2, 3), (30, 15), (6000, 9000))
    with pytest.raises(CorruptSummary, match="ascending"):
        decode_summary(encode_summary(out_of_order))
    not_after_base = EntrySummary(10, 2, 5000, (12,), (2,), (15,), (6000,))
    with pytest.raises(CorruptSummary, match="continue the base"):
        decode_summary(encode_summary(not_after_base))
