"""One broker process: its actors started in order, its loop served, stopped in reverse.

Order matters and lives only here: open the recovered store (`recovery.py`; in a Raft
group the tail may be uncommitted and the leader says how far to dispatch), start actors
(flusher, reput, HA master, writer, Raft node or HA slave, ticker), then the asyncio loop
with the HTTP API, the peer transport and NameServer registration (`registrar.py`); on
SIGTERM/SIGINT stop in reverse so the last flush and checkpoint happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
from aiohttp import web

from dledgermq.actors.commitlog_writer import CommitLogWriterActor, WriterOptions
from dledgermq.actors.delay_scheduler import DelayOptions, DelaySchedulerActor
from dledgermq.actors.file_syncer import FileSyncerActor
from dledgermq.actors.flusher import FlusherActor, FlusherOptions
from dledgermq.actors.published import Published, Watermarks
from dledgermq.actors.rebalancer import RebalanceOptions, RebalancerActor
from dledgermq.actors.reput import ReleaseHeldPulls, ReputActor, ReputOptions, ReputPublished
from dledgermq.actors.supervisor import FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Ticker
from dledgermq.actors.transaction_checker import CheckerOptions, TransactionCheckerActor
from dledgermq.api.broker_app import make_broker_app
from dledgermq.api.context import BrokerContext, BrokerIdentity
from dledgermq.api.registration import RegistrationHealth
from dledgermq.broker.layout import NodeLayout
from dledgermq.broker.lock_grace import stale_writer_ms
from dledgermq.broker.topics import TopicConfig
from dledgermq.broker.transactions import CheckPolicy
from dledgermq.clock import SYSTEM_CLOCK, Clock
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.connections import ConnectionLimits, GuardedTCPSite
from dledgermq.node.process import stop_on_signals, tune_gc
from dledgermq.node.recovery import RecoveredStore, durable_floor, recover_store
from dledgermq.node.registrar import register_forever, unregister
from dledgermq.node.replicas import Replica, master_slave_replica, raft_replica, standalone_replica
from dledgermq.replication.master_slave_member import HAMember
from dledgermq.replication.raft_member import RaftMember
from dledgermq.replication.startup_repair import repair_at_start
from dledgermq.store.disk import disk_used_ratio
from dledgermq.store.errors import DamagedRecord, StoreDamaged

log = logging.getLogger(__name__)
# Damaged records repaired one by one before the node starts (each then recovers again).
STARTUP_REPAIRS_MAX = 100


@dataclass(frozen=True, slots=True)
class BrokerHooks:
    """What tests may replace: time (tick by hand through `BrokerNode.ticker`) and the
    disk probe. Production uses the defaults."""

    manual_ticks: bool = False
    clock: Clock = SYSTEM_CLOCK
    disk_used_ratio: Callable[[Path], float] = disk_used_ratio
    on_fatal: FatalHandler = exit_process


@dataclass(slots=True)
class BrokerNode:
    """The started actors of one broker, stopped in reverse order of start."""

    context: BrokerContext
    ticker: Ticker
    flusher: pykka.ActorRef[Any]
    reput: pykka.ActorRef[Any]
    writer: pykka.ActorRef[Any]
    file_syncer: pykka.ActorRef[Any]
    rebalancer: pykka.ActorRef[Any]
    delay_scheduler: pykka.ActorRef[Any]
    raft: RaftMember | None = None
    ha: HAMember | None = None
    transaction_checker: pykka.ActorRef[Any] | None = None

    def stop(self) -> None:
        """The Raft node or HA actor and the writer first (no new entries), the file
        syncer (its checkpoint goes on to the flusher), then the flusher (last fsync,
        pending confirms), then the ReputActor (last dispatch and a checkpoint covered by
        that fsync)."""
        self.ticker.stop()
        first = [self.raft.node] if self.raft is not None and self.raft.node else []
        first += [self.raft.repair] if self.raft is not None and self.raft.repair else []
        first += [self.ha.actor] if self.ha is not None and self.ha.actor else []
        first += [self.rebalancer, self.delay_scheduler]
        first += [self.transaction_checker] if self.transaction_checker is not None else []
        for ref in (*first, self.writer, self.file_syncer, self.flusher, self.reput):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(timeout=30)


def open_broker(
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    *,
    hooks: BrokerHooks | None = None,
) -> BrokerNode:
    """Open and recover the store, then start the actors (no network yet)."""
    recovered = recover_store(config, group, node)
    return start_actors(config, group, node, recovered, hooks or BrokerHooks())




def start_actors(
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    recovered: RecoveredStore,
    hooks: BrokerHooks,
) -> BrokerNode:
    """Start flusher, reput, (HA master,) writer, then the Raft node or HA slave, then the
    writer's services (in that order: each knows the ones before it)."""
    layout = NodeLayout(config.node_dir(node.id))
    marks = Watermarks(recovered.commitlog.write_offset)
    published = ReputPublished(marks)
    ha = HAMember(config, group, node) if group.mode == "master_slave" else None
    flusher, file_syncer, reput, writer = _start_store_actors(
        group, layout, recovered, marks, published, ha=ha, hooks=hooks
    )
    if group.mode == "raft":
        replica = raft_replica(
            config,
            group,
            node,
            recovered=recovered,
            layout=layout,
            marks=marks,
            writer=writer,
            reput=reput,
            file_syncer=file_syncer,
            hooks=hooks,
        )
    elif ha is not None:
        replica = master_slave_replica(ha, writer)
    else:
        replica = standalone_replica(writer)
    rebalancer, delay_scheduler, transaction_checker = _start_services(
        group, published.topics, reput, replica, marks, hooks
    )
    timed = [*replica.timed, rebalancer, delay_scheduler, transaction_checker]
    ticker = Ticker([writer, flusher, reput, *timed], config.tick_ms, hooks.clock)
    if not hooks.manual_ticks:
        ticker.start()
    raft_mode = replica.raft is not None
    context = BrokerContext(
        identity=BrokerIdentity(
            config.cluster, group.name, node.addr, node.id, zone=group.zone_of(node)
        ),
        writer=writer,
        reput=reput,
        published=published,
        limits=group.limits,
        flush=group.replication.durability if raft_mode else group.store.flush,
        submit=replica.submit,
        role=replica.role,
        raft=replica.raft.node if replica.raft is not None else None,
        raft_ids={n.id: group.raft_id(n.id) for n in group.nodes} if raft_mode else {},
        ha_status=ha.status if ha is not None else None,
        repair=replica.repair_stats,
        rebalancer=rebalancer,
        delay_levels=group.store.delay_levels,
        transaction_checker=transaction_checker,
        transactions=group.transactions,
        clock=hooks.clock,
    )
    return BrokerNode(
        context,
        ticker,
        flusher=flusher,
        reput=reput,
        writer=writer,
        file_syncer=file_syncer,
        rebalancer=rebalancer,
        delay_scheduler=delay_scheduler,
        raft=replica.raft,
        ha=ha,
        transaction_checker=transaction_checker,
    )


