"""One chaos run: cluster up, workload + nemesis, heal, drain every node, check, report.

    python -m chaos run --scenario smoke --duration 40 --seed 1

Steps: start a fresh three-node Raft cluster (or, with `--mode master-slave-sync|async`, a
master and its slave) in a temporary directory (`control.py`),
create the topics, run writers (Python client and raw HTTP, a plain and an ordered topic),
a consumer group and the hostile writer (`hostile.py`, off with `--no-hostile`) while the
nemesis follows the seeded schedule, and watch for node processes that exit although the
nemesis did not kill them (`ChaosCluster.reap`); then stop the workload, heal every fault
(links, paused and dead nodes), wait until the group has a leader and every node agrees
on commit index and dispatched offset, drain every queue from every node, and check the
history (`checker.py`). A run whose nodes do not converge (e.g. they keep dying of a
poisoned record) is reported, not raised: `not_converged`, a drain of the nodes that
answer, and the checker's verdict. Prints a summary table and one JSON line; the exit code
is 0 only if the checker found nothing. The history (JSONL), the cluster file, the node
logs and a timeline picture (`plot.py`) are kept in `--out`.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import tempfile
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any

from chaos import checker
from chaos.control import ChaosCluster
from chaos.history import Recorder
from chaos.hostile import (
    HOSTILE_QUEUES,
    HOSTILE_TOPIC,
    READONLY_TOPIC,
    HostileOptions,
    HostileWriter,
)
from chaos.nemesis import Nemesis, scenario
from chaos.plot import plot
from chaos.workload import (
    ORDERED,
    PLAIN,
    QUEUES,
    TOPICS,
    BatchingWriter,
    ClientWriter,
    Consumer,
    HttpWriter,
    _http,
    drain,
)

CONVERGE_TIMEOUT_S = 60.0
WORKER_JOIN_S = 30.0
REAP_INTERVAL_S = 0.25
PERM_READ_ONLY = 4


def run(  # noqa: PLR0913 - the command line's options, all keyword-only
    scenario_name: str,
    *,
    duration_s: float,
    seed: int,
    out: Path | None = None,
    durability: str = "majority_fsync",
    mode: str = "raft",
    hostile: HostileOptions | None = None,
) -> dict[str, Any]:
    """Run one scenario; returns the summary (also printed by `__main__`). `hostile`
    None runs without the hostile writer."""
    rng = random.Random(seed)
    steps = scenario(scenario_name, raft=mode == "raft")(rng, duration_s)
    with tempfile.TemporaryDirectory(prefix="dledgermq-chaos-") as tmp:
        recorder = Recorder()
        cluster = ChaosCluster(Path(tmp), mode=mode, durability=durability, recorder=recorder)
        started = time.monotonic()
        try:
            cluster.start()
            leader = cluster.wait_for_leader(timeout_s=30)
            _create_topics(cluster.addrs[leader], hostile=hostile is not None)
            summary = _workload(cluster, recorder, steps, rng, duration_s, hostile)
            cluster.heal_all()
            summary["rejoined_without_log"] = []
            summary["not_converged"] = None
            try:
                summary["rejoined_without_log"] = _wait_converged(
                    cluster, rejoin_after_loss=loss_allowed(mode, durability)
                )
            except TimeoutError as exc:  # e.g. nodes that die of a record they replay
                summary["not_converged"] = str(exc)[:2000]
            summary["drain_errors"] = _drain_all(cluster, recorder)
            converged = summary["not_converged"] is None
            repairs = _scrubbed(cluster) if cluster.raft and converged else {}
            summary["write_disabled"] = _write_disabled(cluster)
            cluster.reap()  # The last exits (e.g. during the drain) before stop() ends all.
        finally:
            cluster.stop()
            if out is not None:
                _keep(Path(tmp), out, recorder)
        report = checker.check(
            recorder.snapshot(),
            nodes=cluster.node_ids,
            expect_lost_ok=loss_allowed(mode, durability),
        )
    unrepaired = sorted(n for n, r in repairs.items() if r is None or r["outstanding"])
    summary.update(
        repairs=repairs,
        unrepaired=unrepaired,
        scenario=scenario_name,
        seed=seed,
        mode=mode,
        durability=durability if cluster.raft else None,
        seconds=round(time.monotonic() - started, 1),
        ok=report.ok
        and not unrepaired
        and summary["not_converged"] is None
        and not summary["write_disabled"],
        report=report.to_json(),
    )
    summary["table"] = report.table()
    return summary


def loss_allowed(mode: str, durability: str) -> bool:
    """Whether the mode promises less than "no acknowledged message is lost" for these
    faults (DESIGN.md §2): Raft with majority_memory (a power loss of a majority) and
    async master/slave (a dead master's unreplicated tail). Such losses are reported as
    `lost_allowed`, measured but not failures."""
    if mode == "raft":
        return durability != "majority_fsync"
    return mode == "master-slave-async"


def _create_topics(addr: str, *, hostile: bool) -> None:
    """The honest topics; with the hostile writer its own topic and a read-only one (the
    target of its permission bypass attempts)."""
    configs: list[dict[str, Any]] = [{"topic": topic, "queues": QUEUES} for topic in TOPICS]
    if hostile:
        configs.append({"topic": HOSTILE_TOPIC, "queues": HOSTILE_QUEUES})
        configs.append({"topic": READONLY_TOPIC, "queues": 1, "perm": PERM_READ_ONLY})
    for config in configs:
        _create_topic(addr, config)


def _create_topic(addr: str, config: dict[str, Any], timeout_s: float = 30.0) -> None:
    """Create one topic; a sync master answers 503 SLAVE_NOT_AVAILABLE until its slave has
    connected (slow on a loaded machine), so a 503 is retried until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _http("POST", f"http://{addr}/topics", config)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # An earlier attempt created it; its answer was lost.
                return
            if exc.code != 503 or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)  # Polling another process; nothing to await on.


