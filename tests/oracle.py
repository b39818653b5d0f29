"""MinAtar as a test oracle (MinAtar is GPL-3.0: it is only imported here, never copied).

For each game: `from_minatar` turns a MinAtar game object into our game state, `to_lists` turns our
state into MinAtar's representation for comparison, and `draws` lists, in MinAtar's call order, the
random values our kernel drew from a step's words, so MinAtar can be stepped with a `ScriptedRandom`
that replays them. With that, both implementations follow the same trajectory exactly.
"""

from __future__ import annotations

import importlib
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.kernels.atari.asterix import AsterixState
from agentlab.kernels.atari.base import pack
from agentlab.kernels.atari.breakout import BreakoutState
from agentlab.kernels.atari.freeway import FreewayState
from agentlab.kernels.atari.seaquest import (
    BULLET_SLOTS,
    DIVER_SLOTS,
    ENEMY_BULLET_SLOTS,
    ENEMY_SLOTS,
    SeaquestState,
)
from agentlab.kernels.atari.space_invaders import SpaceInvadersState
from agentlab.kernels.stochasticity import GAME_STREAM, counter_words, randint, seed_words, uniform


class ScriptedRandom:
    """Stands in for MinAtar's `np.random.RandomState`, replaying queued values in call order.

    Each call checks that the scripted value is one `RandomState` could return for that call: ``rand(*size)``
    floats in [0, 1) of shape `size`, ``randint(low, high=None, size=None)`` integers in ``[low, high)`` (``[0, low)``
    without `high`) of shape `size`, so a script that draws outside MinAtar's bounds fails instead of passing
    silently."""

    def __init__(self):
        self.queue: deque = deque()

    def push(self, *values):
        self.queue.extend(values)

    def _next(self, kind, call):
        assert self.queue, f"MinAtar asked for an unexpected random {call}"
        got_kind, value = self.queue.popleft()
        assert got_kind == kind, f"MinAtar asked for {call}, script has {got_kind}"
        return value

    @staticmethod
    def _check(value, call, shape, low, high, integer):
        array = np.asarray(value)
        assert array.shape == shape, f"scripted {call}: shape {array.shape}, expected {shape}"
        if integer:
            assert np.issubdtype(array.dtype, np.integer), f"scripted {call}: {value!r} is not an integer"
        else:
            assert np.issubdtype(array.dtype, np.floating), f"scripted {call}: {value!r} is not a float"
        assert np.all((array >= low) & (array < high)), f"scripted {call}: {value!r} outside [{low}, {high})"

    def rand(self, *size):
        call = f"rand({', '.join(map(str, size))})"
        value = self._next("rand", call)
        self._check(value, call, tuple(size), 0.0, 1.0, integer=False)
        return value

    def randint(self, low, high=None, size=None):
        call = f"randint(low={low}, high={high}, size={size})"
        value = self._next("randint", call)
        low, high = (0, low) if high is None else (low, high)
        assert low < high, f"MinAtar called {call} on an empty range"
        shape = () if size is None else tuple(np.atleast_1d(size))
        self._check(value, call, shape, low, high, integer=True)
        return value

    def assert_drained(self):
        assert not self.queue, f"MinAtar did not use scripted draws {list(self.queue)}"


def minatar_env(name: str, ramping: bool = True):
    module = importlib.import_module(f"minatar.environments.{name.replace('-', '_')}")
    env = module.Env(ramping=ramping)
    env.random = ScriptedRandom()
    return env


WORDS = 48  # more than any game draws in one step


@jax.jit
def game_words(key) -> jax.Array:
    """The words of a step's game stream, in the order the game takes them."""
    return counter_words(seed_words(key), GAME_STREAM + jnp.arange(WORDS))


def _u(w) -> float:
    return float(uniform(jnp.uint32(w)))


def _k(w, n) -> int:
    return int(randint(jnp.uint32(w), n))


# ---------------------------------------------------------------- breakout
def breakout_from(e) -> BreakoutState:
    i = lambda v: jnp.int32(v)  # noqa: E731
    return BreakoutState(
        ball_x=i(e.ball_x),
        ball_y=i(e.ball_y),
        ball_dir=i(e.ball_dir),
        pos=i(e.pos),
        bricks=pack(jnp.asarray(e.brick_map, bool)),
        strike=jnp.asarray(bool(e.strike)),
        last_x=i(e.last_x),
        last_y=i(e.last_y),
    )


def breakout_reset_draws(w, e):
    return [("randint", _k(w[0], 2))]


def breakout_step_draws(w, e, action):
    return []


