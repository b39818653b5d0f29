"""`agentlab train mamql`: the tabular run against the known experts, the kernel against its export, bad input."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orjson
import pytest

from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.rl import collect, mamql_training

TABULAR = (("layout", "tabular"), ("size", 4))


def test_kernel_step_is_the_tabular_export():
    """The JAX kernel's joint move and rewards equal the numba export on every joint state and action."""
    from agentlab.kernels.multi import gems_tabular

    env, params = make("gems", auto_reset=False, layout="tabular", size=5)
    next_state, reward = gems_tabular.export(gems_tabular.default_layout(5))
    s = np.arange(5**4)
    x0, y0, x1, y1 = gems_tabular.state_positions(s, 5)
    agents = jnp.asarray(np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1), jnp.int32)
    actions = jnp.asarray(np.stack(np.meshgrid(np.arange(5), np.arange(5), indexing="ij"), -1).reshape(25, 2))
    gems = jnp.asarray(params.gem_cells)

    def one(cells, action):
        moved, r = env.joint_reward(cells, gems, action, params)
        return gems_tabular.state_index(moved[0, 0], moved[0, 1], moved[1, 0], moved[1, 1], 5), r

    moved, r = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))(agents, actions)
    np.testing.assert_array_equal(np.asarray(moved).reshape(625, 5, 5), next_state)
    np.testing.assert_allclose(np.moveaxis(np.asarray(r), -1, 0).reshape(2, 625, 5, 5), reward)


@functools.cache
def _tabular(root: str, algo: str, mode: str, data: str | None) -> dict:
    out = Path(root) / f"{algo}-{mode}-{data is not None}"
    config = mamql_training.MAMQLRunConfig(
        env="gems", algo=algo, mode=mode, tabular=True, data=data, env_options=() if data else TABULAR, updates=3000
    )
    return mamql_training.train(config, out)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mamql"))


def test_exact_mode_recovers_policy_and_reward_with_full_coverage(root):
    exact = _tabular(root, "mamql", "exact", None)
    assert exact["policy_kl"] < 1e-3 and exact["reward_epic"] < 0.05  # the goal
    assert abs(exact["mean_return"] - exact["expert_return"]) < 1e-3 * abs(exact["expert_return"])
    chi2 = _tabular(root, "mamql", "chi2", None)
    assert chi2["policy_kl"] > 10 * exact["policy_kl"] and chi2["reward_epic"] > exact["reward_epic"]
    out = Path(root) / "mamql-exact-False"
    for name in (
        "summary.json",
        "config.json",
        "rewards.parquet",
        "plots/reward_scatter.png",
        "plots/reward_heatmap.png",
    ):
        assert (out / name).is_file(), name
    assert orjson.loads((out / "summary.json").read_bytes())["visited_states"] == 4**4


