"""What a broker registers reaches routes and clients (needs node.py to register with
`dledgermq.api.registration.registration` and to give BrokerIdentity its zone).

Goal: the NameServer shows each group's zone, permission and auto-create flag; a
write-disabled group's queues are read-only in the topic route (so producers that never
sent to it keep away); a send to a topic without a route reaches the group that
auto-creates topics, which creates it with 4 queues and registers it.

Method: two standalone groups started through the CLI; polled conditions with deadlines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dledgermq.client import Admin, Producer
from dledgermq.errors import NoRoute
from tests.conftest import wait_until_async
from tests.integration.conftest import free_port, started
from tests.support import SMALL_STORE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def write_zoned_groups(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yml"
    path.write_text(
        f"""
cluster: Zoned
data_dir: ./data
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
brokers:
  - {{name: broker-a, zone: az1, limits: {{auto_create_topic: true}},
      nodes: [{{id: a1, port: {free_port()}}}]}}
  - {{name: broker-b, nodes: [{{id: b1, port: {free_port()}, zone: az2}}]}}
"""
        + SMALL_STORE.format(flush="sync")
    )
    return path


async def test_zone_perm_and_auto_create_reach_the_nameserver(tmp_path: Path) -> None:
    with started(write_zoned_groups(tmp_path)) as cluster:
        namesrv = [cluster.namesrv]
        async with Admin(namesrv) as admin:
            brokers = {b["broker_name"]: b for b in await admin.brokers()}
            assert {
                n: (b["zone"], b["perm"], b["auto_create_topic"]) for n, b in brokers.items()
            } == {
                "broker-a": ("az1", 6, True),
                "broker-b": ("az2", 6, False),
            }
            await admin.create_topic("Masked", queues=2)

            async def route_perms() -> dict[str, int]:
                route = (await admin.topic_status("Masked"))["route"]
                return {q["broker_name"]: q["perm"] for q in route["queues"]}

            await wait_until_async(
                lambda: _equals(route_perms(), {"broker-a": 6, "broker-b": 6}), what="routes"
            )
            await admin.set_write_permission("broker-a", writable=False)
            await wait_until_async(
                lambda: _equals(route_perms(), {"broker-a": 4, "broker-b": 6}),
                what="the masked route",
            )
            async with Producer(namesrv) as producer:
                sent = {
                    (await producer.send("Masked", f"m{i}")).queue.broker_name for i in range(6)
                }
                assert sent == {"broker-b"}
            await admin.set_write_permission("broker-a", writable=True)

            async with Producer(namesrv) as producer:
                result = await producer.send("AutoNew", "first")
            assert result.queue.broker_name == "broker-a"

            async def auto_route() -> object:
                return (await admin.topic_status("AutoNew"))["route"]["queues"]

            expected = [{"broker_name": "broker-a", "read_queues": 4, "write_queues": 4, "perm": 6}]
            await wait_until_async(
                lambda: _equals(auto_route(), expected), what="the auto-created topic's route"
            )


async def _equals(value, expected) -> bool:
    try:
        return await value == expected
    except NoRoute:  # not routed yet
        return False
