"""ConsumeQueue and ConsumeQueues.

Goal: units are addressable by queue offset across file boundaries, survive reopen once
flushed, a torn tail is dropped, truncation and retention move the right bounds. Method:
tiny files (4 units each) under tmp_path; crashes are simulated by editing the files.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

from dledgermq.store import consume_queue
from dledgermq.store.consume_queue import (
    SYNC_FILESYSTEM_MIN_FILES,
    UNIT,
    UNIT_SIZE,
    ConsumeQueue,
    ConsumeQueues,
    CQUnit,
    tag_hash,
)

PER_FILE = 4


def fill(cq: ConsumeQueue, count: int, *, start: int = 0, step: int = 100) -> None:
    for i in range(count):
        cq.append(start + i * step, 50, i)


def offsets(units: list[CQUnit]) -> list[int]:
    return [u.commitlog_offset for u in units]


def test_tag_hash() -> None:
    assert tag_hash(None) == tag_hash("") == 0
    assert tag_hash("TagA") == tag_hash("TagA") != tag_hash("TagB")


def test_append_and_get(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    assert (cq.min_offset, cq.max_offset, cq.get(0, 10)) == (0, 0, [])
    assert cq.append(100, 10, 7) == 0
    assert cq.append(200, 20, 8) == 1
    assert cq.get(0, 10) == [CQUnit(0, 100, 10, 7), CQUnit(1, 200, 20, 8)]
    assert cq.get(1, 1) == [CQUnit(1, 200, 20, 8)]
    assert cq.get(2, 1) == []
    assert cq.get(0, 0) == []
    assert cq.last_commitlog_end() == 220
    with pytest.raises(AssertionError):
        cq.append(210, 5, 0)  # overlaps the previous record


def test_files_roll_over_and_reopen(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 10)
    cq.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{n:020d}" for n in (0, 80, 160)]  # named by byte position
    assert (tmp_path / names[0]).stat().st_size == PER_FILE * UNIT_SIZE
    assert offsets(cq.get(2, 5)) == [200, 300, 400, 500, 600]
    again = ConsumeQueue.open(tmp_path, PER_FILE)
    assert (again.min_offset, again.max_offset) == (0, 10)
    assert again.get(0, 100) == cq.get(0, 100)
    assert again.last_commitlog_end() == 950
    assert again.append(1000, 1, 0) == 10


def test_buffered_units_spill_and_stay_readable(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, 1000)
    fill(cq, 9000, step=50)  # beyond the spill threshold: part written, part buffered
    assert [u.queue_offset for u in cq.get(4090, 20)] == list(range(4090, 4110))
    assert offsets(cq.get(8999, 5)) == [449950]
    cq.close()
    again = ConsumeQueue.open(tmp_path, 1000)
    assert again.max_offset == 9000
    assert offsets(again.get(4095, 2)) == [204750, 204800]


def test_torn_unit_and_zero_tail_are_dropped(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 6)
    cq.flush()
    last = tmp_path / f"{80:020d}"
    with last.open("ab") as f:
        f.write(b"\x00" * UNIT_SIZE + UNIT.pack(700, 50, 0)[:7])  # a zero unit + a torn one
    again = ConsumeQueue.open(tmp_path, PER_FILE)
    assert again.max_offset == 6
    assert last.stat().st_size == 2 * UNIT_SIZE
    with last.open("r+b") as f:
        f.truncate(0)  # the whole newest file lost its data
    again = ConsumeQueue.open(tmp_path, PER_FILE)
    assert again.max_offset == 4
    assert not last.exists()


def test_unit_with_zero_tag_hash_survives(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    cq.append(0, 50, 0)  # offset 0 and tag 0: only the size is non-zero
    cq.flush()
    assert ConsumeQueue.open(tmp_path, PER_FILE).get(0, 1) == [CQUnit(0, 0, 50, 0)]


@pytest.mark.parametrize("flush_first", [False, True])
def test_truncate_from(tmp_path: Path, flush_first: bool) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 10)
    if flush_first:
        cq.flush()
    cq.truncate_from(650)
    assert cq.max_offset == 7
    assert offsets(cq.get(0, 100)) == [0, 100, 200, 300, 400, 500, 600]
    assert cq.append(650, 50, 0) == 7
    cq.truncate_from(400)  # lands on a file boundary
    assert cq.max_offset == 4
    cq.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{0:020d}"]
    assert ConsumeQueue.open(tmp_path, PER_FILE).max_offset == 4
    cq.truncate_from(0)
    assert (cq.min_offset, cq.max_offset) == (0, 0)
    assert cq.append(0, 10, 0) == 0


def test_truncate_from_skips_zero_garbage(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 3)
    cq.flush()
    path = tmp_path / f"{0:020d}"
    # A power loss kept a later unit but not the one before it.
    with path.open("ab") as f:
        f.write(bytes(UNIT_SIZE) + UNIT.pack(900, 50, 0))
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    assert cq.max_offset == 5
    cq.truncate_from(250)
    assert offsets(cq.get(0, 10)) == [0, 100, 200]


def test_delete_before(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 10)
    cq.flush()
    assert cq.delete_before(0) == 0
    assert cq.delete_before(550) == 1  # units 0-3 gone with their file; 4-5 skipped
    assert (cq.min_offset, cq.max_offset) == (6, 10)
    assert cq.get(5, 2) == []
    assert offsets(cq.get(6, 1)) == [600]
    assert cq.delete_before(10_000) == 1  # the newest file always stays
    assert (cq.min_offset, cq.max_offset) == (10, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{160:020d}"]
    reopened = ConsumeQueue.open(tmp_path, PER_FILE)
    assert (reopened.min_offset, reopened.max_offset) == (8, 10)
    reopened.delete_before(10_000)
    assert reopened.min_offset == 10


def test_first_offset_where(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 10)
    assert cq.first_offset_where(lambda u: u.commitlog_offset >= 450) == 5
    assert cq.first_offset_where(lambda u: True) == 0
    assert cq.first_offset_where(lambda u: False) == 10


def test_randomized_against_a_list(tmp_path: Path) -> None:
    rng = random.Random(7)
    cq = ConsumeQueue.open(tmp_path, 5)
    model: list[int] = []
    next_offset = 0
    for _ in range(400):
        action = rng.random()
        if action < 0.7:
            assert cq.append(next_offset, 10, 0) == len(model)
            model.append(next_offset)
            next_offset += 10 + rng.randrange(3) * 10
        elif action < 0.8:
            cq.flush()
            cq = ConsumeQueue.open(tmp_path, 5)
        elif action < 0.9 and model:
            cut = rng.choice(model)
            cq.truncate_from(cut)
            model = [o for o in model if o < cut]
        else:
            cq.flush()
        start = rng.randrange(len(model) + 1)
        assert offsets(cq.get(start, 7)) == model[start : start + 7]
        assert cq.max_offset == len(model)


def test_consume_queues(tmp_path: Path) -> None:
    cqs = ConsumeQueues.open(tmp_path, PER_FILE)
    assert cqs.get("A", 0) is None
    a0 = cqs.get_or_create("A", 0)
    assert cqs.get_or_create("A", 0) is a0
    fill(a0, 6)
    fill(cqs.get_or_create("A", 1), 2, start=5000)
    fill(cqs.get_or_create("%RETRY%g", 3), 3, start=9000)
    assert cqs.max_commitlog_end() == 9250
    cqs.close()

    cqs = ConsumeQueues.open(tmp_path, PER_FILE)
    assert sorted(key for key, _ in cqs.items()) == [("%RETRY%g", 3), ("A", 0), ("A", 1)]
    assert cqs.get("A", 0).max_offset == 6
    cqs.truncate_from(5100)
    assert [cqs.get(*k).max_offset for k in [("A", 0), ("A", 1), ("%RETRY%g", 3)]] == [6, 1, 0]
    assert cqs.delete_before(450) == 1
    assert cqs.get("A", 0).min_offset == 5
    cqs.delete_topic("A", at_offset=9300)
    assert cqs.get("A", 0) is None
    assert not (tmp_path / "A").exists()
    cqs.flush_all()
    # A checkpoint past the delete purges the tombstone.
    cqs.purge_deleted(9301)
    assert sorted(key for key, _ in ConsumeQueues.open(tmp_path, PER_FILE).items()) == [
        ("%RETRY%g", 3)
    ]


def test_a_delete_the_checkpoint_does_not_cover_is_undone_on_open(tmp_path: Path) -> None:
    """If the delete record was not durable (async flush, power loss), the topic's queues
    must come back as they were, or re-dispatch would reuse their offsets."""
    cqs = ConsumeQueues.open(tmp_path, PER_FILE)
    fill(cqs.get_or_create("A", 0), 6)
    cqs.flush_all()
    cqs.delete_topic("A", at_offset=1000)
    fill(cqs.get_or_create("A", 0), 2, start=2000)  # re-created after the delete
    cqs.close()
    reopened = ConsumeQueues.open(tmp_path, PER_FILE, checkpoint_offset=900)
    assert reopened.get("A", 0).max_offset == 6  # the queue as it was before the delete
    reopened.close()
    purged = ConsumeQueues.open(tmp_path, PER_FILE, checkpoint_offset=1001)
    assert purged.get("A", 0).max_offset == 6  # nothing left to restore: kept as is
    assert not (tmp_path / ".deleted").exists() or not any((tmp_path / ".deleted").iterdir())


def test_units_per_file_change_is_refused(tmp_path: Path) -> None:
    cq = ConsumeQueue.open(tmp_path, PER_FILE)
    fill(cq, 6)
    cq.flush()
    with pytest.raises(ValueError, match="aligned"):
        ConsumeQueue.open(tmp_path, 3)
    assert os.listdir(tmp_path)


@pytest.mark.parametrize("syncfs_supported", [True, False])
@pytest.mark.parametrize("queues", [3, SYNC_FILESYSTEM_MIN_FILES])
def test_a_checkpoint_of_many_files_syncs_their_filesystem_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queues: int, syncfs_supported: bool
) -> None:
    """Thousands of queues cost one syncfs per checkpoint, not one fsync each; a few files,
    or a platform without syncfs, are fsynced one by one."""
    real_sync_filesystem, real_fsync = consume_queue.sync_filesystem, os.fsync
    syncfs_calls: list[int] = []
    fsynced: list[int] = []

    def sync_filesystem(fd: int) -> bool:
        syncfs_calls.append(fd)
        return syncfs_supported and real_sync_filesystem(fd)

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    cqs = ConsumeQueues.open(tmp_path, PER_FILE)
    for queue_id in range(queues):
        fill(cqs.get_or_create("T", queue_id), 2)
    pending = cqs.write_out_all()
    assert len(pending.files) == queues
    assert pending.dirs  # the new queue directories
    monkeypatch.setattr(consume_queue, "sync_filesystem", sync_filesystem)
    monkeypatch.setattr(os, "fsync", fsync)
    pending.run()

    many = queues >= SYNC_FILESYSTEM_MIN_FILES
    assert len(syncfs_calls) == (1 if many else 0)
    one_by_one = len(pending.files) + len(pending.dirs)
    assert len(fsynced) == (0 if many and syncfs_supported else one_by_one)
    cqs.close()


@pytest.mark.skipif(sys.platform != "linux", reason="syncfs(2) is Linux's")
def test_sync_filesystem_is_a_real_syscall_on_linux(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert consume_queue.sync_filesystem(fd) is True
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        consume_queue.sync_filesystem(10_000)  # not an open fd: an error, not silence
