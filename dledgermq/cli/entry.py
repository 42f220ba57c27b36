"""`dledgermq`: run a cluster, manage topics, send, consume and query from a terminal.

Every command takes `--json` (one JSON document on stdout) and exits non-zero with a
one-line message on stderr when something is wrong. Client commands find the NameServer
from `--namesrv`, else `$DLEDGERMQ_NAMESRV`, else the cluster file (`--config`, default
./cluster.yml when present, else the embedded default).

This module assembles the parser from the command families (one module each, in the
order `--help` lists them) and runs the chosen command. A family module exports
`add_commands(commands)`; it imports `cli.common`, never this module or another family.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dledgermq.cli import admin, cluster, consume, dlq, group, query, send, server, topic, txn
from dledgermq.cli.common import EXIT_FAILED, CliError
from dledgermq.config import ConfigError
from dledgermq.errors import MQError

FAMILIES = (cluster, server, topic, send, consume, admin, group, dlq, txn, query)


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
    for family in FAMILIES:
        family.add_commands(commands)
    return parser
