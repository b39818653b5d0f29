"""Breakout with MinAtar's rules (Young & Tian 2019; MinAtar 1.0.15).

Observation: bool ``(10, 10, 4)``, channels ``paddle, ball, trail, brick``.
Actions (minimal set): ``noop, left, right`` (MinAtar full-set indices 0, 1, 3).
Reward: +1 per brick broken. Termination: the ball passes the paddle into the bottom row.

The paddle sits on row 9; the ball moves one cell along a diagonal per step (directions 0: up-left,
1: up-right, 2: down-right, 3: down-left) and reflects off walls, the ceiling and bricks. Hitting the
paddle with the ball straight above it reverses the ball; hitting it with the ball arriving diagonally
deflects it sideways. A brick hit removes the brick and bounces the ball back down; while `strike` is
set (the ball hit a brick last step) a second brick is passed through. When no bricks are left the
three rows (1-3) refill as the ball reaches the bottom row. Randomness: only at reset (the ball
starts at column 0 heading down-right or at column 9 heading down-left, each with prob. 1/2).

Random events (STORI type 2.1, ``event:mode=NAME,p=P``; armed with prob. P each step):

- ``cancel_keep``: a brick hit this step is cancelled (the brick stays) but the +1 is kept
  (STORI Breakout mode 1);
- ``cancel_zero``: a brick hit this step is cancelled and scores 0 (STORI mode 2; wins over
  ``cancel_keep`` when both are armed);
- ``regenerate``: one already-broken brick of rows 1-3 (not under the ball), drawn uniformly,
  comes back at the end of the step (STORI mode 3).

Blackout regions: ``paddle``, ``ball`` (ball and trail), ``bricks``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agentlab.kernels.atari.base import (
    FULL_ROW,
    LEFT,
    RIGHT,
    ROWS,
    MinAtarGame,
    armed,
    cell_rows,
    occupied,
    pick_kth,
)
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.stochasticity import WordStream, randint

BRICK_ROWS = jnp.where((ROWS >= 1) & (ROWS <= 3), FULL_ROW, 0).astype(jnp.int32)  # (10,) rows 1-3


@pytree_dataclass
class BreakoutState:
    ball_x: jax.Array  # int32 ()
    ball_y: jax.Array  # int32 ()
    ball_dir: jax.Array  # int32 () in 0..3
    pos: jax.Array  # int32 () paddle column
    bricks: jax.Array  # int32 (10,) row bitmasks
    strike: jax.Array  # bool (): the ball is in a brick cell it hit (MinAtar's `strike`)
    last_x: jax.Array  # int32 () ball column before the last step (the trail)
    last_y: jax.Array  # int32 ()


@pytree_dataclass
class BreakoutParams:
    """Breakout has no tunable constants in MinAtar."""


class Breakout(MinAtarGame[BreakoutState, BreakoutParams]):
    name = "breakout"
    channels = ("paddle", "ball", "trail", "brick")
    minimal_actions = ("n", "l", "r")
    event_modes = {
        "cancel_keep": "a brick hit is cancelled (the brick stays), reward kept",
        "cancel_zero": "a brick hit is cancelled (the brick stays), reward 0",
        "regenerate": "a random broken brick of rows 1-3 comes back",
    }
    blackout_regions = {"paddle": ("paddle",), "ball": ("ball", "trail"), "bricks": ("brick",)}

    def default_params(self) -> BreakoutParams:
        return BreakoutParams()

    def reset(self, rng: WordStream, params: BreakoutParams) -> BreakoutState:
        right = randint(rng.take(), 2) == 1
        ball_x = jnp.where(right, 9, 0).astype(jnp.int32)
        return BreakoutState(
            ball_x=ball_x,
            ball_y=jnp.int32(3),
            ball_dir=jnp.where(right, 3, 2).astype(jnp.int32),
            pos=jnp.int32(4),
            bricks=BRICK_ROWS,
            strike=jnp.asarray(False),
            last_x=ball_x,
            last_y=jnp.int32(3),
        )

    def step(self, rng, state, action, params, events: Mapping[str, jax.Array]):
        pos = jnp.where(action == LEFT, jnp.maximum(state.pos - 1, 0), state.pos)
        pos = jnp.where(action == RIGHT, jnp.minimum(state.pos + 1, 9), pos)

        d = state.ball_dir
        x = state.ball_x + jnp.where((d == 1) | (d == 2), 1, -1)
        y = state.ball_y + jnp.where(d < 2, -1, 1)
        wall = (x < 0) | (x > 9)
        x = jnp.clip(x, 0, 9)
        d = jnp.where(wall, d ^ 1, d)

        ceiling = y < 0
        d = jnp.where(ceiling, 3 - d, d)
        y = jnp.maximum(y, 0)

        brick_here = ~ceiling & occupied(state.bricks, y, x)
        hit = brick_here & ~state.strike
        cancel_keep, cancel_zero = armed(events, "cancel_keep"), armed(events, "cancel_zero")
        reward = jnp.where(hit & ~cancel_zero, 1.0, 0.0).astype(jnp.float32)
        removed = hit & ~(cancel_keep | cancel_zero)
        bricks = state.bricks & ~jnp.where(removed, cell_rows(y, x), 0)
        d = jnp.where(hit, 3 - d, d)
        y = jnp.where(hit, state.ball_y, y)

        bottom = ~ceiling & ~brick_here & (y == 9)
        bricks = jnp.where(bottom & ~jnp.any(bricks), bricks | BRICK_ROWS, bricks)
        straight = bottom & (state.ball_x == pos)
        diagonal = bottom & ~straight & (x == pos)
        d = jnp.where(straight, 3 - d, jnp.where(diagonal, d ^ 2, d))
        y = jnp.where(straight | diagonal, state.ball_y, y)
        terminated = bottom & ~straight & ~diagonal

        if "regenerate" in events:
            regrown = pick_kth(BRICK_ROWS & ~bricks & ~cell_rows(y, x), rng.take())
            bricks = bricks | jnp.where(events["regenerate"], regrown, 0)

        next_state = BreakoutState(
            ball_x=x,
            ball_y=y,
            ball_dir=d,
            pos=pos,
            bricks=bricks,
            strike=brick_here,  # MinAtar keeps `strike` exactly while the ball is in a brick cell
            last_x=state.ball_x,
            last_y=state.ball_y,
        )
        return next_state, reward, terminated

    def planes(self, state: BreakoutState) -> jax.Array:
        return jnp.stack(
            [
                cell_rows(9, state.pos),
                cell_rows(state.ball_y, state.ball_x),
                cell_rows(state.last_y, state.last_x),
                state.bricks,
            ],
            axis=-1,
        )

    def agent_position(self, state: BreakoutState):
        return jnp.int32(9), state.pos
