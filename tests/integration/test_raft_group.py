"""A three-node Raft group (one OS process per node) under leader kills, transfers and
truncation, started through the CLI on 127.0.0.1.

Goal: show the promises of the Raft issue end to end: after `kill -9` of the leader a new
one is elected and the Python client's sends go on by themselves; the killed node comes
back through `cluster up`, catches up, and every acknowledged message is readable from
every node at its acknowledged queue offset with identical bytes; the committed CommitLog
prefix is byte-identical on all nodes; `admin leader-transfer` moves leadership without
losing an acknowledged message; a leader cut off from its followers keeps an uncommitted
tail that it truncates when it rejoins.

Method: a sender thread records every acknowledgement (queue, offset, body); faults are
SIGKILL/SIGSTOP/SIGCONT of recorded PIDs; convergence is awaited by polling /status
(bounded); reads are HTTP pulls of every queue from every node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dledgermq.cli.launcher import fetch_status
from dledgermq.client import PushConsumer, PushOptions, SyncProducer
from dledgermq.client.sync import LoopThread
from dledgermq.store.checkpoint import load_checkpoint
from dledgermq.store.record import HEADER_SIZE
from dledgermq.store.segment import segment_path
from tests.conftest import wait_until
from tests.integration.conftest import Cluster, started, write_test_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]
QUEUES = 4


def write_raft_cluster(tmp_path: Path) -> Path:
    return write_test_cluster(tmp_path, "RaftIt", mode="raft")


@pytest.fixture
def raft(tmp_path: Path) -> Iterator[Cluster]:
    with started(write_raft_cluster(tmp_path)) as running:
        yield running


def nodes(cluster: Cluster) -> dict[str, str]:
    return {n.id: n.addr for n in cluster.config.groups[0].nodes}


def statuses(cluster: Cluster) -> dict[str, dict[str, Any] | None]:
    return {node: fetch_status(addr, timeout_s=1.0) for node, addr in nodes(cluster).items()}


def leader(cluster: Cluster, *, among: set[str] | None = None) -> str | None:
    for node, status in statuses(cluster).items():
        if status and status["role"] == "leader" and (among is None or node in among):
            return node
    return None


def converged(cluster: Cluster) -> bool:
    """Every node up, in the same term, with the same commit index and dispatched offset."""
    seen = statuses(cluster).values()
    keys = {
        (s["term"], s["raft"]["commit_index"], s["dispatched_offset"]) if s else None for s in seen
    }
    return None not in keys and len(keys) == 1


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def send_to_leader(cluster: Cluster, topic: str, body: str, among: set[str]) -> dict[str, Any]:
    """Send one message to whichever of `among` leads; a send refused because leadership
    moved meanwhile (421: not written) is sent again to the next leader."""

    def attempt() -> dict[str, Any] | None:
        boss = leader(cluster, among=among)
        if boss is None:
            return None
        url = f"http://{nodes(cluster)[boss]}/topics/{topic}/messages"
        try:
            return post(url, {"messages": [{"body": body}]})
        except urllib.error.HTTPError as exc:
            if exc.code != 421:
                raise
            return None

    return wait_until(attempt, timeout_s=30, what=f"a leader among {sorted(among)} to take {body}")


def read_all(addr: str, topic: str) -> dict[tuple[int, int], bytes]:
    """Every message of every queue on one node: (queue, offset) -> body."""
    stored: dict[tuple[int, int], bytes] = {}
    for queue in range(QUEUES):
        offset = 0
        while True:
            page = get(
                f"http://{addr}/topics/{topic}/queues/{queue}/messages?offset={offset}&max=256"
            )
            for message in page["messages"]:
                stored[(queue, message["queue_offset"])] = base64.b64decode(message["body_base64"])
            if page["next_offset"] >= page["max_offset"]:
                break
            offset = page["next_offset"]
    return stored


def commitlog_prefix(cluster: Cluster, node: str, upto: int) -> bytes:
    """The node's CommitLog bytes [0, upto) (segments are 1 MiB in these tests)."""
    directory = cluster.config.node_dir(node) / "commitlog"
    size = cluster.config.groups[0].store.segment_size_bytes
    data = b"".join(segment_path(directory, start).read_bytes() for start in range(0, upto, size))
    return data[:upto]


