"""`dledgermq consume --orderly | --broadcast`: the consume command's two other modes.

`--orderly` locks queues at the broker like an orderly consumer of the group (an orderly
heartbeat to each broker group's writer; only the queues granted), reads them in queue
order, commits, and releases the locks. `--broadcast` reads every queue from offsets kept
in a local file (`--offset-file`, default `~/.dledgermq/offsets/<group>/default.json`)
and stores its progress there, never on the broker (RocketMQ's broadcasting mode).

Thin, like cli_client.py: the Python client does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from dledgermq.client import Message, MessageQueue, PullConsumer
from dledgermq.client.leases import QueueLeases
from dledgermq.client.offset_store import LocalOffsetStore, OffsetFileError, default_offset_file
from dledgermq.client.push_consumer import default_client_id
from dledgermq.errors import MQError

LOCK_RETRY_S = 0.5


def add_mode_args(consume: argparse.ArgumentParser) -> None:
    modes = consume.add_mutually_exclusive_group()
    modes.add_argument(
        "--orderly",
        action="store_true",
        help="lock the group's queues at the broker (orderly consumer) and read them in order",
    )
    modes.add_argument(
        "--broadcast",
        action="store_true",
        help="broadcasting mode: every queue, offsets in a local file (see --offset-file)",
    )
    consume.add_argument(
        "--offset-file",
        help="with --broadcast: where this consumer keeps its offsets "
        "(default ~/.dledgermq/offsets/GROUP/default.json)",
    )


def check_mode_args(args: argparse.Namespace, error: type[Exception]) -> None:
    if args.offset_file and not args.broadcast:
        raise error("--offset-file goes with --broadcast")


async def consume_with_mode(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
    if args.broadcast:
        return await _consume_broadcast(args, addrs)
    return await _consume_orderly(args, addrs)


async def _consume_broadcast(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
    from dledgermq.cli import cluster as cli

    store = LocalOffsetStore(args.offset_file or default_offset_file(args.group), args.group)
    try:
        await asyncio.to_thread(store.load)
    except OffsetFileError as err:
        raise cli.CliError(str(err)) from err
    async with PullConsumer(addrs, args.group) as consumer:
        queues = await consumer.fetch_queues(args.topic)
        offsets = {
            mq: await _broadcast_start(consumer, store, mq, args.from_where) for mq in queues
        }
        got = await _read(consumer, queues, offsets, args, None)
    if not args.no_commit:
        try:
            await asyncio.to_thread(store.save, offsets)
        except OSError as err:
            raise cli.CliError(f"cannot write the offset file {store.path}: {err}") from err
    return got


async def _broadcast_start(
    consumer: PullConsumer, store: LocalOffsetStore, mq: MessageQueue, start: str | int
) -> int:
    offset = store.get(mq)
    if offset is not None:
        return offset
    return await consumer.initial_offset(mq, start)


async def _consume_orderly(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
    from dledgermq.cli import cluster as cli
    from dledgermq.cli.topic import _start_offset

    client_id = default_client_id()
    leases = QueueLeases()
    deadline = time.monotonic() + args.wait
    async with PullConsumer(addrs, args.group) as consumer:
        queues = await consumer.fetch_queues(args.topic)
        brokers = sorted({mq.broker_name for mq in queues})
        try:
            granted = await _lock(consumer, args, brokers, client_id, leases)
            while not granted and time.monotonic() < deadline:
                await asyncio.sleep(LOCK_RETRY_S)
                granted = await _lock(consumer, args, brokers, client_id, leases)
            if not granted:
                raise cli.CliError(
                    f"no queue of {args.topic} could be locked for group {args.group}: other "
                    "orderly consumers hold them, or a broker is in its grace period after a "
                    "restart or failover; wait with --wait SECONDS"
                )
            offsets = {mq: await _start_offset(consumer, mq, args.from_where) for mq in granted}
            got = await _read(consumer, sorted(granted), offsets, args, leases)
            if not args.no_commit:
                await consumer.commit_offsets(offsets)
            await consumer.release(client_id, sorted(granted))
        finally:
            for broker in brokers:
                with contextlib.suppress(MQError):  # The locks then expire by themselves.
                    await consumer.leave(args.topic, broker, client_id)
    return got


async def _lock(
    consumer: PullConsumer,
    args: argparse.Namespace,
    brokers: list[str],
    client_id: str,
    leases: QueueLeases,
) -> set[MessageQueue]:
    """One orderly heartbeat per broker group (claiming nothing: this command holds no
    queue yet); the queues granted, their leases noted. The command reads only while a
    lease is valid (no renewal: it is short)."""
    granted: set[MessageQueue] = set()
    for broker in brokers:
        sent_at = time.monotonic()
        assignment, lease_ms = await consumer.heartbeat_topics(
            args.topic,
            broker,
            {args.topic: args.tags},
            client_id=client_id,
            strategy="average",
            held={},
        )
        mine = {MessageQueue(args.topic, broker, q) for q in assignment.get(args.topic, [])}
        leases.granted(mine, sent_at, lease_ms / 1000)
        granted |= mine
    return granted


async def _read(
    consumer: PullConsumer,
    queues: list[MessageQueue],
    offsets: dict[MessageQueue, int],
    args: argparse.Namespace,
    leases: QueueLeases | None,
) -> list[Message]:
    """Up to --count messages: each queue drained in queue order, pass after pass until
    --wait ends; a queue whose lock (`leases`, orderly) ran out is not read further."""
    from dledgermq.cli.topic import _pull

    got: list[Message] = []
    deadline = time.monotonic() + args.wait
    while len(got) < args.count:
        readable = [mq for mq in queues if leases is None or leases.valid(mq, time.monotonic())]
        progressed = False
        for mq in readable:
            while len(got) < args.count:
                taken = await _pull(consumer, mq, offsets, args, len(got), deadline)
                if not taken:
                    break
                got.extend(taken)
                progressed = True
        if not readable or (not progressed and time.monotonic() >= deadline):
            break
    return got
