"""The rules for taking a peer's copy of a damaged record (`replication/repair.py`).

Goal: a copy is written only if it is an intact record (or padding) for exactly the asked
offset, inside this node's committed log, and of the size the damaged original had (the
bytes after it start a record); a run refilling a file cut short keeps only whole intact
records up to the committed end or the segment's padding; frames round-trip; the book
asks peers in turn and again after a timeout or a refusal, bounded.
"""

from __future__ import annotations

import pytest

from dledgermq.replication.repair import (
    REPAIR_SPAN_MAX,
    REPAIRS_OUTSTANDING_MAX,
    RepairBook,
    RepairRefused,
    RepairReply,
    RepairRequest,
    check_repair,
    check_run,
    decode_repair,
    encode_repair,
    is_repair_frame,
)
from dledgermq.store.record import MessageDraft, encode_blank, encode_entry

pytestmark = pytest.mark.timeout(10)
SEGMENT = 4096


def records(start: int, count: int) -> list[bytes]:
    drafts = [
        MessageDraft(topic="T", queue_id=0, body=bytes([i]) * 50, properties={})
        for i in range(count)
    ]
    data, positions = encode_entry(
        drafts, start_offset=start, term=2, index=7, store_timestamp_ms=1
    )
    return [bytes(data[p - start : p - start + size]) for p, size in positions]


def test_an_intact_copy_followed_by_a_record_is_accepted() -> None:
    first, second = records(1000, 2)
    check_repair(1000, first, segment_size=SEGMENT, repairable_end=10_000, following=second[:8])


def test_a_copy_ending_at_the_committed_end_needs_no_follower() -> None:
    [only] = records(1000, 1)
    check_repair(1000, only, segment_size=SEGMENT, repairable_end=1000 + len(only), following=None)


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("flipped", "not intact"),
        ("other_offset", "not intact"),
        ("past_end", "past the committed"),
        ("no_record_after", "where no record starts"),
        ("truncated", "not intact"),
    ],
)
def test_a_bad_copy_is_refused(case: str, why: str) -> None:
    first, second = records(1000, 2)
    offset, data, end, following = 1000, first, 10_000, second[:8]
    if case == "flipped":
        data = first[:-1] + bytes([first[-1] ^ 1])
    elif case == "other_offset":
        offset = 1008
    elif case == "past_end":
        end = 1000 + len(first) - 1
    elif case == "no_record_after":
        following = b"\x00" * 8
    elif case == "truncated":
        data = first[:-3]
    with pytest.raises(RepairRefused, match=why):
        check_repair(offset, data, segment_size=SEGMENT, repairable_end=end, following=following)


def test_padding_must_close_its_segment() -> None:
    check_repair(
        SEGMENT - 100, encode_blank(100), segment_size=SEGMENT, repairable_end=9000, following=None
    )
    with pytest.raises(RepairRefused, match="not intact"):
        check_repair(
            SEGMENT - 100,
            encode_blank(99),
            segment_size=SEGMENT,
            repairable_end=9000,
            following=None,
        )


def test_frames_round_trip_and_garbage_is_refused() -> None:
    for frame in (RepairRequest(5), RepairReply(5, b"abc"), RepairReply(5, None, "retired")):
        wire = encode_repair(frame)
        assert is_repair_frame(wire)
        assert decode_repair(wire) == frame
    assert not is_repair_frame({"v": 1, "t": "AppendEntries"})
    for bad in (
        {"v": 2, "t": "RepairRequest", "offset": 1},
        {"v": 1, "t": "RepairRequest", "offset": -1},
        {"v": 1, "t": "RepairRequest", "offset": True},
        {"v": 1, "t": "RepairReply", "offset": 1, "data": "text"},
    ):
        with pytest.raises(ValueError, match=r"repair frame|wrong type"):
            decode_repair(bad)


def test_the_book_asks_peers_in_turn_and_again_after_the_retry_time() -> None:
    book = RepairBook((1, 3), retry_ms=1000)
    assert book.add(100)
    assert not book.add(100)
    first = book.due(0)
    assert [o for o, _ in first] == [100]
    assert book.due(999) == []
    second = book.due(1000)
    assert {first[0][1], second[0][1]} == {1, 3}
    book.refused(100)
    assert [o for o, _ in book.due(1001)] == [100]  # a refusal: the next peer at once
    assert book.attempts(100) == 3
    book.done(100)
    assert 100 not in book
    assert book.due(5000) == []


def test_the_book_is_bounded() -> None:
    book = RepairBook((2,), retry_ms=10)
    for offset in range(REPAIRS_OUTSTANDING_MAX):
        assert book.add(offset)
    assert not book.add(REPAIRS_OUTSTANDING_MAX)
    assert len(book) == REPAIRS_OUTSTANDING_MAX


def test_a_run_refills_whole_records_up_to_the_committed_end() -> None:
    run = records(1000, 3)
    data = b"".join(run)
    # All three fit: written, and the next record starts after them.
    assert check_run(1000, data, segment_size=SEGMENT, repairable_end=10_000) == (
        len(data),
        1000 + len(data),
    )
    # The committed end cuts the run after the second record; a cut-off tail is dropped.
    end = 1000 + len(run[0]) + len(run[1])
    assert check_run(1000, data, segment_size=SEGMENT, repairable_end=end) == (end - 1000, end)
    assert check_run(1000, data[:-5], segment_size=SEGMENT, repairable_end=10_000)[1] == end
    # A damaged record ends the run; a damaged first record refuses it.
    damaged = bytearray(data)
    damaged[len(run[0]) + 60] ^= 1
    assert check_run(1000, bytes(damaged), segment_size=SEGMENT, repairable_end=10_000) == (
        len(run[0]),
        1000 + len(run[0]),
    )
    with pytest.raises(RepairRefused, match="not intact"):
        check_run(1008, data, segment_size=SEGMENT, repairable_end=10_000)


def test_a_run_ends_at_the_padding_that_closes_its_segment() -> None:
    start = SEGMENT - 400
    [record] = records(start, 1)
    padding = encode_blank(SEGMENT - start - len(record))
    data = record + padding
    assert check_run(start, data, segment_size=SEGMENT, repairable_end=3 * SEGMENT) == (
        len(data),
        SEGMENT,
    )


def test_requests_carry_a_span_and_old_requests_mean_one_record() -> None:
    assert decode_repair(encode_repair(RepairRequest(5, REPAIR_SPAN_MAX))).span == REPAIR_SPAN_MAX
    assert decode_repair({"v": 1, "t": "RepairRequest", "offset": 5}) == RepairRequest(5, 0)
    for span in (-1, REPAIR_SPAN_MAX + 1, "1", True):
        with pytest.raises(ValueError, match="span"):
            decode_repair({"v": 1, "t": "RepairRequest", "offset": 5, "span": span})
