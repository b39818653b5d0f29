"""`agentlab data collect` and the dataset schema: rows that follow the kernel, exact budgets, resume, bad data."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from agentlab.errors import UsageError
from agentlab.rl import collect, data

TABULAR = (("layout", "tabular"), ("size", 4))


@functools.cache
def _collected(root: str, policy: str, steps: int | None, episodes: int | None, seed: int = 0) -> Path:
    out = Path(root) / f"{policy}-{steps}-{episodes}-{seed}"
    config = collect.CollectConfig(
        env="gems", env_options=TABULAR, policy=policy, steps=steps, episodes=episodes, seed=seed
    )
    collect.collect(config, out)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


def test_rows_follow_the_kernel_and_the_schema(root):
    from agentlab.kernels.multi import gems_tabular
    from agentlab.rl.mamql_tabular_training import states_of

    ds = data.load(_collected(root, "qre", 1000, None), "gems")
    assert len(ds) == 1000  # --steps is exact
    ep, t = ds["episode"], ds["t"]
    assert ep[0] == 0 and np.all(np.diff(ep) >= 0) and np.all(np.diff(np.unique(ep)) == 1)
    starts = np.r_[True, ep[1:] != ep[:-1]]
    assert np.all(t[starts] == 0)
    assert np.all(np.diff(t)[~starts[1:]] == 1)  # steps in order within an episode
    same = ~starts[1:]
    np.testing.assert_array_equal(ds["next_obs"][:-1][same], ds["obs"][1:][same])  # next_obs is the next obs
    # every transition and reward is the tabular game's (an independent implementation of the rules)
    layout = gems_tabular.default_layout(4)
    next_state, reward = gems_tabular.export_reference(layout)
    s, s_next = states_of(ds["obs"], 4), states_of(ds["next_obs"], 4)
    a = ds["action"]
    np.testing.assert_array_equal(next_state[s, a[:, 0], a[:, 1]], s_next)
    np.testing.assert_array_equal(reward[:, s, a[:, 0], a[:, 1]].T, ds["reward"])
    # time limit 45: truncated exactly at t = 44, and the budget's cut marks the last row
    assert np.all(ds["truncated"][:-1] == (t[:-1] == 44)) and ds["truncated"][-1]
    assert not ds["terminated"].any()
    summary = orjson.loads((_collected(root, "qre", 1000, None) / "summary.json").read_bytes())
    assert summary["complete_episodes"] == 1000 // 45 and summary["rows"] == 1000


def test_qre_actions_follow_the_equilibrium(root):
    """Action frequencies at the most visited state match the equilibrium policy (binomial 5-sigma)."""
    from agentlab.rl.mamql_tabular_training import states_of, tabular_problem

    ds = data.load(_collected(root, "qre", 20_000, None), "gems")
    from agentlab.kernels import make

    env, params = make("gems", auto_reset=False, **dict(TABULAR))
    problem = tabular_problem(env, params, 0.9, 1.0)
    s = states_of(ds["obs"], 4)
    for state in np.bincount(s).argsort()[-3:]:
        rows = s == state
        for i in range(2):
            freq = np.bincount(ds["action"][rows, i], minlength=5) / rows.sum()
            p = problem.expert.policy[i][state]
            assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / rows.sum()) + 1e-9), (freq, p)


def test_exact_return_matches_the_kernels_episodes(root):
    """The dynamic-programming expected return of the experts equals the mean return of the kernel's episodes
    (an independent Monte Carlo) within 4 standard errors."""
    from agentlab.kernels import make
    from agentlab.rl.mamql_tabular_training import expected_return, tabular_problem

    out = _collected(root, "qre", None, 256)
    ds = data.load(out, "gems")
    env, params = make("gems", auto_reset=False, **dict(TABULAR))
    problem = tabular_problem(env, params, 0.9, 1.0)
    exact = expected_return(problem, problem.expert.policy)
    ids = ds["episode"]
    returns = np.stack([np.bincount(ids, weights=ds["reward"][:, i]) for i in range(2)], 1)
    assert len(returns) == 256
    se = returns.std(axis=0, ddof=1) / np.sqrt(len(returns))
    assert np.all(np.abs(returns.mean(axis=0) - exact) <= 4 * se + 1e-6), (returns.mean(axis=0), exact, se)


def test_same_seed_same_rows_other_seed_other_rows(root, tmp_path):
    a = pl.read_parquet(_collected(root, "random", 300, None) / "data.parquet")
    again = tmp_path / "again"
    collect.collect(collect.CollectConfig(env="gems", env_options=TABULAR, policy="random", steps=300), again)
    assert a.equals(pl.read_parquet(again / "data.parquet"))
    other = pl.read_parquet(_collected(root, "random", 300, None, seed=1) / "data.parquet")
    assert not a.equals(other)


def test_resume_collects_only_what_is_missing(root, tmp_path):
    """A run killed after its first chunk resumes to the same data as an uninterrupted run."""
    src = _collected(root, "random", None, 64)
    reference = pl.read_parquet(src / "data.parquet")
    out = tmp_path / "run"
    shutil.copytree(src, out)
    (out / "data.parquet").unlink()
    (out / "summary.json").unlink()
    parts = sorted((out / "checkpoints").glob("part-*.parquet"))
    assert parts
    collect.collect(
        collect.CollectConfig(env="gems", env_options=TABULAR, policy="random", episodes=64), out, resume=True
    )
    assert reference.equals(pl.read_parquet(out / "data.parquet"))


def _broken(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    table = pl.read_parquet(dst / "data.parquet")
    edit(table).write_parquet(dst / "data.parquet")
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop("action"), "lacks the column"),
        (lambda t: t.with_columns(pl.col("terminated").cast(pl.Int8)), "terminated has dtype"),
        (lambda t: t.with_columns(schema_version=pl.lit(99, pl.UInt16)), "schema version"),
        (lambda t: t.head(0), "no rows"),
        (
            lambda t: t.with_columns(
                pl.Series("action", np.full((len(t), 2), 7, np.int32), dtype=pl.Array(pl.Int32, 2))
            ),
            "actions out of range",
        ),
        (
            lambda t: t.with_columns(
                pl.Series("reward", np.full((len(t), 2), np.nan, np.float32), dtype=pl.Array(pl.Float32, 2))
            ),
            "NaN",
        ),
        (
            lambda t: t.with_columns(
                pl.Series("obs", np.zeros((len(t), 2, 5, 3, 3), np.float32), dtype=pl.Array(pl.Float32, (2, 5, 3, 3)))
            ),
            "shape",
        ),
    ],
)
def test_bad_datasets_are_one_line(root, tmp_path, edit, message):
    bad = _broken(_collected(root, "random", 300, None), tmp_path / "bad", edit)
    with pytest.raises(UsageError, match=message):
        data.load(bad, "gems")


def test_dataset_of_another_env_and_too_few_rows(root):
    src = _collected(root, "random", 300, None)
    with pytest.raises(UsageError, match="holds gems data, not coordination"):
        data.load(src, "coordination")
    with pytest.raises(UsageError, match="more than the 300 rows"):
        data.load(src, "gems", rows=301)
    assert len(data.load(src, "gems", rows=10)) == 10


def _cli(*args: str):
    return subprocess.run([sys.executable, "-m", "agentlab.cli.app", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "qre", "--steps", "10"], "tabular setting"),  # gems, but not layout=tabular
        (["--policy", "nowhere/run", "--steps", "10"], "valid policies"),
        (["--steps", "10", "--episodes", "3"], "exactly one of"),
        (["--policy", "noisy:x,sigma=1", "--steps", "10"], "discrete"),
        (["--env-option", "size=1", "--steps", "10"], "size"),
    ],
)
def test_cli_refusals_write_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    result = _cli("data", "collect", "--env", "gems", *args, "--out", str(out))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
