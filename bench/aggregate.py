"""Pure arithmetic of the peer suite: per-run summaries, medians, pairwise ratios, Markdown.

No processes and no I/O here, so every number the suite prints can be unit-tested. A
record is one measurement (one system, scenario, size and run) as a flat dict; the keys
are the ones `bench.load` prints, so dledgermq and the peers share one schema.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

BASE = "dledgermq"
ONE_AT_A_TIME = "one_at_a_time"
PIPELINED = "pipelined"
CONSUME = "consume"
E2E = "e2e"
FAILOVER = "failover"
SCENARIOS = (ONE_AT_A_TIME, PIPELINED, CONSUME, E2E, FAILOVER)
# Short names for `--scenarios` (the long ones are accepted too).
ALIASES = {"one": ONE_AT_A_TIME}
# Measured once per system and run, not per message size (a kill has no size).
SIZELESS = (FAILOVER,)
NOT_APPLICABLE = "not_applicable"
# Which figures the table shows per scenario: latency only where one message is one
# request (in the pipelined scenario a dledgermq request carries a batch, a peer's one
# message, so their latencies do not compare).
METRICS = {
    ONE_AT_A_TIME: ("msgs_per_s", "p50_ms", "p99_ms", "p999_ms"),
    PIPELINED: ("msgs_per_s", "mb_per_s"),
    CONSUME: ("msgs_per_s", "mb_per_s"),
    E2E: ("msgs_per_s", "p50_ms", "p99_ms", "p999_ms", "ack_p50_ms", "ack_p99_ms"),
    FAILOVER: ("kills", "misses", "median_s", "max_s"),
}
# Ratios dledgermq/peer per scenario: > 1 means dledgermq is ahead for throughput and
# behind for latency.
RATIO_METRICS = {
    ONE_AT_A_TIME: ("msgs_per_s", "p99_ms"),
    PIPELINED: ("msgs_per_s",),
    CONSUME: ("msgs_per_s",),
    E2E: ("p99_ms",),
    FAILOVER: ("median_s",),
}
FIGURES = (
    *("msgs_per_s", "mb_per_s", "p50_ms", "p99_ms", "p999_ms"),
    *("ack_p50_ms", "ack_p99_ms", "kills", "misses", "median_s", "max_s"),
)

Record = dict[str, Any]
Key = tuple[str, int, str]  # (scenario, size, system)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, the same rule as `bench.load` so all systems compare."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(
    latencies_s: Sequence[float], acked: int, size: int, elapsed_s: float, errors: int = 0
) -> dict[str, float | int]:
    """One measurement's figures from raw per-request latencies (seconds)."""
    elapsed = max(elapsed_s, 1e-9)
    return {
        "messages": acked,
        "errors": errors,
        "seconds": round(elapsed_s, 3),
        "msgs_per_s": round(acked / elapsed, 1),
        "mb_per_s": round(acked * size / elapsed / 1e6, 2),
        "p50_ms": round(percentile(latencies_s, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies_s, 0.99) * 1000, 3),
        "p999_ms": round(percentile(latencies_s, 0.999) * 1000, 3),
    }


def e2e_summary(
    latencies_s: Sequence[float],
    sent: int,
    size: int,
    elapsed_s: float,
    acks_s: Sequence[float] = (),
) -> dict[str, float | int]:
    """Send -> delivered figures; a message sent but never delivered counts as an error,
    so a system cannot look fast by dropping its slow tail. The send -> acknowledged
    percentiles tell the broker's write path apart from its delivery path."""
    figures = summarize(
        latencies_s, len(latencies_s), size, elapsed_s, max(0, sent - len(latencies_s))
    )
    figures["sent"] = sent
    figures["ack_p50_ms"] = round(percentile(acks_s, 0.50) * 1000, 3)
    figures["ack_p99_ms"] = round(percentile(acks_s, 0.99) * 1000, 3)
    return figures


# No leader election finishes this fast: a kill answered sooner hit a node that was no
# longer leading (leadership moved between the lookup and the kill).
MISS_BELOW_S = 0.05


def failover_summary(gaps_s: Sequence[float], miss_below_s: float = MISS_BELOW_S) -> dict[str, Any]:
    """Kill -> next acknowledged send: median and max over the kills that hit the leader
    (a kill never recovered is inf); the misses are counted, not averaged in."""
    hits = [g for g in gaps_s if g >= miss_below_s]
    out: dict[str, Any] = {"kills": len(hits), "misses": len(gaps_s) - len(hits)}
    if hits:
        worst = max(hits)
        out["median_s"] = round(float(statistics.median(hits)), 3)
        out["max_s"] = round(worst, 3) if worst != float("inf") else worst
    out["gaps_s"] = [round(g, 3) for g in gaps_s]
    return out


def _key(record: Record) -> Key:
    return (record["scenario"], int(record["size"]), record["system"])


def measured(records: Iterable[Record]) -> list[Record]:
    """Records that hold figures (skips and failures carry a reason instead)."""
    return [r for r in records if ("msgs_per_s" in r or "median_s" in r) and not r.get("skipped")]


