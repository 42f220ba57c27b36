"""Run many simulation seeds outside pytest: `python -m tests.sim.run --seeds 0:100000`.

Prints one line per failing seed (with the command that replays it) and a summary; exits
1 if any seed failed. `--stop` stops at the first failure and prints its traceback.
`--storage` runs the storage simulation (storage_workload.py: the real store under every
node) instead of the plain one: `python -m tests.sim.run --storage --seeds 0:100000`.

`--fresh N` runs N seeds that no one chose: a window that moves with every commit (from
`git rev-parse HEAD`, or the clock when there is no git). CI runs one besides the fixed
seeds of the pytest suite, so a failure outside the fixed range cannot hide for long; a
window is the same on every run of one commit, so a red CI replays exactly.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .storage_workload import run_storage_seed
from .workload import run_seed

# Fresh windows start past the fixed seeds (0:2000) and the ranges swept by hand so far.
FRESH_BASE = 1_000_000
FRESH_SPAN = 10**12


def fresh_window(count: int) -> tuple[int, int, str]:
    """[lo, lo + count) derived from the commit checked out, or from the clock."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
        ).stdout.strip()
        key, source = int(head[:12], 16), f"commit {head[:12]}"
    except (OSError, subprocess.CalledProcessError, ValueError):
        key = time.time_ns() // 1000
        source = "the clock (no git)"
    lo = FRESH_BASE + key % FRESH_SPAN
    return lo, lo + count, source


def main(argv: list[str] | None = None) -> int:
    # The store's recovery warnings (a torn tail cut, a roll cut short) are what the
    # simulation causes on purpose; a failing seed replays with them under pytest.
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run")
    parser.add_argument("--seeds", default="0:1000", help="range A:B of seeds")
    parser.add_argument("--fresh", type=int, metavar="N", help="N seeds from a moving window")
    parser.add_argument("--stop", action="store_true", help="stop at the first failure")
    parser.add_argument("--storage", action="store_true", help="the storage simulation")
    args = parser.parse_args(argv)
    test_file = "test_storage.py" if args.storage else "test_random.py"
    if args.fresh is not None:
        lo, hi, source = fresh_window(args.fresh)
        print(f"fresh seeds {lo}:{hi} (from {source})", flush=True)
    else:
        lo, hi = (int(part) for part in args.seeds.split(":"))
    failed: list[int] = []
    tightest = (0.0, -1)  # the largest share of its liveness bound a seed used
    started = time.monotonic()
    for seed in range(lo, hi):
        try:
            liveness = run_storage_seed(seed).liveness if args.storage else run_seed(seed).liveness
        except AssertionError as error:
            failed.append(seed)
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"FAIL seed={seed}: {first_line}")
            print(f"  reproduce: pytest tests/sim/{test_file} --seed={seed}")
            if args.stop:
                traceback.print_exc()
                break
        else:
            share = max(
                liveness.ack_ticks / liveness.ack_bound,
                liveness.converge_ticks / liveness.converge_bound,
            )
            tightest = max(tightest, (share, seed))
        if (seed - lo + 1) % 1000 == 0:
            print(f"... {seed - lo + 1} seeds, {len(failed)} failed", flush=True)
    elapsed = time.monotonic() - started
    print(
        f"{hi - lo} seeds {lo}:{hi} in {elapsed:.1f}s, {len(failed)} failed: {failed[:50]}; "
        f"tightest liveness bound {tightest[0]:.0%} used (seed {tightest[1]})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
