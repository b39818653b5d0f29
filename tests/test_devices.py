"""`--devices N`: one run split over N devices gives the one-device numbers.

The N-device side runs in one subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag
must be set before JAX starts; this process keeps its one device) and computes the same cases as this process
does on one device (`run_cases`): `bench kernels`' carry after K steps must be bit-equal (lanes are independent and
keep their keys), PPO after two updates equal to 1e-5 relative (its gradients, losses and episode statistics are
reduced across devices) with bit-equal environment states, and the three `simulate` kernels' outputs bit-equal in
their integer and boolean values and within 1e-6 relative in their floats. Why not bit for bit: XLA's CPU backend
contracts ``a * b + c`` into one fused multiply-add where both sit in one fusion, and the partitioned program fuses
differently (measured: grid-curtailment's ``authority_cost_musd`` differs in the last bit in 5 of 256 events on 4
devices; a one-device run of 8 or 16 market-crash markets differs the same way from the first markets of 64). At the
sizes here the floats are bit-equal too on the project's 2-core CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab import devices
from agentlab.cli.app import app
from agentlab.errors import UsageError

FOUR = 4
# PPO: 8 envs x 16 steps, 4 minibatches of 32 rows (8 per device), 2 updates in 2 chunks of one, 2 seeds.
PPO_TOML = (
    "num_envs = 8\nnum_steps = 16\nnum_minibatches = 4\nupdate_epochs = 2\nupdates_per_chunk = 1\nhidden = [32, 32]\n"
)
SIMULATIONS = {
    "market-crash": ("--markets", "64", "--steps", "12"),  # 16 per device: see test_simulate_outputs_are_bit_equal
    "market-lemons": ("--markets", "8", "--steps", "6"),
    "grid-curtailment": ("--events", "8", "--deadline", "4"),
}
# Summary keys that measure time, not the simulation.
TIMING = ("wall_seconds", "compile_seconds", "steps_per_second", "rounds_per_second")

runner = CliRunner()


def _invoke(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)


def run_cases(out: Path, count: int) -> None:
    """Every compared case on `count` devices, written under `out` (this process's devices)."""
    from agentlab.bench import kernels as bk

    out.mkdir(parents=True, exist_ok=True)
    (out / "devices.json").write_text(json.dumps({"seen": jax.device_count()}))
    prepared = bk.prepare(bk.agentlab_kernel("breakout", "sticky:p=0.25"), 8, 16, seed=3, devices=count)
    carry = prepared.compiled(prepared.carry, jax.random.fold_in(prepared.key, 1))
    np.savez(out / "bench.npz", *[_array(leaf) for leaf in jax.tree.leaves(carry)])
    for kernel, sizes in SIMULATIONS.items():
        _invoke("simulate", kernel, *sizes, "--devices", str(count), "--out", str(out / kernel), "--quiet")
    (out / "ppo.toml").write_text(PPO_TOML)
    _invoke("train", "ppo", "--env", "breakout", "--steps", "256", "--seeds", "2", "--config", str(out / "ppo.toml"),
            "--devices", str(count), "--out", str(out / "ppo"), "--quiet")  # fmt: skip


def _array(leaf) -> np.ndarray:
    typed = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    return np.asarray(jax.random.key_data(leaf) if typed else leaf)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(one, four)``: the cases on this process's one device and in a subprocess on four forced host devices."""
    base = tmp_path_factory.mktemp("devices")
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={FOUR}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_devices as t; "
    code += f"from pathlib import Path; t.run_cases(Path({str(base / 'four')!r}), {FOUR})"
    worker = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run_cases(base / "one", 1)  # meanwhile, on this process's one device
    finally:
        output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output.decode()[-4000:]
    return base / "one", base / "four"


@pytest.mark.slow  # the `runs` fixture: about 30 s of compiling in each of two processes
def test_this_process_has_one_device_and_the_worker_four(runs):
    one, four = runs
    assert jax.device_count() == 1
    assert json.loads((one / "devices.json").read_text())["seen"] == 1
    assert json.loads((four / "devices.json").read_text())["seen"] == FOUR


@pytest.mark.slow
def test_bench_kernels_carry_after_k_steps_is_bit_equal(runs):
    one, four = runs
    with np.load(one / "bench.npz") as a, np.load(four / "bench.npz") as b:
        assert a.files == b.files and len(a.files) > 3
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a["arr_0"].shape[0] == 8 and a[a.files[-1]].sum() > 0  # 8 lanes; some episodes finished


@pytest.mark.slow
@pytest.mark.parametrize("kernel", sorted(SIMULATIONS))
def test_simulate_outputs_equal_the_one_device_outputs(runs, kernel):
    one, four = runs
    a = pl.read_parquet(one / kernel / "metrics.parquet").drop("wall_seconds")
    b = pl.read_parquet(four / kernel / "metrics.parquet").drop("wall_seconds")
    assert a.height > 3 and a.columns == b.columns and a.dtypes == b.dtypes
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=0, equal_nan=True, err_msg=column)
        else:
            np.testing.assert_array_equal(y, x, err_msg=column)
    sa, sb = (json.loads((run / kernel / "summary.json").read_text()) for run in runs)
    numbers = {k: v for k, v in sa.items() if not k.endswith(TIMING)}
    assert set(numbers) == {k for k in sb if not k.endswith(TIMING)}
    for key, value in numbers.items():
        want = pytest.approx(value, rel=1e-6, nan_ok=True) if isinstance(value, float) else value
        assert sb[key] == want, key
    config = json.loads((four / kernel / "config.json").read_text())["config"]
    assert config["devices"] == FOUR


