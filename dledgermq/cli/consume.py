"""`dledgermq consume TOPIC --group GROUP`: read up to `--count` messages as a group.

Three modes. By default the group's committed offsets on the broker say where each queue
starts, every queue of the topic is read, and the offsets are committed at the end.
`--orderly` locks queues at the broker like an orderly consumer of the group (an orderly
heartbeat to each broker group's writer; only the queues granted), reads them in queue
order, commits, and releases the locks. `--broadcast` reads every queue from offsets kept
in a local file (`--offset-file`, default `~/.dledgermq/offsets/<group>/default.json`)
and stores its progress there, never on the broker (RocketMQ's broadcasting mode).

Thin, like every client family: the Python client does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import time
from typing import Any

from dledgermq.cli.common import CliError, client_parser, emit_messages, namesrv_addrs, run_async
from dledgermq.client import Message, MessageQueue, PullConsumer
from dledgermq.client.leases import QueueLeases
from dledgermq.client.offset_store import LocalOffsetStore, OffsetFileError, default_offset_file
from dledgermq.client.push_consumer import default_client_id
from dledgermq.errors import MQError, OffsetOutOfRange

MAX_CONSUME_WAIT_S = 60.0
LOCK_RETRY_S = 0.5


def add_commands(commands: Any) -> None:
    consume = client_parser(
        commands, "consume", "consume messages as a group and commit its offsets"
    )
    consume.add_argument("topic")
    consume.add_argument("--group", required=True)
    consume.add_argument("--count", type=int, default=10, help="stop after N messages")
    consume.add_argument("--tags", default="*", help="`*` or `A || B`")
    consume.add_argument(
        "--from",
        dest="from_where",
        type=start_point,
        default="first",
        metavar="first|last|TIME",
        help="where a group without committed offsets starts: first (default), last, or "
        "the first message stored at/after TIME (ms since the epoch, or ISO 8601 such as "
        "2026-11-22T09:30:00, local time unless it has an offset)",
    )
    consume.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for more messages when fewer than --count",
    )
    consume.add_argument("--no-commit", action="store_true", help="do not commit offsets")
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
    consume.set_defaults(handler=consume_command)


def start_point(text: str) -> str | int:
    """`--from`: "first", "last", or a time as ms since the epoch or ISO 8601."""
    if text in ("first", "last"):
        return text
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not first, last, ms since the epoch or an ISO 8601 time"
        ) from None


def consume_command(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 100_000:
        raise CliError("--count must be within 1..100000")
    if not 0 <= args.wait <= MAX_CONSUME_WAIT_S:
        raise CliError(f"--wait must be within 0..{MAX_CONSUME_WAIT_S:.0f} seconds")
    if args.offset_file and not args.broadcast:
        raise CliError("--offset-file goes with --broadcast")
    if args.broadcast:
        consume = _consume_broadcast
    elif args.orderly:
        consume = _consume_orderly
    else:
        consume = _consume
    messages = run_async(consume(args, namesrv_addrs(args)))
    emit_messages(args, messages, "(no messages)")
    return 0


async def _consume(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
    """Read up to --count messages across the topic's queues from the group's offsets."""
    got: list[Message] = []
    async with PullConsumer(addrs, args.group) as consumer:
        queues = await consumer.fetch_queues(args.topic)
        offsets = {mq: await _start_offset(consumer, mq, args.from_where) for mq in queues}
        deadline = time.monotonic() + args.wait
        while len(got) < args.count:
            progressed = False
            for mq in queues:
                if len(got) >= args.count:
                    break
                result = await _pull(consumer, mq, offsets, args, len(got), deadline)
                if result:
                    got.extend(result)
                    progressed = True
            if not progressed and time.monotonic() >= deadline:
                break
        if not args.no_commit:
            await consumer.commit_offsets(offsets)
    return got


async def _consume_broadcast(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
    store = LocalOffsetStore(args.offset_file or default_offset_file(args.group), args.group)
    try:
        await asyncio.to_thread(store.load)
    except OffsetFileError as err:
        raise CliError(str(err)) from err
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
            raise CliError(f"cannot write the offset file {store.path}: {err}") from err
    return got


async def _broadcast_start(
    consumer: PullConsumer, store: LocalOffsetStore, mq: MessageQueue, start: str | int
) -> int:
    offset = store.get(mq)
    if offset is not None:
        return offset
    return await consumer.initial_offset(mq, start)


async def _consume_orderly(args: argparse.Namespace, addrs: list[str]) -> list[Message]:
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
                raise CliError(
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


async def _pull(
    consumer: PullConsumer,
    mq: MessageQueue,
    offsets: dict[MessageQueue, int],
    args: argparse.Namespace,
    have: int,
    deadline: float,
) -> list[Message]:
    wait_ms = max(0, min(int((deadline - time.monotonic()) * 1000), 1_000))
    try:
        result = await consumer.pull(
            mq,
            offsets[mq],
            max_messages=min(256, args.count - have),
            tags=args.tags,
            wait_ms=wait_ms,
        )
    except OffsetOutOfRange as exc:
        offsets[mq] = int(exc.details.get("min_offset", 0))
        return []
    taken = result.messages[: args.count - have]
    offsets[mq] = (
        taken[-1].queue_offset + 1 if len(taken) < len(result.messages) else result.next_offset
    )
    return taken


async def _start_offset(consumer: PullConsumer, mq: MessageQueue, start: str | int) -> int:
    committed = await consumer.fetch_offset(mq)
    if committed is not None:
        return committed
    return await consumer.initial_offset(mq, start)
