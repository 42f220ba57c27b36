"""The producer and broker groups that refuse writes, and topics without a route.

Goal: a group that answers write-disabled (NO_PERMISSION, `broker_writable: false`) gets
the send on another group at once and is kept out of later queue choices for a while; a
route that shows the group read-only (its perm masked by the NameServer) is never sent
to; when no group takes writes the send fails with a clear NO_PERMISSION, without a
futile round of retries; a read-only *topic* on one group is not retried elsewhere. A
topic without a route is sent to a group that auto-creates topics, and the broker picks
its queue. Method: a scripted fake transport (no sockets) and an injected clock.
"""

import random

import pytest

from dledgermq.client.message import MessageQueue
from dledgermq.client.producer import Producer
from dledgermq.client.selector import QueueSelector, send_candidates
from dledgermq.client.topic_route import TopicRouteData
from dledgermq.client.write_disabled import WriteDisabledGroups, is_write_disabled
from dledgermq.errors import NoPermission, NoRoute

pytestmark = pytest.mark.timeout(10)


def route(perm_a=6, perm_b=6, group_perm_a=6):
    return {
        "topic": "T",
        "queues": [
            {"broker_name": "a", "read_queues": 2, "write_queues": 2, "perm": perm_a},
            {"broker_name": "b", "read_queues": 2, "write_queues": 2, "perm": perm_b},
        ],
        "brokers": [
            {"broker_name": "a", "addrs": {"0": "a:1"}, "perm": group_perm_a},
            {"broker_name": "b", "addrs": {"0": "b:1"}},
        ],
    }


def disabled(name):
    return NoPermission(f"{name} is write-disabled", broker_name=name, broker_writable=False)


class FakeHttp:
    """Routes and /brokers from fixed answers; brokers answer from `refusals` by address."""

    def __init__(self, answer=None, refusals=None, brokers=()):
        self.route = answer
        self.refusals = refusals or {}
        self.brokers = list(brokers)
        self.sends = []

    async def request(self, method, addr, path, *, params=None, body=None, timeout_s=None):
        if path.startswith("/routes/"):
            if self.route is None:
                raise NoRoute("no route")
            return self.route
        if path == "/brokers":
            return {"brokers": self.brokers}
        self.sends.append((addr, body.get("queue_id")))
        refusal = self.refusals.get(addr)
        if refusal is not None:
            raise refusal
        messages = body["messages"]
        qid = body.get("queue_id", 3)  # Without a queue id the broker picks (here: 3).
        return {
            "results": [
                {"msg_id": "id", "unique_key": "k", "queue_id": qid, "queue_offset": 0}
                for _ in messages
            ]
        }

    async def close(self):
        pass


def producer(http, **kwargs):
    return Producer(["ns:1"], http=http, rng=random.Random(7), **kwargs)


async def test_a_write_disabled_group_is_left_for_another_and_then_avoided():
    http = FakeHttp(route(), refusals={"a:1": disabled("a")})
    sender = producer(http)
    results = [await sender.send("T", b"x") for _ in range(6)]
    assert {r.queue.broker_name for r in results} == {"b"}
    assert [addr for addr, _ in http.sends].count("a:1") == 1  # refused once, then held out


async def test_no_group_taking_writes_is_a_clear_no_permission():
    http = FakeHttp(route(), refusals={"a:1": disabled("a"), "b:1": disabled("b")})
    with pytest.raises(NoPermission, match="no broker group takes writes") as refused:
        await producer(http, retries=5).send("T", b"x")
    assert refused.value.details["broker_names"] == ["a", "b"]
    assert len(http.sends) == 2  # each group once; no futile retries


async def test_without_retries_the_groups_own_refusal_is_raised():
    http = FakeHttp(route(), refusals={"a:1": disabled("a"), "b:1": disabled("b")})
    with pytest.raises(NoPermission, match="write-disabled"):
        await producer(http, retries=0).send("T", b"x")


