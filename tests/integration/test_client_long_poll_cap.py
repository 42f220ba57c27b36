"""A long poll longer than the broker's configured cap must be served, not refused.

Goal: docs/API.md allows a pull's `wait_ms` up to 15000, `PullConsumer.pull` accepts the
same range and `PushOptions.wait_ms` defaults to 15000 (RocketMQ's push long poll). A
broker may be configured with a lower `limits.max_long_poll_ms` (the integration cluster
uses 5000) and a client has no way to learn it. The cap bounds what a client can make the
broker hold, so the broker should hold a pull for at most its cap; answering 400 instead
makes every pull of a default `PushConsumer` fail, so it never delivers anything.

Method: one real cluster from the `cluster` fixture (max_long_poll_ms 5000); a message is
stored first, so a served pull returns at once and the test never waits on a hold.
"""

from __future__ import annotations

import pytest

from dledgermq.client import Admin, Message, MessageQueue, Producer, PullConsumer, PushConsumer
from dledgermq.errors import NoRoute
from tests.conftest import wait_until_async
from tests.integration.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "ClientLongPollCap"
DOCUMENTED_MAX_WAIT_MS = 15_000  # docs/API.md and PushOptions.wait_ms


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

    # The request: GET /topics/ClientLongPollCap/queues/0/messages
    #   ?offset=0&max=32&tags=*&wait_ms=15000
    # Expected: 200 with the stored message (no hold is needed: it is already there).
    # Actual: 400 BAD_REQUEST "query parameter `wait_ms` must be within 0..5000".
    async with PullConsumer(namesrv, "long-poll-cap") as consumer:
        result = await consumer.pull(
            MessageQueue(TOPIC, "broker-a", 0), 0, wait_ms=DOCUMENTED_MAX_WAIT_MS
        )
        assert [m.msg_id for m in result.messages] == [sent.msg_id]

    # What users see: a PushConsumer with default options delivers nothing.
    received: list[Message] = []

    async def collect(messages: list[Message]) -> None:
        received.extend(messages)

    async with PushConsumer(namesrv, "default-push", TOPIC, callback=collect, from_where="first"):

        async def delivered() -> bool:
            return bool(received)

        await wait_until_async(delivered, timeout_s=10, what="a default PushConsumer delivery")
    assert [m.msg_id for m in received] == [sent.msg_id]
