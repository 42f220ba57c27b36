"""Queue allocation for a consumer group in clustering mode, computed for the whole group.

The broker decides who owns which queue of a topic, once, for every member at once, so two
members never disagree about ownership because they saw different member lists (the classic
RocketMQ client-side rebalance race). Strategies follow RocketMQ's
`AllocateMessageQueueStrategy` family (reimplemented): `average`, `average_by_circle`,
`consistent_hash` and `zone_aware` (RocketMQ's machine-room-nearby idea).

Every strategy is a pure function of the *sets* of consumers and queues: inputs are sorted
first, and the hash ring uses MD5, never Python's per-process randomized `hash()`, so every
replica and every restart computes the same answer.

Pure: no I/O, no clock, no threads. One call allocates the queues of one topic; the caller
passes the members subscribed to it.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dledgermq.errors import BadRequest

AVERAGE = "average"
AVERAGE_BY_CIRCLE = "average_by_circle"
CONSISTENT_HASH = "consistent_hash"
ZONE_AWARE = "zone_aware"
STRATEGIES = (AVERAGE, AVERAGE_BY_CIRCLE, CONSISTENT_HASH, ZONE_AWARE)
# zone_aware splits the group by zone, then hands each part to one of these.
INNER_STRATEGIES = (AVERAGE, AVERAGE_BY_CIRCLE, CONSISTENT_HASH)
VIRTUAL_NODES_DEFAULT = 10
# Ring size is consumers * virtual nodes; this keeps one allocation's work bounded.
VIRTUAL_NODES_MAX = 1000


@dataclass(frozen=True, slots=True)
class Consumer:
    """A live member of the group; `zone` is where it runs (None: unknown)."""

    client_id: str
    zone: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class MessageQueue:
    """One queue of a topic on one broker group.

    Identity and order are (topic, broker_name, queue_id); `zone` is where the broker runs,
    an attribute that does not make it another queue (so a lease taken on a queue stays
    valid when its broker's zone label is edited).
    """

    topic: str
    broker_name: str
    queue_id: int
    zone: str | None = field(default=None, compare=False)


Allocation = dict[str, tuple[MessageQueue, ...]]
_Strategy = Callable[[Sequence[Consumer], Sequence[MessageQueue]], Allocation]


def allocate(
    consumers: Iterable[Consumer],
    queues: Iterable[MessageQueue],
    strategy: str = AVERAGE,
    *,
    inner: str = AVERAGE,
    virtual_nodes: int = VIRTUAL_NODES_DEFAULT,
) -> Allocation:
    """Assign every queue of one topic to exactly one consumer.

    Args:
        consumers: the group's live members subscribed to the topic (unique client ids).
        queues: the topic's readable queues (unique, all of one topic).
        strategy: one of `STRATEGIES`.
        inner: for `zone_aware`, how each zone's part is allocated (one of
            `INNER_STRATEGIES`); ignored otherwise.
        virtual_nodes: ring points per consumer for `consistent_hash`.

    Returns:
        client_id -> its queues, sorted; every consumer is a key (possibly with no queues),
        in client_id order. Empty when there are no consumers.

    Raises:
        BadRequest: an unknown strategy, a bad `virtual_nodes`, duplicate consumers or
            queues, or queues of more than one topic.
    """
    plain = _strategy(strategy, inner, virtual_nodes)
    ordered_consumers = _sorted_consumers(consumers)
    ordered_queues = _sorted_queues(queues)
    if not ordered_consumers:
        return {}
    if strategy == ZONE_AWARE:
        return _zone_aware(ordered_consumers, ordered_queues, plain)
    return plain(ordered_consumers, ordered_queues)


def _strategy(strategy: str, inner: str, virtual_nodes: int) -> _Strategy:
    """The plain strategy to run (for zone_aware: the one run inside each zone)."""
    if strategy not in STRATEGIES:
        raise BadRequest(
            f"unknown allocation strategy {strategy!r}; valid: {list(STRATEGIES)}",
            valid=list(STRATEGIES),
        )
    if strategy == ZONE_AWARE and inner not in INNER_STRATEGIES:
        raise BadRequest(
            f"unknown inner strategy {inner!r} for zone_aware; valid: {list(INNER_STRATEGIES)}",
            valid=list(INNER_STRATEGIES),
        )
    if type(virtual_nodes) is not int or not 1 <= virtual_nodes <= VIRTUAL_NODES_MAX:
        raise BadRequest(
            f"virtual_nodes must be an integer within 1..{VIRTUAL_NODES_MAX}, got {virtual_nodes!r}"
        )
    name = inner if strategy == ZONE_AWARE else strategy
    if name == CONSISTENT_HASH:
        return functools.partial(_consistent_hash, virtual_nodes=virtual_nodes)
    return _average_by_circle if name == AVERAGE_BY_CIRCLE else _average


def _sorted_consumers(consumers: Iterable[Consumer]) -> list[Consumer]:
    ordered = sorted(consumers, key=lambda c: c.client_id)
    for before, after in itertools.pairwise(ordered):
        if before.client_id == after.client_id:
            raise BadRequest(f"consumer {after.client_id!r} is listed twice")
    return ordered


def _sorted_queues(queues: Iterable[MessageQueue]) -> list[MessageQueue]:
    ordered = sorted(queues)
    for before, after in itertools.pairwise(ordered):
        if before == after:
            raise BadRequest(f"queue {after.broker_name}/{after.queue_id} is listed twice")
    topics = sorted({q.topic for q in ordered})
    if len(topics) > 1:
        raise BadRequest(f"one allocation covers one topic, got {topics}")
    return ordered


def _empty(consumers: Sequence[Consumer]) -> dict[str, list[MessageQueue]]:
    return {c.client_id: [] for c in consumers}


def _frozen(owned: dict[str, list[MessageQueue]]) -> Allocation:
    return {client: tuple(sorted(qs)) for client, qs in owned.items()}


def _average(consumers: Sequence[Consumer], queues: Sequence[MessageQueue]) -> Allocation:
    """Contiguous blocks; the first `len(queues) % len(consumers)` get one extra, so a
    consumer keeps neighbouring queues and sizes differ by at most one."""
    base, extra = divmod(len(queues), len(consumers))
    owned: Allocation = {}
    start = 0
    for rank, consumer in enumerate(consumers):
        size = base + (1 if rank < extra else 0)
        owned[consumer.client_id] = tuple(queues[start : start + size])
        start += size
    assert start == len(queues)
    return owned


def _average_by_circle(consumers: Sequence[Consumer], queues: Sequence[MessageQueue]) -> Allocation:
    """Queue i goes to consumer i mod n: spreads each broker's queues over the group."""
    owned = _empty(consumers)
    for i, queue in enumerate(queues):
        owned[consumers[i % len(consumers)].client_id].append(queue)
    return _frozen(owned)


