"""`dledgermq admin leader-transfer|write-disable|write-enable`: operate broker groups."""

from __future__ import annotations

import argparse
from typing import Any

from dledgermq.cli.common import client_parser, emit, namesrv_addrs, run_async
from dledgermq.client import Admin


def add_commands(commands: Any) -> None:
    admin = commands.add_parser("admin", help="operate broker groups")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    transfer = client_parser(
        actions, "leader-transfer", "move a Raft group's leadership to another node"
    )
    transfer.add_argument("broker_name", help="the Raft group, e.g. broker-a")
    transfer.add_argument("--to", required=True, help="the node id that should lead")
    transfer.add_argument("--wait", type=float, default=10.0, help="seconds to wait (default 10)")
    transfer.set_defaults(handler=leader_transfer_command)
    for action, writable, text in (
        ("write-disable", False, "refuse sends to a broker group (maintenance); reads go on"),
        ("write-enable", True, "accept sends to a broker group again"),
    ):
        switch = client_parser(actions, action, text)
        switch.add_argument("broker_name", help="the broker group, e.g. broker-a")
        switch.set_defaults(handler=write_permission_command, writable=writable)


def leader_transfer_command(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.transfer_leadership(args.broker_name, args.to, wait_s=args.wait)

    status = run_async(run())
    emit(
        args,
        status,
        f"{status['node_id']} leads {args.broker_name} in term {status.get('term')}",
    )
    return 0


def write_permission_command(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with Admin(namesrv_addrs(args)) as admin:
            return await admin.set_write_permission(args.broker_name, writable=args.writable)

    state = run_async(run())
    verb = "accepts" if state["writable"] else "refuses"
    emit(args, state, f"{state['broker_name']} {verb} sends (perm {state['perm']})")
    return 0
