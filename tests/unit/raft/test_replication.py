"""Log replication: AppendEntries consistency check, truncation, back-off, batching and
pipelining (Raft §5.3, thesis §10.2), after etcd's raft_paper_test.go.

Method: a leader core and a follower core built by hand; messages are carried between
them explicitly (or answered with canned responses) and the Readies are inspected.
"""

from __future__ import annotations

import pytest

from dledgermq.raft.messages import AppendEntries, AppendEntriesResponse
from dledgermq.raft.progress import ProgressState
from dledgermq.raft.types import CommittedEntryConflict, Entry

from .helpers import ack, appends, log_of, make_core, make_leader, persist_all


def test_new_leader_probes_each_follower_with_the_noop() -> None:
    leader = make_core(terms=(1, 1), term=1)
    ready = make_leader(leader)
    for peer in (2, 3):
        (message,) = appends(ready, peer)
        assert (message.prev_log_index, message.prev_log_term) == (2, 1)
        assert [e.index for e in message.entries] == [3]
        assert message.entries[0].is_noop


def test_follower_appends_and_acknowledges_only_after_persist() -> None:
    follower = make_core(2, term=1)
    entries = tuple(log_of(1, 1))
    follower.step(AppendEntries(1, 2, 1, 1, 0, 0, entries, 1))
    ready = follower.ready()
    assert ready.entries_to_persist == list(entries)
    assert ready.messages == []
    (response,) = ready.messages_after_persist
    assert response.success
    assert response.match_index == 2
    assert ready.commit_index == 1


def test_follower_commit_is_capped_by_the_last_new_entry() -> None:
    follower = make_core(2, terms=(1, 1, 1), term=1)
    # The leader's log may differ after index 1; only index 1 is verified here.
    follower.step(AppendEntries(1, 2, 1, 1, 0, 0, (Entry(1, 1, b"e1"),), 3))
    assert follower.commit_index == 1


def test_follower_rejects_when_too_short_with_its_last_index() -> None:
    follower = make_core(2, terms=(1,), term=2)
    follower.step(AppendEntries(1, 2, 2, 1, 5, 2, (), 0))
    (response,) = follower.ready().messages_after_persist
    assert not response.success
    assert response.conflict_term is None
    assert response.last_index == 1
    assert response.prev_log_index == 5


def test_follower_rejects_a_term_mismatch_with_the_first_index_of_that_term() -> None:
    follower = make_core(2, terms=(1, 2, 2, 2), term=3)
    follower.step(AppendEntries(1, 2, 3, 1, 4, 3, (), 0))
    (response,) = follower.ready().messages_after_persist
    assert (response.conflict_term, response.conflict_index) == (2, 2)


def test_follower_truncates_a_conflicting_suffix_before_appending() -> None:
    follower = make_core(2, terms=(1, 2, 2, 2), term=3)
    new = (Entry(3, 3, b"x3"), Entry(3, 4, b"x4"))
    follower.step(AppendEntries(1, 2, 3, 1, 2, 2, new, 0))
    ready = follower.ready()
    assert ready.truncate_from == 3
    assert ready.entries_to_persist == list(new)
    assert [follower.log.term_at(i) for i in range(1, 5)] == [1, 2, 3, 3]


def test_follower_keeps_a_matching_suffix_on_a_repeated_append() -> None:
    follower = make_core(2, terms=(1, 1, 1), term=1)
    follower.step(AppendEntries(1, 2, 1, 1, 0, 0, tuple(log_of(1, 1)), 0))
    ready = follower.ready()
    assert ready.truncate_from is None
    assert ready.entries_to_persist == []
    assert follower.last_index == 3, "an old, shorter append never cuts newer entries"


def test_leader_fast_back_off_skips_a_whole_conflicting_term() -> None:
    leader = make_core(terms=(1, 1, 1, 4, 4), term=4)
    make_leader(leader)  # term 5, noop at 6
    leader.step(
        AppendEntriesResponse(
            2,
            1,
            5,
            success=False,
            prev_log_index=5,
            conflict_term=3,
            conflict_index=2,
            last_index=9,
        )
    )
    progress = leader.progress(2)
    assert progress is not None
    assert progress.state is ProgressState.PROBE
    # The leader has no term-3 entry, so it jumps to the follower's first term-3 index.
    (message,) = appends(leader.ready(), 2)
    assert message.prev_log_index == 1