def test_from_samples_every_algorithm_reports_against_the_truth(root):
    data = Path(root) / "qre"
    collect.collect(collect.CollectConfig(env="gems", env_options=TABULAR, policy="qre", steps=5000), data)
    results = {algo: _tabular(root, algo, "exact", str(data)) for algo in ("mamql", "iq-joint", "bc")}
    for algo, summary in results.items():
        assert summary["expert_steps"] == 5000 and summary["visited_states"] <= 4**4
        assert 0 < summary["policy_kl"] < 50, (algo, summary["policy_kl"])
        assert summary["mean_return"] <= summary["expert_return"] + 1e-6  # no policy beats the equilibrium
    assert results["bc"]["reward_epic"] is None and results["mamql"]["reward_epic"] is not None
    # fewer samples than full coverage: the recovery is measurably worse than exact occupancies
    assert results["mamql"]["policy_kl"] > _tabular(root, "mamql", "exact", None)["policy_kl"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"algo": "gail"}, "unknown --algo"),
        ({"mode": "linear"}, "unknown --mode"),
        ({"tabular": False}, "--data DIR is required"),
        ({"expert_steps": 10}, "--expert-steps takes the first rows"),
        ({"seeds": 2}, "deterministic"),
        ({"env_options": (("size", 5),)}, "tabular setting"),
    ],
)
def test_bad_configs_are_refused(tmp_path, kwargs, message):
    base = {"env": "gems", "tabular": True, "env_options": TABULAR}
    with pytest.raises(UsageError, match=message):
        mamql_training.train(mamql_training.MAMQLRunConfig(**{**base, **kwargs}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_bad_data_and_budget(tmp_path):
    data = tmp_path / "data"
    collect.collect(collect.CollectConfig(env="gems", env_options=TABULAR, policy="random", steps=200), data)
    out = tmp_path / "out"
    for args, message in (
        (["--expert-steps", "201"], "more than the 200 rows"),
        (["--env", "coordination"], "holds gems data"),
        (["--algo", "nope"], "'nope' is not one of 'mamql', 'iq-joint', 'bc'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "agentlab.cli.app", "train", "mamql", "--data", str(data), "--tabular"]
            + [*args, "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


SMALL = {
    "hidden": (32,),
    "conv_channels": (8,),
    "conv_kernels": (3,),
    "eval_episodes": 8,
    "batch_size": 64,
    "updates_per_chunk": 50,
}


def test_neural_run_resumes_to_the_uninterrupted_numbers(tmp_path):
    """A neural run stopped after its first chunk (Ctrl-C) and resumed ends with the metrics and summary
    figures of an uninterrupted run; the summary measures the learner against the known QRE experts."""
    import polars as pl

    from agentlab.errors import RunInterrupted

    data = tmp_path / "data"
    collect.collect(collect.CollectConfig(env="gems", env_options=TABULAR, policy="qre", steps=600), data)
    config = mamql_training.MAMQLRunConfig(env="gems", data=str(data), updates=100, eval_every=1, **SMALL)
    whole = mamql_training.train(config, tmp_path / "whole")

    def stop_after_first(info):
        if info["update"] == 50:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        mamql_training.train(config, tmp_path / "part", on_chunk=stop_after_first)
    resumed = mamql_training.train(config, tmp_path / "part", resume=True)
    for key in ("mean_return", "agent_returns", "policy_kl", "reward_epic", "expert_return"):
        assert resumed[key] == whole[key], key
    columns = ["seed", "update", "loss", "mean_return"]
    a = pl.read_parquet(tmp_path / "whole" / "metrics.parquet").select(columns)
    b = pl.read_parquet(tmp_path / "part" / "metrics.parquet").select(columns)
    assert a.equals(b)
    # the expert return is the dataset's complete episodes' mean, measured independently here
    ds = mamql_training.load_inputs(config)[0]
    complete = ds["episode"] < 600 // 45
    per_episode = np.bincount(ds["episode"][complete], weights=ds["reward"][complete].sum(axis=1)) / 2
    assert whole["expert_return"] == pytest.approx(per_episode.mean())
    assert 0 < whole["policy_kl"] < 10 and whole["reward_epic"] is not None
    assert (tmp_path / "whole" / "plots" / "return_curve.png").is_file()


def test_study_table_and_ratios(tmp_path):
    """`sweep mamql` (tabular, tiny): one row per cell, per-cell means over seeds equal the rows' means, and the
    return ratio is the two algorithms' means' ratio."""
    from agentlab.studies import mamql as study

    config = study.StudyConfig(
        env="gems", env_options=TABULAR, algos=("mamql", "iq-joint"), expert_steps=(300, 900), seeds=2, updates=300
    ).validate()
    out = tmp_path / "study"
    study.collect_data(config, out)
    counts = study.run(config, out)
    assert counts.computed == 8 and study.run(config, out).skipped == 8  # a rerun computes nothing
    frame = study.table(config, out)
    assert frame.height == 8
    summary = study.summarise(frame, config)
    for cell in summary["cells"]:
        rows = frame.filter((frame["algo"] == cell["algo"]) & (frame["expert_steps"] == cell["expert_steps"]))
        assert cell["mean_return"] == pytest.approx(rows["mean_return"].mean())
    get = {(c["algo"], c["expert_steps"]): c["mean_return"] for c in summary["cells"]}
    assert summary["mamql_over_iq_joint_return"]["900"] == pytest.approx(get[("mamql", 900)] / get[("iq-joint", 900)])
