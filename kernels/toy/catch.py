"""`catch`: bsuite's Catch (Osband et al. 2020), a learner's first sanity check.

A ball starts in a uniformly random column of the top row of a 10 x 5 board and falls one row per
step; the agent moves a paddle along the bottom row. After 9 steps the ball reaches the bottom row:
reward +1 if the paddle is under it, -1 otherwise, and the episode terminates. The optimal return is
+1 (every ball can be reached); a uniformly random policy scores about -0.6.

Observation: bool ``(10, 5, 1)`` (ball and paddle cells set). Actions: 0 left, 1 stay, 2 right.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete

ROWS, COLS = 10, 5


@pytree_dataclass
class CatchState:
    ball_x: jax.Array  # int32 ()
    ball_y: jax.Array  # int32 ()
    paddle_x: jax.Array  # int32 ()
    time: jax.Array  # int32 ()


@pytree_dataclass
class CatchParams:
    max_steps: int | None = None


class Catch(Environment[CatchState, CatchParams]):
    name = "catch"

    def default_params(self) -> CatchParams:
        return CatchParams()

    def action_space(self, params=None) -> Discrete:
        return Discrete(3)

    def observation_space(self, params=None) -> Box:
        return Box(0, 1, (ROWS, COLS, 1), jnp.bool_)

    def init(self, key, params) -> CatchState:
        return CatchState(
            ball_x=jax.random.randint(key, (), 0, COLS, jnp.int32),
            ball_y=jnp.int32(0),
            paddle_x=jnp.int32(COLS // 2),
            time=jnp.zeros((), jnp.int32),
        )

    def advance(self, key, state, action, params):
        paddle = jnp.clip(state.paddle_x + jnp.asarray(action, jnp.int32) - 1, 0, COLS - 1)
        ball_y = state.ball_y + 1
        landed = ball_y == ROWS - 1
        reward = jnp.where(landed, jnp.where(paddle == state.ball_x, 1.0, -1.0), 0.0).astype(jnp.float32)
        return state.replace(ball_y=ball_y, paddle_x=paddle), reward, landed, {}

    def observe(self, key, state, params) -> jax.Array:
        rows = jnp.arange(ROWS)[:, None]
        cols = jnp.arange(COLS)[None, :]
        ball = (rows == state.ball_y) & (cols == state.ball_x)
        paddle = (rows == ROWS - 1) & (cols == state.paddle_x)
        return (ball | paddle)[:, :, None]


def describe(env: Catch) -> dict:
    return describe_kernel(env, "toy", actions=["left", "stay", "right"], channels=["ball_and_paddle"])
