"""`limits.consumer_lease_ms`: bounded, and in a Raft group long enough that the reserve a
consumer keeps (a quarter of the lease) outlasts a deposed leader (two election timeouts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dledgermq.config import ConfigError, parse_config

RAFT = """
cluster: C
secret: sixteen-characters-secret
namesrvs: [{id: ns1, port: 19876}]
brokers:
  - name: b
    mode: raft
    replication: {election_timeout_ms: 500, heartbeat_interval_ms: 100}
    nodes: [{id: n1, port: 20911, peer_port: 20912}]
"""


def test_the_default_lease_is_20_s_and_can_be_set(tmp_path: Path) -> None:
    config = parse_config(RAFT, base_dir=tmp_path)
    assert config.groups[0].limits.consumer_lease_ms == 20_000
    config = parse_config(RAFT + "limits: {consumer_lease_ms: 4001}\n", base_dir=tmp_path)
    assert config.groups[0].limits.consumer_lease_ms == 4_001


@pytest.mark.parametrize(
    ("lease_ms", "message"),
    [(999, "within 1000..600000"), (600_001, "within 1000..600000"), (4_000, "8 x election")],
)
def test_bad_leases_are_refused(tmp_path: Path, lease_ms: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(RAFT + f"limits: {{consumer_lease_ms: {lease_ms}}}\n", base_dir=tmp_path)
