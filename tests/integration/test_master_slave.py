"""A master/slave pair (one OS process each, ha_mode sync) started through the CLI.

Goal: show the classic HA promises end to end: acknowledged messages reach the slave,
which serves them at the same queue offsets with identical bytes; /status shows the slave's
acknowledged offset on the master and the followed master on the slave; after `kill -9`
of the master the slave still serves reads (no automatic failover) and refuses writes with
NOT_LEADER naming the master.

Method: HTTP sends to the master record every acknowledgement; convergence is awaited by
polling /status (bounded); reads are HTTP pulls from the slave.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dledgermq.cli.launcher import fetch_status
from tests.conftest import wait_until
from tests.integration.conftest import Cluster, free_port, started
from tests.support import SMALL_STORE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
QUEUES = 4


def write_master_slave_cluster(tmp_path: Path) -> Path:
    nodes = ", ".join(
        f"{{id: {name}, port: {free_port()}, peer_port: {free_port()}}}" for name in ("m1", "s1")
    )
    path = tmp_path / "cluster.yml"
    path.write_text(
        f"""
cluster: HaIt
data_dir: ./data
secret: integration-test-secret
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {free_port()}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
brokers:
  - name: broker-b
    mode: master_slave
    replication: {{ha_mode: sync, sync_timeout_ms: 3000}}
    nodes: [{nodes}]
"""
        + SMALL_STORE.format(flush="sync")
    )
    return path


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    with started(write_master_slave_cluster(tmp_path)) as running:
        yield running


def post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def read(addr: str, queue: int, offset: int) -> bytes:
    url = f"http://{addr}/topics/HA/queues/{queue}/messages?offset={offset}&max=1"
    with urllib.request.urlopen(url, timeout=10) as response:
        [message] = json.loads(response.read())["messages"]
    assert message["queue_offset"] == offset
    return base64.b64decode(message["body_base64"])


def test_the_slave_follows_serves_reads_and_refuses_writes(pair: Cluster) -> None:
    master, slave = (n.addr for n in pair.config.groups[0].nodes)
    pair.json("topic", "create", "HA", "--queues", str(QUEUES))
    acked: list[tuple[int, int, bytes]] = []
    for i in range(60):
        body = f"ha-{i}-".encode() + os.urandom(16)
        payload = {"messages": [{"body_base64": base64.b64encode(body).decode()}]}
        [result] = post(f"http://{master}/topics/HA/messages", payload)["results"]
        acked.append((result["queue_id"], result["queue_offset"], body))

    def caught_up() -> bool:
        ours, theirs = fetch_status(master), fetch_status(slave)
        return bool(
            ours
            and theirs
            and theirs["dispatched_offset"] == ours["write_offset"]
            and ours["ha"]["slaves"][0]["lag_bytes"] == 0
        )

    wait_until(caught_up, timeout_s=30, what="the slave caught up")
    ours, theirs = fetch_status(master), fetch_status(slave)
    assert ours is not None
    assert theirs is not None
    assert (ours["role"], ours["broker_id"], ours["ha"]["slaves"][0]["node_id"]) == (
        "master",
        0,
        "s1",
    )
    assert (theirs["role"], theirs["ha"]["master"], theirs["ha"]["master_addr"]) == (
        "slave",
        "m1",
        master,
    )
    assert theirs["broker_id"] > 0
    for queue, offset, body in acked:
        assert read(slave, queue, offset) == body

    os.kill(pair.pid("m1"), signal.SIGKILL)
    wait_until(lambda: fetch_status(master, timeout_s=0.5) is None, what="the master is gone")
    for queue, offset, body in acked[-10:]:  # no failover: the slave still serves reads
        assert read(slave, queue, offset) == body
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(f"http://{slave}/topics/HA/messages", {"messages": [{"body": "x"}]})
    error = json.loads(refused.value.read())
    assert refused.value.code == 421
    assert (error["code"], error["leader"], error["leader_addr"]) == ("NOT_LEADER", "m1", master)
