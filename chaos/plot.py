"""A picture of a chaos run: acknowledged sends per second and send latency over time,
with every fault window shaded, because people would rather look than read.

`series(history)` is pure (per-second ack counts, per-ack latency, fault windows);
`plot(history, path)` draws them with matplotlib, an optional extra (`pip install
'.[bench]'`): without it the runner skips the picture and says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from chaos.history import Fault, History, SendInvoke, SendOk


@dataclass(frozen=True, slots=True)
class Series:
    per_second: list[tuple[int, int]]  # (second since start, acks in it)
    latencies: list[tuple[float, float]]  # (ack time since start, seconds since invoke)
    windows: list[tuple[float, float, str]]  # (start, end, "kind target") since start


def series(history: History) -> Series:
    ops = list(history)
    if not ops:
        return Series([], [], [])
    t0 = ops[0].t
    invoked: dict[str, float] = {}
    acks: Counter[int] = Counter()
    latencies: list[tuple[float, float]] = []
    open_faults: dict[tuple[str, str], float] = {}
    windows: list[tuple[float, float, str]] = []
    for op in ops:
        at = op.t - t0
        if isinstance(op, SendInvoke):
            invoked[op.msg] = op.t
        elif isinstance(op, SendOk):
            acks[int(at)] += 1
            if op.msg in invoked:
                latencies.append((at, op.t - invoked[op.msg]))
        elif isinstance(op, Fault):
            key = (op.fault, op.target)
            if op.phase == "start":
                open_faults[key] = at
            elif key in open_faults:
                windows.append((open_faults.pop(key), at, f"{op.fault} {op.target}"))
    end = ops[-1].t - t0
    windows += [(start, end, f"{kind} {target}") for (kind, target), start in open_faults.items()]
    last = int(end)
    return Series([(s, acks.get(s, 0)) for s in range(last + 1)], latencies, windows)


def plot(history: History, path: Path, title: str = "") -> bool:
    """Write the PNG; False (nothing written) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    data = series(history)
    fig, (rate, latency) = plt.subplots(2, 1, sharex=True, figsize=(12, 6))
    rate.plot([s for s, _ in data.per_second], [n for _, n in data.per_second], lw=1)
    rate.set_ylabel("acked sends / s")
    latency.scatter([t for t, _ in data.latencies], [lat * 1000 for _, lat in data.latencies], s=1)
    latency.set_yscale("log")
    latency.set_ylabel("send latency (ms)")
    latency.set_xlabel("seconds since start")
    for axes in (rate, latency):
        for start, end, _ in data.windows:
            axes.axvspan(start, end, color="tab:red", alpha=0.15)
    for start, _, label in data.windows:
        rate.annotate(label, (start, 0), rotation=90, fontsize=6, va="bottom")
    rate.set_title(title or "chaos run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
