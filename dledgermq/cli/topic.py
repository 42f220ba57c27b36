"""The client side of the CLI: topic, send, consume, query.

Thin: parse arguments, call the Python client (dledgermq.client), print. Kept apart from
cli.py so that running a server never imports the client.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dledgermq.cli.consume import add_mode_args, check_mode_args, consume_with_mode
from dledgermq.cli.dlq import add_dlq_commands
from dledgermq.cli.txn import add_txn_commands
from dledgermq.client import Admin, Message, MessageQueue, Producer, PullConsumer
from dledgermq.errors import OffsetOutOfRange

MAX_CONSUME_WAIT_S = 60.0
# `send --count N` without a sharding key: sends awaited together (auto-batched).
CLI_SENDS_IN_FLIGHT = 256


def add_client_commands(commands: Any, common: Callable[..., None]) -> None:
    def client_parser(name: str, help_text: str, parent: Any = commands) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text)
        common(parser)
        parser.add_argument("--namesrv", help="NameServer addresses host:port[,host:port]")
        return parser

    topic = commands.add_parser("topic", help="create, update, delete, list and inspect topics")
    actions = topic.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = client_parser("create", "create a topic on every broker group", actions)
    create.add_argument("topic")
    _queue_args(create)
    create.set_defaults(handler=topic_create)
    update = client_parser("update", "change queue counts or permission", actions)
    update.add_argument("topic")
    _queue_args(update)
    update.set_defaults(handler=topic_update)
    delete = client_parser("delete", "delete a topic from every broker group", actions)
    delete.add_argument("topic")
    delete.set_defaults(handler=topic_delete)
    listing = client_parser("list", "list topics known to the NameServer", actions)
    listing.set_defaults(handler=topic_list)
    status = client_parser("status", "route and per-queue offsets of a topic", actions)
    status.add_argument("topic")
    status.set_defaults(handler=topic_status)

    _add_send_command(client_parser)

    consume = client_parser("consume", "consume messages as a group and commit its offsets")
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
    add_mode_args(consume)
    consume.set_defaults(handler=consume_command)

    _add_admin_commands(commands, client_parser)
    _add_group_commands(commands, client_parser)
    add_dlq_commands(commands, client_parser)
    add_txn_commands(commands, client_parser)

    query = client_parser("query", "find messages by key or by id")
    query.add_argument("--id", help="message id (or the client's unique key)")
    query.add_argument("--key", help="message key")
    query.add_argument("--topic", help="topic of --key (default: every topic with that key)")
    query.add_argument("--begin-ms", type=int)
    query.add_argument("--end-ms", type=int)
    query.add_argument("--max", type=int, default=32)
    query.set_defaults(handler=query_command)


def _add_admin_commands(commands: Any, client_parser: Callable[..., Any]) -> None:
    admin = commands.add_parser("admin", help="operate broker groups")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    transfer = client_parser(
        "leader-transfer", "move a Raft group's leadership to another node", actions
    )
    transfer.add_argument("broker_name", help="the Raft group, e.g. broker-a")
    transfer.add_argument("--to", required=True, help="the node id that should lead")
    transfer.add_argument("--wait", type=float, default=10.0, help="seconds to wait (default 10)")
    transfer.set_defaults(handler=leader_transfer_command)
    for action, writable, text in (
        ("write-disable", False, "refuse sends to a broker group (maintenance); reads go on"),
        ("write-enable", True, "accept sends to a broker group again"),
    ):
        switch = client_parser(action, text, actions)
        switch.add_argument("broker_name", help="the broker group, e.g. broker-a")
        switch.set_defaults(handler=write_permission_command, writable=writable)


def _add_send_command(client_parser: Callable[..., Any]) -> None:
    send = client_parser("send", "send a message")
    send.add_argument("topic")
    send.add_argument("body")
    send.add_argument("--tag")
    send.add_argument("--key", action="append", default=[], help="message key (repeatable)")
    send.add_argument("--property", action="append", default=[], help="NAME=VALUE (repeatable)")
    send.add_argument("--sharding-key", help="send to the queue this key hashes to")
    send.add_argument("--count", type=int, default=1, help="send the body N times (1..100000)")
    send.add_argument("--delay-level", type=int, default=0, help="deliver after level N's delay")
    send.add_argument("--deliver-at-ms", type=int, help="deliver at this time (epoch ms)")
    send.set_defaults(handler=send_command)


def _add_group_commands(commands: Any, client_parser: Callable[..., Any]) -> None:
    group = commands.add_parser("group", help="inspect consumer groups")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    progress = client_parser(
        "progress", "per queue: broker offset, consumer offset, lag, owner", actions
    )
    progress.add_argument("group")
    progress.add_argument("--topic", required=True)
    progress.set_defaults(handler=group_progress)


def _queue_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queues", type=int, help="read and write queue count")
    parser.add_argument("--read-queues", type=int)
    parser.add_argument("--write-queues", type=int)
    parser.add_argument("--perm", type=int, choices=[2, 4, 6], help="2=write 4=read 6=both")


def _queue_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {
        "queues": args.queues,
        "read_queues": args.read_queues,
        "write_queues": args.write_queues,
        "perm": args.perm,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _cli() -> Any:
    from dledgermq.cli import cluster as cli

    return cli


# -- topics ------------------------------------------------------------------------------------


def topic_create(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.create_topic(args.topic, **_queue_fields(args))

    created = [{"broker_name": name, **config} for name, config in cli.run_async(run()).items()]
    cli.emit(
        args,
        {"created": created},
        lambda: "\n".join(
            f"created {c['topic']} on {c['broker_name']}: read={c['read_queues']} "
            f"write={c['write_queues']} perm={c['perm']}"
            for c in created
        ),
    )
    return 0


def topic_update(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            fields = _queue_fields(args)
            if "queues" in fields:
                queues = fields.pop("queues")
                fields.setdefault("read_queues", queues)
                fields.setdefault("write_queues", queues)
            return await admin.update_topic(args.topic, **fields)

    updated = [{"broker_name": name, **config} for name, config in cli.run_async(run()).items()]
    cli.emit(args, {"updated": updated}, f"updated {args.topic} on {len(updated)} broker group(s)")
    return 0


def topic_delete(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> list[str]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.delete_topic(args.topic)

    deleted = cli.run_async(run())
    cli.emit(args, {"deleted_from": deleted}, f"deleted {args.topic} from {', '.join(deleted)}")
    return 0


def topic_list(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> list[str]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.list_topics()

    topics = cli.run_async(run())
    cli.emit(args, {"topics": topics}, "\n".join(topics) or "(no topics)")
    return 0


def topic_status(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> dict[str, Any]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.topic_status(args.topic)

    status = cli.run_async(run())

    def text() -> str:
        lines = [f"{'BROKER':12} {'QUEUE':>5} {'MIN':>10} {'MAX':>10}"]
        for q in status["queues"]:
            name, queue_id, low, high = (
                q[k] for k in ("broker_name", "queue_id", "min_offset", "max_offset")
            )
            lines.append(f"{name:12} {queue_id:>5} {low:>10} {high:>10}")
        return "\n".join(lines)

    cli.emit(args, status, text)
    return 0


# -- consumer groups ---------------------------------------------------------------------------


def group_progress(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> list[dict[str, Any]]:
        async with PullConsumer(cli.namesrv_addrs(args), args.group) as consumer:
            return await consumer.progress(args.topic)

    rows = cli.run_async(run())

    def text() -> str:
        lines = [
            f"{'BROKER':12} {'QUEUE':>5} {'MAX':>10} {'CONSUMED':>10} {'LAG':>8} "
            f"{'LAST CONSUMED (stored)':>23}  OWNER"
        ]
        for r in rows:
            consumed = "-" if r["consumer_offset"] is None else r["consumer_offset"]
            lines.append(
                f"{r['broker_name']:12} {r['queue_id']:>5} {r['max_offset']:>10} "
                f"{consumed:>10} {r['lag']:>8} {_local_time(r['last_consumed_ms']):>23}  "
                f"{r['owner'] or '-'}"
            )
        lines.append(f"total lag {sum(r['lag'] for r in rows)}")
        return "\n".join(lines)

    cli.emit(args, {"group": args.group, "topic": args.topic, "queues": rows}, text)
    return 0


def _local_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


# -- send and consume --------------------------------------------------------------------------


def send_command(args: argparse.Namespace) -> int:
    cli = _cli()
    if not 1 <= args.count <= 100_000:
        raise cli.CliError("--count must be within 1..100000")
    properties = {}
    for item in args.property:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise cli.CliError(f"--property takes NAME=VALUE, got {item!r}")
        properties[name] = value

    # One sharding key's messages keep their order: one at a time. Others go many at
    # once and the producer batches them (--count 100000: seconds, not minutes).
    ordered = args.sharding_key is not None
    in_flight = 1 if ordered else CLI_SENDS_IN_FLIGHT

    async def run() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with Producer(cli.namesrv_addrs(args), auto_batch=not ordered) as producer:

            def send_one() -> Awaitable[Any]:
                return producer.send(
                    args.topic,
                    args.body,
                    tags=args.tag,
                    keys=args.key or None,
                    properties=properties or None,
                    sharding_key=args.sharding_key,
                    delay_level=args.delay_level,
                    deliver_at_ms=args.deliver_at_ms,
                )

            for start in range(0, args.count, in_flight):
                chunk = min(in_flight, args.count - start)
                sent = await asyncio.gather(*(send_one() for _ in range(chunk)))
                results += [_send_result(result) for result in sent]
        return results

    results = cli.run_async(run())
    payload = results[0] if len(results) == 1 else {"results": results}
    cli.emit(
        args,
        payload,
        lambda: "\n".join(
            f"SEND_OK msg_id={r['msg_id']} queue={r['broker_name']}/{r['queue_id']} "
            f"offset={r['queue_offset']}"
            for r in results
        ),
    )
    return 0


def _send_result(result: Any) -> dict[str, Any]:
    return {
        "status": "SEND_OK",
        "msg_id": result.msg_id,
        "unique_key": result.unique_key,
        "topic": result.queue.topic,
        "broker_name": result.queue.broker_name,
        "queue_id": result.queue.queue_id,
        "queue_offset": result.queue_offset,
        "commitlog_offset": result.commitlog_offset,
    }


def consume_command(args: argparse.Namespace) -> int:
    cli = _cli()
    if not 1 <= args.count <= 100_000:
        raise cli.CliError("--count must be within 1..100000")
    if not 0 <= args.wait <= MAX_CONSUME_WAIT_S:
        raise cli.CliError(f"--wait must be within 0..{MAX_CONSUME_WAIT_S:.0f} seconds")
    check_mode_args(args, cli.CliError)
    consume = consume_with_mode if args.orderly or args.broadcast else _consume
    messages = cli.run_async(consume(args, cli.namesrv_addrs(args)))
    _emit_messages(args, messages, "(no messages)")
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


async def _start_offset(consumer: PullConsumer, mq: MessageQueue, start: str | int) -> int:
    committed = await consumer.fetch_offset(mq)
    if committed is not None:
        return committed
    return await consumer.initial_offset(mq, start)


def _message(m: Message) -> dict[str, Any]:
    return {
        "msg_id": m.msg_id,
        "unique_key": m.unique_key,
        "topic": m.topic,
        "queue_id": m.queue_id,
        "queue_offset": m.queue_offset,
        "commitlog_offset": m.commitlog_offset,
        "tags": m.tags,
        "keys": list(m.keys),
        "properties": dict(m.properties),
        "body": m.body.decode(errors="replace"),
        "born_timestamp_ms": m.born_timestamp_ms,
        "store_timestamp_ms": m.store_timestamp_ms,
        "reconsume_times": m.reconsume_times,
    }


# -- query ------------------------------------------------------------------------------------


def leader_transfer_command(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> dict[str, Any]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.transfer_leadership(args.broker_name, args.to, wait_s=args.wait)

    status = cli.run_async(run())
    cli.emit(
        args,
        status,
        f"{status['node_id']} leads {args.broker_name} in term {status.get('term')}",
    )
    return 0


def write_permission_command(args: argparse.Namespace) -> int:
    cli = _cli()

    async def run() -> dict[str, Any]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            return await admin.set_write_permission(args.broker_name, writable=args.writable)

    state = cli.run_async(run())
    verb = "accepts" if state["writable"] else "refuses"
    cli.emit(args, state, f"{state['broker_name']} {verb} sends (perm {state['perm']})")
    return 0


def query_command(args: argparse.Namespace) -> int:
    cli = _cli()
    if bool(args.id) == bool(args.key):
        raise cli.CliError("give exactly one of --id or --key")

    async def run() -> list[Message]:
        async with Admin(cli.namesrv_addrs(args)) as admin:
            if args.id:
                return [await admin.query_by_id(args.id)]
            return await admin.query_by_key(
                args.key,
                topic=args.topic,
                begin_ms=args.begin_ms,
                end_ms=args.end_ms,
                max_messages=args.max,
            )

    found = cli.run_async(run())
    _emit_messages(args, found, "(not found)")
    return 0


def _emit_messages(args: argparse.Namespace, messages: list[Message], empty: str) -> None:
    """One line per message for people, or {"messages": [...]} with --json."""

    def text() -> str:
        lines = [
            f"{m.msg_id} {m.topic}/{m.queue_id}@{m.queue_offset} tags={m.tags} "
            f"keys={','.join(m.keys)}: {m.body.decode(errors='replace')}"
            for m in messages
        ]
        return "\n".join(lines) or empty

    _cli().emit(args, {"messages": [_message(m) for m in messages]}, text)
