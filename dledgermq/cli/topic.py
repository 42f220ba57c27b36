"""`dledgermq topic create|update|delete|list|status`: topics, through `Admin`.

Thin, like every client family: parse arguments, call the Python client
(dledgermq.client), print.
"""

from __future__ import annotations

import argparse
from typing import Any

from dledgermq.cli.common import client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import Admin


def add_commands(commands: Any) -> None:
    topic = commands.add_parser("topic", help="create, update, delete, list and inspect topics")
    actions = topic.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = client_parser(actions, "create", "create a topic on every broker group")
    create.add_argument("topic")
    _queue_args(create)
    create.set_defaults(handler=topic_create)
    update = client_parser(actions, "update", "change queue counts or permission")
    update.add_argument("topic")
    _queue_args(update)
    update.set_defaults(handler=topic_update)
    delete = client_parser(actions, "delete", "delete a topic from every broker group")
    delete.add_argument("topic")
    delete.set_defaults(handler=topic_delete)
    listing = client_parser(actions, "list", "list topics known to the NameServer")
    listing.set_defaults(handler=topic_list)
    status = client_parser(actions, "status", "route and per-queue offsets of a topic")
    status.add_argument("topic")
    status.set_defaults(handler=topic_status)


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


def topic_create(args: argparse.Namespace) -> int:
    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.create_topic(args.topic, **_queue_fields(args))

    created = [{"broker_name": name, **config} for name, config in run_async(run()).items()]
    emit(
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
    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(namesrv_addrs(args)) as admin:
            fields = _queue_fields(args)
            if "queues" in fields:
                queues = fields.pop("queues")
                fields.setdefault("read_queues", queues)
                fields.setdefault("write_queues", queues)
            return await admin.update_topic(args.topic, **fields)

    updated = [{"broker_name": name, **config} for name, config in run_async(run()).items()]
    emit(args, {"updated": updated}, f"updated {args.topic} on {len(updated)} broker group(s)")
    return 0


def topic_delete(args: argparse.Namespace) -> int:
    async def run() -> list[str]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.delete_topic(args.topic)

    deleted = run_async(run())
    emit(args, {"deleted_from": deleted}, f"deleted {args.topic} from {', '.join(deleted)}")
    return 0


def topic_list(args: argparse.Namespace) -> int:
    async def run() -> list[str]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.list_topics()

    topics = run_async(run())
    emit(args, {"topics": topics}, "\n".join(topics) or "(no topics)")
    return 0


def topic_status(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.topic_status(args.topic)

    status = run_async(run())

    def text() -> str:
        lines = [f"{'BROKER':12} {'QUEUE':>5} {'MIN':>10} {'MAX':>10}"]
        for q in status["queues"]:
            name, queue_id, low, high = (
                q[k] for k in ("broker_name", "queue_id", "min_offset", "max_offset")
            )
            lines.append(f"{name:12} {queue_id:>5} {low:>10} {high:>10}")
        return "\n".join(lines)

    emit(args, status, text)
    return 0
