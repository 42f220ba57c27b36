"""Master/slave replication between two real brokers in one process.

Goal: a slave's CommitLog becomes byte-identical to its master's, across segment rolls, and
the slave dispatches what it got (serves reads at the same queue offsets); in ha_mode sync
a producer is answered only once a slave acknowledged, and when no slave does within
`sync_timeout_ms` it gets SLAVE_NOT_AVAILABLE while the message stays readable on the
master; a push that does not continue the slave's log is refused and the stream resumes.

Method: `open_broker` for a master and a slave (real actors and stores under tmp_path,
128 KiB segments, manual ticks with a fake clock), joined by `FakeNet`, an in-process
transport that msgpack-encodes every frame like the real one and can hold or drop the
frames of one direction. No sleeps: conditions are polled with `wait_until`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from dledgermq.actors.commitlog_writer import Append, AppendReplicated
from dledgermq.actors.flusher import Flush
from dledgermq.actors.reput import Read
from dledgermq.broker.queries import PullMessages
from dledgermq.broker.state import topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.config import ClusterConfig, parse_config
from dledgermq.errors import SlaveNotAvailable
from dledgermq.node import BrokerHooks, BrokerNode, open_broker
from dledgermq.replication.master_slave import STALE_PUSH_MS, HAPush, encode_frame
from dledgermq.replication.master_slave_member import HAMember
from dledgermq.store.record import MessageDraft
from tests.conftest import wait_until
from tests.support import ThreadReply

TIMEOUT_MS = 1000
HOOKS = BrokerHooks(manual_ticks=True)


def cluster_config(tmp_path: Path, ha_mode: str, flush: str = "sync") -> ClusterConfig:
    return parse_config(
        f"""
secret: actor-test-secret-0123
namesrvs: [{{id: ns1, port: 19999}}]
brokers:
  - name: b
    mode: master_slave
    replication: {{ha_mode: {ha_mode}, sync_timeout_ms: {TIMEOUT_MS}}}
    nodes:
      - {{id: m, port: 19001, peer_port: 19002}}
      - {{id: s, port: 19011, peer_port: 19012}}
store: {{segment_size_bytes: 131072, cq_units_per_file: 64, flush: {flush},
        flush_interval_ms: 600000}}
