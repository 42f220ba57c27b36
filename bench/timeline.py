"""Where one acknowledgement's time goes: stage stamps across a 3-node Raft group.

`python -m bench.timeline --count 1500` starts a group (`majority_fsync`) with the probe
in `bench/timeline_probe/` loaded into every process, sends `--count` 1 KiB messages one
at a time, and prints, for each stage of each process (L = leader, F0/F1 = followers),
the median microseconds after the leader's HTTP handler asked for the append
(`call>`) at which the stage was first seen, as JSON lines sorted by time. Stages:
`<actor>.<message>>`/`<` = an actor starts/ends handling it; `post` = an actor thread
hands a frame to the transport, `loop.send` = the loop writes one it was handed,
`loop.deliver` = a peer's frame arrives; `loop.settle` = the answer reaches the loop;
`call<` = the handler has it. A follower's first stage after `call>` may belong to the
previous message (the commit it learns with this one), so read its rows in order.

`--slowest 2` restricts the medians to the slowest 2 % of sends (by `call>` -> `call<`),
to see which stage the tail loses its time in, next to the median send's table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.raft import load, raft_cluster

PROBE = Path(__file__).parent / "timeline_probe"
WARMUP = 100


def stages(folder: Path, leader_pid: int, slowest_pct: float = 100.0) -> list[dict[str, object]]:
    events: list[tuple[int, int, str]] = []
    for path in folder.glob("*.txt"):
        pid = int(path.stem)
        for line in path.read_text().splitlines():
            stamp, tag = line.split()
            events.append((int(stamp), pid, tag))
    events.sort()
    followers = sorted({pid for _, pid, _ in events} - {leader_pid})
    role = {leader_pid: "L"} | {pid: f"F{i}" for i, pid in enumerate(followers)}
    starts = [i for i, (_, pid, tag) in enumerate(events) if pid == leader_pid and tag == "call>"]
    per_send: list[dict[tuple[str, str], int]] = []
    for start in starts[WARMUP:]:
        t0 = events[start][0]
        seen: dict[tuple[str, str], int] = {}
        for t, pid, tag in events[start + 1 :]:
            seen.setdefault((role[pid], tag), t - t0)
            if pid == leader_pid and tag == "call<":
                break
        per_send.append(seen)
    answered = [seen for seen in per_send if ("L", "call<") in seen]
    answered.sort(key=lambda seen: seen[("L", "call<")])
    keep = answered[len(answered) - max(1, round(len(answered) * slowest_pct / 100)) :]
    seen_at: dict[tuple[str, str], list[int]] = {}
    for seen in keep:
        for key, at in seen.items():
            seen_at.setdefault(key, []).append(at)
    rows = [
        {"process": p, "stage": s, "median_us": round(statistics.median(v) / 1000), "n": len(v)}
        for (p, s), v in seen_at.items()
    ]
    return sorted(rows, key=lambda row: row["median_us"])  # type: ignore[arg-type, return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument(
        "--slowest", type=float, default=None, help="also the table of the slowest PCT %%"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
        os.environ["DLEDGERMQ_TIMELINE"] = tmp
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(PROBE), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        with raft_cluster("majority_fsync") as cluster:
            name = cluster.leader()
            leader_pid = cluster.pid(name)
            result = load(
                cluster.nodes[name],
                "--batch",
                "1",
                "--concurrency",
                "1",
                "--count",
                str(args.count),
            )
        # Stopped: every process wrote its last stamps at exit.
        for row in stages(Path(tmp), leader_pid):
            print(json.dumps(row))
        if args.slowest is not None:
            for row in stages(Path(tmp), leader_pid, args.slowest):
                print(json.dumps({"slowest_pct": args.slowest, **row}))
    print(json.dumps({"bench": "timeline", "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]}))


if __name__ == "__main__":
    main()
