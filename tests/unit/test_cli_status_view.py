"""`cluster status` summaries: a group shows whether it takes sends and its zone.

Method: the pure summary and renderer over hand-written /status documents.
"""

from __future__ import annotations

from pathlib import Path

from dledgermq.cli.status_view import cluster_summary, render
from dledgermq.config import parse_config

CONFIG = """
namesrvs: [{id: ns1, port: 9876}]
brokers:
  - {name: a, zone: az1, nodes: [{id: n1, port: 10911}]}
  - {name: b, nodes: [{id: n2, port: 10921}]}
"""


def status(node_id: str, *, writable: bool, zone: str | None) -> dict[str, object]:
    return {
        "node_id": node_id,
        "broker_id": 0,
        "role": "master",
        "term": 0,
        "raft": None,
        "ha": None,
        "write_offset": 10,
        "dispatched_offset": 10,
        "writable": writable,
        "perm": 6 if writable else 4,
        "zone": zone,
    }


def test_a_write_disabled_group_is_flagged_with_its_zone(tmp_path: Path) -> None:
    config = parse_config(CONFIG, base_dir=tmp_path)
    groups = cluster_summary(
        config,
        {
            "n1": status("n1", writable=False, zone="az1"),
            "n2": status("n2", writable=True, zone=None),
        },
    )
    assert [(g["name"], g["writable"], g["zone"]) for g in groups] == [
        ("a", False, "az1"),
        ("b", True, None),
    ]
    lines = render([], groups).splitlines()
    head_a = next(line for line in lines if line.startswith("group a"))
    head_b = next(line for line in lines if line.startswith("group b"))
    assert "WRITES DISABLED" in head_a
    assert "zone=az1" in head_a
    assert "WRITES DISABLED" not in head_b
    assert "zone=" not in head_b


def test_a_group_without_a_writer_says_nothing_about_writes(tmp_path: Path) -> None:
    config = parse_config(CONFIG, base_dir=tmp_path)
    [group_a, _] = cluster_summary(config, {"n1": None, "n2": None})
    assert (group_a["writable"], group_a["zone"]) == (None, None)
    assert "WRITES DISABLED" not in render([], [group_a])
