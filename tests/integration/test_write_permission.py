"""The broker write-disable switch and the producer on real processes (issue 6, "Topics
and permissions").

Goal: `dledgermq admin write-disable` makes a Raft group refuse sends with NO_PERMISSION
while reads go on; the switch is in the group's log, so after a SIGKILL of the leader the
new leader still refuses sends and serves reads, and the killed node comes back knowing
it; `cluster status` shows it; `write-enable` undoes it. With two broker groups, a Python
producer moves its sends to the writable group and fails with a clear NO_PERMISSION when
neither takes writes.

Method: clusters started through the CLI; faults are SIGKILLs of recorded PIDs; every
wait is a polled condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dledgermq.client import Admin, Producer
from dledgermq.errors import NoPermission
from tests.conftest import wait_until, wait_until_async
from tests.integration.conftest import free_port, started
from tests.integration.test_raft_group import leader, nodes, statuses, write_raft_cluster
from tests.support import SMALL_STORE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def send_status(addr: str, topic: str, body: str) -> tuple[int, dict[str, Any]]:
    """POST one message to a node; (HTTP status, JSON answer)."""
    payload = json.dumps({"messages": [{"body": body}], "queue_id": 0}).encode()
    request = urllib.request.Request(
        f"http://{addr}/topics/{topic}/messages",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def bodies(addr: str, topic: str) -> list[str]:
    url = f"http://{addr}/topics/{topic}/queues/0/messages?offset=0&max=256"
    with urllib.request.urlopen(url, timeout=10) as response:
        return [m["body"] for m in json.loads(response.read())["messages"]]


def test_write_disable_survives_a_leader_kill(tmp_path: Path) -> None:
    with started(write_raft_cluster(tmp_path)) as raft:
        raft.json("topic", "create", "P", "--queues", "1")
        first = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
        assert send_status(nodes(raft)[first], "P", "before")[0] == 200

        switched = raft.json("admin", "write-disable", "broker-a")
        assert switched == {"broker_name": "broker-a", "perm": 4, "writable": False}
        status, refused = send_status(nodes(raft)[first], "P", "refused")
        assert (status, refused["code"], refused["broker_writable"]) == (
            403,
            "NO_PERMISSION",
            False,
        )
        # Every replica applied the record (it is committed before the answer).
        wait_until(
            lambda: all(s and s["writable"] is False for s in statuses(raft).values()),
            timeout_s=30,
            what="every node write-disabled",
        )

        os.kill(raft.pid(first), signal.SIGKILL)
        survivors = set(nodes(raft)) - {first}
        new = wait_until(lambda: leader(raft, among=survivors), timeout_s=30, what="new leader")
        addr = nodes(raft)[new]
        status, refused = send_status(addr, "P", "refused-again")
        assert (status, refused["code"]) == (403, "NO_PERMISSION")
        assert bodies(addr, "P") == ["before"]
        # (exit 1: a local process is down; the document still says who writes and how)
        shown = raft.cli("cluster", "status", str(raft.path), "--json", check=False)
        assert json.loads(shown.stdout)["groups"][0]["writable"] is False

        raft.cli("cluster", "up", str(raft.path), "--detach")  # the killed node only
        wait_until(
            lambda: (statuses(raft)[first] or {}).get("writable") is False,
            timeout_s=30,
            what="the restarted node to know the switch",
        )

        enabled = raft.json("admin", "write-enable", "broker-a")
        assert enabled["writable"] is True
        assert send_status(addr, "P", "after")[0] == 200
        assert bodies(addr, "P") == ["before", "after"]
        unknown = raft.cli("admin", "write-disable", "broker-zz", check=False)
        assert unknown.returncode == 1
        assert "BROKER_NOT_FOUND" in unknown.stderr


def write_two_groups(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yml"
    path.write_text(
        f"""
cluster: TwoGroups
data_dir: ./data
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
brokers:
  - {{name: broker-a, nodes: [{{id: a1, port: {free_port()}}}]}}
  - {{name: broker-b, nodes: [{{id: b1, port: {free_port()}}}]}}
"""
        + SMALL_STORE.format(flush="sync")
    )
    return path


async def routed_on_both(admin: Admin, topic: str) -> bool:
    route = (await admin.topic_status(topic))["route"]
    return len(route["queues"]) == 2


async def writable_on_both(admin: Admin, topic: str) -> bool:
    queues = (await admin.topic_status(topic))["route"]["queues"]
    return len(queues) == 2 and all(q["perm"] & 2 for q in queues)


async def sends_to(producer: Producer, topic: str, count: int) -> set[str]:
    return {(await producer.send(topic, f"m{i}")).queue.broker_name for i in range(count)}


async def test_the_producer_moves_its_sends_to_the_writable_group(tmp_path: Path) -> None:
    with started(write_two_groups(tmp_path)) as cluster:
        namesrv = [cluster.namesrv]
        async with Admin(namesrv) as admin, Producer(namesrv, retries=2) as producer:
            await admin.create_topic("Moving", queues=2)
            await wait_until_async(lambda: routed_on_both(admin, "Moving"), what="both routes")
            assert await sends_to(producer, "Moving", 8) == {"broker-a", "broker-b"}

            await admin.set_write_permission("broker-a", writable=False)
            assert await sends_to(producer, "Moving", 12) == {"broker-b"}
            # Reads of the disabled group go on.
            status = await admin.topic_status("Moving")
            on_a = [q for q in status["queues"] if q["broker_name"] == "broker-a"]
            assert sum(q["max_offset"] for q in on_a) == 4

            await admin.set_write_permission("broker-b", writable=False)
            with pytest.raises(NoPermission) as refused:
                await producer.send("Moving", "nowhere")
            assert "write" in refused.value.message

            for name in ("broker-a", "broker-b"):
                await admin.set_write_permission(name, writable=True)
            # The NameServer learns a group's permission from its next registration.
            await wait_until_async(
                lambda: writable_on_both(admin, "Moving"), what="both routes writable again"
            )
            async with Producer(namesrv) as fresh:
                assert await sends_to(fresh, "Moving", 8) == {"broker-a", "broker-b"}
