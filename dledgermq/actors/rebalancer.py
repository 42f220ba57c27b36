"""RebalancerActor: who in a consumer group consumes which queue of this broker group.

Clustering-mode consumers heartbeat the writer of every broker group that hosts their
topics. Each heartbeat refreshes the member (`broker/membership.py`), recomputes the
allocation of this broker group's readable queues among the live subscribers of each topic
(`broker/rebalance.py`, the group's strategy) and answers with the queues the member may
consume *now*: those allocated to it whose lease it holds or could take. A queue whose
previous owner still holds the lease is withheld until that owner releases it (after it
stopped pulling and committed its offset) or the lease expires, so no queue is consumed by
two members of a group at once. Members that stop heartbeating are dropped after
`member_timeout_ms`.

Membership and leases are soft state, rebuilt by heartbeats: after a failover the new
leader knows every member within one heartbeat interval; a lease then starts afresh
(a consumer still pulling from the old leader's address gets NOT_LEADER). Orderly
consumers need more: a new writer epoch (a new term on this node, or the first heartbeat
after start) drops the lease table and begins with a grace period in which an orderly
member gets only the queues it still holds, first claim wins (`broker/lock_grace.py`),
so no queue is processed by two orderly consumers across a failover.

Owns: `GroupMembers`, `QueueLocks`, each group's strategy. Must not: touch the log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dledgermq.actors.published import Published
from dledgermq.actors.supervisor import FailStopActor, FatalHandler, exit_process
from dledgermq.actors.ticker import Tick
from dledgermq.bridge import ReplyTo
from dledgermq.broker.lock_grace import STALE_WRITER_SLACK_MS, WriterEpoch, grant_orderly
from dledgermq.broker.membership import GroupMembers, QueueLocks
from dledgermq.broker.rebalance import AVERAGE, STRATEGIES, MessageQueue, allocate
from dledgermq.broker.topics import TopicConfig
from dledgermq.errors import BadRequest, MQError, Unavailable


@dataclass(frozen=True, slots=True)
class Heartbeat:
    group: str
    client_id: str
    zone: str | None
    subscriptions: Mapping[str, str]  # topic -> tag expression
    strategy: str
    reply: ReplyTo[dict[str, Any]]
    # The zone of this broker (the writer answering): every queue of the group lies there,
    # so `zone_aware` gives them to members of that zone when it has any.
    broker_zone: str | None = None
    # The writer's term when the API took the request (0 outside Raft groups).
    term: int = 0
    # An orderly member: its grants follow the grace rules after a change of writer.
    orderly: bool = False
    # (topic, queue id) pairs the member holds under a lease it still considers valid.
    held: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Release:
    """The member stopped consuming these queues (and committed): free their leases."""

    group: str
    client_id: str
    topic: str
    queue_ids: tuple[int, ...]
    reply: ReplyTo[int]


@dataclass(frozen=True, slots=True)
class Leave:
    """The member shut down: forget it and free every lease it held."""

    group: str
    client_id: str
    reply: ReplyTo[bool]


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    reply: ReplyTo[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RebalanceOptions:
    broker_name: str
    member_timeout_ms: int = 15_000
    lease_ms: int = 20_000
    # How long an earlier writer may still grant leases once this node became the writer.
    stale_writer_ms: int = STALE_WRITER_SLACK_MS

    @property
    def grace_ms(self) -> int:
        """A new writer's grace for orderly members: every earlier lease has ended after it."""
        return self.lease_ms + self.stale_writer_ms


