"""Any message a client can send is refused at the edge or applied on all three replicas.

Goal: the rule of issue 20 as a property of the running system, not of pure code: whatever
a client puts in a send (any properties, reserved names with hostile values, any body, any
delay level or deliver-at time, any topic name, plain or transactional), the leader
answers 200 or 4xx, never 5xx; no node stops; afterwards every replica has dispatched the
same committed log and passed over nothing (nothing unreadable reached it).
Method: hypothesis draws requests against one real three-node Raft group (one OS process
per node, started through the CLI on 127.0.0.1, stopped by PID also on failure);
convergence is awaited by polling `/status`.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dledgermq.broker.reserved import BROKER_ONLY, INTERPRETED
from dledgermq.cli.launcher import fetch_status
from tests.conftest import wait_until
from tests.integration.conftest import Cluster, started, write_test_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
EXAMPLES = 300

HOSTILE_VALUES = [
    "%SYS%TOPIC",
    "%SYS%BROKER",
    "%SYS%OFFSET",
    "%DELAY%SCHEDULE",
    "%TRANS%HALF",
    "%RETRY%g",
    "%DLQ%g",
    "RO",
    "T",
    "0",
    "-1",
    "3000000000",
    "99999999999999999999",
    "\u00b2",
    "\u0660",
    " 1",
    "",
    "\ud800",
    "not-a-number",
]
D3 = {"REAL_TOPIC": "%SYS%TOPIC", "REAL_QID": "0"}
D6 = {"REAL_QID": "3000000000"}
names = st.sampled_from(sorted(INTERPRETED)) | st.text(min_size=1, max_size=12)
values = st.sampled_from(HOSTILE_VALUES) | st.text(max_size=40)
# Mostly sendable messages with hostile parts, so that both sides of the rule are drawn:
# refused at the edge, or committed and applied by every replica.
messages = st.fixed_dictionaries(
    {"body": st.text(min_size=1, max_size=64)},
    optional={
        "properties": st.dictionaries(names, values, max_size=4),
        "tags": st.text(min_size=1, max_size=12),
        "keys": st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4),
        "delay_level": st.integers(0, 2) | st.integers(-2, 40) | st.sampled_from(["1", None]),
        "deliver_at_ms": st.integers(0, 2**41) | st.integers(-(2**64), 2**64),
        "born_timestamp_ms": st.integers(0, 2**41) | st.integers(-(2**64), 2**64),
    },
)
# The probe's shape: a delayed message steering its own release through broker-only names.
steering = st.fixed_dictionaries(
    {
        "body": st.text(min_size=1, max_size=16) | st.just("not msgpack"),
        "delay_level": st.integers(1, 2),
        "properties": st.dictionaries(
            st.sampled_from(sorted(BROKER_ONLY)), values, min_size=1, max_size=3
        ),
    }
)
mangled = st.dictionaries(
    st.sampled_from(["body", "body_base64", "properties", "tags", "keys", "flags"]),
    st.none() | st.integers() | st.text(max_size=8) | st.binary(max_size=8).map(
        lambda b: base64.b64encode(b).decode()
    ),
    max_size=4,
)
topics = st.sampled_from(["T"] * 6 + ["RO", "%SYS%TOPIC", "%RETRY%g", "%DLQ%g", "%DELAY%SCHEDULE"])
requests = st.tuples(
    st.sampled_from(["send", "send", "transaction"]),
    topics,
    st.lists(messages, min_size=1, max_size=3)
    | st.lists(messages | steering | mangled, min_size=1, max_size=3),
    st.none() | st.integers(-1, 3),
)


def post(addr: str, path: str, body: Any) -> int:
    data = json.dumps(body).encode("utf-8", "surrogatepass")
    request = urllib.request.Request(
        f"http://{addr}{path}", data=data, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def statuses(cluster: Cluster) -> dict[str, dict[str, Any] | None]:
    return {n.id: fetch_status(n.addr, timeout_s=2.0) for n in cluster.config.groups[0].nodes}


def leader_addr(cluster: Cluster) -> str | None:
    by_id = {n.id: n.addr for n in cluster.config.groups[0].nodes}
    for node, status in statuses(cluster).items():
        if status and status["role"] == "leader":
            return by_id[node]
    return None


@pytest.fixture(scope="module")
def raft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    path = write_test_cluster(tmp_path_factory.mktemp("any"), "AnyMessage", mode="raft")
    with started(path) as running:
        leader = wait_until(lambda: leader_addr(running), timeout_s=30, what="a leader")
        assert post(leader, "/topics", {"topic": "T", "queues": 2}) == 201
        assert post(leader, "/topics", {"topic": "RO", "queues": 1, "perm": 4}) == 201
        yield running


def released(cluster: Cluster) -> bool:
    """The sentinel is readable from the leader by its key: its delay is over."""
    leader = leader_addr(cluster)
    if leader is None:
        return False
    url = f"http://{leader}/messages?key=sentinel&topic=T"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(json.load(response)["messages"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_any_message_is_refused_or_applied_on_every_replica(raft: Cluster) -> None:
    pids = {n.id: raft.pid(n.id) for n in raft.config.groups[0].nodes}
    answers: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(requests)
    # The probe's requests (D2, D3, D6) are always among them.
    @example(("send", "T", [{"body": "x", "delay_level": 1, "properties": {"REAL_QID": "x"}}], 0))
    @example(("send", "T", [{"body": "not msgpack", "delay_level": 1, "properties": D3}], 0))
    @example(("send", "T", [{"body": "x", "delay_level": 2, "properties": D6}], None))
    def one_request(request: tuple[str, str, list[dict[str, Any]], int | None]) -> None:
        kind, topic, batch, queue_id = request
        leader = wait_until(lambda: leader_addr(raft), timeout_s=30, what="a leader")
        path = f"/topics/{topic.replace('%', '%25')}/"
        extra = {} if queue_id is None else {"queue_id": queue_id}
        if kind == "send":
            status = post(leader, path + "messages", {"messages": batch, **extra})
        else:
            body = {"producer_group": "pg", "message": batch[0], **extra}
            status = post(leader, path + "transactions", body)
        answers.append(status)
        assert status < 500, (status, request)
        stopped = [node for node, pid in pids.items() if not alive(pid)]
        assert stopped == [], f"{stopped} stopped after {request!r}"

    one_request()
    # Both sides of the rule must be drawn, or the property says nothing about one of them.
    accepted, refused = answers.count(200), sum(400 <= a < 500 for a in answers)
    assert min(accepted, refused) >= len(answers) // 20, (accepted, refused)

    # Delayed messages of levels 1-2 are released by now: every replica applied them.
    leader = wait_until(lambda: leader_addr(raft), timeout_s=30, what="a leader")
    sentinel = {"body": "sentinel", "keys": ["sentinel"], "delay_level": 2}
    assert post(leader, "/topics/T/messages", {"messages": [sentinel]}) == 200
    wait_until(lambda: released(raft), timeout_s=30, what="the delayed sentinel released")

    def converged() -> dict[str, Any] | None:
        seen = statuses(raft)
        marks = {
            (s["raft"]["commit_index"], s["dispatched_offset"], s["write_offset"])
            if s
            else None
            for s in seen.values()
        }
        return seen if None not in marks and len(marks) == 1 else None

    seen = wait_until(converged, timeout_s=30, what="every replica at the same offsets")
    assert all(alive(pid) for pid in pids.values())
    for node, status in seen.items():
        assert status["unreadable_records"]["count"] == 0, (node, status["unreadable_records"])
