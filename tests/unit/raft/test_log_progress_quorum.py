"""The small pure pieces: `RaftLog` (the log mirror), `Progress` (probe/replicate),
`quorum` (majority arithmetic) and `RaftConfig.validate`.

Method: direct calls with hand-built values; asserts in the code under test are expected
to fire on misuse (pytest.raises(AssertionError)).
"""

from __future__ import annotations

import random

import pytest

from dledgermq.raft.config import RaftConfig
from dledgermq.raft.core import RaftCore
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import AppendEntries, AppendEntriesResponse
from dledgermq.raft.progress import Progress, ProgressState
from dledgermq.raft.quorum import VoteResult, committed_index, vote_result
from dledgermq.raft.types import Entry, HardState

from .helpers import ack, appends, log_of, make_leader, persist_all


def test_log_reads_terms_slices_and_compares() -> None:
    log = RaftLog(log_of(1, 1, 2, 3))
    assert (log.first_index, log.last_index, log.last_term) == (1, 4, 3)
    assert [log.term_at(i) for i in range(6)] == [0, 1, 1, 2, 3, None]
    assert [e.index for e in log.slice(2, 5, 2)] == [2, 3]
    assert [e.index for e in log.slice(3, 99, 64)] == [3, 4]
    assert log.is_up_to_date(3, 4)
    assert log.is_up_to_date(4, 1)
    assert not log.is_up_to_date(3, 3)
    assert not log.is_up_to_date(2, 9)
    assert log.first_index_of_term(2) == 1
    assert log.last_index_of_term(1, 4) == 2
    assert log.last_index_of_term(5, 4) is None


def test_log_never_truncates_committed_entries() -> None:
    log = RaftLog(log_of(1, 1, 1))
    log.commit_to(2)
    with pytest.raises(AssertionError):
        log.truncate_from(2)
    log.truncate_from(3)
    assert log.last_index == 2
    with pytest.raises(AssertionError):
        log.commit_to(3)


def test_log_appends_only_contiguous_non_decreasing_terms() -> None:
    log = RaftLog(log_of(2))
    with pytest.raises(AssertionError):
        log.append([Entry(2, 3, b"gap")])
    with pytest.raises(AssertionError):
        log.append([Entry(1, 2, b"older term")])


def test_log_compacts_a_committed_prefix_into_its_base() -> None:
    log = RaftLog(log_of(1, 2, 2, 3))
    log.commit_to(3)
    log.compact(2)
    assert (log.first_index, log.term_at(2), log.term_at(1)) == (3, 2, None)
    assert [e.index for e in log.slice(3, 5, 10)] == [3, 4]
    with pytest.raises(AssertionError):
        log.compact(4)


def test_progress_probe_then_replicate_then_back_to_probe() -> None:
    progress = Progress(next_index=6)
    assert progress.state is ProgressState.PROBE
    progress.sent(6, 1)
    assert progress.is_paused(4)
    assert progress.update(6)
    assert progress.state is ProgressState.REPLICATE
    progress.sent(8, 2)
    progress.sent(9, 1)
    assert (progress.next_index, list(progress.inflight)) == (10, [8, 9])
    assert not progress.reject(5, 1), "a rejection at or below match is stale"
    assert progress.reject(9, 7)
    assert progress.state is ProgressState.PROBE
    assert progress.next_index == 7


def test_progress_window_bounds_replicate() -> None:
    progress = Progress(next_index=1)
    progress.become_replicate()
    for last in (1, 2, 3):
        progress.sent(last, 1)
    assert progress.is_paused(3)
    progress.update(2)
    assert list(progress.inflight) == [3]
    assert not progress.is_paused(3)


def test_progress_reject_never_goes_below_match_nor_past_the_rejected_index() -> None:
    progress = Progress(next_index=11)
    progress.match_index = 4
    progress.next_index = 11
    assert progress.reject(10, 1)
    assert progress.next_index == 5
    assert not progress.reject(9, 1), "in PROBE only the answer to the probe counts"
    assert progress.reject(4, 50)
    assert progress.next_index == 5, "never at or below match_index"


def test_committed_index_is_the_majority_match() -> None:
    assert committed_index([5]) == 5
    assert committed_index([5, 3, 1]) == 3
    assert committed_index([9, 9, 1, 1]) == 1
    assert committed_index([7, 6, 5, 1, 1]) == 5


