"""Repair at start-up: a Raft node whose recovery found a damaged, fsynced record fetches
the peer's copy before anything else starts (called by node.py, then recovery runs again).

Recovery cannot go on past such a record (it cannot even tell the record's size for sure),
and cutting the log there would drop entries this node acknowledged, so the node asks its
peers over the peer transport, the way the running RepairActor does (`replication/repair.py`
has the rules), with one difference: only records below the dispatch checkpoint are
repaired here, because only there is this node's log known to be the committed one.
Meanwhile the node serves its own intact records below that checkpoint to peers, so two
nodes repairing at the same time do not wait on each other.
Bounded in time; without an intact copy the node refuses to start (StoreDamaged).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.replication.repair import (
    REPAIR_SPAN_MAX,
    RepairRefused,
    RepairReply,
    RepairRequest,
    check_repair,
    check_run,
    decode_repair,
    encode_repair,
    is_repair_frame,
    serve_repair,
)
from dledgermq.store.commitlog import refill_at, write_in_place
from dledgermq.store.errors import CorruptRecord, StoreDamaged
from dledgermq.store.reader import CommitLogReader
from dledgermq.store.record import (
    BLANK_SIZE,
    HEADER_SIZE,
    MAGIC_MESSAGE,
    MAX_RECORD_SIZE,
    check_record,
    peek_header,
)
from dledgermq.store.segment import list_segments, segment_path, segment_start
from dledgermq.transport import Transport

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 2.0
REFUSED_PAUSE_S = 0.2


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
    """Overwrite the damaged record at `offset` with a peer's intact copy or, where the
    segment file was cut short inside it, refill the file from there with peers' copies.

    Raises:
        StoreDamaged: it is above `committed_end`, or no peer gave an intact copy in time.
    """
    segment_size = group.store.segment_size_bytes
    if offset >= committed_end:
        raise StoreDamaged(
            f"the record at {offset} is damaged and not known committed here (the checkpoint "
            f"is at {committed_end}), so no peer's copy can be trusted to replace it: "
            "re-seed this node (docs/ARCHITECTURE.md, 'Damaged records')."
        )
    cut_at = _cut_short_at(directory, segment_size, offset)
    reader = CommitLogReader(directory, segment_size)
    served = functools.partial(
        serve_repair, reader.read_bytes, committed_end=committed_end, segment_size=segment_size
    )
    try:
        async with _PeerCopies(config, group, node, served, timeout_s) as peers:
            await _repair_from(peers, directory, segment_size, offset, cut_at, committed_end)
    finally:
        reader.close()


async def _repair_from(
    peers: _PeerCopies,
    directory: Path,
    segment_size: int,
    offset: int,
    cut_at: int | None,
    committed_end: int,
) -> None:
    if cut_at is None:
        src, (data, _) = await peers.copy(
            offset,
            0,
            lambda data: _check_in_place(directory, segment_size, committed_end, offset, data),
        )
        write_in_place(directory, segment_size, offset, data)
        log.warning("repaired the record at %d with node %d's copy", offset, src)
        return
    # A sealed segment must be refilled to its end, the active one to the checkpoint
    # at least, then on as far as peers have committed it (this node may have
    # acknowledged entries past its checkpoint; a leader that sees the log end before
    # its match re-probes from there, but refilling here is faster than replication).
    start = segment_start(offset, segment_size)
    seg_end = start + segment_size
    sealed = any(s > start for s in list_segments(directory, segment_size))
    must_reach = seg_end if sealed else committed_end
    pos = cut_at
    while pos < seg_end:
        accept = functools.partial(_check_run, pos, segment_size=segment_size, end=seg_end)
        span = min(REPAIR_SPAN_MAX, seg_end - pos)
        if pos < must_reach:
            src, (data, after) = await peers.copy(pos, span, accept)
        elif (copy := await peers.copy_if_any(pos, span, accept)) is not None:
            src, (data, after) = copy
        else:
            break
        refill_at(directory, segment_size, pos, data, seal=after == seg_end)
        pos = after
    log.warning(
        "refilled %s from %d to %d (cut short) with peers' copies",
        segment_path(directory, start),
        cut_at,
        pos,
    )


class _PeerCopies:
    """Asks peers round robin for copies over a temporary peer transport (the Raft node is
    not running yet), within one deadline for the whole repair, and answers their asks
    with `serve`."""

    def __init__(
        self,
        config: ClusterConfig,
        group: BrokerGroupConfig,
        node: NodeConfig,
        serve: Callable[[RepairRequest], RepairReply],
        timeout_s: float,
    ) -> None:
        raft_id = group.raft_id(node.id)
        peers = {
            i: (n.host, n.peer_port) for i, n in enumerate(group.nodes, start=1) if n.peer_port
        }
        self._others = [p for p in peers if p != raft_id]
        self._replies: asyncio.Queue[tuple[int, RepairReply]] = asyncio.Queue()
        listen = (node.host, node.peer_bind_port or peers[raft_id][1])
        self._transport = Transport(raft_id, listen, peers, config.secret.encode(), self._deliver)
        self._serve = serve
        self._deadline = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._asks = 0

    async def __aenter__(self) -> _PeerCopies:
        await self._transport.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._transport.stop()

    def _deliver(self, src: int, payload: dict[Any, Any]) -> None:
        if not is_repair_frame(payload):
            return  # Raft frames: the Raft node is not running yet; its peers retry.
        try:
            frame = decode_repair(payload)
        except ValueError:
            return
        if isinstance(frame, RepairReply):
            self._replies.put_nowait((src, frame))
            return
        try:
            reply = self._serve(frame)
        except CorruptRecord as exc:
            reply = RepairReply(frame.offset, None, f"damaged here too: {exc}")
        self._transport.post(src, encode_repair(reply))

    async def copy(
        self, offset: int, span: int, accept: Callable[[bytes], tuple[bytes, int]]
    ) -> tuple[int, tuple[bytes, int]]:
        """The first peer's copy from `offset` that `accept` takes (it returns the bytes to
        write and the offset after them, or raises RepairRefused); peers are asked again
        (one may not have committed it yet) until the deadline.

        Raises:
            StoreDamaged: no acceptable copy before the deadline.
        """
        copy = await self._ask(offset, span, accept, give_up=False)
        if copy is None:
            raise StoreDamaged(
                f"the record at {offset} is damaged or missing and no peer gave an intact "
                f"copy within {self._timeout_s:.0f} s (are the others running?)"
            )
        return copy

    async def copy_if_any(
        self, offset: int, span: int, accept: Callable[[bytes], tuple[bytes, int]]
    ) -> tuple[int, tuple[bytes, int]] | None:
        """As `copy`, but None once every peer was asked once without an acceptable copy."""
        return await self._ask(offset, span, accept, give_up=True)

    async def _ask(
        self,
        offset: int,
        span: int,
        accept: Callable[[bytes], tuple[bytes, int]],
        *,
        give_up: bool,
    ) -> tuple[int, tuple[bytes, int]] | None:
        unhelpful: set[int] = set()
        while time.monotonic() < self._deadline:
            if give_up and len(unhelpful) == len(self._others):
                return None
            peer = self._others[self._asks % len(self._others)]
            self._asks += 1
            self._transport.post(peer, encode_repair(RepairRequest(offset, span)))
            try:
                src, reply = await asyncio.wait_for(self._reply_for(offset), ASK_TIMEOUT_S)
            except TimeoutError:
                unhelpful.add(peer)
                continue
            if reply.data is None:
                log.warning("node %d has no copy of %d: %s", src, offset, reply.reason)
            else:
                try:
                    return src, accept(reply.data)
                except RepairRefused as exc:
                    log.warning("refusing node %d's copy: %s", src, exc)
            unhelpful.add(src)
            if not give_up and len(unhelpful) == len(self._others):
                unhelpful.clear()
                await asyncio.sleep(REFUSED_PAUSE_S)  # Every peer refused: not so fast.
        return None

    async def _reply_for(self, offset: int) -> tuple[int, RepairReply]:
        while True:
            src, reply = await self._replies.get()
            if reply.offset == offset:  # Else a late answer to an earlier ask.
                return src, reply


def _cut_short_at(directory: Path, segment_size: int, offset: int) -> int | None:
    """Where the segment file holding `offset` was cut short: the first record from
    `offset` on that is not wholly in the file, when every record before it is intact.
    None when a record there is damaged instead (repaired in place).

    Raises:
        StoreDamaged: the segment file is missing, or ends before `offset`.
    """
    start = segment_start(offset, segment_size)
    path = segment_path(directory, start)
    if not path.exists() or path.stat().st_size < offset - start:
        raise StoreDamaged(
            f"{path} is missing or ends before {offset}, below the checkpoint: "
            "re-seed this node (docs/ARCHITECTURE.md, 'Damaged records')."
        )
    with path.open("rb") as file:
        file.seek(offset - start)
        data = file.read()
    pos = 0
    while pos + BLANK_SIZE <= len(data):
        magic, size = peek_header(data, pos)
        room = segment_size - (offset + pos - start)
        if magic != MAGIC_MESSAGE or not HEADER_SIZE <= size <= min(MAX_RECORD_SIZE, room):
            return None  # Padding is never cut short (it is one header); else damage.
        if pos + size > len(data):
            return offset + pos
        try:
            check_record(data, pos, offset + pos)
        except CorruptRecord:
            return None
        pos += size
    return offset + pos


def _check_in_place(
    directory: Path, segment_size: int, committed_end: int, offset: int, data: bytes
) -> tuple[bytes, int]:
    check_repair(
        offset,
        data,
        segment_size=segment_size,
        repairable_end=committed_end,
        following=_following(directory, segment_size, offset + len(data)),
    )
    return data, offset + len(data)


def _check_run(offset: int, data: bytes, *, segment_size: int, end: int) -> tuple[bytes, int]:
    length, after = check_run(offset, data, segment_size=segment_size, repairable_end=end)
    return data[:length], after


def _following(directory: Path, segment_size: int, end: int) -> bytes | None:
    """This node's bytes right after a copy, to check the copy's size against."""
    start = segment_start(end, segment_size)
    if end == start:
        return None
    with segment_path(directory, start).open("rb") as file:
        file.seek(end - start)
        return file.read(BLANK_SIZE)
