"""`limits.body_read_timeout_ms`, `header_read_timeout_ms` and `max_connections` (probe
D9): defaults, overrides, and the bounds outside which a value is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dledgermq.config import ConfigError, parse_config

STANDALONE = """
cluster: C
namesrvs: [{id: ns1, port: 19876}]
brokers:
  - name: b
    nodes: [{id: n1, port: 20911}]
"""


def test_defaults_and_overrides(tmp_path: Path) -> None:
    limits = parse_config(STANDALONE, base_dir=tmp_path).groups[0].limits
    assert (limits.body_read_timeout_ms, limits.header_read_timeout_ms) == (10_000, 10_000)
    assert limits.max_connections == 4_096
    text = STANDALONE + (
        "limits: {body_read_timeout_ms: 2500, header_read_timeout_ms: 500, max_connections: 64}\n"
    )
    limits = parse_config(text, base_dir=tmp_path).groups[0].limits
    assert (limits.body_read_timeout_ms, limits.header_read_timeout_ms) == (2_500, 500)
    assert limits.max_connections == 64


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body_read_timeout_ms", 99),
        ("body_read_timeout_ms", 600_001),
        ("header_read_timeout_ms", 0),
        ("header_read_timeout_ms", 600_001),
        ("max_connections", 0),
        ("max_connections", 1_000_001),
    ],
)
def test_values_outside_the_bounds_are_refused(tmp_path: Path, field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"{field} must be within"):
        parse_config(STANDALONE + f"limits: {{{field}: {value}}}\n", base_dir=tmp_path)
