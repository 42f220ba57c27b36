"""Producer retry and queue choice against a scripted fake transport (no sockets).

Goal: retryable errors are retried (2 retries by default) on another broker group and
after a route refresh; sharding-key sends keep their queue; non-retryable errors are
raised at once; oneway sends try once; the unique key stays the same across retries.
"""

import asyncio
import random

import pytest

from dledgermq.client.message import MessageQueue
from dledgermq.client.producer import Producer
from dledgermq.errors import Busy, NoRoute, TopicNotFound

ROUTE = {
    "topic": "T",
    "queues": [
        {"broker_name": "a", "read_queues": 2, "write_queues": 2, "perm": 6},
        {"broker_name": "b", "read_queues": 2, "write_queues": 2, "perm": 6},
    ],
    "brokers": [
        {"broker_name": "a", "addrs": {"0": "a:1"}},
        {"broker_name": "b", "addrs": {"0": "b:1"}},
    ],
}


class FakeHttp:
    """Answers route lookups from ROUTE and sends from a script of errors."""

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.sends = []
        self.route_lookups = 0
        self.closed = False

    async def request(self, method, addr, path, *, params=None, body=None, timeout_s=None):
        if path.startswith("/routes/"):
            self.route_lookups += 1
            return ROUTE
        self.sends.append((addr, body["queue_id"], body["messages"]))
        if self.failures:
            raise self.failures.pop(0)
        return {
            "results": [
                {
                    "msg_id": f"id{i}",
                    "unique_key": m["properties"]["UNIQ_KEY"],
                    "queue_id": body["queue_id"],
                    "queue_offset": i,
                    "commitlog_offset": 0,
                }
                for i, m in enumerate(body["messages"])
            ]
        }

    async def close(self):
        self.closed = True


def producer(http, **kwargs):
    return Producer(["ns:1"], http=http, rng=random.Random(7), **kwargs)


async def test_busy_is_retried_on_the_other_broker_with_the_same_unique_key():
    http = FakeHttp([Busy("busy")])
    result = await producer(http).send("T", b"x")
    (addr1, _, msgs1), (addr2, _, msgs2) = http.sends
    assert addr1 != addr2
    assert msgs1 == msgs2
    assert result.unique_key == msgs1[0]["properties"]["UNIQ_KEY"]
    assert result.queue.broker_name == addr2[0]
    assert http.route_lookups == 2  # The failure invalidated the cached route.


async def test_retries_are_bounded_then_the_last_error_is_raised():
    http = FakeHttp([Busy("1"), Busy("2"), Busy("3"), Busy("4")])
    with pytest.raises(Busy, match="3"):
        await producer(http, retries=2).send("T", b"x")
    assert len(http.sends) == 3


async def test_non_retryable_error_is_raised_at_once():
    http = FakeHttp([TopicNotFound("gone")])
    with pytest.raises(TopicNotFound):
        await producer(http).send("T", b"x")
    assert len(http.sends) == 1


async def test_sharding_key_keeps_its_queue_across_retries():
    http = FakeHttp([Busy("busy"), Busy("busy")])
    result = await producer(http).send("T", b"x", sharding_key="order-1")
    targets = {(addr, qid) for addr, qid, _ in http.sends}
    assert len(http.sends) == 3
    assert len(targets) == 1
    assert (result.queue.broker_name + ":1", result.queue_id) in targets


async def test_explicit_queue_is_used_and_checked():
    http = FakeHttp()
    mq = MessageQueue("T", "b", 1)
    result = await producer(http).send("T", b"x", queue=mq)
    assert result.queue == mq
    assert http.sends[0][:2] == ("b:1", 1)
    with pytest.raises(NoRoute):
        await producer(http, retries=0).send("T", b"x", queue=MessageQueue("T", "z", 0))


async def test_batch_is_one_request_with_results_in_order():
    http = FakeHttp()
    results = await producer(http).send_batch("T", [b"1", {"body": "2", "keys": ["k"]}])
    assert len(http.sends) == 1
    assert [r.queue_offset for r in results] == [0, 1]
    assert http.sends[0][2][1]["keys"] == ["k"]


async def test_send_async_calls_back_with_result_or_error():
    http = FakeHttp([TopicNotFound("gone")])
    outcomes = []
    p = producer(http)
    task = p.send_async("T", b"x", callback=lambda r, e: outcomes.append((r, e)))
    with pytest.raises(TopicNotFound):
        await task
    await p.send_async("T", b"y", callback=lambda r, e: outcomes.append((r, e)))
    await asyncio.sleep(0)  # Done callbacks run on the next loop iteration.
    assert outcomes[0][0] is None
    assert isinstance(outcomes[0][1], TopicNotFound)
    assert outcomes[1][0] is not None
    assert outcomes[1][1] is None


async def test_oneway_tries_once_and_close_waits_for_it():
    http = FakeHttp([Busy("busy")])
    p = producer(http)
    assert await p.send_oneway("T", b"x") is None
    await p.close()
    assert len(http.sends) == 1
    assert http.closed
