"""CommitLogRaftLog: the broker's side of the Raft node, over a real CommitLog.

Goal: show the seams the integration tests cannot isolate: a proposal is encoded at the
place the log will hold it and answered through the ReputActor only at commit; a Ready
becomes one WriteRaw whose durability report names the last entry written; the confirm
offset is the end of the committed entry; the starting mirror keeps only entries past
the applied offset in memory and reads older ones back, byte-identical, from the log.

Method: real CommitLog files in tmp_path, recording stand-ins for the actor refs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dledgermq.actors.commitlog_writer import WriteRaw
from dledgermq.actors.published import Published
from dledgermq.actors.raft_node import Persisted, PersistRequest
from dledgermq.actors.reput import Appended, Confirm
from dledgermq.errors import DiskFull, MessageTooLarge
from dledgermq.raft.outcomes import PrepareRefused
from dledgermq.raft.types import NOOP, Entry, HardState
from dledgermq.replication.raft_log import CommitLogRaftLog, ProposedBatch, SummarySaver
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.entry_index import EntryIndex, decode_position
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.entry_summary import decode_summary
from dledgermq.store.record import MessageDraft
from tests.support import ThreadReply

SEGMENT = 64 * 1024


class Recorder:
    """Stands in for an ActorRef: records what it is told."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: object) -> None:
        self.told.append(message)


def make(
    tmp_path: Path,
    layout: EntryLayout | None = None,
    *,
    disk_full: bool = False,
    summary: SummarySaver | None = None,
) -> tuple[CommitLogRaftLog, Recorder, Recorder, Recorder]:
    writer, reput, node = Recorder(), Recorder(), Recorder()
    raft_log = CommitLogRaftLog(
        layout or EntryLayout(EntryIndex(), SEGMENT),
        CommitLogReader(tmp_path, SEGMENT),
        writer=writer,  # type: ignore[arg-type]
        reput=reput,  # type: ignore[arg-type]
        fsync=True,
        disk_full=Published(disk_full),
        summary=summary,
    )
    raft_log.node = node  # type: ignore[assignment]
    return raft_log, writer, reput, node


def test_a_proposal_is_answered_through_the_reput_actor_only_at_commit(tmp_path: Path) -> None:
    raft_log, writer, reput, node = make(tmp_path)
    raft_log.persist(PersistRequest(1, None, (Entry(1, 1, NOOP),), HardState(1, 1)))
    drafts = (MessageDraft("T", 0, b"a"), MessageDraft("T", 1, b"b"))
    producer = ThreadReply()
    data, reply = raft_log.prepare(ProposedBatch(drafts, 5), producer, 1, 2)
    raft_log.persist(PersistRequest(2, None, (Entry(1, 2, data),), None))
    first, second = writer.told
    assert isinstance(first, WriteRaw)
    assert first.hard_state is not None
    assert first.fsync
    assert isinstance(second, WriteRaw)
    assert second.write.data == data
    assert (second.write.last_term, second.write.last_index) == (1, 2)
    second.on_durable()
    assert node.told == [Persisted(2, 1, 2)]
    assert reput.told == []
    reply.ok(2)
    raft_log.on_commit(2, 1)
    appended, confirm = reput.told
    assert isinstance(appended, Appended)
    assert appended.reply is producer
    assert appended.start_offset == second.write.end_offset - len(data)
    assert confirm == Confirm(second.write.end_offset)


def test_a_followers_entries_reach_the_reput_actor_in_memory_at_commit_not_when_cut(
    tmp_path: Path,
) -> None:
    """What a follower wrote goes to dispatch with the confirm that commits it (no read
    back, no second CRC check); an uncommitted entry a new leader cuts never does."""
    leader = EntryLayout(EntryIndex(), SEGMENT)
    raft_log, writer, reput, _ = make(tmp_path)

    def leaders_entry(term: int, index: int) -> bytes:
        drafts = (MessageDraft("T", 0, b"m%d-%d" % (term, index)),)
        data = leader.encode_batch(drafts, term=term, index=index, store_timestamp_ms=9).data
        leader.lay_out(None, [(term, index, data)])
        return bytes(bytearray(data))  # as received: not the object the leader encoded

    payloads = [leaders_entry(1, i) for i in (1, 2, 3)]
    raft_log.persist(
        PersistRequest(1, None, tuple(Entry(1, i, payloads[i - 1]) for i in (1, 2, 3)), None)
    )
    (write,) = writer.told
    assert not write.write.local  # a peer's bytes: the writer verifies every record
    raft_log.on_commit(1, 1)
    noop = leader.lay_out(3, [(2, 3, None)]).data  # a new leader: its no-op replaces entry 3
    replacement = leaders_entry(2, 4)
    raft_log.persist(PersistRequest(2, 3, (), None))  # entry 3 is cut before it commits
    raft_log.persist(PersistRequest(3, None, (Entry(2, 3, NOOP), Entry(2, 4, replacement)), None))
    raft_log.on_commit(4, 2)
    first, second = reput.told
    assert [(e.before, e.start_offset, e.data) for e in first.entries] == [(0, 0, payloads[0])]
    assert first.offset == len(payloads[0])
    # Entry 2 as written first; entry 3 only as written again after the cut (the no-op).
    assert [e.data for e in second.entries] == [payloads[1], noop, replacement]
    ends = [raft_log.layout.entries.end_of(i) for i in (1, 2, 3, 4)]
    assert [e.before for e in second.entries] == ends[:3]
    assert [e.end_offset for e in second.entries] == ends[1:]
    assert second.offset == ends[3]
    raft_log.on_commit(4, 2)
    assert reput.told[-1].entries == ()