Ref = pykka.ActorRef[Any]


def _start_store_actors(  # noqa: PLR0913 - what start_actors built for them
    group: BrokerGroupConfig,
    layout: NodeLayout,
    recovered: RecoveredStore,
    marks: Watermarks,
    published: ReputPublished,
    *,
    ha: HAMember | None,
    hooks: BrokerHooks,
) -> tuple[Ref, Ref, Ref, Ref]:
    """The flusher, file syncer, ReputActor and writer (with a master's HA actor before
    the writer and a slave's after it): the actors every mode has."""
    store, commitlog = group.store, recovered.commitlog
    raft_mode = group.mode == "raft"
    if raft_mode:  # Durability is the group's: fsync before counting toward a majority.
        sync_flush = group.replication.durability == "majority_fsync"
    else:
        sync_flush = store.flush == "sync"
    flusher = FlusherActor.start(
        recovered.syncer,
        on_fatal=hooks.on_fatal,
        marks=marks,
        options=FlusherOptions(
            interval_ms=None if sync_flush else store.flush_interval_ms,
            start_offset=commitlog.write_offset,
        ),
    )
    file_syncer = FileSyncerActor.start(on_fatal=hooks.on_fatal)
    reput = ReputActor.start(
        recovered.dispatcher,
        on_fatal=hooks.on_fatal,
        flusher=flusher,
        file_syncer=file_syncer,
        published=published,
        options=ReputOptions(store.checkpoint_interval_ms, group.limits.long_polls_max),
    )
    # Read before the writer runs: from then on it owns the CommitLog.
    log_end = commitlog.write_offset
    slave_tail = ha.slave_tail(layout, commitlog) if ha is not None else None
    ha_master = ha.start_master(layout, log_end, marks, reput, hooks.on_fatal) if ha else None
    writer = CommitLogWriterActor.start(
        commitlog,
        on_fatal=hooks.on_fatal,
        reput=reput,
        flusher=flusher,
        marks=marks,
        ha_master=ha_master,
        clock=hooks.clock,
        options=WriterOptions(
            sync_flush=sync_flush,
            file_reserved_ms=int(store.file_reserved_hours * 3_600_000),
            retention_check_interval_ms=store.retention_check_interval_ms,
            disk_high_water_ratio=store.disk_high_water_ratio,
            disk_clean_ratio=store.disk_clean_ratio,
            disk_used_ratio=hooks.disk_used_ratio,
            hard_state_path=layout.hard_state if raft_mode else None,
            ha_sync=ha is not None and ha.sync,
        ),
    )
    if ha is not None and slave_tail is not None:
        ha.start_slave(writer, reput, slave_tail, hooks.on_fatal)
    return flusher, file_syncer, reput, writer


