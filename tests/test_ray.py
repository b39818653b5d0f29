"""The Ray executor for real (one local Ray instance per test worker, 2 CPUs): a task whose worker dies is retried and
the table is the local one, units on disk are never recomputed, a study's error is one line, every sweep and
`train ppo --seeds N` give the local executor's run directory.

Skipped only where Ray is not installed (the `ray` extra; the `test` extra installs it, so CI runs these).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab import executors
from agentlab.cli.app import app
from agentlab.errors import UsageError

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module

TIMING = "wall_seconds"


@pytest.fixture(scope="module", autouse=True)
def ray_instance(tmp_path_factory):
    """One local Ray instance (2 CPUs) for this module's tests in this test process, shut down afterwards (the
    executors use an instance that is already running as it is). This process and Ray's workers share a persistent
    XLA compilation cache in a temporary folder, so a program compiled once (a local run's, or one seed's) is not
    compiled again by every worker."""
    from jax.experimental.compilation_cache import compilation_cache as cache

    folder = str(tmp_path_factory.mktemp("xla-cache"))
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    previous = {name: getattr(jax.config, name) for name in names}
    cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    started = not ray.is_initialized()
    if started:
        workers = {"JAX_COMPILATION_CACHE_DIR": folder, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        with warnings.catch_warnings():  # Ray starts its processes by fork + exec, which JAX's warning does not know
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": workers})  # fmt: skip
    try:
        yield
    finally:
        if started:
            ray.shutdown()
        for name, value in previous.items():
            jax.config.update(name, value)
        cache.reset_cache()


# -- the sweep layer ------------------------------------------------------------------------------------------------
def squares(calls: str, work: tuple[int, int]) -> dict:
    """A toy study's compute: rows ``x, x**2`` for x in ``[lo, hi)``; every call leaves a file in `calls`."""
    lo, hi = work
    Path(calls, f"{lo}-{os.getpid()}-{len(os.listdir(calls))}").touch()
    x = np.arange(lo, hi, dtype=np.int64)
    return {"x": x, "square": x * x}


def dies_once(calls: str, doomed: int, work: tuple[int, int]) -> dict:
    """`squares`, except that the unit starting at `doomed` kills its worker process on its first attempt."""
    marker = Path(calls, f"died-{doomed}")
    if work[0] == doomed and not marker.exists():
        marker.touch()
        os._exit(1)
    return squares(calls, work)


def fails(error: type, calls: str, work: tuple[int, int]) -> dict:
    """Rows of `squares`, except that the unit starting at 3 raises `error` (a study's own error) on every attempt."""
    if work[0] == 3:
        Path(calls, f"attempt-{len(os.listdir(calls))}").touch()
        raise error(f"cell {work[0]}: rho must be in [0, 1), got 1.5\nsecond line")
    return {"x": np.arange(*work), "square": np.arange(*work) ** 2}


def toy_units(count: int = 4, size: int = 3) -> list[tuple[str, tuple[int, int]]]:
    return [(f"u{k:03d}", (k * size, (k + 1) * size)) for k in range(count)]


def sweep(folder: Path, compute, **options) -> executors.Counts:
    return executors.run_units(
        folder, toy_units(), compute, columns=("x", "square"), rows=lambda w: w[1] - w[0], **options
    )


