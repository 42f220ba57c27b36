"""Fakes for RaftNodeActor tests: a pumped in-memory network and a gated in-memory disk.

Goal: drive real pykka RaftNodeActors deterministically, without sleeps.

Method: `FakeNetwork.send` only records and queues; the test thread delivers queued
messages (`deliver_all`) as `Inbound` tells, dropping those across a partition. `Cluster.settle`
alternates delivery with a `Status` barrier on every node (an inbox is FIFO, so the answer
comes after every earlier message) until nothing moves. `FakeStorage` applies each
`PersistRequest` to an in-memory durable log and answers `Persisted` at once, or, while
`hold` is set, only when the test calls `release()`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from dledgermq.actors.raft_node import (
    Inbound,
    Persisted,
    PersistRequest,
    Propose,
    RaftNodeActor,
    RaftStatus,
    Status,
    Tick,
)
from dledgermq.actors.supervisor import tell
from dledgermq.raft.config import RaftConfig
from dledgermq.raft.driver import DriverIO
from dledgermq.raft.log import RaftLog
from dledgermq.raft.messages import Message
from dledgermq.raft.types import Entry, HardState, NodeId, Role
from tests.support import ThreadReply


class FakeNetwork:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[Message] = []  # Everything any node handed to `send`, in order.
        self._queue: list[Message] = []
        self._groups: list[set[NodeId]] | None = None
        self.nodes: dict[NodeId, pykka.ActorRef[Any]] = {}

    def send(self, message: Message) -> None:
        with self._lock:
            self.log.append(message)
            self._queue.append(message)

    def sent(self, predicate: Callable[[Message], bool]) -> list[Message]:
        with self._lock:
            return [m for m in self.log if predicate(m)]

    def partition(self, *groups: Iterable[NodeId]) -> None:
        self._groups = [set(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def _blocked(self, message: Message) -> bool:
        if self._groups is None:
            return False
        return not any(message.src in g and message.dst in g for g in self._groups)

    def deliver_all(self) -> int:
        with self._lock:
            queue, self._queue = self._queue, []
        for message in queue:
            if not self._blocked(message):
                tell(self.nodes[message.dst], Inbound(message))
        return len(queue)

    def idle(self) -> bool:
        with self._lock:
            return not self._queue


class FakeStorage:
    """A durable log in memory; durability is granted at once unless `hold` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[PersistRequest] = []
        self.durable: list[Entry] = []
        self.hard_state = HardState()
        self.hold = False
        # While set, the first request it matches turns `hold` on (that one included).
        self.hold_from: Callable[[PersistRequest], bool] | None = None
        self._released_seq = 0
        self.node: pykka.ActorRef[Any] | None = None

    def persist(self, request: PersistRequest) -> None:
        with self._lock:
            assert request.seq == len(self.requests) + 1, "requests arrive in seq order"
            self.requests.append(request)
            if self.hold_from is not None and self.hold_from(request):
                self.hold = True
            hold = self.hold
        if not hold:
            self.release()

    def release(self) -> None:
        """Make every request so far durable and tell the node."""
        with self._lock:
            for request in self.requests[self._released_seq :]:
                if request.truncate_from is not None:
                    del self.durable[request.truncate_from - 1 :]
                self.durable.extend(request.entries)
                if request.hard_state is not None:
                    self.hard_state = request.hard_state
            self._released_seq = len(self.requests)
            last = self.durable[-1] if self.durable else Entry(0, 0, None)
            answer = Persisted(self._released_seq, last.term, last.index)
        assert self.node is not None
        tell(self.node, answer)

    def pending(self) -> int:
        with self._lock:
            return len(self.requests) - self._released_seq


class Cluster:
    """N RaftNodeActors over one FakeNetwork, each with its own FakeStorage."""

    def __init__(self, n: int = 3, *, seed: int = 1, pending_proposals_max: int = 100) -> None:
        self.ids = tuple(range(1, n + 1))
        self.net = FakeNetwork()
        self.storage = {i: FakeStorage() for i in self.ids}
        self.commits: dict[NodeId, list[int]] = {i: [] for i in self.ids}
        self.failures: list[BaseException] = []
        for i in self.ids:
            config = RaftConfig(i, self.ids, pending_proposals_max=pending_proposals_max)
            ref = RaftNodeActor.start(
                config,
                DriverIO(
                    self.storage[i].persist,
                    self.net.send,
                    on_commit=lambda index, _term, i=i: self.commits[i].append(index),
                ),
                hard_state=HardState(),
                log=RaftLog(),
                rng=random.Random(seed * 100 + i),
                on_fatal=lambda _name, error: self.failures.append(error),
            )
            self.storage[i].node = ref
            self.net.nodes[i] = ref

    def stop(self) -> None:
        for ref in self.net.nodes.values():
            ref.stop()
        assert not self.failures, self.failures

    def status(self, i: NodeId) -> RaftStatus:
        reply = ThreadReply()
        tell(self.net.nodes[i], Status(reply))
        status: RaftStatus = reply.wait()
        return status

    def barrier(self) -> None:
        for i in self.ids:
            self.status(i)

    def settle(self, max_rounds: int = 200) -> None:
        """Deliver messages until none are in flight and no node has work queued."""
        quiet = 0
        for _ in range(max_rounds):
            moved = self.net.deliver_all()
            self.barrier()
            quiet = quiet + 1 if moved == 0 and self.net.idle() else 0
            if quiet >= 2:
                return
        raise AssertionError("network did not settle")

    def tick(self, rounds: int = 1, nodes: Iterable[NodeId] | None = None) -> None:
        targets = tuple(nodes) if nodes is not None else self.ids
        for _ in range(rounds):
            for i in targets:
                tell(self.net.nodes[i], Tick(0))
            self.settle()

    def leaders(self, among: Iterable[NodeId] | None = None) -> list[RaftStatus]:
        statuses = [self.status(i) for i in (among or self.ids)]
        return [s for s in statuses if s.role is Role.LEADER]

    def elect(self, among: Iterable[NodeId] | None = None, max_ticks: int = 200) -> NodeId:
        """Tick until exactly one leader among `among` (all nodes by default)."""
        group = tuple(among or self.ids)
        for _ in range(max_ticks):
            self.tick(nodes=group)
            leaders = self.leaders(group)
            if len(leaders) == 1 and all(
                self.status(i).leader_id == leaders[0].node_id for i in group
            ):
                return leaders[0].node_id
        raise AssertionError(f"no single leader among {group}")

    def propose(self, i: NodeId, payload: object) -> ThreadReply:
        reply = ThreadReply()
        tell(self.net.nodes[i], Propose(payload, reply))
        return reply