class RebalancerActor(FailStopActor):
    def __init__(
        self,
        topics: Published[dict[str, TopicConfig]],
        options: RebalanceOptions,
        on_fatal: FatalHandler = exit_process,
    ) -> None:
        super().__init__(on_fatal)
        self._topics = topics
        self._options = options
        self._members = GroupMembers()
        self._locks = QueueLocks()
        self._strategies: dict[str, str] = {}
        self._now_ms: int | None = None
        self._epoch: WriterEpoch | None = None

    def on_receive(self, message: object) -> None:
        match message:
            case Heartbeat() as beat:
                _answer(beat.reply, lambda: self._heartbeat(beat))
            case Release(group, client_id, topic, queue_ids, reply):
                _answer(reply, lambda: self._release(group, client_id, topic, queue_ids))
            case Leave(group, client_id, reply):
                self._locks.unlock_all(group, client_id)
                reply.ok(self._members.unregister(group, client_id))
            case GroupView(group, reply):
                reply.ok(self._view(group))
            case Tick(now_ms):
                self._tick(now_ms)
            case _:
                raise AssertionError(f"unexpected message {message!r}")

    def _tick(self, now_ms: int) -> None:
        self._now_ms = now_ms
        for group in self._members.expire(now_ms, self._options.member_timeout_ms):
            if not self._members.members(group):
                self._strategies.pop(group, None)
        self._locks.expire(now_ms)

    def _now(self) -> int:
        if self._now_ms is None:
            raise Unavailable("the broker is starting; heartbeat again")
        return self._now_ms

    def _writer_epoch(self, term: int, now_ms: int) -> WriterEpoch:
        """The epoch of this node as writer in `term`; a new one drops every lease (an
        other writer may have granted them since) and starts the orderly grace."""
        epoch = self._epoch
        if epoch is not None and term < epoch.term:
            raise Unavailable(f"heartbeat of term {term} arrived in term {epoch.term}; again")
        if epoch is None or term > epoch.term:
            self._locks = QueueLocks()
            epoch = self._epoch = WriterEpoch(term, now_ms, self._options.grace_ms)
        return epoch

    def _heartbeat(self, beat: Heartbeat) -> dict[str, Any]:
        if beat.strategy not in STRATEGIES:
            raise BadRequest(f"unknown strategy {beat.strategy!r}; one of {list(STRATEGIES)}")
        now = self._now()
        epoch = self._writer_epoch(beat.term, now)
        self._members.heartbeat(beat.group, beat.client_id, beat.zone, beat.subscriptions, now)
        self._strategies[beat.group] = beat.strategy
        topics = self._topics.value
        assignment: dict[str, list[int]] = {}
        for topic in sorted(beat.subscriptions):
            config = topics.get(topic)
            if config is None or not config.readable:
                assignment[topic] = []
                continue
            broker, zone = self._options.broker_name, beat.broker_zone
            queues = [MessageQueue(topic, broker, q, zone) for q in range(config.read_queues)]
            allocation = allocate(
                self._members.subscribers(beat.group, topic), queues, beat.strategy
            )
            mine = allocation.get(beat.client_id, ())
            lease_ms = self._options.lease_ms
            if beat.orderly:
                held = [MessageQueue(topic, broker, q) for t, q in beat.held if t == topic]
                granted = grant_orderly(
                    self._locks,
                    beat.group,
                    beat.client_id,
                    allocated=mine,
                    held=held,
                    readable=queues,
                    epoch=epoch,
                    now_ms=now,
                    lease_ms=lease_ms,
                )
            else:
                granted = tuple(
                    q
                    for q in mine
                    if self._locks.try_lock(beat.group, q, beat.client_id, now, lease_ms)
                )
            assignment[topic] = [q.queue_id for q in granted]
        return {
            "assignment": assignment,
            "lease_ms": self._options.lease_ms,
            "members": [m.client_id for m in self._members.members(beat.group)],
            "grace_ms": epoch.grace_left_ms(now),
        }

    def _release(self, group: str, client_id: str, topic: str, queue_ids: tuple[int, ...]) -> int:
        broker = self._options.broker_name
        return sum(
            self._locks.unlock(group, MessageQueue(topic, broker, q), client_id) for q in queue_ids
        )

    def _view(self, group: str) -> dict[str, Any]:
        now = self._now_ms or 0
        members = self._members.members(group)
        topics = sorted({t for m in members for t, _ in m.subscriptions})
        owners: dict[str, dict[int, str | None]] = {}
        for topic in topics:
            config = self._topics.value.get(topic)
            count = config.read_queues if config is not None else 0
            owners[topic] = {
                q: self._locks.holder(group, MessageQueue(topic, self._options.broker_name, q), now)
                for q in range(count)
            }
        return {
            "group": group,
            "strategy": self._strategies.get(group, AVERAGE),
            "members": [
                {
                    "client_id": m.client_id,
                    "zone": m.zone,
                    "subscriptions": dict(m.subscriptions),
                    "last_heartbeat_ms": m.last_heartbeat_ms,
                }
                for m in members
            ],
            "owners": {t: {str(q): c for q, c in o.items()} for t, o in owners.items()},
        }


def _answer(reply: ReplyTo[Any], compute: Callable[[], Any]) -> None:
    try:
        value = compute()
    except MQError as exc:
        reply.fail(exc)
        return
    reply.ok(value)
