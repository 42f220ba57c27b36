"""Seed selection for the randomized simulation (tests/sim/test_random.py).

`--seed N` (or `DLEDGERMQ_SEED=N`) runs exactly that seed; `--seeds A:B` runs the range
[A, B); otherwise `DEFAULT_SEEDS` run (`DEFAULT_STORAGE_SEEDS` for the storage simulation,
tests/sim/test_storage.py, whose seeds the same options select). The option lives here,
not in the root conftest, because only the simulation uses it; name the file or directory
on the command line (`pytest tests/sim/test_random.py --seed=N`) so that pytest loads this
conftest first.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = range(2000)
DEFAULT_STORAGE_SEEDS = range(1000)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dledgermq simulation")
    group.addoption("--seed", type=int, default=None, help="run one simulation seed")
    group.addoption("--seeds", default=None, help="run the simulation seeds A:B")


def selected_seeds(config: pytest.Config, default: range = DEFAULT_SEEDS) -> list[int]:
    seed = config.getoption("--seed", default=None)
    if seed is None and os.environ.get("DLEDGERMQ_SEED"):
        seed = int(os.environ["DLEDGERMQ_SEED"])
    if seed is not None:
        return [seed]
    seeds = config.getoption("--seeds", default=None)
    if seeds:
        lo, hi = (int(part) for part in seeds.split(":"))
        return list(range(lo, hi))
    return list(default)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        metafunc.parametrize("sim_seed", selected_seeds(metafunc.config))
    if "storage_seed" in metafunc.fixturenames:
        seeds = selected_seeds(metafunc.config, DEFAULT_STORAGE_SEEDS)
        metafunc.parametrize("storage_seed", seeds)
