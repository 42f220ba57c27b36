"""A Raft node's entry index at start: resumed from the saved summary, or a full scan.

Goal: a restart reads only the log's tail, yet never trusts what it must not. Checked on a
real CommitLog: the resumed index equals the full rebuild; a damaged record below the
resume point is not read at start (left to reads and the scrubber: that is the point) while
one in the tail is reported; anything the summary cannot vouch for (no checkpoint, a
sealed segment cut short, a summary of another log, a damaged file) falls back to the full
scan, which reports damage exactly as before.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from dledgermq.store.commitlog import CommitLogReader
from dledgermq.store.entry_index import EntryIndex, decode_position
from dledgermq.store.entry_start import LogBounds, load_entries, read_summary, rebuild_entries
from dledgermq.store.entry_summary import encode_summary
from dledgermq.store.errors import DamagedRecord
from dledgermq.store.segment import segment_path
from tests.unit.store.test_entry_index import SEGMENT, as_list, write


def flip(directory: Path, offset: int) -> None:
    path = segment_path(directory, offset - offset % SEGMENT)
    with path.open("r+b") as file:
        file.seek(offset % SEGMENT)
        byte = file.read(1)
        file.seek(offset % SEGMENT)
        file.write(bytes([byte[0] ^ 0x04]))


class Node:
    """A log of 120 entries (many segments), its summary at entry 100, its checkpoint."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "commitlog"
        self.log, self.built = write(self.dir, 120)
        self.summary_path = tmp_path / "entry_summary"
        self.summary_path.write_bytes(encode_summary(self.built.summary(100, marks_max=10)))
        self.floor = self.built.span(110)[1]  # the dispatch checkpoint
        self.reader = CommitLogReader(self.dir, SEGMENT)

    def load(self, floor: int | None = None) -> EntryIndex:
        bounds = LogBounds(
            self.dir,
            self.log.segments,
            self.log.write_offset,
            self.floor if floor is None else floor,
            SEGMENT,
        )
        entries = load_entries(self.reader, read_summary(self.summary_path), bounds).entries
        entries.scan = partial(self.reader.iter_records, decode=decode_position)
        return entries

    def rebuild(self) -> EntryIndex:
        return rebuild_entries(self.reader, 0, self.log.write_offset, SEGMENT).entries

    def close(self) -> None:
        self.reader.close()
        self.log.close()


@pytest.fixture
def node(tmp_path: Path):
    node = Node(tmp_path)
    yield node
    node.close()


def test_the_resumed_index_is_the_full_scans(node: Node) -> None:
    entries = node.load()
    assert as_list(entries) == as_list(node.built)
    assert (entries.last_index, entries.last_term) == (node.log.last_index, node.log.last_term)


def test_only_the_tail_is_read_at_start(node: Node) -> None:
    """Damage below the resume point is not read (the full scan would refuse to start);
    damage in the tail is reported where it is, as by the full scan."""
    below = node.built.span(20)[0] + 60
    flip(node.dir, below)
    node.load()
    with pytest.raises(DamagedRecord) as full:
        node.rebuild()
    assert full.value.offset == node.built.span(20)[0]
    flip(node.dir, below)  # mended
    tail = node.built.span(105)[0]
    flip(node.dir, tail + 60)
    with pytest.raises(DamagedRecord) as damaged:
        node.load()
    assert damaged.value.offset == tail


def test_without_a_checkpoint_nothing_is_trusted(node: Node) -> None:
    flip(node.dir, node.built.span(20)[0] + 60)
    with pytest.raises(DamagedRecord):
        node.load(floor=0)


def test_a_sealed_segment_cut_short_falls_back_to_the_full_scan(node: Node) -> None:
    sealed = node.log.segments[1]
    os.truncate(segment_path(node.dir, sealed), SEGMENT // 2)
    with pytest.raises(DamagedRecord) as cut:
        node.load()
    assert sealed < cut.value.offset <= sealed + SEGMENT // 2


def test_a_summary_of_another_log_or_a_damaged_one_is_not_used(node: Node, tmp_path: Path) -> None:
    other, other_built = write(tmp_path / "other", 120, seed=7)
    other.close()
    node.summary_path.write_bytes(encode_summary(other_built.summary(100, marks_max=10)))
    assert as_list(node.load()) == as_list(node.built)
    node.summary_path.write_bytes(b"\0" * 40)
    assert as_list(node.load()) == as_list(node.built)