# ---------------------------------------------------------------- asterix
def asterix_from(e) -> AsterixState:
    active = [x is not None for x in e.entities]
    get = lambda j, default: [x[j] if x is not None else default for x in e.entities]  # noqa: E731
    i = lambda v: jnp.int32(v)  # noqa: E731
    return AsterixState(
        player_x=i(e.player_x),
        player_y=i(e.player_y),
        active=jnp.asarray(active),
        x=jnp.asarray(get(0, 0), jnp.int32),
        right=jnp.asarray(get(2, False), bool),
        gold=jnp.asarray(get(3, False), bool),
        spawn_speed=i(e.spawn_speed),
        spawn_timer=i(e.spawn_timer),
        move_speed=i(e.move_speed),
        move_timer=i(e.move_timer),
        ramp_timer=i(e.ramp_timer),
        ramp_index=i(e.ramp_index),
    )


def asterix_reset_draws(w, e):
    return []


def asterix_step_draws(w, e, action):
    if e.spawn_timer != 0:
        return []
    draws = [("rand", _u(w[0])), ("rand", _u(w[1]))]
    free = sum(x is None for x in e.entities)
    if free:
        draws.append(("randint", _k(w[2], free)))
    return draws


# ---------------------------------------------------------------- freeway
def freeway_from(e) -> FreewayState:
    cars = np.asarray(e.cars)
    i = lambda v: jnp.int32(v)  # noqa: E731
    return FreewayState(
        pos=i(e.pos),
        car_x=jnp.asarray(cars[:, 0], jnp.int32),
        car_timer=jnp.asarray(cars[:, 2], jnp.int32),
        car_speed=jnp.asarray(cars[:, 3], jnp.int32),
        move_timer=i(e.move_timer),
        terminate_timer=i(e.terminate_timer),
    )


def _car_draws(w):
    """One word per car: its top bits give the speed, its lowest bit the direction (right if set)."""
    speeds = np.array([1 + _k(w[j], 5) for j in range(8)])
    return [("randint", speeds), ("rand", np.array([0.75 if w[j] & 1 else 0.25 for j in range(8)]))]


def freeway_reset_draws(w, e):
    return _car_draws(w)


def freeway_step_draws(w, e, action):
    moves = e.move_timer == 0 and action in (2, 4)
    pos = max(0, e.pos - 1) if (moves and action == 2) else e.pos
    return _car_draws(w) if pos == 0 else []


# ---------------------------------------------------------------- space invaders
def space_invaders_from(e) -> SpaceInvadersState:
    i = lambda v: jnp.int32(v)  # noqa: E731
    return SpaceInvadersState(
        pos=i(e.pos),
        friendly_bullets=pack(jnp.asarray(e.f_bullet_map, bool)),
        enemy_bullets=pack(jnp.asarray(e.e_bullet_map, bool)),
        aliens=pack(jnp.asarray(e.alien_map, bool)),
        alien_dir=i(e.alien_dir),
        move_interval=i(e.enemy_move_interval),
        alien_move_timer=i(e.alien_move_timer),
        alien_shot_timer=i(e.alien_shot_timer),
        ramp_index=i(e.ramp_index),
        shot_timer=i(e.shot_timer),
    )


def space_invaders_reset_draws(w, e):
    return []


def space_invaders_step_draws(w, e, action):
    return []


# ---------------------------------------------------------------- seaquest
def _slots(items, n, fields):
    assert len(items) <= n, f"{len(items)} entities do not fit {n} slots"
    out = {f: np.zeros(n, np.int64) for f in fields}
    out["active"] = np.zeros(n, bool)
    for j, item in enumerate(items):
        out["active"][j] = True
        for f, value in zip(fields, item):
            out[f][j] = value
    return out


