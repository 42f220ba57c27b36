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
        ("store: {restart_scan_bytes: -1}", "restart_scan_bytes must be at least 0"),
        ("store: {checkpoint_interval_ms: 0}", "checkpoint_interval_ms must be at least 1"),
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


MASTER_AND_SLAVE = (
    "[{id: m, port: 10911, peer_port: 10912}, {id: s, port: 10921, peer_port: 10922}]"
)


def master_slave(
    replication: str = "{}", nodes: str = MASTER_AND_SLAVE, secret: str = "0123456789abcdef"
) -> str:
    return f"""
secret: {secret}
namesrvs: [{{id: ns1, port: 9876}}]
brokers:
  - name: b
    mode: master_slave
    replication: {replication}
    nodes: {nodes}
"""


def test_a_master_slave_group_defaults_to_async_replication(tmp_path: Path) -> None:
    config = parse_config(master_slave(), base_dir=tmp_path)
    group = config.groups[0]
    assert (group.replication.ha_mode, group.replication.sync_timeout_ms) == ("async", 3000)
    assert [n.id for n in group.nodes] == ["m", "s"]  # nodes[0] is the master
    sync = parse_config(master_slave("{ha_mode: sync, sync_timeout_ms: 1000}"), base_dir=tmp_path)
    assert sync.groups[0].replication.ha_mode == "sync"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (master_slave("{ha_mode: semi}"), "ha_mode must be one of"),
        (master_slave("{sync_timeout_ms: 10}"), "sync_timeout_ms must be within"),
        (master_slave("{sync_timeout_ms: -5}"), "sync_timeout_ms must be within"),
        (master_slave("{ha_mode: sync, sync_timeout_ms: 5000}"), "below limits.send_timeout_ms"),
        (master_slave("{durability: majority_memory}"), "apply to raft groups"),
        (master_slave("{ha_mod: sync}"), "unknown field"),
        (master_slave(nodes="[{id: m, port: 10911, peer_port: 10912}]"), "takes 2..9 nodes"),
        (
            master_slave(nodes="[{id: m, port: 10911, peer_port: 10912}, {id: s, port: 10921}]"),
            "need a peer_port",
        ),
        (master_slave(secret="short"), "secret"),
    ],
)
def test_bad_master_slave_settings_fail_with_the_field_named(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, base_dir=tmp_path)


def test_ha_settings_belong_to_master_slave_groups_only(tmp_path: Path) -> None:
    text = MINIMAL.replace("nodes:", "replication: {ha_mode: sync}, nodes:")
    with pytest.raises(ConfigError, match="apply to master_slave groups, not standalone"):
        parse_config(text, base_dir=tmp_path)


def test_auto_create_topic_is_off_by_default_and_takes_4_queues(tmp_path: Path) -> None:
    limits = parse_config(MINIMAL, base_dir=tmp_path).groups[0].limits
    assert (limits.auto_create_topic, limits.auto_create_topic_queues) == (False, 4)
    text = MINIMAL + "limits: {auto_create_topic: true, auto_create_topic_queues: 2}\n"
    limits = parse_config(text, base_dir=tmp_path).groups[0].limits
    assert (limits.auto_create_topic, limits.auto_create_topic_queues) == (True, 2)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ("{auto_create_topic: 1}", "expected bool"),
        ("{auto_create_topic: 'yes'}", "expected bool"),
        ("{auto_create_topic_queues: 0}", "auto_create_topic_queues"),
        ("{auto_create_topic_queues: 2000}", "auto_create_topic_queues"),
    ],
)
def test_bad_auto_create_settings_fail_fast(tmp_path: Path, limits: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(MINIMAL + f"limits: {limits}\n", base_dir=tmp_path)


def test_zone_of_a_group_and_a_node_override(tmp_path: Path) -> None:
    text = """
namesrvs: [{id: ns1, port: 9876}]
brokers:
  - {name: a, zone: az1, nodes: [{id: n1, port: 10911}]}
  - {name: b, nodes: [{id: n2, port: 10921, zone: az2}]}
  - {name: c, nodes: [{id: n3, port: 10931}]}
"""
    config = parse_config(text, base_dir=tmp_path)
    zones = [g.zone_of(n) for g in config.groups for n in g.nodes]
    assert zones == ["az1", "az2", None]


@pytest.mark.parametrize("zone", ["''", "'a b'", "3", "'" + "z" * 256 + "'"])
def test_bad_zones_fail_fast(tmp_path: Path, zone: str) -> None:
    text = f"""
namesrvs: [{{id: ns1, port: 9876}}]
brokers: [{{name: a, zone: {zone}, nodes: [{{id: n1, port: 10911}}]}}]
"""
    with pytest.raises(ConfigError, match="zone"):
        parse_config(text, base_dir=tmp_path)
