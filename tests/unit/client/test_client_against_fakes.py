"""The client over real HTTP: the REAL NameServer app plus in-memory fake brokers.

Goal: check the wiring the pure tests cannot: msgpack on the wire, BUSY retried until the
send succeeds, failover past a dead NameServer, OFFSET_MOVED surfacing as
OffsetOutOfRange, the push consumer's loop and offset commits, admin fan-out and lookups,
and the sync facade. Everything binds 127.0.0.1; waits are conditions with deadlines.
"""

import asyncio
import dataclasses
import random
import time

import pytest

from dledgermq.client import (
    Admin,
    Producer,
    PullConsumer,
    PushConsumer,
    PushOptions,
    SyncProducer,
    SyncPullConsumer,
)
from dledgermq.client.message import MessageQueue
from dledgermq.errors import (
    MessageNotFound,
    NoRoute,
    OffsetOutOfRange,
    TopicExists,
    Unavailable,
)
from tests.unit.client.client_fakes import broker_hash, wait_until


class FirstChoice(random.Random):
    """Makes the client start with the first NameServer in its list."""

    def randrange(self, *args, **kwargs):
        return 0


async def test_send_retries_busy_then_succeeds(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 2})
    broker.busy_answers = 2
    async with Producer([cluster.namesrv_addr]) as producer:
        result = await producer.send("T", "hello", tags="A", keys=["k1"])
    assert broker.send_requests == 3
    assert result.status == "SEND_OK"
    assert result.msg_id.startswith(broker_hash("broker-a"))
    stored = broker.queues["T", result.queue_id][0]
    assert stored["body"] == b"hello"
    assert stored["unique_key"] == result.unique_key
    assert stored["keys"] == ["k1"]


async def test_send_moves_to_another_group_when_one_is_busy(cluster):
    busy = await cluster.add_broker("broker-a", {"T": 1})
    await cluster.add_broker("broker-b", {"T": 1})
    busy.busy_answers = 100
    async with Producer([cluster.namesrv_addr], retries=1) as producer:
        results = [await producer.send("T", b"x") for _ in range(4)]
    assert {r.queue.broker_name for r in results} == {"broker-b"}


async def test_unknown_topic_is_no_route(cluster):
    await cluster.add_broker("broker-a", {"T": 1})
    async with Producer([cluster.namesrv_addr], retries=0) as producer:
        with pytest.raises(NoRoute):
            await producer.send("missing", b"x")


async def test_nameserver_down_fails_over_to_the_next(cluster, dead_addr):
    await cluster.add_broker("broker-a", {"T": 1})
    addrs = [dead_addr, cluster.namesrv_addr]
    async with Producer(addrs, rng=FirstChoice()) as producer:
        result = await producer.send("T", b"x")
    assert result.queue.broker_name == "broker-a"


async def test_all_nameservers_down_is_unavailable(dead_addr):
    async with Producer([dead_addr], retries=1) as producer:
        with pytest.raises(Unavailable):
            await producer.send("T", b"x")


async def test_pull_offset_moved_is_offset_out_of_range(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 1})
    broker.min_offsets["T", 0] = 10
    async with PullConsumer([cluster.namesrv_addr], "G") as consumer:
        [mq] = await consumer.fetch_queues("T")
        with pytest.raises(OffsetOutOfRange) as caught:
            await consumer.pull(mq, 3)
        assert caught.value.details == {"min_offset": 10, "max_offset": 10}
        assert await consumer.queue_range(mq) == (10, 10)


async def test_pull_commit_and_fetch_offsets(cluster):
    await cluster.add_broker("broker-a", {"T": 1})
    async with Producer([cluster.namesrv_addr]) as producer:
        sent = [await producer.send("T", f"m{i}") for i in range(3)]
    async with PullConsumer([cluster.namesrv_addr], "G") as consumer:
        [mq] = await consumer.fetch_queues("T")
        assert await consumer.fetch_offset(mq) is None
        pulled = await consumer.pull(mq, 0, max_messages=2)
        assert [m.text for m in pulled.messages] == ["m0", "m1"]
        assert pulled.messages[0].msg_id == sent[0].msg_id
        assert pulled.next_offset == 2
        await consumer.commit_offset(mq, pulled.next_offset)
        assert await consumer.fetch_offset(mq) == 2


async def test_long_poll_returns_when_a_message_arrives(cluster):
    await cluster.add_broker("broker-a", {"T": 1})
    async with (
        Producer([cluster.namesrv_addr]) as producer,
        PullConsumer([cluster.namesrv_addr], "G") as consumer,
    ):
        [mq] = await consumer.fetch_queues("T")
        pull = asyncio.create_task(consumer.pull(mq, 0, wait_ms=10_000))
        await producer.send("T", b"late")
        result = await asyncio.wait_for(pull, 5)
    assert [m.body for m in result.messages] == [b"late"]


async def test_push_consumer_delivers_and_commits(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 2})
    received = []

    async def on_messages(messages):
        received.extend(m.text for m in messages)

    async with Producer([cluster.namesrv_addr]) as producer:
        for i in range(4):
            await producer.send("T", f"m{i}")
        consumer = PushConsumer(
            [cluster.namesrv_addr],
            "G",
            "T",
            callback=on_messages,
            from_where="first",
            options=PushOptions(wait_ms=500),
        )
        await consumer.start()
        try:
            assert len(consumer.assigned_queues) == 2
            await wait_until(lambda: len(received) == 4, what="first four messages")
            await producer.send("T", "m4")
            await wait_until(lambda: len(received) == 5, what="a message sent later")
        finally:
            await consumer.close()
    assert sorted(received) == [f"m{i}" for i in range(5)]
    committed = broker.offsets["G", "T"]
    assert sum(committed.values()) == 5


