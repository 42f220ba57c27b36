"""CommitLog recovery after a torn or damaged tail.

Goal: whatever a crash leaves in the newest segment, `CommitLog.open` keeps exactly the
longest valid prefix of complete entries, and the log works afterwards. Method: Hypothesis
builds a valid log on 4 KiB segments (several segments, multi-record entries), then damages
the newest segment: a random truncation point, optionally one flipped byte before it, and
optionally random garbage appended. The expected end is computed from the entry layout
alone. Flips inside term/index are left out: the CRC does not cover them (see
test_record.py), and sequence checks only catch some of those.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.store.commitlog import AppendResult, CommitLog, CommitLogReader
from dledgermq.store.errors import CorruptRecord, DamagedRecord
from dledgermq.store.recovery import ResumePoint
from dledgermq.store.segment import segment_path, segment_start

from .helpers import SEGMENT, fill

entries_strategy = st.lists(
    st.lists(st.integers(0, 900), min_size=1, max_size=3), min_size=1, max_size=14
)


def _uncovered(results: list[AppendResult], pos: int) -> bool:
    """Whether `pos` falls in the term/index bytes of some record header."""
    return any(8 <= pos - offset < 24 for r in results for offset, _ in r.positions)


def _expected_end(results: list[AppendResult], last_start: int, cut: int, bad: int) -> int:
    """End of the last entry that lies wholly before `cut` and before the damaged byte."""
    end = last_start
    for r in results:
        if r.start_offset >= last_start and r.end_offset <= min(cut, bad):
            end = max(end, r.end_offset)
    return end


@settings(max_examples=120, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_recovers_longest_valid_prefix(entries: list[list[int]], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = CommitLog.open(directory, SEGMENT)
        results = fill(log, entries)
        last_start = log.segments[-1]
        log_end = log.write_offset
        log.close()

        path = segment_path(directory, last_start)
        content = bytearray(path.read_bytes())
        cut = last_start + data.draw(st.integers(0, len(content)), label="cut")
        bad = cut
        if cut > last_start and data.draw(st.booleans(), label="flip"):
            flip_at = data.draw(st.integers(last_start, cut - 1), label="flip_at")
            if not _uncovered(results, flip_at):
                content[flip_at - last_start] ^= data.draw(st.integers(1, 255), label="xor")
                bad = flip_at
        garbage = data.draw(st.binary(max_size=300), label="garbage")
        path.write_bytes(bytes(content[: cut - last_start]) + garbage)

        # Segments before the newest are sealed and durable, so the end never goes below it.
        expected = _expected_end(results, last_start, cut, bad)
        recovered = CommitLog.open(directory, SEGMENT)
        assert recovered.write_offset == expected
        assert recovered.write_offset <= log_end
        kept = [r for r in results if r.end_offset <= expected]
        assert recovered.last_index == len(kept)
        assert path.stat().st_size == expected - last_start

        reader = CommitLogReader(directory, SEGMENT)
        records = list(reader.iter_records(0, recovered.write_offset))
        assert len(records) == sum(len(r.positions) for r in kept)
        fill(recovered, [[10]])  # the log goes on from the recovered end
        assert recovered.last_index == len(kept) + 1
        reader.close()
        recovered.close()

        reopened = CommitLog.open(directory, SEGMENT)
        assert reopened.last_index == len(kept) + 1
        assert reopened.recovery.truncated_bytes == 0
        reopened.close()


@settings(max_examples=40, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_index_going_backwards_stops_recovery(
    entries: list[list[int]], data: st.DataObject
) -> None:
    """A term/index flip that breaks the entry sequence is caught even without the CRC."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = CommitLog.open(directory, SEGMENT)
        results = fill(log, entries)
        log.close()
        in_last = [
            r for r in results if r.start_offset >= segment_start(results[-1].start_offset, SEGMENT)
        ]
        if len(in_last) < 2:
            return
        victim = data.draw(st.sampled_from(in_last[1:]))
        path = segment_path(directory, segment_start(victim.start_offset, SEGMENT))
        content = bytearray(path.read_bytes())
        at = victim.start_offset - segment_start(victim.start_offset, SEGMENT) + 16
        content[at : at + 8] = (1).to_bytes(8, "big")  # index 1 again: out of sequence
        path.write_bytes(bytes(content))
        recovered = CommitLog.open(directory, SEGMENT)
        assert recovered.write_offset == victim.start_offset
        recovered.close()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_bad_record_below_the_durable_floor_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    results = fill(log, [[100]] * 12)
    log.sync()
    log.close()
    victim = results[5].positions[0][0]
    path = segment_path(tmp_path, segment_start(victim, SEGMENT))
    data = bytearray(path.read_bytes())
    data[victim % SEGMENT + 40] ^= 1
    path.write_bytes(bytes(data))
    before = _files(tmp_path)
    with pytest.raises(DamagedRecord) as damaged:
        CommitLog.open(tmp_path, SEGMENT, results[-1].end_offset)
    assert damaged.value.offset == victim
    assert _files(tmp_path) == before, "nothing is cut below the floor"
    # Without the floor it is a torn tail: cut.
    reopened = CommitLog.open(tmp_path, SEGMENT)
    assert reopened.write_offset == victim
    reopened.close()