class Sender:
    """One thread sending unique bodies through the Python client, recording every ack."""

    def __init__(self, cluster: Cluster, topic: str) -> None:
        self.acked: list[tuple[int, int, bytes]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._producer = SyncProducer(
            [cluster.namesrv], send_timeout_s=2.0, retries=8, route_refresh_s=1.0
        )
        self._topic = topic
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sender:
        self._producer.start()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._producer.close()

    def _run(self) -> None:
        for counter in range(1_000_000):
            if self._stop.is_set():
                return
            body = f"m-{counter}-".encode() + os.urandom(24)
            try:
                result = self._producer.send(self._topic, body)
            except Exception:
                self.failed += 1
                continue
            self.acked.append((result.queue_id, result.queue_offset, body))


def assert_every_ack_on_every_node(cluster: Cluster, topic: str, acked: list) -> None:
    wait_until(lambda: converged(cluster), timeout_s=30)
    copies = {node: read_all(addr, topic) for node, addr in nodes(cluster).items()}
    first = next(iter(copies.values()))
    for node, stored in copies.items():
        assert stored == first, f"{node} holds other messages than its peers"
        missing = [(q, o) for q, o, body in acked if stored.get((q, o)) != body]
        assert not missing, f"{node} lacks acknowledged messages at {missing[:5]}"
    dispatched = {s["dispatched_offset"] for s in statuses(cluster).values() if s}
    [committed_end] = dispatched
    prefixes = {commitlog_prefix(cluster, node, committed_end) for node in nodes(cluster)}
    assert len(prefixes) == 1, "the committed CommitLog prefix differs between nodes"


def test_leader_kill_fails_over_and_every_ack_survives_on_every_node(raft: Cluster) -> None:
    raft.json("topic", "create", "F", "--queues", str(QUEUES))
    with Sender(raft, "F") as sender:
        wait_until(lambda: len(sender.acked) >= 50, timeout_s=30)
        old = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
        os.kill(raft.pid(old), signal.SIGKILL)
        killed_at, acked_at_kill = time.monotonic(), len(sender.acked)
        # (An answer the old leader sent just before dying may still count as the next
        # ack, and /status polls can time out under load: wait for the new leader itself.)
        new = wait_until(
            lambda: (n := leader(raft)) not in (None, old) and n, timeout_s=30, what="a leader"
        )
        wait_until(lambda: len(sender.acked) >= acked_at_kill + 50, timeout_s=30)
        failover_s = time.monotonic() - killed_at
        raft.cli("cluster", "up", str(raft.path), "--detach")  # restarts the killed node only
        wait_until(lambda: statuses(raft)[old] is not None, timeout_s=30)
        wait_until(lambda: len(sender.acked) >= acked_at_kill + 100, timeout_s=30)
    print(f"{new} took over from {old}; 50 more acks {failover_s:.2f}s after the kill")
    assert_every_ack_on_every_node(raft, "F", sender.acked)

    def caught_up() -> dict[str, Any] | None:
        [group] = raft.json("cluster", "status", str(raft.path))["groups"]
        ok = group["writer"] and all(n["up"] and n["lag"] == 0 for n in group["nodes"])
        return group if ok else None

    group = wait_until(caught_up, timeout_s=30, what="cluster status: a leader, no lag")
    assert group["writer"] in nodes(raft)


async def send_many(cluster: Cluster, topic: str, count: int) -> list[tuple[int, int, bytes]]:
    """`count` one-message sends, 32 in flight, each its own Raft entry; a send the leader
    refused (421: moved) goes to the next leader."""
    acked: list[tuple[int, int, bytes]] = []
    counter = iter(range(count))

    async def worker(session: aiohttp.ClientSession) -> None:
        addr = None
        for n in counter:
            body = f"b-{n}".encode()
            while True:
                if addr is None:
                    boss = await asyncio.to_thread(leader, cluster)
                    addr = boss and nodes(cluster)[boss]
                    continue
                payload = {"messages": [{"body": body.decode()}]}
                async with session.post(
                    f"http://{addr}/topics/{topic}/messages", json=payload
                ) as r:
                    if r.status == 421:
                        addr = None
                        continue
                    assert r.status == 200, await r.text()
                    result = (await r.json())["results"][0]
                acked.append((result["queue_id"], result["queue_offset"], body))
                break

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.timeout(120):
        await asyncio.gather(*(worker(session) for _ in range(32)))
    return acked


def test_a_follower_far_behind_catches_up_from_entries_the_leaders_index_forgot(
    raft: Cluster,
) -> None:
    """More entries are committed while a follower is down than an entry index keeps exact
    places for (it forgets all but the newest 16k-32k): the leader reads their places back
    from its log to send them, and the restarted follower rebuilds its index from the log."""
    raft.json("topic", "create", "B", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    down = next(n for n in nodes(raft) if n != boss)
    os.kill(raft.pid(down), signal.SIGKILL)
    acked = asyncio.run(send_many(raft, "B", 40_000))
    raft.cli("cluster", "up", str(raft.path), "--detach")  # restarts the killed node only
    wait_until(lambda: statuses(raft)[down] is not None, timeout_s=30)
    assert_every_ack_on_every_node(raft, "B", acked)


def test_leader_transfer_moves_leadership_without_losing_acks(raft: Cluster) -> None:
    raft.json("topic", "create", "L", "--queues", str(QUEUES))
    with Sender(raft, "L") as sender:
        wait_until(lambda: len(sender.acked) >= 30, timeout_s=30)
        old = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
        target = next(n for n in nodes(raft) if n != old)
        moved = raft.json("admin", "leader-transfer", "broker-a", "--to", target)
        assert moved["node_id"] == target
        wait_until(lambda: leader(raft) == target, timeout_s=10, what=f"{target} leading")
        done = len(sender.acked)
        wait_until(lambda: len(sender.acked) >= done + 30, timeout_s=30)
    assert_every_ack_on_every_node(raft, "L", sender.acked)
    refused = raft.cli("admin", "leader-transfer", "broker-a", "--to", "nope", check=False)
    assert refused.returncode == 1
    assert "BAD_REQUEST" in refused.stderr


def test_a_write_to_a_follower_is_refused_with_the_leaders_address(raft: Cluster) -> None:
    raft.json("topic", "create", "W", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    follower = next(n for n in nodes(raft) if n != boss)
    payload = {"messages": [{"body": "x"}]}
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(f"http://{nodes(raft)[follower]}/topics/W/messages", payload)
    error = json.loads(refused.value.read())
    assert refused.value.code == 421
    assert (error["code"], error["leader"], error["leader_addr"]) == (
        "NOT_LEADER",
        boss,
        nodes(raft)[boss],
    )


def test_an_isolated_leader_truncates_its_uncommitted_tail_when_it_rejoins(raft: Cluster) -> None:
    raft.json("topic", "create", "U", "--queues", str(QUEUES))
    old = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    followers = [n for n in nodes(raft) if n != old]
    before = post(f"http://{nodes(raft)[old]}/topics/U/messages", {"messages": [{"body": "ok"}]})
    for node in followers:
        os.kill(raft.pid(node), signal.SIGSTOP)
    # The leader writes these but cannot commit them: the senders time out (indeterminate).
    doomed = [f"doomed-{i}" for i in range(5)]

    def send_doomed(body: str) -> None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            post(
                f"http://{nodes(raft)[old]}/topics/U/messages", {"messages": [{"body": body}]}, 1.0
            )

    threads = [threading.Thread(target=send_doomed, args=(b,)) for b in doomed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    wait_until(
        lambda: (
            (fetch_status(nodes(raft)[old]) or {}).get("raft", {}).get("last_index", 0)
            > (fetch_status(nodes(raft)[old]) or {}).get("raft", {}).get("commit_index", 0)
        ),
        timeout_s=10,
    )
    # Frames the leader sent wait in the followers' socket buffers: killing the paused
    # followers drops them, so the leader's tail stays its own. The leader stays paused
    # (it cannot vote) while the followers restart and elect one of them.
    os.kill(raft.pid(old), signal.SIGSTOP)
    for node in followers:
        os.kill(raft.pid(node), signal.SIGKILL)
    raft.cli("cluster", "up", str(raft.path), "--detach")  # the two followers only
    after = send_to_leader(raft, "U", "new", among=set(followers))
    os.kill(raft.pid(old), signal.SIGKILL)
    raft.cli("cluster", "up", str(raft.path), "--detach")  # the old leader rejoins
    acked = [
        (r["queue_id"], r["queue_offset"], body)
        for r, body in ((before["results"][0], b"ok"), (after["results"][0], b"new"))
    ]
    assert_every_ack_on_every_node(raft, "U", acked)
    bodies = set(read_all(nodes(raft)[old], "U").values())
    assert not bodies & {b.encode() for b in doomed}, "an uncommitted entry survived"
    # The doomed entries were in the old leader's log; now its whole log is the group's.
    ends = {(s["raft"]["last_index"], s["write_offset"]) for s in statuses(raft).values() if s}
    assert len(ends) == 1, f"the rejoined node's log differs: {ends}"


def one_committed_message(raft: Cluster, topic: str, body: str) -> tuple[str, str, dict]:
    """A new topic holding one message on every node: (leader, a follower, send result)."""
    raft.json("topic", "create", topic, "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    sent = post(
        f"http://{nodes(raft)[boss]}/topics/{topic}/messages", {"messages": [{"body": body}]}
    )
    wait_until(lambda: converged(raft), timeout_s=30)
    return boss, next(n for n in nodes(raft) if n != boss), sent["results"][0]


def flip_bit(path: Path, at: int) -> None:
    with path.open("r+b") as file:
        file.seek(at)
        byte = file.read(1)
        file.seek(at)
        file.write(bytes([byte[0] ^ 0x10]))


def test_a_flipped_bit_on_one_node_is_never_served_and_is_repaired_from_a_peer(
    raft: Cluster,
) -> None:
    boss, victim, result = one_committed_message(raft, "B", "x" * 64)
    segment = raft.config.groups[0].store.segment_size_bytes
    offset = result["commitlog_offset"]

    def record_bytes(node: str) -> bytes:
        path = segment_path(raft.config.node_dir(node) / "commitlog", offset - offset % segment)
        with path.open("rb") as file:
            file.seek(offset % segment)
            return file.read(HEADER_SIZE + 64)

    intact = record_bytes(boss)
    path = segment_path(raft.config.node_dir(victim) / "commitlog", offset - offset % segment)
    flip_bit(path, offset % segment + HEADER_SIZE + 40)  # in the body
    assert record_bytes(victim) != intact
    queue, queue_offset = result["queue_id"], result["queue_offset"]
    pull = f"/topics/B/queues/{queue}/messages?offset={queue_offset}&max=1"
    # The read finds the damage: refused, never served; the node then repairs the record
    # from a peer's copy, and serves it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"http://{nodes(raft)[victim]}{pull}")
    assert refused.value.code == 500
    assert json.loads(refused.value.read())["code"] == "CORRUPT_DATA"
    repair = wait_until(
        lambda: (s := get(f"http://{nodes(raft)[victim]}/status")["repair"])["repaired"] and s,
        timeout_s=30,
        what="the repair",
    )
    assert (repair["found"], repair["repaired"], repair["outstanding"]) == (1, 1, [])
    assert record_bytes(victim) == intact
    for node in nodes(raft):
        [message] = get(f"http://{nodes(raft)[node]}{pull}")["messages"]
        assert message["body"] == "x" * 64


def test_a_node_restarting_with_a_damaged_record_repairs_it_before_it_starts(
    raft: Cluster,
) -> None:
    _, victim, result = one_committed_message(raft, "S", "y" * 80)
    victim_dir = raft.config.node_dir(victim)
    offset, segment = result["commitlog_offset"], raft.config.groups[0].store.segment_size_bytes
    # Below the checkpoint, recovery knows the record was fsynced: damage, not a torn write.
    wait_until(
        lambda: (c := load_checkpoint(victim_dir / "checkpoint")) and c.dispatched_offset > offset,
        timeout_s=30,
        what="a checkpoint past the record",
    )
    os.kill(raft.pid(victim), signal.SIGKILL)
    path = segment_path(victim_dir / "commitlog", offset - offset % segment)
    intact = path.read_bytes()
    flip_bit(path, offset % segment + 30)  # in the header: the record cannot be skipped
    raft.cli("cluster", "up", str(raft.path), "--detach")
    wait_until(lambda: converged(raft), timeout_s=60, what="the repaired node to rejoin")
    assert path.read_bytes()[: len(intact)] == intact
    queue, queue_offset = result["queue_id"], result["queue_offset"]
    pull = f"/topics/S/queues/{queue}/messages?offset={queue_offset}&max=1"
    [message] = get(f"http://{nodes(raft)[victim]}{pull}")["messages"]
    assert message["body"] == "y" * 80


def test_a_node_restarting_with_its_commitlog_cut_short_refills_it_from_peers(
    raft: Cluster,
) -> None:
    """Both a sealed segment and the active one lose their tails while the node is down,
    under load: it refills them from peers' copies before it starts (to its checkpoint at
    least, and on through what it had acknowledged past it) and catches up."""
    raft.json("topic", "create", "R", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    segment = raft.config.groups[0].store.segment_size_bytes
    bodies = [f"{i:05d}".encode() * 800 for i in range(320)]  # 4 KB each, ~1.3 segments
    for i in range(0, len(bodies), 32):
        batch = [{"body": b.decode()} for b in bodies[i : i + 32]]
        post(f"http://{nodes(raft)[boss]}/topics/R/messages", {"messages": batch, "queue_id": 0})
    victim = next(n for n in nodes(raft) if n != boss)
    victim_dir = raft.config.node_dir(victim)
    checkpoint = wait_until(
        lambda: (
            (c := load_checkpoint(victim_dir / "checkpoint"))
            and c.dispatched_offset > segment + 100_000
            and c.dispatched_offset
        ),
        timeout_s=30,
        what="a checkpoint in the second segment",
    )
    with sending(nodes(raft)[boss], "R", queue_id=1) as sent:
        wait_until(lambda: len(sent) >= 50, timeout_s=30, what="acknowledged sends")
        os.kill(raft.pid(victim), signal.SIGKILL)
        intact = commitlog_prefix(raft, victim, checkpoint)
        with segment_path(victim_dir / "commitlog", 0).open("r+b") as sealed:
            sealed.truncate(segment // 3)  # mid-record, most likely
        with segment_path(victim_dir / "commitlog", segment).open("r+b") as active:
            active.truncate((checkpoint - segment) // 2)
        count = len(sent)
        wait_until(lambda: len(sent) >= count + 200, timeout_s=30, what="sends while it is down")
        raft.cli("cluster", "up", str(raft.path), "--detach")
        count = len(sent)
        wait_until(lambda: len(sent) >= count + 50, timeout_s=30, what="sends after the restart")
    wait_until(lambda: converged(raft), timeout_s=60, what="the refilled node to catch up")
    assert commitlog_prefix(raft, victim, checkpoint) == intact
    end = get(f"http://{nodes(raft)[boss]}/status")["dispatched_offset"]
    assert commitlog_prefix(raft, victim, end) == commitlog_prefix(raft, boss, end)
    stored = read_all(nodes(raft)[victim], "R")
    assert [stored[(0, i)] for i in range(len(bodies))] == bodies
    assert [stored[(1, i)] for i in range(len(sent))] == sent


@contextlib.contextmanager
def sending(addr: str, topic: str, *, queue_id: int) -> Iterator[list[bytes]]:
    """A thread sending one message at a time to one queue until the block ends (at most
    60 s); yields the bodies acknowledged so far, in order."""
    acknowledged: list[bytes] = []
    stop = threading.Event()

    def send() -> None:
        deadline = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            body = f"live-{i}"
            post(
                f"http://{addr}/topics/{topic}/messages",
                {"messages": [{"body": body}], "queue_id": queue_id},
            )
            acknowledged.append(body.encode())
            i += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield acknowledged
    finally:
        stop.set()
        thread.join(timeout=15)


def test_delayed_messages_survive_a_leader_kill_and_are_delivered_once(raft: Cluster) -> None:
    """Scheduled on the old leader, due after it died: the new leader delivers each one
    exactly once (its progress travels in the log with the deliveries), none early."""
    raft.json("topic", "create", "D", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    sent_ms = time.time_ns() // 1_000_000
    bodies = {f"delayed-{i}".encode() for i in range(20)}
    for body in sorted(bodies):  # level 2: 5 s
        post(
            f"http://{nodes(raft)[boss]}/topics/D/messages",
            {"messages": [{"body": body.decode(), "delay_level": 2}]},
        )
    os.kill(raft.pid(boss), signal.SIGKILL)
    new = wait_until(
        lambda: leader(raft, among=set(nodes(raft)) - {boss}), timeout_s=30, what="a new leader"
    )
    raft.cli("cluster", "up", str(raft.path), "--detach")

    def delivered() -> list[bytes] | None:
        found = list(read_all(nodes(raft)[new], "D").values())
        return found if set(found) >= bodies else None

    found = wait_until(delivered, timeout_s=30, what="every delayed message")
    assert sorted(found) == sorted(bodies), "a delayed message was delivered twice"
    for queue in range(QUEUES):
        page = get(f"http://{nodes(raft)[new]}/topics/D/queues/{queue}/messages?offset=0&max=64")
        for message in page["messages"]:
            assert message["store_timestamp_ms"] >= sent_ms + 5_000 - 50, "delivered early"
    wait_until(lambda: converged(raft), timeout_s=30)
    for node, addr in nodes(raft).items():
        assert sorted(read_all(addr, "D").values()) == sorted(bodies), node


def test_a_consumer_group_gets_every_ack_across_a_leader_kill(raft: Cluster) -> None:
    """Two members of a clustering group consume while the leader is SIGKILLed under a
    sending client: every acknowledged message is delivered (at least once); the
    duplicates the failover causes are counted and printed (`-s` shows them)."""
    raft.json("topic", "create", "CG", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    delivered: list[bytes] = []
    options = PushOptions(wait_ms=500, max_messages=32, rebalance_interval_s=0.5)
    loop = LoopThread("group-consumers")

    async def start() -> list[PushConsumer]:
        members = [
            PushConsumer(
                [raft.namesrv],
                "cg",
                "CG",
                callback=lambda messages: delivered.extend(m.body for m in messages),
                from_where="first",
                commit_interval_s=0.5,
                options=options,
                client_id=f"member-{i}",
            )
            for i in (1, 2)
        ]
        for member in members:
            await member.start()
        return members

    members = loop.run(start(), 30)
    try:
        with Sender(raft, "CG") as sender:
            wait_until(lambda: len(sender.acked) >= 200, timeout_s=30, what="acks before")
            os.kill(raft.pid(boss), signal.SIGKILL)
            before_kill = len(sender.acked)
            wait_until(
                lambda: len(sender.acked) >= before_kill + 200, timeout_s=60, what="acks after"
            )
        raft.cli("cluster", "up", str(raft.path), "--detach")
        acked = {body for _, _, body in sender.acked}
        wait_until(lambda: acked <= set(delivered), timeout_s=60, what="every ack consumed")
    finally:

        async def close() -> None:
            await asyncio.gather(*(m.close() for m in members), return_exceptions=True)

        loop.run(close(), 30)
        loop.stop()
    duplicates = len(delivered) - len(set(delivered))
    print(
        f"\nconsumer group across a leader kill: {len(acked)} acknowledged, "
        f"{len(delivered)} deliveries, {duplicates} duplicates"
    )
    assert acked <= set(delivered)


def test_a_follower_restarted_without_its_log_copies_it_from_the_same_leader(
    raft: Cluster,
) -> None:
    """The way back for a node that stopped on `CommittedEntryConflict` (its data moved
    aside, its hard state kept): it restarts with an empty log and the leader, seeing a
    log that ends before what the node had acknowledged, replicates it all again, with
    no leader change."""
    raft.json("topic", "create", "W", "--queues", str(QUEUES))
    boss = wait_until(lambda: leader(raft), timeout_s=30, what="a leader")
    bodies = [f"w{i:04d}".encode() * 100 for i in range(200)]
    for i in range(0, len(bodies), 50):
        batch = [{"body": b.decode()} for b in bodies[i : i + 50]]
        post(f"http://{nodes(raft)[boss]}/topics/W/messages", {"messages": batch, "queue_id": 0})
    wait_until(lambda: converged(raft), timeout_s=30, what="every node to hold the messages")
    term = get(f"http://{nodes(raft)[boss]}/status")["term"]
    victim = next(n for n in nodes(raft) if n != boss)
    os.kill(raft.pid(victim), signal.SIGKILL)
    victim_dir = raft.config.node_dir(victim)
    aside = victim_dir.with_name(victim_dir.name + ".aside")
    aside.mkdir()
    for item in victim_dir.iterdir():
        if item.name != "hard_state":
            item.rename(aside / item.name)
    raft.cli("cluster", "up", str(raft.path), "--detach")
    wait_until(lambda: converged(raft), timeout_s=60, what="the emptied node to catch up")
    assert get(f"http://{nodes(raft)[boss]}/status")["term"] == term  # Same leader.
    assert leader(raft) == boss
    end = get(f"http://{nodes(raft)[boss]}/status")["dispatched_offset"]
    assert commitlog_prefix(raft, victim, end) == commitlog_prefix(raft, boss, end)
    assert [read_all(nodes(raft)[victim], "W")[(0, i)] for i in range(len(bodies))] == bodies
