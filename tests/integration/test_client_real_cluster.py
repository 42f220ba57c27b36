"""The Python client against a real NameServer and broker, one feature area per test.

Goal: show that what `dledgermq.client` promises (docs/API.md, the client docstrings)
holds end to end: every send mode stores exactly what was sent where it says, pulls and
offsets behave as documented, the push consumer delivers each message once and in queue
order and resumes from its committed offsets, the admin calls change and find what they
say, and the blocking facades work from plain functions.

Method: each test gets a fresh cluster from the `cluster` fixture (the CLI's
`cluster up --detach` on free loopback ports, always stopped), creates its own topics
through `Admin`, waits (bounded) until the NameServer routes them, then checks results
against what the broker returns on a pull, never against the client's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

from dledgermq.client import (
    Admin,
    Message,
    MessageQueue,
    OutgoingMessage,
    Producer,
    PullConsumer,
    PushConsumer,
    PushOptions,
    SendResult,
    SyncAdmin,
    SyncProducer,
    SyncPullConsumer,
)
from dledgermq.client.http import HttpSession
from dledgermq.errors import (
    BatchTooLarge,
    MessageNotFound,
    MessageTooLarge,
    NoPermission,
    NoRoute,
    OffsetOutOfRange,
    TopicExists,
    TopicNotFound,
)
from tests.conftest import wait_until, wait_until_async
from tests.integration.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BROKER = "broker-a"  # the broker group of the conftest's cluster file
UNIQ_KEY = "UNIQ_KEY"
ROUTE_TIMEOUT_S = 10.0
# Long polls stay under the test cluster's `max_long_poll_ms` (5000).
PUSH_OPTIONS = PushOptions(wait_ms=1000, max_messages=4)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def topic_config(topic: str, queues: int, perm: int = 6) -> dict[str, object]:
    return {"topic": topic, "read_queues": queues, "write_queues": queues, "perm": perm}


async def create_topic(admin: Admin, topic: str, queues: int) -> None:
    """Create `topic` on the broker and wait until the NameServer routes all its queues."""
    assert await admin.create_topic(topic, queues=queues) == {BROKER: topic_config(topic, queues)}

    async def routed() -> bool:
        try:
            status = await admin.topic_status(topic)
        except NoRoute:
            return False
        return status["route"]["queues"] == [
            {"broker_name": BROKER, "read_queues": queues, "write_queues": queues, "perm": 6}
        ]

    await wait_until_async(routed, timeout_s=ROUTE_TIMEOUT_S, what=f"a route to {topic}")


async def pull_queue(consumer: PullConsumer, mq: MessageQueue) -> list[Message]:
    """Every message of `mq` up to the max offset of the last pull (bounded)."""
    offset, _ = await consumer.queue_range(mq)
    messages: list[Message] = []
    for _ in range(100):
        result = await consumer.pull(mq, offset, max_messages=64)
        messages += result.messages
        offset = result.next_offset
        if offset >= result.max_offset:
            return messages
    raise AssertionError(f"{mq}: not drained after 100 pulls (at {offset})")


async def pull_topic(consumer: PullConsumer, topic: str) -> list[Message]:
    messages: list[Message] = []
    for mq in await consumer.fetch_queues(topic):
        messages += await pull_queue(consumer, mq)
    return messages


async def pull_one(consumer: PullConsumer, sent: SendResult) -> Message:
    [message] = (await consumer.pull(sent.queue, sent.queue_offset, max_messages=1)).messages
    return message


def assert_stored(message: Message, sent: SendResult, body: bytes) -> None:
    """The pulled message is the one the SendResult names, with the bytes that were sent."""
    assert (message.msg_id, message.unique_key) == (sent.msg_id, sent.unique_key)
    assert (message.topic, message.queue_id) == (sent.queue.topic, sent.queue_id)
    assert (message.queue_offset, message.commitlog_offset) == (
        sent.queue_offset,
        sent.commitlog_offset,
    )
    assert message.body == body


def msg_id_prefix(broker_name: str) -> str:
    return f"{zlib.crc32(broker_name.encode()) & 0xFFFFFFFF:08X}"


# -- 1. producer ------------------------------------------------------------------------------


async def test_producer_send_sync_async_oneway_and_batch(cluster: Cluster) -> None:
    namesrv = [cluster.namesrv]
    topic = "ClientSendModes"
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, 4)

    async with Producer(namesrv) as producer, PullConsumer(namesrv, "check") as consumer:
        # send: acknowledged with final positions; round-robin spreads over all queues.
        before = now_ms()
        sent = [await producer.send(topic, f"sync-{i}") for i in range(8)]
        after = now_ms()
        assert {r.status for r in sent} == {"SEND_OK"}
        assert Counter(r.queue_id for r in sent) == {0: 2, 1: 2, 2: 2, 3: 2}
        assert len({r.unique_key for r in sent}) == 8
        for result in sent:
            assert len(result.msg_id) == 32
            assert result.msg_id[:8] == msg_id_prefix(BROKER)
            assert int(result.msg_id[8:24], 16) == result.commitlog_offset
        per_queue: dict[int, list[int]] = defaultdict(list)
        for result in sent:
            per_queue[result.queue_id].append(result.queue_offset)
        assert all(offsets == [0, 1] for offsets in per_queue.values()), per_queue
        for i, result in enumerate(sent):
            message = await pull_one(consumer, result)
            assert_stored(message, result, f"sync-{i}".encode())
            assert before <= message.born_timestamp_ms <= message.store_timestamp_ms <= after

        # send_async with a callback: the callback and the task see the same result.
        outcome: asyncio.Future[tuple[SendResult | None, BaseException | None]]
        outcome = asyncio.get_running_loop().create_future()
        task = producer.send_async(
            topic, "async-callback", callback=lambda r, e: outcome.set_result((r, e))
        )
        result, error = await asyncio.wait_for(outcome, timeout=10)
        assert error is None
        assert result is not None
        assert result == await task
        assert_stored(await pull_one(consumer, result), result, b"async-callback")

        # send_async as an awaitable, many at once: every one stored at its own position.
        tasks = [producer.send_async(topic, f"async-{i}") for i in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        assert len({(r.queue_id, r.queue_offset) for r in results}) == 20
        for i, result in enumerate(results):
            assert_stored(await pull_one(consumer, result), result, f"async-{i}".encode())

        # send_oneway: no result; the message is found by pulling.
        assert await producer.send_oneway(topic, "oneway", keys="oneway-key") is None

        async def oneway_stored() -> list[Message]:
            return [m for m in await pull_topic(consumer, topic) if m.body == b"oneway"]

        [oneway] = await wait_until_async(oneway_stored, what="the oneway message")
        assert oneway.keys == ("oneway-key",)

        # send_batch: one request, one queue, consecutive offsets, sent order kept.
        items = [
            OutgoingMessage.build("b0", tags="T0", keys=["bk0"], properties={"i": "0"}),
            b"b1",
            "b2",
            {"body": b"b3", "tags": "T3", "keys": "bk3", "properties": {"i": "3"}},
        ]
        batch = await producer.send_batch(topic, items)
        assert len({r.queue_id for r in batch}) == 1
        first = batch[0].queue_offset
        assert [r.queue_offset for r in batch] == list(range(first, first + 4))
        assert [r.commitlog_offset for r in batch] == sorted({r.commitlog_offset for r in batch})
        stored = (await consumer.pull(batch[0].queue, first, max_messages=4)).messages
        assert [m.body for m in stored] == [b"b0", b"b1", b"b2", b"b3"]
        for message, result in zip(stored, batch, strict=True):
            assert_stored(message, result, message.body)
        assert [(m.tags, m.keys) for m in stored] == [
            ("T0", ("bk0",)),
            (None, ()),
            (None, ()),
            ("T3", ("bk3",)),
        ]
        assert [m.properties.get("i") for m in stored] == ["0", None, None, "3"]

        # A batch given a queue lands there, after what that queue already holds.
        target = MessageQueue(topic, BROKER, 2)
        _, high = await consumer.queue_range(target)
        pinned = await producer.send_batch(topic, ["p0", "p1", "p2"], queue=target)
        assert [(r.queue_id, r.queue_offset) for r in pinned] == [(2, high + i) for i in range(3)]

        # A batch over the broker's max_batch_messages (100) is refused whole.
        ranges = [await consumer.queue_range(mq) for mq in await consumer.fetch_queues(topic)]
        with pytest.raises(BatchTooLarge):
            await producer.send_batch(topic, [f"x{i}" for i in range(101)])
        assert [await consumer.queue_range(mq) for mq in await consumer.fetch_queues(topic)] == (
            ranges
        )

    # Errors reach send_async callbacks too: an unknown topic has no route.
    async with Producer(namesrv, retries=0) as failing:
        outcome = asyncio.get_running_loop().create_future()
        task = failing.send_async(
            "NoSuchTopic", "x", callback=lambda r, e: outcome.set_result((r, e))
        )
        result, error = await asyncio.wait_for(outcome, timeout=10)
        assert result is None
        assert isinstance(error, NoRoute)
        with pytest.raises(NoRoute):
            await task


class CountingHttp(HttpSession):
    """The real session, counting the send requests that pass through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sends = 0

    async def request(self, method: str, addr: str, path: str, **kwargs: Any) -> Any:
        self.sends += path.endswith("/messages") and method == "POST"
        return await super().request(method, addr, path, **kwargs)


