"""What every command family shares: the common options, the user-facing error, where
the NameServer is, and how a result is printed (`--json` or text).

Every family module imports this one; it imports no family.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from dledgermq.client import Message
from dledgermq.config import ClusterConfig, load_config

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def add_common(parser: argparse.ArgumentParser, *, file_arg: bool = False) -> None:
    """`--config` and `--json` (and, for cluster commands, the cluster file)."""
    if file_arg:
        parser.add_argument("file", nargs="?", help="cluster.yml (default: embedded)")
    parser.add_argument("--config", help="cluster.yml to read NameServers and nodes from")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def client_parser(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that talks to the cluster through the client: the common options and
    `--namesrv`."""
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
    add_common(parser)
    parser.add_argument("--namesrv", help="NameServer addresses host:port[,host:port]")
    return parser


def cluster_config(args: argparse.Namespace) -> ClusterConfig:
    """The cluster file named by the command, else ./cluster.yml, else the embedded one."""
    path = getattr(args, "file", None) or args.config
    if path is None and Path("cluster.yml").is_file():
        path = "cluster.yml"
    return load_config(path)


def namesrv_addrs(args: argparse.Namespace) -> list[str]:
    """`--namesrv`, else `$DLEDGERMQ_NAMESRV`, else the cluster file's NameServers."""
    if getattr(args, "namesrv", None):
        return [a.strip() for a in args.namesrv.split(",") if a.strip()]
    if os.environ.get("DLEDGERMQ_NAMESRV"):
        return [a.strip() for a in os.environ["DLEDGERMQ_NAMESRV"].split(",") if a.strip()]
    return cluster_config(args).namesrv_addrs


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def emit(args: argparse.Namespace, payload: Any, text: str | Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


def message_json(m: Message) -> dict[str, Any]:
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


def emit_messages(args: argparse.Namespace, messages: list[Message], empty: str) -> None:
    """One line per message for people, or {"messages": [...]} with --json."""

    def text() -> str:
        lines = [
            f"{m.msg_id} {m.topic}/{m.queue_id}@{m.queue_offset} tags={m.tags} "
            f"keys={','.join(m.keys)}: {m.body.decode(errors='replace')}"
            for m in messages
        ]
        return "\n".join(lines) or empty

    emit(args, {"messages": [message_json(m) for m in messages]}, text)
