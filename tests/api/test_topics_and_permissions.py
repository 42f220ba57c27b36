"""Topics and permissions through the broker API, against a real in-process broker.

Goal (issue 6, "Topics and permissions"): read and write queue counts act independently
(a send may use only the first `write_queues` queues, a pull only the first
`read_queues`); topic perm 2/4/6 is enforced on send, pull, offset-by-time and the
rebalancer; the broker group's write-disable switch refuses every send with
NO_PERMISSION (`broker_writable: false`) while pulls, offset commits and topic admin go
on, is shown in /status and the registration, and survives a restart (it is a record in
the log); auto-create (off by default) creates an unknown topic with 4 queues on a send,
never a `%` system name; the broker's zone labels its queues for zone-aware consumers.
Method: HTTP requests to the app of a broker whose actor failures are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dledgermq.api.broker_app import make_broker_app
from dledgermq.api.registration import registration
from dledgermq.config import ClusterConfig
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from tests.api.test_broker_api import error_of, send
from tests.conftest import wait_until_async
from tests.support import small_cluster

pytestmark = pytest.mark.timeout(30)
PERMISSION = "/admin/write-permission"


def with_limits(config: ClusterConfig, **limits: object) -> ClusterConfig:
    group = config.groups[0]
    changed = dataclasses.replace(group, limits=dataclasses.replace(group.limits, **limits))
    return dataclasses.replace(config, groups=(changed,))


@contextlib.asynccontextmanager
async def running(config: ClusterConfig) -> AsyncIterator[BrokerNode]:
    """A broker opened and stopped off the loop (both block on files, as in node.py)."""
    group, node = config.node("n1")
    fatal: list[object] = []
    hooks = BrokerHooks(on_fatal=lambda *failure: fatal.append(failure))
    broker = await asyncio.to_thread(open_broker, config, group, node, hooks=hooks)
    try:
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)
    assert fatal == [], f"an actor failed: {fatal}"


@contextlib.asynccontextmanager
async def serving(broker: BrokerNode) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_broker_app(broker.context))) as client:
        yield client


async def pull(client: TestClient, topic: str, queue_id: int, offset: int = 0):
    return await client.get(
        f"/topics/{topic}/queues/{queue_id}/messages", params={"offset": offset}
    )


async def heartbeat(client: TestClient, group: str, client_id: str, subs: dict, **extra) -> dict:
    beat = {"client_id": client_id, "subscriptions": subs, **extra}

    async def answered() -> dict | None:  # 503 until the rebalancer's first tick.
        response = await client.post(f"/groups/{group}/heartbeat", json=beat)
        return await response.json() if response.status == 200 else None

    return await wait_until_async(answered, what="a heartbeat answer")


# -- read/write queue counts and topic perm -------------------------------------------------


async def test_read_and_write_queue_counts_are_independent(client: TestClient) -> None:
    created = await client.post("/topics", json={"topic": "Q", "read_queues": 2, "write_queues": 4})
    assert (await created.json())["read_queues"] == 2
    await send(client, "Q", [{"body": "in-3"}], queue_id=3)  # a write queue beyond the reads
    assert await error_of(await pull(client, "Q", 3)) == (404, "QUEUE_NOT_FOUND")
    round_robin = [
        (await send(client, "Q", [{"body": f"r{i}"}]))["results"][0]["queue_id"] for i in range(8)
    ]
    assert set(round_robin) == {0, 1, 2, 3}  # the broker's own choice spans the write queues
    # Growing the read count makes what was written there readable.
    await client.put("/topics/Q", json={"read_queues": 4})
    grown = await (await pull(client, "Q", 3)).json()
    assert [m["body"] for m in grown["messages"]] == ["in-3", "r3", "r7"]
    # Shrinking writes first lets readers drain: queue 3 takes no sends, still serves reads.
    await client.put("/topics/Q", json={"write_queues": 2})
    refused = await client.post(
        "/topics/Q/messages", json={"messages": [{"body": "x"}], "queue_id": 3}
    )
    assert await error_of(refused) == (404, "QUEUE_NOT_FOUND")
    assert (await pull(client, "Q", 3)).status == 200
    drafted = [
        (await send(client, "Q", [{"body": "y"}]))["results"][0]["queue_id"] for _ in range(4)
    ]
    assert set(drafted) == {0, 1}


async def test_a_write_only_topic_refuses_reads_everywhere(client: TestClient) -> None:
    await client.post("/topics", json={"topic": "W", "queues": 2, "perm": 2})
    await send(client, "W", [{"body": "x"}], queue_id=0)
    assert await error_of(await pull(client, "W", 0)) == (403, "NO_PERMISSION")
    by_time = await client.get("/topics/W/queues/0/offset-by-time", params={"timestamp_ms": 0})
    assert await error_of(by_time) == (403, "NO_PERMISSION")
    answer = await heartbeat(client, "g", "c1", {"W": "*"})
    assert answer["assignment"] == {"W": []}
    await client.put("/topics/W", json={"perm": 6})
    assert len((await (await pull(client, "W", 0)).json())["messages"]) == 1


# -- the write-disable switch ------------------------------------------------------------------


async def test_write_disable_refuses_sends_and_nothing_else(client: TestClient, topic: str) -> None:
    stored = await send(client, topic, [{"body": "before"}], queue_id=0)
    assert await (await client.get(PERMISSION)).json() == {
        "broker_name": "broker-a",
        "perm": 6,
        "writable": True,
    }
    switched = await client.put(PERMISSION, json={"writable": False})
    assert (switched.status, await switched.json()) == (
        200,
        {"broker_name": "broker-a", "perm": 4, "writable": False},
    )
    refused = await client.post(f"/topics/{topic}/messages", json={"messages": [{"body": "x"}]})
    body = await refused.json()
    assert (refused.status, body["code"]) == (403, "NO_PERMISSION")
    assert (body["broker_name"], body["broker_writable"]) == ("broker-a", False)
    assert "write-disabled" in body["message"]
    # Reads, consumer offsets and topic admin go on.
    pulled = await (await pull(client, topic, 0)).json()
    assert [m["body"] for m in pulled["messages"]] == ["before"]
    commit = await client.post("/groups/G/offsets", json={"topic": topic, "offsets": {"0": 1}})
    assert commit.status == 200
    assert (await client.post("/topics", json={"topic": "Other"})).status == 201
    status = await (await client.get("/status")).json()
    assert (status["writable"], status["perm"]) == (False, 4)
    # Idempotent, and back on.
    assert (await client.put(PERMISSION, json={"writable": False})).status == 200
    assert (await (await client.put(PERMISSION, json={"writable": True})).json())["writable"]
    after = await send(client, topic, [{"body": "after"}], queue_id=0)
    assert after["results"][0]["queue_offset"] == stored["results"][0]["queue_offset"] + 1


@pytest.mark.parametrize(
    "body",
    [{}, {"writable": "false"}, {"writable": 0}, {"writable": None}, {"writable": True, "x": 1}],
)
async def test_bad_write_permission_requests_are_refused(client: TestClient, body: dict) -> None:
    response = await client.put(PERMISSION, json=body)
    assert await error_of(response) == (400, "BAD_REQUEST")
    assert (await (await client.get(PERMISSION)).json())["writable"] is True


async def test_write_disable_survives_a_restart(tmp_path: Path) -> None:
    """The switch is a record in the log (and in the checkpoint's state snapshot)."""
    config = small_cluster(tmp_path)
    async with running(config) as broker, serving(broker) as client:
        await client.post("/topics", json={"topic": "T", "queues": 1})
        await send(client, "T", [{"body": "kept"}], queue_id=0)
        assert (await client.put(PERMISSION, json={"writable": False})).status == 200
    async with running(config) as broker:
        assert registration(broker.context)["perm"] == 4
        async with serving(broker) as client:
            refused = await client.post("/topics/T/messages", json={"messages": [{"body": "x"}]})
            assert await error_of(refused) == (403, "NO_PERMISSION")
            pulled = await (await pull(client, "T", 0)).json()
            assert [m["body"] for m in pulled["messages"]] == ["kept"]


# -- registration, auto-create and zone ---------------------------------------------------------


async def test_registration_carries_perm_zone_and_auto_create(
    broker_node: BrokerNode, client: TestClient, topic: str
) -> None:
    body = registration(broker_node.context)
    assert {k: body[k] for k in ("broker_name", "broker_id", "perm", "auto_create_topic")} == {
        "broker_name": "broker-a",
        "broker_id": 0,
        "perm": 6,
        "auto_create_topic": False,
    }
    assert "zone" not in body
    assert body["topics"] == [{"topic": topic, "read_queues": 4, "write_queues": 4, "perm": 6}]
    await client.put(PERMISSION, json={"writable": False})
    identity = broker_node.context.identity
    broker_node.context.identity = dataclasses.replace(identity, zone="az-1")
    body = registration(broker_node.context)
    assert (body["perm"], body["zone"]) == (4, "az-1")


async def test_auto_create_makes_a_4_queue_topic_on_a_send(tmp_path: Path) -> None:
    config = with_limits(small_cluster(tmp_path), auto_create_topic=True)
    async with running(config) as broker:
        assert registration(broker.context)["auto_create_topic"] is True
        async with serving(broker) as client:
            result = (await send(client, "Fresh", [{"body": "first"}]))["results"][0]
            assert (result["queue_id"], result["queue_offset"]) == (0, 0)
            created = await (await client.get("/topics/Fresh")).json()
            assert {k: created[k] for k in ("read_queues", "write_queues", "perm")} == {
                "read_queues": 4,
                "write_queues": 4,
                "perm": 6,
            }
            pulled = await (await pull(client, "Fresh", 0)).json()
            assert [m["body"] for m in pulled["messages"]] == ["first"]
            # A queue the new topic will not have: refused, and nothing is created.
            too_far = await client.post(
                "/topics/Other/messages", json={"messages": [{"body": "x"}], "queue_id": 4}
            )
            assert await error_of(too_far) == (404, "QUEUE_NOT_FOUND")
            assert await error_of(await client.get("/topics/Other")) == (404, "TOPIC_NOT_FOUND")
            for system in ("%RETRY%g", "%DLQ%g"):
                refused = await client.post(
                    f"/topics/{system.replace('%', '%25')}/messages",
                    json={"messages": [{"body": "x"}]},
                )
                assert await error_of(refused) == (400, "INVALID_TOPIC")
            # A write-disabled group creates nothing either.
            await client.put(PERMISSION, json={"writable": False})
            refused = await client.post(
                "/topics/Later/messages", json={"messages": [{"body": "x"}]}
            )
            assert await error_of(refused) == (403, "NO_PERMISSION")
            listed = await (await client.get("/topics")).json()
            assert [t["topic"] for t in listed["topics"]] == ["Fresh"]


async def test_without_auto_create_an_unknown_topic_is_not_found(client: TestClient) -> None:
    response = await client.post("/topics/Nope/messages", json={"messages": [{"body": "x"}]})
    assert await error_of(response) == (404, "TOPIC_NOT_FOUND")
    assert (await (await client.get("/topics")).json())["topics"] == []


async def test_zone_aware_uses_the_brokers_zone(
    broker_node: BrokerNode, client: TestClient, topic: str
) -> None:
    """Every queue of this broker lies in its zone: zone_aware gives them all to the member
    of that zone; without a broker zone it is plain `average` (2 queues each)."""
    identity = broker_node.context.identity
    zone_aware = {"strategy": "zone_aware"}
    first = await heartbeat(client, "Z", "c-near", {topic: "*"}, zone="az-1", **zone_aware)
    assert first["assignment"] == {topic: [0, 1, 2, 3]}
    other = await heartbeat(client, "Z", "c-far", {topic: "*"}, zone="az-2", **zone_aware)
    assert other["assignment"] == {topic: []}
    broker_node.context.identity = dataclasses.replace(identity, zone="az-1")
    near = await heartbeat(client, "Z", "c-near", {topic: "*"}, zone="az-1", **zone_aware)
    assert near["assignment"] == {topic: [0, 1, 2, 3]}  # keeps all: its zone's queues
    broker_node.context.identity = identity  # no zone: the inner strategy (average)
    near = await heartbeat(client, "Z", "c-near", {topic: "*"}, zone="az-1", **zone_aware)
    assert len(near["assignment"][topic]) == 2
