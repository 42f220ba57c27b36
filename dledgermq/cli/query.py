"""`dledgermq query --id ID | --key KEY`: find messages through `Admin`."""

from __future__ import annotations

import argparse
from typing import Any

from dledgermq.cli.common import CliError, client_parser, emit_messages, namesrv_addrs, run_async
from dledgermq.client import Admin, Message


def add_commands(commands: Any) -> None:
    query = client_parser(commands, "query", "find messages by key or by id")
    query.add_argument("--id", help="message id (or the client's unique key)")
    query.add_argument("--key", help="message key")
    query.add_argument("--topic", help="topic of --key (default: every topic with that key)")
    query.add_argument("--begin-ms", type=int)
    query.add_argument("--end-ms", type=int)
    query.add_argument("--max", type=int, default=32)
    query.set_defaults(handler=query_command)


def query_command(args: argparse.Namespace) -> int:
    if bool(args.id) == bool(args.key):
        raise CliError("give exactly one of --id or --key")

    async def run() -> list[Message]:
        async with Admin(namesrv_addrs(args)) as admin:
            if args.id:
                return [await admin.query_by_id(args.id)]
            return await admin.query_by_key(
                args.key,
                topic=args.topic,
                begin_ms=args.begin_ms,
                end_ms=args.end_ms,
                max_messages=args.max,
            )

    found = run_async(run())
    emit_messages(args, found, "(not found)")
    return 0