def seaquest_from(e) -> SeaquestState:
    i = lambda v: jnp.int32(v)  # noqa: E731
    fb = _slots(e.f_bullets, BULLET_SLOTS, ["x", "y", "right"])
    eb = _slots(e.e_bullets, ENEMY_BULLET_SLOTS, ["x", "y", "right"])
    fish = [[*f, 0, 0] for f in e.e_fish]  # x, y, right, timer, shot
    enemies = _slots(fish + [list(s) for s in e.e_subs], ENEMY_SLOTS, ["x", "y", "right", "timer", "shot"])
    sub = np.zeros(ENEMY_SLOTS, bool)
    sub[len(fish) : len(fish) + len(e.e_subs)] = True
    dv = _slots(e.divers, DIVER_SLOTS, ["x", "y", "right", "move"])
    n_enemies = len(fish) + len(e.e_subs)
    a = lambda v, dt=jnp.int32: jnp.asarray(v, dt)  # noqa: E731
    return SeaquestState(
        sub_x=i(e.sub_x),
        sub_y=i(e.sub_y),
        sub_right=jnp.asarray(bool(e.sub_or)),
        oxygen=i(e.oxygen),
        diver_count=i(e.diver_count),
        spawn_speed=i(e.e_spawn_speed),
        spawn_timer=i(e.e_spawn_timer),
        diver_timer=i(e.d_spawn_timer),
        move_speed=i(e.move_speed),
        ramp_index=i(e.ramp_index),
        shot_timer=i(e.shot_timer),
        surface=jnp.asarray(bool(e.surface)),
        next_seq=i(n_enemies + len(e.divers)),
        bullet_active=a(fb["active"], bool),
        bullet_x=a(fb["x"]),
        bullet_y=a(fb["y"]),
        bullet_right=a(fb["right"], bool),
        enemy_active=a(enemies["active"], bool),
        enemy_sub=a(sub, bool),
        enemy_x=a(enemies["x"]),
        enemy_y=a(enemies["y"]),
        enemy_right=a(enemies["right"], bool),
        enemy_timer=a(enemies["timer"]),
        enemy_shot=a(enemies["shot"]),
        enemy_seq=a(np.arange(ENEMY_SLOTS)),
        shot_active=a(eb["active"], bool),
        shot_x=a(eb["x"]),
        shot_y=a(eb["y"]),
        shot_right=a(eb["right"], bool),
        diver_active=a(dv["active"], bool),
        diver_x=a(dv["x"]),
        diver_y=a(dv["y"]),
        diver_right=a(dv["right"], bool),
        diver_move=a(dv["move"]),
        diver_seq=a(n_enemies + np.arange(DIVER_SLOTS)),
    )


def seaquest_lists(s: SeaquestState) -> dict:
    """Our Seaquest state in MinAtar's list form (entities ordered by spawn sequence)."""
    s = jax.tree_util.tree_map(np.asarray, s)

    def ordered(active, seq, *columns):
        idx = [j for j in np.argsort(seq, kind="stable") if active[j]]
        return [[int(c[j]) if c.dtype != bool else bool(c[j]) for c in columns] for j in idx]

    fish = s.enemy_active & ~s.enemy_sub
    subs = s.enemy_active & s.enemy_sub
    return {
        "f_bullets": sorted(ordered(s.bullet_active, np.arange(BULLET_SLOTS), s.bullet_x, s.bullet_y, s.bullet_right)),
        "e_bullets": sorted(ordered(s.shot_active, np.arange(ENEMY_BULLET_SLOTS), s.shot_x, s.shot_y, s.shot_right)),
        "e_fish": ordered(fish, s.enemy_seq, s.enemy_x, s.enemy_y, s.enemy_right, s.enemy_timer),
        "e_subs": ordered(subs, s.enemy_seq, s.enemy_x, s.enemy_y, s.enemy_right, s.enemy_timer, s.enemy_shot),
        "divers": ordered(s.diver_active, s.diver_seq, s.diver_x, s.diver_y, s.diver_right, s.diver_move),
    }


def seaquest_minatar_lists(e) -> dict:
    norm = lambda items: [[bool(v) if isinstance(v, (bool, np.bool_)) else int(v) for v in item] for item in items]  # noqa: E731
    return {
        "f_bullets": sorted(norm(e.f_bullets)),
        "e_bullets": sorted(norm(e.e_bullets)),
        "e_fish": norm(e.e_fish),
        "e_subs": norm(e.e_subs),
        "divers": norm(e.divers),
    }


def seaquest_reset_draws(w, e):
    return []


def seaquest_step_draws(w, e, action):
    draws = []
    if e.e_spawn_timer == 0:
        draws += [("rand", _u(w[0])), ("rand", _u(w[1])), ("randint", 1 + _k(w[2], 8))]
    if e.d_spawn_timer == 0:
        draws += [("rand", _u(w[3])), ("randint", 1 + _k(w[4], 8))]
    return draws


ORACLE = {
    "breakout": (breakout_from, breakout_reset_draws, breakout_step_draws),
    "asterix": (asterix_from, asterix_reset_draws, asterix_step_draws),
    "freeway": (freeway_from, freeway_reset_draws, freeway_step_draws),
    "space-invaders": (space_invaders_from, space_invaders_reset_draws, space_invaders_step_draws),
    "seaquest": (seaquest_from, seaquest_reset_draws, seaquest_step_draws),
}
