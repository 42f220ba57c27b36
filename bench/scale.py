"""Scale curves for dledgermq alone: produce rate, memory and disk as backlog and queues grow.

    python -m bench.scale backlog --target 20000000 --step 1000000 --size 128
    python -m bench.scale queues --queues 8,1000,10000 --count 1000000

Each run starts a throw-away three-node Raft group (`majority_fsync`) through `bench.raft`
(temp dir under $TMPDIR, free loopback ports) and stops every process by PID, also on
failure or SIGTERM. Nothing is consumed for good (pulls commit no offsets).

- backlog: `bench.load` produce against the leader in steps of `--step` messages until
  `--target`; per step the step's msgs/s, and per node RSS, open fds, CPU time and disk.
  After the first, middle and last step a bounded slice is pulled from the head and from
  the tail of every queue, so read cost versus backlog shows. Summary: last/first step
  rate (the goal is a drop of at most 20%), peak RSS and RSS growth per million messages.
- queues: per queue count, a fresh group, topics holding that many queues (a topic holds
  at most `MAX_QUEUES`; above it the queues are spread over several topics, said in the
  output), `--count` messages spread evenly over all queues; msgs/s, RSS, consumequeue
  size on disk and open fds per node.

One JSON line per measurement on stdout, then a summary line; progress on stderr; a
Markdown table (and a PNG if matplotlib is importable) in bench/results/. Bounded by
`--max-seconds` (the run stops early and says so) and by a free-disk check up front.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from bench.load import MSGPACK, ensure_topic, percentile, post_batches, produce
from bench.raft import RaftCluster, cpu_seconds, raft_cluster, status
from dledgermq.broker.topics import MAX_QUEUES

RESULTS = Path(__file__).resolve().parent / "results"
TOPIC = "ScaleTopic"
NODES = ("n1", "n2", "n3")
REPLICAS = 3
# Disk per message and replica beyond the body, measured on small runs with 128 B bodies:
# ~141 B in the CommitLog (record header share, per-message header and properties), ~30 B
# of index, a 20-byte consumequeue unit; rounded up.
OVERHEAD_BYTES = 150 + 30 + 20
CQ_FILE_BYTES = 4096  # the first block of each queue's consumequeue file
FREE_SHARE_MAX = 0.70  # refuse a run needing more than this share of the free space
USED_RATIO_MAX = 0.80  # ...or one ending above this (brokers refuse writes at 0.90)
PULL_MAX = 256  # the broker's default max_pull_messages
CHECKPOINT_S = 3.0  # default checkpoint_interval_ms: buffered consumequeue units hit disk
# A step may take 5x the previous one, and at least 120 s or as long as at 2,000 msgs/s.
STEP_BOUND_MIN_S = 120.0
RATE_FLOOR = 2_000.0


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def emit(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    print(json.dumps(row), flush=True)
    rows.append(row)


# -- what the kernel says about a broker process ------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MB; empty if the process is gone."""
    values: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)  # kB -> MB
    return values


def open_fds(pid: int) -> int | None:
    """`ls /proc/<pid>/fd | wc -l`."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def du_bytes(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, files) under `path`, like `du`; sparse files count as used."""
    used = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # a segment may be deleted meanwhile
                used += os.stat(os.path.join(root, name)).st_blocks * 512
                files += 1
    return used, files


def node_dir(cluster: RaftCluster, node: str) -> Path:
    return cluster.run_dir.parent / node


