"""RouteRegistry as a pure table: registration, grouping, routes and expiry.

Every call passes `now_ms` explicitly, so expiry is tested without a clock or sleeps.
"""

import pytest

from dledgermq.errors import BadRequest
from dledgermq.namesrv.registry import (
    BrokerRegistration,
    QueueData,
    RouteRegistry,
    TopicQueues,
)


def reg(name="broker-a", bid=0, addr=None, topics=(("T", 8, 8, 6),), cluster="c1"):
    addr = addr or f"127.0.0.1:{10911 + bid}"
    return BrokerRegistration(cluster, name, bid, addr, tuple(TopicQueues(*t) for t in topics))


def test_register_then_route_lists_queue_data_and_addrs():
    registry = RouteRegistry()
    registry.register(reg(), now_ms=0)
    route = registry.route("T")
    assert route is not None
    assert route.queues == (QueueData("broker-a", 8, 8, 6),)
    assert route.brokers[0].addrs == {0: "127.0.0.1:10911"}
    assert route.to_wire() == {
        "topic": "T",
        "queues": [{"broker_name": "broker-a", "read_queues": 8, "write_queues": 8, "perm": 6}],
        "brokers": [
            {
                "broker_name": "broker-a",
                "cluster": "c1",
                "addrs": {"0": "127.0.0.1:10911"},
                "perm": 6,
                "zone": None,
            }
        ],
    }


def test_unknown_topic_has_no_route():
    registry = RouteRegistry()
    registry.register(reg(), now_ms=0)
    assert registry.route("missing") is None


def test_same_broker_name_forms_one_group():
    registry = RouteRegistry()
    registry.register(reg(bid=0), now_ms=0)
    registry.register(reg(bid=1), now_ms=0)
    [group] = registry.brokers()
    assert group.addrs == {0: "127.0.0.1:10911", 1: "127.0.0.1:10912"}
    route = registry.route("T")
    assert route is not None
    assert len(route.queues) == 1


def test_route_spans_groups_sorted_by_name():
    registry = RouteRegistry()
    registry.register(reg(name="b", topics=(("T", 4, 4, 6),)), now_ms=0)
    registry.register(reg(name="a", topics=(("T", 2, 2, 4),)), now_ms=0)
    route = registry.route("T")
    assert route is not None
    assert [q.broker_name for q in route.queues] == ["a", "b"]
    assert [b.broker_name for b in route.brokers] == ["a", "b"]


def test_heartbeat_replaces_topic_list():
    registry = RouteRegistry()
    registry.register(reg(topics=(("T", 8, 8, 6), ("U", 1, 1, 6))), now_ms=0)
    registry.register(reg(topics=(("U", 2, 2, 6),)), now_ms=1)
    assert registry.topics() == ["U"]
    assert registry.route("T") is None


def test_master_topic_list_speaks_for_the_group():
    registry = RouteRegistry()
    registry.register(reg(bid=1, topics=(("T", 8, 8, 6), ("OLD", 1, 1, 6))), now_ms=0)
    registry.register(reg(bid=0, topics=(("T", 4, 4, 6),)), now_ms=0)
    assert registry.topics() == ["T"]
    route = registry.route("T")
    assert route is not None
    assert route.queues[0].read_queues == 4


def test_slave_keeps_group_readable_after_master_leaves():
    registry = RouteRegistry()
    registry.register(reg(bid=0), now_ms=0)
    registry.register(reg(bid=1), now_ms=0)
    assert registry.unregister("broker-a", 0)
    route = registry.route("T")
    assert route is not None
    assert route.brokers[0].addrs == {1: "127.0.0.1:10912"}


def test_unregister_last_broker_drops_group_topics():
    registry = RouteRegistry()
    registry.register(reg(), now_ms=0)
    assert registry.unregister("broker-a", 0)
    assert not registry.unregister("broker-a", 0)
    assert registry.route("T") is None
    assert registry.brokers() == []
    assert registry.topics() == []


def test_expire_drops_only_silent_brokers():
    registry = RouteRegistry(expiry_ms=100)
    registry.register(reg(name="a"), now_ms=0)
    registry.register(reg(name="b"), now_ms=50)
    assert registry.expire(now_ms=100) == []  # exactly at the limit is still alive
    assert registry.expire(now_ms=101) == [("a", 0)]
    route = registry.route("T")
    assert route is not None
    assert [q.broker_name for q in route.queues] == ["b"]
    assert registry.expire(now_ms=151) == [("b", 0)]
    assert registry.route("T") is None