def test_leader_back_off_to_the_end_of_a_shared_term() -> None:
    leader = make_core(terms=(1, 2, 2, 4), term=4)
    make_leader(leader)
    leader.step(
        AppendEntriesResponse(
            2,
            1,
            5,
            success=False,
            prev_log_index=4,
            conflict_term=2,
            conflict_index=2,
            last_index=6,
        )
    )
    (message,) = appends(leader.ready(), 2)
    assert message.prev_log_index == 3, "retry right after the leader's last term-2 entry"


def test_leader_back_off_to_a_short_follower() -> None:
    leader = make_core(terms=(1, 1, 1, 1), term=1)
    make_leader(leader)
    leader.step(AppendEntriesResponse(2, 1, 2, success=False, prev_log_index=4, last_index=1))
    (message,) = appends(leader.ready(), 2)
    assert message.prev_log_index == 1
    assert [e.index for e in message.entries] == [2, 3, 4, 5]


def test_stale_rejection_is_ignored() -> None:
    leader = make_core(terms=(1, 1, 1), term=1)
    make_leader(leader)
    ack(leader, 2, 4, prev=3)
    leader.ready()
    leader.step(AppendEntriesResponse(2, 1, 2, success=False, prev_log_index=2, last_index=1))
    progress = leader.progress(2)
    assert progress is not None
    assert progress.state is ProgressState.REPLICATE
    assert progress.match_index == 4


def test_a_follower_that_lost_acknowledged_entries_is_probed_from_its_end() -> None:
    # Follower 2 acknowledged up to 4, then restarted with a log ending at 1 (a power loss
    # under majority_memory, or its data moved aside): it rejects the heartbeat's check at
    # its match. Without forgetting the match the leader would probe at 4 forever.
    leader = make_core(terms=(1, 1, 1), term=1)
    make_leader(leader)
    ack(leader, 2, 4, prev=3)
    leader.ready()
    lost = AppendEntriesResponse(2, 1, leader.term, success=False, prev_log_index=4, last_index=1)
    leader.step(lost)
    progress = leader.progress(2)
    assert progress is not None
    assert (progress.state, progress.match_index) == (ProgressState.PROBE, 0)
    (probe,) = appends(leader.ready(), 2)
    assert probe.prev_log_index == 1
    assert [e.index for e in probe.entries] == [2, 3, 4]
    ack(leader, 2, 4, prev=1)
    assert (progress.state, progress.match_index) == (ProgressState.REPLICATE, 4)


def test_probe_sends_one_append_then_waits() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    for n in range(5):
        leader.propose(b"p%d" % n)
    ready = leader.ready()
    assert appends(ready, 2) == [], "the probe with the noop is still unanswered"


def test_replicate_pipelines_batches_up_to_the_window() -> None:
    leader = make_core(terms=(1,), term=1, entries_per_append_max=2, inflight_appends_max=3)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    leader.ready()
    for n in range(10):
        leader.propose(b"p%d" % n)
    messages = appends(leader.ready(), 2)
    assert [[e.index for e in m.entries] for m in messages] == [[3, 4], [5, 6], [7, 8]]
    assert [m.prev_log_index for m in messages] == [2, 4, 6]
    ack(leader, 2, 4, prev=2)
    (more,) = appends(leader.ready(), 2)
    assert [e.index for e in more.entries] == [9, 10]


def test_leader_batches_proposals_made_between_readies() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    leader.ready()
    for n in range(5):
        leader.propose(b"p%d" % n)
    (message,) = appends(leader.ready(), 2)
    assert [e.index for e in message.entries] == [3, 4, 5, 6, 7]


def test_heartbeat_carries_commit_capped_by_the_follower_match() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    persist_all(leader)
    ack(leader, 2, 2, prev=1)
    assert leader.commit_index == 2
    leader.ready()
    for _ in range(2):
        leader.tick()
    ready = leader.ready()
    to_2 = [m for m in appends(ready, 2) if not m.entries]
    to_3 = [m for m in appends(ready, 3) if not m.entries]
    assert [m.leader_commit for m in to_2] == [2]
    assert [m.leader_commit for m in to_3] == [0]
    assert [m.prev_log_index for m in to_3] == [0], "a probe heartbeat checks match_index"