def sample(cluster: RaftCluster, pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per node: RSS, peak RSS, open fds, CPU seconds, and MB on disk (all, and per store)."""
    out = {}
    for node, pid in pids.items():
        memory = proc_status(pid)
        root = node_dir(cluster, node)
        data, _ = du_bytes(root)
        log_bytes, _ = du_bytes(root / "commitlog")
        index, _ = du_bytes(root / "index")
        cq, cq_files = du_bytes(root / "consumequeue")
        out[node] = {
            "rss_mb": memory.get("VmRSS"),
            "hwm_mb": memory.get("VmHWM"),
            "fds": open_fds(pid),
            "cpu_s": cpu_seconds(pid),
            "disk_mb": round(data / 1e6, 1),
            "commitlog_mb": round(log_bytes / 1e6, 1),
            "index_mb": round(index / 1e6, 1),
            "cq_mb": round(cq / 1e6, 2),
            "cq_files": cq_files,
        }
    return out


class FdPeak(threading.Thread):
    """Samples open fds of each broker twice a second while a load runs; keeps the peak."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            for node, pid in self.pids.items():
                self.peak[node] = max(self.peak[node], open_fds(pid) or 0)
            if self.done.wait(0.5):
                return

    def __enter__(self) -> FdPeak:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.join(timeout=5)


# -- guards --------------------------------------------------------------------------------------


def check_disk(needed: int) -> dict[str, Any]:
    """Refuse (SystemExit) a run that would fill the disk the temp cluster lives on."""
    where = tempfile.gettempdir()
    usage = shutil.disk_usage(where)
    ends_at = (usage.total - usage.free + needed) / usage.total
    info = {
        "tmpdir": where,
        "estimate_gb": round(needed / 1e9, 2),
        "free_gb": round(usage.free / 1e9, 1),
    }
    if needed > FREE_SHARE_MAX * usage.free:
        raise SystemExit(
            f"refusing: the run needs ~{needed / 1e9:.1f} GB on {where} (3 replicas), more "
            f"than {FREE_SHARE_MAX:.0%} of the {usage.free / 1e9:.1f} GB free; lower --target/"
            f"--count or point TMPDIR at a bigger disk"
        )
    if ends_at > USED_RATIO_MAX:
        raise SystemExit(
            f"refusing: the run would leave {where} {ends_at:.0%} full; brokers refuse "
            f"writes at 90% (disk_high_water_ratio), which would cut the backlog short"
        )
    log(f"disk: ~{info['estimate_gb']} GB needed, {info['free_gb']} GB free on {where}")
    return info


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit so the cluster context managers stop every PID."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def broker_pids(cluster: RaftCluster) -> dict[str, int]:
    return {node: cluster.pid(node) for node in NODES}


def dispatch_lag_mb(cluster: RaftCluster) -> dict[str, float | None]:
    """How far each node's dispatch (consumequeue) is behind the furthest node, in MB."""
    offsets = {
        node: (status(addr) or {}).get("dispatched_offset") for node, addr in cluster.nodes.items()
    }
    top = max((o for o in offsets.values() if o is not None), default=0)
    return {n: None if o is None else round((top - o) / 1e6, 2) for n, o in offsets.items()}


def wait_caught_up(cluster: RaftCluster, timeout_s: float) -> float:
    """Wait until every node dispatched the same offset (followers caught up); seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        lag = dispatch_lag_mb(cluster)
        if all(v == 0 for v in lag.values()):
            break
        time.sleep(0.2)  # Polling other processes.
    return round(time.monotonic() - started, 2)


# -- load: bench.load's producer, and two small variants it has no flag for ------------------------


def produce_step(
    cluster: RaftCluster, leader: str, args: argparse.Namespace, count: int, bound_s: float
) -> tuple[dict[str, Any], str]:
    """`count` messages through bench.load's producer; if the leader changed meanwhile
    (requests fail until the bound), find the new one and produce the rest there."""
    acked, seconds, errors, attempts = 0, 0.0, 0, 0
    p99: list[float] = []
    while acked < count and bound_s > 1 and attempts < 3:
        attempts += 1
        started = time.monotonic()
        result = asyncio.run(
            produce(
                argparse.Namespace(
                    broker=cluster.nodes[leader],
                    topic=TOPIC,
                    queues=args.queues,
                    size=args.size,
                    batch=args.batch,
                    concurrency=args.concurrency,
                    count=count - acked,
                    duration=bound_s,
                )
            )
        )
        bound_s -= time.monotonic() - started
        acked += result["messages"]
        seconds += result["seconds"]
        errors += result["errors"]
        p99.append(result["p99_ms"])
        if acked < count and result["errors"]:
            leader = cluster.leader()
            log(f"requests failed; leader is now {leader}")
    row = {
        "messages": acked,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(acked / seconds, 1) if seconds else 0.0,
        "p99_ms": max(p99) if p99 else None,
        "errors": errors,
        "attempts": attempts,
    }
    return row, leader


async def consume_slice(addr: str, topic: str, count: int, where: str, bound_s: float) -> dict:
    """Pull `count` messages spread over every queue, from each queue's head or tail.

    bench.load --consume always starts at offset 0; the tail needs the start offset."""
    base = f"http://{addr}"
    read = 0
    latencies: list[float] = []
    deadline = time.monotonic() + bound_s
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/topics/{topic}") as response:
            queues = (await response.json())["queues"]
        share = math.ceil(count / len(queues))
        spans = {}
        for q in queues:
            low, high = q["min_offset"], q["max_offset"]
            start = low if where == "head" else max(low, high - share)
            spans[q["queue_id"]] = [start, min(high, start + share)]

        async def worker(queue_id: int) -> None:
            nonlocal read
            span = spans[queue_id]
            while span[0] < span[1] and time.monotonic() < deadline:
                t0 = time.perf_counter()
                params = {"offset": span[0], "max": min(PULL_MAX, span[1] - span[0])}
                async with session.get(
                    f"{base}/topics/{topic}/queues/{queue_id}/messages",
                    params=params,
                    headers={"Accept": MSGPACK},
                ) as response:
                    body = msgpack.unpackb(await response.read())
                latencies.append(time.perf_counter() - t0)
                if not body.get("messages"):
                    return
                read += len(body["messages"])
                span[0] = body["next_offset"]

        started = time.perf_counter()
        await asyncio.gather(*(worker(q) for q in spans))
        elapsed = time.perf_counter() - started
    return {
        "messages": read,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(read / elapsed, 1) if elapsed else 0.0,
        "p50_pull_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "p99_pull_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


async def produce_spread(
    addr: str, targets: list[tuple[str, int]], args: argparse.Namespace, bound_s: float
) -> dict[str, Any]:
    """Like bench.load's producer, but each batch names its (topic, queue) in turn.

    bench.load lets the broker pick the queue from one broker-wide round-robin counter,
    which spreads one topic evenly but several topics produced together unevenly."""
    body = os.urandom(args.size)
    messages = [{"body": body}] * args.batch
    turn = itertools.cycle(targets)

    def next_request() -> tuple[str, bytes]:
        topic, queue_id = next(turn)
        payload = msgpack.packb({"messages": messages, "queue_id": queue_id})
        return f"http://{addr}/topics/{topic}/messages", payload

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        latencies, errors, elapsed = await post_batches(
            session,
            next_request,
            count=args.count,
            batch=args.batch,
            concurrency=args.concurrency,
            deadline=time.monotonic() + bound_s,
        )
    acked = len(latencies) * args.batch
    return {
        "messages": acked,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(acked / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


async def create_topics(addr: str, layout: list[tuple[str, int]]) -> None:
    async with aiohttp.ClientSession() as session:
        for topic, queues in layout:
            await ensure_topic(session, f"http://{addr}", topic, queues)


def topic_layout(queues: int) -> list[tuple[str, int]]:
    """`queues` as (topic, queue count) pairs of at most MAX_QUEUES each, as even as can be."""
    topics = math.ceil(queues / MAX_QUEUES)
    return [
        (f"{TOPIC}{i}", queues // topics + (1 if i < queues % topics else 0)) for i in range(topics)
    ]


# -- backlog -------------------------------------------------------------------------------------


def backlog(args: argparse.Namespace) -> None:
    """Produce step by step to `target` with nothing consumed; rate, memory, reads per step."""
    disk = check_disk(args.target * (args.size + OVERHEAD_BYTES) * REPLICAS)
    deadline = Deadline(args.max_seconds)
    rows: list[dict[str, Any]] = []
    steps = math.ceil(args.target / args.step)
    read_after = sorted({1, (steps + 1) // 2, steps})
    stopped: str | None = None
    backlog_now = 0
    last_seconds = 0.0
    with sigterm_unwinds(), raft_cluster("majority_fsync", args.election_ms) as cluster:
        leader = cluster.leader()
        pids = broker_pids(cluster)
        log(f"leader {leader}; pids {pids}; {steps} steps of {args.step:,}")
        for step in range(1, steps + 1):
            count = min(args.step, args.target - backlog_now)
            # A stuck step (no leader, failing requests) must not eat the whole budget.
            bound = min(
                deadline.left(), max(STEP_BOUND_MIN_S, 5 * last_seconds, count / RATE_FLOOR)
            )
            cpu = {n: cpu_seconds(p) or 0.0 for n, p in pids.items()}  # not the reads' CPU
            try:
                row, leader = produce_step(cluster, leader, args, count, bound)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                stopped = f"step {step} failed: {exc!r}"
                break
            last_seconds = row["seconds"]
            backlog_now += row["messages"]
            nodes = sample(cluster, pids)
            for node, figures in nodes.items():
                used = figures.pop("cpu_s")
                figures["cpu_us_per_msg"] = (
                    round((used - cpu[node]) / row["messages"] * 1e6, 1)
                    if used is not None and row["messages"]
                    else None
                )
            row = {"bench": "scale_backlog", "step": step, "backlog": backlog_now, **row}
            row.update(leader=leader, nodes=nodes, lag_mb=dispatch_lag_mb(cluster))
            emit(row, rows)
            log(f"step {step}/{steps}: backlog {backlog_now:,}, {row['msgs_per_s']:,.0f} msgs/s")
            if row["messages"] < count:
                stopped = (
                    f"--max-seconds {args.max_seconds:g} reached at a backlog of {backlog_now:,}"
                    if deadline.left() <= 1
                    else f"step {step} acknowledged {row['messages']:,} of {count:,} within "
                    f"{bound:.0f} s ({row['errors']} failed requests)"
                )
                break
            if step in read_after:
                for where in ("head", "tail"):
                    if deadline.left() <= 1:
                        stopped = f"--max-seconds {args.max_seconds:g} reached while reading"
                        break
                    figures = asyncio.run(
                        consume_slice(
                            cluster.nodes[leader],
                            TOPIC,
                            min(args.slice, backlog_now),
                            where,
                            deadline.left(),
                        )
                    )
                    emit(
                        {"bench": "scale_backlog_read", "backlog": backlog_now, "from": where}
                        | figures,
                        rows,
                    )
            if stopped:
                break
    summary = backlog_summary(rows, args, disk, stopped, deadline.elapsed())
    print(json.dumps(summary), flush=True)
    write_backlog_table(rows, summary, args.out)


def backlog_summary(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    disk: dict[str, Any],
    stopped: str | None,
    elapsed_s: float,
) -> dict[str, Any]:
    steps = [r for r in rows if r["bench"] == "scale_backlog"]
    summary: dict[str, Any] = {
        "bench": "scale_backlog_summary",
        "size": args.size,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "queues": args.queues,
        "target": args.target,
        "step": args.step,
        "reached": steps[-1]["backlog"] if steps else 0,
        "wall_s": round(elapsed_s, 1),
        "stopped_early": stopped,
        "disk_check": disk,
    }
    if not steps:
        return summary
    first, last = steps[0]["msgs_per_s"], steps[-1]["msgs_per_s"]
    ratio = last / first if first else 0.0
    summary.update(
        first_step_msgs_per_s=first,
        last_step_msgs_per_s=last,
        last_over_first=round(ratio, 3),
        drop_pct=round((1 - ratio) * 100, 1),
        drop_within_20pct=ratio >= 0.8,
        max_rss_mb={n: max(r["nodes"][n]["hwm_mb"] or 0 for r in steps) for n in NODES},
        rss_mb_per_million=rss_slopes(steps),
        disk_bytes_per_msg={
            n: round(steps[-1]["nodes"][n]["disk_mb"] * 1e6 / steps[-1]["backlog"], 1)
            for n in NODES
        },
        max_fds={n: max(r["nodes"][n]["fds"] or 0 for r in steps) for n in NODES},
        reads={
            f"{r['from']}@{r['backlog']}": r["msgs_per_s"]
            for r in rows
            if r["bench"] == "scale_backlog_read"
        },
    )
    return summary


def rss_slopes(steps: list[dict[str, Any]]) -> dict[str, float | None]:
    """Least-squares RSS growth in MB per million messages of backlog, per node."""
    slopes: dict[str, float | None] = {}
    for node in NODES:
        points = [(r["backlog"] / 1e6, r["nodes"][node]["rss_mb"]) for r in steps]
        points = [(x, y) for x, y in points if y is not None]
        if len(points) < 2:
            slopes[node] = None
            continue
        xs, ys = zip(*points, strict=True)
        slopes[node] = round(statistics.linear_regression(xs, ys).slope, 2)
    return slopes


def per_node(row: dict[str, Any], key: str) -> str:
    return " / ".join(f"{row['nodes'][n][key]}" for n in NODES)


def write_backlog_table(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    steps = [r for r in rows if r["bench"] == "scale_backlog"]
    reads = [r for r in rows if r["bench"] == "scale_backlog_read"]
    lines = [
        f"# Scale curve: backlog ({summary['size']} B messages, batches of {summary['batch']}"
        f" x {summary['concurrency']} in flight, {summary['queues']} queues, majority_fsync)",
        "",
        "| backlog | step msgs/s | p99 ms/batch | leader | CPU us/msg n1 / n2 / n3 "
        "| RSS MB n1 / n2 / n3 | fds n1 / n2 / n3 | disk MB n1 / n2 / n3 |",
        "|---:|---:|---:|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backlog']:,} | {r['msgs_per_s']:,.0f} | {r['p99_ms']} | {r['leader']} "
        f"| {per_node(r, 'cpu_us_per_msg')} | {per_node(r, 'rss_mb')} | {per_node(r, 'fds')} "
        f"| {per_node(r, 'disk_mb')} |"
        for r in steps
    ]
    lines += [
        "",
        "| backlog | read from | messages | msgs/s | p99 ms/pull |",
        "|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['backlog']:,} | {r['from']} | {r['messages']:,} | {r['msgs_per_s']:,.0f} "
        f"| {r['p99_pull_ms']} |"
        for r in reads
    ]
    lines += ["", "```json", json.dumps(summary, indent=1), "```", ""]
    (out / "scale_backlog.md").write_text("\n".join(lines))
    (out / "scale_backlog.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = backlog_chart(steps, out)
    log(f"wrote {out / 'scale_backlog.md'}" + (f" and {written}" if written else ""))


# -- queues --------------------------------------------------------------------------------------


def measure_queues(
    cluster: RaftCluster, layout: list[tuple[str, int]], args: argparse.Namespace, bound_s: float
) -> dict[str, Any]:
    """Create the topics, write one message per queue, then `count` over all queues."""
    queue_count = sum(n for _, n in layout)
    leader = cluster.leader()
    addr = cluster.nodes[leader]
    pids = broker_pids(cluster)
    deadline = Deadline(bound_s)
    started = time.monotonic()
    asyncio.run(create_topics(addr, layout))
    create_s = round(time.monotonic() - started, 2)
    targets = [(t, q) for q in range(layout[0][1]) for t, n in layout if q < n]
    warmup = None
    if args.warmup:
        # The first message of a queue creates its directory (mkdir + fsync of the parent)
        # on every node: one message per queue first, timed on its own.
        log(f"{queue_count} queues in {len(layout)} topic(s); one message per queue")
        first = argparse.Namespace(**{**vars(args), "count": queue_count, "batch": 1})
        warmup = asyncio.run(produce_spread(addr, targets, first, deadline.left()))
    log(f"{queue_count} queues in {len(layout)} topic(s); producing {args.count:,}")
    cpu = {n: cpu_seconds(p) or 0.0 for n, p in pids.items()}
    with FdPeak(pids) as fds:
        result = asyncio.run(produce_spread(addr, targets, args, deadline.left()))
    catch_up_s = wait_caught_up(cluster, timeout_s=60)
    used = {n: cpu_seconds(p) for n, p in pids.items()}  # the load and the followers' catch-up
    time.sleep(CHECKPOINT_S + 1)  # Buffered consumequeue units reach disk.
    nodes = sample(cluster, pids)
    for node, figures in nodes.items():
        figures.pop("cpu_s")
        spent = used[node]
        figures["cpu_us_per_msg"] = (
            round((spent - cpu[node]) / result["messages"] * 1e6, 1)
            if spent is not None and result["messages"]
            else None
        )
        figures["fds_peak_load"] = fds.peak[node]
    return {
        "create_topics_s": create_s,
        "warmup_one_per_queue": warmup
        and {k: warmup[k] for k in ("messages", "seconds", "msgs_per_s", "p99_ms")},
        **result,
        "msgs_per_queue": result["messages"] / queue_count,
        "queues_written": min(queue_count, result["messages"] // args.batch),
        "leader": leader,
        "catch_up_s": catch_up_s,
        "nodes": nodes,
    }


def queues(args: argparse.Namespace) -> None:
    """Per queue count: a fresh group, `count` messages over all queues; rate, RSS, CQ, fds."""
    counts = [int(q) for q in args.queues.split(",")]
    disk = check_disk(
        args.count * (args.size + OVERHEAD_BYTES) * REPLICAS
        + max(counts) * CQ_FILE_BYTES * REPLICAS
    )
    deadline = Deadline(args.max_seconds)
    rows: list[dict[str, Any]] = []
    stopped: str | None = None
    for queue_count in counts:
        if deadline.left() <= 1:
            stopped = f"--max-seconds {args.max_seconds:g} reached before {queue_count} queues"
            break
        layout = topic_layout(queue_count)
        note = (
            f"a topic holds at most {MAX_QUEUES} queues: spread over {len(layout)} topics of "
            f"{layout[0][1]}" + (f"-{layout[-1][1]}" if layout[-1][1] != layout[0][1] else "")
            if len(layout) > 1
            else None
        )
        with sigterm_unwinds(), raft_cluster("majority_fsync", args.election_ms) as cluster:
            try:
                figures = measure_queues(cluster, layout, args, deadline.left())
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                stopped = f"{queue_count} queues failed: {exc!r}"
                break
        row = {
            "bench": "scale_queues",
            "queues": queue_count,
            "topics": len(layout),
            "note": note,
            **figures,
        }
        emit(row, rows)
        if row["messages"] < args.count:
            stopped = (
                f"--max-seconds {args.max_seconds:g} reached at {queue_count} queues"
                if deadline.left() <= 1
                else f"{queue_count} queues: {row['messages']:,} of {args.count:,} "
                f"acknowledged ({row['errors']} failed requests)"
            )
            break
    summary = {
        "bench": "scale_queues_summary",
        "size": args.size,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "count": args.count,
        "max_queues_per_topic": MAX_QUEUES,
        "wall_s": round(deadline.elapsed(), 1),
        "stopped_early": stopped,
        "disk_check": disk,
        "msgs_per_s": {r["queues"]: r["msgs_per_s"] for r in rows},
        "max_rss_mb": {
            r["queues"]: max(v["hwm_mb"] or 0 for v in r["nodes"].values()) for r in rows
        },
        "cq_mb_per_node": {r["queues"]: r["nodes"]["n1"]["cq_mb"] for r in rows},
        "max_fds": {
            r["queues"]: max(v["fds_peak_load"] for v in r["nodes"].values()) for r in rows
        },
    }
    print(json.dumps(summary), flush=True)
    write_queues_table(rows, summary, args.out)


def first_rate(row: dict[str, Any]) -> str:
    warmup = row["warmup_one_per_queue"]
    return f"{warmup['msgs_per_s']:,.0f}" if warmup else "-"


def write_queues_table(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Scale curve: queue count ({summary['count']:,} messages of {summary['size']} B, "
        f"batches of {summary['batch']} x {summary['concurrency']} in flight, majority_fsync)",
        "",
        "| queues | topics | first message per queue: msgs/s | queues written | msgs/s "
        "| p99 ms/batch | CPU us/msg n1 / n2 / n3 "
        "| RSS MB n1 / n2 / n3 | peak RSS MB n1 / n2 / n3 | consumequeue MB n1 / n2 / n3 "
        "| CQ files per node | fds n1 / n2 / n3 (peak in load) |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---|",
    ]
    lines += [
        f"| {r['queues']:,} | {r['topics']} | {first_rate(r)} | {r['queues_written']:,} "
        f"| {r['msgs_per_s']:,.0f} "
        f"| {r['p99_ms']} | {per_node(r, 'cpu_us_per_msg')} | {per_node(r, 'rss_mb')} "
        f"| {per_node(r, 'hwm_mb')} | {per_node(r, 'cq_mb')} | {r['nodes']['n1']['cq_files']:,} "
        f"| {per_node(r, 'fds_peak_load')} |"
        for r in rows
    ]
    notes = [f"- {r['queues']:,} queues: {r['note']}" for r in rows if r["note"]]
    lines += ["", *notes, "", "```json", json.dumps(summary, indent=1), "```", ""]
    (out / "scale_queues.md").write_text("\n".join(lines))
    (out / "scale_queues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = queues_chart(rows, out)
    log(f"wrote {out / 'scale_queues.md'}" + (f" and {written}" if written else ""))


# -- charts (matplotlib is optional) -------------------------------------------------------------


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # Files only, never a display.
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def two_panels(
    xs: list[float], rows: list[dict], rate: list[float], xlabel: str, path: Path
) -> Path | None:
    """msgs/s on the left, RSS per node on the right, against the same x."""
    plt = pyplot()
    if plt is None or not rows:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(xs, rate, marker="o")
    left.set_ylabel("produce msgs/s")
    left.set_ylim(bottom=0)
    for node in NODES:
        right.plot(xs, [r["nodes"][node]["rss_mb"] or 0 for r in rows], marker="o", label=node)
    right.set_ylabel("broker RSS MB")
    right.set_ylim(bottom=0)
    right.legend()
    for ax in (left, right):
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def backlog_chart(steps: list[dict[str, Any]], out: Path) -> Path | None:
    xs = [r["backlog"] / 1e6 for r in steps]
    rate = [r["msgs_per_s"] for r in steps]
    return two_panels(xs, steps, rate, "backlog (million messages)", out / "scale_backlog.png")


def queues_chart(rows: list[dict[str, Any]], out: Path) -> Path | None:
    xs = [r["queues"] for r in rows]
    rate = [r["msgs_per_s"] for r in rows]
    return two_panels(xs, rows, rate, "queues", out / "scale_queues.png")


# -- command line --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    bl = commands.add_parser("backlog", help="produce rate and RSS as the backlog grows")
    bl.add_argument("--target", type=int, default=20_000_000, help="backlog to reach")
    bl.add_argument("--step", type=int, default=1_000_000, help="messages per measured step")
    bl.add_argument("--slice", type=int, default=200_000, help="messages per head/tail read")
    bl.add_argument("--queues", type=int, default=8, help="queues of the one topic")
    bl.set_defaults(run=backlog, max_seconds=3_600.0)
    qs = commands.add_parser("queues", help="produce rate, RSS, CQ size, fds per queue count")
    qs.add_argument("--queues", default="8,1000,10000", help="comma-separated queue counts")
    qs.add_argument("--count", type=int, default=1_000_000, help="messages per queue count")
    qs.set_defaults(run=queues, max_seconds=1_800.0)
    for sub in (bl, qs):
        sub.add_argument("--size", type=int, default=128, help="message body bytes")
        sub.add_argument("--batch", type=int, default=100, help="messages per request")
        sub.add_argument("--concurrency", type=int, default=16, help="requests in flight")
        sub.add_argument("--election-ms", type=int, default=800)
        sub.add_argument("--max-seconds", type=float, help="stop early (and say so) after this")
        sub.add_argument("--out", type=Path, default=RESULTS, help="where the table goes")
    qs.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="measure the queues' first messages too (creation) instead of apart",
    )
    args = parser.parse_args()
    assert 1 <= args.size <= 1 << 20
    assert 1 <= args.batch <= 1_000
    assert 1 <= args.concurrency <= 256
    assert 0 < args.max_seconds <= 24 * 3_600
    if args.command == "backlog":
        assert 1 <= args.step <= args.target <= 200_000_000
        assert 1 <= args.queues <= MAX_QUEUES
    else:
        assert 1 <= args.count <= 50_000_000
        assert all(1 <= int(q) <= 100_000 for q in args.queues.split(","))
    args.run(args)


if __name__ == "__main__":
    main()
