"""RaftDriver details the simulator does not pin down: held answers do not pile up."""

from __future__ import annotations

from dledgermq.raft.driver import DriverIO, PersistRequest, RaftDriver
from dledgermq.raft.messages import AppendEntries, AppendEntriesResponse, Message

from .helpers import make_core


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
