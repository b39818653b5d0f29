"""Asterix with MinAtar's rules (Young & Tian 2019; MinAtar 1.0.15).

Observation: bool ``(10, 10, 4)``, channels ``player, enemy, trail, gold``.
Actions (minimal set): ``noop, left, up, right, down`` (full-set indices 0, 1, 2, 3, 4).
Reward: +1 per gold picked up. Termination: the player touches an enemy.

The player moves freely within rows 1-8. Rows 1-8 each hold at most one entity (slot i is row i+1)
that enters from the left or right edge (prob. 1/2 each), is gold with prob. 1/3 and otherwise an
enemy, and moves one cell every `move_speed + 1` steps. An entity spawns every `spawn_speed + 1`
steps into a uniformly drawn free row (nothing spawns if every row is taken). Difficulty ramping:
every `ramp_interval + 1` steps the spawn interval shrinks by one and, on odd ramp indices, the move
interval too (both down to 1).

Random events (STORI type 2.1, ``event:mode=NAME,p=P``; armed with prob. P each step):

- ``cancel_keep``: a gold pickup this step is cancelled (the gold stays) but the +1 is kept;
- ``cancel_zero``: a gold pickup this step is cancelled and scores 0 (wins over ``cancel_keep``);
- ``gold_to_enemy``: at the end of the step one gold item, drawn uniformly, turns into an enemy;
- ``burst_spawn``: one extra entity spawns this step (after the timed spawn, same rules).

Blackout regions: ``player``, ``enemies`` (enemy and trail), ``gold``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agentlab.kernels.atari.base import DOWN, LEFT, RIGHT, UP, MinAtarGame, armed, bit, cell_rows, pick_slot
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.stochasticity import WordStream, bernoulli

SLOT_ROWS = jnp.arange(1, 9, dtype=jnp.int32)  # row of each of the 8 entity slots


@pytree_dataclass
class AsterixState:
    player_x: jax.Array  # int32 ()
    player_y: jax.Array  # int32 ()
    active: jax.Array  # bool (8,): slot i (row i+1) holds an entity
    x: jax.Array  # int32 (8,) entity column
    right: jax.Array  # bool (8,) entity moves right
    gold: jax.Array  # bool (8,) entity is gold (else an enemy)
    spawn_speed: jax.Array  # int32 ()
    spawn_timer: jax.Array  # int32 ()
    move_speed: jax.Array  # int32 ()
    move_timer: jax.Array  # int32 ()
    ramp_timer: jax.Array  # int32 ()
    ramp_index: jax.Array  # int32 ()


@pytree_dataclass
class AsterixParams:
    ramping: bool = True  # difficulty ramping (MinAtar's default)
    ramp_interval: int = 100
    init_spawn_speed: int = 10
    init_move_interval: int = 5
    gold_prob: float = 1 / 3
    left_prob: float = 1 / 2  # probability an entity enters from the left edge (moving right)


def _spawn(state: AsterixState, rng: WordStream, params: AsterixParams, when: jax.Array) -> AsterixState:
    """MinAtar's `_spawn_entity`: a new entity in a uniformly drawn free slot, if any."""
    from_left = bernoulli(rng.take(), params.left_prob)
    is_gold = bernoulli(rng.take(), params.gold_prob)
    slot = pick_slot(~state.active, rng.take()) & when
    return state.replace(
        active=state.active | slot,
        x=jnp.where(slot, jnp.where(from_left, 0, 9), state.x),
        right=jnp.where(slot, from_left, state.right),
        gold=jnp.where(slot, is_gold, state.gold),
    )


