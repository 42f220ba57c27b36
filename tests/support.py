"""Building real broker nodes in-process for actor and API tests (tiny segments)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dledgermq.config import ClusterConfig, parse_config

SMALL_STORE = """
store:
  segment_size_bytes: 1048576
  flush: {flush}
  flush_interval_ms: 50
  checkpoint_interval_ms: 200
  cq_units_per_file: 1000
  index_slots_per_file: 1024
  index_entries_per_file: 4096
limits:
  max_message_bytes: 65536
  max_batch_messages: 100
  max_batch_bytes: 262144
  max_long_poll_ms: 5000
  send_timeout_ms: 5000
"""


# 128 KiB segments, so a few dozen sends roll several segments.
TINY_SEGMENTS = """
namesrvs: [{id: ns1, port: 19999}]
brokers: [{name: b, nodes: [{id: n1, port: 19998}]}]
store:
  segment_size_bytes: 131072
  file_reserved_hours: 1
  retention_check_interval_ms: 1
  cq_units_per_file: 4
limits: {max_message_bytes: 8192, max_batch_bytes: 32768}
"""


def small_cluster(
    tmp_path: Path, *, flush: str = "sync", namesrv_port: int = 19876, broker_port: int = 20911
) -> ClusterConfig:
    text = f"""
cluster: TestCluster
data_dir: {tmp_path / "data"}
heartbeat_interval_ms: 1000
tick_ms: 20
namesrvs: [{{id: ns1, port: {namesrv_port}, broker_expiry_ms: 5000, scan_interval_ms: 500}}]
brokers: [{{name: broker-a, nodes: [{{id: n1, port: {broker_port}}}]}}]
""" + SMALL_STORE.format(flush=flush)
    return parse_config(text, base_dir=tmp_path)


class ThreadReply:
    """A `ReplyTo` for tests that runs on actor threads: wait on it with a timeout."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def ok(self, value: Any) -> None:
        self.value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout_s: float = 10.0) -> Any:
        assert self._done.wait(timeout_s), "no reply in time"
        if self.error is not None:
            raise self.error
        return self.value


class GatedSyncer:
    """A flusher's syncer whose first fsync blocks until `release` is set, so that flush
    requests pile up in the flusher's inbox deterministically."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def sync(self, start: int, end: int) -> None:
        self.calls.append((start, end))
        self.entered.set()
        assert self.release.wait(10)

    def close(self) -> None:
        pass
