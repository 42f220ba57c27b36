"""EntryLayout: entries are encoded at the place every replica's CommitLog puts them.

Checked against the CommitLog itself: a log written from the layout's bytes with
`append_raw` is byte-identical to one written with `append_entry` (segment roll-overs
included); a truncation cuts where the log can continue (also when the dropped entry had
opened a new segment); the no-op encodes the same everywhere; bytes that claim another
place, term or index are refused before anything is written.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_index import EntryIndex, decode_position
from dledgermq.store.entry_layout import NOOP_TOPIC, EntryLayout
from dledgermq.store.errors import CorruptRecord, EntryTooLarge
from dledgermq.store.record import MessageDraft, decode_record
from dledgermq.store.segment import segment_path

SEGMENT = 8 * 1024


def batches(seed: int, count: int) -> list[list[MessageDraft]]:
    rng = random.Random(seed)
    return [
        [
            MessageDraft("T", rng.randrange(4), rng.randbytes(rng.randrange(1, 900)))
            for _ in range(rng.randrange(1, 4))
        ]
        for _ in range(count)
    ]


def segment_bytes(directory: Path, log: CommitLog) -> list[bytes]:
    return [segment_path(directory, s).read_bytes() for s in log.segments]


def test_layout_bytes_make_the_same_log_as_append_entry(tmp_path: Path) -> None:
    reference = CommitLog.open(tmp_path / "ref", SEGMENT)
    replica = CommitLog.open(tmp_path / "replica", SEGMENT)
    layout = EntryLayout(EntryIndex(), SEGMENT)
    for index, drafts in enumerate(batches(1, 60), start=1):
        term = 1 + index // 20
        reference.append_entry(drafts, term=term, index=index, store_timestamp_ms=7)
        encoded = layout.encode_batch(drafts, term=term, index=index, store_timestamp_ms=7)
        assert encoded.before == layout.end_offset
        write = layout.lay_out(None, [(term, index, encoded.data)])
        assert write.cut_offset is None
        replica.append_raw(write.data)
        assert (replica.write_offset, replica.last_index) == (write.end_offset, write.last_index)
    assert len(reference.segments) > 3
    assert segment_bytes(tmp_path / "ref", reference) == segment_bytes(
        tmp_path / "replica", replica
    )
    reader = CommitLogReader(tmp_path / "ref", SEGMENT)
    rebuilt = EntryIndex.rebuild(reader.iter_records(0, reference.write_offset, decode_position))
    assert [rebuilt.span(i) for i in range(1, 61)] == [layout.entries.span(i) for i in range(1, 61)]
    reader.close()
    reference.close()
    replica.close()


def test_a_burst_encoded_before_its_lay_out_makes_the_same_log(tmp_path: Path) -> None:
    """The Raft node batches proposals: several are encoded, then one Ready lays them out;
    a rejected proposal's index is encoded again (with other drafts) and replaces it."""
    reference = CommitLog.open(tmp_path / "ref", SEGMENT)
    replica = CommitLog.open(tmp_path / "replica", SEGMENT)
    layout = EntryLayout(EntryIndex(), SEGMENT)
    all_batches = batches(2, 60)
    index = 0
    for burst in (all_batches[k : k + 7] for k in range(0, 60, 7)):
        encoded = []
        for drafts in burst:
            index += 1
            rejected = layout.encode_batch(drafts[:1], term=1, index=index, store_timestamp_ms=3)
            data = layout.encode_batch(drafts, term=1, index=index, store_timestamp_ms=3).data
            assert (
                rejected.before
                == layout.encode_batch(drafts, term=1, index=index, store_timestamp_ms=3).before
            )
            reference.append_entry(drafts, term=1, index=index, store_timestamp_ms=3)
            encoded.append((1, index, data))
        replica.append_raw(layout.lay_out(None, encoded).data)
    assert len(reference.segments) > 3
    assert segment_bytes(tmp_path / "ref", reference) == segment_bytes(
        tmp_path / "replica", replica
    )