class Asterix(MinAtarGame[AsterixState, AsterixParams]):
    name = "asterix"
    channels = ("player", "enemy", "trail", "gold")
    minimal_actions = ("n", "l", "u", "r", "d")
    event_modes = {
        "cancel_keep": "a gold pickup is cancelled (the gold stays), reward kept",
        "cancel_zero": "a gold pickup is cancelled (the gold stays), reward 0",
        "gold_to_enemy": "a random gold item turns into an enemy",
        "burst_spawn": "an extra entity spawns",
    }
    blackout_regions = {"player": ("player",), "enemies": ("enemy", "trail"), "gold": ("gold",)}

    def default_params(self) -> AsterixParams:
        return AsterixParams()

    def reset(self, rng: WordStream, params: AsterixParams) -> AsterixState:
        zeros = jnp.zeros(8, jnp.int32)
        spawn_speed = jnp.asarray(params.init_spawn_speed, jnp.int32)
        move_speed = jnp.asarray(params.init_move_interval, jnp.int32)
        return AsterixState(
            player_x=jnp.int32(5),
            player_y=jnp.int32(5),
            active=zeros.astype(bool),
            x=zeros,
            right=zeros.astype(bool),
            gold=zeros.astype(bool),
            spawn_speed=spawn_speed,
            spawn_timer=spawn_speed,
            move_speed=move_speed,
            move_timer=move_speed,
            ramp_timer=jnp.asarray(params.ramp_interval, jnp.int32),
            ramp_index=jnp.int32(0),
        )

    def step(self, rng, state, action, params, events: Mapping[str, jax.Array]):
        spawn_now = state.spawn_timer == 0
        state = _spawn(state, rng, params, spawn_now)
        state = state.replace(spawn_timer=jnp.where(spawn_now, state.spawn_speed, state.spawn_timer))
        if "burst_spawn" in events:
            state = _spawn(state, rng, params, events["burst_spawn"])

        px = jnp.where(action == LEFT, jnp.maximum(state.player_x - 1, 0), state.player_x)
        px = jnp.where(action == RIGHT, jnp.minimum(px + 1, 9), px)
        py = jnp.where(action == UP, jnp.maximum(state.player_y - 1, 1), state.player_y)
        py = jnp.where(action == DOWN, jnp.minimum(py + 1, 8), py)

        cancel_keep = armed(events, "cancel_keep")
        cancel_zero = armed(events, "cancel_zero")
        cancelled = cancel_keep | cancel_zero
        in_row = SLOT_ROWS == py

        # Contact before the entities move, then after they move (when the move timer fires).
        contact = state.active & in_row & (state.x == px)
        picked = contact & state.gold
        terminated = jnp.any(contact & ~state.gold)
        active = state.active & ~(picked & ~cancelled)

        move = state.move_timer == 0
        x = jnp.where(active & move, state.x + jnp.where(state.right, 1, -1), state.x)
        active = active & (x >= 0) & (x <= 9)
        contact2 = move & active & in_row & (x == px)
        picked2 = contact2 & state.gold
        terminated = terminated | jnp.any(contact2 & ~state.gold)
        active = active & ~(picked2 & ~cancelled)
        reward = jnp.sum(picked, dtype=jnp.float32) + jnp.sum(picked2, dtype=jnp.float32)
        reward = jnp.where(cancel_zero, 0.0, reward).astype(jnp.float32)

        gold = state.gold
        if "gold_to_enemy" in events:
            turned = pick_slot(active & gold, rng.take()) & events["gold_to_enemy"]
            gold = gold & ~turned

        spawn_timer = state.spawn_timer - 1
        move_timer = jnp.where(move, state.move_speed, state.move_timer) - 1

        # Difficulty ramp.
        spawn_speed, move_speed = state.spawn_speed, state.move_speed
        can_ramp = jnp.asarray(params.ramping) & ((spawn_speed > 1) | (move_speed > 1))
        count_down = can_ramp & (state.ramp_timer >= 0)
        ramp = can_ramp & (state.ramp_timer < 0)
        ramp_timer = jnp.where(count_down, state.ramp_timer - 1, state.ramp_timer)
        ramp_timer = jnp.where(ramp, jnp.asarray(params.ramp_interval, jnp.int32), ramp_timer)
        move_speed = jnp.where(ramp & (move_speed > 1) & (state.ramp_index % 2 == 1), move_speed - 1, move_speed)
        spawn_speed = jnp.where(ramp & (spawn_speed > 1), spawn_speed - 1, spawn_speed)

        next_state = AsterixState(
            player_x=px,
            player_y=py,
            active=active,
            x=x,
            right=state.right,
            gold=gold,
            spawn_speed=spawn_speed,
            spawn_timer=spawn_timer,
            move_speed=move_speed,
            move_timer=move_timer,
            ramp_timer=ramp_timer,
            ramp_index=state.ramp_index + ramp,
        )
        return next_state, reward, terminated

    def planes(self, state: AsterixState) -> jax.Array:
        def rows(values):  # slot i is row i + 1; rows 0 and 9 stay empty
            return jnp.concatenate([jnp.zeros(1, jnp.int32), values.astype(jnp.int32), jnp.zeros(1, jnp.int32)])

        here = jnp.where(state.active, bit(state.x), 0)
        back = jnp.where(state.active, bit(jnp.where(state.right, state.x - 1, state.x + 1)), 0)
        return jnp.stack(
            [
                cell_rows(state.player_y, state.player_x),
                rows(jnp.where(state.gold, 0, here)),
                rows(back),
                rows(jnp.where(state.gold, here, 0)),
            ],
            axis=-1,
        )

    def agent_position(self, state: AsterixState):
        return state.player_y, state.player_x
