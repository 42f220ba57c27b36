"""One node of a master/slave broker group inside a broker process (composition, called
by node.py; the counterpart of replication/raft_member.py).

nodes[0] is the master (peer id 1); a slave's peer id and brokerId are its 1-based
position. Builds the HA master or slave actor, the peer transport (master: to every
slave; slave: to the master) with strictly validated frames, and the published role and
replication status.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Protocol

import pykka

from dledgermq.actors.ha_master import FromSlave, HAMasterActor, HAMasterOptions
from dledgermq.actors.ha_slave import FromMaster, HASlaveActor, HASlaveOptions
from dledgermq.actors.published import Published, ReplicaRole, Watermarks
from dledgermq.actors.supervisor import FatalHandler, tell
from dledgermq.broker.layout import NodeLayout
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.replication.master_slave import (
    HAAck,
    HAFrame,
    HAFrameError,
    HAPush,
    HAReport,
    HAStatus,
    LogTail,
    decode_frame,
    encode_frame,
    tail_of,
)
from dledgermq.store.commitlog import CommitLog, CommitLogReader
from dledgermq.store.record import check_record
from dledgermq.store.segment import segment_start
from dledgermq.transport import Transport

log = logging.getLogger(__name__)


class FramePoster(Protocol):
    """What the HA actors need of the peer transport (tests plug in an in-process one)."""

    def post(self, peer: int, payload: dict[Any, Any]) -> bool: ...


class HAMember:
    """This node in a master/slave group (nodes[0] is the master, peer id 1; a slave's peer
    id and broker_id are its 1-based position): its published role and replication status,
    its HA actor, and the peer transport (master: to every slave; slave: to the master)."""

    MASTER_ID = 1

    def __init__(self, config: ClusterConfig, group: BrokerGroupConfig, node: NodeConfig) -> None:
        self.peer_id = group.raft_id(node.id)
        self.is_master = self.peer_id == self.MASTER_ID
        self.sync = self.is_master and group.replication.ha_mode == "sync"
        self._group = group
        master, ha_mode = group.nodes[0], group.replication.ha_mode
        if self.is_master:
            self.role = Published(ReplicaRole("master_slave", "master", 0))
            self.status = Published(HAStatus(ha_mode, "master"))
        else:
            self.role = Published(
                ReplicaRole("master_slave", "slave", self.peer_id, 0, master.id, master.addr)
            )
            self.status = Published(HAStatus(ha_mode, "slave", (), master.id, master.addr))
        self._listen = (node.host, node.peer_bind_port or 0)
        self._addresses = {
            i: (n.host, n.peer_port)
            for i, n in enumerate(group.nodes, start=1)
            if n.peer_port and (self.is_master or i in (self.MASTER_ID, self.peer_id))
        }
        self._secret = config.secret.encode()
        self.actor: pykka.ActorRef[Any] | None = None
        self.transport: FramePoster | None = None  # Frames are dropped until it runs.
        self._transport: Transport | None = None

    def slave_tail(self, layout: NodeLayout, commitlog: CommitLog) -> LogTail | None:
        """A slave's log tail, which its reports carry (None on the master): the last
        record of the segment holding the end, found by one scan of that segment."""
        if self.is_master:
            return None
        end, size = commitlog.write_offset, commitlog.segment_size_bytes
        start = segment_start(end - 1, size) if end else 0
        reader = CommitLogReader(layout.commitlog, size)
        try:
            headers = reader.iter_records(start, end, check_record)
            return tail_of(headers, end_offset=end, last_index=commitlog.last_index)
        finally:
            reader.close()

    def start_master(
        self,
        layout: NodeLayout,
        log_end: int,
        marks: Watermarks,
        reput: pykka.ActorRef[Any],
        on_fatal: FatalHandler,
    ) -> pykka.ActorRef[Any] | None:
        """Start the HA master actor (None on a slave); before the writer, which tells it."""
        if not self.is_master:
            return None
        group, store = self._group, self._group.store
        self.actor = HAMasterActor.start(
            CommitLogReader(layout.commitlog, store.segment_size_bytes),
            log_end=log_end,
            marks=marks,
            reput=reput,
            send=self.send,
            status=self.status,
            options=HAMasterOptions(
                store.segment_size_bytes,
                group.replication.ha_mode,
                group.replication.sync_timeout_ms,
                {i: n.id for i, n in enumerate(group.nodes, start=1) if i != self.MASTER_ID},
            ),
            on_fatal=on_fatal,
        )
        return self.actor

    def start_slave(
        self,
        writer: pykka.ActorRef[Any],
        reput: pykka.ActorRef[Any],
        tail: LogTail,
        on_fatal: FatalHandler,
    ) -> None:
        """Start the HA slave actor, after the writer it feeds."""
        assert not self.is_master
        self.actor = HASlaveActor.start(
            writer=writer,
            reput=reput,
            send=self.send,
            tail=tail,
            options=HASlaveOptions(
                self.MASTER_ID,
                fsync=self._group.store.flush == "sync",
                session=random.getrandbits(62),  # Unique per run: old frames are ignored.
            ),
            on_fatal=on_fatal,
        )

    def send(self, peer: int, frame: HAFrame) -> bool:
        """On the HA actor's thread; False while no transport runs."""
        transport = self.transport
        return transport is not None and transport.post(peer, encode_frame(frame))

    def deliver(self, src: int, payload: dict[Any, Any]) -> None:
        """On the loop thread: validate a peer's frame, then tell the HA actor."""
        try:
            frame = decode_frame(payload)
        except HAFrameError as exc:
            log.warning("dropping a frame from peer %d: %s", src, exc)
            return
        message: FromSlave | FromMaster
        if self.is_master and src != self.MASTER_ID and isinstance(frame, HAReport | HAAck):
            message = FromSlave(src, frame)
        elif not self.is_master and src == self.MASTER_ID and isinstance(frame, HAPush):
            message = FromMaster(frame)
        else:
            log.warning("dropping an unexpected %s from peer %d", type(frame).__name__, src)
            return
        assert self.actor is not None
        tell(self.actor, message)

    async def start_transport(self) -> None:
        self._transport = Transport(
            self.peer_id, self._listen, self._addresses, self._secret, self.deliver
        )
        await self._transport.start()
        self.transport = self._transport

    async def stop_transport(self) -> None:
        if self._transport is not None:
            await self._transport.stop()