def test_a_batch_that_cannot_fit_a_segment_is_refused_before_replication(tmp_path: Path) -> None:
    raft_log, writer, _, _ = make(tmp_path)
    with pytest.raises(PrepareRefused) as refused:
        raft_log.prepare(
            ProposedBatch((MessageDraft("T", 0, b"x" * SEGMENT),), 1), ThreadReply(), 1, 1
        )
    assert isinstance(refused.value.error, MessageTooLarge)  # the producer's answer
    assert writer.told == []


def test_a_proposal_is_refused_while_the_disk_is_full(tmp_path: Path) -> None:
    raft_log, writer, _, _ = make(tmp_path, disk_full=True)  # the writer's flag is set
    with pytest.raises(PrepareRefused) as refused:
        raft_log.prepare(ProposedBatch((MessageDraft("T", 0, b"x"),), 1), ThreadReply(), 1, 1)
    assert isinstance(refused.value.error, DiskFull)
    assert writer.told == []


def test_the_mirror_holds_the_unapplied_tail_and_reads_the_rest_from_the_log(
    tmp_path: Path,
) -> None:
    log = CommitLog.open(tmp_path, SEGMENT)
    for index in range(1, 41):
        drafts = [MessageDraft("T", 0, bytes([index]) * 3000)]
        log.append_entry(drafts, term=1 + index // 20, index=index, store_timestamp_ms=1)
    reader = CommitLogReader(tmp_path, SEGMENT)
    layout = EntryLayout.rebuild(
        reader.iter_records(0, log.write_offset, decode_position), SEGMENT, start_offset=0
    )
    raft_log, *_ = make(tmp_path, layout)
    applied = layout.entries.end_of(30)
    mirror = raft_log.mirror(applied + 10)  # inside entry 31: only 30 counts as applied
    assert (mirror.base_index, mirror.last_index, mirror.commit_index) == (30, 40, 30)
    assert mirror.term_at(30) == layout.entries.term_at(30)
    assert mirror.term_at(12) == 1
    cold = mirror.slice(5, 41, 100)
    assert [e.index for e in cold] == list(range(5, 31))
    for entry in cold + mirror.slice(31, 41, 100):
        start, end = layout.entries.span(entry.index)
        assert entry.payload == reader.read_bytes(start, end - start)
    log.close()
    reader.close()


def test_a_damaged_forgotten_entry_goes_to_repair_and_a_retired_one_is_not_sent(
    tmp_path: Path,
) -> None:
    """Entries the index forgot are read back from the log for a follower far behind: a
    damaged record there is reported for repair (nothing from it on is sent), and entries
    whose block starts in a segment retention removed are simply not sent (the follower
    must be re-seeded), never a crash of the leader."""
    log = CommitLog.open(tmp_path, SEGMENT)
    small = {
        "keep_exact": 3,
        "settle_chunk": 2,
        "mark_every_entries": 4,
        "mark_every_bytes": 1 << 20,
    }
    entries = EntryIndex(**small)
    for index in range(1, 61):
        result = log.append_entry(
            [MessageDraft("T", 0, bytes([index]) * 3000)], term=1, index=index, store_timestamp_ms=1
        )
        entries.append(index, 1, result.start_offset, result.end_offset)
    raft_log, *_ = make(tmp_path, EntryLayout(entries, SEGMENT))
    entries.settle(60)
    damaged: list[int] = []
    raft_log.on_damaged = damaged.append
    assert [e.index for e in raft_log.entries(5, 12)] == list(range(5, 12))

    start_14 = entries.span(14)[0]
    segment = tmp_path / f"{start_14 - start_14 % SEGMENT:020d}"
    data = bytearray(segment.read_bytes())
    data[start_14 % SEGMENT + 500] ^= 0xFF  # a body byte of entry 14 (block 13..16)
    segment.write_bytes(bytes(data))
    sent = raft_log.entries(10, 20)
    assert [e.index for e in sent] == [10, 11, 12]
    assert damaged == [start_14]

    log.delete_expired(0, 0, force=True, max_files=1)  # retires the first segment
    assert raft_log.entries(2, 10) == ()
    log.close()


def test_the_entry_index_summary_is_saved_each_time_enough_more_of_the_log_commits(
    tmp_path: Path,
) -> None:
    """A restart scans about `every_bytes` of the log: a summary ending at the committed
    entry goes out (to the file syncer) each time that much more committed, not per commit."""
    saved: list[bytes] = []
    raft_log, _, _, _ = make(tmp_path, summary=SummarySaver(10_000, saved.append))
    entries = raft_log.layout.entries
    for index in range(1, 101):
        entries.append(index, 1 + index // 40, (index - 1) * 1_000, index * 1_000)
    for index in range(3, 101, 3):  # commits of 3 entries, 3,000 bytes
        raft_log.on_commit(index, 1)
    summaries = [decode_summary(data) for data in saved]
    assert [s.mark_index[-1] for s in summaries] == [12, 24, 36, 48, 60, 72, 84, 96]
    last = summaries[-1]
    assert (last.mark_end[-1], last.run_first, last.run_term) == (96_000, (1, 40, 80), (1, 2, 3))
