"""`dledgermq group progress GROUP --topic TOPIC`: a consumer group's offsets and lag."""

from __future__ import annotations

import argparse
import time
from typing import Any

from dledgermq.cli.common import client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import PullConsumer


def add_commands(commands: Any) -> None:
    group = commands.add_parser("group", help="inspect consumer groups")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    progress = client_parser(
        actions, "progress", "per queue: broker offset, consumer offset, lag, owner"
    )
    progress.add_argument("group")
    progress.add_argument("--topic", required=True)
    progress.set_defaults(handler=group_progress)


def group_progress(args: argparse.Namespace) -> int:
    async def run() -> list[dict[str, Any]]:
        async with PullConsumer(namesrv_addrs(args), args.group) as consumer:
            return await consumer.progress(args.topic)

    rows = run_async(run())

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

    emit(args, {"group": args.group, "topic": args.topic, "queues": rows}, text)
    return 0


def _local_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
