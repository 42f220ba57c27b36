"""Composition root: builds one broker (or NameServer) process and wires everything.

Order matters and lives only here: open and recover the store, re-dispatch what the
checkpoint does not cover, start actors (flusher, reput, writer, ticker), then the asyncio
loop with the HTTP API and NameServer registration; on SIGTERM/SIGINT stop in reverse so
the last flush and checkpoint happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pykka
from aiohttp import web

from dledgermq.actors.commitlog_writer import CommitLogWriterActor, WriterOptions
from dledgermq.actors.flusher import FlusherActor, FlusherOptions
from dledgermq.actors.published import Watermarks
from dledgermq.actors.reput import ReleaseHeldPulls, ReputActor, ReputOptions, ReputPublished
from dledgermq.actors.supervisor import FatalHandler, exit_process, tell
from dledgermq.actors.ticker import Ticker
from dledgermq.api.broker_app import BrokerContext, BrokerIdentity, make_broker_app
from dledgermq.broker.dispatch import Dispatcher, StoreOptions
from dledgermq.broker.layout import NodeLayout
from dledgermq.config import BrokerGroupConfig, ClusterConfig, NodeConfig
from dledgermq.store.commitlog import CommitLog, CommitLogReader, CommitLogSyncer
from dledgermq.store.disk import disk_used_ratio
from dledgermq.store.errors import StoreDamaged

log = logging.getLogger(__name__)
REGISTER_RETRY_S = 2.0
REGISTER_TIMEOUT_S = 5.0
GC_GEN0_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class BrokerHooks:
    """What tests may replace: time (tick by hand through `BrokerNode.ticker`) and the
    disk probe. Production uses the defaults."""

    manual_ticks: bool = False
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

    def stop(self) -> None:
        """Writer first (no new entries), then the flusher (last fsync, pending confirms),
        then the ReputActor (last dispatch and a checkpoint covered by that fsync)."""
        self.ticker.stop()
        for ref in (self.writer, self.flusher, self.reput):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(timeout=30)


@dataclass(frozen=True, slots=True)
class RecoveredStore:
    """The store after recovery: a complete log, durable, and dispatched to its end."""

    commitlog: CommitLog
    syncer: CommitLogSyncer
    dispatcher: Dispatcher


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


def recover_store(
    config: ClusterConfig, group: BrokerGroupConfig, node: NodeConfig
) -> RecoveredStore:
    """Open the CommitLog (cutting a torn tail), make it durable, check the derived files
    against the checkpoint and re-dispatch what the checkpoint does not cover.

    Raises:
        StoreDamaged: the files contradict each other beyond what the log can repair.
    """
    store = group.store
    layout = NodeLayout(config.node_dir(node.id))
    commitlog = CommitLog.open(layout.commitlog, store.segment_size_bytes)
    syncer = CommitLogSyncer(layout.commitlog, store.segment_size_bytes)
    # What recovery kept may sit only in the page cache (a killed process): make it durable
    # before it counts as flushed.
    syncer.sync(commitlog.min_offset, commitlog.write_offset)
    reader = CommitLogReader(layout.commitlog, store.segment_size_bytes)
    dispatcher = Dispatcher(
        group.name,
        layout,
        StoreOptions(
            store.cq_units_per_file, store.index_slots_per_file, store.index_entries_per_file
        ),
        reader,
        log_start=commitlog.min_offset,
    )
    if dispatcher.dispatched_offset > commitlog.write_offset:
        # A checkpoint is written only once the log below it is fsynced, so this means
        # durable data was lost (disk fault, files removed): refuse rather than serve a
        # state that no longer matches the log.
        raise StoreDamaged(
            f"{layout.commitlog} ends at {commitlog.write_offset}, below the checkpoint at "
            f"{dispatcher.dispatched_offset}: fsynced CommitLog data is missing. Restore the "
            f"node's files, or delete {layout.checkpoint} and {layout.consume_queues} to "
            "rebuild them from the log that is left."
        )
    while dispatcher.dispatched_offset < commitlog.write_offset:
        dispatcher.dispatch_upto(commitlog.write_offset)
    log.info(
        "recovered %s: commitlog [%d, %d), dispatched %d",
        node.id,
        commitlog.min_offset,
        commitlog.write_offset,
        dispatcher.dispatched_offset,
    )
    return RecoveredStore(commitlog, syncer, dispatcher)


def start_actors(
    config: ClusterConfig,
    group: BrokerGroupConfig,
    node: NodeConfig,
    recovered: RecoveredStore,
    hooks: BrokerHooks,
) -> BrokerNode:
    """Start flusher, reput and writer (in that order: each knows the ones before it)."""
    store = group.store
    commitlog, syncer, dispatcher = recovered.commitlog, recovered.syncer, recovered.dispatcher
    marks = Watermarks(commitlog.write_offset)
    published = ReputPublished(marks)
    sync_flush = store.flush == "sync"
    flusher = FlusherActor.start(
        syncer,
        on_fatal=hooks.on_fatal,
        marks=marks,
        options=FlusherOptions(
            interval_ms=None if sync_flush else store.flush_interval_ms,
            start_offset=commitlog.write_offset,
        ),
    )
    reput = ReputActor.start(
        dispatcher,
        on_fatal=hooks.on_fatal,
        flusher=flusher,
        published=published,
        options=ReputOptions(store.checkpoint_interval_ms, group.limits.long_polls_max),
    )
    writer = CommitLogWriterActor.start(
        commitlog,
        on_fatal=hooks.on_fatal,
        reput=reput,
        flusher=flusher,
        marks=marks,
        options=WriterOptions(
            sync_flush=sync_flush,
            file_reserved_ms=int(store.file_reserved_hours * 3_600_000),
            retention_check_interval_ms=store.retention_check_interval_ms,
            disk_high_water_ratio=store.disk_high_water_ratio,
            disk_clean_ratio=store.disk_clean_ratio,
            disk_used_ratio=hooks.disk_used_ratio,
        ),
    )
    ticker = Ticker([writer, flusher, reput], config.tick_ms)
    if not hooks.manual_ticks:
        ticker.start()
    context = BrokerContext(
        identity=BrokerIdentity(config.cluster, group.name, 0, node.addr, node.id),
        writer=writer,
        reput=reput,
        published=published,
        limits=group.limits,
        flush=store.flush,
    )
    return BrokerNode(context, ticker, flusher=flusher, reput=reput, writer=writer)


def tune_gc() -> None:
    """Fewer collections on the message path.

    Every record on the hot path allocates a few short-lived containers, so the default
    gen-0 threshold (700) runs a collection every few messages. Objects alive after
    start-up (config, actors, caches) are frozen out of the scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 50)


