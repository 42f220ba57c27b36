"""A long poll longer than the broker's configured cap must be served, not refused.

Goal: `PullConsumer.pull` accepts `wait_ms` up to 15000 and `PushOptions.wait_ms`
defaults to 15000 (RocketMQ's push long poll), while a broker may be configured with a
lower `limits.max_long_poll_ms` (the integration cluster uses 5000) that a client cannot
learn. The cap bounds what a client can make the broker hold, so the broker must hold such
a pull for at most its cap. (It used to answer 400 BAD_REQUEST, so a default
`PushConsumer` never delivered anything from such a broker.)

Method: one real cluster from the `cluster` fixture (max_long_poll_ms 5000). A pull of a
stored message with wait_ms=15000 must return it; an empty one must come back empty once
the cap has passed, well before the 15 s asked for; a default PushConsumer must deliver.
"""

from __future__ import annotations

import asyncio

import pytest

from dledgermq.client import Admin, Message, MessageQueue, Producer, PullConsumer, PushConsumer
from dledgermq.errors import NoRoute
from tests.conftest import wait_until_async
from tests.integration.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "ClientLongPollCap"
DOCUMENTED_MAX_WAIT_MS = 15_000  # PullConsumer's limit and PushOptions.wait_ms
CAPPED_HOLD_DEADLINE_S = 10.0  # above the cluster's 5 s cap, below the 15 s asked for


async def test_wait_ms_above_the_broker_cap_is_held_for_the_cap_not_refused(
    cluster: Cluster,
) -> None:
    namesrv = [cluster.namesrv]
    assert cluster.config.groups[0].limits.max_long_poll_ms < DOCUMENTED_MAX_WAIT_MS
    async with Admin(namesrv) as admin:
        await admin.create_topic(TOPIC, queues=1)

        async def routed() -> bool:
            try:
                return bool((await admin.topic_status(TOPIC))["route"]["queues"])
            except NoRoute:
                return False

        await wait_until_async(routed, what=f"a route to {TOPIC}")
    async with Producer(namesrv) as producer:
        sent = await producer.send(TOPIC, "waiting for a consumer")

    # GET /topics/ClientLongPollCap/queues/0/messages?offset=0&max=32&tags=*&wait_ms=15000
    # must answer 200 with the stored message (it was 400 "wait_ms must be within 0..5000").
    mq = MessageQueue(TOPIC, "broker-a", 0)
    async with PullConsumer(namesrv, "long-poll-cap") as consumer:
        result = await consumer.pull(mq, 0, wait_ms=DOCUMENTED_MAX_WAIT_MS)
        assert [m.msg_id for m in result.messages] == [sent.msg_id]
        # An empty long poll is held for the broker's cap (5 s), not the 15 s asked for.
        empty = await asyncio.wait_for(
            consumer.pull(mq, 1, wait_ms=DOCUMENTED_MAX_WAIT_MS), timeout=CAPPED_HOLD_DEADLINE_S
        )
        assert (empty.messages, empty.next_offset) == ([], 1)

    # So a PushConsumer with default options (wait_ms 15000) delivers from this broker.
    received: list[Message] = []

    async def collect(messages: list[Message]) -> None:
        received.extend(messages)

    async with PushConsumer(namesrv, "default-push", TOPIC, callback=collect, from_where="first"):

        async def delivered() -> bool:
            return bool(received)

        await wait_until_async(delivered, timeout_s=10, what="a default PushConsumer delivery")
    assert [m.msg_id for m in received] == [sent.msg_id]