def _point(key: str) -> int:
    """A position on the ring, the same in every process (unlike `hash()`)."""
    digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big")


def _consistent_hash(
    consumers: Sequence[Consumer], queues: Sequence[MessageQueue], virtual_nodes: int
) -> Allocation:
    """Each queue goes to the first consumer point at or after its own point (wrapping).

    A joining consumer only adds points, so the only queues that move are the ones it takes;
    a leaving one only frees its own. Ties between points break by client id.
    """
    ring = sorted(
        (_point(f"{c.client_id}\x00{v}"), c.client_id)
        for c in consumers
        for v in range(virtual_nodes)
    )
    points = [p for p, _ in ring]
    owned = _empty(consumers)
    for queue in queues:
        at = bisect.bisect_left(points, _point(_queue_key(queue)))
        owned[ring[at % len(ring)][1]].append(queue)
    return _frozen(owned)


def _queue_key(queue: MessageQueue) -> str:
    return f"{queue.topic}\x00{queue.broker_name}\x00{queue.queue_id}"


def _zone_aware(
    consumers: Sequence[Consumer], queues: Sequence[MessageQueue], inner: _Strategy
) -> Allocation:
    """A zone's queues stay with that zone's consumers (no cross-zone traffic); queues of a
    zone without consumers, or without a zone, are shared by the whole group."""
    by_zone: dict[str, list[Consumer]] = {}
    for consumer in consumers:
        if consumer.zone is not None:
            by_zone.setdefault(consumer.zone, []).append(consumer)
    local: dict[str, list[MessageQueue]] = {}
    orphans: list[MessageQueue] = []
    for queue in queues:
        if queue.zone is not None and queue.zone in by_zone:
            local.setdefault(queue.zone, []).append(queue)
        else:
            orphans.append(queue)
    owned = _empty(consumers)
    parts = [(by_zone[zone], local[zone]) for zone in sorted(local)]
    parts.append((list(consumers), orphans))
    for members, part in parts:
        for client, got in inner(members, part).items():
            owned[client].extend(got)
    return _frozen(owned)