async def test_auto_batched_sends_are_each_stored_where_their_result_says(
    cluster: Cluster,
) -> None:
    """Concurrent sends share requests, each is stored once where its result says, and
    one too large for the broker fails alone while the rest of its batch is stored."""
    namesrv = [cluster.namesrv]
    topic = "ClientAutoBatch"
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, 2)
    bodies = [f"auto-{i}".encode() for i in range(60)]
    too_large = b"x" * 70_000  # over the test cluster's max_message_bytes (64 KiB)
    http = CountingHttp()
    async with (
        Producer(namesrv, auto_batch=True, retries=0, http=http) as producer,
        PullConsumer(namesrv, "check") as consumer,
    ):
        await producer.send(topic, b"first")  # The route, looked up once.
        sends = [producer.send(topic, body) for body in bodies[:30]]
        sends.append(producer.send(topic, too_large))
        sends += [producer.send(topic, body) for body in bodies[30:]]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*sends, return_exceptions=True), timeout=60
        )
        assert isinstance(outcomes.pop(30), MessageTooLarge)
        results: list[SendResult] = outcomes  # type: ignore[assignment]
        assert all(isinstance(r, SendResult) for r in results), results
        for body, result in zip(bodies, results, strict=True):
            assert_stored(await pull_one(consumer, result), result, body)
        stored = await pull_topic(consumer, topic)
        assert sorted(m.body for m in stored) == sorted([b"first", *bodies])  # Once each.
        # 61 sends, two in flight at first, the rest in batches (one of them refused and
        # halved down to the large message): far fewer requests than messages.
        assert http.sends < 30, http.sends