def test_only_bytes_encoded_here_are_written_unverified_and_make_the_same_log(
    tmp_path: Path,
) -> None:
    """A leader's own entries skip the record checks (`append_encoded`); an equal copy from
    a peer, or a stale encoding of a rejected proposal at the same index, does not."""
    leader = EntryLayout(EntryIndex(), SEGMENT)
    follower = EntryLayout(EntryIndex(), SEGMENT)
    ours = CommitLog.open(tmp_path / "leader", SEGMENT)
    theirs = CommitLog.open(tmp_path / "follower", SEGMENT)
    for index, drafts in enumerate(batches(3, 40), start=1):
        data = leader.encode_batch(drafts, term=1, index=index, store_timestamp_ms=5).data
        write = leader.lay_out(None, [(1, index, data)])
        assert write.local
        assert [(s.index, s.offset) for s in write.spans] == [
            (index, leader.entries.span(index)[0])
        ]
        ours.append_encoded(write.data, write.spans)
        follower.encode_batch(drafts[:1], term=1, index=index, store_timestamp_ms=5)  # stale
        copy = bytes(bytearray(data))  # equal bytes, another object: a peer's
        replicated = follower.lay_out(None, [(1, index, copy)])
        assert not replicated.local
        theirs.append_raw(replicated.data)
    assert len(ours.segments) > 2
    assert segment_bytes(tmp_path / "leader", ours) == segment_bytes(
        tmp_path / "follower", theirs
    )
    assert leader.lay_out(None, [(2, 41, None)]).local  # the no-op is always encoded here
    ours.close()
    theirs.close()


def test_truncation_cuts_where_the_log_continues_even_across_a_new_segment(
    tmp_path: Path,
) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    layout = EntryLayout(EntryIndex(), SEGMENT)
    index = 0
    # Fill until an entry opens a new segment, then drop exactly that entry.
    while len(log.segments) < 2:
        index += 1
        drafts = [MessageDraft("T", 0, b"x" * 1500)]
        data = layout.encode_batch(drafts, term=1, index=index, store_timestamp_ms=1).data
        log.append_raw(layout.lay_out(None, [(1, index, data)]).data)
    first_in_new_segment = index
    end_before = layout.entries.end_of(index - 1)
    write = layout.lay_out(first_in_new_segment, [])
    assert write.cut_offset == end_before
    log.truncate(write.cut_offset)
    assert log.segments == [0]
    # The next entry (of a later term) goes where the layout says, wherever that is.
    data = layout.encode_batch(
        [MessageDraft("T", 0, b"y" * 10)], term=2, index=first_in_new_segment, store_timestamp_ms=1
    ).data
    write = layout.lay_out(None, [(2, first_in_new_segment, data)])
    log.append_raw(write.data)
    assert (log.write_offset, log.last_term, log.last_index) == (
        write.end_offset,
        2,
        first_in_new_segment,
    )
    log.close()


def test_noop_is_deterministic_and_marked_as_a_system_record(tmp_path: Path) -> None:
    one, two = EntryLayout(EntryIndex(), SEGMENT), EntryLayout(EntryIndex(), SEGMENT)
    write_one = one.lay_out(None, [(3, 1, None)])
    write_two = two.lay_out(None, [(3, 1, None)])
    assert write_one.data == write_two.data
    record = decode_record(write_one.data, expected_offset=0)
    assert (record.topic, record.term, record.index, record.is_entry_end) == (
        NOOP_TOPIC,
        3,
        1,
        True,
    )


def test_bytes_claiming_another_place_are_refused_before_anything_changes() -> None:
    leader = EntryLayout(EntryIndex(), SEGMENT)
    follower = EntryLayout(EntryIndex(), SEGMENT)
    follower.lay_out(None, [(1, 1, None)])  # the follower's log is one entry longer
    data = leader.encode_batch([MessageDraft("T", 0, b"z")], term=1, index=1, store_timestamp_ms=1)
    with pytest.raises(CorruptRecord, match="claims"):
        follower.lay_out(None, [(1, 2, data.data)])
    assert follower.entries.last_index == 1
    with pytest.raises(CorruptRecord, match="cannot hold"):
        follower.lay_out(None, [(1, 2, b"short")])


def test_an_entry_larger_than_a_segment_is_refused() -> None:
    layout = EntryLayout(EntryIndex(), SEGMENT)
    with pytest.raises(EntryTooLarge):
        layout.encode_batch(
            [MessageDraft("T", 0, b"x" * SEGMENT)], term=1, index=1, store_timestamp_ms=1
        )
