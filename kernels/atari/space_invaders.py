"""Space Invaders with MinAtar's rules (Young & Tian 2019; MinAtar 1.0.15).

Observation: bool ``(10, 10, 6)``, channels
``cannon, alien, alien_left, alien_right, friendly_bullet, enemy_bullet``.
Actions (minimal set): ``noop, left, right, fire`` (full-set indices 0, 1, 3, 5).
Reward: +1 per alien shot. Termination: an alien or an enemy bullet reaches the cannon, or an alien
in the bottom row has to step down.

The cannon sits in row 9 and may fire every `shot_cool_down` steps; bullets move one row per step.
A 4x6 block of aliens moves sideways one cell every `min(aliens left, move interval) + 1` steps and
steps down (reversing) at an edge; the alien nearest the cannon (by column distance, lowest column on
ties; its lowest alien) fires every `enemy_shot_interval + 1` steps. A cleared wave is replaced by a
fresh block and, with ramping, the move interval shrinks by one while above `min_move_interval`.
The game is deterministic.

Random events (STORI type 2.1, ``event:mode=NAME,p=P``; armed with prob. P each step):

- ``cancel_keep``: alien hits this step are cancelled (the aliens survive, the bullets are spent)
  but the reward is kept;
- ``cancel_zero``: alien hits are cancelled and score 0 (wins over ``cancel_keep``);
- ``respawn``: a destroyed alien comes back: one empty cell inside the bounding box of the living
  aliens, drawn uniformly, gets an alien;
- ``extra_shot``: the alien nearest the cannon fires an extra bullet (its timer is unaffected).

Blackout regions: ``cannon``, ``aliens`` (alien and both direction channels), ``bullets``
(friendly and enemy bullets).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agentlab.kernels.atari.base import (
    BITS,
    FIRE,
    FULL_ROW,
    LEFT,
    RIGHT,
    ROWS,
    MinAtarGame,
    any_bit_or,
    armed,
    bit,
    cell_rows,
    pick_kth,
    popcount,
)
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.stochasticity import WordStream

WAVE = jnp.where(ROWS < 4, 0b0011111100, 0).astype(jnp.int32)  # (10,) the starting block: rows 0-3, columns 2-7
ZERO = jnp.zeros(1, jnp.int32)


@pytree_dataclass
class SpaceInvadersState:
    pos: jax.Array  # int32 () cannon column
    friendly_bullets: jax.Array  # int32 (10,) row bitmasks
    enemy_bullets: jax.Array  # int32 (10,) row bitmasks
    aliens: jax.Array  # int32 (10,) row bitmasks
    alien_dir: jax.Array  # int32 () -1 left, +1 right
    move_interval: jax.Array  # int32 () MinAtar's enemy_move_interval (ramps down)
    alien_move_timer: jax.Array  # int32 ()
    alien_shot_timer: jax.Array  # int32 ()
    ramp_index: jax.Array  # int32 ()
    shot_timer: jax.Array  # int32 ()


@pytree_dataclass
class SpaceInvadersParams:
    ramping: bool = True
    shot_cool_down: int = 5
    enemy_move_interval: int = 12
    enemy_shot_interval: int = 10
    min_move_interval: int = 6  # ramping stops once the move interval reaches this


def _nearest_shooter(aliens: jax.Array, pos: jax.Array) -> jax.Array:
    """MinAtar's `_nearest_alien`: the lowest alien of the column nearest `pos` (lowest column on
    ties), as row bitmasks (10,)."""
    columns = any_bit_or(aliens)
    has = ((columns >> ROWS) & 1).astype(bool)  # (10,) per column
    order = jnp.where(has, jnp.abs(ROWS - pos) * 16 + ROWS, 1 << 20)
    col = jnp.argmin(order).astype(jnp.int32)
    in_col = ((aliens >> col) & 1).astype(bool)  # (10,) per row
    row = jnp.max(jnp.where(in_col, ROWS, -1))
    return jnp.where(jnp.any(has), cell_rows(row, col), 0)


class SpaceInvaders(MinAtarGame[SpaceInvadersState, SpaceInvadersParams]):
    name = "space-invaders"
    channels = ("cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet")
    minimal_actions = ("n", "l", "r", "f")
    event_modes = {
        "cancel_keep": "alien hits are cancelled (the aliens survive), reward kept",
        "cancel_zero": "alien hits are cancelled (the aliens survive), reward 0",
        "respawn": "a destroyed alien comes back inside the formation",
        "extra_shot": "the alien nearest the cannon fires an extra bullet",
    }
    blackout_regions = {
        "cannon": ("cannon",),
        "aliens": ("alien", "alien_left", "alien_right"),
        "bullets": ("friendly_bullet", "enemy_bullet"),
    }

    def default_params(self) -> SpaceInvadersParams:
        return SpaceInvadersParams()

    def reset(self, rng: WordStream, params: SpaceInvadersParams) -> SpaceInvadersState:
        empty = jnp.zeros(10, jnp.int32)
        interval = jnp.asarray(params.enemy_move_interval, jnp.int32)
        return SpaceInvadersState(
            pos=jnp.int32(5),
            friendly_bullets=empty,
            enemy_bullets=empty,
            aliens=WAVE,
            alien_dir=jnp.int32(-1),
            move_interval=interval,
            alien_move_timer=interval,
            alien_shot_timer=jnp.asarray(params.enemy_shot_interval, jnp.int32),
            ramp_index=jnp.int32(0),
            shot_timer=jnp.int32(0),
        )

    def step(self, rng, state, action, params, events: Mapping[str, jax.Array]):
        fire = (action == FIRE) & (state.shot_timer == 0)
        friendly = state.friendly_bullets | jnp.where(fire, cell_rows(9, state.pos), 0)
        shot_timer = jnp.where(fire, jnp.asarray(params.shot_cool_down, jnp.int32), state.shot_timer)
        pos = jnp.where(action == LEFT, jnp.maximum(state.pos - 1, 0), state.pos)
        pos = jnp.where(action == RIGHT, jnp.minimum(pos + 1, 9), pos)

        friendly = jnp.concatenate([friendly[1:], ZERO])  # up one row
        enemy = jnp.concatenate([ZERO, state.enemy_bullets[:-1]])  # down one row
        cannon = bit(pos)
        terminated = ((enemy[9] | state.aliens[9]) & cannon) != 0

        aliens = state.aliens
        move = state.alien_move_timer == 0
        alien_move_timer = jnp.where(move, jnp.minimum(popcount(aliens), state.move_interval), state.alien_move_timer)
        columns = any_bit_or(aliens)
        at_edge = (((columns & 1) != 0) & (state.alien_dir < 0)) | (((columns & (1 << 9)) != 0) & (state.alien_dir > 0))
        descend = move & at_edge
        terminated = terminated | (descend & (aliens[9] != 0))
        alien_dir = jnp.where(descend, -state.alien_dir, state.alien_dir)
        sideways = jnp.where(alien_dir > 0, (aliens << 1) & FULL_ROW, aliens >> 1)
        aliens = jnp.where(descend, jnp.roll(aliens, 1), jnp.where(move, sideways, aliens))
        terminated = terminated | (move & ((aliens[9] & cannon) != 0))

        shoot = state.alien_shot_timer == 0
        if "extra_shot" in events:
            shoot = shoot | events["extra_shot"]
        enemy = enemy | jnp.where(shoot, _nearest_shooter(aliens, pos), 0)
        alien_shot_timer = jnp.where(
            state.alien_shot_timer == 0, jnp.asarray(params.enemy_shot_interval, jnp.int32), state.alien_shot_timer
        )

        kills = aliens & friendly
        cancel_keep, cancel_zero = armed(events, "cancel_keep"), armed(events, "cancel_zero")
        reward = jnp.where(cancel_zero, 0, popcount(kills)).astype(jnp.float32)
        aliens = aliens & ~jnp.where(cancel_keep | cancel_zero, 0, kills)
        friendly = friendly & ~kills

        if "respawn" in events:
            columns = any_bit_or(aliens)
            filled = aliens != 0
            first_row, last_row = jnp.argmax(filled), 9 - jnp.argmax(filled[::-1])
            col_has = (columns & BITS) != 0
            first_col, last_col = jnp.argmax(col_has), 9 - jnp.argmax(col_has[::-1])
            span = (jnp.left_shift(1, last_col + 1) - 1) & ~(jnp.left_shift(1, first_col) - 1)
            inside = jnp.where((ROWS >= first_row) & (ROWS <= last_row) & jnp.any(filled), span, 0)
            aliens = aliens | jnp.where(events["respawn"], pick_kth(inside & ~aliens, rng.take()), 0)

        cleared = ~jnp.any(aliens != 0)
        ramp = cleared & jnp.asarray(params.ramping) & (state.move_interval > params.min_move_interval)
        next_state = SpaceInvadersState(
            pos=pos,
            friendly_bullets=friendly,
            enemy_bullets=enemy,
            aliens=jnp.where(cleared, WAVE, aliens),
            alien_dir=alien_dir,
            move_interval=state.move_interval - ramp,
            alien_move_timer=alien_move_timer - 1,
            alien_shot_timer=alien_shot_timer - 1,
            ramp_index=state.ramp_index + ramp,
            shot_timer=shot_timer - (shot_timer > 0),
        )
        return next_state, reward, terminated

    def planes(self, state: SpaceInvadersState) -> jax.Array:
        left = state.alien_dir < 0
        return jnp.stack(
            [
                cell_rows(9, state.pos),
                state.aliens,
                jnp.where(left, state.aliens, 0),
                jnp.where(left, 0, state.aliens),
                state.friendly_bullets,
                state.enemy_bullets,
            ],
            axis=-1,
        )

    def agent_position(self, state: SpaceInvadersState):
        return jnp.int32(9), state.pos
