"""The pure part of master/slave replication (`replication/master_slave.py`).

Goal: peer frames are validated strictly (anything malformed is an `HAFrameError`, never
another exception); chunks hold whole entries only, never pass the written offset, skip the
end-of-segment padding and rebuild a byte-identical log on the other side; the master's
per-slave bookkeeping, the sync waiters and the slave's session logic behave as documented.

Method: codec round trips and mutations (Hypothesis for arbitrary maps); chunking over a
real CommitLog on 4 KiB segments (`tests/unit/store/helpers.py`), streamed into a second
log with `append_raw`; bookkeeping driven with a fake clock (plain integers).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dledgermq.replication.master_slave import (
    EMPTY_TAIL,
    Chunk,
    HAAck,
    HAFrameError,
    HAPush,
    HAReport,
    HAStatus,
    LogMismatch,
    LogTail,
    MasterLinks,
    SlaveStream,
    SlaveView,
    SyncWaiters,
    check_continues,
    check_tail,
    decode_frame,
    encode_frame,
    next_chunk,
    slave_views,
    tail_after,
    tail_of,
)
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.errors import CorruptRecord, OffsetGone
from dledgermq.store.record import MAGIC_BLANK, check_record
from dledgermq.store.segment import segment_path
from tests.unit.store.helpers import SEGMENT, fill

# -- codec ----------------------------------------------------------------------------------

FRAMES = [
    HAReport(7, LogTail(4096, 12, 3900, 0xDEADBEEF)),
    HAAck(7, 8192),
    HAPush(7, 4096, b"\x01" * 100),
]


@pytest.mark.parametrize("frame", FRAMES)
def test_frames_round_trip(frame) -> None:
    payload = encode_frame(frame)
    assert payload["v"] == 1
    assert decode_frame(payload) == frame


@given(
    st.sampled_from(FRAMES),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_valid_numbers_round_trip(frame, session: int, offset: int) -> None:
    match frame:
        case HAReport():
            frame = HAReport(session, LogTail(offset, offset // 2, offset // 3, 2**32 - 1))
        case HAAck():
            frame = HAAck(session, offset)
        case HAPush(_, _, data):
            frame = HAPush(session, offset, data)
    assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "version"),
        ({"v": True}, "version"),
        ({"t": "ha_vote"}, "unknown HA frame type"),
        ({"t": 3}, "unknown HA frame type"),
        ({"extra": 1}, "needs exactly"),
        ({"offset": -1}, "0..2"),
        ({"offset": 2**63}, "0..2"),
        ({"offset": True}, "0..2"),
        ({"offset": 1.0}, "0..2"),
        ({"session": "7"}, "0..2"),
        ({"data": "text"}, "bytes"),
        ({"data": b""}, "bytes"),
    ],
)
def test_malformed_frames_are_rejected(change: dict, message: str) -> None:
    payload = {**encode_frame(HAPush(7, 4096, b"x")), **change}
    with pytest.raises(HAFrameError, match=message):
        decode_frame(payload)


def test_missing_fields_and_non_maps_are_rejected() -> None:
    payload = encode_frame(HAReport(1, LogTail(2, 3, 0, 0)))
    del payload["last_index"]
    with pytest.raises(HAFrameError, match="needs exactly"):
        decode_frame(payload)
    for garbage in (None, [1, 2], b"frame", 7):
        with pytest.raises(HAFrameError):
            decode_frame(garbage)


def test_an_oversized_push_is_rejected() -> None:
    payload = encode_frame(HAPush(1, 0, b"x"))
    payload["data"] = bytes(64 * 1024 * 1024 + 1)
    with pytest.raises(HAFrameError, match=r"1\.\.64 MiB"):
        decode_frame(payload)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8)
)


@given(st.dictionaries(st.sampled_from(["v", "t", "session", "offset", "data", "x"]), scalars))
def test_arbitrary_maps_never_raise_anything_but_frame_errors(payload: dict) -> None:
    payload.setdefault("v", 1)
    with contextlib.suppress(HAFrameError):
        decode_frame(payload)


# -- chunks ---------------------------------------------------------------------------------


@pytest.fixture
def master(tmp_path: Path) -> Iterator[CommitLog]:
    log = CommitLog.open(tmp_path / "master", SEGMENT)
    yield log
    log.close()


def reader(log: CommitLog) -> CommitLogReader:
    return CommitLogReader(log.directory, log.segment_size_bytes)


def segment_bytes(log: CommitLog) -> list[bytes]:
    return [segment_path(log.directory, start).read_bytes() for start in log.segments]


def stream(master: CommitLog, slave: CommitLog, *, max_bytes: int, end: int | None = None) -> int:
    """Push everything below `end` from master to slave the way the actors do; returns the
    number of chunks."""
    end = master.write_offset if end is None else end
    read = reader(master).read_bytes
    chunks = 0
    while True:
        chunk = next_chunk(
            read,
            slave.write_offset,
            end,
            segment_size=SEGMENT,
            expect_index=slave.last_index,
            max_bytes=max_bytes,
        )
        if chunk is None:
            return chunks
        assert chunk.offset == slave.write_offset
        assert chunk.end <= end
        assert len(chunk.data) <= max_bytes  # every entry of these tests fits a chunk
        check_continues(
            chunk.data, chunk.offset, write_offset=slave.write_offset, last_index=slave.last_index
        )
        slave.append_raw(chunk.data)
        assert (slave.write_offset, slave.last_index) == (chunk.end, chunk.last_index)
        chunks += 1


def test_streaming_rebuilds_a_byte_identical_log_across_segment_rolls(
    master: CommitLog, tmp_path: Path
) -> None:
    fill(master, [[300], [200, 150], [900], [50]] * 8)  # about 15 KiB: several rolls
    assert len(master.segments) >= 3
    slave = CommitLog.open(tmp_path / "slave", SEGMENT)
    try:
        chunks = stream(master, slave, max_bytes=1024)
        assert chunks > len(master.segments)  # chunks are bounded, not one per segment
        assert (slave.write_offset, slave.last_index) == (master.write_offset, master.last_index)
        assert segment_bytes(slave) == segment_bytes(master)
    finally:
        slave.close()


def test_a_chunk_holds_whole_entries_within_the_limit(master: CommitLog) -> None:
    results = fill(master, [[100], [100], [100, 100], [100]])
    ends = [r.end_offset for r in results]
    limit = ends[1] + 50  # room for two entries and part of the third
    read = reader(master).read_bytes
    chunk = next_chunk(
        read, 0, master.write_offset, segment_size=SEGMENT, expect_index=0, max_bytes=limit
    )
    assert chunk is not None
    assert (chunk.end, chunk.last_index, len(chunk.data)) == (ends[1], 2, ends[1])


def test_an_entry_larger_than_the_limit_goes_alone(master: CommitLog) -> None:
    results = fill(master, [[200, 200, 200], [10]])  # one 3-record entry of ~870 bytes
    read = reader(master).read_bytes
    chunk = next_chunk(
        read, 0, master.write_offset, segment_size=SEGMENT, expect_index=0, max_bytes=300
    )
    assert chunk is not None
    assert (chunk.end, chunk.last_index) == (results[0].end_offset, 1)


def test_chunks_never_pass_the_written_offset(master: CommitLog) -> None:
    results = fill(master, [[100]] * 6)
    end = results[2].end_offset  # what the writer published so far
    read = reader(master).read_bytes
    chunk = next_chunk(read, 0, end, segment_size=SEGMENT, expect_index=0)
    assert chunk is not None
    assert chunk.end == end
    assert next_chunk(read, end, end, segment_size=SEGMENT, expect_index=3) is None


def test_a_stream_at_a_segments_padding_continues_in_the_next_segment(master: CommitLog) -> None:
    results = fill(master, [[1000]] * 4)  # three fit the first 4 KiB segment
    first_end = results[2].end_offset
    assert master.segments == [0, SEGMENT]
    read = reader(master).read_bytes
    chunk = next_chunk(read, first_end, master.write_offset, segment_size=SEGMENT, expect_index=3)
    assert chunk is not None
    assert chunk.offset == first_end  # the push is for the slave's position...
    assert chunk.data[:4] != MAGIC_BLANK.to_bytes(4, "big")  # ...and carries no padding
    assert chunk.end == master.write_offset
    assert chunk.last_index == 4


def test_a_position_inside_a_record_or_a_skipped_entry_is_refused(master: CommitLog) -> None:
    results = fill(master, [[100]] * 3)
    read = reader(master).read_bytes
    with pytest.raises(CorruptRecord):
        next_chunk(read, 10, master.write_offset, segment_size=SEGMENT, expect_index=0)
    with pytest.raises(LogMismatch, match="entry 2"):
        next_chunk(
            read, results[0].end_offset, master.write_offset, segment_size=SEGMENT, expect_index=5
        )


def test_a_retired_segment_is_reported_as_gone(master: CommitLog) -> None:
    fill(master, [[100]])

    def gone(offset: int, size: int) -> bytes:
        raise OffsetGone(f"segment of {offset} deleted")

    with pytest.raises(OffsetGone):
        next_chunk(gone, 0, master.write_offset, segment_size=SEGMENT, expect_index=0)


def test_check_continues_names_what_does_not_fit(master: CommitLog) -> None:
    results = fill(master, [[100], [100]])
    second = reader(master).read_bytes(results[0].end_offset, 188)
    end = results[0].end_offset
    check_continues(second, end, write_offset=end, last_index=1)
    with pytest.raises(LogMismatch, match="push for offset"):
        check_continues(second, end, write_offset=0, last_index=0)
    with pytest.raises(LogMismatch, match="entry 2"):
        check_continues(second, end, write_offset=end, last_index=7)
    with pytest.raises(LogMismatch, match="cannot hold"):
        check_continues(b"abc", 0, write_offset=0, last_index=0)


def test_tails_fingerprint_the_last_record(master: CommitLog) -> None:
    read = reader(master).read_bytes
    check_tail(read, EMPTY_TAIL, log_end=0, segment_size=SEGMENT)
    results = fill(master, [[100], [100, 200]])
    data = read(results[1].start_offset, results[1].end_offset - results[1].start_offset)
    ours = tail_after(data, results[1].positions[-1], 2)
    assert ours.end_offset == master.write_offset
    headers = reader(master).iter_records(0, master.write_offset, check_record)
    assert tail_of(headers, end_offset=master.write_offset, last_index=2) == ours
    assert tail_of([], end_offset=0, last_index=0) == EMPTY_TAIL
    check_tail(read, ours, log_end=master.write_offset, segment_size=SEGMENT)
    # The tail one entry earlier holds too (a slave that is behind).
    first = results[0].positions[-1]
    behind = tail_after(read(first[0], first[1]), first, 1)
    check_tail(read, behind, log_end=master.write_offset, segment_size=SEGMENT)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"record_crc": 12345}, "diverged"),
        ({"last_index": 7}, "diverged"),
        ({"record_offset": 0}, "diverged"),
        ({"end_offset": 10**6}, "beyond this master's end"),
        ({"record_offset": 4090}, "cannot end"),
    ],
)
def test_a_tail_this_log_does_not_hold_is_a_mismatch(
    master: CommitLog, change: dict, message: str
) -> None:
    results = fill(master, [[100], [100]])
    read = reader(master).read_bytes
    position = results[1].positions[-1]
    ours = tail_after(read(*position), position, 2)
    theirs = dataclasses.replace(ours, **change)
    with pytest.raises(LogMismatch, match=message):
        check_tail(read, theirs, log_end=master.write_offset, segment_size=SEGMENT)


# -- the master's bookkeeping ---------------------------------------------------------------


def test_master_links_window_acks_and_verification() -> None:
    links = MasterLinks([2, 3], window=2)
    assert not links.can_push(2, 1000, now_ms=0)  # never reported: nothing to push
    links.report(2, HAReport(5, LogTail(100, 3, 10, 1)), now_ms=0, verified=True)
    assert links.can_push(2, 1000, now_ms=0)
    assert links.best_acked() == 100
    links.pushed(2, Chunk(100, b"", 300, 4))
    links.pushed(2, Chunk(300, b"", 500, 5))
    assert not links.can_push(2, 1000, now_ms=0)  # window full
    assert links.ack(2, HAAck(5, 300), now_ms=10)
    assert links.can_push(2, 1000, now_ms=10)
    assert links.best_acked() == 300
    assert not links.ack(2, HAAck(4, 900), now_ms=20)  # an older session's ack
    assert links.best_acked() == 300
    # A slave whose tail this log does not hold never counts, however far it claims to be.
    links.report(3, HAReport(1, LogTail(5000, 9, 4000, 1)), now_ms=20, verified=False)
    assert links.ack(3, HAAck(1, 6000), now_ms=30)
    assert links.best_acked() == 300


def test_master_links_log_a_problem_once_and_resume_after_a_report() -> None:
    links = MasterLinks([2])
    links.report(2, HAReport(1, EMPTY_TAIL), now_ms=0, verified=True)
    assert links.stall(2, "diverged")
    assert not links.can_push(2, 500, now_ms=0)
    assert not links.stall(2, "diverged")  # same problem: no new log line
    links.report(2, HAReport(2, EMPTY_TAIL), now_ms=5, verified=True)
    assert links.can_push(2, 500, now_ms=5)


def test_a_burst_of_reports_cannot_make_the_master_push_without_bound() -> None:
    links = MasterLinks([2], window=2)
    links.report(2, HAReport(1, EMPTY_TAIL), now_ms=0, verified=True)
    links.pushed(2, Chunk(0, b"", 100, 1))
    links.pushed(2, Chunk(100, b"", 200, 2))
    assert not links.can_push(2, 1000, now_ms=10_000)  # the current session's never expire
    for session in range(2, 50):  # stale reports queued while the link was down
        links.report(2, HAReport(session, EMPTY_TAIL), now_ms=10_000, verified=True)
        assert not links.can_push(2, 1000, now_ms=10_000)  # the old pushes still count
    links.report(2, HAReport(50, LogTail(100, 1, 0, 7)), now_ms=10_010, verified=True)
    assert links.can_push(2, 1000, now_ms=10_010)  # the slave stored the first one
    links.pushed(2, Chunk(100, b"", 200, 2))
    assert not links.can_push(2, 1000, now_ms=10_099)
    assert links.can_push(2, 1000, now_ms=10_100)  # the old session's push went stale


def test_slaves_count_as_alive_until_silent_for_the_timeout() -> None:
    links = MasterLinks([2])
    assert links.alive(10_000, silence_ms=1000)  # no clock yet
    links.started_ms = 0
    assert links.alive(999, silence_ms=1000)  # grace after the start
    assert not links.alive(1000, silence_ms=1000)
    links.report(2, HAReport(1, EMPTY_TAIL), now_ms=1500, verified=True)
    assert links.alive(2400, silence_ms=1000)
    assert not links.alive(2500, silence_ms=1000)
    links.stall(2, "retention deleted what it needs")  # heard, but it cannot acknowledge
    assert not links.alive(2400, silence_ms=1000)
    links.report(2, HAReport(2, EMPTY_TAIL), now_ms=2400, verified=False)  # diverged
    assert not links.alive(2400, silence_ms=1000)


# -- sync waiters ---------------------------------------------------------------------------


def test_waiters_settle_in_log_order_on_acks() -> None:
    waiters: SyncWaiters[str] = SyncWaiters(timeout_ms=1000)
    for end, token in ((100, "a"), (200, "b"), (300, "c")):
        assert waiters.add(end, token, now_ms=0).confirm is None
    settled = waiters.ack(250)
    assert (settled.confirm, settled.replicated, settled.unreplicated) == (200, ("a", "b"), ())
    assert waiters.ack(250).confirm is None
    assert waiters.ack(300).replicated == ("c",)
    assert len(waiters) == 0
    assert waiters.add(300, "late", now_ms=0).replicated == ("late",)  # already acked


def test_waiters_time_out_oldest_first_with_a_fake_clock() -> None:
    waiters: SyncWaiters[str] = SyncWaiters(timeout_ms=1000)
    waiters.add(100, "a", now_ms=0)
    waiters.add(200, "b", now_ms=400)
    assert waiters.expire(999).confirm is None
    settled = waiters.expire(1000)
    assert (settled.confirm, settled.unreplicated) == (100, ("a",))
    assert waiters.expire(1399).confirm is None
    assert waiters.expire(1400).unreplicated == ("b",)


def test_without_live_slaves_every_waiter_is_given_up_at_once() -> None:
    waiters: SyncWaiters[str] = SyncWaiters(timeout_ms=1000)
    waiters.add(100, "a", now_ms=0)
    settled = waiters.add(200, "b", now_ms=10, slaves_alive=False)
    assert (settled.confirm, settled.unreplicated) == (200, ("a", "b"))


def test_an_ack_that_shrinks_does_not_settle_later_entries() -> None:
    waiters: SyncWaiters[str] = SyncWaiters(timeout_ms=1000)
    waiters.ack(500)
    waiters.ack(100)  # the slave restarted with less
    assert waiters.add(300, "a", now_ms=0).confirm is None
    assert waiters.ack(300).replicated == ("a",)


# -- the slave's stream ---------------------------------------------------------------------


def tail(end: int, index: int) -> LogTail:
    return LogTail(end, index, end - 100, index)


def test_a_slave_reports_at_start_and_acks_what_it_stored() -> None:
    stream = SlaveStream(tail=tail(100, 2), session=7, report_interval_ms=500)
    assert stream.take_report(0) == HAReport(7, tail(100, 2))
    assert stream.take_report(10) is None
    assert stream.take_push(HAPush(7, 100, b"x"))
    assert not stream.take_push(HAPush(6, 100, b"x"))  # an old session's push
    assert stream.stored(7, tail(300, 3), now_ms=20) == HAAck(7, 300)
    assert stream.take_report(400) is None  # progress 380 ms ago
    report = stream.take_report(520)  # quiet for an interval: new session
    assert report == HAReport(8, tail(300, 3))


def test_a_refusal_starts_one_new_session_reported_once_nothing_is_pending() -> None:
    stream = SlaveStream(tail=EMPTY_TAIL, session=1, report_interval_ms=500)
    assert stream.take_report(0) is not None
    assert stream.take_push(HAPush(1, 0, b"a"))
    assert stream.take_push(HAPush(1, 200, b"b"))
    assert stream.take_push(HAPush(1, 400, b"c"))
    assert stream.stored(1, tail(200, 1), now_ms=5) == HAAck(1, 200)
    assert stream.refused(1)  # the first refusal of a session is news
    assert not stream.take_push(HAPush(1, 600, b"d"))  # pushes of session 1 are stale now
    assert stream.take_report(600) is None  # one push still pending
    assert not stream.refused(1)  # follows from the first: no new session
    assert stream.take_report(600) == HAReport(2, tail(200, 1))


def test_refusals_cannot_make_reports_loop_faster_than_the_interval() -> None:
    stream = SlaveStream(tail=EMPTY_TAIL, session=1, report_interval_ms=500)
    assert stream.take_report(1000) is not None
    assert stream.take_push(HAPush(1, 0, b"a"))
    assert stream.refused(1)
    assert stream.take_report(1100) is None
    assert stream.take_report(1500) == HAReport(2, EMPTY_TAIL)


def test_an_unsent_report_is_retried_at_once() -> None:
    stream = SlaveStream(tail=EMPTY_TAIL, session=1)
    assert stream.take_report(0) is not None
    stream.unsent()
    assert stream.take_report(1) == HAReport(1, EMPTY_TAIL)


# -- status ---------------------------------------------------------------------------------


def test_status_shows_each_slaves_ack_and_lag() -> None:
    links = MasterLinks([2, 3])
    links.report(2, HAReport(1, LogTail(400, 2, 300, 1)), now_ms=100, verified=True)
    views = slave_views(links, {2: "n2", 3: "n3"}, now_ms=200, silence_ms=1000)
    assert views == (
        SlaveView("n2", 400, True, "streaming"),
        SlaveView("n3", 0, False, "waiting for a report"),
    )
    wire = HAStatus("sync", "master", views).to_wire(write_offset=1000)
    assert wire["slaves"][0] == {
        "node_id": "n2",
        "acked_offset": 400,
        "lag_bytes": 600,
        "connected": True,
        "state": "streaming",
    }
    slave = HAStatus("async", "slave", master="n1", master_addr="h:1").to_wire(write_offset=5)
    assert slave == {"ha_mode": "async", "master": "n1", "master_addr": "h:1", "write_offset": 5}
