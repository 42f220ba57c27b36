"""How a node takes part in its group, one builder per mode: a Raft member (with its
repair actor), a master or slave of a classic pair, or a standalone broker. Each answers a
`Replica`: the role the API and the broker's own writers read, how an entry is submitted
(proposed to Raft or appended by the writer), and the actors of the mode that need ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pykka

from dledgermq.actors.commitlog_writer import Append
from dledgermq.actors.file_syncer import SaveFile
from dledgermq.actors.published import Published, ReplicaRole, Watermarks
from dledgermq.actors.raft_node import Propose
from dledgermq.actors.repair import Damaged, RepairActor, RepairOptions, RepairStats
from dledgermq.actors.supervisor import tell
from dledgermq.api.context import SubmitEntry
from dledgermq.bridge import ReplyTo
from dledgermq.broker.layout import NodeLayout
from dledgermq.clock import Clock
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.node.recovery import RecoveredStore
from dledgermq.replication.master_slave_member import HAMember
from dledgermq.replication.raft_log import ProposedBatch, SummarySaver
from dledgermq.replication.raft_member import RaftMember, start_raft_member
from dledgermq.store.commitlog import CommitLogReader
from dledgermq.store.record import MessageDraft

if TYPE_CHECKING:
    from dledgermq.node.broker import BrokerHooks


@dataclass(frozen=True, slots=True)
class Replica:
    role: Published[ReplicaRole]
    submit: SubmitEntry
    timed: tuple[pykka.ActorRef[Any], ...] = ()
    raft: RaftMember | None = None
    repair_stats: Published[RepairStats] | None = None


def raft_replica(  # noqa: PLR0913 - the collaborators start_actors built before it
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    *,
    recovered: RecoveredStore,
    layout: NodeLayout,
    marks: Watermarks,
    writer: pykka.ActorRef[Any],
    reput: pykka.ActorRef[Any],
    file_syncer: pykka.ActorRef[Any],
    hooks: BrokerHooks,
) -> Replica:
    """Start the Raft member (after the writer: it appends through it) and its repair."""
    store, commitlog = group.store, recovered.commitlog
    raft = start_raft_member(
        config,
        group,
        node,
        reader=CommitLogReader(layout.commitlog, store.segment_size_bytes),
        entries=recovered.entries,
        applied_offset=recovered.dispatcher.dispatched_offset,
        hard_state_path=layout.hard_state,
        writer=writer,
        reput=reput,
        disk_full=marks.disk_full,
        on_fatal=hooks.on_fatal,
        summary=_summary_saver(store.restart_scan_bytes, file_syncer, layout),
    )
    assert raft.node is not None
    repair = _start_repair(
        group,
        layout,
        log_start=commitlog.min_offset,
        marks=marks,
        writer=writer,
        raft=raft,
        hooks=hooks,
    )
    stats = None
    if repair is not None:
        stats, raft.repair = repair
        report = partial(_report_damage, raft.repair)
        recovered.dispatcher.on_damaged = raft.raft_log.on_damaged = report
    timed = (raft.node, raft.repair) if raft.repair is not None else (raft.node,)
    return Replica(raft.role, _propose_to(raft.node, hooks.clock), timed, raft, stats)


def master_slave_replica(ha: HAMember, writer: pykka.ActorRef[Any]) -> Replica:
    """A master appends through its writer; a slave refuses writes through its role
    (broker_id > 0). Its HA actor (started around the writer) needs ticks."""
    return Replica(ha.role, _append_to(writer), (ha.actor,) if ha.actor else ())


def standalone_replica(writer: pykka.ActorRef[Any]) -> Replica:
    return Replica(Published(ReplicaRole("standalone", "master", 0)), _append_to(writer))


def _summary_saver(
    every_bytes: int, file_syncer: pykka.ActorRef[Any], layout: NodeLayout
) -> SummarySaver | None:
    """The Raft node's entry index summary goes to the file syncer (its fsync must not hold
    the Raft thread); 0 bytes: none is kept (every restart scans the whole log)."""
    if not every_bytes:
        return None
    return SummarySaver(
        every_bytes, lambda data: tell(file_syncer, SaveFile(layout.entry_summary, data))
    )


def _start_repair(  # noqa: PLR0913 - the collaborators start_actors built
    group: BrokerGroupConfig,
    layout: NodeLayout,
    *,
    log_start: int,
    marks: Watermarks,
    writer: pykka.ActorRef[Any],
    raft: RaftMember,
    hooks: BrokerHooks,
) -> tuple[Published[RepairStats], pykka.ActorRef[Any]] | None:
    """The RepairActor of a Raft node (None in a group of one: no peer has a copy)."""
    peers = tuple(i for i in range(1, len(group.nodes) + 1) if i != raft.raft_id)
    if not peers:
        return None
    store = group.store
    stats: Published[RepairStats] = Published(RepairStats())
    actor = RepairActor.start(
        CommitLogReader(layout.commitlog, store.segment_size_bytes),
        log_start=log_start,
        dispatched=marks.dispatched,
        writer=writer,
        send=raft.send_repair,
        options=RepairOptions(
            store.segment_size_bytes,
            peers,
            scrub_bytes_per_s=store.scrub_bytes_per_s,
            scrub_pass_pause_ms=store.scrub_pass_pause_ms,
        ),
        stats=stats,
        on_fatal=hooks.on_fatal,
    )
    return stats, actor


def _report_damage(repair: pykka.ActorRef[Any], offset: int) -> None:
    tell(repair, Damaged(offset))


def _append_to(writer: pykka.ActorRef[Any]) -> SubmitEntry:
    def submit(drafts: tuple[MessageDraft, ...], reply: ReplyTo[Any]) -> None:
        writer.tell(Append(drafts, reply))

    return submit


def _propose_to(raft_node: pykka.ActorRef[Any], clock: Clock) -> SubmitEntry:
    def submit(drafts: tuple[MessageDraft, ...], reply: ReplyTo[Any]) -> None:
        batch = ProposedBatch(drafts, clock.wall_ms())
        raft_node.tell(Propose(batch, reply))

    return submit
