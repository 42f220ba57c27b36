"""cluster.yml parsing: the shipped files are valid; every inconsistency fails fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from dledgermq.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
namesrvs: [{id: ns1, port: 9876}]
brokers: [{name: b, nodes: [{id: n1, port: 10911}]}]
"""


def test_shipped_and_embedded_configs_are_valid() -> None:
    shipped = load_config(ROOT / "cluster.yml")
    embedded = load_config(None)
    assert shipped.groups == embedded.groups
    assert shipped.data_dir == ROOT / "data"
    group, node = shipped.node("n1")
    assert group.name == "broker-a"
    assert node.port == 10911
    assert group.store.flush == "sync"


def test_overrides_and_defaults(tmp_path: Path) -> None:
    text = MINIMAL + (
        "store: {flush: async, segment_size_bytes: 1048576}\n"
        "limits: {max_message_bytes: 65536, max_batch_bytes: 262144}\n"
    )
    config = parse_config(text, base_dir=tmp_path)
    group = config.groups[0]
    assert group.store.flush == "async"
    assert group.store.segment_size_bytes == 1048576
    assert group.limits.max_message_bytes == 65536
    assert group.limits.max_long_poll_ms == 15_000  # default kept
    assert config.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("store: {flush: sometimes}", "flush must be one of"),
        ("store: {segment_size_bytes: 10}", "segment_size_bytes"),
        ("store: {bogus: 1}", "unknown field"),
        ("limits: {max_message_bytes: yes}", "expected int"),
        ("heartbeat_interval_ms: 200000", "broker_expiry_ms"),
    ],
)
def test_bad_values_fail_with_the_field_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(MINIMAL + extra + "\n", base_dir=tmp_path)


def test_duplicate_ports_and_unknown_nodes(tmp_path: Path) -> None:
    text = """
namesrvs: [{id: ns1, port: 9876}]
brokers: [{name: b, nodes: [{id: n1, port: 9876}]}]
"""
    with pytest.raises(ConfigError, match="duplicate host:port"):
        parse_config(text, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown broker node"):
        parse_config(MINIMAL, base_dir=tmp_path).node("n9")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("a: [", base_dir=tmp_path)
