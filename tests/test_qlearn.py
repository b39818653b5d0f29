"""Tabular Q-learning (numba) against a plain-Python loop, the JAX lockstep backend against numba, and
`agentlab train qlearn` end to end."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.errors import UsageError
from agentlab.kernels.markets.calvano import benchmarks, calvano_params, payoff_table
from agentlab.rl.qlearn import (
    QLearnConfig,
    analyse_session,
    impulse_response,
    initial_q,
    initial_states,
    limit_cycle,
    profit_gain,
    session_keys,
    train_numba,
    word_np,
)

TINY = QLearnConfig(firms=2, prices=3, alpha=0.3, beta=2e-3, delta=0.9, converge_periods=300, max_periods=6000)


@pytest.fixture(scope="module")
def tiny_payoff():
    return payoff_table(2, calvano_params(2, 3))


def python_session(payoff, config: QLearnConfig, key, state):
    """The learner as the paper states it: plain Python floats, argmax recomputed over every row each period."""
    n, m = config.firms, config.prices
    q = initial_q(payoff, n, m, config.delta).tolist()
    greedy = lambda i, s: max(range(m), key=lambda a: (q[i][s][a], -a))  # first index on ties
    before = [[greedy(i, s) for s in range(m**n)] for i in range(n)]
    stable_for = 0
    for t in range(config.max_periods):
        eps = math.exp(-config.beta * t)
        actions = []
        for i in range(n):
            if int(word_np(key[0], key[1], t, 2 * i)) * 2.0**-32 < eps:
                actions.append(int((int(word_np(key[0], key[1], t, 2 * i + 1)) * m) >> 32))
            else:
                actions.append(before[i][state])
        nxt = 0
        for a in actions:
            nxt = nxt * m + a
        for i, a in enumerate(actions):
            target = payoff[nxt, i] + config.delta * max(q[i][nxt])
            q[i][state][a] = (1.0 - config.alpha) * q[i][state][a] + config.alpha * target
        after = [[greedy(i, s) for s in range(m**n)] for i in range(n)]
        stable_for = stable_for + 1 if after == before else 0
        before, state = after, nxt
        if stable_for >= config.converge_periods:
            return t + 1, True, state, np.array(q), np.array(before)
    return config.max_periods, False, state, np.array(q), np.array(before)


def test_numba_equals_a_plain_python_loop(tiny_payoff):
    keys = session_keys(7, 3)
    result = train_numba(TINY, tiny_payoff, keys)
    states = initial_states(keys, 2, 3)
    for k in range(3):
        periods, converged, final, q, greedy = python_session(tiny_payoff, TINY, keys[k], int(states[k]))
        assert (result.periods[k], result.converged[k], result.final_state[k]) == (periods, converged, final)
        np.testing.assert_array_equal(result.q[k], q)  # bit for bit
        np.testing.assert_array_equal(result.greedy[k], greedy)
    assert result.converged.any()


@pytest.mark.parametrize("beta", [2e-3, 60.0])  # with draws, and without (explore only at t = 0)
def test_jax_backend_gives_the_same_sessions_as_numba(tiny_payoff, beta):
    from agentlab.rl.qlearn_jax import train_jax

    config = dataclasses.replace(TINY, beta=beta)
    keys = session_keys(3, 4)
    a = train_numba(config, tiny_payoff, keys)
    b = train_jax(config, tiny_payoff, keys, chunk=500)
    np.testing.assert_array_equal(a.periods, b.periods)
    np.testing.assert_array_equal(a.converged, b.converged)
    np.testing.assert_array_equal(a.final_state, b.final_state)
    np.testing.assert_array_equal(a.greedy, b.greedy)
    # XLA may contract a multiply-add into an FMA: Q agrees to the last few bits.
    np.testing.assert_allclose(a.q, b.q, rtol=1e-12)


@given(seed=st.integers(0, 2**40), start=st.integers(0, 50))
def test_a_session_depends_only_on_its_key(tiny_payoff, seed, start):
    config = dataclasses.replace(TINY, max_periods=800)
    batch = train_numba(config, tiny_payoff, session_keys(seed, 3, start))
    alone = train_numba(config, tiny_payoff, session_keys(seed, 1, start + 2))
    np.testing.assert_array_equal(batch.q[2], alone.q[0])
    assert batch.final_state[2] == alone.final_state[0]


def test_draws_are_uniform_enough():
    words = word_np(np.uint64(5), np.uint64(9), np.arange(200_000), 1).astype(np.float64) / 2**32
    assert abs(words.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 200_000)
    actions = (word_np(np.uint64(5), np.uint64(9), np.arange(150_000), 3) * np.uint64(15)) >> np.uint64(32)
    counts = np.bincount(actions.astype(np.int64), minlength=15)
    assert counts.min() > 10_000 - 4 * 100 and counts.max() < 10_000 + 4 * 100


def test_initial_q_is_the_discounted_payoff_against_a_uniform_opponent(tiny_payoff):
    q = initial_q(tiny_payoff, 2, 3, 0.9)
    table = tiny_payoff.reshape(3, 3, 2)
    for a in range(3):
        assert q[0, 5, a] == pytest.approx(table[a, :, 0].mean() / 0.1)
        assert q[1, 0, a] == pytest.approx(table[:, a, 1].mean() / 0.1)


def test_cycle_impulse_and_profit_gain_on_a_hand_built_strategy():
    m = 3
    greedy = np.zeros((2, 9), np.int64)
    # From any state both play 2, except that after (2, 2) both play 1, and after (1, 1) both play 2: a 2-cycle.
    greedy[:, :] = 2
    greedy[:, 8] = 1
    assert limit_cycle(greedy, 0, m) == [8, 4]
    payoff = np.zeros((9, 2))
    payoff[:, 0] = np.arange(9)  # firm 0's profit grows with the state index
    payoff[:, 1] = 1.0
    response = impulse_response(greedy, 4, m, payoff, after=2)
    # Row 0: greedy play at (1, 1) is (2, 2); row 1: firm 0's best response against firm 1's 2 is price 2 (state 8).
    np.testing.assert_array_equal(response, [[2, 2], [2, 2], [1, 1], [2, 2]])
    assert profit_gain(0.2, 0.2, 0.3) == 0 and profit_gain(0.3, 0.2, 0.3) == 1


def test_converged_baseline_like_session_prices_above_nash():
    """A short, faster-exploring version of the baseline already prices above the static Nash equilibrium."""
    params = calvano_params()
    payoff = payoff_table(2, params)
    config = QLearnConfig(beta=4e-5, converge_periods=20_000, max_periods=2_000_000)
    result = train_numba(config, payoff, session_keys(1, 6))
    bench = benchmarks(2)
    deltas = [analyse_session(result.greedy[k], result.final_state[k], 15, payoff, bench)["delta"] for k in range(6)]
    assert result.converged.all()
    assert np.mean(deltas) > 0.3


BASELINE_SESSIONS = 64  # about 12 s of numba on 2 cores (plus its compile); 4 SE is then about 0.05


@pytest.mark.slow
def test_calvano_baseline_profit_gain():
    """Calvano, Calzolari, Denicolo and Pastorello (2020, AER), baseline: 2 firms, m = 15 prices, xi = 0.1,
    delta = 0.95, alpha = 0.15, beta = 4e-6, converged after 100,000 periods of unchanged greedy strategies. Their
    learners charge supra-competitive prices: profit gain Delta about 0.85. Over `BASELINE_SESSIONS` sessions the
    mean Delta (computed as `agentlab train qlearn` does, `analyse_session`) lies in [0.70, 0.95] with its 4-SE
    interval inside (measured: mean 0.853, SE 0.013). Nash play (Delta 0) or monopoly play (Delta 1) fails it, and so
    do myopic learners (delta = 0: mean 0.20)."""
    params = calvano_params(n=2, m=15, xi=0.1)
    payoff = payoff_table(2, params)
    bench = benchmarks(2, params)
    config = QLearnConfig(
        firms=2, prices=15, alpha=0.15, beta=4e-6, delta=0.95, converge_periods=100_000, max_periods=10_000_000
    )
    result = train_numba(config, payoff, session_keys(0, BASELINE_SESSIONS))
    deltas = np.array(
        [
            analyse_session(result.greedy[k].astype(np.int64), int(result.final_state[k]), 15, payoff, bench)["delta"]
            for k in range(BASELINE_SESSIONS)
        ]
    )
    assert result.converged.all()
    assert 500_000 < np.median(result.periods) < 5_000_000
    mean, se = deltas.mean(), deltas.std(ddof=1) / np.sqrt(BASELINE_SESSIONS)
    assert 0.70 <= mean - 4 * se and mean + 4 * se <= 0.95, f"mean Delta {mean:.3f} +- 4 x {se:.3f}"


runner = CliRunner()
SMALL = ["--sessions", "3", "--beta", "2e-4", "--converge-periods", "2000", "--max-periods", "200000", "--quiet"]


def test_cli_writes_a_run_directory_and_resumes(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "qlearn", *SMALL, "--batch", "2", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    for name in (
        "config.json",
        "summary.json",
        "metrics.parquet",
        "impulse.parquet",
        "plots/delta_hist.png",
        "plots/impulse_response.png",
    ):
        assert (out / name).exists(), name
    frame = pl.read_parquet(out / "metrics.parquet")
    assert frame.height == 3 and {"seed", "step", "wall_seconds", "delta", "cycle_prices"} <= set(frame.columns)
    assert summary["mean_delta"] == pytest.approx(frame["delta"].mean())
    assert len(summary["impulse_mean_price_firm0"]) == 17
    again = runner.invoke(app, ["train", "qlearn", *SMALL, "--batch", "2", "--out", str(out), "--resume", "--json"])
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.stdout)["mean_delta"] == summary["mean_delta"]
    refused = runner.invoke(app, ["train", "qlearn", *SMALL, "--out", str(out)])
    assert refused.exit_code == 2


def test_cli_tensorboard_events_are_the_sessions_rows(tmp_path):
    """--tensorboard: one event folder for the run's seed, the session number as the step, a tag per numeric
    column (bools as 0/1), the file's values (float32); the metrics themselves unchanged."""
    pytest.importorskip("tensorboardX")
    from agentlab.tensorboard import read_scalars

    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "qlearn", *SMALL, "--batch", "2", "--tensorboard", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out / "metrics.parquet")
    scalars = read_scalars(out / "tensorboard")
    assert set(scalars) == {"seed-0"}
    numeric = [
        c for c, t in frame.schema.items() if (t.is_numeric() or t == pl.Boolean) and c not in ("seed", "session")
    ]
    assert set(scalars["seed-0"]) == set(numeric)
    for column in numeric:
        expected = [(int(s), float(np.float32(v))) for s, v in zip(frame["session"], frame[column])]
        assert scalars["seed-0"][column] == expected, column


