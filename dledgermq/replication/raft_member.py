"""One node of a Raft broker group inside a broker process (composition, called by node.py).

Builds the RaftNodeActor over the CommitLog (`replication/raft_log.py`), connects it to the
peer transport (decoding frames with the proven sender and receiver ids), and publishes
the node's role: a leader is the group's writer (brokerId 0), a follower a read replica
(brokerId = its Raft id). Role changes also poke the NameServer registration so that a
new leader is routable as soon as it is elected, not at the next heartbeat.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

from dledgermq.actors.published import Published, ReplicaRole
from dledgermq.actors.raft_node import Inbound, RaftNodeActor
from dledgermq.actors.repair import PeerFrame
from dledgermq.actors.supervisor import FatalHandler, tell
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.raft.config import RaftConfig
from dledgermq.raft.driver import DriverIO
from dledgermq.raft.messages import Message
from dledgermq.raft.types import HardState, NodeId, Role, Term
from dledgermq.replication.peer_codec import CodecError, decode_message, encode_message
from dledgermq.replication.raft_log import CommitLogRaftLog, SummarySaver
from dledgermq.replication.repair import RepairFrame, decode_repair, encode_repair, is_repair_frame
from dledgermq.store.entry_layout import EntryLayout
from dledgermq.store.hard_state import load_hard_state
from dledgermq.store.reader import CommitLogReader
from dledgermq.transport import Transport

log = logging.getLogger(__name__)
# Applied entries the leader keeps in memory for followers that are slightly behind; older
# ones are read back from the CommitLog (page cache, usually).
MIRROR_KEEP_ENTRIES = 256


class RaftMember:
    """The Raft node of this process, its peer transport and its published role."""

    def __init__(
        self, group: BrokerGroupConfig, raft_id: int, raft_log: CommitLogRaftLog, secret: bytes
    ) -> None:
        self.raft_id = raft_id
        self.raft_log = raft_log
        self.role = Published(ReplicaRole("raft", Role.FOLLOWER.value, raft_id))
        # Called on the Raft node's thread after a role change (node.py: re-register).
        self.on_role_changed: Callable[[], None] = lambda: None
        self.node: pykka.ActorRef[Any] | None = None
        self.repair: pykka.ActorRef[Any] | None = None  # Gets the repair frames, if set.
        self.transport: Transport | None = None
        self._group = group
        self._secret = secret
        preferred = group.replication.preferred_leader
        self._preferred = group.raft_id(preferred) if preferred else None
        self._peers = {
            i: (n.host, n.peer_port) for i, n in enumerate(group.nodes, start=1) if n.peer_port
        }

    def start_node(
        self,
        config: RaftConfig,
        hard_state: HardState,
        *,
        applied_offset: int,
        on_fatal: FatalHandler,
    ) -> pykka.ActorRef[Any]:
        """Start the Raft node on the log; entries ending by `applied_offset` (dispatched,
        so known committed) start out compacted."""
        io = DriverIO(
            persist=self.raft_log.persist,
            send=self._send,
            on_commit=self.raft_log.on_commit,
            on_role_change=self._role_changed,
            prepare=self.raft_log.prepare,
            compact_keep=MIRROR_KEEP_ENTRIES,
            preferred_leader=self._preferred,
        )
        self.node = RaftNodeActor.start(
            config,
            io,
            hard_state=hard_state,
            log=self.raft_log.mirror(applied_offset),
            rng=random.Random(),
            on_fatal=on_fatal,
        )
        self.raft_log.node = self.node
        return self.node

    async def start_transport(self) -> None:
        """Listen and dial the peers (on the running loop); frames go to the Raft node."""
        me = self._group.nodes[self.raft_id - 1]
        listen = (me.host, me.peer_bind_port or self._peers[self.raft_id][1])
        self.transport = Transport(self.raft_id, listen, self._peers, self._secret, self._deliver)
        await self.transport.start()

    async def stop_transport(self) -> None:
        if self.transport is not None:
            await self.transport.stop()

    def _deliver(self, src: int, payload: dict[Any, Any]) -> None:
        if is_repair_frame(payload):
            self._deliver_repair(src, payload)
            return
        try:
            message = decode_message(payload, src=src, dst=self.raft_id)
        except CodecError as exc:
            log.warning("dropping a frame from peer %d: %s", src, exc)
            return
        assert self.node is not None
        tell(self.node, Inbound(message))

    def _deliver_repair(self, src: int, payload: dict[Any, Any]) -> None:
        try:
            frame = decode_repair(payload)
        except ValueError as exc:
            log.warning("dropping a repair frame from peer %d: %s", src, exc)
            return
        if self.repair is not None:
            tell(self.repair, PeerFrame(src, frame))

    def send_repair(self, peer: int, frame: RepairFrame) -> bool:
        """On the repair actor's thread; False while no transport runs."""
        transport = self.transport
        return transport is not None and transport.post(peer, encode_repair(frame))

    def _send(self, message: Message) -> None:
        """On the Raft node's thread; frames are dropped until the transport runs."""
        transport = self.transport
        if transport is not None:
            transport.post(message.dst, encode_message(message))

    def _role_changed(self, role: Role, term: Term, leader: NodeId | None) -> None:
        leader_node = self._group.node_by_raft_id(leader) if leader is not None else None
        self.role.value = ReplicaRole(
            "raft",
            role.value,
            0 if role is Role.LEADER else self.raft_id,
            term,
            leader_node.id if leader_node else None,
            leader_node.addr if leader_node else None,
        )
        self.on_role_changed()


def raft_config(config: ClusterConfig, group: BrokerGroupConfig, raft_id: int) -> RaftConfig:
    replication = group.replication
    return RaftConfig(
        node_id=raft_id,
        peers=tuple(range(1, len(group.nodes) + 1)),
        election_timeout_ticks=max(2, replication.election_timeout_ms // config.tick_ms),
        heartbeat_interval_ticks=max(1, replication.heartbeat_interval_ms // config.tick_ms),
        pending_proposals_max=group.limits.appends_in_flight_max,
    ).validate()


def start_raft_member(  # noqa: PLR0913 - the collaborators node.py built before it
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    *,
    reader: CommitLogReader,
    entries: EntryLayout | None,
    applied_offset: int,
    hard_state_path: Path,
    writer: pykka.ActorRef[Any],
    reput: pykka.ActorRef[Any],
    disk_full: Published[bool],
    on_fatal: FatalHandler,
    summary: SummarySaver | None = None,
) -> RaftMember:
    """Start the Raft node on the log's entries (`node.recover_store`), not yet networked."""
    raft_id = group.raft_id(node.id)
    assert entries is not None, "recovery rebuilds the entries of a Raft node's log"
    layout = entries
    fsync = group.replication.durability == "majority_fsync"
    raft_log = CommitLogRaftLog(
        layout,
        reader,
        writer=writer,
        reput=reput,
        fsync=fsync,
        disk_full=disk_full,
        summary=summary,
    )
    stored = load_hard_state(hard_state_path)
    hard_state = HardState(stored.term, stored.vote) if stored is not None else HardState()
    member = RaftMember(group, raft_id, raft_log, config.secret.encode())
    member.start_node(
        raft_config(config, group, raft_id),
        hard_state,
        applied_offset=applied_offset,
        on_fatal=on_fatal,
    )
    log.info(
        "raft node %s (id %d): log ending at %d, entries up to %d, term %d",
        node.id,
        raft_id,
        layout.entries.end_offset,
        layout.entries.last_index,
        hard_state.term,
    )
    return member
