"""Fault schedules: what to break, when, for how long; seeded, bounded, recorded.

A scenario is a function `(rng, duration_s) -> list[Step]`; a `Step` says when (seconds
from the start of the workload) to run which fault for how long. Targets are resolved when
the step runs ("leader" is whoever leads then). `run_schedule` executes the steps in order
on its own thread, records a `Fault` start/end pair around each, and always ends the fault
it started (restart, resume, heal) before the next step. The last step ends before the
duration; the runner then heals everything anyway.

Faults: kill (SIGKILL, restart after the window), pause (SIGSTOP/SIGCONT), power loss
(SIGKILL + drop every unsynced CommitLog byte, on one node or all), partitions through the
proxies (isolate a node, majority/minority, ring, flapping), and pause-kill (pause a
minority so it misses writes, power-loss a majority member, resume, restart), and a full
disk on the leader (proposals refused) or on a follower (its writes wait for space).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.control import ChaosCluster
from chaos.history import Fault, Recorder
from chaos.proxy import partition
from dledgermq.store.checkpoint import load_checkpoint

KINDS = (
    "kill-leader",
    "kill-random",
    "pause-leader",
    "pause-minority",
    "partition-leader",
    "partition-minority",
    "partition-ring",
    "partition-flapping",
    "power-loss-leader",
    "power-loss-all",
    "pause-kill",
    "disk-full-leader",
    "disk-full-follower",
    "bitflip",
    "bitflip-restart",
    "truncate-restart",
)


# A master/slave pair: no Raft repair (bit flips, cut files) and no third node (ring,
# pause-kill); "leader" is the master.
MASTER_SLAVE_KINDS = tuple(
    k
    for k in KINDS
    if k not in ("bitflip", "bitflip-restart", "truncate-restart", "partition-ring", "pause-kill")
)


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    kind: str
    hold_s: float


def _steps(rng: random.Random, duration_s: float, kinds: list[str]) -> list[Step]:
    """Steps of the given kinds one after another, spread over the duration."""
    steps: list[Step] = []
    slot = duration_s / max(1, len(kinds))
    for i, kind in enumerate(kinds):
        start = i * slot + rng.uniform(1.0, max(1.5, slot * 0.3))
        hold = rng.uniform(1.5, max(2.0, slot * 0.4))
        steps.append(Step(round(start, 2), kind, round(hold, 2)))
    return steps


def scenario(name: str, *, raft: bool = True) -> Callable[[random.Random, float], list[Step]]:
    """`smoke`, `mixed`, or one fault kind repeated (e.g. `kill-leader`); a master/slave
    pair takes only `MASTER_SLAVE_KINDS` (its smoke has no Raft repair)."""
    kinds = KINDS if raft else MASTER_SLAVE_KINDS
    if name == "smoke":
        smoke = ["kill-leader", "partition-leader", "kill-leader", "power-loss-leader"]
        if raft:
            smoke += ["bitflip-restart", "truncate-restart"]
        return lambda rng, d: _steps(rng, d, smoke)
    if name == "mixed":
        return lambda rng, d: _steps(
            rng, d, [rng.choice(kinds) for _ in range(max(1, int(d // 8)))]
        )
    if name in kinds:
        return lambda rng, d: _steps(rng, d, [name] * max(1, int(d // 8)))
    raise ValueError(f"unknown scenario {name!r}; known: smoke, mixed, {', '.join(kinds)}")


class Nemesis(threading.Thread):
    def __init__(
        self,
        cluster: ChaosCluster,
        recorder: Recorder,
        steps: list[Step],
        rng: random.Random,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="nemesis", daemon=True)
        self._cluster = cluster
        self._recorder = recorder
        self._steps = steps
        self._rng = rng
        self._halt = stop
        self.error: BaseException | None = None
        self.done: list[str] = []
        self.flips: list[str] = []  # node@offset of every flipped bit
        self.cuts: list[str] = []  # node@offset where a CommitLog file was cut short

    def run(self) -> None:
        started = _now()
        try:
            for step in self._steps:
                if self._halt.wait(max(0.0, started + step.at_s - _now())):
                    return
                self._run_step(step)
        except BaseException as exc:  # surfaced by the runner
            self.error = exc

    def _run_step(self, step: Step) -> None:
        cluster = self._cluster
        leader = cluster.leader() or self._rng.choice(cluster.node_ids)
        others = [n for n in cluster.node_ids if n != leader]
        target = self._rng.choice(cluster.node_ids) if step.kind == "kill-random" else leader
        self._recorder.record(Fault(fault=step.kind, target=target, phase="start"))
        self.done.append(f"{step.kind} {target}")
        fault = getattr(self, "_" + step.kind.replace("-", "_"))
        fault(step, target, others)
        self._recorder.record(Fault(fault=step.kind, target=target, phase="end"))

    # One method per fault kind: (step, target, the other nodes); each ends what it began.

    def _kill_leader(self, step: Step, target: str, others: list[str]) -> None:
        self._cluster.kill(target)
        self._hold(step)
        self._cluster.restart(target)

    _kill_random = _kill_leader

    def _pause_leader(self, step: Step, target: str, others: list[str]) -> None:
        self._cluster.pause(target)
        self._hold(step)
        self._cluster.resume(target)

    def _pause_minority(self, step: Step, target: str, others: list[str]) -> None:
        self._pause_leader(step, self._rng.choice(others), [])

    def _partition_leader(self, step: Step, target: str, others: list[str]) -> None:
        self._partitioned(step, partition([target], others))

    def _partition_minority(self, step: Step, target: str, others: list[str]) -> None:
        self._partitioned(step, partition([others[0]], [target, *others[1:]]))

    def _partition_ring(self, step: Step, target: str, others: list[str]) -> None:
        first, *_, last = self._cluster.node_ids  # each node still reaches a neighbour
        self._partitioned(step, partition([first], [last]))

    def _partition_flapping(self, step: Step, target: str, others: list[str]) -> None:
        nodes, ends = self._cluster.node_ids, _now() + step.hold_s
        while _now() < ends and not self._halt.is_set():
            side = self._rng.choice(nodes)
            self._cluster.cut(partition([side], [n for n in nodes if n != side]))
            self._halt.wait(self._rng.uniform(0.2, 0.8))
            self._cluster.cut(())
            self._halt.wait(self._rng.uniform(0.2, 0.8))

    def _power_loss_leader(self, step: Step, target: str, others: list[str]) -> None:
        self._cluster.power_loss(target)
        self._hold(step)
        self._cluster.restart(target)

    def _power_loss_all(self, step: Step, target: str, others: list[str]) -> None:
        for node in self._cluster.node_ids:
            self._cluster.power_loss(node)
        self._hold(step)
        for node in self._cluster.node_ids:
            self._cluster.restart(node)

    def _pause_kill(self, step: Step, target: str, others: list[str]) -> None:
        """A paused minority misses writes; a majority member then loses power."""
        victim = others[0]
        self._cluster.pause(victim)
        self._hold(step)
        self._cluster.power_loss(target)
        self._cluster.resume(victim)
        self._halt.wait(0.5)
        self._cluster.restart(target)

    def _disk_full_leader(self, step: Step, target: str, others: list[str]) -> None:
        """The leader refuses proposals (DISK_FULL) until space returns; nothing lost."""
        self._cluster.fill_disk(target, full=True)
        self._hold(step)
        self._cluster.fill_disk(target, full=False)

    def _disk_full_follower(self, step: Step, target: str, others: list[str]) -> None:
        """A follower holds its writes; the leader and the other follower go on."""
        self._disk_full_leader(step, others[0], [])

    def _bitflip(self, step: Step, target: str, others: list[str]) -> None:
        """A bit flips under a running node, in data it committed: found by a read or the
        scrubber, repaired from a peer, never served."""
        node = self._rng.choice([target, *others])
        status = self._cluster.statuses().get(node)
        if status:
            self._note(node, self._cluster.flip_bit(node, status["dispatched_offset"], self._rng))
        self._hold(step)

    def _bitflip_restart(self, step: Step, target: str, others: list[str]) -> None:
        """A follower dies and comes back with a flipped bit below its checkpoint: it must
        repair the record from a peer before it starts."""
        node = self._rng.choice(others)
        self._cluster.kill(node)
        checkpoint = load_checkpoint(self._cluster.config.node_dir(node) / "checkpoint")
        if checkpoint is not None:
            below = checkpoint.dispatched_offset
            self._note(node, self._cluster.flip_bit(node, below, self._rng))
        self._hold(step)
        self._cluster.restart(node)

    def _truncate_restart(self, step: Step, target: str, others: list[str]) -> None:
        """A follower dies and comes back with a CommitLog file cut short below its
        checkpoint: it must refill it from peers' copies before it starts."""
        node = self._rng.choice(others)
        self._cluster.kill(node)
        checkpoint = load_checkpoint(self._cluster.config.node_dir(node) / "checkpoint")
        if checkpoint is not None:
            offset = self._cluster.cut_short(node, checkpoint.dispatched_offset, self._rng)
            if offset is not None:
                self.cuts.append(f"{node}@{offset}")
        self._hold(step)
        self._cluster.restart(node)

    def _note(self, node: str, offset: int | None) -> None:
        if offset is not None:
            self.flips.append(f"{node}@{offset}")

    def _partitioned(self, step: Step, links: set[tuple[str, str]]) -> None:
        self._cluster.cut(links)
        self._hold(step)
        self._cluster.cut(())

    def _hold(self, step: Step) -> None:
        self._halt.wait(step.hold_s)


def _now() -> float:
    return time.monotonic()