def run_broker(config: ClusterConfig, node_id: str) -> int:
    """Run one broker node until SIGTERM/SIGINT; returns the process exit code."""
    group, node = config.node(node_id)
    broker = open_broker(config, group, node)
    tune_gc()
    try:
        asyncio.run(_serve_broker(config, node, broker.context))
    finally:
        broker.stop()
    log.info("broker %s stopped", node_id)
    return 0


async def _serve_broker(config: ClusterConfig, node: NodeConfig, context: BrokerContext) -> None:
    stop = _stop_on_signals()
    loop = asyncio.get_running_loop()
    topics_changed = asyncio.Event()

    def notify_topics_changed() -> None:  # Called on the ReputActor's thread.
        loop.call_soon_threadsafe(topics_changed.set)

    context.published.on_topics_changed = notify_topics_changed
    runner = web.AppRunner(make_broker_app(context), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, node.host, node.port).start()
    log.info("broker %s serving on http://%s", node.id, node.addr)
    registrar = asyncio.create_task(_register_forever(config, context, topics_changed))
    try:
        await stop.wait()
    finally:
        tell(context.reput, ReleaseHeldPulls())  # Held pulls would delay the shutdown.
        registrar.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await registrar
        await _unregister(config, context)
        await runner.cleanup()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def registration(context: BrokerContext) -> dict[str, Any]:
    identity = context.identity
    topics = context.published.topics.value
    return {
        "cluster": identity.cluster,
        "broker_name": identity.broker_name,
        "broker_id": identity.broker_id,
        "addr": identity.addr,
        "topics": [topics[name].to_wire() for name in sorted(topics)],
    }


async def _register_forever(
    config: ClusterConfig, context: BrokerContext, topics_changed: asyncio.Event
) -> None:
    """Heartbeat every NameServer; register at once when the topic table changes."""
    timeout = aiohttp.ClientTimeout(total=REGISTER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            topics_changed.clear()
            results = await asyncio.gather(
                *(_register_once(session, addr, context) for addr in config.namesrv_addrs)
            )
            wait_s = config.heartbeat_interval_ms / 1000 if all(results) else REGISTER_RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(topics_changed.wait(), wait_s)


async def _register_once(session: aiohttp.ClientSession, addr: str, context: BrokerContext) -> bool:
    try:
        async with session.post(f"http://{addr}/brokers", json=registration(context)) as response:
            if response.status < 300:
                return True
            log.warning("namesrv %s refused registration: %s", addr, await response.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("namesrv %s unreachable: %r", addr, exc)
    return False


async def _unregister(config: ClusterConfig, context: BrokerContext) -> None:
    identity = context.identity
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for addr in config.namesrv_addrs:
            url = f"http://{addr}/brokers/{identity.broker_name}/{identity.broker_id}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.delete(url):
                    pass


def run_namesrv(config: ClusterConfig, namesrv_id: str) -> int:
    from dledgermq.namesrv.app import run_namesrv as serve_namesrv

    ns = config.namesrv(namesrv_id)

    async def main() -> None:
        stop = _stop_on_signals()
        await serve_namesrv(
            ns.host,
            ns.port,
            expiry_ms=ns.broker_expiry_ms,
            scan_interval_ms=ns.scan_interval_ms,
            stop=stop,
        )

    asyncio.run(main())
    return 0