def medians(records: Iterable[Record]) -> dict[Key, dict[str, float]]:
    """Median over runs of every figure, per (scenario, size, system)."""
    grouped: dict[Key, list[Record]] = defaultdict(list)
    for record in measured(records):
        grouped[_key(record)].append(record)
    out: dict[Key, dict[str, float]] = {}
    for key, group in grouped.items():
        figures = {
            metric: float(statistics.median(r[metric] for r in group))
            for metric in FIGURES
            if all(metric in r for r in group)
        }
        figures["runs"] = len(group)
        out[key] = figures
    return out


def pair_ratios(records: Iterable[Record], base: str = BASE) -> dict[Key, dict[str, list[float]]]:
    """dledgermq/peer per figure, computed within each run (the machine drifts between runs).

    Keyed by (scenario, size, peer); a run where either side is missing or zero gives no
    ratio for that figure.
    """
    by_run: dict[tuple[int, str, int], dict[str, Record]] = defaultdict(dict)
    for record in measured(records):
        by_run[(record["run"], record["scenario"], int(record["size"]))][record["system"]] = record
    out: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (_, scenario, size), systems in sorted(by_run.items()):
        mine = systems.get(base)
        if mine is None:
            continue
        for peer, theirs in systems.items():
            if peer == base:
                continue
            for metric in RATIO_METRICS.get(scenario, ("msgs_per_s",)):
                if mine.get(metric) and theirs.get(metric):
                    out[(scenario, size, peer)][metric].append(mine[metric] / theirs[metric])
    return {key: dict(value) for key, value in out.items()}


def median_ratios(records: Iterable[Record], base: str = BASE) -> dict[Key, dict[str, float]]:
    """Median of the per-run ratios."""
    return {
        key: {metric: statistics.median(values) for metric, values in metrics.items()}
        for key, metrics in pair_ratios(records, base).items()
    }


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "msgs_per_s":
        return f"{value:,.0f}"
    if metric == "mb_per_s":
        return f"{value:.1f}"
    if metric in ("kills", "misses"):
        return f"{value:.0f}"
    return f"{value:.2f}"


HEADERS = {
    "msgs_per_s": "msgs/s",
    "mb_per_s": "MB/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "p999_ms": "p999 ms",
    "ack_p50_ms": "ack p50 ms",
    "ack_p99_ms": "ack p99 ms",
    "kills": "kills",
    "misses": "kills that missed the leader",
    "median_s": "median s",
    "max_s": "max s",
}
TITLES = {
    ONE_AT_A_TIME: "one at a time",
    PIPELINED: "pipelined",
    CONSUME: "consume from a backlog",
    E2E: "end to end, send -> delivered, at a fixed rate",
    FAILOVER: "failover, SIGKILL of the leader -> next acknowledged send",
}


def render_markdown(
    records: Sequence[Record], notes: Sequence[str] = (), title: str = "Peer benchmark"
) -> str:
    """The results table: medians per system, and dledgermq/peer ratios (median per run)."""
    figures = medians(records)
    ratios = median_ratios(records)
    lines = [f"# {title}", ""]
    for scenario in SCENARIOS:
        keys = sorted(k for k in figures if k[0] == scenario)
        absent = _not_applicable(records, scenario)
        if not keys and not absent:
            continue
        metrics = METRICS[scenario]
        ratio_metrics = RATIO_METRICS[scenario]
        header = [
            "size",
            "system",
            *(HEADERS[m] for m in metrics),
            *(f"dledgermq ÷ system {HEADERS[m]}" for m in ratio_metrics),
            "runs",
        ]
        lines += [f"## {TITLES[scenario]}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        order = {BASE: 0}
        for _, size, system in sorted(keys, key=lambda k: (k[1], order.get(k[2], 1), k[2])):
            row = figures[(scenario, size, system)]
            ratio = ratios.get((scenario, size, system), {})
            cells = [
                _size(size),
                system,
                *(_fmt(row.get(m), m) for m in metrics),
                *(f"{ratio[m]:.2f}" if m in ratio else "-" for m in ratio_metrics),
                str(int(row["runs"])),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        for system, reason in absent:
            cells = ["-", system, reason, *["-"] * (len(header) - 3)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    skipped = [r for r in records if r.get("skipped")]
    if skipped:
        lines += ["## Skipped", ""]
        seen: set[tuple[str, str]] = set()
        for record in skipped:
            item = (record["system"], record["skipped"])
            if item not in seen:
                seen.add(item)
                lines.append(f"- {record['system']}: {record['skipped']}")
        lines.append("")
    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


def _not_applicable(records: Sequence[Record], scenario: str) -> list[tuple[str, str]]:
    """(system, reason) for systems the scenario does not apply to, once each."""
    found: dict[str, str] = {}
    for record in records:
        if record.get("scenario") == scenario and record.get(NOT_APPLICABLE):
            found.setdefault(record["system"], record[NOT_APPLICABLE])
    return sorted(found.items())


def _size(size: int) -> str:
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def first_ack_after(acks: list[tuple[float, float]], killed_at: float) -> float:
    """Kill -> the first acknowledgement of a send that *started* after the kill (an
    answer already on its way from the old leader does not count); inf if none."""
    after = [done for started, done in acks if started > killed_at]
    return min(after) - killed_at if after else float("inf")
