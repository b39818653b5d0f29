"""Evaluating trained policies under every stochasticity profile: the STORI robustness matrix.

A row of the matrix is a training run (trained under one profile); a column is a test profile; a
cell is the mean undiscounted return over `episodes` episodes per seed, each episode run until it
ends or reaches the training time limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from agentlab import compiler
from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.kernels.atari import GAMES
from agentlab.kernels.stochasticity import format_spec, parse_spec
from agentlab.rl.ppo import PPO


def default_grid(env: str) -> list[str]:
    """STORI's taxonomy, one column each: plain; action noise at three p; sticky; every event mode;
    a sudden drift to action noise; crop, torch and blackout masks. Kernels without the taxonomy
    get the plain game only."""
    if env not in GAMES:
        return ["plain"]
    grid = ["plain", "action:p=0.1", "action:p=0.3", "action:p=0.5", "sticky:p=0.25"]
    grid += [f"event:mode={mode},p=0.25" for mode in GAMES[env].event_modes]
    grid += [
        "drift:mode=sudden,at=100,to=(action:p=0.5)",
        "mask:kind=crop,region=left,p=0.75",
        "mask:kind=torch,radius=3,centre=agent,p=1",
        "mask:kind=blackout,region=all,p=1",
    ]
    return [format_spec(parse_spec(s)) for s in grid]


def read_grid(path: Path) -> list[str]:
    """A grid file: one stochasticity string per line; blank lines and ``#`` comments ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"--stochasticity-grid {path}: no such file") from None
    grid = [line.split("#", 1)[0].strip() for line in lines]
    grid = [format_spec(parse_spec(line)) for line in grid if line]
    if not grid:
        raise UsageError(f"--stochasticity-grid {path} lists no profiles")
    return grid


def make_episode_returns(learner: PPO, spec: str, episodes: int, greedy: bool = False):
    """A jitted ``(params, key) -> float32 (episodes,)``: the returns of `episodes` episodes of one
    seed's policy under `spec`, each run until it ends or reaches the training time limit."""
    config = learner.config
    limit = config.time_limit
    options: dict[str, Any] = {"max_steps": limit, "auto_reset": False}
    if config.env in GAMES:
        options["stochasticity"] = spec
    elif spec != "plain":
        raise UsageError(f"{config.env} has no stochasticity profiles: only 'plain' can be tested")
    env, env_params = make(config.env, **options)
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def run(params, key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env_params)

        def body(carry, k):
            obs, state, alive, total = carry
            k_act, k_env = jax.random.split(k)
            action = learner.act(params, k_act, obs, greedy)
            obs, state, reward, terminated, truncated, _ = batched_step(
                jax.random.split(k_env, episodes), state, action, env_params
            )
            if reward.ndim > 1:
                reward = reward.mean(axis=-1)  # multi-agent: the team's mean return
            total = total + jnp.where(alive, reward, 0.0)
            return (obs, state, alive & ~(terminated | truncated), total), None

        init = (obs, state, jnp.ones(episodes, bool), jnp.zeros(episodes, jnp.float32))
        (_, _, _, total), _ = jax.lax.scan(body, init, jax.random.split(k_steps, limit))
        return total

    return compiler.jit(run)


def evaluate(learner: PPO, params: Any, grid: list[str], episodes: int, seed: int = 0, greedy: bool = False):
    """Mean, standard deviation and standard error of the return under each profile of `grid`, per
    trained seed (`params` has a leading seed axis). Yields one dict per (profile, seed)."""
    seeds = jax.tree.leaves(params)[0].shape[0]
    for column, spec in enumerate(grid):
        run = jax.vmap(make_episode_returns(learner, spec, episodes, greedy))
        keys = jnp.stack([jax.random.PRNGKey(seed * 7919 + 31 * column + s) for s in range(seeds)])
        returns = jax.device_get(run(params, keys))  # (seeds, episodes)
        for s in range(seeds):
            r = returns[s]
            yield {
                "tested_under": spec,
                "seed_index": s,
                "episodes": episodes,
                "mean_return": float(r.mean()),
                "std_return": float(r.std()),
                "stderr_return": float(r.std() / max(episodes, 1) ** 0.5),
            }
