"""Start-up repair between nodes that are all starting up.

Goal: two nodes of a Raft group that both restart with damage (one a flipped bit, one a
segment file cut short) while the third is down repair each other: a node in start-up
repair serves its own intact committed records, so neither waits for the other until its
deadline (the 30-minute chaos run, seed 5, found exactly this hang).
Method: byte-identical CommitLogs on disk, real peer transports on loopback, both repairs
run at once in one event loop; afterwards both logs equal the original bytes.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from dledgermq.config import ClusterConfig, parse_config
from dledgermq.replication.startup_repair import repair_at_start
from dledgermq.store.commitlog import CommitLog
from dledgermq.store.errors import StoreDamaged
from dledgermq.store.record import HEADER_SIZE, MessageDraft
from dledgermq.store.segment import segment_path
from tests.actors.test_repair import read_all

pytestmark = pytest.mark.timeout(60)
SEGMENT = 256 * 1024  # The smallest a group's config allows.


def fill(directory: Path, entries: int) -> list[tuple[int, int]]:
    """Entries of three 1,000-byte messages (crossing segments); returns record places."""
    log = CommitLog.open(directory, SEGMENT)
    places = []
    for i in range(entries):
        drafts = [MessageDraft(topic="T", queue_id=0, body=bytes([i % 251]) * 1000)] * 3
        places += log.append_entry(drafts, term=1, index=i + 1, store_timestamp_ms=i).positions
    log.sync()
    log.close()
    return places


def flip(directory: Path, offset: int) -> None:
    with segment_path(directory, offset - offset % SEGMENT).open("r+b") as file:
        file.seek(offset % SEGMENT + HEADER_SIZE + 5)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0x04]))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raft_config(tmp_path: Path) -> ClusterConfig:
    nodes = ", ".join(
        f"{{id: n{i}, host: 127.0.0.1, port: {free_port()}, peer_port: {free_port()}}}"
        for i in (1, 2, 3)
    )
    return parse_config(
        f"""
secret: startup-repair-test-secret
namesrvs: [{{id: ns1, port: {free_port()}}}]
brokers:
  - name: b
    mode: raft
    nodes: [{nodes}]
store: {{segment_size_bytes: {SEGMENT}}}
limits: {{max_message_bytes: 8192, max_batch_bytes: 32768}}
""",
        base_dir=tmp_path,
    )


async def repair_at_once(
    config: ClusterConfig,
    dirs: dict[str, Path],
    damage: dict[str, int],
    end: int,
    timeout_s: float = 20,
) -> list[BaseException | None]:
    """Both repairs at once; what each raised (None: it succeeded)."""
    group = config.groups[0]
    nodes = {n.id: n for n in group.nodes}
    return await asyncio.gather(
        *(
            repair_at_start(
                config,
                group,
                nodes[name],
                directory=dirs[name],
                offset=offset,
                committed_end=end,
                timeout_s=timeout_s,
            )
            for name, offset in damage.items()
        ),
        return_exceptions=True,
    )


def two_copies(
    tmp_path: Path, entries: int
) -> tuple[Path, list[tuple[int, int]], int, dict[str, Path]]:
    """An original log of `entries` entries and byte-identical copies for n1 and n2;
    returns (original, record places, log end, node directories)."""
    original = tmp_path / "original"
    places = fill(original, entries)
    dirs = {name: tmp_path / name for name in ("n1", "n2")}
    for directory in dirs.values():
        shutil.copytree(original, directory)
    return original, places, places[-1][0] + places[-1][1], dirs


def test_two_nodes_repairing_at_start_serve_each_other(tmp_path: Path) -> None:
    config = raft_config(tmp_path)
    original, places, end, dirs = two_copies(tmp_path, 200)
    flipped = places[40][0]  # n1: one record damaged in the first (sealed) segment
    flip(dirs["n1"], flipped)
    cut = places[-30][0] + 17  # n2: its active segment cut inside a record
    path = segment_path(dirs["n2"], cut - cut % SEGMENT)
    with path.open("r+b") as file:
        file.truncate(cut % SEGMENT)
    assert read_all(dirs["n1"]) != read_all(original)

    outcomes = asyncio.run(repair_at_once(config, dirs, {"n1": flipped, "n2": places[-30][0]}, end))

    assert outcomes == [None, None]
    assert read_all(dirs["n1"]) == read_all(original)
    assert read_all(dirs["n2"]) == read_all(original)


def test_a_record_damaged_on_both_nodes_is_not_repaired_from_either(tmp_path: Path) -> None:
    config = raft_config(tmp_path)
    _, places, end, dirs = two_copies(tmp_path, 50)
    for directory in dirs.values():
        flip(directory, places[10][0])
    flip(dirs["n2"], places[30][0])  # n2 also repairs this one, so it serves meanwhile.
    damaged = read_all(dirs["n1"])

    n1, n2 = asyncio.run(
        repair_at_once(config, dirs, {"n1": places[10][0], "n2": places[30][0]}, end, 3)
    )

    assert isinstance(n1, StoreDamaged), n1
    assert "no peer gave an intact copy" in str(n1)
    assert read_all(dirs["n1"]) == damaged  # Nothing written from a damaged copy.
    assert n2 is None  # n2's other record came from n1, which served while it waited.