async def test_push_consumer_from_last_skips_old_messages_and_retries_locally_when_send_back_fails(
    cluster,
):
    broker = await cluster.add_broker("broker-a", {"T": 1})
    broker.send_back_failures = 1
    calls = []

    def flaky(messages):  # A sync callback, run in a worker thread.
        calls.append([m.text for m in messages])
        if len(calls) == 1:
            raise RuntimeError("first delivery fails")

    async with Producer([cluster.namesrv_addr]) as producer:
        await producer.send("T", "old")
        consumer = PushConsumer(
            [cluster.namesrv_addr],
            "G",
            "T",
            callback=flaky,
            from_where="last",
            options=PushOptions(wait_ms=500),
        )
        await consumer.start()
        try:
            mq = MessageQueue("T", "broker-a", 0)
            await wait_until(lambda: consumer.offsets.get(mq) == 1, what="start at the end")
            await producer.send("T", "new")
            await wait_until(lambda: len(calls) == 2, what="redelivery")
            await wait_until(lambda: consumer.offsets.get(mq) == 2, what="consumed")
        finally:
            await consumer.close()
    assert calls == [["new"], ["new"]]
    assert broker.sent_back == []
    assert broker.offsets["G", "T"] == {"0": 2}


async def test_admin_creates_topics_and_finds_messages(cluster):
    a = await cluster.add_broker("broker-a")
    b = await cluster.add_broker("broker-b")
    async with Admin([cluster.namesrv_addr]) as admin:
        created = await admin.create_topic("NEW", queues=2)
        assert sorted(created) == ["broker-a", "broker-b"]
        with pytest.raises(TopicExists) as caught:
            await admin.create_topic("NEW", broker_names=["broker-a"])
        assert caught.value.details["failed"] == {"broker-a": "TOPIC_EXISTS"}
        cluster.heartbeat()
        assert await admin.list_topics() == ["NEW"]
        async with Producer([cluster.namesrv_addr]) as producer:
            first = await producer.send("NEW", b"1", keys="order-7")
            second = await producer.send("NEW", b"2", keys="order-7")
        found = await admin.query_by_key("order-7", topic="NEW")
        assert {m.msg_id for m in found} == {first.msg_id, second.msg_id}
        assert (await admin.query_by_id(second.msg_id)).body == b"2"
        assert (await admin.query_by_id(first.unique_key)).body == b"1"
        with pytest.raises(MessageNotFound):
            await admin.query_by_id("0" * 32)
        status = await admin.topic_status("NEW")
        assert len(status["queues"]) == 4
        assert status["errors"] == {}
        assert await admin.delete_topic("NEW") == ["broker-a", "broker-b"]
        assert "NEW" not in a.topics
        assert "NEW" not in b.topics


async def test_sync_facades_run_on_their_own_loop(cluster):
    await cluster.add_broker("broker-a", {"T": 1})

    def produce_and_pull():
        with SyncProducer([cluster.namesrv_addr]) as producer:
            result = producer.send("T", b"sync")
        with SyncPullConsumer([cluster.namesrv_addr], "G") as consumer:
            [mq] = consumer.fetch_queues("T")
            pulled = consumer.pull(mq, 0)
        return result, pulled

    # The servers live on this test's loop, so the blocking calls run in a thread.
    result, pulled = await asyncio.to_thread(produce_and_pull)
    assert [m.msg_id for m in pulled.messages] == [result.msg_id]


async def test_push_consumer_resumes_after_offset_moved(cluster):
    broker = await cluster.add_broker("broker-a", {"T": 1})
    async with Producer([cluster.namesrv_addr]) as producer:
        await producer.send("T", "kept")
    broker.min_offsets["T", 0] = 10  # Retention removed everything below offset 10.
    broker.queues["T", 0][0]["queue_offset"] = 10
    broker.offsets["G", "T"] = {"0": 3}  # The group's commit points below it.
    received = []
    consumer = PushConsumer(
        [cluster.namesrv_addr],
        "G",
        "T",
        callback=lambda messages: received.extend(m.queue_offset for m in messages),
        options=PushOptions(wait_ms=200),
    )
    await consumer.start()
    try:
        await wait_until(lambda: received == [10], what="delivery from the new minimum")
    finally:
        await consumer.close()
    assert broker.offsets["G", "T"] == {"0": 11}


async def test_reads_go_on_to_a_replica_while_the_writer_is_unreachable(cluster, dead_addr):
    broker = await cluster.add_broker("broker-a", {"T": 1})
    async with Producer([cluster.namesrv_addr]) as producer:
        await producer.send("T", "m0")
    # The group's writer (id 0) is gone; its replica (id 1, here the same fake) answers.
    now = int(time.time() * 1000)
    cluster.registry.register(dataclasses.replace(broker.registration(), broker_id=1), now)
    cluster.registry.register(dataclasses.replace(broker.registration(), addr=dead_addr), now)
    async with PullConsumer([cluster.namesrv_addr], "G") as consumer:
        [mq] = await consumer.fetch_queues("T")
        pulled = await consumer.pull(mq, 0)
        assert [m.text for m in pulled.messages] == ["m0"]
        with pytest.raises(Unavailable):  # a write has nowhere else to go
            await consumer.commit_offset(mq, 1)
