"""`python -m chaos run --scenario NAME [--duration S] [--seed N] [--out DIR] [--no-hostile]`
(see runner.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.control import MODES
from chaos.hostile import DEFAULT_MAX_REQUESTS, DEFAULT_RATE, HostileOptions
from chaos.nemesis import KINDS
from chaos.runner import print_summary, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="run one scenario and check its history")
    one.add_argument(
        "--scenario", default="smoke", help=f"smoke, mixed, or one of: {', '.join(KINDS)}"
    )
    one.add_argument("--duration", type=float, default=40.0, help="seconds of faults (10..7200)")
    one.add_argument("--seed", type=int, default=1)
    one.add_argument("--out", type=Path, help="keep the history, cluster file and logs here")
    one.add_argument(
        "--durability", default="majority_fsync", choices=["majority_fsync", "majority_memory"]
    )
    one.add_argument(
        "--mode",
        default="raft",
        choices=MODES,
        help="a three-node Raft group, or a master/slave pair with sync or async replication",
    )
    one.add_argument(
        "--no-hostile",
        action="store_true",
        help="run without the hostile writer (adversarial requests to every node's HTTP API)",
    )
    one.add_argument(
        "--hostile-rate", type=float, default=DEFAULT_RATE, help="hostile requests per second"
    )
    one.add_argument(
        "--hostile-max",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help="at most this many hostile requests",
    )
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 7200:
        parser.error("--duration must be within 10..7200 seconds")
    if not 0 < args.hostile_rate <= 100 or args.hostile_max < 0:
        parser.error("--hostile-rate must be within (0, 100], --hostile-max at least 0")
    hostile = (
        None
        if args.no_hostile
        else HostileOptions(args.seed, rate=args.hostile_rate, max_requests=args.hostile_max)
    )
    summary = run(
        args.scenario,
        duration_s=args.duration,
        seed=args.seed,
        out=args.out,
        durability=args.durability,
        mode=args.mode,
        hostile=hostile,
    )
    print_summary(summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
