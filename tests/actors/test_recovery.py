"""Restart after damage: the broker refuses a store that contradicts itself and never
serves a record that fails its CRC.

Method: run a real broker (actors, manual ticks), stop it cleanly (which checkpoints),
damage the files the way a disk fault would, start again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dledgermq.actors.commitlog_writer import Append
from dledgermq.actors.reput import Read
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.queries import PullMessages
from dledgermq.broker.state import topic_put_draft
from dledgermq.broker.topics import TopicConfig
from dledgermq.config import ClusterConfig, parse_config
from dledgermq.errors import CorruptData
from dledgermq.node import BrokerHooks, open_broker
from dledgermq.store.errors import StoreDamaged
from dledgermq.store.record import MessageDraft
from tests.support import TINY_SEGMENTS, ThreadReply

HOOKS = BrokerHooks(manual_ticks=True)


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    return parse_config(TINY_SEGMENTS, base_dir=tmp_path)


def start(config: ClusterConfig):
    group, node = config.node("n1")
    return open_broker(config, group, node, hooks=HOOKS)


def ask(ref, message):
    ref.tell(message)
    return message.reply.wait()


def fill(config: ClusterConfig, sends: int) -> list:
    broker = start(config)
    try:
        ask(broker.writer, Append((topic_put_draft(TopicConfig("T", 1, 1), 1),), ThreadReply()))
        draft = MessageDraft("T", 0, os.urandom(7_000), {}, 1)
        return [ask(broker.writer, Append((draft,), ThreadReply()))[0] for _ in range(sends)]
    finally:
        broker.stop()  # a clean stop writes a checkpoint at the log end


def test_a_log_shorter_than_its_checkpoint_refuses_to_start(config: ClusterConfig) -> None:
    fill(config, 5)
    commitlog = NodeLayout(config.node_dir("n1")).commitlog
    [segment] = sorted(commitlog.iterdir())
    os.truncate(segment, segment.stat().st_size // 2)  # fsynced data lost under the node
    with pytest.raises(StoreDamaged, match="below the checkpoint"):
        start(config)


def test_a_corrupt_record_is_reported_not_skipped(config: ClusterConfig) -> None:
    sent = fill(config, 40)  # several segments; the damage goes into an older one
    victim = sent[3]
    commitlog = NodeLayout(config.node_dir("n1")).commitlog
    segments = sorted(commitlog.iterdir())
    assert victim.commitlog_offset < int(segments[-1].name)
    with (commitlog / f"{0:020d}").open("r+b") as file:
        file.seek(victim.commitlog_offset + 200)
        byte = file.read(1)
        file.seek(victim.commitlog_offset + 200)
        file.write(bytes([byte[0] ^ 0xFF]))
    broker = start(config)
    try:
        with pytest.raises(CorruptData):
            ask(broker.reput, Read(PullMessages("T", 0, 0, 10), ThreadReply()))
        after = ask(broker.reput, Read(PullMessages("T", 0, 4, 10), ThreadReply()))
        assert [m.queue_offset for m in after.messages] == list(range(4, 14))
    finally:
        broker.stop()


def pull_all(broker) -> list[tuple[int, bytes]]:
    pulled = ask(broker.reput, Read(PullMessages("T", 0, 0, 100), ThreadReply()))
    return [(m.queue_offset, m.record.body) for m in pulled.messages]


@pytest.mark.parametrize("damage", ["truncated consume queue", "garbage checkpoint"])
def test_damaged_derived_files_are_rebuilt_from_the_log(config: ClusterConfig, damage: str) -> None:
    sent = fill(config, 6)
    layout = NodeLayout(config.node_dir("n1"))
    broker = start(config)
    try:
        before = pull_all(broker)
    finally:
        broker.stop()
    if damage == "garbage checkpoint":
        layout.checkpoint.write_bytes(b"not a checkpoint")
    else:
        last_file = sorted((layout.consume_queues / "T" / "0").iterdir())[-1]
        os.truncate(last_file, last_file.stat().st_size - 20 - 7)  # lose a unit and a half
    broker = start(config)
    try:
        assert pull_all(broker) == before
        assert [offset for offset, _ in before] == [m.queue_offset for m in sent]
        # New sends continue after the last acknowledged offset, never reusing one.
        draft = MessageDraft("T", 0, b"next", {}, 1)
        assert ask(broker.writer, Append((draft,), ThreadReply()))[0].queue_offset == len(sent)
    finally:
        broker.stop()
