"""Repair at start-up: a Raft node whose recovery found a damaged, fsynced record fetches
the peer's copy before anything else starts (called by node.py, then recovery runs again).

Recovery cannot go on past such a record (it cannot even tell the record's size for sure),
and cutting the log there would drop entries this node acknowledged, so the node asks its
peers over the peer transport, the way the running RepairActor does (`broker/repair.py`
has the rules), with one difference: only records below the dispatch checkpoint are
repaired here, because only there is this node's log known to be the committed one.
Bounded in time; without an intact copy the node refuses to start (StoreDamaged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from dledgermq.broker.repair import (
    RepairRefused,
    RepairReply,
    RepairRequest,
    check_repair,
    decode_repair,
    encode_repair,
    is_repair_frame,
)
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.store.commitlog import write_in_place
from dledgermq.store.errors import StoreDamaged
from dledgermq.store.record import BLANK_SIZE
from dledgermq.store.segment import segment_path, segment_start
from dledgermq.transport import Transport

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 2.0


async def repair_at_start(  # noqa: PLR0913 - what the node knows at this point
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    *,
    directory: Path,
    offset: int,
    committed_end: int,
    timeout_s: float = 60.0,
) -> None:
    """Overwrite the damaged record at `offset` with a peer's intact copy.

    Raises:
        StoreDamaged: it is above `committed_end` or missing, or no peer gave an intact
            copy in time.
    """
    segment_size = group.store.segment_size_bytes
    _check_repairable(directory, segment_size, offset, committed_end)
    raft_id = group.raft_id(node.id)
    peers = {i: (n.host, n.peer_port) for i, n in enumerate(group.nodes, start=1) if n.peer_port}
    replies: asyncio.Queue[tuple[int, RepairReply]] = asyncio.Queue()

    def deliver(src: int, payload: dict[Any, Any]) -> None:
        if not is_repair_frame(payload):
            return  # Raft frames: the Raft node is not running yet; its peers retry.
        try:
            frame = decode_repair(payload)
        except ValueError:
            return
        if isinstance(frame, RepairReply) and frame.offset == offset:
            replies.put_nowait((src, frame))

    listen = (node.host, node.peer_bind_port or peers[raft_id][1])
    transport = Transport(raft_id, listen, peers, config.secret.encode(), deliver)
    await transport.start()
    try:
        others = [p for p in peers if p != raft_id]
        deadline = time.monotonic() + timeout_s
        asks = 0
        while time.monotonic() < deadline:
            transport.post(others[asks % len(others)], encode_repair(RepairRequest(offset)))
            asks += 1
            try:
                src, reply = await asyncio.wait_for(replies.get(), ASK_TIMEOUT_S)
            except TimeoutError:
                continue
            if _accept(directory, segment_size, committed_end, src, reply):
                assert reply.data is not None
                write_in_place(directory, segment_size, offset, reply.data)
                log.warning("repaired the record at %d with node %d's copy", offset, src)
                return
    finally:
        await transport.stop()
    raise StoreDamaged(
        f"the record at {offset} is damaged and no peer gave an intact copy within "
        f"{timeout_s:.0f} s (are the others running?)"
    )


def _check_repairable(directory: Path, segment_size: int, offset: int, committed_end: int) -> None:
    start = segment_start(offset, segment_size)
    if offset >= committed_end:
        raise StoreDamaged(
            f"the record at {offset} is damaged and not known committed here (the checkpoint "
            f"is at {committed_end}), so no peer's copy can be trusted to replace it: "
            "re-seed this node (docs/ARCHITECTURE.md, 'Damaged records')."
        )
    path = segment_path(directory, start)
    if not path.exists() or path.stat().st_size < offset - start + BLANK_SIZE:
        raise StoreDamaged(
            f"{path} ends before {offset}, below the checkpoint at {committed_end}: fsynced "
            f"CommitLog data is missing: re-seed this node (docs/ARCHITECTURE.md, "
            "'Damaged records')."
        )


def _accept(
    directory: Path, segment_size: int, committed_end: int, src: int, reply: RepairReply
) -> bool:
    if reply.data is None:
        log.warning("node %d has no copy of the record at %d: %s", src, reply.offset, reply.reason)
        return False
    try:
        check_repair(
            reply.offset,
            reply.data,
            segment_size=segment_size,
            repairable_end=committed_end,
            following=_following(directory, segment_size, reply.offset + len(reply.data)),
        )
    except RepairRefused as exc:
        log.warning("refusing node %d's copy: %s", src, exc)
        return False
    return True


def _following(directory: Path, segment_size: int, end: int) -> bytes | None:
    """This node's bytes right after a copy, to check the copy's size against."""
    start = segment_start(end, segment_size)
    if end == start:
        return None
    with segment_path(directory, start).open("rb") as file:
        file.seek(end - start)
        return file.read(BLANK_SIZE)