TIMINGS = ("wall_seconds", "compute_seconds", "compile_seconds", "periods_per_second", "sessions_per_second")


def test_the_driver_runs_from_python_and_a_resume_computes_only_the_missing_batch(tmp_path, monkeypatch):
    """`qlearn_training.train` (what the CLI calls) from Python: progress per batch; after a lost batch a resumed
    run computes that batch only and ends with the uninterrupted run's metrics, impulses and summary."""
    from agentlab.rl import qlearn, qlearn_training

    config = QLearnConfig(sessions=3, beta=2e-4, converge_periods=2000, max_periods=200_000)
    out = tmp_path / "run"
    seen = []
    summary = qlearn_training.train(config, out, batch=2, threads=1, on_batch=seen.append)
    assert [(i["sessions"], i["total_sessions"]) for i in seen] == [(2, 3), (3, 3)]
    assert seen[-1]["mean_delta"] == pytest.approx(summary["mean_delta"])
    metrics, impulse = (pl.read_parquet(out / name) for name in ("metrics.parquet", "impulse.parquet"))
    (out / "checkpoints" / "sessions-0000002.npz").unlink()
    sessions = []
    real = qlearn.train_numba
    monkeypatch.setattr(qlearn, "train_numba", lambda c, p, keys: sessions.append(len(keys)) or real(c, p, keys))
    again = qlearn_training.train(config, out, batch=2, resume=True)
    assert sessions == [1, 1]  # the one-period compile warm-up, then the lost batch (session 2) alone
    assert pl.read_parquet(out / "metrics.parquet").drop("wall_seconds").equals(metrics.drop("wall_seconds"))
    assert pl.read_parquet(out / "impulse.parquet").equals(impulse)
    assert {k: v for k, v in again.items() if k not in TIMINGS} == {
        k: v for k, v in summary.items() if k not in TIMINGS
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "cuda"}, "--backend 'cuda'"),
        ({"threads": -1}, "--threads must be an integer in [0, "),
        ({"batch": 0}, "--batch must be an integer in [1, "),
        ({"batch": 2.5}, "--batch must be an integer"),
    ],
)
def test_the_driver_refuses_bad_options_before_writing(tmp_path, options, message):
    from agentlab.rl import qlearn_training

    with pytest.raises(UsageError, match=re.escape(message)):
        qlearn_training.train(QLearnConfig(sessions=1), tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sessions", "0"], "--sessions"),
        (["--batch", "0"], "--batch"),
        (["--threads", "-1"], "--threads"),
        (["--backend", "cuda"], "--backend"),
        (["--env", "breakout"], "calvano"),
        (["--alpha", "1.5"], "--alpha"),
        (["--firms", "1"], "--firms"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = runner.invoke(app, ["train", "qlearn", *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