def test_heartbeat_postpones_expiry():
    registry = RouteRegistry(expiry_ms=100)
    registry.register(reg(), now_ms=0)
    registry.register(reg(), now_ms=90)
    assert registry.expire(now_ms=150) == []
    assert registry.brokers()[0].last_seen_ms == 90


def test_registration_from_wire_validates():
    good = {
        "cluster": "c",
        "broker_name": "a",
        "broker_id": 0,
        "addr": "h:1",
        "topics": [{"topic": "T", "read_queues": 1, "write_queues": 1, "perm": 6}],
    }
    assert BrokerRegistration.from_wire(good).topics == (TopicQueues("T", 1, 1, 6),)
    for bad in (
        {**good, "broker_id": "0"},
        {**good, "broker_id": -1},
        {**good, "broker_name": ""},
        {**good, "addr": None},
        {**good, "topics": {}},
        {**good, "topics": [{"topic": "T", "read_queues": 1, "write_queues": 1, "perm": 9}]},
        {**good, "topics": [{"topic": "T", "read_queues": True, "write_queues": 1, "perm": 6}]},
        {**good, "topics": ["T"]},
    ):
        with pytest.raises(BadRequest):
            BrokerRegistration.from_wire(bad)


# -- the broker group's permission (write-disable) and zone --------------------------------------


def test_a_write_disabled_group_masks_every_topic_perm_in_routes():
    """RocketMQ's brokerPermission: perm 4 makes the group's queues read-only in every
    route (6 -> 4, 2 -> 0) while other groups stay writable."""
    registry = RouteRegistry()
    disabled = reg(name="a", topics=(("T", 4, 4, 6), ("W", 2, 2, 2)))
    registry.register(BrokerRegistration.from_wire({**_wire(disabled), "perm": 4}), now_ms=0)
    registry.register(reg(name="b", topics=(("T", 4, 4, 6),)), now_ms=0)
    route = registry.route("T")
    assert route is not None
    assert [(q.broker_name, q.perm) for q in route.queues] == [("a", 4), ("b", 6)]
    assert [(b.broker_name, b.perm) for b in route.brokers] == [("a", 4), ("b", 6)]
    write_only = registry.route("W")
    assert write_only is not None
    assert write_only.queues[0].perm == 0
    assert {g.broker_name: g.to_wire()["perm"] for g in registry.brokers()} == {"a": 4, "b": 6}


def test_the_group_perm_and_zone_are_its_writers():
    """A replica's registration does not override the writer's perm or zone."""
    registry = RouteRegistry()
    writer = {**_wire(reg(bid=0)), "perm": 4, "zone": "z1", "auto_create_topic": True}
    replica = {**_wire(reg(bid=1)), "perm": 6, "zone": "z2"}
    registry.register(BrokerRegistration.from_wire(writer), now_ms=0)
    registry.register(BrokerRegistration.from_wire(replica), now_ms=0)
    [group] = registry.brokers()
    assert (group.perm, group.zone, group.auto_create_topic) == (4, "z1", True)
    route = registry.route("T")
    assert route is not None
    assert route.to_wire()["brokers"][0]["zone"] == "z1"
    registry.unregister("broker-a", 0)  # The replica speaks for the group now.
    [group] = registry.brokers()
    assert (group.perm, group.zone, group.auto_create_topic) == (6, "z2", False)


def test_registration_without_perm_or_zone_is_writable_and_zoneless():
    info = BrokerRegistration.from_wire(_wire(reg()))
    assert (info.perm, info.zone, info.auto_create_topic) == (6, None, False)


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"perm": 8}, "perm"),
        ({"perm": -1}, "perm"),
        ({"perm": "6"}, "perm"),
        ({"zone": 3}, "zone"),
        ({"zone": ""}, "zone"),
        ({"zone": "z" * 256}, "zone"),
        ({"auto_create_topic": "yes"}, "auto_create_topic"),
    ],
)
def test_bad_perm_zone_or_auto_create_is_refused(extra, text):
    with pytest.raises(BadRequest, match=text):
        BrokerRegistration.from_wire({**_wire(reg()), **extra})


def _wire(info: BrokerRegistration) -> dict:
    return {
        "cluster": info.cluster,
        "broker_name": info.broker_name,
        "broker_id": info.broker_id,
        "addr": info.addr,
        "topics": [
            {
                "topic": t.topic,
                "read_queues": t.read_queues,
                "write_queues": t.write_queues,
                "perm": t.perm,
            }
            for t in info.topics
        ],
    }
