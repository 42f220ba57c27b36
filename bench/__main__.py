"""`python -m bench run --suite peers [...]`: the benchmark suites' entry point.

The single-purpose tools stay modules of their own (`python -m bench.load`,
`bench.raft`, `bench.flush_modes`, `bench.peers`, `bench.scale`); this only dispatches suites.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run",), help="run a suite")
    args, _ = parser.parse_known_args(argv[:1])
    if args.command == "run":
        from bench.suite import main as run

        run(argv[1:])


if __name__ == "__main__":
    main()
