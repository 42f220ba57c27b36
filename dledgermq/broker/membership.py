"""Consumer-group liveness and orderly-queue leases, the pure bookkeeping behind rebalancing.

`GroupMembers` knows who is alive in each group (a member is alive while it heartbeats
within `timeout_ms`); its member lists feed `rebalance.allocate`. `QueueLocks` is the lease
table orderly consumers lock queues in (RocketMQ's `RebalanceLockManager` idea): a queue is
held by at most one client at a time, and a lease that is not renewed expires, so a crashed
client cannot hold a queue forever. `handover` joins the two: a new owner may start on a
queue only when no other client still holds its lease, so a queue is never consumed by two
members of a group at once, even while they disagree about the allocation.

Time is half-open everywhere: a heartbeat at t with timeout T keeps a member alive for
t <= now < t + T, and a lease granted at t for L ms is held for t <= now < t + L.

Pure: no clock (callers pass `now_ms`), no I/O, no threads. Bounded: beyond the configured
number of groups, members or leases, a new entry is refused with `Busy` (existing ones can
always heartbeat and renew).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dledgermq.broker.filter import parse_tag_expression
from dledgermq.broker.rebalance import Allocation, Consumer, MessageQueue
from dledgermq.broker.topics import check_group_name, check_topic_name
from dledgermq.errors import BadRequest, Busy

NAME_MAX_LENGTH = 255  # client ids and zones
SUBSCRIPTIONS_MAX = 256
GROUPS_MAX_DEFAULT = 10_000
MEMBERS_PER_GROUP_MAX_DEFAULT = 1_000
LEASES_MAX_DEFAULT = 100_000
HEARTBEAT_TIMEOUT_MS_DEFAULT = 120_000  # RocketMQ's channel expiry
LEASE_MS_DEFAULT = 60_000  # RocketMQ's REBALANCE_LOCK_MAX_LIVE_TIME
LEASE_MS_MAX = 600_000


@dataclass(frozen=True, slots=True)
class Member:
    """One live client of a group: where it runs, what it subscribes to, when it last
    spoke. `subscriptions` holds (topic, tag expression) pairs sorted by topic."""

    client_id: str
    zone: str | None
    subscriptions: tuple[tuple[str, str], ...]
    last_heartbeat_ms: int

    @property
    def consumer(self) -> Consumer:
        return Consumer(self.client_id, self.zone)

    def subscribes(self, topic: str) -> bool:
        return any(t == topic for t, _ in self.subscriptions)


class GroupMembers:
    """Who is alive in each consumer group."""

    def __init__(
        self,
        groups_max: int = GROUPS_MAX_DEFAULT,
        members_per_group_max: int = MEMBERS_PER_GROUP_MAX_DEFAULT,
    ) -> None:
        assert groups_max > 0
        assert members_per_group_max > 0
        self._groups_max = groups_max
        self._members_per_group_max = members_per_group_max
        self._groups: dict[str, dict[str, Member]] = {}

    def heartbeat(
        self,
        group: str,
        client_id: str,
        zone: str | None,
        subscriptions: Mapping[str, str],
        now_ms: int,
    ) -> bool:
        """Record that `client_id` is alive; True when the group must rebalance (a new
        member, or one whose zone or subscriptions changed).

        Raises:
            BadRequest: a bad group name, client id, zone, topic or tag expression.
            Busy: a new group or member beyond the configured maximum.
        """
        check_group_name(group)
        _check_name("client_id", client_id)
        if zone is not None:
            _check_name("zone", zone)
        subs = _check_subscriptions(subscriptions)
        members = self._groups.get(group)
        if members is None:
            if len(self._groups) >= self._groups_max:
                raise Busy(f"too many consumer groups (at most {self._groups_max})")
            members = self._groups[group] = {}
        before = members.get(client_id)
        if before is None and len(members) >= self._members_per_group_max:
            raise Busy(f"group {group!r} has {len(members)} members, the maximum")
        # Time never goes back for a member, so a late heartbeat cannot shorten its life.
        last_ms = now_ms if before is None else max(before.last_heartbeat_ms, now_ms)
        members[client_id] = Member(client_id, zone, subs, last_ms)
        return before is None or (before.zone, before.subscriptions) != (zone, subs)

    def unregister(self, group: str, client_id: str) -> bool:
        """Remove a client that shut down; True when it was a member."""
        members = self._groups.get(group)
        if members is None or members.pop(client_id, None) is None:
            return False
        if not members:
            del self._groups[group]
        return True

    def expire(self, now_ms: int, timeout_ms: int) -> dict[str, tuple[str, ...]]:
        """Remove members silent for `timeout_ms` or more; group -> removed client ids
        (sorted), for the groups that lost members and so must rebalance."""
        assert timeout_ms > 0, timeout_ms
        removed: dict[str, tuple[str, ...]] = {}
        for group in sorted(self._groups):
            members = self._groups[group]
            gone = sorted(
                c for c, m in members.items() if now_ms >= m.last_heartbeat_ms + timeout_ms
            )
            for client_id in gone:
                del members[client_id]
            if gone:
                removed[group] = tuple(gone)
            if not members:
                del self._groups[group]
        return removed

    def members(self, group: str) -> tuple[Member, ...]:
        """The group's members sorted by client id (empty for an unknown group)."""
        members = self._groups.get(group, {})
        return tuple(members[c] for c in sorted(members))

    def subscribers(self, group: str, topic: str) -> tuple[Consumer, ...]:
        """The members subscribed to `topic`: the consumers to allocate its queues to."""
        return tuple(m.consumer for m in self.members(group) if m.subscribes(topic))

    def groups(self) -> tuple[str, ...]:
        return tuple(sorted(self._groups))


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= NAME_MAX_LENGTH:
        raise BadRequest(f"{what} must be a string of 1..{NAME_MAX_LENGTH} characters")


