"""The CommitLog record codec.

Goal: every draft survives encode/decode unchanged, and damage is caught. Method: Hypothesis
generates drafts and placements for a round-trip property; a second property flips any one
byte of an encoded record and expects `CorruptRecord`, except inside the term/index fields,
which the CRC does not cover by design (the CommitLog's entry rules check those).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.store.record import (
    BLANK_SIZE,
    FLAG_ENTRY_END,
    HEADER_SIZE,
    CorruptRecord,
    MessageDraft,
    decode_record,
    encode_blank,
    encode_entry,
    encode_record,
    encoded_size,
    read_blank,
)

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)

hosts = st.builds(
    lambda a, b, c, d, port: f"{a}.{b}.{c}.{d}:{port}",
    *[st.integers(0, 255)] * 4,
    st.integers(0, 65535),
)
drafts = st.builds(
    MessageDraft,
    topic=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    queue_id=st.integers(-(2**31), 2**31 - 1),
    body=st.binary(max_size=600),
    properties=st.dictionaries(TEXT, TEXT, max_size=4),
    born_timestamp_ms=U64,
    born_host=hosts,
    reconsume_times=U32,
    prepared_transaction_offset=st.integers(-(2**63), 2**63 - 1),
    flags=U32.map(lambda f: f & ~FLAG_ENTRY_END),
)
places = st.fixed_dictionaries(
    {
        "term": U64,
        "index": U64,
        "commitlog_offset": U64,
        "store_timestamp_ms": U64,
        "entry_end": st.booleans(),
    }
)


@settings(max_examples=150, deadline=None)
@given(draft=drafts, place=places)
def test_round_trip(draft: MessageDraft, place: dict) -> None:
    data = encode_record(draft, **place)
    assert len(data) == encoded_size(draft)
    record = decode_record(data, expected_offset=place["commitlog_offset"])
    assert (record.topic, record.queue_id, record.body) == (draft.topic, draft.queue_id, draft.body)
    assert record.properties == draft.properties
    assert record.born_timestamp_ms == draft.born_timestamp_ms
    assert record.born_host == draft.born_host
    assert record.reconsume_times == draft.reconsume_times
    assert record.prepared_transaction_offset == draft.prepared_transaction_offset
    assert record.flags & ~FLAG_ENTRY_END == draft.flags
    assert record.is_entry_end == place["entry_end"]
    assert (record.term, record.index) == (place["term"], place["index"])
    assert record.commitlog_offset == place["commitlog_offset"]
    assert record.store_timestamp_ms == place["store_timestamp_ms"]
    assert record.size == len(data)
    assert record.end_offset == place["commitlog_offset"] + len(data)


@settings(max_examples=200, deadline=None)
@given(draft=drafts, data=st.data())
def test_any_single_byte_flip_is_detected(draft: MessageDraft, data: st.DataObject) -> None:
    encoded = encode_record(
        draft, term=3, index=7, commitlog_offset=4096, store_timestamp_ms=9, entry_end=True
    )
    pos = data.draw(st.integers(0, len(encoded) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(encoded)
    damaged[pos] ^= flip
    # Term and index too (record format 2): a flipped Raft index must not pass as intact.
    with pytest.raises(CorruptRecord):
        decode_record(bytes(damaged), expected_offset=4096)


def test_wrong_offset_is_detected() -> None:
    data = encode_record(
        MessageDraft("t", 0, b"x", {}, 1),
        term=1,
        index=1,
        commitlog_offset=100,
        store_timestamp_ms=1,
        entry_end=True,
    )
    assert decode_record(data, expected_offset=100).commitlog_offset == 100
    with pytest.raises(CorruptRecord, match="offset"):
        decode_record(data, expected_offset=101)


def test_truncated_record_is_detected() -> None:
    data = encode_record(
        MessageDraft("t", 0, b"hello", {"a": "b"}, 1),
        term=1,
        index=1,
        commitlog_offset=0,
        store_timestamp_ms=1,
        entry_end=True,
    )
    for cut in (0, 7, HEADER_SIZE - 1, HEADER_SIZE, len(data) - 1):
        with pytest.raises(CorruptRecord):
            decode_record(data[:cut])


def test_blank_padding_is_recognised_and_is_not_a_record() -> None:
    blank = encode_blank(1000)
    assert len(blank) == BLANK_SIZE
    assert read_blank(blank) == 1000
    with pytest.raises(CorruptRecord):
        decode_record(blank + bytes(HEADER_SIZE))
    record = encode_record(
        MessageDraft("t", 0, b"", {}, 1),
        term=1,
        index=1,
        commitlog_offset=0,
        store_timestamp_ms=1,
        entry_end=True,
    )
    assert read_blank(record) is None


def test_entry_lays_out_records_back_to_back_with_one_end_flag() -> None:
    batch = [MessageDraft("topic", i, b"b" * i, {"k": str(i)}, 1) for i in range(4)]
    data, positions = encode_entry(batch, term=2, index=5, start_offset=1000, store_timestamp_ms=7)
    assert sum(size for _, size in positions) == len(data)
    expected = 1000
    for i, (offset, size) in enumerate(positions):
        assert offset == expected
        assert size == encoded_size(batch[i])
        record = decode_record(data, offset - 1000, expected_offset=offset)
        assert record.is_entry_end == (i == 3)
        assert (record.term, record.index, record.queue_id) == (2, 5, i)
        expected += size


def test_limits_and_reserved_flag() -> None:
    with pytest.raises(ValueError, match="topic"):
        encoded_size(MessageDraft("x" * 256, 0, b"", {}, 1))
    with pytest.raises(ValueError, match="topic"):
        encoded_size(MessageDraft("", 0, b"", {}, 1))
    with pytest.raises(AssertionError):
        encode_record(
            MessageDraft("t", 0, b"", {}, 1, flags=FLAG_ENTRY_END),
            term=1,
            index=1,
            commitlog_offset=0,
            store_timestamp_ms=0,
            entry_end=False,
        )


@pytest.mark.parametrize(
    ("host", "stored"),
    [("10.1.2.3:8080", "10.1.2.3:8080"), ("[::1]:99", "0.0.0.0:99"), ("nohost", "0.0.0.0:0")],
)
def test_born_host_is_ipv4_and_port(host: str, stored: str) -> None:
    data = encode_record(
        MessageDraft("t", 0, b"", {}, 1, born_host=host),
        term=1,
        index=1,
        commitlog_offset=0,
        store_timestamp_ms=1,
        entry_end=True,
    )
    assert decode_record(data).born_host == stored
