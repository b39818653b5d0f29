"""Monte Carlo of majority trees: JAX samplers vs the exact recursion (4 standard errors), JAX vs numba
(bit for bit), and the agent-level model where the homogeneous theory fails."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentlab.synergy import agents, theory
from agentlab.synergy import montecarlo as mc

# (mu0, rho, gamma): sub- and supercritical, shared errors, noisy channels, a perfect channel.
GRID = [(0.05, 0.39, 1.0), (0.2, 0.0, 0.9), (0.3, 0.39, 0.7), (0.1, 0.7, 0.7), (0.6, 0.2, 0.95), (-0.2, 0.5, 0.9)]
MU0, RHO, GAMMA = (np.array(v) for v in zip(*GRID))


@pytest.fixture(scope="module")
def seeds():
    return mc.config_seeds(2026, range(len(GRID)))


@pytest.mark.parametrize(("b", "depth"), [(3, 0), (3, 5), (5, 3), (9, 2)])
def test_full_tree_matches_recursion(seeds, b, depth):
    correct, trials = mc.simulate_full_tree(seeds, MU0, RHO, GAMMA, b=b, depth=depth, trials=16384)
    mu, se = mc.bias_and_error(correct, trials)
    exact = theory.trajectory(MU0, depth, b, RHO, GAMMA)[-1]
    assert np.all(np.abs(mu - exact) <= 4 * se), (mu, exact, se)


@pytest.mark.parametrize("b", [3, 7])
def test_level_sampler_matches_recursion(seeds, b):
    depth = 16
    correct, trials = mc.simulate_levels(seeds, MU0, RHO, GAMMA, b=b, depth=depth, trials=65536)
    mu, _ = mc.bias_and_error(correct, trials)
    se = mc.level_standard_errors(mu, trials, b, RHO, GAMMA)
    exact = theory.trajectory(MU0, depth, b, RHO, GAMMA).T
    assert np.all(np.abs(mu - exact) <= 4 * se + 1e-12)


def test_bernoulli_words_rate():
    q = mc.quantize(0.3)
    bits = mc.bernoulli_words(np.array([1, 2], np.uint32), q, (4096,))
    ones = int(np.unpackbits(np.asarray(bits).view(np.uint8)).sum())
    n = 4096 * 32
    assert abs(ones / n - 0.3) < 4 * np.sqrt(0.21 / n)
    assert int(np.asarray(mc.bernoulli_words(np.array([1, 2], np.uint32), mc.quantize(1.0), (3,))).min()) == 2**32 - 1


@pytest.mark.parametrize("b", [3, 5, 7, 9, 11])
def test_bitsliced_majority_equals_count(b):
    rng = np.random.default_rng(b)
    votes = rng.integers(0, 2**32, size=(4, b, 8), dtype=np.uint32)
    got = np.asarray(mc.majority_words(votes, b))
    bits = np.unpackbits(votes.view(np.uint8), axis=-1, bitorder="little").reshape(4, b, -1)
    expected = np.packbits((2 * bits.sum(1) > b).astype(np.uint8), axis=-1, bitorder="little").view(np.uint32)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize(("b", "depth"), [(3, 3), (5, 2)])
def test_jax_equals_numba(seeds, b, depth):
    from agentlab.synergy import reference

    correct, trials = mc.simulate_full_tree(seeds[:3], MU0[:3], RHO[:3], GAMMA[:3], b=b, depth=depth, trials=2048)
    expected = [reference.simulate_full_tree(seeds[i], *GRID[i], b=b, depth=depth, trials=2048)[0] for i in range(3)]
    assert list(correct) == expected
    counts, _ = mc.simulate_levels(seeds[:3], MU0[:3], RHO[:3], GAMMA[:3], b=b, depth=6, trials=2048)
    n_words, populations = mc.population_words(2048)
    for i in range(3):
        ref = reference.simulate_levels(seeds[i], *GRID[i], b=b, depth=6, n_words=n_words, populations=populations)
        assert np.array_equal(counts[i], ref)


def test_agent_level_rise_then_fall_where_theory_rises():
    """With half easy, half hard items, majority trees first gain and then lose accuracy with depth; the
    homogeneous recursion at the measured mean leaf bias and rho predicts a steady rise."""
    model = agents.AgentLevelModel(difficulties=(0.7, 1.85), shared=0.05, difficulty_sd=0.1)
    trials = 20000
    acc = np.asarray(agents.tree_accuracy(jax.random.key(0), model, 1000.0, 1.0, b=3, depth=5, trials=trials))
    se = np.sqrt(0.25 / trials)
    peak = int(np.argmax(acc))
    assert 0 < peak < 5
    assert acc[peak] - acc[0] > 4 * se and acc[peak] - acc[-1] > 4 * se
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    theta = model.ability_sd * jax.random.normal(k1, (9,))
    d, z = agents.sample_items(k2, model, trials)
    answers = np.asarray(agents.answers(k3, model, theta, 1000.0, d, z))
    rho, mu0 = agents.pairwise_rho(answers), 2 * answers.mean() - 1
    predicted = (1 + theory.trajectory(mu0, 5, 3, rho, 1.0)) / 2
    assert np.all(np.diff(predicted) > 0)
    assert predicted[-1] - acc[-1] > 0.2
