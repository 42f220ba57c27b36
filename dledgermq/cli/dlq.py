"""`dledgermq dlq list|resend GROUP`: a consumer group's dead letters from a terminal.

Thin, like every client family: parse, call `Admin`, print. A resend that skipped letters
(their topic is gone or read-only) prints them and exits non-zero.
"""

from __future__ import annotations

import argparse
from typing import Any

from dledgermq.cli.common import CliError, client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import Admin, Message

PAGE_MAX = 256


def add_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="list and resend a consumer group's dead letters")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = client_parser(actions, "list", "a page of the group's dead letters, oldest first")
    listing.add_argument("group")
    listing.add_argument("--broker", action="append", help="only this broker group (repeatable)")
    listing.add_argument("--offset", type=int, help="first DLQ offset (default: the oldest)")
    listing.add_argument("--max", type=int, default=32, help=f"letters per broker (1..{PAGE_MAX})")
    listing.set_defaults(handler=dlq_list)
    resend = client_parser(actions, "resend", "resend dead letters to their original topics")
    resend.add_argument("group")
    which = resend.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--msg-id", action="append", dest="msg_ids", help="a dead letter's id (repeatable)"
    )
    which.add_argument(
        "--all", action="store_true", help="every letter not resent by an earlier --all"
    )
    resend.add_argument("--broker", action="append", help="only this broker group (repeatable)")
    resend.set_defaults(handler=dlq_resend)


def letter_to_json(message: Message) -> dict[str, Any]:
    return {
        "msg_id": message.msg_id,
        "unique_key": message.unique_key,
        "origin_topic": message.properties.get("RETRY_TOPIC"),
        "origin_msg_id": message.properties.get("ORIGIN_MESSAGE_ID"),
        "queue_offset": message.queue_offset,
        "reconsume_times": message.reconsume_times,
        "tags": message.tags,
        "keys": list(message.keys),
        "properties": dict(message.properties),
        "body": message.body.decode(errors="replace"),
        "born_timestamp_ms": message.born_timestamp_ms,
        "store_timestamp_ms": message.store_timestamp_ms,
    }


def dlq_list(args: argparse.Namespace) -> int:
    if not 1 <= args.max <= PAGE_MAX:
        raise CliError(f"--max must be within 1..{PAGE_MAX}")
    if args.offset is not None and args.offset < 0:
        raise CliError("--offset must not be negative")

    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.dead_letters(
                args.group, offset=args.offset, max_messages=args.max, broker_names=args.broker
            )

    pages = run_async(run())
    payload = {
        "group": args.group,
        "brokers": {
            name: {**page, "messages": [letter_to_json(m) for m in page["messages"]]}
            for name, page in pages.items()
        },
    }

    def text() -> str:
        lines = []
        for name, page in pages.items():
            mark = page.get("resend_offset")
            lines.append(
                f"{name}: offsets {page['min_offset']}..{page['max_offset']}"
                + (f", resent up to {mark}" if mark is not None else "")
            )
            lines += [
                f"  {m.msg_id} @{m.queue_offset} origin={m.properties.get('RETRY_TOPIC')} "
                f"reconsumed={m.reconsume_times} key={m.unique_key}: "
                f"{m.body.decode(errors='replace')}"
                for m in page["messages"]
            ]
        return "\n".join(lines) or f"(no dead letters of {args.group})"

    emit(args, payload, text)
    return 0


def dlq_resend(args: argparse.Namespace) -> int:

    async def run() -> dict[str, list[dict[str, Any]]]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.resend_dead_letters(
                args.group,
                msg_ids=args.msg_ids,
                resend_all=args.all,
                broker_names=args.broker,
            )

    outcome = run_async(run())
    resent, skipped = outcome["resent"], outcome["skipped"]

    def text() -> str:
        lines = [f"resent {r['msg_id']} to {r['topic']} as {r['new_msg_id']}" for r in resent]
        lines += [f"skipped {s['msg_id']}: [{s['code']}] {s['message']}" for s in skipped]
        lines.append(f"{len(resent)} resent, {len(skipped)} skipped")
        return "\n".join(lines)

    emit(args, outcome, text)
    if skipped:
        raise CliError(f"{len(skipped)} dead letter(s) not resent; they stay in the DLQ")
    return 0
