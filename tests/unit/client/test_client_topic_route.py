"""Route parsing and the msg_id -> broker group lookup, without I/O.

Goal: producers see only writable queues of groups that have a master, consumers see
readable queues of groups with any broker, and a msg_id's prefix finds its group with the
same hash the broker uses.
"""

from dledgermq.broker.message_id import broker_hash as broker_side_hash
from dledgermq.broker.message_id import make_msg_id
from dledgermq.client.message import MessageQueue
from dledgermq.client.topic_route import (
    TopicRouteData,
    broker_for_msg_id,
    broker_hash,
)

ROUTE = {
    "topic": "T",
    "queues": [
        {"broker_name": "b", "read_queues": 2, "write_queues": 1, "perm": 6},
        {"broker_name": "a", "read_queues": 1, "write_queues": 1, "perm": 4},
        {"broker_name": "c", "read_queues": 1, "write_queues": 1, "perm": 6},
    ],
    "brokers": [
        {"broker_name": "a", "cluster": "x", "addrs": {"0": "h:1"}},
        {"broker_name": "b", "cluster": "x", "addrs": {"0": "h:2", "1": "h:3"}},
        {"broker_name": "c", "cluster": "x", "addrs": {"2": "h:5", "1": "h:4"}},
    ],
}


def test_writable_queues_need_write_perm_and_a_master():
    route = TopicRouteData.from_wire(ROUTE)
    assert route.writable_queues() == [MessageQueue("T", "b", 0)]


def test_readable_queues_in_broker_order_and_slaves_serve_reads():
    route = TopicRouteData.from_wire(ROUTE)
    assert route.readable_queues() == [
        MessageQueue("T", "a", 0),
        MessageQueue("T", "b", 0),
        MessageQueue("T", "b", 1),
        MessageQueue("T", "c", 0),
    ]
    assert route.read_addr("b") == "h:2"
    assert route.read_addr("c") == "h:4"
    assert route.read_addrs("b") == ["h:2", "h:3"]  # the writer first, then replicas
    assert route.read_addrs("c") == ["h:4", "h:5"]
    assert route.read_addrs("unknown") == []
    assert route.master_addr("c") is None
    assert route.master_addr("unknown") is None


def test_broker_hash_matches_the_broker_side():
    for name in ("broker-a", "broker-b", "ü-name", ""):
        assert broker_hash(name) == broker_side_hash(name)


def test_msg_id_prefix_finds_the_group():
    msg_id = make_msg_id(broker_side_hash("broker-b"), 4096, 120)
    assert broker_for_msg_id(msg_id, ["broker-a", "broker-b"]) == "broker-b"
    assert broker_for_msg_id(msg_id.lower(), ["broker-a", "broker-b"]) == "broker-b"
    assert broker_for_msg_id(msg_id, ["broker-a"]) is None
    assert broker_for_msg_id("short", ["broker-b"]) is None
