"""kill -9 of a sync-flush broker in the middle of a send loop loses no acknowledged message.

Four sender threads send unique random bodies one at a time and record every
acknowledgement (queue, queue offset, bytes). The broker is SIGKILLed mid-loop, the
cluster restarted through the CLI, and every acknowledged message must be read back at
the same queue offset, byte-identical.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_until
from tests.integration.conftest import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
SENDERS = 4


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_kill_9_mid_send_loop_keeps_every_acknowledged_message(cluster: Cluster) -> None:
    cluster.json("topic", "create", "Crash", "--queues", "4")
    base = f"http://{cluster.broker}"
    acked: list[tuple[int, int, bytes]] = []
    lock = threading.Lock()

    def sender(seed: int) -> None:
        for counter in range(100_000):
            body = f"{seed}-{counter}-".encode() + os.urandom(48)
            payload = {"messages": [{"body_base64": base64.b64encode(body).decode()}]}
            try:
                [result] = post(f"{base}/topics/Crash/messages", payload)["results"]
            except (OSError, urllib.error.URLError):
                return  # the broker is gone; an unanswered send is indeterminate
            with lock:
                acked.append((result["queue_id"], result["queue_offset"], body))

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 300, timeout_s=60, what="300 acknowledged sends")
    os.kill(cluster.pid("n1"), signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()

    cluster.cli("cluster", "down", str(cluster.path))
    cluster.cli("cluster", "up", str(cluster.path), "--detach")

    assert len({(q, o) for q, o, _ in acked}) == len(acked), "a queue offset was acknowledged twice"
    for queue_id, offset, body in acked:
        answer = get(f"{base}/topics/Crash/queues/{queue_id}/messages?offset={offset}&max=1")
        [message] = answer["messages"]
        assert message["queue_offset"] == offset
        assert base64.b64decode(message["body_base64"]) == body
