"""`dledgermq cluster up|down|status [FILE]`: the processes of a cluster on this host.

`launcher` starts, watches and stops them (pid files in the run directory);
`status_view` turns their /status documents into the per-group table.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from dledgermq.cli import launcher, status_view
from dledgermq.cli.common import EXIT_FAILED, CliError, add_common, cluster_config, emit
from dledgermq.config import ClusterConfig


def add_commands(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="start, stop and inspect a local cluster")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start every process of the cluster on this host")
    add_common(up, file_arg=True)
    up.add_argument("--detach", action="store_true", help="return once the cluster answers")
    up.set_defaults(handler=cluster_up)
    down = actions.add_parser("down", help="stop the processes `cluster up` started")
    add_common(down, file_arg=True)
    down.set_defaults(handler=cluster_down)
    status = actions.add_parser("status", help="show every process and its state")
    add_common(status, file_arg=True)
    status.set_defaults(handler=cluster_status)


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
