"""`dledgermq`: run a cluster, manage topics, send, consume and query from a terminal.

Every command takes `--json` (one JSON document on stdout) and exits non-zero with a
one-line message on stderr when something is wrong. Client commands find the NameServer
from `--namesrv`, else `$DLEDGERMQ_NAMESRV`, else the cluster file (`--config`, default
./cluster.yml when present, else the embedded default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dledgermq.cli import launcher, status_view
from dledgermq.config import ClusterConfig, ConfigError, load_config
from dledgermq.errors import MQError

SYNC_JOURNAL_ENV = "DLEDGERMQ_SYNC_JOURNAL"
DISK_FULL_MARKER_ENV = "DLEDGERMQ_DISK_FULL_MARKER"
EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in {"broker", "namesrv"} else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (CliError, ConfigError, MQError) as exc:
        code = f"[{exc.code}] " if isinstance(exc, MQError) else ""
        print(f"dledgermq: error: {code}{exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dledgermq", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _cluster_commands(commands)
    _server_commands(commands)
    from dledgermq.cli.topic import add_client_commands

    add_client_commands(commands, _common)
    return parser


def _common(parser: argparse.ArgumentParser, *, file_arg: bool = False) -> None:
    if file_arg:
        parser.add_argument("file", nargs="?", help="cluster.yml (default: embedded)")
    parser.add_argument("--config", help="cluster.yml to read NameServers and nodes from")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _cluster_commands(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="start, stop and inspect a local cluster")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start every process of the cluster on this host")
    _common(up, file_arg=True)
    up.add_argument("--detach", action="store_true", help="return once the cluster answers")
    up.set_defaults(handler=cluster_up)
    down = actions.add_parser("down", help="stop the processes `cluster up` started")
    _common(down, file_arg=True)
    down.set_defaults(handler=cluster_down)
    status = actions.add_parser("status", help="show every process and its state")
    _common(status, file_arg=True)
    status.set_defaults(handler=cluster_status)


def _server_commands(commands: Any) -> None:
    broker = commands.add_parser("broker", help="run one broker node in the foreground")
    broker.add_argument("--node", required=True, help="node id from cluster.yml")
    broker.add_argument("--config", help="cluster.yml (default: embedded)")
    broker.set_defaults(handler=run_broker_command)
    namesrv = commands.add_parser("namesrv", help="run one NameServer in the foreground")
    namesrv.add_argument("--id", default=None, help="namesrv id from cluster.yml (default: first)")
    namesrv.add_argument("--config", help="cluster.yml (default: embedded)")
    namesrv.set_defaults(handler=run_namesrv_command)


def cluster_config(args: argparse.Namespace) -> ClusterConfig:
    """The cluster file named by the command, else ./cluster.yml, else the embedded one."""
    path = getattr(args, "file", None) or args.config
    if path is None and Path("cluster.yml").is_file():
        path = "cluster.yml"
    return load_config(path)


def emit(args: argparse.Namespace, payload: Any, text: str | Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


# -- cluster -----------------------------------------------------------------------------------


def cluster_up(args: argparse.Namespace) -> int:
    """Start this host's processes that are not running (all of them on a fresh cluster;
    after a crash, just the ones that died, which then catch up from their group)."""
    config = cluster_config(args)
    processes = launcher.local_processes(config)
    if not processes:
        raise CliError(f"{config.source} lists no process on this host")
    running = [p.id for p in processes if launcher.read_pid(config, p.id) is not None]
    to_start = [p for p in processes if p.id not in running]
    if not to_start:
        raise CliError(f"already running: {', '.join(running)} (use `dledgermq cluster down`)")
    if running:
        print(f"already running: {', '.join(running)}; starting the rest", file=sys.stderr)
    # SIGTERM behaves like Ctrl-C, so every way out below stops what was started.
    signal.signal(signal.SIGTERM, _interrupt)
    keep_running = False
    try:
        started, failure = launcher.start_cluster(config, to_start)
        if failure is not None:
            raise CliError(f"cluster did not start: {failure}")
        summary = {
            "cluster": config.cluster,
            "config": config.source,
            "data_dir": str(config.data_dir),
            "processes": [
                {"id": p.id, "kind": p.kind, "addr": p.addr, "pid": started[p.id].pid}
                for p in to_start
            ],
        }
        emit(args, summary, lambda: _up_text(config, summary))
        sys.stdout.flush()
        keep_running = args.detach
        if not args.detach:
            _wait_for_exit(started)
    except KeyboardInterrupt:
        pass
    finally:
        if not keep_running:
            stopped = launcher.stop_all(config, to_start)
            print(f"stopped {len(stopped)} process(es)", file=sys.stderr)
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _up_text(config: ClusterConfig, summary: dict[str, Any]) -> str:
    lines = [f"cluster {config.cluster} is up ({config.source}); data in {config.data_dir}"]
    lines += [
        f"  {p['kind']:8} {p['id']:6} http://{p['addr']}  pid {p['pid']}"
        for p in summary["processes"]
    ]
    lines.append(f"NameServer: {','.join(config.namesrv_addrs)}")
    return "\n".join(lines)


def _wait_for_exit(started: dict[str, Any]) -> None:
    """Block until Ctrl-C / SIGTERM (KeyboardInterrupt), or until a child exits."""
    while all(child.poll() is None for child in started.values()):
        time.sleep(0.5)  # Nothing to await: children are polled, signals interrupt.
    print("a cluster process exited; stopping the rest", file=sys.stderr)


def cluster_down(args: argparse.Namespace) -> int:
    config = cluster_config(args)
    stopped = launcher.stop_all(config, launcher.local_processes(config))
    emit(args, {"stopped": stopped}, f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def cluster_status(args: argparse.Namespace) -> int:
    """Per group: mode, writer (leader/master), term, commit index, and each node's state,
    match index and lag. Exit 1 when a process of this host is down."""
    config = cluster_config(args)
    local = {p.id for p in launcher.local_processes(config)}
    rows = []
    statuses: dict[str, dict[str, Any] | None] = {}
    for process in launcher.all_processes(config):
        status = launcher.fetch_status(process.addr)
        statuses[process.id] = status
        rows.append(
            {
                "id": process.id,
                "kind": process.kind,
                "group": process.group,
                "addr": process.addr,
                "pid": launcher.read_pid(config, process.id) if process.id in local else None,
                "local": process.id in local,
                "up": status is not None,
                "status": status,
            }
        )
    groups = status_view.cluster_summary(config, statuses)
    namesrvs = [r for r in rows if r["kind"] == "namesrv"]
    emit(
        args,
        {"cluster": config.cluster, "processes": rows, "groups": groups},
        lambda: status_view.render(namesrvs, groups),
    )
    return 0 if all(r["up"] for r in rows if r["local"]) else EXIT_FAILED


# -- servers -----------------------------------------------------------------------------------


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


# -- helpers for client commands ------------------------------------------------------------------


def namesrv_addrs(args: argparse.Namespace) -> list[str]:
    if getattr(args, "namesrv", None):
        return [a.strip() for a in args.namesrv.split(",") if a.strip()]
    if os.environ.get("DLEDGERMQ_NAMESRV"):
        return [a.strip() for a in os.environ["DLEDGERMQ_NAMESRV"].split(",") if a.strip()]
    return cluster_config(args).namesrv_addrs


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)
