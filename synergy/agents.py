"""The agent-level model (agentlab's generator where the paper is silent; docs/synergy.md).

Agent a answers item i correctly iff

    theta_a + beta_c log x - d_i + sqrt(r) z_i + sqrt(1 - r) e_ai > 0,

with ability theta_a ~ N(0, ability_sd**2) (one fixed team), compute x tokens, item difficulty d_i
drawn from a mixture (``difficulties`` with ``weights``, each component N(d, difficulty_sd**2)),
shared item noise z_i and private noise e_ai standard normal. Leaves of one tree answer the same item,
so their errors are correlated through d_i and z_i; rho is measured from the answers, not set.
Messages cross the same binary symmetric channel as in the homogeneous model (flip probability
``(1 - gamma) / 2``) and every node takes the plain majority of its b received messages.

With a mix of easy and hard items the homogeneous recursion (mean leaf bias, measured rho) predicts
a steady rise with depth, while the item-averaged truth can rise and then fall (Chen et al. 2024):
easy items saturate in a level or two, hard items (p < 1/2) keep falling toward 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class AgentLevelModel:
    """Parameters of the agent-level generator (defaults: half easy, half hard items)."""

    ability_sd: float = 0.3
    beta_c: float = 0.25
    difficulties: tuple[float, ...] = (-1.0, 2.35)
    weights: tuple[float, ...] = (0.5, 0.5)
    difficulty_sd: float = 0.2
    shared: float = 0.3  # r: the share of the noise common to every agent on an item

    def margin(self, x):
        """``beta_c log x``: the compute term (x a float or a JAX scalar)."""
        return self.beta_c * jnp.log(x)


def sample_items(key: jax.Array, model: AgentLevelModel, n: int) -> tuple[jax.Array, jax.Array]:
    """``(d (n,), z (n,))`` float32: difficulties from the mixture and shared item noise."""
    k_comp, k_d, k_z = jax.random.split(key, 3)
    component = jax.random.choice(k_comp, len(model.weights), (n,), p=jnp.asarray(model.weights))
    d = jnp.asarray(model.difficulties, jnp.float32)[component] + model.difficulty_sd * jax.random.normal(k_d, (n,))
    return d, jax.random.normal(k_z, (n,))


def answers(key: jax.Array, model: AgentLevelModel, theta: jax.Array, x: float, d: jax.Array, z: jax.Array):
    """bool (items, agents): who answers each item correctly (theta (agents,), d and z (items,))."""
    e = jax.random.normal(key, (d.shape[0], theta.shape[0]))
    latent = theta[None, :] + model.margin(x) - d[:, None] + jnp.sqrt(model.shared) * z[:, None]
    return latent + jnp.sqrt(1.0 - model.shared) * e > 0


@functools.partial(jax.jit, static_argnames=("model", "b", "depth", "trials"))
def tree_accuracy(key: jax.Array, model: AgentLevelModel, x: float, gamma: float, *, b: int, depth: int, trials: int):
    """Accuracy per level 0..depth (float32 (depth + 1,)) of full b-ary trees of agents on random items:
    level l averages every level-l node, the root of a depth-l subtree. One team of ``b**depth`` agents."""
    k_team, k_items, k_ans, k_flip = jax.random.split(key, 4)
    n = b**depth
    theta = model.ability_sd * jax.random.normal(k_team, (n,))
    d, z = sample_items(k_items, model, trials)
    out = answers(k_ans, model, theta, x, d, z)  # (trials, n)
    accuracy = [out.mean()]
    flip_keys = jax.random.split(k_flip, max(depth, 1))
    for level in range(1, depth + 1):
        flips = jax.random.uniform(flip_keys[level - 1], out.shape) < (1.0 - gamma) / 2
        received = (out ^ flips).reshape(trials, -1, b)
        out = 2 * received.sum(-1) > b
        accuracy.append(out.mean())
    return jnp.stack(accuracy)


def pairwise_rho(correct: np.ndarray) -> float:
    """Pairwise correlation of signed correctness across agents on shared items, pooled:
    ``sum_i [(sum_a r_ai)**2 - sum_a r_ai**2] / sum_i (n_i - 1) sum_a r_ai**2`` with r = s - mean(s), s = 2c - 1.
    `correct` (items, agents), NaN where an agent did not answer. Under the node-mixture model it is rho."""
    s = 2.0 * np.asarray(correct, np.float64) - 1.0
    r = s - np.nanmean(s)
    present = ~np.isnan(r)
    r = np.where(present, r, 0.0)
    n_i = present.sum(1)
    squares = (r**2).sum(1)
    numerator = (r.sum(1) ** 2 - squares).sum()
    denominator = ((n_i - 1) * squares).sum()
    return float(numerator / denominator) if denominator > 0 else 0.0
