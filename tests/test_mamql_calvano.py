"""Calvano Q-learning -> Q-table demonstrations -> tabular MAMQL: the saved Q tables, the state encoding of the
collected rows, the Boltzmann action frequencies, policy recovery, and the refusals (a small 5-price game)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agentlab.errors import UsageError
from agentlab.rl import collect, qlearn, qlearn_training
from agentlab.rl.qlearn import QLearnConfig

PRICES = 5
CONFIG = QLearnConfig(prices=PRICES, beta=2e-4, converge_periods=2000, max_periods=60_000, sessions=3, seed=3)
OPTIONS = (("prices", PRICES),)
TEMPERATURE = 0.05


@pytest.fixture(scope="module")
def qrun(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calvano") / "qlearn"
    qlearn_training.train(CONFIG, out, threads=1, batch=2)
    return out


@pytest.fixture(scope="module")
def dataset(qrun, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calvano") / "data"
    config = collect.CollectConfig(
        env="calvano", env_options=OPTIONS, policy=f"qtable:{qrun},session=1", steps=40_000, temperature=TEMPERATURE
    )
    collect.collect(config, out)
    return out


def test_q_tables_are_the_sessions_final_q(qrun):
    from agentlab.kernels.markets.calvano import calvano_params, payoff_table

    saved = np.load(qrun / qlearn_training.Q_FILE)
    payoff = payoff_table(2, calvano_params(2, PRICES))
    direct = qlearn.train_numba(CONFIG, payoff, qlearn.session_keys(CONFIG.seed, CONFIG.sessions)).q
    assert saved.shape == (3, 2, PRICES**2, PRICES) and saved.dtype == np.float64
    np.testing.assert_array_equal(saved, direct)
    np.testing.assert_array_equal(qlearn_training.load_batch(qrun, 2)["q"], direct[2:])


def test_batch_without_q_is_recomputed(qrun, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(qrun, run)
    path = qlearn_training.batch_path(run, 0)
    with np.load(path) as data:
        old = {k: data[k] for k in data.files if k != "q"}
    np.savez(path, **old)
    assert qlearn_training.load_batch(run, 0) is None


def _rows(path: Path):
    from agentlab.rl import data

    return data.load(path, "calvano")


def test_collected_states_follow_the_qlearning_encoding(dataset):
    from agentlab.kernels.markets.calvano import calvano_params
    from agentlab.rl.mamql_tabular_training import calvano_states

    ds = _rows(dataset)
    grid = np.asarray(calvano_params(2, PRICES).prices)
    s, s_next = calvano_states(ds["obs"], grid), calvano_states(ds["next_obs"], grid)
    action = ds["action"].astype(np.int64)
    encoded = np.array([qlearn.greedy_next(a[:, None], 0, PRICES) for a in action])  # rl.qlearn's own encoding
    np.testing.assert_array_equal(s_next, encoded)
    inside = ds["t"][1:] > 0  # within an episode the state is the previous row's joint action
    np.testing.assert_array_equal(s[1:][inside], encoded[:-1][inside])
    assert len(np.unique(s)) > 5


def test_action_frequencies_are_the_boltzmann_policy(qrun, dataset):
    ds = _rows(dataset)
    from agentlab.kernels.markets.calvano import calvano_params
    from agentlab.rl.mamql_tabular_training import calvano_states

    s = calvano_states(ds["obs"], np.asarray(calvano_params(2, PRICES).prices))
    policy = np.exp(collect.boltzmann(np.load(qrun / qlearn_training.Q_FILE)[1], TEMPERATURE))
    counts = np.bincount(s, minlength=PRICES**2)
    frequent = np.flatnonzero(counts >= 2000)
    assert len(frequent) >= 1
    for state in frequent:
        rows = s == state
        for i in range(2):
            freq = np.bincount(ds["action"][rows, i], minlength=PRICES) / rows.sum()
            se = np.sqrt(policy[i, state] * (1 - policy[i, state]) / rows.sum())
            assert np.all(np.abs(freq - policy[i, state]) <= 5 * se + 1e-3), (state, i, freq, policy[i, state])
    # and a wrong session's policy is told apart somewhere
    other = np.exp(collect.boltzmann(np.load(qrun / qlearn_training.Q_FILE)[0], TEMPERATURE))
    assert np.abs(other[:, frequent] - policy[:, frequent]).max() > 0.05


def test_tabular_mamql_recovers_the_experts(dataset, tmp_path):
    from agentlab.rl import mamql_training

    config = mamql_training.MAMQLRunConfig(env="calvano", data=str(dataset), tabular=True, mode="exact")
    summary = mamql_training.train(config, tmp_path / "mamql")
    assert summary["gamma"] == CONFIG.delta and summary["qtable_session"] == 1
    assert summary["policy_kl_weighted"] < 0.02, summary["policy_kl_weighted"]
    assert summary["expert_q_epic"] < 0.1, summary["expert_q_epic"]
    assert abs(summary["mean_return"] - summary["expert_return"]) < 0.02 * abs(summary["expert_return"])
    chi2 = mamql_training.train(dataclasses.replace(config, mode="chi2"), tmp_path / "chi2")
    assert chi2["policy_kl_weighted"] > summary["policy_kl_weighted"]  # the regularised mode is told apart


def test_bad_qtable_inputs_are_refused(qrun, tmp_path):
    with pytest.raises(UsageError, match="not of `agentlab train qlearn`|no config.json"):
        collect.load_qtable(str(tmp_path), 2, PRICES)
    with pytest.raises(UsageError, match="2 x 15"):
        collect.load_qtable(str(qrun), 2, 15)
    with pytest.raises(UsageError, match="sessions 0..2"):
        collect.load_qtable(f"{qrun},session=3", 2, PRICES)
    for policy, options, message in (
        (f"qtable:{tmp_path}", f"prices={PRICES}", "not an agentlab run directory"),
        (f"qtable:{qrun}", "prices=15", "the run learned 2 firms x 5 prices"),
    ):
        out = tmp_path / "out"
        result = subprocess.run(
            [sys.executable, "-m", "agentlab.cli.app", "data", "collect", "--env", "calvano", "--policy", policy]
            + ["--env-option", options, "--steps", "100", "--temperature", "0.05", "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