async def test_a_read_only_topic_is_not_retried_elsewhere():
    """NO_PERMISSION for the topic itself (no `broker_writable`) is the topic's answer."""
    http = FakeHttp(route(), refusals={"a:1": NoPermission("T is not writable")})
    sender = producer(http, retries=2)
    with pytest.raises(NoPermission, match="T is not writable"):
        await sender.send("T", b"x", queue=MessageQueue("T", "a", 0))
    with pytest.raises(NoPermission, match="T is not writable"):
        await sender.send("T", b"x", sharding_key="k-on-a")
    assert [addr for addr, _ in http.sends] == ["a:1", "a:1"]


async def test_an_explicit_queue_on_a_disabled_group_fails_at_once():
    http = FakeHttp(route(), refusals={"a:1": disabled("a")})
    with pytest.raises(NoPermission):
        await producer(http).send("T", b"x", queue=MessageQueue("T", "a", 1))
    assert http.sends == [("a:1", 1)]


async def test_a_route_that_masks_the_group_keeps_sends_away_from_it():
    for answer in (route(perm_a=4), route(group_perm_a=4)):
        http = FakeHttp(answer)
        sender = producer(http)
        results = [await sender.send("T", b"x") for _ in range(4)]
        assert {r.queue.broker_name for r in results} == {"b"}


async def test_a_route_without_writable_groups_fails_without_sending():
    http = FakeHttp(route(perm_a=4, perm_b=4))
    with pytest.raises(NoPermission, match="no broker group takes writes"):
        await producer(http).send("T", b"x")
    assert http.sends == []


def test_send_candidates_rules():
    data = TopicRouteData.from_wire(route(group_perm_a=4))
    assert {q.broker_name for q in send_candidates(data, frozenset())} == {"b"}
    assert send_candidates(data, frozenset({"a"})) == send_candidates(data, frozenset())
    with pytest.raises(NoPermission):
        send_candidates(data, frozenset({"b"}))
    # Writable but no master anywhere (an election): NoRoute, which is retried.
    electing = route()
    electing["brokers"] = [{"broker_name": n, "addrs": {"1": f"{n}:2"}} for n in ("a", "b")]
    with pytest.raises(NoRoute):
        QueueSelector().select(send_candidates(TopicRouteData.from_wire(electing), frozenset()))
    # Only the first write_queues of a group are candidates.
    fewer = route()
    fewer["queues"][1] = {"broker_name": "b", "read_queues": 4, "write_queues": 1, "perm": 6}
    picked = send_candidates(TopicRouteData.from_wire(fewer), frozenset())
    assert [(q.broker_name, q.queue_id) for q in picked] == [("a", 0), ("a", 1), ("b", 0)]


def test_write_disabled_marks_expire():
    now = [0.0]
    groups = WriteDisabledGroups(hold_s=10, clock=lambda: now[0])
    groups.mark("a")
    assert groups.current() == {"a"}
    now[0] = 9.9
    assert groups.current() == {"a"}
    now[0] = 10.0
    assert groups.current() == frozenset()
    assert is_write_disabled(disabled("a"))
    assert not is_write_disabled(NoPermission("topic"))


AUTO = {"broker_name": "c", "addrs": {"0": "c:1"}, "auto_create_topic": True}


async def test_a_topic_without_a_route_goes_to_a_group_that_auto_creates():
    http = FakeHttp(None, brokers=[{"broker_name": "d", "addrs": {"0": "d:1"}}, AUTO])
    result = await producer(http).send("New", b"x")
    assert http.sends == [("c:1", None)]  # no queue id: the broker picks
    assert (result.queue.broker_name, result.queue_id) == ("c", 3)


async def test_a_topic_without_a_route_and_no_auto_create_group_is_no_route():
    for brokers in (
        [{"broker_name": "d", "addrs": {"0": "d:1"}}],
        [{**AUTO, "perm": 4}],  # write-disabled
        [{**AUTO, "addrs": {"1": "c:2"}}],  # no master
    ):
        http = FakeHttp(None, brokers=brokers)
        with pytest.raises(NoRoute, match="topic create"):
            await producer(http, retries=0).send("New", b"x")
        assert http.sends == []
