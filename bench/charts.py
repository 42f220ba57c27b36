"""PNG bar charts of the suite's medians; matplotlib is an optional extra (`.[bench]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.aggregate import BASE, ONE_AT_A_TIME, PIPELINED, Record, medians


def write_charts(records: Sequence[Record], out_dir: Path) -> list[Path]:
    """One chart per scenario (msgs/s per size and system) plus one of latency percentiles.

    Returns the files written; none when matplotlib is not importable.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # Files only, never a display.
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figures = medians(records)
    written = []
    for scenario in (ONE_AT_A_TIME, PIPELINED):
        keys = [k for k in figures if k[0] == scenario]
        if not keys:
            continue
        sizes = sorted({k[1] for k in keys})
        systems = sorted({k[2] for k in keys}, key=lambda s: (s != BASE, s))
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.8 / len(systems)
        for i, system in enumerate(systems):
            values = [figures.get((scenario, s, system), {}).get("msgs_per_s", 0) for s in sizes]
            xs = [x + i * width for x in range(len(sizes))]
            ax.bar(xs, values, width, label=system)
        ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(sizes))])
        ax.set_xticklabels([f"{s} B" for s in sizes])
        ax.set_ylabel("msgs/s (median of runs)")
        ax.set_title(f"durable publish, {scenario.replace('_', ' ')}")
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"peers_{scenario}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    latency = sorted(k for k in figures if k[0] == ONE_AT_A_TIME)
    if latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{system}\n{size} B" for _, size, system in latency]
        for i, metric in enumerate(("p50_ms", "p99_ms", "p999_ms")):
            xs = [x + i * 0.27 for x in range(len(latency))]
            ax.bar(xs, [figures[k].get(metric, 0) for k in latency], 0.27, label=metric[:-3])
        ax.set_xticks([x + 0.27 for x in range(len(latency))])
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("ms per acknowledged message")
        ax.set_title("one at a time: latency percentiles (median of runs)")
        ax.legend()
        fig.tight_layout()
        path = out_dir / "peers_latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
