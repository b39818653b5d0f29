"""Run a kernel under a policy in one jitted `lax.scan`.

`rollout` is what `agentlab render`, the benchmarks and the tests use to produce trajectories; it
works for every kernel in the registry (single- and multi-agent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from agentlab.kernels.environment import Environment

#: ``policy(key, obs) -> action``
Policy = Callable[[jax.Array, jax.Array], jax.Array]


class Trajectory(NamedTuple):
    """Per-step outputs stacked on a leading time axis of length `steps`."""

    obs: jax.Array  # observation after each step (the reset observation of a new episode on auto-reset)
    action: jax.Array  # the action the policy chose
    reward: jax.Array  # float32
    terminated: jax.Array  # bool
    truncated: jax.Array  # bool
    info: dict[str, Any]


def uniform_policy(env: Environment) -> Policy:
    """Uniformly random actions from the kernel's action space."""
    space = env.action_space()
    return lambda key, obs: space.sample(key)


def rollout(env: Environment, params: Any, key: jax.Array, steps: int, policy: Policy) -> tuple[jax.Array, Trajectory]:
    """Reset with ``fold_in(key, 0)``, then take `steps` steps; step t uses the t-th key of
    ``split(fold_in(key, 1), steps)``, split again into a policy key and an environment key.

    Returns ``(first_obs, trajectory)``. Pure and jittable; `vmap` it over keys for a batch.
    """
    obs, state = env.reset(jax.random.fold_in(key, 0), params)

    def body(carry, step_key):
        obs, state = carry
        policy_key, env_key = jax.random.split(step_key)
        action = policy(policy_key, obs)
        next_obs, state, reward, terminated, truncated, info = env.step(env_key, state, action, params)
        return (next_obs, state), Trajectory(next_obs, action, reward, terminated, truncated, info)

    _, trajectory = jax.lax.scan(body, (obs, state), jax.random.split(jax.random.fold_in(key, 1), steps))
    return obs, trajectory


def random_rollout(env: Environment, params: Any, key: jax.Array, steps: int) -> tuple[jax.Array, Trajectory]:
    """`rollout` under `uniform_policy`."""
    return rollout(env, params, key, steps, uniform_policy(env))
