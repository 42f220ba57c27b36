"""Two RepairActors over two byte-identical CommitLogs, wired to each other in process.

Goal: a record damaged on one node is found (by its scrubber, or a reader's report), never
taken from a peer unchecked, and rewritten with the peer's intact copy so the files are
identical again; a peer whose copy is damaged too does not make things worse; a node only
serves and repairs committed (dispatched) records.
Method: real CommitLogs, readers and pykka threads; the writer is a minimal actor owning
the damaged log (it handles `RepairRecord` with the real `CommitLog.repair`); time is a
manual `Tick`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest

from dledgermq.actors.commitlog_writer import RepairRecord
from dledgermq.actors.published import Published
from dledgermq.actors.repair import (
    Damaged,
    PeerFrame,
    RepairActor,
    RepairOptions,
    RepairStats,
)
from dledgermq.actors.supervisor import tell
from dledgermq.actors.ticker import Tick
from dledgermq.replication.repair import RepairFrame, RepairReply, RepairRequest
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import (
    BLANK_SIZE,
    HEADER_SIZE,
    MAGIC_BLANK,
    MessageDraft,
    peek_header,
)
from dledgermq.store.segment import segment_path
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)
SEGMENT = 64 * 1024


class LogOwner(pykka.ThreadingActor):
    """Stands in for the CommitLogWriterActor: the one thread that writes the log."""

    def __init__(self, log: CommitLog) -> None:
        super().__init__()
        self._log = log

    def on_receive(self, message: Any) -> None:
        assert isinstance(message, RepairRecord), message
        message.on_done(self._log.repair(message.offset, message.data))


@dataclass
class Node:
    directory: Path
    log: CommitLog
    stats: Published[RepairStats]
    actor: pykka.ActorRef[Any]
    owner: pykka.ActorRef[Any]
    sent: list[tuple[int, RepairFrame]]


def fill(directory: Path, entries: int) -> list[tuple[int, int]]:
    """Entries of three 300-byte messages (crossing segments); returns record places."""
    log = CommitLog.open(directory, SEGMENT)
    places = []
    for i in range(entries):
        drafts = [
            MessageDraft(topic="T", queue_id=0, body=bytes([i % 251]) * 300, properties={})
            for _ in range(3)
        ]
        result = log.append_entry(drafts, term=1, index=i + 1, store_timestamp_ms=i)
        places += result.positions
    log.sync()
    log.close()
    return places


def flip(directory: Path, offset: int, at: int = HEADER_SIZE + 5) -> None:
    path = segment_path(directory, offset - offset % SEGMENT)
    with path.open("r+b") as file:
        file.seek(offset % SEGMENT + at)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0x04]))


def read_all(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node, list[tuple[int, int]]]]:
    places = fill(tmp_path / "n1", 200)
    shutil.copytree(tmp_path / "n1", tmp_path / "n2")
    nodes: dict[int, Node] = {}
    fatal: list[tuple[str, BaseException]] = []

    def start(raft_id: int, scrub: int) -> Node:
        directory = tmp_path / f"n{raft_id}"
        log = CommitLog.open(directory, SEGMENT)
        stats: Published[RepairStats] = Published(RepairStats())
        sent: list[tuple[int, RepairFrame]] = []

        def send(peer: int, frame: RepairFrame) -> bool:
            sent.append((peer, frame))
            tell(nodes[peer].actor, PeerFrame(raft_id, frame))  # may be stopping already
            return True

        owner = LogOwner.start(log)
        actor = RepairActor.start(
            CommitLogReader(directory, SEGMENT),
            log_start=0,
            dispatched=Published(log.write_offset),
            writer=owner,
            send=send,
            options=RepairOptions(SEGMENT, (3 - raft_id,), scrub_bytes_per_s=scrub),
            stats=stats,
            on_fatal=lambda name, error: fatal.append((name, error)),
        )
        return Node(directory, log, stats, actor, owner, sent)

    nodes[1] = start(1, 0)
    nodes[2] = start(2, 256 * 1024)
    yield nodes[1], nodes[2], places
    for node in nodes.values():
        node.actor.stop()
        node.owner.stop()
        node.log.close()
    assert fatal == [], f"a repair actor failed: {fatal}"


def tick_until(node: Node, predicate: Any, what: str) -> None:
    now = [0]

    def step() -> bool:
        now[0] += 100
        node.actor.tell(Tick(now[0]))
        return bool(predicate())

    wait_until(step, timeout_s=20, what=what)


def test_the_scrubber_finds_a_flipped_bit_and_the_peer_copy_repairs_it(pair) -> None:
    healthy, damaged, places = pair
    offset = places[400][0]  # in the second segment
    flip(damaged.directory, offset)
    assert read_all(damaged.directory) != read_all(healthy.directory)
    tick_until(damaged, lambda: damaged.stats.value.repaired == 1, "the repair")
    assert read_all(damaged.directory) == read_all(healthy.directory)
    assert damaged.stats.value.found == 1
    assert damaged.stats.value.outstanding == ()


def test_a_damaged_header_is_repaired_too(pair) -> None:
    healthy, damaged, places = pair
    offset = places[10][0]
    flip(damaged.directory, offset, at=4)  # the size field: the record cannot be skipped
    damaged.actor.tell(Damaged(offset))
    tick_until(damaged, lambda: damaged.stats.value.repaired == 1, "the repair")
    assert read_all(damaged.directory) == read_all(healthy.directory)


def test_a_copy_damaged_on_the_peer_too_is_never_written(pair) -> None:
    healthy, damaged, places = pair
    offset = places[50][0]
    flip(damaged.directory, offset)
    flip(healthy.directory, offset, at=HEADER_SIZE + 9)
    before = read_all(damaged.directory)
    damaged.actor.tell(Damaged(offset))
    tick_until(damaged, lambda: len(damaged.sent) >= 3, "three asks")
    assert damaged.stats.value.outstanding == (offset,)
    assert damaged.stats.value.repaired == 0
    assert read_all(damaged.directory) == before
    # The peer found out about its own damage while serving, and asked back.
    assert wait_until(lambda: healthy.stats.value.found == 1, timeout_s=10)


def test_nothing_at_or_above_the_committed_end_is_served_or_repaired(pair) -> None:
    healthy, damaged, _ = pair
    end = healthy.log.write_offset
    healthy.actor.ask(PeerFrame(2, RepairRequest(end)))
    [(peer, reply)] = healthy.sent
    assert peer == 2
    assert isinstance(reply, RepairReply)
    assert (reply.offset, reply.data, reply.reason) == (end, None, "not committed here")
    damaged.actor.ask(Damaged(end + 10))  # ask: returns once handled
    damaged.actor.ask(Tick(100))
    assert damaged.stats.value.found == 0
    assert not damaged.sent


def test_a_refill_request_is_served_whole_records_of_one_segment(pair) -> None:
    healthy, _, places = pair
    offset = places[5][0]
    healthy.actor.ask(PeerFrame(2, RepairRequest(offset, 2000)))
    [(_, reply)] = healthy.sent
    assert isinstance(reply, RepairReply)
    assert reply.data is not None
    # As many whole records as fit in 2,000 bytes, byte for byte the log's.
    want = [(o, s) for o, s in places[5:] if o + s - offset <= 2000]
    assert len(reply.data) == sum(s for _, s in want)
    assert reply.data == read_all(healthy.directory)[offset : offset + len(reply.data)]
    # A run stops at its segment's end (the padding is its last part).
    last = max(o for o, _ in places if o < SEGMENT)
    healthy.actor.ask(PeerFrame(2, RepairRequest(last, 1024 * 1024)))
    reply = healthy.sent[-1][1]
    assert isinstance(reply, RepairReply)
    assert reply.data is not None
    assert last + len(reply.data) < SEGMENT
    assert reply.data == read_all(healthy.directory)[last : last + len(reply.data)]
    assert peek_header(reply.data, len(reply.data) - BLANK_SIZE)[0] == MAGIC_BLANK