async def test_producer_message_fields_sharding_and_binary_bodies(cluster: Cluster) -> None:
    namesrv = [cluster.namesrv]
    topic = "ClientFields"
    queues = 8
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, queues)

    async with Producer(namesrv) as producer, PullConsumer(namesrv, "check") as consumer:
        # tags, keys and properties come back exactly (UNIQ_KEY added by the client).
        properties = {"color": "red", "ünïcode": "çødé ✓", "empty": "", "spaces": "a b  c"}
        sent = await producer.send(
            topic, "with-fields", tags="TagA", keys=["k-1", "k-2"], properties=properties
        )
        message = await pull_one(consumer, sent)
        assert_stored(message, sent, b"with-fields")
        assert message.tags == "TagA"
        assert message.keys == ("k-1", "k-2")
        assert message.properties == {**properties, UNIQ_KEY: sent.unique_key}
        assert message.reconsume_times == 0

        bare = await producer.send(topic, "bare")
        message = await pull_one(consumer, bare)
        assert (message.tags, message.keys) == (None, ())
        assert message.properties == {UNIQ_KEY: bare.unique_key}

        solo = await producer.send(topic, "solo-key", keys="solo")
        assert (await pull_one(consumer, solo)).keys == ("solo",)

        # Binary bodies (not UTF-8, NULs, every byte value, near the size limit) are exact.
        bodies = [
            bytes(range(256)),
            b"\x00",
            b"\xff\xfe\xfd not utf-8 \xc3\x28",
            os.urandom(4096),
            os.urandom(60_000),
        ]
        for body in bodies:
            result = await producer.send(topic, body, tags="bin")
            assert_stored(await pull_one(consumer, result), result, body)
        with pytest.raises(UnicodeDecodeError):
            _ = (await pull_one(consumer, result)).text

        # A sharding key always maps to one queue, the same for every producer and run:
        # crc32 of the key over the ordered writable queues (selector.py).
        keys = [f"order-{n}" for n in range(6)]
        expected = {key: zlib.crc32(key.encode()) % queues for key in keys}
        assert len(set(expected.values())) > 1  # the keys spread, so the test can tell
        by_key: dict[str, list[SendResult]] = defaultdict(list)
        async with Producer(namesrv, rng=random.Random(7)) as other:
            for step in range(4):
                for key in keys:
                    sender = producer if step % 2 == 0 else other
                    result = await sender.send(topic, f"{key}:{step}", sharding_key=key)
                    by_key[key].append(result)
        for key, results in by_key.items():
            assert {r.queue_id for r in results} == {expected[key]}, key
            offsets = [r.queue_offset for r in results]
            assert offsets == sorted(offsets)
            stored = [await pull_one(consumer, r) for r in results]
            assert [m.body for m in stored] == [f"{key}:{s}".encode() for s in range(4)]

        # A batch with a sharding key lands in that key's queue as well.
        batch = await producer.send_batch(topic, ["s0", "s1"], sharding_key=keys[0])
        assert {r.queue_id for r in batch} == {expected[keys[0]]}


