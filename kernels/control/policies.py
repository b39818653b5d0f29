"""The maze2d waypoint planner (the controller D4RL's maze2d data came from, on agentlab's physics) and the scripted
policies `agentlab render` plays on the control kernels.

The planner: a breadth-first search from the goal over the free cells (4-neighbour moves) gives, once per layout and
on the host, the next cell on a shortest path from every free cell (`waypoint_table`). Each step the waypoint is the
centre of the next cell from the point's current cell (the goal centre in the goal cell), and the action is the PD
control ``a = clip(kp (waypoint - position) - kd velocity, -1, 1)`` plus Gaussian noise of std `noise_std`, clipped
again. Two adjacent cells form a rectangle of free space, so the straight pull towards the next centre never aims
through a wall. With `KP`, `KD` and the default physics the planner reaches the goal from every free cell of every
layout within the layout's episode length, noiseless and at `NOISE_STD` (tests/test_control.py).
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.kernels.control.maze2d import LAYOUTS, Maze2d, Maze2dParams, parse_layout

KP = 2.0  # action per cell of distance to the waypoint
KD = 0.5  # action per cell/s of velocity
NOISE_STD = 0.2  # the default action noise (std, before the final clip)
POLICIES = ("random", "noop", "planner")  # what `agentlab render` plays; `planner` only on maze2d


@functools.cache
def waypoint_table(layout: str) -> np.ndarray:
    """float32 ``(rows, cols, 2)``: the (x, y) waypoint from each cell, the centre of the next cell on a shortest
    path to the goal (the goal's own centre in the goal cell; a wall cell or a cell cut off from the goal points
    at its own centre)."""
    grid = parse_layout(LAYOUTS[layout])
    free = grid != ord("#")
    rows, cols = grid.shape
    goal = tuple(int(i) for i in np.argwhere(grid == ord("G"))[0])
    nxt = np.full((rows, cols, 2), -1, np.int64)
    nxt[goal] = goal
    queue = deque([goal])
    while queue:  # BFS outwards from the goal: a cell's next cell is the neighbour it was reached from
        r, c = queue.popleft()
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < rows and 0 <= cc < cols and free[rr, cc] and nxt[rr, cc, 0] < 0:
                nxt[rr, cc] = (r, c)
                queue.append((rr, cc))
    own = np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), -1)
    nxt = np.where(nxt[..., :1] < 0, own, nxt)
    return (nxt[..., ::-1] + 0.5).astype(np.float32)


def planner_action(
    key: jax.Array,
    obs: jax.Array,
    params: Maze2dParams,
    env: Maze2d,
    noise_std: float = NOISE_STD,
    kp: float = KP,
    kd: float = KD,
) -> jax.Array:
    """float32 (2,): the planner's action for a maze2d observation ``(x, y, vx, vy)``; pure, jittable and vmappable
    (the waypoint table is a constant of the layout). `params` is taken for the policy signature; the controller
    does not depend on it."""
    del params
    obs = jnp.asarray(obs, jnp.float32)
    position, velocity = obs[:2], obs[2:]
    rows, cols = env.shape
    col = jnp.clip(jnp.floor(position[0]).astype(jnp.int32), 0, cols - 1)
    row = jnp.clip(jnp.floor(position[1]).astype(jnp.int32), 0, rows - 1)
    waypoint = jnp.asarray(waypoint_table(env.layout))[row, col]
    action = jnp.clip(kp * (waypoint - position) - kd * velocity, -1.0, 1.0)
    noise = noise_std * jax.random.normal(key, (2,), jnp.float32)
    return jnp.clip(action + noise, -1.0, 1.0)


def scripted_policy(name: str, env: Any, params: Any, noise_std: float = NOISE_STD):
    """``policy(key, obs) -> action`` for a control kernel: ``random`` (uniform actions), ``noop`` (zeros) or
    ``planner`` (`planner_action`, maze2d only). `UsageError` names the valid policies otherwise."""
    if name not in POLICIES or (name == "planner" and not isinstance(env, Maze2d)):
        valid = POLICIES if isinstance(env, Maze2d) else POLICIES[:2]
        raise UsageError(f"unknown policy {name!r} for {env.name}: valid policies are {choices(valid)}")
    space = env.action_space(params)
    if name == "random":
        return lambda key, obs: space.sample(key)
    if name == "noop":
        return lambda key, obs: jnp.zeros(space.shape, space.dtype)
    return lambda key, obs: planner_action(key, obs, params, env, noise_std)


def run_episode(env: Any, params: Any, key: jax.Array, steps: int, policy) -> dict[str, jax.Array]:
    """One episode of at most `steps` steps under ``policy(key, obs)`` (no auto-reset): ``obs`` ``(steps + 1, d)``
    (the reset observation first), ``action``, ``reward`` and ``done`` ``(steps,)`` (done: the episode had ended at
    or before this step). Reset with ``fold_in(key, 0)``; step t uses the t-th key of ``split(fold_in(key, 1))``."""
    obs, state = env.reset(jax.random.fold_in(key, 0), params)

    def body(carry, k):
        obs, state, done = carry
        k_act, k_step = jax.random.split(k)
        action = policy(k_act, obs)
        next_obs, next_state, reward, terminated, truncated, _ = env.step(k_step, state, action, params)
        done = done | terminated | truncated
        return (next_obs, next_state, done), (next_obs, action, reward, done)

    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    _, (all_obs, actions, rewards, done) = jax.lax.scan(body, (obs, state, jnp.asarray(False)), keys)
    return {"obs": jnp.concatenate([obs[None], all_obs]), "action": actions, "reward": rewards, "done": done}
