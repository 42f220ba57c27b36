"""Group liveness, orderly-queue leases and handover (`broker/membership.py`).

Goal: members live exactly while they heartbeat within the timeout and the tables stay
within their bounds; a lease has at most one holder at a time, renews for its holder and
frees on unlock or expiry; `handover` never lets a new owner start on a queue another client
still holds. Method: examples on a fake clock (plain integers), and Hypothesis interleavings
of locks, unlocks, renewals, rebalances, crashes and time advances, checked against what
each client *believes* it holds (a client consumes while its own lease has not run out):
no queue may ever have two believers.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.membership import (
    SUBSCRIPTIONS_MAX,
    GroupMembers,
    Handover,
    Member,
    QueueLocks,
    handover,
)
from dledgermq.broker.rebalance import STRATEGIES, Consumer, MessageQueue, allocate
from dledgermq.errors import BadRequest, Busy, InvalidTopic

SUBS = {"T": "*"}
QUEUES = [MessageQueue("T", "a", i) for i in range(4)] + [
    MessageQueue("T", "b", i) for i in range(2)
]
Q0, Q1 = QUEUES[0], QUEUES[1]
CLIENTS = ["c0", "c1", "c2", "c3"]


# -- GroupMembers ---------------------------------------------------------------------------


def test_heartbeat_says_when_the_group_must_rebalance() -> None:
    members = GroupMembers()
    assert members.heartbeat("g", "c1", None, SUBS, now_ms=0)  # joined
    assert not members.heartbeat("g", "c1", None, SUBS, now_ms=10)  # same: only alive
    assert members.heartbeat("g", "c1", "z1", SUBS, now_ms=20)  # moved zone
    assert members.heartbeat("g", "c1", "z1", {"T": "A || B"}, now_ms=30)  # new filter
    assert members.heartbeat("g", "c1", "z1", {"T": "A || B", "U": "*"}, now_ms=40)
    assert not members.heartbeat("g", "c1", "z1", {"U": "*", "T": "A || B"}, now_ms=50)
    assert members.members("g") == (
        Member("c1", "z1", (("T", "A || B"), ("U", "*")), last_heartbeat_ms=50),
    )


def test_members_are_sorted_and_subscribers_are_per_topic() -> None:
    members = GroupMembers()
    members.heartbeat("g", "c2", "z1", {"T": "*"}, now_ms=0)
    members.heartbeat("g", "c1", None, {"T": "*", "U": "*"}, now_ms=0)
    members.heartbeat("g", "c3", None, {"U": "*"}, now_ms=0)
    members.heartbeat("h", "c9", None, {"T": "*"}, now_ms=0)
    assert [m.client_id for m in members.members("g")] == ["c1", "c2", "c3"]
    assert members.subscribers("g", "T") == (Consumer("c1"), Consumer("c2", "z1"))
    assert members.subscribers("g", "V") == ()
    assert members.members("nope") == ()
    assert members.groups() == ("g", "h")


def test_members_expire_after_the_timeout_and_empty_groups_vanish() -> None:
    members = GroupMembers()
    members.heartbeat("g", "c1", None, SUBS, now_ms=1_000)
    members.heartbeat("g", "c2", None, SUBS, now_ms=1_050)
    members.heartbeat("h", "c1", None, SUBS, now_ms=1_000)
    assert members.expire(now_ms=1_099, timeout_ms=100) == {}
    assert members.expire(now_ms=1_100, timeout_ms=100) == {"g": ("c1",), "h": ("c1",)}
    assert members.groups() == ("g",)
    assert members.expire(now_ms=1_150, timeout_ms=100) == {"g": ("c2",)}
    assert members.groups() == ()


def test_a_late_heartbeat_does_not_shorten_a_members_life() -> None:
    members = GroupMembers()
    members.heartbeat("g", "c1", None, SUBS, now_ms=1_000)
    members.heartbeat("g", "c1", None, SUBS, now_ms=900)
    assert members.members("g")[0].last_heartbeat_ms == 1_000
    assert members.expire(now_ms=1_050, timeout_ms=100) == {}


def test_unregister_removes_only_members() -> None:
    members = GroupMembers()
    members.heartbeat("g", "c1", None, SUBS, now_ms=0)
    members.heartbeat("g", "c2", None, SUBS, now_ms=0)
    assert not members.unregister("g", "c3")
    assert not members.unregister("h", "c1")
    assert members.unregister("g", "c1")
    assert not members.unregister("g", "c1")
    assert [m.client_id for m in members.members("g")] == ["c2"]
    assert members.unregister("g", "c2")
    assert members.groups() == ()


def test_groups_are_bounded_but_known_groups_keep_heartbeating() -> None:
    members = GroupMembers(groups_max=2)
    members.heartbeat("g1", "c", None, SUBS, now_ms=0)
    members.heartbeat("g2", "c", None, SUBS, now_ms=0)
    with pytest.raises(Busy, match="at most 2"):
        members.heartbeat("g3", "c", None, SUBS, now_ms=0)
    members.heartbeat("g1", "d", None, SUBS, now_ms=0)
    members.unregister("g2", "c")
    assert members.heartbeat("g3", "c", None, SUBS, now_ms=0)


def test_members_per_group_are_bounded_but_members_keep_heartbeating() -> None:
    members = GroupMembers(members_per_group_max=2)
    members.heartbeat("g", "c1", None, SUBS, now_ms=0)
    members.heartbeat("g", "c2", None, SUBS, now_ms=0)
    with pytest.raises(Busy, match="'g' has 2 members"):
        members.heartbeat("g", "c3", None, SUBS, now_ms=0)
    assert not members.heartbeat("g", "c2", None, SUBS, now_ms=50)
    members.heartbeat("h", "c3", None, SUBS, now_ms=0)  # the bound is per group
    members.expire(now_ms=100, timeout_ms=60)
    assert members.heartbeat("g", "c3", None, SUBS, now_ms=100)


@pytest.mark.parametrize(
    ("group", "client_id", "zone", "subscriptions", "text"),
    [
        ("bad group", "c", None, SUBS, "group"),
        ("g", "", None, SUBS, "client_id"),
        ("g", "c" * 256, None, SUBS, "client_id"),
        ("g", 7, None, SUBS, "client_id"),
        ("g", "c", "", SUBS, "zone"),
        ("g", "c", "z" * 256, SUBS, "zone"),
        ("g", "c", None, ["T"], "subscriptions"),
        ("g", "c", None, {"T": "A || "}, "tag expression"),
        ("g", "c", None, {"T": 1}, "tag expression"),
        ("g", "c", None, {f"T{i}": "*" for i in range(SUBSCRIPTIONS_MAX + 1)}, "subscriptions"),
    ],
)
def test_bad_heartbeats_are_bad_requests_and_change_nothing(
    group: object, client_id: object, zone: object, subscriptions: object, text: str
) -> None:
    members = GroupMembers()
    with pytest.raises(BadRequest, match=text):
        members.heartbeat(group, client_id, zone, subscriptions, now_ms=0)  # type: ignore[arg-type]
    assert members.groups() == ()


def test_subscribing_to_an_invalid_topic_is_invalid_topic() -> None:
    members = GroupMembers()
    with pytest.raises(InvalidTopic, match="bad topic"):
        members.heartbeat("g", "c", None, {"T": "*", "bad topic": "*"}, now_ms=0)
    assert members.groups() == ()


def test_retry_topics_can_be_subscribed() -> None:
    members = GroupMembers()
    members.heartbeat("g", "c", None, {"%RETRY%g": "*"}, now_ms=0)
    assert members.subscribers("g", "%RETRY%g") == (Consumer("c"),)


# -- QueueLocks -----------------------------------------------------------------------------


def test_a_lease_has_one_holder_renews_for_it_and_frees_on_expiry() -> None:
    locks = QueueLocks()
    assert locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    assert not locks.try_lock("g", Q0, "c2", now_ms=50, lease_ms=100)
    assert locks.holder("g", Q0, now_ms=99) == "c1"
    assert locks.try_lock("g", Q0, "c1", now_ms=99, lease_ms=100)  # renewed to 199
    assert not locks.try_lock("g", Q0, "c2", now_ms=198, lease_ms=100)
    assert locks.holder("g", Q0, now_ms=199) is None
    assert locks.try_lock("g", Q0, "c2", now_ms=199, lease_ms=100)
    assert locks.holder("g", Q0, now_ms=200) == "c2"


def test_leases_are_per_group_and_queue_and_ignore_the_zone_label() -> None:
    locks = QueueLocks()
    assert locks.try_lock("g", Q0, "c1", now_ms=0)
    assert locks.try_lock("h", Q0, "c2", now_ms=0)
    assert locks.try_lock("g", Q1, "c2", now_ms=0)
    assert not locks.try_lock("g", MessageQueue("T", "a", 0, zone="z1"), "c2", now_ms=0)
    assert not locks.try_lock("g", MessageQueue("T", "a", 0, zone="z1"), "c2", now_ms=59_999)
    assert locks.try_lock("g", MessageQueue("T", "a", 0), "c2", now_ms=60_000)  # default lease


def test_only_the_holder_unlocks() -> None:
    locks = QueueLocks()
    locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    assert not locks.unlock("g", Q0, "c2")
    assert not locks.unlock("h", Q0, "c1")
    assert locks.holder("g", Q0, now_ms=1) == "c1"
    assert locks.unlock("g", Q0, "c1")
    assert locks.holder("g", Q0, now_ms=1) is None
    assert not locks.unlock("g", Q0, "c1")
    assert locks.try_lock("g", Q0, "c2", now_ms=1, lease_ms=100)


def test_unlock_all_frees_one_clients_leases_in_one_group() -> None:
    locks = QueueLocks()
    for queue in (QUEUES[2], Q0, Q1):
        locks.try_lock("g", queue, "c1", now_ms=0)
    locks.try_lock("g", QUEUES[3], "c2", now_ms=0)
    locks.try_lock("h", Q0, "c1", now_ms=0)
    assert locks.unlock_all("g", "c1") == (Q0, Q1, QUEUES[2])
    assert locks.unlock_all("g", "c1") == ()
    assert locks.holder("g", QUEUES[3], now_ms=0) == "c2"
    assert locks.holder("h", Q0, now_ms=0) == "c1"


def test_expire_drops_only_expired_leases() -> None:
    locks = QueueLocks()
    locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    locks.try_lock("g", Q1, "c1", now_ms=0, lease_ms=200)
    assert locks.expire(now_ms=99) == 0
    assert locks.expire(now_ms=100) == 1
    assert len(locks) == 1
    assert locks.holder("g", Q1, now_ms=100) == "c1"


@pytest.mark.parametrize("lease_ms", [0, -5, 600_001, 1.5, True])
def test_bad_lease_lengths_are_bad_requests(lease_ms: object) -> None:
    with pytest.raises(BadRequest, match="lease_ms"):
        QueueLocks().try_lock("g", Q0, "c1", now_ms=0, lease_ms=lease_ms)  # type: ignore[arg-type]


def test_the_lease_table_is_bounded_after_dropping_expired_leases() -> None:
    locks = QueueLocks(leases_max=2)
    assert locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    assert locks.try_lock("g", Q1, "c1", now_ms=0, lease_ms=200)
    with pytest.raises(Busy, match="at most 2"):
        locks.try_lock("g", QUEUES[2], "c1", now_ms=50, lease_ms=100)
    assert locks.try_lock("g", Q1, "c1", now_ms=50, lease_ms=100)  # renewing needs no room
    assert locks.try_lock("g", QUEUES[2], "c2", now_ms=100, lease_ms=100)  # Q0 expired
    assert locks.holder("g", Q0, now_ms=100) is None
    assert len(locks) == 2


lock_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("lock"),
            st.sampled_from(CLIENTS),
            st.sampled_from(QUEUES[:3]),
            st.integers(1, 100),
        ),
        st.tuples(st.just("unlock"), st.sampled_from(CLIENTS), st.sampled_from(QUEUES[:3])),
        st.tuples(st.just("unlock_all"), st.sampled_from(CLIENTS)),
        st.tuples(st.just("advance"), st.integers(0, 60)),
        st.tuples(st.just("expire")),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=lock_ops)
def test_no_queue_is_ever_held_by_two_clients(ops: list[tuple]) -> None:
    """Each client believes it holds a queue from a granted lock until its own lease runs
    out or it unlocks; two believers of one queue would consume it at the same time."""
    locks = QueueLocks(leases_max=8)
    believed: dict[tuple[str, MessageQueue], int] = {}  # (client, queue) -> expires_at_ms
    now = 0
    for op in ops:
        match op:
            case ("lock", client, queue, lease_ms):
                free = all(
                    c == client or now >= until for (c, q), until in believed.items() if q == queue
                )
                granted = locks.try_lock("g", queue, client, now, lease_ms)
                assert granted == free, (op, believed, now)
                if granted:
                    believed[client, queue] = now + lease_ms
            case ("unlock", client, queue):
                locks.unlock("g", queue, client)
                believed.pop((client, queue), None)
            case ("unlock_all", client):
                locks.unlock_all("g", client)
                believed = {k: v for k, v in believed.items() if k[0] != client}
            case ("advance", ms):
                now += ms
            case ("expire",):
                locks.expire(now)
        for queue in QUEUES[:3]:
            holders = [c for (c, q), until in believed.items() if q == queue and now < until]
            assert len(holders) <= 1, (queue, holders)
            assert locks.holder("g", queue, now) == (holders[0] if holders else None)


# -- handover -------------------------------------------------------------------------------


def test_a_new_owner_waits_until_the_old_one_unlocks() -> None:
    locks = QueueLocks()
    locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    allocation = {"c1": (Q1,), "c2": (Q0,)}
    assert handover(allocation, locks, "g", now_ms=10) == Handover(
        ready={"c1": (Q1,), "c2": ()}, blocked={Q0: "c1"}
    )
    locks.unlock("g", Q0, "c1")
    assert handover(allocation, locks, "g", now_ms=10).ready == {"c1": (Q1,), "c2": (Q0,)}


def test_a_new_owner_waits_until_the_old_lease_expires() -> None:
    locks = QueueLocks()
    locks.try_lock("g", Q0, "c1", now_ms=0, lease_ms=100)
    locks.try_lock("g", Q1, "c2", now_ms=0, lease_ms=100)
    allocation = {"c2": (Q1, Q0)}
    assert handover(allocation, locks, "g", now_ms=99).ready == {"c2": (Q1,)}
    plan = handover(allocation, locks, "g", now_ms=100)
    assert plan.ready == {"c2": (Q0, Q1)}  # sorted, and its own lease does not block it
    assert plan.blocked == {}


def test_handover_is_per_group() -> None:
    locks = QueueLocks()
    locks.try_lock("other", Q0, "c1", now_ms=0)
    assert handover({"c2": (Q0,)}, locks, "g", now_ms=0).ready == {"c2": (Q0,)}


sim_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("rebalance"),
            st.sets(st.sampled_from(CLIENTS)),
            st.sampled_from(STRATEGIES),
            st.booleans(),  # do the old owners release what they lost at once?
        ),
        st.tuples(st.just("renew"), st.sampled_from(CLIENTS)),
        st.tuples(st.just("leave"), st.sampled_from(CLIENTS)),
        st.tuples(st.just("advance"), st.integers(0, 150)),
    ),
    max_size=40,
)


class GroupSim:
    """Members of one group consuming queues by the orderly protocol, on a fake clock.

    A member consumes a queue from a granted lock until its own lease runs out or it
    releases the queue; it never learns about other members' leases except through the
    broker's `handover` and `try_lock` answers.
    """

    LEASE_MS = 100

    def __init__(self) -> None:
        self.locks = QueueLocks()
        self.consuming: dict[str, dict[MessageQueue, int]] = {c: {} for c in CLIENTS}
        self.now = 0

    def rebalance(self, alive: set[str], strategy: str, release: bool) -> None:
        consumers = [Consumer(c, zone=f"z{int(c[1]) % 2}") for c in sorted(alive)]
        allocation = allocate(consumers, QUEUES, strategy)
        if release:  # members that are not alive (crashed) never release anything
            for client, queues in allocation.items():
                for queue in [q for q in self.consuming[client] if q not in queues]:
                    assert self.locks.unlock("g", queue, client) or self.expired(client, queue)
                    del self.consuming[client][queue]
        plan = handover(allocation, self.locks, "g", self.now)
        owner = {q: c for c, queues in allocation.items() for q in queues}
        for queue, holder in plan.blocked.items():
            assert holder != owner[queue]
            assert self.locks.holder("g", queue, self.now) == holder
        for client, queues in plan.ready.items():
            for queue in queues:
                assert self.locks.try_lock("g", queue, client, self.now, self.LEASE_MS)
                self.consuming[client][queue] = self.now + self.LEASE_MS

    def renew(self, client: str) -> None:
        """A member whose lease has not run out can always renew it."""
        for queue in list(self.consuming[client]):
            if self.expired(client, queue):
                del self.consuming[client][queue]  # lost it: stop consuming
            else:
                assert self.locks.try_lock("g", queue, client, self.now, self.LEASE_MS)
                self.consuming[client][queue] = self.now + self.LEASE_MS

    def leave(self, client: str) -> None:
        self.locks.unlock_all("g", client)
        self.consuming[client] = {}

    def expired(self, client: str, queue: MessageQueue) -> bool:
        return self.now >= self.consuming[client][queue]

    def check(self) -> None:
        for queue in QUEUES:
            active = [c for c in CLIENTS if self.now < self.consuming[c].get(queue, -1)]
            assert len(active) <= 1, (queue, active, self.now)


@settings(max_examples=200, deadline=None)
@given(ops=sim_ops)
def test_a_queue_is_never_consumed_by_two_members_across_rebalances(ops: list[tuple]) -> None:
    """Members come and go, rebalances use any strategy, old owners release what they lost
    at once or only when their lease runs out (slow or crashed); every new owner locks what
    `handover` says is ready. Invariant: at most one member consumes each queue."""
    sim = GroupSim()
    for op in ops:
        match op:
            case ("rebalance", alive, strategy, release):
                sim.rebalance(alive, strategy, release)
            case ("renew", client):
                sim.renew(client)
            case ("leave", client):
                sim.leave(client)
            case ("advance", ms):
                sim.now += ms
        sim.check()
