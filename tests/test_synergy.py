"""Budgeted multi-agent synergy: closed forms, Monte Carlo (JAX) vs the recursion, JAX vs numba, the
agent-level model and calibration recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.errors import UsageError
from agentlab.synergy import (
    alpha_rho,
    budget_threshold,
    critical_fidelity,
    fixed_point,
    level_map,
    majority_map,
    majority_slope,
    optimal_leaf_compute,
    organization_exponent,
    theory,
)

# Worked values of the reference (b, rho, gamma) -> (alpha, s, mu*).
WORKED = [
    ((3, 0.0, 0.9), (1.3500, 0.2732, 0.9799)),
    ((3, 0.39, 0.9), (1.1745, 0.1464, 0.8859)),
    ((5, 0.39, 0.7), (1.0736, 0.0441, 0.5424)),
    ((9, 0.7, 0.7), (1.0068, 0.0031, 0.1425)),
    ((3, 0.39, 0.7), (0.9135, None, 0.0)),
]
TRAJECTORY = [0.050, 0.065, 0.085, 0.111, 0.144, 0.187, 0.242, 0.312, 0.398, 0.500, 0.614, 0.731, 0.835]


@pytest.mark.parametrize(("args", "expected"), WORKED)
def test_worked_values(args, expected):
    alpha, s, mu_star = expected
    assert alpha_rho(*args) == pytest.approx(alpha, abs=5e-5)
    if s is not None:
        assert organization_exponent(*args) == pytest.approx(s, abs=5e-5)
    assert fixed_point(*args) == pytest.approx(mu_star, abs=5e-5)


def test_majority_slope_and_critical_fidelity():
    assert np.allclose(majority_slope([3, 5, 7, 9]), [1.5, 1.875, 2.1875, 2.4609375])
    assert np.allclose(critical_fidelity([3, 5, 9], 0.39), [0.766, 0.652, 0.529], atol=5e-4)


def test_trajectory_matches_reference():
    got = theory.trajectory(0.05, 12, 3, 0.39, 1.0)
    assert np.allclose(got, TRAJECTORY, atol=5e-4)


def test_hand_derivation_b3_rho0():
    # b = 3, rho = 0: f_3(mu) = (3 mu - mu^3) / 2, so mu* solves 2 = 3 gamma - gamma^3 mu^2.
    gamma = 0.9
    assert fixed_point(3, 0.0, gamma) == pytest.approx(math.sqrt((3 * gamma - 2) / gamma**3), abs=1e-12)
    mu = np.linspace(-1, 1, 11)
    assert np.allclose(majority_map(mu, 3), (3 * mu - mu**3) / 2)


def _binomial_majority(mu: float, b: int) -> float:
    """Plain-Python f_b: sum the binomial pmf above b/2."""
    p = (1 + mu) / 2
    return 2 * sum(math.comb(b, j) * p**j * (1 - p) ** (b - j) for j in range(b // 2 + 1, b + 1)) - 1


def test_budget_example():
    s = organization_exponent(3, 0.39, 1.0)
    assert s == pytest.approx(0.2423, abs=5e-5)
    assert optimal_leaf_compute(3, 200, 0.15, s) == pytest.approx(975, abs=1)
    assert budget_threshold(3, 200, 0.15, s) == pytest.approx(3430, rel=2e-3)
    assert optimal_leaf_compute(3, 200, 0.3, s) == math.inf  # s <= beta: one agent
    assert budget_threshold(3, 200, 0.3, s) == math.inf


def test_budget_threshold_is_where_tree_equals_single():
    # At B*, the best continuous tree (x = x*) and the single agent give the same small-signal bias.
    b, m, beta, s, kappa = 3, 200, 0.15, 0.2423, 0.01
    threshold, x = budget_threshold(b, m, beta, s), optimal_leaf_compute(b, m, beta, s)
    for budget, sign in ((threshold * 0.5, -1), (threshold, 0), (threshold * 2, 1)):
        tree = kappa * x**beta * (budget / (x + theory.leaf_overhead(b, m))) ** s
        single = kappa * budget**beta
        assert np.sign(round(tree / single - 1, 9)) == sign


def test_continuous_warm_up():
    assert theory.tree_risk_floor(0.39, 3, 1.0) == pytest.approx(1 / (2 * 0.61))
    deep = theory.tree_risk(4.0, 0.39, 3, 200, 1.0)
    assert deep == pytest.approx(theory.tree_risk_floor(0.39, 3, 1.0), rel=1e-9)
    assert theory.star_risk(2.0, 0.3, 1e9, 1.0) == pytest.approx(0.6, rel=1e-6)
    assert theory.chain_risk(1.0, 4, 0.5) == 3.0
    assert theory.effective_votes(9, 0.39) == pytest.approx(2.2, abs=0.02)


@pytest.mark.parametrize("bad", [dict(b=4), dict(b=1), dict(rho=1.0), dict(rho=-0.1), dict(gamma=0.0), dict(gamma=1.2)])
def test_bad_parameters_raise_usage_error(bad):
    args = {"b": 3, "rho": 0.3, "gamma": 0.9} | bad
    with pytest.raises(UsageError):
        alpha_rho(args["b"], args["rho"], args["gamma"])


configs = st.tuples(st.sampled_from([3, 5, 7, 9]), st.floats(0.0, 0.95), st.floats(0.05, 1.0), st.floats(0.0, 1.0))


@given(configs)
def test_level_map_properties(config):
    b, rho, gamma, mu = config
    plain = rho * gamma * mu + (1 - rho) * _binomial_majority(gamma * mu, b)
    assert level_map(mu, b, rho, gamma) == pytest.approx(plain, abs=1e-12)
    # F'(0) = alpha (central difference)
    h = 1e-6
    slope = (level_map(h, b, rho, gamma) - level_map(-h, b, rho, gamma)) / (2 * h)
    assert slope == pytest.approx(alpha_rho(b, rho, gamma), rel=1e-5)


@given(configs)
def test_fixed_point_is_a_fixed_point(config):
    b, rho, gamma, _ = config
    mu_star = fixed_point(b, rho, gamma)
    alpha = alpha_rho(b, rho, gamma)
    if alpha > 1:
        assert 0 < mu_star <= 1
        assert level_map(mu_star, b, rho, gamma) == pytest.approx(mu_star, abs=1e-10)
        assert theory.fixed_point_slope(b, rho, gamma) < 1  # stable
        assert (mu_star < 1) == (gamma < 1)
    else:
        assert mu_star == 0.0


@given(st.sampled_from([3, 5, 7, 9]), st.floats(0.0, 0.95))
def test_alpha_is_one_at_critical_fidelity(b, rho):
    assert alpha_rho(b, rho, critical_fidelity(b, rho)) == pytest.approx(1.0, abs=1e-12)


@given(configs, st.integers(0, 30))
def test_clipped_predictor_bounds_the_recursion(config, depth):
    b, rho, gamma, mu0 = config
    mu_star = fixed_point(b, rho, gamma)
    mu0 = min(mu0, mu_star) if mu_star > 0 else mu0
    exact = theory.trajectory(mu0, depth, b, rho, gamma)[-1]
    assert exact <= theory.clipped_predictor(mu0, depth, b, rho, gamma) + 1e-12


@pytest.mark.parametrize(
    ("b", "rho", "gamma", "beta"),
    [(3, 0.0, 1.0, 0.3), (3, 0.3, 0.9, 0.2), (5, 0.6, 0.7, 0.4), (9, 0.1, 0.95, 0.1)],
)
def test_sweeps_vectorised_best_tree_is_calibrates_best_tree(b, rho, gamma, beta):
    """`sweep.best_trees` (arrays) picks, per budget, the tree `calibrate.candidates` (a plain loop)
    ranks first among b-ary trees: same depth, leaf tokens and predicted bias; no tree where none fits."""
    from agentlab.synergy import theory
    from agentlab.synergy.calibrate import candidates
    from agentlab.synergy.sweep import best_trees

    kappa, m = 0.03, 50.0
    budgets = np.array([10.0, 500.0, 3e3, 2e4, 1e5, 1e6])
    alpha, mu_star = float(theory.alpha_rho(b, rho, gamma)), float(theory.fixed_point(b, rho, gamma))
    one = lambda x: np.array([x])  # noqa: E731
    depth, leaf, bias = best_trees(kappa, one(beta), one(b), one(alpha), one(mu_star), m, budgets)
    for j, budget in enumerate(budgets):
        trees = [
            o
            for o in candidates(kappa, beta, rho, gamma, m=m, budget=float(budget), window=1e12, stars=False)
            if o.kind == "tree" and o.fan_in == b
        ]
        if not trees:
            assert depth[0, j] == 0 and np.isnan(leaf[0, j]) and np.isnan(bias[0, j])
            continue
        assert depth[0, j] == trees[0].depth, (budget, [(o.depth, o.bias) for o in trees])
        np.testing.assert_allclose(leaf[0, j], trees[0].leaf_compute, rtol=1e-12)
        np.testing.assert_allclose(bias[0, j], trees[0].bias, rtol=1e-9)
