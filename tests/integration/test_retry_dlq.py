"""Retry and dead letters on real broker processes started through the CLI.

Goal: a message a push consumer keeps failing comes back through `%RETRY%<group>` with
its original topic, msg_id and unique key and a `reconsume_times` that counts up, each
retry no earlier than its delay level; after `max_reconsume_times` it lands in the
group's DLQ, where `dledgermq dlq list` shows it and `dlq resend --all` puts it back in its
topic (once: a second `--all` resends nothing). In a Raft group, a retry scheduled on a
leader that is then SIGKILLed is redelivered exactly once, by the new leader.

Method: clusters with short delay levels (`store.message_delay_level`), a PushConsumer on
a private loop thread recording every delivery, waits on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dledgermq.client import Message, PushConsumer, PushOptions, SyncProducer
from dledgermq.client.sync import LoopThread
from tests.conftest import wait_until
from tests.integration.conftest import Cluster, started, write_test_cluster
from tests.integration.test_raft_group import converged, leader, nodes
from tests.support import SMALL_STORE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def store_with_levels(levels: str) -> str:
    return SMALL_STORE.format(flush="sync").replace(
        "store:\n", f"store:\n  message_delay_level: {levels}\n", 1
    )


def write_single_broker(tmp_path: Path) -> Path:
    return write_test_cluster(tmp_path, "RetryIt", store=store_with_levels("1s 1s 1s"))


def write_raft_group(tmp_path: Path) -> Path:
    """Three Raft nodes; every retry waits level 3 = 8 s (time to kill a leader)."""
    return write_test_cluster(
        tmp_path, "RetryRaftIt", mode="raft", store=store_with_levels("1s 1s 8s")
    )


class Deliveries:
    """Every message the callback saw, and a switch that makes chosen bodies fail."""

    def __init__(self, fails: Callable[[Message], bool]) -> None:
        self.seen: list[Message] = []
        self.fails = fails
        self._lock = threading.Lock()

    def __call__(self, messages: list[Message]) -> None:  # Runs in a worker thread.
        with self._lock:
            self.seen.extend(messages)
        if any(self.fails(m) for m in messages):
            raise RuntimeError("the application cannot process this message")

    def of(self, body: bytes) -> list[Message]:
        with self._lock:
            return [m for m in self.seen if m.body == body]


@contextmanager
def push_consumer(
    cluster: Cluster, group: str, topic: str, deliveries: Deliveries, max_reconsume_times: int
) -> Iterator[PushConsumer]:
    loop = LoopThread(f"{group}-consumer")
    consumer = PushConsumer(
        [cluster.namesrv],
        group,
        topic,
        callback=deliveries,
        from_where="first",
        commit_interval_s=0.5,
        # One message per callback (RocketMQ's default), so only the failing one is retried.
        options=PushOptions(
            wait_ms=500,
            max_messages=1,
            rebalance_interval_s=0.5,
            max_reconsume_times=max_reconsume_times,
        ),
    )
    loop.run(consumer.start(), 30)
    try:
        yield consumer
    finally:
        with_timeout = asyncio.wait_for(consumer.close(), 20)
        try:
            loop.run(with_timeout, 30)
        finally:
            loop.stop()


def http(method: str, addr: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{addr}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_failing_message_is_retried_then_dead_lettered_then_resent(tmp_path: Path) -> None:
    with started(write_single_broker(tmp_path)) as cluster:
        cluster.json("topic", "create", "T", "--queues", "2")
        failing = threading.Event()
        failing.set()
        deliveries = Deliveries(lambda m: m.body == b"poison" and failing.is_set())
        with (
            SyncProducer([cluster.namesrv]) as producer,
            push_consumer(cluster, "g", "T", deliveries, max_reconsume_times=2),
        ):
            sent = producer.send("T", "poison")
            producer.send("T", "fine")

            def dead_letters() -> list[dict[str, Any]]:
                page = cluster.json("dlq", "list", "g")["brokers"].get("broker-a")
                return page["messages"] if page else []

            [letter] = wait_until(dead_letters, timeout_s=60, what="the message in the DLQ")
            tries = deliveries.of(b"poison")
            assert [m.reconsume_times for m in tries] == [0, 1, 2]
            assert {(m.topic, m.msg_id, m.unique_key) for m in tries} == {
                ("T", sent.msg_id, sent.unique_key)
            }, "a retry is shown as the original message"
            for before, retry in itertools.pairwise(tries):
                assert retry.store_timestamp_ms >= before.store_timestamp_ms + 1_000 - 50
            assert [m.body for m in deliveries.seen].count(b"fine") == 1
            assert (letter["origin_topic"], letter["origin_msg_id"]) == ("T", sent.msg_id)
            assert (letter["unique_key"], letter["reconsume_times"]) == (sent.unique_key, 2)

            failing.clear()
            resent = cluster.json("dlq", "resend", "g", "--all")
            assert [(r["msg_id"], r["topic"]) for r in resent["resent"]] == [
                (letter["msg_id"], "T")
            ]
            wait_until(lambda: len(deliveries.of(b"poison")) == 4, what="the resent message")
            back = deliveries.of(b"poison")[-1]
            assert (back.topic, back.reconsume_times, back.unique_key) == ("T", 0, sent.unique_key)
            assert cluster.json("dlq", "resend", "g", "--all")["resent"] == []
        [page] = cluster.json("dlq", "list", "g")["brokers"].values()
        assert (page["max_offset"], page["resend_offset"]) == (1, 1)
        assert "no dead letters of nobody" in cluster.cli("dlq", "list", "nobody").stdout
        for argv in (("dlq", "resend", "g"), ("dlq", "resend", "g", "--msg-id", "nothex")):
            done = cluster.cli(*argv, check=False)
            assert done.returncode != 0, argv
            assert "error" in done.stderr, done.stderr


def test_a_retry_scheduled_on_a_killed_leader_is_redelivered_exactly_once(
    tmp_path: Path,
) -> None:
    with started(write_raft_group(tmp_path)) as raft:
        raft.json("topic", "create", "R", "--queues", "2")
        boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
        boss_addr = nodes(raft)[boss]
        deliveries = Deliveries(lambda m: m.reconsume_times == 0)
        with (
            SyncProducer([raft.namesrv], retries=8, route_refresh_s=1.0) as producer,
            push_consumer(raft, "rg", "R", deliveries, max_reconsume_times=16) as consumer,
        ):
            sent = producer.send("R", "once")
            retry_path = f"/topics/{quote('%RETRY%rg', safe='')}"

            def sent_back_and_committed() -> bool:
                status, topic = http("GET", boss_addr, retry_path)
                _, committed = http("GET", boss_addr, "/groups/rg/offsets?topic=R")
                moved = committed["offsets"].get(str(sent.queue_id), 0) > sent.queue_offset
                return status == 200 and moved and topic["queues"][0]["max_offset"] == 0

            # The retry is scheduled (its topic was created in the same entry), the
            # original's offset committed, and the 8 s delay has not run out.
            wait_until(sent_back_and_committed, timeout_s=6, what="the send-back")
            follower = next(n for n in nodes(raft) if n != boss)
            status, error = http(
                "POST", nodes(raft)[follower], "/groups/rg/send-back", {"msg_ids": [sent.msg_id]}
            )
            assert (status, error["code"]) == (421, "NOT_LEADER")
            os.kill(raft.pid(boss), signal.SIGKILL)
            wait_until(
                lambda: leader(raft, among=set(nodes(raft)) - {boss}),
                timeout_s=30,
                what="a new leader",
            )
            raft.cli("cluster", "up", str(raft.path), "--detach")
            wait_until(lambda: len(deliveries.of(b"once")) >= 2, timeout_s=60, what="the retry")
            retry_mq = next(mq for mq in consumer.assigned_queues if mq.topic == "%RETRY%rg")
            wait_until(lambda: consumer.offsets.get(retry_mq) == 1, what="the retry consumed")
        wait_until(lambda: converged(raft), timeout_s=30, what="every node caught up")
        tries = deliveries.of(b"once")
        assert [m.reconsume_times for m in tries] == [0, 1], "redelivered other than once"
        assert {(m.topic, m.msg_id) for m in tries} == {("R", sent.msg_id)}
        assert tries[1].store_timestamp_ms >= tries[0].store_timestamp_ms + 8_000 - 50
        for node, addr in nodes(raft).items():
            _, page = http("GET", addr, f"{retry_path}/queues/0/messages?offset=0&max=8")
            assert len(page["messages"]) == 1, f"{node} holds the retry other than once"
