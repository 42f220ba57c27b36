"""Orderly queue locks across writer changes: the grace rules never let two consumers hold
one queue at overlapping times.

Method: a model of consumers that claim honestly (only queues whose lease they still
consider valid, LEASE_SAFETY of it, counted from the heartbeat), writers whose lease tables
live in memory and are lost at a failover, and a deposed writer that still answers
heartbeats for a while (`STALE_MS`, below the quarter of a lease the consumers keep in
reserve). Hypothesis drives heartbeats, releases, failovers and time; after every grant no
queue may be validly held by two consumers. A hand-written case shows the hazard the grace
period removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from dledgermq.broker.lock_grace import WriterEpoch, grant_orderly, stale_writer_ms
from dledgermq.broker.membership import QueueLocks
from dledgermq.broker.rebalance import MessageQueue

LEASE_MS = 100
SAFETY = 0.75
STALE_MS = 20  # < (1 - SAFETY) * LEASE_MS: the configuration guarantees it.
QUEUES = tuple(MessageQueue("T", "b", q) for q in range(2))
CLIENTS = ("A", "B", "C")


@dataclass
class Writer:
    epoch: WriterEpoch
    locks: QueueLocks = field(default_factory=QueueLocks)


@dataclass
class World:
    grace_ms: int
    stale_ms: int = STALE_MS
    now: int = 0
    writers: list[Writer] = field(default_factory=list)
    deposed_until: int = -1  # The previous writer still answers until then.
    valid_until: dict[tuple[str, MessageQueue], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The first writer's grace is over when the run starts, so runs reach hand-overs.
        self.writers.append(Writer(WriterEpoch(0, -self.grace_ms, self.grace_ms)))

    def failover(self) -> None:
        self.deposed_until = self.now + self.stale_ms
        self.writers.append(Writer(WriterEpoch(len(self.writers), self.now, self.grace_ms)))

    def holds(self, client: str, queue: MessageQueue) -> bool:
        return self.now < self.valid_until.get((client, queue), -1)

    def beat(self, client: str, allocated: tuple[int, ...], *, to_deposed: bool) -> None:
        old = to_deposed and len(self.writers) > 1 and self.now < self.deposed_until
        writer = self.writers[-2] if old else self.writers[-1]
        granted = grant_orderly(
            writer.locks,
            "g",
            client,
            allocated=[QUEUES[q] for q in allocated],
            held=[q for q in QUEUES if self.holds(client, q)],
            readable=QUEUES,
            epoch=writer.epoch,
            now_ms=self.now,
            lease_ms=LEASE_MS,
        )
        for queue in granted:
            self.valid_until[client, queue] = self.now + int(LEASE_MS * SAFETY)
        for queue in QUEUES:
            holders = [c for c in CLIENTS if self.holds(c, queue)]
            assert len(holders) <= 1, (queue, holders, self.now)

    def release(self, client: str) -> None:
        for queue in QUEUES:
            if self.holds(client, queue):
                del self.valid_until[client, queue]  # Stopped first, then released.
                self.writers[-1].locks.unlock("g", queue, client)


actions = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from([1, 5, 20, 25, 50, 75, 100])),
    st.tuples(
        st.just("beat"),
        st.sampled_from(CLIENTS),
        st.lists(st.integers(0, len(QUEUES) - 1), max_size=2, unique=True).map(tuple),
        st.booleans(),
    ),
    st.tuples(st.just("release"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("failover")),
)


def run(world: World, steps: list[tuple]) -> None:
    for step in steps:
        match step:
            case ("advance", dt):
                world.now += dt
            case ("beat", client, allocated, to_deposed):
                world.beat(client, allocated, to_deposed=to_deposed)
            case ("release", client):
                world.release(client)
            case ("failover",):
                world.failover()


@settings(max_examples=1000, deadline=None)
@given(st.lists(actions, max_size=40))
def test_no_queue_is_held_by_two_consumers_across_failovers(steps: list[tuple]) -> None:
    run(World(grace_ms=LEASE_MS + STALE_MS), steps)


def test_without_the_grace_a_new_writer_hands_a_held_queue_to_another_consumer() -> None:
    world = World(grace_ms=0)
    run(world, [("advance", 1), ("beat", "A", (0,), False), ("failover",), ("advance", 1)])
    try:
        world.beat("B", (0,), to_deposed=False)
    except AssertionError:
        return
    raise AssertionError("the hazard should show without a grace period")


def test_in_the_grace_the_holder_keeps_its_queue_and_others_wait_for_its_end() -> None:
    world = World(grace_ms=LEASE_MS + STALE_MS)
    run(world, [("beat", "A", (0,), False), ("failover",), ("advance", 1)])
    world.beat("B", (0, 1), to_deposed=False)  # Allocated both, claims none: waits.
    assert not world.holds("B", QUEUES[0])
    assert not world.holds("B", QUEUES[1])
    world.beat("A", (), to_deposed=False)  # Claims queue 0: first claim wins.
    assert world.holds("A", QUEUES[0])
    world.now += LEASE_MS + STALE_MS  # The grace is over: allocation rules again.
    world.beat("B", (1,), to_deposed=False)
    assert world.holds("B", QUEUES[1])


def test_a_raft_group_waits_two_election_timeouts_plus_slack() -> None:
    assert stale_writer_ms(800) == 2 * 800 + 1_000
    assert stale_writer_ms(None) == 1_000
    epoch = WriterEpoch(3, 1_000, 500)
    assert epoch.in_grace(1_499)
    assert not epoch.in_grace(1_500)
    assert epoch.grace_left_ms(1_200) == 300
    assert epoch.grace_left_ms(9_999) == 0


DEPOSED_WRITER_HANDS_OVER = [
    ("beat", "B", (0,), False),  # B holds queue 0 under the first writer.
    ("advance", 50),
    ("failover",),
    ("beat", "B", (), False),  # B claims it at the new writer: granted in the grace.
    ("advance", 51),  # B's lease at the deposed writer has ended...
    ("beat", "A", (0,), True),  # ...which, still answering, gives queue 0 to A.
]


def test_a_deposed_writer_cannot_hand_a_claimed_queue_over_within_the_reserve() -> None:
    world = World(grace_ms=LEASE_MS + STALE_MS)
    run(world, DEPOSED_WRITER_HANDS_OVER)  # The deposed writer stopped answering in time.
    assert world.holds("B", QUEUES[0])
    assert not world.holds("A", QUEUES[0])


def test_a_deposed_writer_acting_longer_than_the_reserve_breaks_the_lock() -> None:
    """Why config.py requires the lease's reserve (1 - LEASE_SAFETY) to exceed two
    election timeouts: a writer deposed for longer could hand over a claimed queue."""
    stale_ms = 60  # > (1 - SAFETY) * LEASE_MS
    world = World(grace_ms=LEASE_MS + stale_ms, stale_ms=stale_ms)
    try:
        run(world, DEPOSED_WRITER_HANDS_OVER)
    except AssertionError:
        return
    raise AssertionError("a writer deposed beyond the reserve should break the lock")
