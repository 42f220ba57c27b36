"""Orderly and broadcasting consumers on real broker processes started through the CLI.

Goal: (a) two orderly consumers of one group, one joining and one leaving mid-stream,
process every message, each queue in queue order and never by two consumers at once, so
the order per sharding key holds; (b) the same across a SIGKILL of the Raft leader (the
new leader's grace period lets the holders keep their queues and grants nothing else until
every old lease has ended); (c) a message that keeps failing is retried locally after a
pause, then moved to the group's DLQ, and the queue goes on; (d) broadcasting consumers
each get every message, keep their offsets in local files and resume from them; the CLI's
`consume --orderly` and `consume --broadcast --offset-file` do the same.

Method: clusters with a 4 s consumer lease (grace 4 s + 2 election timeouts + 1 s), each
consumer on its own loop thread; every callback records (consumer, queue, offset, key,
seq, start, end); waits are bounded conditions, never sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dledgermq.client import Message, PushConsumer, PushOptions, SyncProducer
from dledgermq.client.sync import LoopThread
from tests.conftest import wait_until
from tests.integration.conftest import Cluster, started, write_test_cluster
from tests.integration.test_raft_group import converged, leader
from tests.integration.test_retry_dlq import http

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
QUEUES = 4
KEYS = 8
LEASE = "  consumer_lease_ms: 4000\n"  # Continues SMALL_STORE's `limits:` block.


def write_standalone(tmp_path: Path) -> Path:
    return write_test_cluster(tmp_path, "OrderIt", tail=LEASE)


def write_raft(tmp_path: Path, lease_ms: int) -> Path:
    return write_test_cluster(
        tmp_path, "OrderRaftIt", mode="raft", tail=f"  consumer_lease_ms: {lease_ms}\n"
    )


@dataclass(frozen=True)
class Processed:
    client: str
    queue_id: int
    queue_offset: int
    key: str
    seq: int
    start: float
    end: float


class Journal:
    """Every callback of every consumer, thread-safe."""

    def __init__(self, work_s: float = 0.002) -> None:
        self._lock = threading.Lock()
        self._work_s = work_s
        self.entries: list[Processed] = []

    def callback(self, client: str, fails: bytes | None = None) -> Any:
        async def on_messages(messages: list[Message]) -> None:
            [message] = messages  # Orderly: one message at a time.
            start = time.monotonic()
            await asyncio.sleep(self._work_s)  # Work, so overlapping consumers would show.
            key, seq = message.body.decode().split(":")
            with self._lock:
                self.entries.append(
                    Processed(
                        client,
                        message.queue_id,
                        message.queue_offset,
                        key,
                        int(seq),
                        start,
                        time.monotonic(),
                    )
                )
            if message.body == fails:
                raise RuntimeError("poison message")

        return on_messages

    def snapshot(self) -> list[Processed]:
        with self._lock:
            return list(self.entries)


def assert_orderly(entries: list[Processed], acked: dict[str, list[int]]) -> int:
    """Every acked message processed; per queue, offsets in order (a replay may restart
    earlier, never skip); no two consumers process one queue at overlapping times; per
    key, acked messages first processed in send order. Returns the replays: messages
    processed again because a queue changed hands ahead of its committed offset."""
    by_queue: dict[int, list[Processed]] = {}
    for entry in sorted(entries, key=lambda e: e.start):
        by_queue.setdefault(entry.queue_id, []).append(entry)
    replays = 0
    for queue, seen in by_queue.items():
        for before, after in itertools.pairwise(seen):
            assert after.queue_offset <= before.queue_offset + 1, (queue, before, after)
            replays += after.queue_offset <= before.queue_offset
            if before.client != after.client:
                assert before.end <= after.start, ("overlap", queue, before, after)
    first_seen: dict[str, list[int]] = {}
    done: set[tuple[str, int]] = set()
    for entry in sorted(entries, key=lambda e: e.start):
        if (entry.key, entry.seq) not in done:
            done.add((entry.key, entry.seq))
            first_seen.setdefault(entry.key, []).append(entry.seq)
    for key, seqs in acked.items():
        processed = [s for s in first_seen.get(key, []) if s in set(seqs)]
        assert processed == sorted(seqs), key
    return replays


class KeySender:
    """One thread sending `key:seq` bodies by sharding key, recording acks per key."""

    def __init__(self, cluster: Cluster, topic: str, count: int) -> None:
        self.acked: dict[str, list[int]] = {f"k{k}": [] for k in range(KEYS)}
        self._producer = SyncProducer(
            [cluster.namesrv], send_timeout_s=2.0, retries=8, route_refresh_s=1.0
        )
        self._topic = topic
        self._count = count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def sent(self) -> int:
        return sum(len(s) for s in self.acked.values())

    def __enter__(self) -> KeySender:
        self._producer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._producer.close()

    def _run(self) -> None:
        for seq in range(self._count):
            if self._stop.is_set():
                return
            key = f"k{seq % KEYS}"
            try:
                self._producer.send(self._topic, f"{key}:{seq}", sharding_key=key)
            except Exception:  # Unknown outcome: not counted as acked.
                continue
            self.acked[key].append(seq)


@contextmanager
def orderly_consumer(
    cluster: Cluster, client: str, journal: Journal, *, fails: bytes | None = None
) -> Iterator[PushConsumer]:
    loop = LoopThread(f"orderly-{client}")
    consumer = PushConsumer(
        [cluster.namesrv],
        "og",
        "O",
        callback=journal.callback(client, fails),
        from_where="first",
        commit_interval_s=0.5,
        options=PushOptions(
            wait_ms=500, rebalance_interval_s=0.5, max_reconsume_times=2, suspend_s=0.2
        ),
        client_id=client,
        orderly=True,
    )
    loop.run(consumer.start(), 30)
    try:
        yield consumer
    finally:
        try:
            loop.run(asyncio.wait_for(consumer.close(), 20), 30)
        finally:
            loop.stop()


def processed_keys(journal: Journal) -> set[tuple[str, int]]:
    return {(e.key, e.seq) for e in journal.snapshot()}


def all_acked(sender: KeySender) -> set[tuple[str, int]]:
    return {(key, seq) for key, seqs in sender.acked.items() for seq in seqs}


def test_orderly_consumers_keep_key_order_while_members_join_and_leave(tmp_path: Path) -> None:
    with started(write_standalone(tmp_path)) as cluster:
        cluster.json("topic", "create", "O", "--queues", str(QUEUES))
        journal = Journal()
        with KeySender(cluster, "O", 100_000) as sender, ExitStack() as later:
            with orderly_consumer(cluster, "A", journal) as a:
                wait_until(lambda: len(journal.snapshot()) >= 100, timeout_s=60, what="A works")
                b = later.enter_context(orderly_consumer(cluster, "B", journal))
                wait_until(
                    lambda: "B" in {e.client for e in journal.snapshot()},
                    timeout_s=60,
                    what="A and B share the queues",
                )
                assert 0 < len(a.assigned_queues) < QUEUES
            # A left: it committed, then freed its locks; B takes every queue.
            wait_until(lambda: len(b.assigned_queues) == QUEUES, timeout_s=30, what="B has all")
            after = len(journal.snapshot())
            wait_until(lambda: len(journal.snapshot()) > after + 50, timeout_s=30, what="B works")
            sender.stop()
            wait_until(
                lambda: all_acked(sender) <= processed_keys(journal),
                timeout_s=60,
                what="every ack processed",
            )
        processed = len(journal.snapshot())
        with orderly_consumer(cluster, "C", journal) as c:  # Restart: from committed offsets.
            wait_until(lambda: len(c.assigned_queues) == QUEUES, timeout_s=30, what="C locks")
        assert len(journal.snapshot()) == processed  # B committed everything it processed.
        replays = assert_orderly(journal.snapshot(), sender.acked)
        print(f"\norderly rebalance: {sender.sent} acked, {replays} replayed")
        assert replays == 0  # Hand-overs commit before they release.


def test_orderly_consumption_keeps_key_order_across_a_leader_kill(tmp_path: Path) -> None:
    # A lease of 8 s: the consumers keep 6 s of it, time to find the new leader and claim.
    with started(write_raft(tmp_path, lease_ms=8_000)) as cluster:
        cluster.json("topic", "create", "O", "--queues", str(QUEUES))
        boss = wait_until(lambda: leader(cluster), timeout_s=30, what="a leader")
        journal = Journal(work_s=0.02)
        with orderly_consumer(cluster, "A", journal), orderly_consumer(cluster, "B", journal):
            with KeySender(cluster, "O", 100_000) as sender:
                wait_until(
                    lambda: {e.client for e in journal.snapshot()} == {"A", "B"},
                    timeout_s=60,
                    what="both consume",
                )
                os.kill(cluster.pid(boss), signal.SIGKILL)
                before = sender.sent
                wait_until(lambda: sender.sent >= before + 300, timeout_s=60, what="sends go on")
            wait_until(
                lambda: all_acked(sender) <= processed_keys(journal),
                timeout_s=90,
                what="every ack processed",
            )
        cluster.cli("cluster", "up", str(cluster.path), "--detach")
        wait_until(lambda: converged(cluster), timeout_s=30)
        entries = journal.snapshot()
        replays = assert_orderly(entries, sender.acked)
        duplicates = len(entries) - len({(e.key, e.seq) for e in entries})
        print(f"\norderly across a leader kill: {sender.sent} acked, {duplicates} duplicates")
        # The holders kept their queues through the new leader's grace: no hand-over, so
        # nothing was processed twice out of a queue (duplicates are resent messages).
        assert replays == 0


def test_a_failing_orderly_message_is_retried_locally_then_dead_lettered(tmp_path: Path) -> None:
    with started(write_standalone(tmp_path)) as cluster:
        cluster.json("topic", "create", "O", "--queues", "1")
        with SyncProducer([cluster.namesrv]) as producer:
            for seq in range(6):
                producer.send("O", f"k0:{seq}", sharding_key="k0")
        journal = Journal()
        with orderly_consumer(cluster, "A", journal, fails=b"k0:2"):
            wait_until(lambda: len(journal.snapshot()) >= 8, timeout_s=60, what="all processed")
        seen = [(e.seq, e.start) for e in journal.snapshot()]
        assert [s for s, _ in seen] == [0, 1, 2, 2, 2, 3, 4, 5]
        pauses = [b - a for (s, a), (_, b) in itertools.pairwise(seen) if s == 2]
        assert all(p >= 0.2 for p in pauses[:2]), pauses  # suspend_s between local retries
        status, page = http("GET", cluster.broker, "/groups/og/dlq")
        assert status == 200
        [letter] = page["messages"]
        assert letter["body"] == "k0:2"
        assert letter["reconsume_times"] == 2
        assert letter["properties"]["RETRY_TOPIC"] == "O"
        _, offsets = http("GET", cluster.broker, "/groups/og/offsets?topic=O")
        assert offsets["offsets"] == {"0": 6}


def broadcast_consumer(
    cluster: Cluster, client: str, offset_file: Path, got: list[tuple[str, bytes]]
) -> tuple[LoopThread, PushConsumer]:
    loop = LoopThread(f"broadcast-{client}")
    consumer = PushConsumer(
        [cluster.namesrv],
        "bg",
        "B",
        callback=lambda messages: got.extend((client, m.body) for m in messages),
        from_where="first",
        commit_interval_s=0.3,
        options=PushOptions(wait_ms=500),
        client_id=client,
        mode="broadcasting",
        offset_file=offset_file,
    )
    loop.run(consumer.start(), 30)
    return loop, consumer


def stop(loop: LoopThread, consumer: PushConsumer) -> None:
    try:
        loop.run(asyncio.wait_for(consumer.close(), 20), 30)
    finally:
        loop.stop()


def test_broadcasting_consumers_each_get_everything_and_resume_from_their_file(
    tmp_path: Path,
) -> None:
    with started(write_standalone(tmp_path)) as cluster:
        cluster.json("topic", "create", "B", "--queues", "2")
        got: list[tuple[str, bytes]] = []
        first = [f"m{i}".encode() for i in range(20)]
        second = [f"n{i}".encode() for i in range(10)]
        with SyncProducer([cluster.namesrv]) as producer:
            for body in first:
                producer.send("B", body)
            x = broadcast_consumer(cluster, "X", tmp_path / "x.json", got)
            y = broadcast_consumer(cluster, "Y", tmp_path / "y.json", got)
            try:

                def bodies(client: str) -> list[bytes]:
                    return [b for c, b in got if c == client]

                wait_until(lambda: sorted(bodies("X")) == sorted(first), what="X has all")
                wait_until(lambda: sorted(bodies("Y")) == sorted(first), what="Y has all")
                stop(*y)
                saved = json.loads((tmp_path / "y.json").read_text())
                assert sum(o["offset"] for o in saved["offsets"]) == len(first)
                for body in second:
                    producer.send("B", body)
                wait_until(lambda: len(bodies("X")) == 30, what="X gets the new ones")
                y = broadcast_consumer(cluster, "Y", tmp_path / "y.json", got)
                wait_until(lambda: len(bodies("Y")) >= 30, what="Y resumes")
            finally:
                stop(*x)
                stop(*y)
        assert sorted(bodies("Y")) == sorted(first + second)  # Nothing twice.
        _, offsets = http("GET", cluster.broker, "/groups/bg/offsets?topic=B")
        assert offsets["offsets"] == {}  # Broadcasting never commits on the broker.


def test_the_cli_consumes_orderly_and_broadcasting(tmp_path: Path) -> None:
    with started(write_standalone(tmp_path)) as cluster:
        cluster.json("topic", "create", "C", "--queues", "2")
        for i in range(6):
            cluster.cli("send", "C", f"c{i}", "--sharding-key", f"k{i % 2}")
        offset_file = tmp_path / "cli-offsets.json"
        got = cluster.json(
            "consume",
            "C",
            "--group",
            "cg",
            "--broadcast",
            "--offset-file",
            str(offset_file),
            "--count",
            "100",
            "--wait",
            "1",
        )
        assert sorted(m["body"] for m in got["messages"]) == [f"c{i}" for i in range(6)]
        again = cluster.json(
            "consume",
            "C",
            "--group",
            "cg",
            "--broadcast",
            "--offset-file",
            str(offset_file),
            "--count",
            "100",
        )
        assert again["messages"] == []  # Resumed from the file.
        ordered = cluster.json(
            "consume", "C", "--group", "og", "--orderly", "--count", "100", "--wait", "15"
        )
        bodies = [m["body"] for m in ordered["messages"]]
        assert sorted(bodies) == [f"c{i}" for i in range(6)]
        for queue in (0, 1):
            offsets = [m["queue_offset"] for m in ordered["messages"] if m["queue_id"] == queue]
            assert offsets == sorted(offsets)
        bad = cluster.cli("consume", "C", "--group", "cg", "--offset-file", "x.json", check=False)
        assert bad.returncode != 0
        assert "--offset-file goes with --broadcast" in bad.stderr
        both = cluster.cli("consume", "C", "--group", "cg", "--orderly", "--broadcast", check=False)
        assert both.returncode != 0
