"""The contract's promise, across processes: the same config and seed give the same numbers.

Two fresh Python processes train the same small PPO run (breakout, so the kernels' hashed draws,
flax's initial weights, the rollout's actions and the minibatch orders are all exercised); their
metrics (every column but the timings) and final parameters must be bit-identical, and a third run
with another seed must differ (so the comparison can fail).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

SMALL = "num_envs = 8\nnum_steps = 32\nnum_minibatches = 2\nupdates_per_chunk = 2\nhidden = [16, 16]\n"
TIMINGS = ("wall_seconds", "steps_per_second")


def train(out, config, seed: int) -> None:
    command = [sys.executable, "-m", "agentlab.cli.app", "train", "ppo", "--env", "breakout", "--steps", "1024",
               "--config", str(config), "--seed", str(seed), "--out", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def state(out):
    metrics = pl.read_parquet(out / "metrics.parquet").drop(TIMINGS)
    checkpoints = sorted((out / "checkpoints").glob("*.npz"))
    with np.load(checkpoints[-1], allow_pickle=False) as data:
        arrays = [data[name] for name in sorted(data.files) if name.startswith("leaf")]  # the learner state
    return metrics, arrays


@pytest.mark.slow
def test_training_is_bit_reproducible_across_processes(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(tmp_path / name, config, seed)
    (ma, pa), (mb, pb), (mc, pc) = (state(tmp_path / n) for n in "abc")
    assert ma.equals(mb), "same config and seed, different metrics across processes"
    assert len(pa) == len(pb) and all(np.array_equal(x, y) for x, y in zip(pa, pb))
    assert not ma.drop("seed").equals(mc.drop("seed")), "another seed gave the same run: the test cannot fail"
    assert not all(np.array_equal(x, y) for x, y in zip(pa, pc) if x.shape == y.shape)