def test_lost_appends_are_detected_by_the_next_heartbeat() -> None:
    leader = make_core(terms=(1,), term=1)
    make_leader(leader)
    ack(leader, 2, 2, prev=1)
    leader.ready()
    leader.propose(b"lost")
    leader.ready()  # the append of index 3 is lost
    for _ in range(2):
        leader.tick()
    (heartbeat,) = [m for m in appends(leader.ready(), 2) if not m.entries]
    assert heartbeat.prev_log_index == 3
    follower = make_core(2, terms=(1, 2), term=2)
    follower.step(heartbeat)
    (rejection,) = follower.ready().messages_after_persist
    leader.step(rejection)
    (resend,) = appends(leader.ready(), 2)
    assert [e.payload for e in resend.entries] == [b"lost"]


def test_leader_and_follower_converge_over_a_divergent_log() -> None:
    leader = make_core(1, terms=(1, 1, 4, 4), term=4, entries_per_append_max=2)
    follower = make_core(2, terms=(1, 1, 3, 3, 3, 3, 3), term=3)  # a deposed leader's tail
    outbox = list(make_leader(leader).messages)
    persist_all(leader)
    for _ in range(20):
        for message in outbox:
            if message.dst == 2:
                follower.step(message)
        ready = follower.ready()
        persist_all(follower)
        for message in ready.messages + ready.messages_after_persist:
            leader.step(message)
        outbox = leader.ready().messages
    assert [follower.log.term_at(i) for i in range(1, 6)] == [1, 1, 4, 4, 5]
    assert follower.last_index == 5
    assert leader.commit_index == 5


def test_append_to_follower_below_its_commit_skips_the_committed_part() -> None:
    follower = make_core(2, term=1)
    follower.step(AppendEntries(1, 2, 1, 1, 0, 0, tuple(log_of(1, 1, 1)), 3))
    follower.ready()
    assert follower.commit_index == 3
    # A delayed duplicate of an older, longer-prefix append.
    follower.step(AppendEntries(1, 2, 1, 1, 1, 1, tuple(log_of(1, 1, 1, 1)[1:]), 3))
    ready = follower.ready()
    assert ready.truncate_from is None
    assert [e.index for e in ready.entries_to_persist] == [4]
    (response,) = ready.messages_after_persist
    assert response.match_index == 4


def test_a_leader_log_that_contradicts_a_committed_entry_stops_the_follower() -> None:
    # Entries 1-3 committed here in term 1; a leader of term 3 has term 3 from index 2 on
    # (they were lost on every other node: majority_memory and a power loss). Skipping
    # them and appending after would make the logs differ for good.
    follower = make_core(2, term=1)
    follower.step(AppendEntries(1, 2, 1, 1, 0, 0, tuple(log_of(1, 1, 1)), 3))
    follower.ready()
    assert follower.commit_index == 3
    rewritten = (Entry(3, 2, b"n2"), Entry(3, 3, b"n3"), Entry(3, 4, b"n4"))
    with pytest.raises(CommittedEntryConflict, match="entry 2 is committed here in term 1"):
        follower.step(AppendEntries(3, 2, 3, 3, 1, 1, rewritten, 4))
    # A probe whose previous entry itself contradicts a committed one is caught too.
    with pytest.raises(CommittedEntryConflict) as caught:
        follower.step(AppendEntries(3, 2, 3, 3, 2, 3, (Entry(3, 3, b"n3"),), 4))
    assert (caught.value.index, caught.value.local_term, caught.value.leader_term) == (2, 1, 3)
    assert follower.ready().truncate_from is None  # Nothing was cut or appended.


def test_one_ready_orders_truncation_before_the_entries_that_replace() -> None:
    follower = make_core(2, terms=(1, 1), term=2)
    follower.step(AppendEntries(1, 2, 2, 1, 2, 1, tuple(log_of(1, 1, 1, 1)[2:]), 0))
    # A new leader of term 3 overwrites from index 2 before anything was drained.
    follower.step(AppendEntries(3, 2, 3, 3, 1, 1, (Entry(3, 2, b"n2"),), 0))
    ready = follower.ready()
    assert ready.truncate_from == 2
    assert [(e.term, e.index) for e in ready.entries_to_persist] == [(3, 2)]
    assert follower.persisted_index == 1


def test_an_append_carries_at_most_its_byte_budget_but_always_one_entry() -> None:
    core = make_core(bytes_per_append_max=250, entries_per_append_max=100)
    make_leader(core)
    persist_all(core)
    ack(core, 2, core.last_index)
    ack(core, 3, core.last_index)
    core.ready()
    for size in (100, 100, 100, 600, 10):
        assert isinstance(core.propose(b"x" * size), int)
    sizes = [[len(e.payload) for e in a.entries] for a in appends(core.ready(), 2)]
    assert sizes == [[100, 100], [100], [600], [10]]