limits: {{max_message_bytes: 8192, max_batch_bytes: 32768}}
""",
        base_dir=tmp_path,
    )


class FakeNet:
    """In-process peer links: frames go through msgpack like the real transport and are
    delivered at once, or queued while their direction is held, or dropped while cut."""

    def __init__(self) -> None:
        self.members: dict[int, HAMember] = {}
        self.held: set[tuple[int, int]] = set()
        self.cut: set[tuple[int, int]] = set()
        self._queue: list[tuple[int, int, Any]] = []
        self._lock = threading.Lock()

    def join(self, member: HAMember) -> None:
        self.members[member.peer_id] = member
        member.transport = _Poster(self, member.peer_id)

    def post(self, src: int, dst: int, payload: dict[Any, Any]) -> bool:
        wire = msgpack.unpackb(msgpack.packb(payload, use_bin_type=True), raw=False)
        with self._lock:
            if (src, dst) in self.cut:
                return True  # Lost on the way, as on a broken link.
            if (src, dst) in self.held:
                self._queue.append((src, dst, wire))
                return True
        self.members[dst].deliver(src, wire)
        return True

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def drop_first(self) -> None:
        """Lose the oldest held frame (a frame lost in the middle of a stream)."""
        with self._lock:
            self._queue.pop(0)

    def release(self, src: int, dst: int) -> None:
        with self._lock:
            self.held.discard((src, dst))
            queue, self._queue = self._queue, []
        for s, d, wire in queue:
            self.members[d].deliver(s, wire)


class _Poster:
    def __init__(self, net: FakeNet, src: int) -> None:
        self._net, self._src = net, src

    def post(self, peer: int, payload: dict[Any, Any]) -> bool:
        return self._net.post(self._src, peer, payload)


class Pair:
    """A started master and slave on one FakeNet; `tick` advances both clocks."""

    def __init__(self, config: ClusterConfig, slave_hooks: BrokerHooks = HOOKS) -> None:
        self.config = config
        group = config.groups[0]
        self.net = FakeNet()
        self.master = open_broker(config, group, group.nodes[0], hooks=HOOKS)
        self.slave = open_broker(config, group, group.nodes[1], hooks=slave_hooks)
        for node in (self.master, self.slave):
            assert node.ha is not None
            self.net.join(node.ha)
        self.now_ms = 1_000

    def tick(self, advance_ms: int = 0) -> None:
        self.now_ms += advance_ms
        self.master.ticker.tick_once(self.now_ms)
        self.slave.ticker.tick_once(self.now_ms)

    def tick_master_after_flushes(self, advance_ms: int) -> None:
        """Tick the master once every earlier append went through its writer and flusher,
        so the HA master has every `AwaitSlave` before the tick. The barrier: the writer
        answers a push that does not fit at once (on its thread, after earlier appends told
        their flushes), and the flusher is FIFO."""
        self.now_ms += advance_ms
        done = threading.Event()

        def tick() -> None:
            self.master.ticker.tick_once(self.now_ms)
            done.set()

        def refused(*_: object) -> None:
            self.master.flusher.tell(Flush(0, tick))

        self.master.writer.tell(AppendReplicated(-1, b"", False, lambda *_: None, refused))
        assert done.wait(10)

    def caught_up(self) -> bool:
        return written(self.slave) == written(self.master) and dispatched(self.slave) == written(
            self.master
        )

    def stop(self) -> None:
        for node in (self.slave, self.master):
            node.stop()


@pytest.fixture(params=["async", "sync"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    running = Pair(cluster_config(tmp_path, request.param))
    running.tick()  # The slave's first report (its start came before the network).
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sync_pair(tmp_path: Path) -> Iterator[Pair]:
    running = Pair(cluster_config(tmp_path, "sync"))
    running.tick()
    try:
        yield running
    finally:
        running.stop()


def written(node: BrokerNode) -> int:
    return node.context.published.marks.written.value


def dispatched(node: BrokerNode) -> int:
    return node.context.published.marks.dispatched.value


def answered(reply: ThreadReply) -> bool:
    return reply.value is not None or reply.error is not None


def send(node: BrokerNode, bodies: list[bytes], queue_id: int = 0) -> ThreadReply:
    reply = ThreadReply()
    drafts = tuple(MessageDraft("T", queue_id, body, {}, 1) for body in bodies)
    node.context.writer.tell(Append(drafts, reply))
    return reply


def create_topic(node: BrokerNode) -> None:
    reply = ThreadReply()
    node.context.writer.tell(Append((topic_put_draft(TopicConfig("T", 2, 2), 1),), reply))
    reply.wait()


def pull(node: BrokerNode, queue_id: int) -> list[tuple[int, bytes]]:
    reply = ThreadReply()
    query = Read(PullMessages("T", queue_id, 0, 10_000), reply)
    node.context.reput.tell(query)
    return [(m.queue_offset, m.record.body) for m in reply.wait().messages]


def commitlog_files(pair: Pair, node: BrokerNode) -> dict[str, bytes]:
    directory = pair.config.node_dir(node.context.identity.node_id) / "commitlog"
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_slave_log_becomes_byte_identical_across_segment_rolls(pair: Pair) -> None:
    create_topic(pair.master)
    replies = [
        send(pair.master, [bytes([i % 251]) * 900 + b"%d" % j for j in range(8)], i % 2)
        for i in range(60)  # about 430 KiB: several 128 KiB segments
    ]
    acked = [reply.wait() for reply in replies]
    wait_until(pair.caught_up, what="slave caught up")
    for queue_id in (0, 1):  # the slave serves the same messages at the same queue offsets
        assert pull(pair.slave, queue_id) == pull(pair.master, queue_id)
    assert sum(len(a) for a in acked) == sum(len(pull(pair.slave, q)) for q in (0, 1))
    status = pair.master.context.ha_status
    assert status is not None

    def acked_everything() -> bool:
        pair.tick()  # The status is published on ticks.
        return status.value.slaves[0].acked_offset == written(pair.master)

    wait_until(acked_everything, what="the master saw the slave's ack")
    pair.stop()
    master_files = commitlog_files(pair, pair.master)
    assert len(master_files) >= 3
    assert commitlog_files(pair, pair.slave) == master_files


def test_sync_mode_answers_only_after_the_slave_acknowledged(sync_pair: Pair) -> None:
    create_topic(sync_pair.master)
    sync_pair.net.held.add((2, 1))  # the slave's acks wait
    before = written(sync_pair.master)
    reply = send(sync_pair.master, [b"replicated"])
    wait_until(lambda: written(sync_pair.slave) > before, what="pushed to the slave")
    assert written(sync_pair.slave) == written(sync_pair.master)
    # The master has flushed and the slave stored the entry, but no ack has arrived: no
    # answer, and nothing new is visible on the master.
    assert not answered(reply)
    assert dispatched(sync_pair.master) < written(sync_pair.master)
    sync_pair.net.release(2, 1)
    [message] = reply.wait()
    assert message.queue_offset == 0
    assert dispatched(sync_pair.master) == written(sync_pair.master)


def test_sync_mode_without_a_slave_answers_slave_not_available_after_the_timeout(
    sync_pair: Pair,
) -> None:
    create_topic(sync_pair.master)
    sync_pair.net.cut.update({(1, 2), (2, 1)})  # the slave is gone
    reply = send(sync_pair.master, [b"lonely"])
    sync_pair.tick_master_after_flushes(TIMEOUT_MS - 1)
    assert not answered(reply)
    sync_pair.tick_master_after_flushes(1)
    with pytest.raises(SlaveNotAvailable, match="NOT replicated"):
        reply.wait()
    assert pull(sync_pair.master, 0) == [(0, b"lonely")]  # stored and visible on the master
    # The slave has been silent for a whole timeout now: the next send fails at once.
    quick = send(sync_pair.master, [b"second"])
    with pytest.raises(SlaveNotAvailable, match="heard"):
        quick.wait()
    assert pull(sync_pair.master, 0) == [(0, b"lonely"), (1, b"second")]


def test_a_lost_push_is_refused_and_the_stream_resumes_from_the_slave(sync_pair: Pair) -> None:
    create_topic(sync_pair.master)
    wait_until(sync_pair.caught_up, what="slave caught up")
    sync_pair.net.held.add((1, 2))
    # One push each (a master pushes what it flushed: sent together, they could share one).
    first = send(sync_pair.master, [b"first"])
    wait_until(lambda: sync_pair.net.queued() == 1, what="the first push")
    second = send(sync_pair.master, [b"second"])
    wait_until(lambda: sync_pair.net.queued() == 2, what="two pushes")
    sync_pair.net.drop_first()
    sync_pair.net.release(1, 2)  # the second push does not continue the slave's log
    assert not answered(first)
    assert not answered(second)
    # The slave refused it and reports again under a new session, at most once per report
    # interval (a push refused over and over cannot make the two loop); the master restarts
    # from there once the lost pushes stopped counting against its window.
    sync_pair.tick(500)
    assert not answered(first)
    sync_pair.tick(100)
    assert [m.queue_offset for m in first.wait() + second.wait()] == [0, 1]
    wait_until(sync_pair.caught_up, what="slave caught up again")
    assert pull(sync_pair.slave, 0) == [(0, b"first"), (1, b"second")]


def test_a_master_pushes_only_what_it_has_fsynced(tmp_path: Path) -> None:
    """Async flush: a written but unsynced entry stays on the master (a power loss would
    take it back; a slave holding it would then diverge); once fsynced, it is pushed."""
    running = Pair(cluster_config(tmp_path, "async", flush="async"))
    try:
        running.tick()
        create_topic(running.master)
        send(running.master, [b"unsynced"]).wait()
        end = written(running.master)
        for _ in range(5):
            running.tick(100)
        assert running.master.context.published.marks.flushed.value < end
        assert written(running.slave) == 0
        flushed = threading.Event()
        running.master.flusher.tell(Flush(end, flushed.set))
        assert flushed.wait(10)
        running.tick(100)
        wait_until(running.caught_up, what="the slave to get the fsynced entries")
        assert pull(running.slave, 0) == [(0, b"unsynced")]
    finally:
        running.stop()


def test_malformed_or_misdirected_frames_are_dropped(sync_pair: Pair) -> None:
    create_topic(sync_pair.master)
    slave, master = sync_pair.slave.ha, sync_pair.master.ha
    assert slave is not None
    assert master is not None
    slave.deliver(1, {"v": 1, "t": "ha_push", "offset": 1})  # a field missing
    slave.deliver(3, encode_frame(HAPush(1, 0, b"x")))  # not from the master
    master.deliver(2, encode_frame(HAPush(1, 0, b"x")))  # a master takes no pushes
    master.deliver(2, {"v": 9})
    [message] = send(sync_pair.master, [b"still fine"]).wait()
    assert message.queue_offset == 0
    wait_until(sync_pair.caught_up, what="slave caught up")
    assert slave.actor is not None
    assert master.actor is not None
    assert slave.actor.is_alive()
    assert master.actor.is_alive()


def test_a_slave_with_a_full_disk_refuses_pushes_and_keeps_serving_reads(tmp_path: Path) -> None:
    full = {"ratio": 0.0}
    hooks = BrokerHooks(manual_ticks=True, disk_used_ratio=lambda _: full["ratio"])
    running = Pair(cluster_config(tmp_path, "sync"), slave_hooks=hooks)
    try:
        running.tick()
        create_topic(running.master)
        [kept] = send(running.master, [b"kept"]).wait()
        wait_until(running.caught_up, what="slave caught up")
        full["ratio"] = 0.99
        running.tick(1000)  # the slave's writer checks its disk
        reply = send(running.master, [b"not on the slave"])
        running.tick_master_after_flushes(TIMEOUT_MS)
        with pytest.raises(SlaveNotAvailable):
            reply.wait()
        assert pull(running.slave, 0) == [(kept.queue_offset, b"kept")]
        assert running.slave.ha is not None
        assert running.slave.ha.actor is not None
        assert running.slave.ha.actor.is_alive()
        full["ratio"] = 0.0  # space again: the next report streams the rest
        running.tick(1000)
        running.tick(STALE_PUSH_MS)
        wait_until(running.caught_up, what="slave caught up after the disk emptied")
    finally:
        running.stop()
