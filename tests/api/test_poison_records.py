"""A committed record is never a reason for a node to stop.

Goal: records that a log may already hold, written before the edge refused them (the
probe's D2-D6 wrote them through a delayed message's REAL_TOPIC), are passed over when
applied: counted, logged with their offset and shown in `/status`, while dispatch, the
delay scheduler and writes go on, and the node opens again over them after a restart.
Method: a real broker (actors and store in a temp dir); the poison is appended through the
same submit path the broker's own writers use, since no client request can write it any
more; the `broker_node` fixture fails the test if any actor died.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.api.broker_app import make_broker_app
from dledgermq.api.context import append
from dledgermq.broker.delay import SCHEDULE_TOPIC
from dledgermq.broker.topics import BROKER_PERM_TOPIC, CONSUMER_OFFSET_TOPIC, TOPIC_CONFIG_TOPIC
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from dledgermq.store.record import MessageDraft
from tests.conftest import wait_until_async
from tests.support import small_cluster

pytestmark = pytest.mark.timeout(60)


def internal(topic: str, body: bytes) -> MessageDraft:
    return MessageDraft(topic, 0, body, {}, 0)


def scheduled(real_topic: str, real_qid: str, body: bytes = b"x") -> MessageDraft:
    """A level-1 delayed copy due at once, re-addressed as a pre-fix log could hold it."""
    properties = {"REAL_TOPIC": real_topic, "REAL_QID": real_qid, "DELIVER_AT": "0"}
    return MessageDraft(SCHEDULE_TOPIC, 0, body, properties | {"DUE_AT": "0"}, 0)


POISON = (
    internal(TOPIC_CONFIG_TOPIC, b"not msgpack"),  # D3's record once re-put
    internal(TOPIC_CONFIG_TOPIC, msgpack.packb({"op": "put", "topic": "X", "config": 1})),
    internal(BROKER_PERM_TOPIC, msgpack.packb({"perm": 99})),
    internal(BROKER_PERM_TOPIC, msgpack.packb([1, 2])),
    internal(CONSUMER_OFFSET_TOPIC, msgpack.packb({"group": "g", "topic": "T", "offsets": 7})),
    scheduled("%SYS%TOPIC", "0", b"not msgpack"),  # D3 before its release
    scheduled("%SYS%BROKER", "0", msgpack.packb({"perm": 4})),  # D4
    scheduled("T", "3000000000"),  # D6: no such queue can exist
    scheduled("T", "not-a-number"),  # D2
)


async def unreadable(client: TestClient) -> dict:
    return (await (await client.get("/status")).json())["unreadable_records"]


async def test_poison_records_are_passed_over_counted_and_the_node_goes_on(
    client: TestClient, broker_node: BrokerNode, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "dledgermq.broker.unreadable")
    ctx = broker_node.context
    for draft in POISON:
        await append(ctx, [draft])
    # The scheduler passes the poisoned copies over; a real delayed message behind them in
    # the same schedule queue is still delivered (D6 blocked it forever).
    sent = await client.post(
        f"/topics/{topic}/messages", json={"messages": [{"body": "due", "delay_level": 1}]}
    )
    assert sent.status == 200, await sent.text()

    async def delivered() -> list[str]:
        bodies = []
        for queue_id in range(4):
            page = await client.get(
                f"/topics/{topic}/queues/{queue_id}/messages", params={"offset": 0, "max": 64}
            )
            bodies += [m["body"] for m in (await page.json())["messages"]]
        return bodies

    assert await wait_until_async(delivered, timeout_s=15, what="the delayed message") == ["due"]
    report = await wait_until_async(
        lambda: _counted(client, len(POISON)), timeout_s=10, what="every poison record counted"
    )
    assert {r["topic"] for r in report["recent"]} == {
        TOPIC_CONFIG_TOPIC,
        BROKER_PERM_TOPIC,
        CONSUMER_OFFSET_TOPIC,
        SCHEDULE_TOPIC,
    }
    assert all(r["commitlog_offset"] >= 0 and r["reason"] for r in report["recent"])
    assert "passed over the record at commitlog offset" in caplog.text
    status = await (await client.get("/status")).json()
    assert status["writable"] is True, "a poison record changed the broker's permission"
    topics = await (await client.get("/topics")).json()
    assert [t["topic"] for t in topics["topics"]] == [topic]


async def _counted(client: TestClient, expected: int) -> dict | None:
    report = await unreadable(client)
    return report if report["count"] >= expected else None


async def test_a_node_opens_again_over_poison_records(tmp_path: Path) -> None:
    """Every replica failed on D3's record at every restart: the group never came back.
    The restart replays the whole log (no checkpoint), so the records are applied again."""
    config = small_cluster(tmp_path)
    group, node = config.node("n1")
    fatal: list[tuple[str, BaseException]] = []
    hooks = BrokerHooks(on_fatal=lambda name, error: fatal.append((name, error)))
    poison = POISON[:5]
    for run in ("first", "restarted"):
        broker = await asyncio.to_thread(open_broker, config, group, node, hooks=hooks)
        try:
            async with TestClient(TestServer(make_broker_app(broker.context))) as client:
                if run == "first":
                    for draft in poison:
                        await append(broker.context, [draft])
                assert (await unreadable(client))["count"] == len(poison), run
                sent = await client.post("/topics", json={"topic": f"T{run}", "queues": 1})
                assert sent.status == 201, await sent.text()
        finally:
            await asyncio.to_thread(broker.stop)
        for checkpoint in tmp_path.rglob("checkpoint"):
            checkpoint.unlink()
    assert fatal == []