def test_a_newest_segment_cut_to_no_entry_below_the_floor_is_damage(tmp_path: Path) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    results = fill(log, [[1000]] * 6)  # three entries a segment: the newest is the second
    log.sync()
    log.close()
    newest = segment_start(results[-1].end_offset, SEGMENT)
    assert newest > 0
    segment_path(tmp_path, newest).write_bytes(b"")
    with pytest.raises(DamagedRecord) as damaged:
        CommitLog.open(tmp_path, SEGMENT, results[-1].end_offset)
    assert damaged.value.offset == newest
    # At the floor (a roll that crashed before its first entry) an empty newest segment
    # is normal.
    reopened = CommitLog.open(tmp_path, SEGMENT, newest)
    assert reopened.write_offset == newest
    reopened.close()


def test_a_flipped_size_field_is_damage_to_the_full_scan(tmp_path: Path) -> None:
    """A size that no record can have (a high bit flipped) is reported as damage where it
    is, not taken for a caller's wrong end (found by a 30-minute chaos run: the node
    crashed on every restart)."""
    log = CommitLog.open(tmp_path, SEGMENT)
    results = fill(log, [[100]] * 6)
    log.sync()
    log.close()
    victim = results[3].positions[0][0]
    path = segment_path(tmp_path, segment_start(victim, SEGMENT))
    data = bytearray(path.read_bytes())
    data[victim % SEGMENT + 4] ^= 0x20  # the size field's high byte: +512 MiB
    path.write_bytes(bytes(data))
    reader = CommitLogReader(tmp_path, SEGMENT)
    try:
        with pytest.raises(CorruptRecord, match="impossible"):
            list(reader.iter_records(0, results[-1].end_offset))
        assert reader.find_damage(0, results[-1].end_offset) == victim
    finally:
        reader.close()


@settings(max_examples=80, deadline=None)
@given(entries=entries_strategy, data=st.data())
def test_a_scan_resumed_at_a_known_entry_end_keeps_the_same_prefix(
    entries: list[list[int]], data: st.DataObject
) -> None:
    """From a resume point (an entry end in the newest segment, as the entry index summary
    gives it), recovery finds the same end as a scan from the segment start: a torn,
    damaged or garbage tail after it is cut exactly the same."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = CommitLog.open(directory, SEGMENT)
        results = fill(log, entries)
        last_start = log.segments[-1]
        log.close()
        path = segment_path(directory, last_start)
        content = bytearray(path.read_bytes())
        cut = last_start + data.draw(st.integers(0, len(content)), label="cut")
        bad = cut
        in_last = [r for r in results if last_start <= r.start_offset and r.end_offset <= cut]
        if not in_last:
            return
        point = data.draw(st.sampled_from(in_last), label="resume")
        if cut > point.end_offset and data.draw(st.booleans(), label="flip"):
            flip_at = data.draw(st.integers(point.end_offset, cut - 1), label="flip_at")
            if not _uncovered(results, flip_at):
                content[flip_at - last_start] ^= data.draw(st.integers(1, 255), label="xor")
                bad = flip_at
        garbage = data.draw(st.binary(max_size=300), label="garbage")
        path.write_bytes(bytes(content[: cut - last_start]) + garbage)
        index = results.index(point) + 1
        resume = ResumePoint(point.end_offset, 1, index)
        recovered = CommitLog.open(directory, SEGMENT, resume=resume)
        assert recovered.write_offset == _expected_end(results, last_start, cut, bad)
        assert recovered.last_index == sum(
            1 for r in results if r.end_offset <= recovered.write_offset
        )
        assert recovered.recovery.scanned_from == point.end_offset
        recovered.close()


def test_a_resumed_scan_trusts_what_lies_before_it_but_not_a_file_cut_shorter(
    tmp_path: Path,
) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    results = fill(log, [[100]] * 12)
    log.close()
    path = segment_path(tmp_path, 0)
    resume = ResumePoint(results[8].end_offset, 1, 9)
    data = bytearray(path.read_bytes())
    data[results[5].positions[0][0] + 40] ^= 1  # before the resume point: not read
    path.write_bytes(bytes(data))
    floor = results[-1].end_offset
    reopened = CommitLog.open(tmp_path, SEGMENT, floor, resume)
    assert (reopened.write_offset, reopened.last_index) == (floor, 12)
    reopened.close()
    os.truncate(path, results[7].end_offset - 10)  # cut short before the resume point
    with pytest.raises(DamagedRecord) as damaged:
        CommitLog.open(tmp_path, SEGMENT, floor, resume)
    assert damaged.value.offset == results[5].positions[0][0]  # scanned from the start
