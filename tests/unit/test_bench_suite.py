"""The peer suite's arithmetic: summaries, medians over runs, ratios paired within one run,
and the Markdown table. Pure functions only; no broker or peer is started here."""

from __future__ import annotations

import pytest

from bench.aggregate import (
    CONSUME,
    E2E,
    FAILOVER,
    ONE_AT_A_TIME,
    PIPELINED,
    TITLES,
    e2e_summary,
    failover_summary,
    first_ack_after,
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


# --- scenarios 3 and 4: consume, end to end, failover ------------------------------------


def test_e2e_summary_counts_undelivered_messages_as_errors():
    latencies = [0.002] * 99 + [0.050]
    figures = e2e_summary(latencies, sent=110, size=1024, elapsed_s=1.0)
    assert figures["messages"] == 100
    assert figures["sent"] == 110
    assert figures["errors"] == 10
    assert figures["p50_ms"] == 2.0
    assert figures["p99_ms"] == 50.0


def test_e2e_summary_never_reports_negative_errors():
    assert e2e_summary([0.001, 0.001], sent=1, size=8, elapsed_s=1.0)["errors"] == 0


def test_e2e_summary_reports_send_to_ack_percentiles_apart():
    figures = e2e_summary([0.030] * 10, sent=10, size=8, elapsed_s=1.0, acks_s=[0.002] * 10)
    assert figures["p50_ms"] == 30.0
    assert figures["ack_p50_ms"] == 2.0
    assert figures["ack_p99_ms"] == 2.0


def test_failover_summary_median_max_and_unrecovered_kill():
    figures = failover_summary([1.2, 0.8, 3.0, 1.0, 0.9])
    assert figures == {
        "kills": 5,
        "misses": 0,
        "median_s": 1.0,
        "max_s": 3.0,
        "gaps_s": [1.2, 0.8, 3.0, 1.0, 0.9],
    }
    stuck = failover_summary([1.0, float("inf"), 2.0])
    assert stuck["median_s"] == 2.0
    assert stuck["max_s"] == float("inf")
    assert failover_summary([]) == {"kills": 0, "misses": 0, "gaps_s": []}


def test_failover_summary_counts_kills_that_missed_the_leader_apart():
    # 1 ms cannot be an election: that kill hit a node no longer leading.
    figures = failover_summary([4.7, 0.001, 4.9, 4.3])
    assert figures["kills"] == 3
    assert figures["misses"] == 1
    assert figures["median_s"] == 4.7
    assert figures["max_s"] == 4.9
    assert figures["gaps_s"] == [4.7, 0.001, 4.9, 4.3]


def test_first_ack_after_ignores_sends_started_before_the_kill():
    acks = [(0.0, 0.5), (0.9, 1.6), (1.1, 1.4), (1.2, 1.3)]  # (started, acknowledged)
    # The send started at 0.9 was answered after the kill at 1.0, but it does not count.
    assert first_ack_after(acks, killed_at=1.0) == pytest.approx(0.3)
    assert first_ack_after(acks, killed_at=2.0) == float("inf")


def test_new_scenarios_get_medians_ratios_and_tables():
    records = [
        rec(0, "dledgermq", CONSUME, 40_000.0),
        rec(0, "nats", CONSUME, 20_000.0),
        rec(0, "dledgermq", E2E, 500.0, p50_ms=3.0, p99_ms=9.0, p999_ms=12.0),
        rec(0, "nats", E2E, 500.0, p50_ms=1.0, p99_ms=3.0, p999_ms=4.0),
        {
            "run": 0,
            "system": "dledgermq",
            "scenario": FAILOVER,
            "size": 1024,
            "kills": 5,
            "misses": 0,
            "median_s": 1.5,
            "max_s": 2.5,
        },
        {
            "run": 0,
            "system": "nats",
            "scenario": FAILOVER,
            "size": 1024,
            "kills": 5,
            "misses": 1,
            "median_s": 3.0,
            "max_s": 6.0,
        },
        {
            "run": 0,
            "system": "rabbitmq",
            "scenario": FAILOVER,
            "size": 1024,
            "not_applicable": "n/a (one node)",
        },
    ]
    ratios = median_ratios(records)
    assert ratios[(CONSUME, 1024, "nats")] == {"msgs_per_s": 2.0}
    assert ratios[(E2E, 1024, "nats")] == {"p99_ms": 3.0}
    assert ratios[(FAILOVER, 1024, "nats")] == {"median_s": 0.5}
    assert medians(records)[(FAILOVER, 1024, "dledgermq")]["max_s"] == 2.5
    lines = render_markdown(records).splitlines()
    failover = lines[lines.index(f"## {TITLES[FAILOVER]}") :]
    assert "| 1 KiB | nats | 5 | 1 | 3.00 | 6.00 | 0.50 | 1 |" in failover
    assert "| - | rabbitmq | n/a (one node) | - | - | - | - | - |" in failover
    consume = lines[lines.index(f"## {TITLES[CONSUME]}") :]
    assert "| 1 KiB | nats | 20,000 | 20.5 | 2.00 | 1 |" in consume


def test_scenario_selection_accepts_short_names_and_keeps_suite_order():
    from bench.suite import parse_scenarios

    assert parse_scenarios("failover,one,e2e") == (ONE_AT_A_TIME, E2E, FAILOVER)
    assert parse_scenarios("pipelined,consume") == (PIPELINED, CONSUME)
    with pytest.raises(SystemExit):
        parse_scenarios("one,bogus")


def test_e2e_and_failover_counts_are_bounded_by_their_own_settings():
    from bench.suite import Settings

    settings = Settings(count=100_000, e2e_rate=500.0, e2e_seconds=10.0, kills=5)
    assert settings.messages(E2E, 1024) == 5_000
    assert settings.messages(FAILOVER, 1024) == 5
    assert settings.messages(CONSUME, 16384) == 31_250  # the 512 MB cap