def calls_by_unit(calls: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in calls.iterdir():
        if not path.name.startswith("died"):
            lo = int(path.name.split("-")[0])
            counts[lo] = counts.get(lo, 0) + 1
    return counts


def test_a_task_whose_worker_dies_is_retried_and_the_table_is_the_local_one(tmp_path):
    local_calls, ray_calls = tmp_path / "local-calls", tmp_path / "ray-calls"
    local_calls.mkdir(), ray_calls.mkdir()
    sweep(tmp_path / "local", functools.partial(squares, str(local_calls)))
    counts = sweep(tmp_path / "ray", functools.partial(dies_once, str(ray_calls), 6), executor="ray")
    assert counts == (4, 0)
    assert (ray_calls / "died-6").exists()  # the worker of unit u002 died once ...
    assert calls_by_unit(ray_calls) == {0: 1, 3: 1, 6: 1, 9: 1}  # ... and every unit's rows were computed once
    local = executors.collect(tmp_path / "local", toy_units()).drop(TIMING)
    assert executors.collect(tmp_path / "ray", toy_units()).drop(TIMING).equals(local)


def test_units_already_on_disk_are_not_recomputed_on_ray(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    units = toy_units()
    executors.run_units(tmp_path / "sweep", units[:2], functools.partial(squares, str(calls)))  # an interrupted run
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep").iterdir()}
    for path in calls.iterdir():
        path.unlink()
    assert sweep(tmp_path / "sweep", functools.partial(squares, str(calls)), executor="ray") == (2, 2)
    assert calls_by_unit(calls) == {6: 1, 9: 1}  # only the missing units were computed
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep").iterdir() if p.name in stamps} == stamps
    whole = tmp_path / "whole"
    sweep(whole, functools.partial(squares, str(calls)))
    table = executors.collect(tmp_path / "sweep", units).drop(TIMING)
    assert table.equals(executors.collect(whole, units).drop(TIMING))


@pytest.mark.parametrize("error", [UsageError, ValueError])
def test_a_study_error_surfaces_as_one_line_and_is_not_retried(tmp_path, error):
    (tmp_path / "calls").mkdir()
    with pytest.raises(UsageError) as raised:
        sweep(tmp_path / "sweep", functools.partial(fails, error, str(tmp_path / "calls")), executor="ray")
    assert str(raised.value) == "unit u001: cell 3: rho must be in [0, 1), got 1.5"
    assert [p.name for p in (tmp_path / "calls").iterdir()] == ["attempt-0"]  # retried only when a worker dies
    assert not (tmp_path / "sweep" / "u001.parquet").exists()


def test_another_study_exception_is_raised_as_it_was(tmp_path):
    with pytest.raises(ZeroDivisionError, match="cell 3"):
        sweep(tmp_path, functools.partial(fails, ZeroDivisionError, str(tmp_path)), executor="ray")


def test_a_ray_address_needs_the_ray_executor(tmp_path):
    with pytest.raises(UsageError, match="--ray-address 1.2.3.4:6379 needs --executor ray"):
        sweep(tmp_path, functools.partial(fails, ValueError, str(tmp_path)), ray_address="1.2.3.4:6379")
    assert not tmp_path.joinpath("u000.parquet").exists()


# -- the sweeps and train ppo on Ray --------------------------------------------------------------------------------
runner = CliRunner()
SYNERGY = ["sweep", "synergy", "--fan-in", "3,5", "--rho", "0,0.5", "--gamma", "0.7:1:2", "--depth", "0:6:4",
           "--trials", "2048", "--budget", "1000,100000", "--quiet"]  # fmt: skip


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_sweep_synergy_on_ray_writes_the_local_run_directory(tmp_path):
    """Units computed as Ray tasks equal those computed in process: a cell's draws depend only on --seed and its
    index, wherever it runs; the run directories hold the same files and tables."""
    _invoke(*SYNERGY, "--out", str(tmp_path / "local"))
    _invoke(*SYNERGY, "--executor", "ray", "--out", str(tmp_path / "ray"))
    files = {p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")}
    assert {p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*")} == files
    for name in ("metrics.parquet", "budget.parquet"):
        local = pl.read_parquet(tmp_path / "local" / name).drop(TIMING, "unit_seconds", strict=False)
        assert pl.read_parquet(tmp_path / "ray" / name).drop(TIMING, "unit_seconds", strict=False).equals(local)


def test_sweep_commands_refuse_a_ray_address_without_ray_and_write_nothing(tmp_path):
    for command in (SYNERGY, ["sweep", "mamql"], ["sweep", "pgd", "--diffusion", "a", "--target", "b"]):
        result = runner.invoke(app, [*command, "--ray-address", "auto", "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == "error: --ray-address auto needs --executor ray (the executor is 'local')"
        assert not (tmp_path / "x").exists()


PPO_TOML = """num_envs = 8
num_steps = 16
num_minibatches = 2
update_epochs = 2
hidden = [16, 16]
updates_per_chunk = 4
"""
PPO_TIMINGS = ("wall_seconds", "steps_per_second")  # columns that measure the machine, not the run
EXACT = ("seed", "update", "step", "episode_return", "episode_length", "episodes", "learning_rate", "clip_fraction")


def _close_to_scale(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> float:
    """max |got - want| over the largest |want|: float32 rounding of a reduction order, relative to the metric's scale
    over the run (a pointwise ratio is meaningless where a metric crosses zero, as the actor loss does)."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    scale = max(float(np.max(np.abs(want[finite]), initial=0.0)), 1e-12)
    error = float(np.max(np.abs(got[finite] - want[finite]), initial=0.0)) / scale
    assert error <= rtol, error
    return error


@pytest.mark.slow
def test_train_ppo_seeds_as_ray_tasks_give_the_vmapped_run_and_resume_a_lost_seed(tmp_path):
    from agentlab.rl import training

    config = tmp_path / "tiny.toml"
    config.write_text(PPO_TOML)
    common = ["train", "ppo", "--env", "catch", "--steps", "1024", "--seeds", "2", "--seed", "5", "--config",
              str(config), "--quiet"]  # fmt: skip
    local, remote = tmp_path / "local", tmp_path / "ray"
    _invoke(*common, "--out", str(local))
    _invoke(*common, "--executor", "ray", "--out", str(remote))

    # the run directory of a local run, and the per-seed sub-runs
    shape = {p.relative_to(local) for p in local.rglob("*")}
    assert {p.relative_to(remote) for p in remote.rglob("*") if "seeds" not in p.parts} == shape
    assert sorted(p.name for p in (remote / "seeds").iterdir()) == ["seed-5", "seed-6"]
    assert orjson.loads((remote / "config.json").read_bytes())["config"]["executor"] == "ray"
    assert "executor" not in orjson.loads((local / "config.json").read_bytes())["config"]

    # the same rows in the same order; each seed's metrics equal the vmapped run's seed (see rl/training.py)
    want = pl.read_parquet(local / "metrics.parquet").drop(PPO_TIMINGS)
    got = pl.read_parquet(remote / "metrics.parquet").drop(PPO_TIMINGS)
    assert got.columns == want.columns and got.select(EXACT).equals(want.select(EXACT))
    for name in set(want.columns) - set(EXACT):
        _close_to_scale(got[name].to_numpy(), want[name].to_numpy())
    summary = orjson.loads((remote / "summary.json").read_bytes())
    assert summary["executor"] == "ray"
    assert summary["returns_by_seed"] == orjson.loads((local / "summary.json").read_bytes())["returns_by_seed"]

    # the merged checkpoint reads as a local run's (eval, data collect --policy): the seeds' parameters stacked
    _, _, params = training.load_run(remote)
    _, _, expected = training.load_run(local)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        _close_to_scale(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())

    # a lost seed: --resume (the executor is the recorded one) trains only that seed again, the same numbers
    kept = {p: p.stat().st_mtime_ns for p in (remote / "seeds" / "seed-5").rglob("*") if p.is_file()}
    shutil.rmtree(remote / "seeds" / "seed-6")
    for name in ("metrics.parquet", "summary.json"):
        (remote / name).unlink()
    _invoke("train", "ppo", "--out", str(remote), "--resume", "--quiet")
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert pl.read_parquet(remote / "metrics.parquet").drop(PPO_TIMINGS).equals(got)


def test_train_ppo_refuses_a_ray_address_without_ray(tmp_path):
    out = tmp_path / "x"
    result = runner.invoke(app, ["train", "ppo", "--env", "catch", "--ray-address", "auto", "--executor", "local",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == "error: --ray-address auto needs --executor ray (the executor is 'local')"


@pytest.mark.slow
def test_sweep_pgd_on_ray_writes_the_local_run_directory(tmp_path):
    """sweep pgd's units (one per guidance strength, one world model for every horizon) computed as Ray tasks,
    each worker loading the runs itself, give the local tables; a resumed local run recomputes nothing."""
    from agentlab.rl import collect, offline_training, pgd_training

    data = tmp_path / "data"
    collect.collect(collect.CollectConfig(env="pendulum", policy="random", episodes=4), data)
    pgd_training.train(
        pgd_training.PGDRunConfig(data=str(data), window=16, updates=10, updates_per_chunk=10, batch_size=8,
                                  channels=(8, 16), sample_steps=4, eval_windows=4), tmp_path / "pgd",
    )  # fmt: skip
    offline_training.train(
        offline_training.OfflineRunConfig(data=str(data), updates=10, updates_per_chunk=10, hidden=(16, 16),
                                          batch_size=32, eval_episodes=2, seeds=1), tmp_path / "target",
    )  # fmt: skip
    args = ["sweep", "pgd", "--diffusion", str(tmp_path / "pgd"), "--target", str(tmp_path / "target"),
            "--guidance", "0,1", "--horizons", "1,3", "--windows", "4", "--sample-steps", "4", "--model-updates", "5",
            "--quiet"]  # fmt: skip
    _invoke(*args, "--out", str(tmp_path / "local"))
    _invoke(*args, "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert sorted(p.name for p in (tmp_path / "ray" / "points").iterdir()) == [
        "pgd-000.parquet", "pgd-001.parquet", "worldmodel.parquet"]  # fmt: skip
    files = {p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")}
    assert {p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*")} == files
    local = pl.read_parquet(tmp_path / "local" / "tradeoff.parquet").drop("seconds")
    assert pl.read_parquet(tmp_path / "ray" / "tradeoff.parquet").drop("seconds").equals(local)
    assert local["generator"].to_list() == ["pgd", "pgd", "worldmodel", "worldmodel"]
    summary = orjson.loads(_invoke(*args, "--out", str(tmp_path / "local"), "--resume", "--json").stdout)
    assert (summary["units_computed"], summary["units_resumed"]) == (0, 3)


@pytest.mark.slow
def test_sweep_mamql_on_ray_writes_the_local_run_directory(tmp_path):
    """Each cell (a train mamql run into runs/) as a Ray task: the same run directory and table as in process."""
    args = ["sweep", "mamql", "--env-option", "layout=tabular,size=4", "--algos", "mamql,bc", "--expert-steps", "300",
            "--seeds", "1", "--updates", "100", "--quiet"]  # fmt: skip
    _invoke(*args, "--out", str(tmp_path / "local"))
    _invoke(*args, "--executor", "ray", "--out", str(tmp_path / "ray"))
    files = {p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")}
    assert {p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*")} == files
    timings = ("wall_seconds", "updates_per_second")
    local = pl.read_parquet(tmp_path / "local" / "metrics.parquet").drop(timings)
    assert pl.read_parquet(tmp_path / "ray" / "metrics.parquet").drop(timings).equals(local)
    assert local["algo"].to_list() == ["bc", "mamql"] and local["mean_return"].is_not_null().all()


def test_an_unreachable_cluster_address_is_one_line():
    """Ray itself retries an unreachable cluster for minutes; a host:port that accepts no connection is refused."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(UsageError, match=rf"^--ray-address {address}: cannot reach a Ray cluster there \("):
            executors._check_reachable(address)
    executors._check_reachable("auto")  # left to Ray
