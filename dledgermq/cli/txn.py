"""`dledgermq txn list|end`: transactions from a terminal (an operator's view).

`list` shows each broker group's pending half messages (with their check count and next
check-back) and recent outcomes; `end` commits or rolls back a stuck one by hand, bound
like a producer's end to its id, half-message offset and producer group.

Thin, like every client family: parse, call `Admin`, print.
"""

from __future__ import annotations

import argparse
from typing import Any

from dledgermq.cli.common import CliError, client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import Admin

LIST_MAX = 1_000
STATES = ("pending", "ended", "all")


def add_commands(commands: Any) -> None:
    txn = commands.add_parser("txn", help="list and end transactions (half messages)")
    actions = txn.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = client_parser(actions, "list", "pending half messages and recent outcomes")
    listing.add_argument("--state", choices=STATES, default="all")
    listing.add_argument("--group", help="only this producer group")
    listing.add_argument("--broker", action="append", help="only this broker group (repeatable)")
    listing.add_argument("--max", type=int, default=100, help=f"per broker (1..{LIST_MAX})")
    listing.set_defaults(handler=txn_list)
    end = client_parser(actions, "end", "commit or roll back a pending transaction by hand")
    end.add_argument("broker", help="the broker group holding the half message")
    end.add_argument("transaction_id")
    end.add_argument("--offset", type=int, required=True, help="the half message's offset")
    end.add_argument("--group", required=True, help="its producer group")
    outcome = end.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--commit", action="store_true")
    outcome.add_argument("--rollback", action="store_true")
    end.set_defaults(handler=txn_end)


def txn_list(args: argparse.Namespace) -> int:
    if not 1 <= args.max <= LIST_MAX:
        raise CliError(f"--max must be within 1..{LIST_MAX}")

    async def run() -> dict[str, dict[str, Any]]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.transactions(
                state=args.state,
                producer_group=args.group,
                max_items=args.max,
                broker_names=args.broker,
            )

    pages = run_async(run())

    def text() -> str:
        lines = []
        for name, page in pages.items():
            if "pending" in page:
                lines.append(f"{name}: {page['pending_total']} pending")
                lines += [
                    f"  {p['transaction_id']} @{p['commitlog_offset']} group={p['producer_group']}"
                    f" topic={p['topic']} checks={p['checks']} next_check_ms={p['next_check_ms']}"
                    for p in page["pending"]
                ]
            if "ended" in page:
                lines.append(f"{name}: {page['ended_total']} recent outcomes")
                lines += [
                    f"  {e['transaction_id']} @{e['commitlog_offset']} group={e['producer_group']}"
                    f" topic={e['topic']} {e['outcome']} by {e['by']} checks={e['checks']}"
                    for e in page["ended"]
                ]
        return "\n".join(lines) or "(no broker group)"

    emit(args, {"brokers": pages}, text)
    return 0


def txn_end(args: argparse.Namespace) -> int:
    if args.offset < 0:
        raise CliError("--offset must not be negative")

    async def run() -> dict[str, Any]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.end_transaction(
                args.broker,
                args.transaction_id,
                producer_group=args.group,
                commitlog_offset=args.offset,
                outcome="commit" if args.commit else "rollback",
            )

    answer = run_async(run())
    emit(
        args,
        answer,
        f"{answer['transaction_id']}: {answer['outcome']}"
        + (" (already ended)" if answer["already_ended"] else ""),
    )
    return 0