def _drain_all(cluster: ChaosCluster, recorder: Recorder) -> dict[str, str]:
    """Drain every node; a node that cannot be drained (down, or dying) is listed with its
    error and stays `nodes_not_drained` for the checker."""
    errors = {}
    for node, addr in cluster.addrs.items():
        try:
            drain(recorder, node, addr)
        except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
            errors[node] = repr(exc)[:500]
    return errors


def _write_disabled(cluster: ChaosCluster) -> list[str]:
    """Nodes that report the group write-disabled at the end: nobody honest disabled it,
    so a hostile message did (the probe's D4, state injection through %SYS%BROKER)."""
    return sorted(
        node
        for node, status in cluster.statuses().items()
        if status is not None and status.get("writable") is False
    )


def _watch_stops(cluster: ChaosCluster, stop: threading.Event, rounds: int) -> None:
    """Find node exits the nemesis did not cause while the workload runs (until the stop
    event, at most `rounds` times; the runner reaps once more at the end)."""
    for _ in range(rounds):
        if stop.wait(REAP_INTERVAL_S):
            return
        cluster.reap()


def _workload(
    cluster: ChaosCluster,
    recorder: Recorder,
    steps: list[Any],
    rng: random.Random,
    duration_s: float,
    hostile: HostileOptions | None,
) -> dict[str, Any]:
    stop = threading.Event()
    addrs = list(cluster.addrs.values())
    workers: list[Any] = [
        ClientWriter("c1", recorder, stop, cluster.namesrv, PLAIN),
        ClientWriter("c2", recorder, stop, cluster.namesrv, ORDERED),
        BatchingWriter("b1", recorder, stop, cluster.namesrv),
        HttpWriter("h1", recorder, stop, addrs, PLAIN),
        HttpWriter("h2", recorder, stop, addrs, ORDERED),
        Consumer("g1", recorder, stop, cluster.namesrv),
    ]
    if hostile is not None:
        workers.append(HostileWriter("x1", recorder, stop, dict(cluster.addrs), hostile))
    nemesis = Nemesis(cluster, recorder, steps, rng, stop)
    rounds = int((duration_s + 2 * WORKER_JOIN_S + 120) / REAP_INTERVAL_S)
    watcher = threading.Thread(target=_watch_stops, args=(cluster, stop, rounds), daemon=True)
    for worker in workers:
        worker.start()
    nemesis.start()
    watcher.start()
    nemesis.join(timeout=duration_s + 120)
    stop.wait(max(0.0, 1.0))  # A last second of calm traffic after the final fault.
    stop.set()
    for worker in workers:
        worker.join(timeout=WORKER_JOIN_S)
    watcher.join(timeout=WORKER_JOIN_S)
    errors = [f"{w.name}: {w.error!r}" for w in (*workers, nemesis) if w.error is not None]
    if errors:
        raise RuntimeError(f"the chaos harness failed: {errors}")
    return {"faults": nemesis.done, "flips": nemesis.flips, "cuts": nemesis.cuts}


def _wait_converged(cluster: ChaosCluster, *, rejoin_after_loss: bool) -> list[str]:
    """Wait until every node agrees. Where the mode may lose committed entries, a node
    that stopped on `CommittedEntryConflict` is brought back the documented way (once);
    returns those nodes (a failure in any other mode: it must never happen there)."""
    cluster.wait_for_leader(timeout_s=CONVERGE_TIMEOUT_S)
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    rejoined: list[str] = []
    while not cluster.converged():
        cluster.reap()
        if rejoin_after_loss:
            for node in cluster.stopped_on_lost_commits():
                if node not in rejoined:
                    cluster.rejoin_without_log(node)
                    rejoined.append(node)
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes did not converge: {cluster.statuses()}")
        time.sleep(0.1)  # Polling other processes; nothing to await on.
    return rejoined


def _scrubbed(cluster: ChaosCluster) -> dict[str, Any]:
    """Every node's repair report once each scrubbed its whole log again after the drain
    (what the drain does not read, e.g. internal records, is then verified too) and has no
    repair outstanding; bounded, so a node that cannot repair shows up as `unrepaired`."""

    def reports() -> dict[str, Any]:
        return {node: (s or {}).get("repair") for node, s in cluster.statuses().items()}

    start = reports()
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        now = reports()
        if all(
            r is not None
            and start[n] is not None
            and r["scrub_passes"] >= start[n]["scrub_passes"] + 2
            and not r["outstanding"]
            for n, r in now.items()
        ):
            return now
        time.sleep(0.2)  # Polling other processes; nothing to await on.
    return reports()


def _keep(tmp: Path, out: Path, recorder: Recorder) -> None:
    out.mkdir(parents=True, exist_ok=True)
    history = recorder.snapshot()
    history.dump(out / "history.jsonl")
    if not plot(history, out / "timeline.png", title=out.name):
        print("no timeline.png: matplotlib is not installed (pip install '.[bench]')")
    shutil.copy(tmp / "cluster.yml", out / "cluster.yml")
    run_dir = tmp / "data" / "run"
    if run_dir.exists():
        for log in run_dir.glob("*.log"):
            shutil.copy(log, out / log.name)


def print_summary(summary: dict[str, Any]) -> None:
    print(summary.pop("table"))
    print(json.dumps(summary, default=str))