def _check_subscriptions(subscriptions: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if not isinstance(subscriptions, Mapping):
        raise BadRequest("subscriptions must map topic -> tag expression")
    if len(subscriptions) > SUBSCRIPTIONS_MAX:
        raise BadRequest(f"at most {SUBSCRIPTIONS_MAX} subscriptions per client")
    for topic, expression in subscriptions.items():
        # Retry topics (%RETRY%group) are subscribed to like any other.
        check_topic_name(topic, allow_system=True)
        if not isinstance(expression, str):
            raise BadRequest(f"tag expression of {topic!r} must be a string")
        parse_tag_expression(expression)
    return tuple(sorted(subscriptions.items()))


@dataclass(frozen=True, slots=True)
class Lease:
    """`client_id` holds the queue while now < `expires_at_ms`."""

    client_id: str
    expires_at_ms: int


class QueueLocks:
    """Leases on (group, queue) for orderly consumers: at most one holder at a time."""

    def __init__(self, leases_max: int = LEASES_MAX_DEFAULT) -> None:
        assert leases_max > 0
        self._leases_max = leases_max
        self._leases: dict[tuple[str, MessageQueue], Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    def try_lock(
        self,
        group: str,
        queue: MessageQueue,
        client_id: str,
        now_ms: int,
        lease_ms: int = LEASE_MS_DEFAULT,
    ) -> bool:
        """Take or renew the lease; granted when the queue is free, its lease expired, or
        `client_id` already holds it (then it runs `lease_ms` from now).

        Raises:
            BadRequest: `lease_ms` outside 1..LEASE_MS_MAX.
            Busy: a new lease beyond `leases_max` once expired ones are dropped.
        """
        if type(lease_ms) is not int or not 1 <= lease_ms <= LEASE_MS_MAX:
            raise BadRequest(f"lease_ms must be within 1..{LEASE_MS_MAX}, got {lease_ms!r}")
        key = (group, queue)
        lease = self._leases.get(key)
        if lease is not None and lease.client_id != client_id and now_ms < lease.expires_at_ms:
            return False
        if lease is None and len(self._leases) >= self._leases_max:
            self.expire(now_ms)
            if len(self._leases) >= self._leases_max:
                raise Busy(f"too many queue locks (at most {self._leases_max})")
        self._leases[key] = Lease(client_id, now_ms + lease_ms)
        return True

    def unlock(self, group: str, queue: MessageQueue, client_id: str) -> bool:
        """Release the lease; only its holder may (True when it did)."""
        key = (group, queue)
        lease = self._leases.get(key)
        if lease is None or lease.client_id != client_id:
            return False
        del self._leases[key]
        return True

    def unlock_all(self, group: str, client_id: str) -> tuple[MessageQueue, ...]:
        """Release every lease `client_id` holds in `group` (it left or expired as a
        member); the queues freed, sorted."""
        keys = [
            k for k, lease in self._leases.items() if k[0] == group and lease.client_id == client_id
        ]
        for key in keys:
            del self._leases[key]
        return tuple(sorted(queue for _, queue in keys))

    def holder(self, group: str, queue: MessageQueue, now_ms: int) -> str | None:
        """Who holds the queue now (None: free or expired)."""
        lease = self._leases.get((group, queue))
        if lease is None or now_ms >= lease.expires_at_ms:
            return None
        return lease.client_id

    def expire(self, now_ms: int) -> int:
        """Drop expired leases (they already grant nothing); how many were dropped."""
        expired = [k for k, lease in self._leases.items() if now_ms >= lease.expires_at_ms]
        for key in expired:
            del self._leases[key]
        return len(expired)


@dataclass(frozen=True, slots=True)
class Handover:
    """`ready`: client -> allocated queues it may consume now (sorted; every client of the
    allocation is a key). `blocked`: allocated queue -> the other client still holding it."""

    ready: Mapping[str, tuple[MessageQueue, ...]]
    blocked: Mapping[MessageQueue, str]


def handover(allocation: Allocation, locks: QueueLocks, group: str, now_ms: int) -> Handover:
    """Which allocated queues each owner may start consuming now.

    A queue is ready for its new owner when nobody holds its lease or the owner does. A
    lease held by another client blocks it until that client unlocks it or the lease
    expires, even if that client is no longer a member: one that merely missed heartbeats
    may still be consuming. (A client that unregisters has stopped, so the caller may free
    its leases at once with `QueueLocks.unlock_all`.) The owner must still `try_lock` a
    ready queue before consuming it; this only says the lock will be granted.
    """
    ready: dict[str, tuple[MessageQueue, ...]] = {}
    blocked: dict[MessageQueue, str] = {}
    for client_id, queues in allocation.items():
        mine: list[MessageQueue] = []
        for queue in queues:
            holder = locks.holder(group, queue, now_ms)
            if holder is None or holder == client_id:
                mine.append(queue)
            else:
                blocked[queue] = holder
        ready[client_id] = tuple(sorted(mine))
    return Handover(ready, blocked)