# -- 2. pull consumer -------------------------------------------------------------------------


async def test_pull_consumer_offsets_ranges_and_long_poll(cluster: Cluster) -> None:
    namesrv = [cluster.namesrv]
    topic = "ClientPull"
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, 2)

    async with (
        Producer(namesrv) as producer,
        PullConsumer(namesrv, "pull-group") as consumer,
        PullConsumer(namesrv, "other-group") as other,
    ):
        mq0, mq1 = MessageQueue(topic, BROKER, 0), MessageQueue(topic, BROKER, 1)
        assert await consumer.fetch_queues(topic) == [mq0, mq1]

        # An empty queue: range (0, 0); a pull at 0 is empty, past it is OFFSET_MOVED.
        assert await consumer.queue_range(mq0) == (0, 0)
        empty = await consumer.pull(mq0, 0)
        assert (empty.messages, empty.next_offset, empty.min_offset, empty.max_offset) == (
            [],
            0,
            0,
            0,
        )
        with pytest.raises(OffsetOutOfRange) as moved:
            await consumer.pull(mq0, 1)
        assert moved.value.code == "OFFSET_MOVED"
        assert moved.value.details == {"min_offset": 0, "max_offset": 0}

        sent = [
            await producer.send(topic, f"m{i}", tags="B" if i % 3 == 0 else "A", queue=mq0)
            for i in range(10)
        ]
        assert [r.queue_offset for r in sent] == list(range(10))
        assert await consumer.queue_range(mq0) == (0, 10)
        assert await consumer.queue_range(mq1) == (0, 0)

        # Pulls page through the queue by offset.
        pages = []
        offset = 0
        for _ in range(4):
            page = await consumer.pull(mq0, offset, max_messages=4)
            assert (page.min_offset, page.max_offset) == (0, 10)
            pages.append([m.queue_offset for m in page.messages])
            offset = page.next_offset
        assert pages == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], []]
        assert offset == 10
        middle = await consumer.pull(mq0, 5, max_messages=2)
        assert [m.body for m in middle.messages] == [b"m5", b"m6"]
        assert middle.next_offset == 7

        # A tag filter skips the others but still advances past them.
        tagged = await consumer.pull(mq0, 0, tags="B")
        assert [m.queue_offset for m in tagged.messages] == [0, 3, 6, 9]
        assert tagged.next_offset == 10
        either = await consumer.pull(mq0, 0, tags="A||B")
        assert len(either.messages) == 10

        # Past the end: OffsetOutOfRange with the valid range in its details.
        with pytest.raises(OffsetOutOfRange) as moved:
            await consumer.pull(mq0, 11)
        assert moved.value.details == {"min_offset": 0, "max_offset": 10}

        # Committed offsets: none at first, then what was stored, per group.
        assert await consumer.fetch_offset(mq0) is None
        await consumer.commit_offset(mq0, 4)
        assert await consumer.fetch_offset(mq0) == 4
        await consumer.commit_offsets({mq0: 7, mq1: 0})
        assert await consumer.fetch_offsets(topic, BROKER) == {0: 7, 1: 0}
        assert await consumer.fetch_offset(mq1) == 0
        assert await other.fetch_offset(mq0) is None

        # offset_by_time: the first offset stored at or after the time.
        stored = (await consumer.pull(mq0, 0, max_messages=10)).messages
        stamps = [m.store_timestamp_ms for m in stored]
        assert stamps == sorted(stamps)
        assert await consumer.offset_by_time(mq0, 0) == 0
        for probe in sorted({*stamps, stamps[-1] + 1}):
            want = next((m.queue_offset for m in stored if m.store_timestamp_ms >= probe), 10)
            assert await consumer.offset_by_time(mq0, probe) == want, probe
        assert await consumer.offset_by_time(mq0, now_ms() + 60_000) == 10

        # A long poll on an empty queue ends empty when its hold runs out ...
        held = await consumer.pull(mq1, 0, wait_ms=200)
        assert (held.messages, held.next_offset) == ([], 0)
        # ... and returns as soon as a message arrives, well before the hold ends.
        poll = asyncio.create_task(consumer.pull(mq1, 0, wait_ms=5000))
        done, _ = await asyncio.wait({poll}, timeout=0.5)
        assert not done, "an empty pull with wait_ms was answered without waiting"
        arrived = await producer.send(topic, "wake-up", queue=mq1)
        woke = await asyncio.wait_for(poll, timeout=3.0)
        assert [m.msg_id for m in woke.messages] == [arrived.msg_id]
        assert woke.next_offset == 1


