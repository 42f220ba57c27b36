"""`dledgermq broker --node ID` and `dledgermq namesrv [--id ID]`: one server process in
the foreground (what `cluster up` starts for each process of the cluster file).

Servers import the node only when they run, so the client commands do not load it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dledgermq.cli.common import CliError
from dledgermq.config import load_config

SYNC_JOURNAL_ENV = "DLEDGERMQ_SYNC_JOURNAL"
DISK_FULL_MARKER_ENV = "DLEDGERMQ_DISK_FULL_MARKER"


def add_commands(commands: Any) -> None:
    broker = commands.add_parser("broker", help="run one broker node in the foreground")
    broker.add_argument("--node", required=True, help="node id from cluster.yml")
    broker.add_argument("--config", help="cluster.yml (default: embedded)")
    broker.set_defaults(handler=run_broker_command)
    namesrv = commands.add_parser("namesrv", help="run one NameServer in the foreground")
    namesrv.add_argument("--id", default=None, help="namesrv id from cluster.yml (default: first)")
    namesrv.add_argument("--config", help="cluster.yml (default: embedded)")
    namesrv.set_defaults(handler=run_namesrv_command)


def run_broker_command(args: argparse.Namespace) -> int:
    from dledgermq.node import BrokerHooks, run_broker
    from dledgermq.store.disk import disk_used_ratio
    from dledgermq.store.errors import StoreDamaged
    from dledgermq.store.fileio import enable_sync_journal

    # Fault injection, switched on only by the chaos runner's environment: a sync journal
    # to simulate power loss (chaos/power_loss.py), a marker file that makes the disk
    # probe report a full disk.
    journal = os.environ.get(SYNC_JOURNAL_ENV)
    if journal:
        enable_sync_journal(Path(journal.replace("{node}", args.node)))
    full_marker = os.environ.get(DISK_FULL_MARKER_ENV)
    hooks = BrokerHooks()
    if full_marker:
        marker = Path(full_marker.replace("{node}", args.node))

        def probe(path: Path) -> float:
            return 1.0 if marker.exists() else disk_used_ratio(path)

        hooks = BrokerHooks(disk_used_ratio=probe)
    try:
        return run_broker(load_config(args.config), args.node, hooks)
    except StoreDamaged as exc:
        raise CliError(str(exc)) from exc


def run_namesrv_command(args: argparse.Namespace) -> int:
    from dledgermq.node import run_namesrv

    config = load_config(args.config)
    return run_namesrv(config, args.id or config.namesrvs[0].id)
