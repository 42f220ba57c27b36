"""The peer suite's arithmetic: summaries, medians over runs, ratios paired within one run,
and the Markdown table. Pure functions only; no broker or peer is started here."""

from __future__ import annotations

import pytest

from bench.aggregate import (
    ONE_AT_A_TIME,
    PIPELINED,
    measured,
    median_ratios,
    medians,
    pair_ratios,
    percentile,
    render_markdown,
    summarize,
)


def rec(run: int, system: str, scenario: str, msgs: float, size: int = 1024, **extra) -> dict:
    record = {
        "run": run,
        "system": system,
        "scenario": scenario,
        "size": size,
        "msgs_per_s": msgs,
        "mb_per_s": msgs * size / 1e6,
    }
    record.update(extra)
    return record


def test_percentile_is_nearest_rank_like_bench_load():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 100.0
    assert percentile(values, 0.999) == 100.0
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0


def test_summarize_rates_and_percentiles_in_ms():
    latencies = [0.001] * 98 + [0.010, 0.020]
    figures = summarize(latencies, acked=100, size=1000, elapsed_s=0.5, errors=2)
    assert figures["messages"] == 100
    assert figures["errors"] == 2
    assert figures["msgs_per_s"] == 200.0
    assert figures["mb_per_s"] == 0.2
    assert figures["p50_ms"] == 1.0
    assert figures["p99_ms"] == 20.0
    assert figures["p999_ms"] == 20.0


def test_summarize_survives_zero_elapsed_and_no_latencies():
    figures = summarize([], acked=0, size=1024, elapsed_s=0.0)
    assert figures["msgs_per_s"] == 0.0
    assert figures["p99_ms"] == 0.0


def test_measured_drops_skips_and_failures():
    records = [
        rec(0, "dledgermq", PIPELINED, 10.0),
        {"system": "rabbitmq", "skipped": "not installed"},
        {**rec(0, "nats", PIPELINED, 5.0), "skipped": "failed"},
    ]
    assert [r["system"] for r in measured(records)] == ["dledgermq"]


def test_medians_over_runs_per_scenario_size_system():
    records = [
        rec(0, "nats", PIPELINED, 100.0),
        rec(1, "nats", PIPELINED, 300.0),
        rec(2, "nats", PIPELINED, 200.0),
        rec(0, "nats", PIPELINED, 7.0, size=128),
        rec(0, "nats", ONE_AT_A_TIME, 50.0, p99_ms=4.0),
        rec(1, "nats", ONE_AT_A_TIME, 70.0, p99_ms=2.0),
    ]
    figures = medians(records)
    assert figures[(PIPELINED, 1024, "nats")]["msgs_per_s"] == 200.0
    assert figures[(PIPELINED, 1024, "nats")]["runs"] == 3
    assert figures[(PIPELINED, 128, "nats")]["msgs_per_s"] == 7.0
    # An even number of runs: the mean of the middle two.
    assert figures[(ONE_AT_A_TIME, 1024, "nats")]["msgs_per_s"] == 60.0
    assert figures[(ONE_AT_A_TIME, 1024, "nats")]["p99_ms"] == 3.0
    assert "p99_ms" not in figures[(PIPELINED, 1024, "nats")]


def test_ratios_are_paired_within_a_run_then_medianed():
    # dledgermq is twice as fast in every run, though the machine drifts tenfold between
    # runs: pairing within a run gives exactly 2, a ratio of medians would not.
    records = [
        rec(0, "dledgermq", PIPELINED, 200.0),
        rec(0, "nats", PIPELINED, 100.0),
        rec(1, "dledgermq", PIPELINED, 2000.0),
        rec(1, "nats", PIPELINED, 1000.0),
        rec(2, "dledgermq", PIPELINED, 20.0),
        rec(2, "nats", PIPELINED, 10.0),
    ]
    assert pair_ratios(records)[(PIPELINED, 1024, "nats")]["msgs_per_s"] == [2.0, 2.0, 2.0]
    assert median_ratios(records)[(PIPELINED, 1024, "nats")]["msgs_per_s"] == 2.0


def test_ratio_skips_runs_where_a_side_is_missing_or_zero():
    records = [
        rec(0, "dledgermq", PIPELINED, 300.0),
        rec(0, "rabbitmq", PIPELINED, 100.0),
        rec(1, "dledgermq", PIPELINED, 300.0),  # the peer failed in run 1
        {**rec(1, "rabbitmq", PIPELINED, 100.0), "skipped": "start failed"},
        rec(2, "dledgermq", PIPELINED, 0.0),
        rec(2, "rabbitmq", PIPELINED, 100.0),
        rec(3, "rabbitmq", PIPELINED, 100.0),  # dledgermq missing in run 3
    ]
    assert pair_ratios(records)[(PIPELINED, 1024, "rabbitmq")]["msgs_per_s"] == [3.0]


def test_one_at_a_time_ratios_include_p99_and_only_matching_sizes():
    records = [
        rec(0, "dledgermq", ONE_AT_A_TIME, 400.0, p99_ms=3.0),
        rec(0, "nats", ONE_AT_A_TIME, 800.0, p99_ms=2.0),
        rec(0, "nats", ONE_AT_A_TIME, 800.0, size=128, p99_ms=1.0),
    ]
    ratios = median_ratios(records)
    assert ratios[(ONE_AT_A_TIME, 1024, "nats")] == {"msgs_per_s": 0.5, "p99_ms": 1.5}
    assert (ONE_AT_A_TIME, 128, "nats") not in ratios


def test_markdown_table_lists_base_first_with_ratios_skips_and_notes():
    records = [
        rec(0, "nats", PIPELINED, 1000.0),
        rec(0, "dledgermq", PIPELINED, 1500.0),
        rec(0, "dledgermq", ONE_AT_A_TIME, 400.0, p50_ms=2.0, p99_ms=5.0, p999_ms=9.0),
        rec(0, "nats", ONE_AT_A_TIME, 500.0, p50_ms=1.0, p99_ms=4.0, p999_ms=8.0),
        {"system": "rabbitmq", "skipped": "rabbitmq-server: apt-get failed"},
    ]
    text = render_markdown(records, notes=["2 busy cores"], title="T")
    lines = text.splitlines()
    assert lines[0] == "# T"
    assert "## pipelined" in lines
    assert "## one at a time" in lines
    pipelined = lines[lines.index("## pipelined") :]
    rows = [line for line in pipelined if line.startswith("| 1 KiB")]
    assert rows[0].startswith("| 1 KiB | dledgermq | 1,500 | 1.5 | - | 1 |")
    assert rows[1].startswith("| 1 KiB | nats | 1,000 | 1.0 | 1.50 | 1 |")
    one = lines[lines.index("## one at a time") :]
    assert "| 1 KiB | nats | 500 | 1.00 | 4.00 | 8.00 | 0.80 | 1.25 | 1 |" in one
    assert "- rabbitmq: rabbitmq-server: apt-get failed" in lines
    assert "- 2 busy cores" in lines


@pytest.mark.parametrize(("size", "label"), [(128, "128 B"), (1024, "1 KiB"), (16384, "16 KiB")])
def test_markdown_size_labels(size, label):
    text = render_markdown([rec(0, "dledgermq", PIPELINED, 1.0, size=size)])
    assert f"| {label} | dledgermq |" in text


def test_markdown_of_nothing_measured_still_renders():
    text = render_markdown([{"system": "nats", "skipped": "x"}])
    assert "- nats: x" in text
    assert "## pipelined" not in text