# -- 3. push consumer -------------------------------------------------------------------------


class Collector:
    """A push callback that records every delivered message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, messages: list[Message]) -> None:
        self.messages += messages

    def bodies(self) -> list[bytes]:
        return [m.body for m in self.messages]


async def send_markers(producer: Producer, topic: str, tag: str) -> set[bytes]:
    """One marker message per queue: once all are consumed, every queue was drained."""
    markers = set()
    for queue_id in range(4):
        body = f"marker-{tag}-{queue_id}".encode()
        await producer.send(topic, body, queue=MessageQueue(topic, BROKER, queue_id))
        markers.add(body)
    return markers


async def consume_until(collector: Collector, wanted: set[bytes], what: str) -> None:
    async def seen() -> bool:
        return wanted <= set(collector.bodies())

    await wait_until_async(seen, timeout_s=20, what=what)


def assert_in_queue_order(messages: Sequence[Message]) -> None:
    by_queue: dict[int, list[int]] = defaultdict(list)
    for message in messages:
        by_queue[message.queue_id].append(message.queue_offset)
    for queue_id, offsets in by_queue.items():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (queue_id, offsets)


async def test_push_consumer_delivers_once_in_order_and_resumes_after_close(
    cluster: Cluster,
) -> None:
    namesrv = [cluster.namesrv]
    topic = "ClientPush"
    group = "push-group"
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, 4)

    async with Producer(namesrv) as producer, PullConsumer(namesrv, group) as offsets:
        first_round = [f"first-{i}".encode() for i in range(30)]
        for body in first_round:
            await producer.send(topic, body)

        collector = Collector()
        consumer = PushConsumer(
            namesrv,
            group,
            topic,
            callback=collector,
            from_where="first",
            commit_interval_s=60,  # only the close below commits
            options=PUSH_OPTIONS,
        )
        await consumer.start()
        try:
            assert consumer.assigned_queues == [MessageQueue(topic, BROKER, q) for q in range(4)]
            await consume_until(collector, set(first_round), "the first round")
            # Queues are consumed in order, so once a marker behind every message of each
            # queue is in, any duplicate would have been delivered already.
            markers = await send_markers(producer, topic, "a")
            await consume_until(collector, markers, "the first markers")
        finally:
            await consumer.close()
        assert sorted(collector.bodies()) == sorted([*first_round, *markers])
        assert len({m.msg_id for m in collector.messages}) == len(collector.messages)
        assert_in_queue_order(collector.messages)

        # close() committed where each queue ended.
        for queue_id in range(4):
            mq = MessageQueue(topic, BROKER, queue_id)
            assert await offsets.fetch_offset(mq) == (await offsets.queue_range(mq))[1]

        # A new consumer of the group resumes after the committed offsets.
        second_round = [f"second-{i}".encode() for i in range(12)]
        for body in second_round:
            await producer.send(topic, body)
        resumed = Collector()
        async with PushConsumer(
            namesrv,
            group,
            topic,
            callback=resumed,
            from_where="first",
            commit_interval_s=60,
            options=PUSH_OPTIONS,
        ):
            await consume_until(resumed, set(second_round), "the second round")
            markers = await send_markers(producer, topic, "b")
            await consume_until(resumed, markers, "the second markers")
        assert sorted(resumed.bodies()) == sorted([*second_round, *markers])
        assert_in_queue_order(resumed.messages)

        # A new group starting at "last" sees only what is sent after it took position.
        late = Collector()
        async with PushConsumer(
            namesrv, "late-group", topic, callback=late, from_where="last", options=PUSH_OPTIONS
        ) as latecomer:

            async def positioned() -> bool:
                return len(latecomer.offsets) == 4

            await wait_until_async(positioned, what="the late group's start offsets")
            markers = await send_markers(producer, topic, "c")
            await consume_until(late, markers, "the late group's markers")
        assert sorted(late.bodies()) == sorted(markers)

        # A new group starting at a time gets what was stored from then on.
        since = min(m.store_timestamp_ms for m in late.messages)
        timed = Collector()
        async with PushConsumer(
            namesrv,
            "timed-group",
            topic,
            callback=timed,
            from_where="timestamp",
            from_timestamp_ms=since,
            options=PUSH_OPTIONS,
        ):
            await consume_until(timed, markers, "the markers stored since the time")
        assert sorted(timed.bodies()) == sorted(markers)


async def test_a_consumer_group_splits_the_queues_and_hands_them_over_without_overlap(
    cluster: Cluster,
) -> None:
    """Clustering mode: the broker's rebalancer gives each member its own queues; when one
    member leaves, the other takes them over from the committed offsets; every message is
    delivered once in total and no queue is ever consumed by both at once."""
    namesrv = [cluster.namesrv]
    topic, group = "ClientGroup", "split-group"
    fast = PushOptions(wait_ms=500, max_messages=4, rebalance_interval_s=0.3)
    async with Admin(namesrv) as admin:
        await create_topic(admin, topic, 4)
    async with Producer(namesrv) as producer:
        first, second = Collector(), Collector()
        one = PushConsumer(
            namesrv,
            group,
            topic,
            callback=first,
            from_where="first",
            options=fast,
            client_id="member-1",
        )
        two = PushConsumer(
            namesrv,
            group,
            topic,
            callback=second,
            from_where="first",
            options=fast,
            client_id="member-2",
        )
        await one.start()
        await two.start()
        closed = False
        try:

            async def split() -> bool:
                return len(one.assigned_queues) == 2 and len(two.assigned_queues) == 2

            await wait_until_async(split, timeout_s=20, what="two queues each")
            assert not set(one.assigned_queues) & set(two.assigned_queues)
            async with PullConsumer(namesrv, group) as inspector:
                view = await inspector.members(topic, BROKER)
            assert [m["client_id"] for m in view["members"]] == ["member-1", "member-2"]
            before = await send_markers(producer, topic, "both")
            await consume_until_any([first, second], before, "markers while both run")
            await one.close()
            closed = True

            async def took_over() -> bool:
                return len(two.assigned_queues) == 4

            await wait_until_async(took_over, timeout_s=20, what="the hand-over")
            after = await send_markers(producer, topic, "one")
            await consume_until(second, after, "markers after the hand-over")
        finally:
            await two.close()
            if not closed:
                await one.close()
    delivered = Counter([*first.bodies(), *second.bodies()])
    assert {b for b, n in delivered.items() if n > 1} == set(), "a message was delivered twice"
    assert set(delivered) == before | after
    assert not {m.queue_id for m in first.messages} & {
        m.queue_id for m in second.messages if m.body in before
    }, "a queue was consumed by both members at once"


async def consume_until_any(collectors: list[Collector], wanted: set[bytes], what: str) -> None:
    async def seen() -> bool:
        return wanted <= {b for c in collectors for b in c.bodies()}

    await wait_until_async(seen, timeout_s=20, what=what)


# -- 4. admin ---------------------------------------------------------------------------------


async def test_admin_topic_lifecycle_and_queries(cluster: Cluster) -> None:
    namesrv = [cluster.namesrv]
    topic, other_topic = "ClientAdmin", "ClientAdminOther"
    async with Admin(namesrv) as admin:
        assert [b["broker_name"] for b in await admin.brokers()] == [BROKER]
        await create_topic(admin, topic, 4)
        await create_topic(admin, other_topic, 2)
        with pytest.raises(TopicExists) as exists:
            await admin.create_topic(topic, queues=4)
        assert exists.value.details["failed"] == {BROKER: "TOPIC_EXISTS"}
        assert exists.value.details["succeeded"] == []
        assert {topic, other_topic} <= set(await admin.list_topics())

        async with Producer(namesrv) as producer:
            before = now_ms()
            first = await producer.send(topic, "k-first", keys=["shared", "only-a"], tags="A")
            second = await producer.send(other_topic, "k-second", keys="shared")
            third = await producer.send(topic, "k-third", keys="shared")

            status = await admin.topic_status(topic)
            assert status["errors"] == {}
            assert [(q["queue_id"], q["min_offset"]) for q in status["queues"]] == [
                (q, 0) for q in range(4)
            ]
            assert sum(q["max_offset"] for q in status["queues"]) == 2
            assert {q["broker_name"] for q in status["queues"]} == {BROKER}

            # query_by_key: across topics newest first, or within one topic.
            everywhere = await admin.query_by_key("shared")
            assert [m.msg_id for m in everywhere] == [third.msg_id, second.msg_id, first.msg_id]
            assert [m.body for m in everywhere] == [b"k-third", b"k-second", b"k-first"]
            in_topic = await admin.query_by_key("shared", topic=topic)
            assert [m.msg_id for m in in_topic] == [third.msg_id, first.msg_id]
            assert [m.msg_id for m in await admin.query_by_key("only-a")] == [first.msg_id]
            assert await admin.query_by_key("shared", topic=other_topic, max_messages=1) == [
                everywhere[1]
            ]
            assert await admin.query_by_key("shared", end_ms=before - 1) == []
            assert await admin.query_by_key("no-such-key") == []

            # query_by_id: by msg_id and by the client's unique key, the same message.
            by_id = await admin.query_by_id(first.msg_id)
            by_unique_key = await admin.query_by_id(first.unique_key)
            assert by_id == by_unique_key == everywhere[2]
            assert (by_id.topic, by_id.queue_id, by_id.queue_offset) == (
                topic,
                first.queue_id,
                first.queue_offset,
            )
            assert (by_id.tags, by_id.keys) == ("A", ("shared", "only-a"))
            with pytest.raises(MessageNotFound):
                await admin.query_by_id(msg_id_prefix(BROKER) + "0" * 24)
            with pytest.raises(MessageNotFound):
                await admin.query_by_id("F" * 32)

            # update_topic: fewer write queues; producers then use only those, including
            # `producer`, whose cached route still lists four: its round robin reaches the
            # removed queues within four sends, the broker refuses them (QUEUE_NOT_FOUND)
            # and the send must go on with a fresh route rather than fail.
            updated = await admin.update_topic(topic, write_queues=2)
            assert updated == {
                BROKER: {"topic": topic, "read_queues": 4, "write_queues": 2, "perm": 6}
            }

            async def route_shows_update() -> bool:
                route = (await admin.topic_status(topic))["route"]
                return route["queues"][0]["write_queues"] == 2

            await wait_until_async(route_shows_update, what="the updated route")
            async with Producer(namesrv) as fresh:
                results = [await fresh.send(topic, f"after-update-{i}") for i in range(6)]
            assert {r.queue_id for r in results} == {0, 1}
            results = [await producer.send(topic, f"stale-route-{i}") for i in range(6)]
            assert {r.queue_id for r in results} == {0, 1}

            # A read-only topic refuses sends with NO_PERMISSION.
            await admin.update_topic(topic, perm=4)
            with pytest.raises(NoPermission):
                await producer.send(topic, "refused", queue=MessageQueue(topic, BROKER, 0))

        # delete_topic: gone from the broker and, soon, from the NameServer.
        assert await admin.delete_topic(topic) == [BROKER]

        async def unrouted() -> bool:
            return topic not in await admin.list_topics()

        await wait_until_async(unrouted, timeout_s=ROUTE_TIMEOUT_S, what="the deleted route")
        with pytest.raises(NoRoute):
            await admin.topic_status(topic)
        with pytest.raises(TopicNotFound):
            await admin.delete_topic(topic)
        assert other_topic in await admin.list_topics()


# -- 5. sync facades --------------------------------------------------------------------------


def test_sync_facades_round_trip_from_plain_functions(cluster: Cluster) -> None:
    namesrv = [cluster.namesrv]
    topic = "ClientSync"
    threads_before = set(threading.enumerate())
    with SyncAdmin(namesrv) as admin:
        assert admin.create_topic(topic, queues=2) == {BROKER: topic_config(topic, 2)}

        def routed() -> bool:
            try:
                return bool(admin.topic_status(topic)["route"]["queues"])
            except NoRoute:
                return False

        wait_until(routed, timeout_s=ROUTE_TIMEOUT_S, what="a route to the sync topic")
        assert topic in admin.list_topics()

        with SyncProducer(namesrv) as producer, SyncPullConsumer(namesrv, "sync-g") as consumer:
            sent = producer.send(topic, b"\x00sync\xff", tags="S", keys="sync-key")
            [message] = consumer.pull(sent.queue, sent.queue_offset, max_messages=1).messages
            assert_stored(message, sent, b"\x00sync\xff")
            assert (message.tags, message.keys) == ("S", ("sync-key",))

            called = threading.Event()
            seen: list[SendResult | None] = []

            def callback(result: SendResult | None, error: BaseException | None) -> None:
                assert error is None
                seen.append(result)
                called.set()

            # Every Producer argument passes through, `queue` and `properties` included.
            queue1 = MessageQueue(topic, BROKER, 1)
            future = producer.send_async(topic, "sync-async", queue=queue1, callback=callback)
            async_result = future.result(timeout=10)
            assert called.wait(timeout=10)
            assert seen == [async_result]
            assert async_result.queue == queue1
            [message] = consumer.pull(async_result.queue, async_result.queue_offset).messages
            assert message.body == b"sync-async"

            batch = producer.send_batch(topic, ["sb0", "sb1", "sb2"])
            assert len({r.queue_id for r in batch}) == 1
            pulled = consumer.pull(batch[0].queue, batch[0].queue_offset, max_messages=3)
            assert [m.body for m in pulled.messages] == [b"sb0", b"sb1", b"sb2"]

            producer.send_oneway(
                topic,
                "sync-oneway",
                keys="sync-oneway-key",
                properties={"via": "oneway"},
                queue=queue1,
            )

            def oneway_found() -> list[Message]:
                return admin.query_by_key("sync-oneway-key", topic=topic)

            [oneway] = wait_until(oneway_found, what="the sync oneway message")
            assert (oneway.body, oneway.queue_id) == (b"sync-oneway", 1)
            assert oneway.properties["via"] == "oneway"

            queues = consumer.fetch_queues(topic)
            assert queues == [MessageQueue(topic, BROKER, 0), MessageQueue(topic, BROKER, 1)]
            total = sum(consumer.queue_range(mq)[1] for mq in queues)
            assert total == 6
            mq = sent.queue
            assert consumer.fetch_offset(mq) is None
            consumer.commit_offset(mq, 1)
            assert consumer.fetch_offset(mq) == 1
            assert consumer.offset_by_time(mq, 0) == 0
            assert consumer.offset_by_time(mq, now_ms() + 60_000) == consumer.queue_range(mq)[1]
            with pytest.raises(OffsetOutOfRange):
                consumer.pull(mq, consumer.queue_range(mq)[1] + 1)

            assert admin.query_by_id(sent.msg_id).body == b"\x00sync\xff"
            assert admin.query_by_id(sent.unique_key).msg_id == sent.msg_id
            assert admin.delete_topic(topic) == [BROKER]

    # Every facade stopped its private loop thread.
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert [t.name for t in leftover if t.name.startswith("dledgermq-")] == []
