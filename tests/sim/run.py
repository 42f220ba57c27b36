"""Run many simulation seeds outside pytest: `python -m tests.sim.run --seeds 0:100000`.

Prints one line per failing seed (with the command that replays it) and a summary; exits
1 if any seed failed. `--stop` stops at the first failure and prints its traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from .workload import run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run")
    parser.add_argument("--seeds", default="0:1000", help="range A:B of seeds")
    parser.add_argument("--stop", action="store_true", help="stop at the first failure")
    args = parser.parse_args(argv)
    lo, hi = (int(part) for part in args.seeds.split(":"))
    failed: list[int] = []
    started = time.monotonic()
    for seed in range(lo, hi):
        try:
            run_seed(seed)
        except AssertionError as error:
            failed.append(seed)
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"FAIL seed={seed}: {first_line}")
            print(f"  reproduce: pytest tests/sim/test_random.py --seed={seed}")
            if args.stop:
                traceback.print_exc()
                break
        if (seed - lo + 1) % 1000 == 0:
            print(f"... {seed - lo + 1} seeds, {len(failed)} failed", flush=True)
    elapsed = time.monotonic() - started
    print(f"{hi - lo} seeds in {elapsed:.1f}s, {len(failed)} failed: {failed[:50]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
