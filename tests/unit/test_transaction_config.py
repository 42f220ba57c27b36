"""The `transactions` section of cluster.yml: defaults, per-group override, bad values.

Goal: RocketMQ's defaults (6 s immunity, 30 s interval, 15 checks) apply unless the file
says otherwise; a group's own section wins over the cluster-wide one; out-of-range values
fail at start-up naming the field.
"""

from __future__ import annotations

import pytest

from dledgermq.config import ConfigError, TransactionConfig, parse_config

pytestmark = pytest.mark.timeout(10)
BASE = """
namesrvs: [{id: ns1, port: 19876}]
brokers:
  - {name: a, nodes: [{id: n1, port: 20911}]}
  - {name: b, nodes: [{id: n2, port: 20912}], transactions: {max_check_times: 3}}
"""


def test_defaults_and_overrides(tmp_path) -> None:
    config = parse_config(BASE, base_dir=tmp_path)
    assert config.groups[0].transactions == TransactionConfig(6.0, 30.0, 15, 10_000)
    config = parse_config(BASE + "transactions: {check_immunity_s: 1}\n", base_dir=tmp_path)
    a, b = (g.transactions for g in config.groups)
    assert (a.check_immunity_s, a.max_check_times) == (1.0, 15)
    assert (b.check_immunity_s, b.max_check_times) == (1.0, 3)


@pytest.mark.parametrize(
    "section",
    [
        "{check_immunity_s: -1}",
        "{check_interval_s: 0}",
        "{max_check_times: 0}",
        "{max_pending: 0}",
        "{max_check_times: many}",
        "{unknown: 1}",
    ],
)
def test_bad_values_fail_naming_the_field(tmp_path, section: str) -> None:
    with pytest.raises(ConfigError, match="transactions"):
        parse_config(BASE + f"transactions: {section}\n", base_dir=tmp_path)