def test_vote_result_tallies_grants_and_rejections() -> None:
    voters = (1, 2, 3)
    assert vote_result(voters, {1: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 2: False, 3: False}) is VoteResult.LOST
    assert vote_result((1, 2, 3, 4), {1: True, 2: True}) is VoteResult.PENDING


def test_config_validate_names_every_problem() -> None:
    assert RaftConfig(node_id=1, peers=(1, 2)).validate().quorum == 2
    with pytest.raises(ValueError, match="not in peers"):
        RaftConfig(node_id=9, peers=(1, 2, 3)).validate()
    with pytest.raises(ValueError, match="unique"):
        RaftConfig(node_id=1, peers=(1, 1, 2)).validate()
    with pytest.raises(ValueError, match="exceed"):
        RaftConfig(node_id=1, peers=(1,), election_timeout_ticks=2).validate()


def test_term_searches_match_a_linear_scan() -> None:
    terms = (1, 1, 2, 2, 2, 5, 7, 7)
    log = RaftLog(log_of(*terms))
    for index in range(1, len(terms) + 1):
        first = min(i for i in range(1, index + 1) if terms[i - 1] == terms[index - 1])
        assert log.first_index_of_term(index) == first
    for term in range(9):
        for upto in range(len(terms) + 2):
            found = [i for i in range(1, min(upto, len(terms)) + 1) if terms[i - 1] == term]
            assert log.last_index_of_term(term, upto) == (found[-1] if found else None)
    log.commit_to(3)
    log.compact(3)
    assert log.first_index_of_term(5) == 4, "never below first_index"
    assert log.last_index_of_term(1, 8) is None


class ListCold:
    """A cold source over a full copy of the log (what the broker reads back from disk)."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries
        self.reads: list[tuple[int, int]] = []

    def term_at(self, index: int) -> int | None:
        return self._entries[index - 1].term if 1 <= index <= len(self._entries) else None

    def entries(self, lo: int, hi: int) -> tuple[Entry, ...]:
        self.reads.append((lo, hi))
        return tuple(self._entries[lo - 1 : hi - 1])


def test_compacted_log_reads_below_its_base_from_the_cold_source() -> None:
    full = log_of(1, 1, 2, 2, 3, 3)
    cold = ListCold(full)
    log = RaftLog(full, cold=cold)
    log.commit_to(5)
    log.compact(4)
    assert (log.base_index, log.term_at(4), log.term_at(2), log.term_at(0)) == (4, 2, 1, 0)
    # A slice starting below the base stops at the base: memory and disk are not mixed.
    assert [e.index for e in log.slice(2, 7, 10)] == [2, 3, 4]
    assert cold.reads == [(2, 5)]
    assert [e.index for e in log.slice(5, 7, 10)] == [5, 6]
    assert [e.index for e in log.slice(1, 7, 2)] == [1, 2]


def test_leader_feeds_a_follower_behind_its_compacted_base() -> None:
    full = log_of(1, 1, 1, 1, 1, 1, 1, 1)
    core = RaftCore(
        RaftConfig(node_id=1, peers=(1, 2, 3), entries_per_append_max=3),
        random.Random(0),
        hard_state=HardState(1, None),
        log=RaftLog(full, cold=ListCold(full)),
    )
    make_leader(core)
    persist_all(core)
    ack(core, 2, core.last_index)
    core.ready()
    core.log.compact(8)  # the eight old entries; the new leader's no-op stays in memory
    # Follower 3 knows nothing: it refuses every append until the leader, backing off,
    # reaches index 0; from there it is fed from the cold source, three entries at a time.
    first: AppendEntries | None = None
    for _ in range(20):
        core.tick()
        for append in appends(core.ready(), 3):
            if append.prev_log_index == 0 and append.entries:
                first = append
                break
            core.step(
                AppendEntriesResponse(
                    3,
                    1,
                    core.term,
                    success=False,
                    prev_log_index=append.prev_log_index,
                    conflict_term=None,
                    conflict_index=0,
                    last_index=0,
                )
            )
        if first is not None:
            break
    assert first is not None
    assert [e.index for e in first.entries] == [1, 2, 3]
    assert [e.payload for e in first.entries] == [b"e1", b"e2", b"e3"]
