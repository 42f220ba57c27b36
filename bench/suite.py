"""The side-by-side peer suite: dledgermq's 3-node Raft group against NATS and RabbitMQ.

    python -m bench run --suite peers --runs 3 --sizes 128,1024,16384 --count 100000

Per run, each system in turn (the order rotates between runs) is started fresh, measured
in both scenarios at every size, and stopped by PID before the next one starts, so the
systems never share the cores with each other, only with the load client:
1. one at a time: one durable publish in flight; msgs/s and p50/p99/p999 per message;
2. pipelined: many in flight (dledgermq: `bench.load` batches of 100 x 16 requests;
   NATS: 256 async publishes pending; RabbitMQ: 256 publishers awaiting confirms; NATS
   was best at 256-1024 here, RabbitMQ flat at 64-256, their Python clients the limit).
3. consume: a backlog of `count` messages is produced (pipelined), then read as fast as
   possible (dledgermq: HTTP pulls of every queue; NATS: a pull consumer; RabbitMQ:
   basic_consume with a prefetch of 1,000); e2e: `e2e_rate` msgs/s for `e2e_seconds`,
   each body stamped with `time.monotonic_ns()` at send, latency taken on delivery
   (same host, same clock; dledgermq consumes by long-poll pulls of every queue);
4. failover (once per system and run): SIGKILL the leader (dledgermq: the Raft leader
   node; NATS: the nats-server leading the stream) under one-at-a-time publish `kills`
   times, restarting it after each; kill -> next acknowledged send that started after
   the kill. RabbitMQ is one node: not applicable.
Progress goes to stderr, one JSON line per measurement to stdout, then a summary line;
`bench/results/peers.md` (and PNG charts if matplotlib is importable) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import aggregate, clients, peers
from bench.aggregate import (
    ALIASES,
    CONSUME,
    E2E,
    FAILOVER,
    NOT_APPLICABLE,
    ONE_AT_A_TIME,
    PIPELINED,
    SCENARIOS,
    SIZELESS,
    Record,
)
from bench.raft import load, measure_failover, raft_cluster

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("dledgermq", "nats", "rabbitmq")
Measure = Callable[[str, int, int], dict[str, Any]]  # (scenario, size, count) -> figures


@dataclass
class Settings:
    runs: int = 3
    sizes: tuple[int, ...] = (1024,)
    count: int = 100_000
    latency_count: int = 3_000
    duration_s: float = 60.0
    max_mb: float = 512.0
    inflight: int = 256
    batch: int = 100
    concurrency: int = 16
    e2e_rate: float = 500.0
    e2e_seconds: float = 10.0
    kills: int = 5
    pause_s: float = 2.0
    systems: tuple[str, ...] = SYSTEMS
    scenarios: tuple[str, ...] = SCENARIOS
    out: Path = RESULTS
    argv: list[str] = field(default_factory=list)

    def messages(self, scenario: str, size: int) -> int:
        """Messages per measurement: bounded by count and by bytes (16 KiB fills disks)."""
        if scenario == E2E:
            return max(1, int(self.e2e_rate * self.e2e_seconds))
        if scenario == FAILOVER:
            return self.kills
        big = scenario in (PIPELINED, CONSUME)
        count = self.count if big else min(self.count, self.latency_count)
        return max(1, min(count, int(self.max_mb * 1e6 // size)))

    def inflight_of(self, system: str, scenario: str) -> str:
        if scenario in (ONE_AT_A_TIME, FAILOVER):
            return "1"
        if scenario == E2E:
            return f"{self.e2e_rate:g}/s"
        if scenario == CONSUME:
            return "256 per pull" if system != "rabbitmq" else "prefetch 1000"
        if system == "dledgermq":
            return f"{self.batch}x{self.concurrency}"
        return str(self.inflight)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: Record) -> None:
    print(json.dumps(record), flush=True)


# --- one system at a time: start, yield a measuring function, stop -----------------------


@contextlib.contextmanager
def open_dledgermq(settings: Settings) -> Iterator[Measure]:
    with raft_cluster("majority_fsync") as cluster:

        def measure(scenario: str, size: int, count: int) -> dict[str, Any]:
            leader = cluster.nodes[cluster.leader()]  # It moves in the failover scenario.
            if scenario == CONSUME:
                return dledgermq_consume(leader, size, count, settings)
            if scenario == E2E:
                run = clients.dledgermq_e2e(leader, f"E2E{size}", size, settings.e2e_rate, count)
                return asyncio.run(asyncio.wait_for(run, settings.duration_s + 60))
            if scenario == FAILOVER:
                return aggregate.failover_summary(
                    measure_failover(cluster, count, settings.pause_s)
                )
            if scenario == ONE_AT_A_TIME:
                shape = ("--batch", "1", "--concurrency", "1")
            else:
                shape = ("--batch", str(settings.batch), "--concurrency", str(settings.concurrency))
            result = load(
                leader,
                *shape,
                *("--count", str(count), "--size", str(size)),
                *("--duration", str(settings.duration_s)),
            )
            if scenario == PIPELINED:  # Per-batch latencies do not compare with the peers'.
                result = {k: v for k, v in result.items() if not k.startswith("p")}
            return {
                k: v
                for k, v in result.items()
                if k not in ("bench", "size", "batch", "concurrency")
            }

        yield measure


def dledgermq_consume(leader: str, size: int, count: int, settings: Settings) -> dict[str, Any]:
    """A fresh topic per size, so the backlog read is exactly the one just produced."""
    topic = ("--topic", f"Consume{size}")
    bounds = ("--count", str(count), "--duration", str(settings.duration_s))
    shape = ("--batch", str(settings.batch), "--concurrency", str(settings.concurrency))
    load(leader, *topic, *shape, *bounds, "--size", str(size))
    result = load(leader, *topic, *bounds, "--consume")
    return {
        "messages": result["messages"],
        "seconds": result["seconds"],
        "msgs_per_s": result["msgs_per_s"],
        "mb_per_s": round(result["msgs_per_s"] * size / 1e6, 2),
    }


@contextlib.contextmanager
def open_peer(
    kind: type[peers.NatsCluster] | type[peers.RabbitMQ], settings: Settings
) -> Iterator[Measure]:
    publish = clients.nats_publish if kind is peers.NatsCluster else clients.rabbitmq_publish
    bound_s = settings.duration_s + 2 * clients.ACK_GRACE_S + 10

    with peers.running(kind) as peer:

        def measure(scenario: str, size: int, count: int) -> dict[str, Any]:
            nats = kind is peers.NatsCluster
            if scenario == CONSUME:
                consume = clients.nats_consume if nats else clients.rabbitmq_consume
                run = consume(peer.url, size, count, settings.duration_s)
                return asyncio.run(asyncio.wait_for(run, 2 * bound_s))
            if scenario == E2E:
                e2e = clients.nats_e2e if nats else clients.rabbitmq_e2e
                run = e2e(peer.url, size, settings.e2e_rate, count)
                return asyncio.run(asyncio.wait_for(run, settings.duration_s + 60))
            if scenario == FAILOVER:
                if not nats:
                    return {NOT_APPLICABLE: "n/a (one node)"}
                run = clients.nats_failover(peer, count, settings.pause_s)
                gaps = asyncio.run(asyncio.wait_for(run, count * (settings.pause_s + 120)))
                return aggregate.failover_summary(gaps)
            inflight = 1 if scenario == ONE_AT_A_TIME else settings.inflight
            run = publish(peer.url, size, count, settings.duration_s, inflight)
            return asyncio.run(asyncio.wait_for(run, bound_s))

        yield measure


def opener(system: str, settings: Settings) -> contextlib.AbstractContextManager[Measure]:
    if system == "dledgermq":
        return open_dledgermq(settings)
    kind = {"nats": peers.NatsCluster, "rabbitmq": peers.RabbitMQ}[system]
    return open_peer(kind, settings)


SEMANTICS = {
    "dledgermq": (
        "HTTP send to the Raft leader, acknowledged after a majority of the 3 nodes "
        "fsynced the entry (`majority_fsync`)"
    ),
    "nats": peers.NatsCluster.semantics,
    "rabbitmq": peers.RabbitMQ.semantics,
}


# --- the suite ----------------------------------------------------------------------------


def run_suite(settings: Settings) -> list[Record]:
    records: list[Record] = []
    unavailable: dict[str, str] = {}
    wanted = tuple(s for s in settings.systems if s != "dledgermq")
    for system, reason in peers.install(wanted).items():
        if reason:
            unavailable[system] = f"not installed: {reason}"
    for system, reason in unavailable.items():
        record = {"suite": "peers", "system": system, "skipped": reason}
        records.append(record)
        emit(record)
        progress(f"skipping {system}: {reason}")
    systems = list(settings.systems)
    for run in range(settings.runs):
        shift = run % len(systems)
        for system in systems[shift:] + systems[:shift]:
            if system in unavailable:
                continue
            records += measure_system(system, run, settings, unavailable)
    return records


def measure_system(
    system: str, run: int, settings: Settings, unavailable: dict[str, str]
) -> list[Record]:
    """Start one system, run every scenario at every size, stop it; never raises."""
    records: list[Record] = []
    base = {"suite": "peers", "run": run, "system": system}
    progress(f"[run {run + 1}/{settings.runs}] starting {system}")
    started = time.monotonic()
    try:
        with opener(system, settings) as measure:
            progress(
                f"[run {run + 1}/{settings.runs}] {system} up in {time.monotonic() - started:.1f}s"
            )
            for size in settings.sizes:
                for scenario in settings.scenarios:
                    if scenario in SIZELESS and size != settings.sizes[0]:
                        continue
                    count = settings.messages(scenario, size)
                    label = f"[run {run + 1}/{settings.runs}] {system} {size} B {scenario}"
                    unit = "kills" if scenario == FAILOVER else "messages"
                    progress(f"{label}: {count} {unit} ...")
                    record = {**base, "scenario": scenario, "size": size}
                    record["inflight"] = settings.inflight_of(system, scenario)
                    try:
                        record.update(measure(scenario, size, count))
                    except (Exception, SystemExit) as exc:
                        record["skipped"] = f"run {run}: {scenario} {size} B failed: {exc!r}"
                    records.append(record)
                    emit(record)
                    progress(f"{label}: {_brief(record)}")
    except peers.PeerMissing as exc:
        unavailable[system] = f"unavailable: {exc}"
        records.append({**base, "skipped": unavailable[system]})
        emit(records[-1])
        progress(f"skipping {system} from now on: {exc}")
    except peers.PeerUnavailable as exc:
        records.append({**base, "skipped": f"run {run}: could not start: {exc}"})
        emit(records[-1])
        progress(f"skipping {system} in run {run + 1}: {exc}")
    except (Exception, SystemExit) as exc:  # Start or stop failed: this run only.
        records.append({**base, "skipped": f"run {run}: {exc!r}"})
        emit(records[-1])
        progress(f"{system} run {run} failed: {exc!r}")
    return records


def _brief(record: Record) -> str:
    if record.get("skipped"):
        return f"FAILED {record['skipped']}"
    if record.get(NOT_APPLICABLE):
        return record[NOT_APPLICABLE]
    if "kills" in record:
        median, worst = record.get("median_s"), record.get("max_s")
        misses = record.get("misses", 0)
        return f"{record['kills']} kills (+{misses} missed), median {median} s, max {worst} s"
    text = f"{record['msgs_per_s']:,.0f} msgs/s, {record.get('mb_per_s')} MB/s"
    if "p99_ms" in record:
        text += f", p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms"
    if record.get("errors"):
        text += f", {record['errors']} errors"
    return text


def environment_notes(settings: Settings, load_before: float) -> list[str]:
    """What the reader needs to reproduce and to judge the figures."""
    versions = {
        "nats-server": _output(["nats-server", "--version"]).removeprefix("nats-server: "),
        "rabbitmq-server": _output(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"]),
    }
    load_after = os.getloadavg()[0]
    return [
        f"Command: `python -m bench {' '.join(settings.argv)}`",
        f"Machine: {os.cpu_count()} cores shared with other work (brokers and load client on "
        f"the same cores); 1-minute load average {load_before:.2f} before, {load_after:.2f} "
        "after. Quote ratios measured in one run, not absolute figures.",
        f"Python {platform.python_version()}; "
        + "; ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()),
        "Each figure is the median over runs; each ratio is dledgermq/system computed per "
        "run, then the median (throughput: > 1 means dledgermq is faster; p99: < 1 means "
        "dledgermq is faster).",
        f"In flight in the pipelined scenario: dledgermq {settings.batch} messages per request "
        f"x {settings.concurrency} requests; NATS and RabbitMQ {settings.inflight} messages.",
        f"Messages per measurement: pipelined {settings.count:,}, one at a time "
        f"{min(settings.count, settings.latency_count):,}, at most {settings.max_mb:.0f} MB; "
        f"each measurement bounded by {settings.duration_s:.0f} s.",
        f"Consume: a backlog of up to {settings.count:,} messages, produced pipelined, then "
        "read from the start (dledgermq: `bench.load --consume`, 256 per pull on each of 8 "
        "queues; NATS: one pull consumer, fetches of 256, one cumulative ack per fetch; "
        "RabbitMQ: basic_consume, prefetch 1,000, ack multiple every 100).",
        f"End to end: {settings.e2e_rate:g} msgs/s offered for {settings.e2e_seconds:g} s "
        "(sends not waiting for each other's acks), body stamped with time.monotonic_ns() at "
        "send, latency at delivery in the consumer (same host, same clock); a message not "
        f"delivered within {clients.DRAIN_S:g} s of the last send counts as an error.",
        f"Failover: {settings.kills} SIGKILLs of the leader per run, {settings.pause_s:g} s of "
        "one-at-a-time publishing before each, the killed process restarted after each; "
        "time from the kill to the first ack of a send started after it.",
        *(f"Acknowledgement, {k}: {v}" for k, v in SEMANTICS.items() if k in settings.systems),
        *(f"Set-up, {kind.name}: {kind.tuning}" for kind in (peers.NatsCluster, peers.RabbitMQ)),
        "All load clients are Python asyncio (bench.load with aiohttp, nats-py, aio-pika), "
        "so client CPU is part of every figure.",
    ]


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_outputs(records: list[Record], notes: list[str], out: Path) -> list[Path]:
    from bench.charts import write_charts

    out.mkdir(parents=True, exist_ok=True)
    table = out / "peers.md"
    table.write_text(aggregate.render_markdown(records, notes, title="dledgermq vs peers"))
    raw = out / "peers.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in records))
    return [table, raw, *write_charts(records, out)]


def summary(records: list[Record]) -> Record:
    def name(key: tuple[str, int, str]) -> str:
        return "/".join(map(str, key))

    return {
        "suite": "peers",
        "summary": {name(k): v for k, v in aggregate.medians(records).items()},
        "ratios_dledgermq_over_system": {
            name(k): v for k, v in aggregate.median_ratios(records).items()
        },
    }


def parse_scenarios(text: str) -> tuple[str, ...]:
    """`--scenarios one,e2e`: short names allowed, run in the suite's order (failover
    last, since it moves the leader and restarts nodes)."""
    wanted = {ALIASES.get(s.strip(), s.strip()) for s in text.split(",") if s.strip()}
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return tuple(s for s in SCENARIOS if s in wanted)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: neither the per-measurement handlers nor asyncio's
    transport error handling swallow a KeyboardInterrupt, so it reaches `main`."""


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `with` block stops its processes."""
    raise Terminated(signum)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suite", choices=("peers",), default="peers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sizes", default="1024", help="comma-separated bytes, e.g. 128,1024,16384"
    )
    parser.add_argument("--count", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--latency-count", type=int, default=3_000, help="cap, one at a time")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--max-mb", type=float, default=512.0, help="bytes cap per measurement")
    parser.add_argument("--inflight", type=int, default=256, help="peers, pipelined")
    parser.add_argument("--batch", type=int, default=100, help="dledgermq, pipelined")
    parser.add_argument("--concurrency", type=int, default=16, help="dledgermq, pipelined")
    parser.add_argument("--e2e-rate", type=float, default=500.0, help="msgs/s offered, e2e")
    parser.add_argument("--e2e-seconds", type=float, default=10.0, help="seconds, e2e")
    parser.add_argument("--kills", type=int, default=5, help="leader kills, failover")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds before each kill")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated: one (or one_at_a_time), pipelined, consume, e2e, failover",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = Settings(
        runs=args.runs,
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        count=args.count,
        latency_count=args.latency_count,
        duration_s=args.duration,
        max_mb=args.max_mb,
        inflight=args.inflight,
        batch=args.batch,
        concurrency=args.concurrency,
        e2e_rate=args.e2e_rate,
        e2e_seconds=args.e2e_seconds,
        kills=args.kills,
        pause_s=args.pause,
        systems=tuple(s for s in args.systems.split(",") if s),
        scenarios=parse_scenarios(args.scenarios),
        out=args.out,
        argv=["run", *argv],
    )
    assert 1 <= settings.runs <= 20
    assert all(1 <= s <= 1 << 20 for s in settings.sizes)
    assert 1 <= settings.count <= 10_000_000
    assert 0 < settings.duration_s <= 600
    assert set(settings.systems) <= set(SYSTEMS)
    assert "dledgermq" in settings.systems
    assert set(settings.scenarios) <= set(SCENARIOS)
    assert 0 < settings.e2e_rate <= 20_000
    assert 0 < settings.e2e_seconds <= 120
    assert 1 <= settings.kills <= 50
    assert 0 <= settings.pause_s <= 30
    signal.signal(signal.SIGTERM, _terminate)
    load_before = os.getloadavg()[0]
    try:
        records = run_suite(settings)
    except Terminated as exc:
        progress("terminated; every process started was stopped")
        raise SystemExit(128 + int(exc.args[0])) from None
    notes = environment_notes(settings, load_before)
    for path in write_outputs(records, notes, settings.out):
        progress(f"wrote {path}")
    emit(summary(records))
