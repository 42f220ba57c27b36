"""IndexStore: query by key with time bounds, roll-over, truncation, crash recovery.

Goal: queries return every matching offset newest first within the time bounds (hash
collisions may add others), chains stay correct across files, `truncate_from` leaves no
entry at or past the cut, and a crash keeps everything flushed. Method: tiny files (few
slots and entries) under tmp_path; a crash is a copy of the directory taken mid-run.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from dledgermq.store.errors import CorruptIndex
from dledgermq.store.index_file import IndexStore


def open_small(path: Path, slots: int = 7, entries: int = 5) -> IndexStore:
    return IndexStore.open(path, slots_per_file=slots, entries_per_file=entries)


def test_put_and_query(tmp_path: Path) -> None:
    index = open_small(tmp_path, entries=100)
    for i in range(10):
        index.put(f"key{i % 3}", i * 100, 1000 + i)
    assert index.query("key1", 0, 10**12, 10) == [700, 400, 100]
    assert index.query("key1", 0, 10**12, 2) == [700, 400]
    assert index.query("key1", 1004, 1007, 10) == [700, 400]
    assert index.query("nope", 0, 10**12, 10) == []
    index.close()


def test_same_offset_many_keys(tmp_path: Path) -> None:
    index = open_small(tmp_path, entries=100)
    for key in ("a", "b", "c"):
        index.put(key, 500, 1)
    assert [index.query(k, 0, 9, 5) for k in ("a", "b", "c")] == [[500], [500], [500]]
    index.close()


def test_collisions_may_be_returned(tmp_path: Path) -> None:
    first, second = "plumless", "buckeroo"  # a well-known CRC32 collision
    assert zlib.crc32(first.encode()) == zlib.crc32(second.encode())
    index = open_small(tmp_path, slots=1, entries=100)
    index.put(first, 10, 1)
    index.put("other", 20, 1)
    index.put(second, 30, 1)
    assert index.query(first, 0, 9, 10) == [30, 10]  # the caller checks the record's key
    assert index.query("other", 0, 9, 10) == [20]
    index.close()


def test_roll_over_and_reopen(tmp_path: Path) -> None:
    index = open_small(tmp_path)
    for i in range(23):
        index.put(f"key{i % 2}", i * 10, i)
    assert len(list(tmp_path.iterdir())) == 5
    expected = [i * 10 for i in range(22, -1, -1) if i % 2 == 0]
    assert index.query("key0", 0, 100, 100) == expected
    assert index.query("key0", 3, 12, 100) == [120, 100, 80, 60, 40]
    index.close()
    again = open_small(tmp_path)
    assert again.query("key0", 0, 100, 100) == expected
    again.put("key0", 230, 23)
    assert again.query("key0", 0, 100, 1) == [230]
    again.close()


def test_truncate_from_repairs_chains(tmp_path: Path) -> None:
    index = open_small(tmp_path, slots=3)
    for i in range(18):
        index.put(f"key{i % 4}", i * 10, i)
    index.truncate_from(95)  # cuts inside the second file, drops the two newer ones
    assert len(list(tmp_path.iterdir())) == 2
    for k in range(4):
        assert index.query(f"key{k}", 0, 100, 100) == [
            i * 10 for i in range(9, -1, -1) if i % 4 == k
        ]
    for i in range(10, 14):  # re-dispatch: no duplicates, chains continue
        index.put(f"key{i % 4}", i * 10, i)
    assert index.query("key1", 0, 100, 100) == [130, 90, 50, 10]
    index.close()
    again = open_small(tmp_path, slots=3)
    assert again.query("key1", 0, 100, 100) == [130, 90, 50, 10]
    again.truncate_from(0)
    assert again.query("key1", 0, 100, 100) == []
    assert len(list(tmp_path.iterdir())) == 1
    again.put("key1", 5, 1)
    assert again.query("key1", 0, 100, 100) == [5]
    again.close()


def test_crash_keeps_what_was_flushed(tmp_path: Path) -> None:
    live = tmp_path / "live"
    index = IndexStore.open(live, slots_per_file=11, entries_per_file=100_000)
    for i in range(50):
        index.put(f"key{i % 5}", i, i)
    index.flush()
    for i in range(50, 9000):  # enough to spill entries to disk without a flush
        index.put(f"key{i % 5}", i, i)
    crashed = tmp_path / "crashed"
    shutil.copytree(live, crashed)
    index.close()
    recovered = IndexStore.open(crashed, slots_per_file=11, entries_per_file=100_000)
    assert recovered.query("key3", 0, 10**6, 100) == [48, 43, 38, 33, 28, 23, 18, 13, 8, 3]
    recovered.put("key3", 60_000, 1)
    assert recovered.query("key3", 0, 10**6, 2) == [60_000, 48]
    recovered.close()


def test_crash_between_slots_and_header(tmp_path: Path) -> None:
    """Slot heads written past the header's count are walked back to counted entries."""
    live = tmp_path / "live"
    index = IndexStore.open(live, slots_per_file=3, entries_per_file=100)
    for i in range(6):
        index.put(f"key{i % 2}", i, i)
    index.flush()
    stale_header = (live / f"{0:020d}").read_bytes()[:128]
    for i in range(6, 12):
        index.put(f"key{i % 2}", i, i)
    index.flush()
    index.close()
    path = live / f"{0:020d}"
    data = bytearray(path.read_bytes())
    data[:128] = stale_header  # as if the second header write never reached the disk
    path.write_bytes(bytes(data))
    recovered = IndexStore.open(live, slots_per_file=3, entries_per_file=100)
    assert recovered.query("key0", 0, 100, 100) == [4, 2, 0]
    recovered.close()


def test_torn_header_falls_back_to_the_other_copy(tmp_path: Path) -> None:
    index = open_small(tmp_path, entries=100)
    index.put("a", 1, 1)
    index.flush()
    index.put("a", 2, 2)
    index.close()
    path = tmp_path / f"{0:020d}"
    data = bytearray(path.read_bytes())
    newest = 0 if data[0:64] != bytes(64) and data[8] > data[64 + 8] else 64
    data[newest + 20] ^= 0xFF  # damage the newest copy
    path.write_bytes(bytes(data))
    again = open_small(tmp_path, entries=100)
    assert again.query("a", 0, 9, 9) == [1]
    again.close()


def test_corrupt_old_file_is_refused_and_unfinished_new_file_dropped(tmp_path: Path) -> None:
    index = open_small(tmp_path)
    for i in range(12):
        index.put("k", i, i)
    index.close()
    newest = sorted(tmp_path.iterdir())[-1]
    newest.write_bytes(bytes(newest.stat().st_size))  # created, header never written
    again = open_small(tmp_path)
    assert again.query("k", 0, 99, 99) == list(range(9, -1, -1))
    again.close()
    oldest = sorted(tmp_path.iterdir())[0]
    oldest.write_bytes(bytes(oldest.stat().st_size))
    with pytest.raises(CorruptIndex):
        open_small(tmp_path)


def test_delete_before(tmp_path: Path) -> None:
    index = open_small(tmp_path)
    for i in range(12):
        index.put("k", i * 10, i)
    assert index.delete_before(40) == 0  # the first file ends at 40
    assert index.delete_before(41) == 1
    assert index.delete_before(10_000) == 1  # never the active file
    assert index.query("k", 0, 99, 99) == [110, 100]
    index.close()
