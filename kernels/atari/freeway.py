"""Freeway with MinAtar's rules (Young & Tian 2019; MinAtar 1.0.15).

Observation: bool ``(10, 10, 7)``, channels ``chicken, car, speed1, speed2, speed3, speed4, speed5``.
Actions (minimal set): ``noop, up, down`` (full-set indices 0, 2, 4).
Reward: +1 each time the chicken reaches the top row. Termination: after `time_limit` + 1 steps
(MinAtar's own rule: 2501 steps with the default 2500; a termination, not a truncation).

The chicken lives in column 4 and can move one row every `player_speed` steps. Eight cars, one per
row 1-8, drive left or right and wrap around; a car of speed s moves one cell every s + 1 steps, and
its trail cell (behind it) lights up channel ``speed{s}``. A car touching the chicken sends it back
to row 9. On reaching the top the chicken returns to row 9 and every car gets a new speed (uniform in
1..5) and direction (left or right, prob. 1/2) and restarts its move timer, keeping its position.

Random events (STORI type 2.1, ``event:mode=NAME,p=P``; armed with prob. P each step):

- ``cancel_keep``: a crossing this step is cancelled: the chicken drops back to row 1 and the cars
  keep their speeds, but the +1 is kept;
- ``cancel_zero``: a crossing this step is cancelled: the chicken goes back to row 9, the cars keep
  their speeds and it scores 0 (wins over ``cancel_keep``);
- ``shuffle_speeds``: every car's speed and direction are re-drawn mid-crossing.

Blackout regions: ``chicken``, ``cars``, ``speeds`` (the five trail channels).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agentlab.kernels.atari.base import DOWN, UP, MinAtarGame, armed, bit, cell_rows
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.stochasticity import WordStream, randint

CAR_ROWS = jnp.arange(1, 9, dtype=jnp.int32)  # row of each of the 8 cars


@pytree_dataclass
class FreewayState:
    pos: jax.Array  # int32 () chicken row
    car_x: jax.Array  # int32 (8,)
    car_timer: jax.Array  # int32 (8,) steps until the car next moves
    car_speed: jax.Array  # int32 (8,) signed: +s moves right, -s moves left, |s| in 1..5
    move_timer: jax.Array  # int32 () steps until the chicken may move
    terminate_timer: jax.Array  # int32 () MinAtar's countdown to termination


@pytree_dataclass
class FreewayParams:
    player_speed: int = 3
    time_limit: int = 2500


def _random_speeds(rng: WordStream) -> jax.Array:
    """MinAtar's `_randomize_cars`: eight speeds uniform in 1..5, each with a uniformly random sign.

    One word per car: its top 24 bits give the speed, its lowest bit the direction.
    """
    words = rng.take_many(8)
    speeds = 1 + randint(words, 5)
    return jnp.where((words & 1) == 1, speeds, -speeds).astype(jnp.int32)


class Freeway(MinAtarGame[FreewayState, FreewayParams]):
    name = "freeway"
    channels = ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5")
    minimal_actions = ("n", "u", "d")
    event_modes = {
        "cancel_keep": "a crossing is cancelled (chicken back to row 1, cars unchanged), reward kept",
        "cancel_zero": "a crossing is cancelled (chicken back to row 9, cars unchanged), reward 0",
        "shuffle_speeds": "every car's speed and direction are re-drawn",
    }
    blackout_regions = {
        "chicken": ("chicken",),
        "cars": ("car",),
        "speeds": ("speed1", "speed2", "speed3", "speed4", "speed5"),
    }

    def default_params(self) -> FreewayParams:
        return FreewayParams()

    def reset(self, rng: WordStream, params: FreewayParams) -> FreewayState:
        speed = _random_speeds(rng)
        return FreewayState(
            pos=jnp.int32(9),
            car_x=jnp.zeros(8, jnp.int32),
            car_timer=jnp.abs(speed),
            car_speed=speed,
            move_timer=jnp.asarray(params.player_speed, jnp.int32),
            terminate_timer=jnp.asarray(params.time_limit, jnp.int32),
        )

    def step(self, rng, state, action, params, events: Mapping[str, jax.Array]):
        ready = state.move_timer == 0
        up, down = ready & (action == UP), ready & (action == DOWN)
        move_timer = jnp.where(up | down, jnp.asarray(params.player_speed, jnp.int32), state.move_timer)
        pos = jnp.where(up, jnp.maximum(state.pos - 1, 0), state.pos)
        pos = jnp.where(down, jnp.minimum(pos + 1, 9), pos)

        crossed = pos == 0
        cancel_keep = armed(events, "cancel_keep")
        cancel_zero = armed(events, "cancel_zero")
        cancelled = crossed & (cancel_keep | cancel_zero)
        reward = jnp.where(crossed & ~cancel_zero, 1.0, 0.0).astype(jnp.float32)
        # A completed crossing re-draws every car's speed and restarts its move timer.
        redraw = crossed & ~cancelled
        speed = jnp.where(redraw, _random_speeds(rng), state.car_speed)
        timer = jnp.where(redraw, jnp.abs(speed), state.car_timer)
        pos = jnp.where(crossed, jnp.where(cancel_keep & ~cancel_zero, 1, 9), pos)

        # Cars: a car in the chicken's row at column 4 sends it back, before or after moving.
        in_row = CAR_ROWS == pos
        hit = jnp.any(in_row & (state.car_x == 4))
        moves = timer == 0
        car_x = jnp.where(moves, (state.car_x + jnp.sign(speed)) % 10, state.car_x)
        car_timer = jnp.where(moves, jnp.abs(speed), timer - 1)
        hit = hit | jnp.any(in_row & moves & (car_x == 4))
        pos = jnp.where(hit, 9, pos)

        if "shuffle_speeds" in events:
            speed = jnp.where(events["shuffle_speeds"], _random_speeds(rng), speed)
            car_timer = jnp.where(events["shuffle_speeds"], jnp.abs(speed), car_timer)

        terminate_timer = state.terminate_timer - 1
        next_state = FreewayState(
            pos=pos,
            car_x=car_x,
            car_timer=car_timer,
            car_speed=speed,
            move_timer=move_timer - (move_timer > 0),
            terminate_timer=terminate_timer,
        )
        return next_state, reward, terminate_timer < 0

    def planes(self, state: FreewayState) -> jax.Array:
        def rows(values):  # car i is in row i + 1; rows 0 and 9 hold no car
            return jnp.concatenate([jnp.zeros(1, jnp.int32), values.astype(jnp.int32), jnp.zeros(1, jnp.int32)])

        back = bit(jnp.where(state.car_speed > 0, state.car_x - 1, state.car_x + 1) % 10)
        speed = jnp.abs(state.car_speed)
        trails = [rows(jnp.where(speed == s, back, 0)) for s in range(1, 6)]
        return jnp.stack([cell_rows(state.pos, 4), rows(bit(state.car_x)), *trails], axis=-1)

    def agent_position(self, state: FreewayState):
        return state.pos, jnp.int32(4)