def _state(run: Path):
    """``(recorded devices, learner state, checkpoint metadata)``; the template is built on this process's one
    device (the state's structure does not depend on the devices)."""
    from agentlab.rl import checkpoint, training
    from agentlab.rl.ppo import PPO, seed_keys

    record = json.loads((run / "config.json").read_text())["config"]
    config = training.config_from_record({**record, "devices": 1})
    template = PPO(config).init_seeds(seed_keys(config))
    state, meta = checkpoint.load(run / training.CHECKPOINT, template)
    return record.get("devices", 1), state, meta  # a one-device run records no devices


@pytest.mark.slow
def test_ppo_after_two_updates_matches_to_1e5(runs):
    one, four = runs
    (ca, a, meta_a), (cb, b, meta_b) = _state(one / "ppo"), _state(four / "ppo")
    assert (ca, cb) == (1, FOUR) and meta_a["update"] == meta_b["update"] == 2
    # No reduction across devices in the rollout: environments, observations, returns and keys bit-equal.
    for field in ("env_state", "obs", "episode_return", "episode_length", "key", "update"):
        for x, y in zip(jax.tree.leaves(getattr(a, field)), jax.tree.leaves(getattr(b, field)), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=field)
    # Gradients are means over devices: parameters and optimiser moments to 1e-5 of each array's scale.
    for field in ("params", "opt_state"):
        for x, y in zip(jax.tree.leaves(getattr(a, field)), jax.tree.leaves(getattr(b, field)), strict=True):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * np.abs(x).max(), err_msg=field)
    ma = pl.read_parquet(one / "ppo" / "metrics.parquet").sort(["seed", "update"])
    mb = pl.read_parquet(four / "ppo" / "metrics.parquet").sort(["seed", "update"])
    assert ma.height == mb.height == 4 and ma["update"].to_list() == [0, 1, 0, 1]
    for column in ("loss", "actor_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "learning_rate",
                   "episode_return", "episode_length", "episodes"):  # fmt: skip
        x, y = ma[column].to_numpy().astype(np.float64), mb[column].to_numpy().astype(np.float64)
        scale = np.nanmax(np.abs(x)) if np.isfinite(x).any() else 1.0
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * scale, equal_nan=True, err_msg=column)
    assert json.loads((four / "ppo" / "config.json").read_text())["config"]["devices"] == FOUR


# -- bad --devices: one line, exit 2, nothing written ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("train", "ppo", "--env", "catch", "--steps", "64"),
        ("bench", "kernels", "--envs", "breakout", "--batch-sizes", "8", "--steps", "4"),
        ("simulate", "market-crash", "--markets", "8", "--steps", "4"),
    ],
    ids=["train", "bench", "simulate"],
)
@pytest.mark.parametrize(
    ("value", "available", "message"),
    [
        ("2", 1, "--devices 2: JAX sees 1 cpu device(s); valid values are 1 to 1"),
        ("0", 1, "--devices must be an integer in [1, 4096]"),
        ("3", 4, "--devices 3 does not divide"),
    ],
    ids=["more-than-seen", "zero", "not-a-divisor"],
)
def test_bad_devices_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, args, value, available, message):
    monkeypatch.setattr(devices, "available", lambda: available)
    out = tmp_path / "run"
    result = runner.invoke(app, [*args, "--devices", value, "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_devices_check_and_ppo_config_name_what_is_valid(monkeypatch):
    from agentlab.rl.ppo import PPOConfig

    assert devices.check(1, 7, "num_envs") == 1
    with pytest.raises(UsageError, match="valid values are 1 to 1"):
        PPOConfig(env="catch", devices=2).validate()
    monkeypatch.setattr(devices, "available", lambda: 8)
    assert devices.check(4, 64, "num_envs") == 4
    with pytest.raises(UsageError, match=r"--devices 3 does not divide num_envs = 64: valid values are 1, 2, 4, 8"):
        devices.check(3, 64, "num_envs")
    # 4 envs x 2 steps in 4 minibatches: 2 rows each, which 4 devices cannot split.
    with pytest.raises(UsageError, match="does not divide the minibatch"):
        PPOConfig(env="catch", num_envs=4, num_steps=2, num_minibatches=4, devices=4).validate()
    assert PPOConfig(env="catch", num_envs=8, num_steps=2, num_minibatches=4, devices=4).validate().devices == 4


def test_a_run_trained_on_several_devices_is_read_on_one_and_old_runs_resume(tmp_path):
    """config.json of a one-device run has no ``devices`` key (as runs from before --devices: they resume); a run
    recorded with devices=4 loads in this one-device process for eval with devices=1, its other fields kept."""
    from agentlab import rundir
    from agentlab.rl import evaluate, training
    from agentlab.rl.ppo import PPOConfig

    one = PPOConfig(env="catch", num_envs=8, hidden=(8, 8))
    assert "devices" not in training.config_record(one)
    assert training.config_from_record(training.config_record(one)) == one
    record = {**training.config_record(one), "devices": 4}
    rundir.write_config(tmp_path, "train ppo", record)
    with pytest.raises(UsageError, match="--devices 4"):  # training on it again needs the devices
        training.config_from_record(record)
    assert evaluate.run_config(tmp_path) == one
