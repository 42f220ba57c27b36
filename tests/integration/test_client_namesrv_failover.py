"""The client survives the loss of one of two NameServers.

Goal: with two NameServers, SIGKILL of one must not stop a producer: routes are fetched
from the survivor, for topics it already knew and for topics created after the kill.

Method: a cluster file of our own (two NameServers, one broker) in the conftest's format,
started with `dledgermq cluster up --detach` and always stopped with `cluster down` plus
SIGKILL of the recorded PIDs. Clients list the victim first and start with it (an rng
that always picks index 0), so the failover path is the one taken. A client that knows
only the victim shows that the victim is really gone; a producer without any cached
route can then only have been routed by the survivor. Every send is checked by a pull.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dledgermq.client import Admin, MessageQueue, Producer, PullConsumer
from dledgermq.client.http import HttpSession
from dledgermq.config import load_config
from dledgermq.errors import NoRoute, Unavailable
from tests.conftest import wait_until_async
from tests.integration.conftest import Cluster, free_port
from tests.support import SMALL_STORE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BROKER = "broker-a"


class FirstAddress(random.Random):
    """An rng whose `randrange` is always 0: clients start at the first NameServer listed."""

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        return 0


def write_two_namesrv_cluster(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yml"
    path.write_text(
        f"""
cluster: ItCluster
data_dir: ./data
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs:
  - {{id: ns1, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}
  - {{id: ns2, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}
brokers: [{{name: broker-a, nodes: [{{id: n1, port: {free_port()}}}]}}]
"""
        + SMALL_STORE.format(flush="sync")
    )
    return path


@pytest.fixture
def two_namesrv_cluster(tmp_path: Path) -> Iterator[Cluster]:
    path = write_two_namesrv_cluster(tmp_path)
    running = Cluster(path, load_config(path))
    try:
        running.cli("cluster", "up", str(path), "--detach")
        yield running
    finally:
        running.cli("cluster", "down", str(path), check=False)
        running.kill_all()


async def routes(namesrv: str, topic: str) -> bool:
    """True once `namesrv` routes `topic` to the broker."""
    async with Admin([namesrv]) as admin:
        try:
            status = await admin.topic_status(topic)
        except NoRoute:
            return False
    return [q["broker_name"] for q in status["route"]["queues"]] == [BROKER]


async def create_routed_topic(namesrvs: list[str], topic: str, *, routed_by: list[str]) -> None:
    """Create `topic` through `namesrvs` and wait until each of `routed_by` routes it."""
    async with Admin(namesrvs, rng=FirstAddress()) as admin:
        await admin.create_topic(topic, queues=4)
    for namesrv in routed_by:

        async def routed(namesrv: str = namesrv) -> bool:
            return await routes(namesrv, topic)

        await wait_until_async(routed, timeout_s=10, what=f"{namesrv} routing {topic}")


async def send_and_verify(
    producer: Producer, namesrvs: list[str], topic: str, count: int, tag: str
) -> None:
    """Send `count` messages one by one and read each back where it was stored."""
    async with PullConsumer(namesrvs, "verify", rng=FirstAddress()) as consumer:
        for i in range(count):
            body = f"{tag}-{i}".encode()
            sent = await producer.send(topic, body)
            pulled = await consumer.pull(sent.queue, sent.queue_offset, max_messages=1)
            assert [(m.msg_id, m.body) for m in pulled.messages] == [(sent.msg_id, body)]


async def test_producer_sends_through_the_surviving_namesrv(
    two_namesrv_cluster: Cluster,
) -> None:
    victim, survivor = two_namesrv_cluster.config.namesrv_addrs
    both = [victim, survivor]
    await create_routed_topic(both, "BeforeKill", routed_by=both)

    # route_refresh_s=0: this producer asks a NameServer (the victim first) on every send.
    async with Producer(both, rng=FirstAddress(), route_refresh_s=0.0) as producer:
        await send_and_verify(producer, both, "BeforeKill", 4, "before")

        os.kill(two_namesrv_cluster.pid("ns1"), signal.SIGKILL)
        http = HttpSession(timeout_s=1.0)
        try:

            async def victim_gone() -> bool:
                try:
                    await http.request("GET", victim, "/status")
                except Unavailable:
                    return True
                return False

            await wait_until_async(victim_gone, timeout_s=10, what="the killed NameServer gone")
        finally:
            await http.close()

        # The long-lived producer keeps sending: every route lookup fails over.
        await send_and_verify(producer, both, "BeforeKill", 6, "after")

    # A topic created after the kill (through the same failover) only the survivor knows.
    await create_routed_topic(both, "AfterKill", routed_by=[survivor])
    async with Producer([victim], retries=0) as victim_only:
        with pytest.raises(Unavailable):
            await victim_only.send("AfterKill", "no NameServer to route it")
    # A fresh producer, no cached route, starting at the dead NameServer.
    async with Producer(both, rng=FirstAddress()) as fresh:
        await send_and_verify(fresh, both, "AfterKill", 4, "fresh")
        await send_and_verify(fresh, both, "BeforeKill", 2, "fresh")
        batch = await fresh.send_batch("AfterKill", ["b0", "b1"])
        assert len({r.queue_id for r in batch}) == 1
    async with PullConsumer(both, "after-kill", rng=FirstAddress()) as consumer:
        queues = await consumer.fetch_queues("AfterKill")
        assert queues == [MessageQueue("AfterKill", BROKER, q) for q in range(4)]
        ranges = [await consumer.queue_range(mq) for mq in queues]
        assert sum(high for _, high in ranges) == 6
