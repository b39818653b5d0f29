"""The `calvano` kernel: logit demand, the stage game, and the Nash and monopoly benchmarks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.kernels import make
from agentlab.kernels.markets.calvano import (
    benchmarks,
    calvano_params,
    logit_demand,
    monopoly_price,
    nash_price,
    payoff_table,
    price_grid,
    static_best_response,
)


def loop_profit(prices, firm, cost=1.0, a=2.0, a0=0.0, mu=0.25):
    """Plain-Python logit profit of one firm (no vectorisation, no stabilisation)."""
    denominator = sum(np.exp((a - p) / mu) for p in prices) + np.exp(a0 / mu)
    return (prices[firm] - cost) * np.exp((a - prices[firm]) / mu) / denominator


@pytest.mark.parametrize(
    "n, p_n, pi_n, p_m, pi_m",
    [(2, 1.47293, 0.22293, 1.92498, 0.33749), (3, 1.37016, 0.12016, 2.0, 0.25), (4, 1.33146, None, 2.0544, None)],
)
def test_benchmarks_match_the_paper(n, p_n, pi_n, p_m, pi_m):
    b = benchmarks(n)
    assert b["nash_price"] == pytest.approx(p_n, abs=2e-5)
    assert b["monopoly_price"] == pytest.approx(p_m, abs=2e-4)
    if pi_n is not None:
        assert b["nash_profit"] == pytest.approx(pi_n, abs=2e-5)
        assert b["monopoly_profit"] == pytest.approx(pi_m, abs=2e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_nash_price_is_a_fixed_point_of_best_responses(n):
    p_n = benchmarks(n)["nash_price"]
    candidates = np.linspace(1.0, 2.5, 150_001)
    others = [p_n] * (n - 1)
    profit = [loop_profit([p] + others, 0) for p in candidates[::100]]  # coarse pass, then refine
    coarse = candidates[::100][int(np.argmax(profit))]
    fine = candidates[np.abs(candidates - coarse) < 2e-3]
    best = fine[int(np.argmax([loop_profit([p] + others, 0) for p in fine]))]
    assert best == pytest.approx(p_n, abs=2e-5)


@pytest.mark.parametrize("n", [2, 3])
def test_monopoly_price_maximises_joint_profit(n):
    p_m = benchmarks(n)["monopoly_price"]
    joint = lambda prices: sum(loop_profit(prices, i) for i in range(n))
    best = joint([p_m] * n)
    rng = np.random.default_rng(0)
    for _ in range(200):  # no symmetric or asymmetric perturbation does better
        assert joint(list(p_m + rng.normal(0, 0.05, n))) <= best + 1e-12
    symmetric = np.linspace(1.0, 3.0, 20_001)
    assert symmetric[int(np.argmax([joint([p] * n) for p in symmetric]))] == pytest.approx(p_m, abs=2e-4)


def test_grid_is_calvanos():
    grid = price_grid(2)
    b = benchmarks(2)
    gap = b["monopoly_price"] - b["nash_price"]
    assert grid.shape == (15,)
    assert grid[0] == pytest.approx(b["nash_price"] - 0.1 * gap) and grid[-1] == pytest.approx(
        b["monopoly_price"] + 0.1 * gap
    )
    np.testing.assert_allclose(np.diff(grid), gap * 1.2 / 14)


def test_payoff_table_matches_a_plain_loop():
    params = calvano_params(3, 5)
    table = payoff_table(3, params)
    grid = np.asarray(params.prices, np.float64)
    assert table.shape == (125, 3)
    for s in range(125):
        a = [s // 25, (s // 5) % 5, s % 5]
        for i in range(3):
            assert table[s, i] == pytest.approx(loop_profit([grid[x] for x in a], i), rel=1e-12)


@given(
    mu=st.floats(0.05, 1.0),
    cost=st.floats(0.0, 2.0),
    a=st.floats(1.0, 3.0),
    n=st.integers(2, 4),
    seed=st.integers(0, 99),
)
def test_demand_and_nash_first_order_condition_on_random_params(mu, cost, a, n, seed):
    prices = np.random.default_rng(seed).uniform(cost, cost + 3, n)
    shares = logit_demand(prices, a, 0.0, mu, np)
    expected = [np.exp((a - p) / mu) / (sum(np.exp((a - x) / mu) for x in prices) + 1.0) for p in prices]
    np.testing.assert_allclose(shares, expected, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(logit_demand(jnp.asarray(prices), a, 0.0, mu)), expected, rtol=1e-5)
    p_n = nash_price(n, cost, a, 0.0, mu)
    q = logit_demand(np.full(n, p_n), a, 0.0, mu, np)[0]
    assert 1 - (p_n - cost) * (1 - q) / mu == pytest.approx(0.0, abs=1e-9)
    assert monopoly_price(n, cost, a, 0.0, mu) > p_n


def test_kernel_rewards_are_the_stage_game_and_observations_put_own_price_first():
    env, params = make("calvano", auto_reset=False, firms=2, prices=15)
    table = payoff_table(2, params)
    grid = np.asarray(params.prices)
    obs, state = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    for t, action in enumerate([(0, 14), (7, 7), (14, 3)]):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, jnp.array(action), params)
        np.testing.assert_allclose(np.asarray(reward), table[action[0] * 15 + action[1]], rtol=1e-5)
        np.testing.assert_allclose(
            np.asarray(obs), [[grid[action[0]], grid[action[1]]], [grid[action[1]], grid[action[0]]]]
        )
        assert not bool(terminated)


def test_static_best_response_to_nash_grid_price_is_near_nash():
    params = calvano_params()
    grid = np.asarray(params.prices, np.float64)
    nash_index = int(np.argmin(np.abs(grid - benchmarks(2)["nash_price"])))
    best = static_best_response(2, params, 0, np.array([0, nash_index]))
    assert abs(grid[best] - benchmarks(2)["nash_price"]) <= (grid[1] - grid[0])


def test_bad_params_are_usage_errors():
    with pytest.raises(ValueError, match="firms"):
        make("calvano", firms=1)
    with pytest.raises(ValueError, match="mu"):
        calvano_params(mu=-1.0)