def _start_services(
    group: BrokerGroupConfig,
    topics: Published[dict[str, TopicConfig]],
    reput: Ref,
    replica: Replica,
    marks: Watermarks,
    hooks: BrokerHooks,
) -> tuple[Ref, Ref, Ref]:
    """The rebalancer, delay scheduler and transaction checker: they act while this node
    is its group's writer and submit entries the way its mode does."""
    rebalancer = RebalancerActor.start(
        topics,
        RebalanceOptions(
            group.name,
            lease_ms=group.limits.consumer_lease_ms,
            stale_writer_ms=stale_writer_ms(
                group.replication.election_timeout_ms if replica.raft is not None else None
            ),
        ),
        on_fatal=hooks.on_fatal,
    )
    delay_scheduler = DelaySchedulerActor.start(
        reput=reput,
        submit=replica.submit,
        role=replica.role,
        marks=marks,
        options=DelayOptions(group.store.delay_levels),
        on_fatal=hooks.on_fatal,
        clock=hooks.clock,
    )
    txn = group.transactions
    transaction_checker = TransactionCheckerActor.start(
        reput=reput,
        submit=replica.submit,
        role=replica.role,
        marks=marks,
        options=CheckerOptions(
            CheckPolicy(
                int(txn.check_immunity_s * 1000),
                int(txn.check_interval_s * 1000),
                txn.max_check_times,
            )
        ),
        on_fatal=hooks.on_fatal,
        clock=hooks.clock,
    )
    return rebalancer, delay_scheduler, transaction_checker










def run_broker(config: ClusterConfig, node_id: str, hooks: BrokerHooks | None = None) -> int:
    """Run one broker node until SIGTERM/SIGINT; returns the process exit code."""
    group, node = config.node(node_id)
    broker = _open_repaired(config, group, node, hooks)
    tune_gc()
    try:
        asyncio.run(_serve_broker(config, node, broker.context, broker.raft, broker.ha))
    finally:
        broker.stop()
    log.info("broker %s stopped", node_id)
    return 0


def _open_repaired(
    config: ClusterConfig, group: BrokerGroupConfig, node: NodeConfig, hooks: BrokerHooks | None
) -> BrokerNode:
    """`open_broker`, first repairing damaged records from peers (Raft groups), bounded."""
    repaired: set[int] = set()
    for _ in range(STARTUP_REPAIRS_MAX):
        try:
            return open_broker(config, group, node, hooks=hooks)
        except DamagedRecord as damage:  # Only a Raft node raises it.
            if len(group.nodes) < 2:
                raise StoreDamaged(f"{damage}; no replica has a copy") from damage
            if damage.offset in repaired:  # The copy fixed nothing: not a record's damage.
                raise StoreDamaged(f"{damage}, again after its repair") from damage
            repaired.add(damage.offset)
            log.error("%s: repairing it from a peer before starting", damage)
            layout = NodeLayout(config.node_dir(node.id))
            asyncio.run(
                repair_at_start(
                    config,
                    group,
                    node,
                    directory=layout.commitlog,
                    offset=damage.offset,
                    committed_end=durable_floor(layout),
                )
            )
    raise StoreDamaged(f"more than {STARTUP_REPAIRS_MAX} damaged records at start-up")


async def _serve_broker(
    config: ClusterConfig,
    node: NodeConfig,
    context: BrokerContext,
    raft: RaftMember | None,
    ha: HAMember | None = None,
) -> None:
    stop = stop_on_signals()
    loop = asyncio.get_running_loop()
    registration_changed = asyncio.Event()

    def notify() -> None:  # Called on the ReputActor's or the Raft node's thread.
        with contextlib.suppress(RuntimeError):  # The loop closed: shutting down.
            loop.call_soon_threadsafe(registration_changed.set)

    context.published.on_topics_changed = notify
    if raft is not None:
        raft.on_role_changed = notify
        await raft.start_transport()
    if ha is not None:
        await ha.start_transport()
    health = RegistrationHealth(list(config.namesrv_addrs))
    context.registration_status = health.to_wire  # /status shows `registration`.
    runner = web.AppRunner(make_broker_app(context), access_log=None)
    await runner.setup()
    limits = context.limits  # Connection cap and first-head deadline (probe D9).
    bounds = ConnectionLimits(limits.max_connections, limits.header_read_timeout_ms / 1000)
    await GuardedTCPSite(runner, node.host, node.port, limits=bounds).start()
    log.info("broker %s serving on http://%s", node.id, node.addr)
    registrar = asyncio.create_task(
        register_forever(config, context, registration_changed, health)
    )
    try:
        await stop.wait()
    finally:
        tell(context.reput, ReleaseHeldPulls())  # Held pulls would delay the shutdown.
        registrar.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await registrar
        await unregister(config, context)
        await runner.cleanup()
        if raft is not None:
            await raft.stop_transport()
        if ha is not None:
            await ha.stop_transport()


