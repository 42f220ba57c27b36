"""The timeline data of a chaos run: acks per second, latency per ack, fault windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.history import Fault, History, SendInvoke, SendOk
from chaos.plot import plot, series


def make_history() -> History:
    ops = [
        SendInvoke(writer="w", seq=0, msg="w-0", topic="T", t=100.0),
        SendOk(msg="w-0", broker="b", queue=0, offset=0, t=100.5),
        Fault(fault="kill", target="n1", phase="start", t=101.2),
        SendInvoke(writer="w", seq=1, msg="w-1", topic="T", t=101.3),
        SendOk(msg="w-1", broker="b", queue=0, offset=1, t=102.8),
        Fault(fault="kill", target="n1", phase="end", t=103.0),
        Fault(fault="pause", target="n2", phase="start", t=103.5),
    ]
    return History(ops)


def test_series_counts_acks_per_second_and_pairs_fault_windows() -> None:
    data = series(make_history())
    assert data.per_second == [(0, 1), (1, 0), (2, 1), (3, 0)]
    assert [round(lat, 3) for _, lat in data.latencies] == [0.5, 1.5]
    assert data.windows == [
        pytest.approx((1.2, 3.0, "kill n1")),
        pytest.approx((3.5, 3.5, "pause n2")),  # never ended: runs to the end
    ]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "timeline.png"
    assert plot(make_history(), path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
