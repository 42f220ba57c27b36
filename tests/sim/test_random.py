"""Randomized simulation: many seeds, each a safety phase with faults then a liveness
phase (see workload.py), plus the determinism the whole approach rests on.

Method: one test per seed (`sim_seed`, chosen in conftest.py: `--seed N`,
`DLEDGERMQ_SEED=N`, `--seeds A:B`, default `DEFAULT_SEEDS`). A failure names the seed
and the command that replays it exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .workload import run_seed


def test_seed(sim_seed: int) -> None:
    try:
        run_seed(sim_seed)
    except AssertionError as error:
        error.add_note(f"reproduce: pytest tests/sim/test_random.py --seed={sim_seed}")
        raise


def test_same_seed_same_trace() -> None:
    for seed in (0, 1, 2):
        assert run_seed(seed).trace_hash == run_seed(seed).trace_hash
    assert len({run_seed(seed).trace_hash for seed in (0, 1, 2)}) == 3


def test_trace_does_not_depend_on_hash_randomization() -> None:
    """Set iteration order of str/bytes changes with PYTHONHASHSEED; the run must not."""
    root = Path(__file__).resolve().parents[2]
    code = "from tests.sim.workload import run_seed; print(run_seed(5).trace_hash)"
    hashes = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True
        )
        hashes.add(out.stdout.strip())
    assert hashes == {run_seed(5).trace_hash.encode()}
