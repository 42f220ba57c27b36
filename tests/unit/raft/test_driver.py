"""RaftDriver details the simulator does not pin down: held answers do not pile up, and
refusals are Raft's own values (`raft/outcomes.py`), never the broker's HTTP errors."""

from __future__ import annotations

from typing import Any

from dledgermq.raft.driver import DriverIO, PersistRequest, RaftDriver
from dledgermq.raft.messages import AppendEntries, AppendEntriesResponse, Message
from dledgermq.raft.outcomes import Busy, NotLeader, PrepareRefused

from .helpers import ack, make_core, make_leader, persist_all


def test_answers_held_for_a_slow_write_keep_only_the_newest_per_leader() -> None:
    sent: list[Message] = []
    requests: list[PersistRequest] = []
    driver = RaftDriver(
        make_core(node_id=2),
        DriverIO(persist=requests.append, send=sent.append),
        pending_proposals_max=10,
    )
    for _ in range(5):  # a leader's heartbeats while the first write (its term) waits
        driver.step(AppendEntries(1, 2, 1, 1, 0, 0, (), 0))
    assert len(requests) == 1  # only the new term had to be written
    assert not [m for m in sent if isinstance(m, AppendEntriesResponse)]
    assert driver.status().held_batches == 1
    driver.persisted(requests[0].seq, 0, 0)
    answers = [m for m in sent if isinstance(m, AppendEntriesResponse)]
    assert len(answers) == 1
    assert answers[0].success


class Settled:
    def __init__(self) -> None:
        self.index: int | None = None

    def ok(self, value: int) -> None:
        self.index = value

    def fail(self, error: BaseException) -> None:
        raise AssertionError(error)


def test_a_burst_of_undrained_proposals_is_persisted_and_sent_as_one() -> None:
    core = make_core(node_id=1)
    make_leader(core)
    persist_all(core)
    for peer in (2, 3):  # followers in step: appends are no longer probes
        ack(core, peer, core.last_index)
    sent: list[Message] = []
    requests: list[PersistRequest] = []
    driver = RaftDriver(
        core, DriverIO(persist=requests.append, send=sent.append), pending_proposals_max=10
    )
    driver.drain()
    requests.clear()
    sent.clear()
    replies = [Settled() for _ in range(3)]
    for i, reply in enumerate(replies):
        driver.propose(b"p%d" % i, reply, drain=False)
    assert (requests, sent) == ([], [])  # nothing happens until the drain
    driver.drain()
    [request] = requests
    assert [e.payload for e in request.entries] == [b"p0", b"p1", b"p2"]
    for peer in (2, 3):
        [append] = [m for m in sent if isinstance(m, AppendEntries) and m.dst == peer]
        assert [e.payload for e in append.entries] == [b"p0", b"p1", b"p2"]
    driver.persisted(request.seq, core.term, core.last_index)
    last = core.last_index
    prev = append.prev_log_index
    driver.step(AppendEntriesResponse(3, 1, core.term, True, prev, last, last_index=last))
    assert [r.index for r in replies] == [last - 2, last - 1, last]


class Refused:
    def __init__(self) -> None:
        self.error: BaseException | None = None

    def ok(self, value: object) -> None:
        raise AssertionError(value)

    def fail(self, error: BaseException) -> None:
        self.error = error


def test_refusals_are_raft_values_and_a_prepare_refusal_passes_its_error_through() -> None:
    follower = RaftDriver(
        make_core(node_id=2),
        DriverIO(persist=lambda _r: None, send=lambda _m: None),
        pending_proposals_max=1,
    )
    reply = Refused()
    follower.propose(b"x", reply)
    assert isinstance(reply.error, NotLeader)
    assert (reply.error.leader_id, reply.error.term) == (None, 0)
    assert str(reply.error) == "not the leader; leader is None"

    core = make_core(node_id=1)
    make_leader(core)
    persist_all(core)
    storage_error = ValueError("the disk is full")

    def refuse(payload: object, reply: object, term: int, index: int) -> tuple[object, Any]:
        raise PrepareRefused(storage_error)

    leader = RaftDriver(
        core,
        DriverIO(persist=lambda _r: None, send=lambda _m: None, prepare=refuse),
        pending_proposals_max=1,
    )
    reply = Refused()
    leader.propose(b"x", reply)
    assert reply.error is storage_error  # the storage's own error, unchanged

    leader = RaftDriver(
        core, DriverIO(persist=lambda _r: None, send=lambda _m: None), pending_proposals_max=1
    )
    leader.propose(b"1", Settled(), drain=False)
    reply = Refused()
    leader.propose(b"2", reply)
    assert isinstance(reply.error, Busy)
    assert (reply.error.pending, reply.error.reason) == (1, None)
