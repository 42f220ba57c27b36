"""One storage simulation run per seed: the Raft workload (workload.py) over the real store.

Goal: find in seconds, by seed, what only a slow chaos run found before: bugs between the
Raft core and the files (layout, writer, recovery, torn writes, power loss, the
`majority_memory` mode). Method: the seed draws the same cluster as the plain simulation
plus the store's options (storage.py: durability, segment size, flush interval, how much
of the log the core keeps in memory); the safety phase adds power losses (often of a
majority: in `majority_memory` that loses committed entries, the case a node must stop
on with `CommittedEntryConflict` and rejoin without its log); the liveness phase is the
plain one, then every CommitLog must hold the same bytes below its confirm offset.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import files
from .harness import SimCluster
from .storage import StorageOptions
from .storage_cluster import StorageCluster
from .workload import Liveness, draw_config, liveness_phase, safety_phase

POWER_LOSS_RATE = 0.01  # per tick of the safety phase


@dataclass
class StorageRunResult:
    seed: int
    durability: str
    ticks: int
    trace_hash: str
    committed: int
    acked: int
    lost_acks: int
    rejoined_without_log: int
    liveness: Liveness


def draw_storage(seed: int) -> StorageOptions:
    rng = random.Random(seed ^ 0x5701A9E)
    return StorageOptions(
        durability=rng.choice(("majority_fsync", "majority_memory")),
        segment_size=rng.choice((1024, 4096, 65536)),
        flush_every_ticks=rng.choice((3, 10, 40)),
        compact_keep=rng.choice((None, 2, 16)),
    )


class PowerLosses:
    """The safety phase's extra fault: now and then a group of nodes loses power at once
    and reboots within an election timeout. Of these: 40% hit a minority, 30% a majority
    (maybe all), and 30% a majority while the nodes that kept power are cut off from
    them for 3-6 election timeouts (a rack and its switch).

    That last case is the one 002bd71 is about: in `majority_memory` the nodes that lost
    committed entries elect a leader among themselves and overwrite them, while a node
    that kept power still holds them committed in memory. When the cut heals, that node
    must stop on `CommittedEntryConflict` (and rejoin without its log); before the fix it
    appended after them and stopped on a layout mismatch forever.
    """

    def __init__(self) -> None:
        self._back: dict[int, int] = {}  # node -> tick its power comes back
        self._cut: tuple[list[int], list[int], int] | None = None  # groups, until tick

    def __call__(self, cluster: SimCluster, rng: random.Random) -> None:
        assert isinstance(cluster, StorageCluster)
        self._power_back(cluster)
        self._keep_cut(cluster)
        if rng.random() >= POWER_LOSS_RATE:
            return
        ids = list(cluster.ids)
        rng.shuffle(ids)
        majority = len(ids) // 2 + 1
        roll = rng.random()
        if roll < 0.4:
            lost = ids[: rng.randint(1, majority - 1)]
        elif roll < 0.7:
            lost = ids[: rng.randint(majority, len(ids))]
        else:
            lost = ids[: rng.randint(majority, len(ids) - 1)]
            timeout = cluster.raft.election_timeout_ticks
            until = cluster.now + rng.randint(3 * timeout, 6 * timeout)
            self._cut = (sorted(lost), sorted(ids[len(lost) :]), until)
            self._keep_cut(cluster)
        cluster.power_loss(sorted(lost))
        for node_id in lost:
            self._back[node_id] = cluster.now + rng.randint(1, cluster.raft.election_timeout_ticks)

    def _power_back(self, cluster: StorageCluster) -> None:
        for node_id, at in list(self._back.items()):
            if at <= cluster.now:
                del self._back[node_id]
                if not cluster.nodes[node_id].alive:
                    cluster.restart(node_id)

    def _keep_cut(self, cluster: StorageCluster) -> None:
        """Re-apply the cut each tick until it ends (other faults may have healed it)."""
        if self._cut is None:
            return
        lost, kept, until = self._cut
        if cluster.now >= until:
            self._cut = None
        elif any(not cluster.network.is_blocked(a, b) for a in lost for b in kept):
            cluster.partition(lost, kept)


def run_storage_seed(seed: int) -> StorageRunResult:
    """Run one seed end to end; raises SafetyViolation, LivenessFailure or NodeStopped."""
    drawn = draw_config(seed)
    storage = draw_storage(seed)
    with files.scratch_root() as root, files.sync_journal() as journal:
        cluster = StorageCluster(
            drawn.n,
            seed,
            root=root,
            journal=journal,
            storage=storage,
            raft=drawn.raft,
            net=drawn.net,
            disk=drawn.disk,
        )
        rng = random.Random(seed ^ 0xFA017)
        try:
            safety_phase(cluster, rng, PowerLosses())
            liveness = liveness_phase(cluster)
            cluster.check_committed_bytes()
        except AssertionError as error:
            error.add_note(f"durability={storage.durability} {storage}\n" + cluster.describe())
            raise
        finally:
            for node_id in cluster.ids:
                if cluster.nodes[node_id].alive:
                    cluster.disk(node_id).crash(torn=False)  # closes its files
        return StorageRunResult(
            seed,
            storage.durability,
            cluster.now,
            cluster.trace_hash(),
            len(cluster.checker.committed),
            len(cluster.checker.acked),
            cluster.checker.lost_acks,
            cluster.rejoined_without_log,
            liveness,
        )
