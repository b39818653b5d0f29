"""Seaquest with MinAtar's rules (Young & Tian 2019; MinAtar 1.0.15).

Observation: bool ``(10, 10, 10)``, channels ``sub_front, sub_back, friendly_bullet, trail,
enemy_bullet, enemy_fish, enemy_sub, oxygen_guage, diver_guage, diver`` (MinAtar's spelling).
Actions: all six, ``noop, left, up, right, down, fire`` (full-set indices 0-5).
Reward: +1 per enemy shot; on surfacing with six divers, +1 per lit cell of the oxygen gauge
(``oxygen * 10 // max_oxygen``). Termination: the submarine touches an enemy fish, sub or enemy
bullet; oxygen runs out; or it surfaces with no diver on board.

The player's two-cell submarine moves in rows 0-8 (row 0 is the surface) and fires along its
heading. Enemies (a sub with prob. 1/3, else a fish) enter rows 1-8 from either edge every
`spawn_speed + 1` steps, unless an enemy already in that row travels the other way, and move one
cell every `move_speed + 1` steps; enemy subs fire every `enemy_shot_interval + 1` steps (even on
the step they are shot, as in MinAtar). Divers enter every `diver_spawn_speed + 1` steps and are
picked up (at most six on board) on contact. Underwater the oxygen drops by one per step; surfacing
with at least one diver refills it, drops one diver (all six, for the bonus) and ramps the
difficulty. The quirks of the original are kept: surfacing with six divers leaves the diver count at
-1, and the surface is safe.

MinAtar keeps entities in Python lists whose order decides ties (which of two enemies in a cell a
bullet hits, which divers fit on board). Here entities live in fixed slots with a spawn sequence
number that reproduces that order. Slot counts (enemies 32, enemy bullets 16, divers 4, friendly
bullets 2) cover everything MinAtar's constants allow in practice (at most 24 fish, 15 subs, 7
enemy bullets, 2 divers and 2 friendly bullets were seen in 90k steps at maximum difficulty); a spawn
finding no free slot is dropped.

Random events (STORI type 2.1, ``event:mode=NAME,p=P``; armed with prob. P each step):

- ``cancel_keep``: kills this step are cancelled (the enemy survives, the bullet is spent) but the
  +1 is kept;
- ``cancel_zero``: kills are cancelled and score 0 (wins over ``cancel_keep``);
- ``oxygen_leak``: underwater, the oxygen drops by a further `leak` units (one gauge cell);
- ``diver_lost``: one rescued diver is lost (if any is on board).

Blackout regions: ``submarine`` (front and back), ``enemies`` (fish, subs and trails), ``bullets``
(friendly and enemy), ``gauges`` (oxygen and divers), ``divers``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agentlab.kernels.atari.base import (
    DOWN,
    FIRE,
    LEFT,
    RIGHT,
    UP,
    MinAtarGame,
    any_bit_or,
    armed,
    at_row,
    cell_rows,
    entity_rows,
)
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.stochasticity import WordStream, bernoulli, randint

ENEMY_SLOTS = 32
ENEMY_BULLET_SLOTS = 16
DIVER_SLOTS = 4
BULLET_SLOTS = 2
BIG = jnp.int32(2**30)
MAX_OXYGEN = 200  # fixed, as in MinAtar: the gauge shows oxygen * 10 // 200 cells


@pytree_dataclass
class SeaquestState:
    sub_x: jax.Array  # int32 ()
    sub_y: jax.Array  # int32 () 0 is the surface
    sub_right: jax.Array  # bool () facing right (MinAtar's sub_or)
    oxygen: jax.Array  # int32 ()
    diver_count: jax.Array  # int32 () divers on board (-1 after a six-diver surfacing, as in MinAtar)
    spawn_speed: jax.Array  # int32 () MinAtar's e_spawn_speed
    spawn_timer: jax.Array  # int32 ()
    diver_timer: jax.Array  # int32 ()
    move_speed: jax.Array  # int32 ()
    ramp_index: jax.Array  # int32 ()
    shot_timer: jax.Array  # int32 ()
    surface: jax.Array  # bool () surfaced and already scored
    next_seq: jax.Array  # int32 () spawn counter that orders entities as MinAtar's lists do
    bullet_active: jax.Array  # bool (2,) friendly bullets
    bullet_x: jax.Array  # int32 (2,)
    bullet_y: jax.Array  # int32 (2,)
    bullet_right: jax.Array  # bool (2,)
    enemy_active: jax.Array  # bool (32,)
    enemy_sub: jax.Array  # bool (32,) a sub (else a fish)
    enemy_x: jax.Array  # int32 (32,)
    enemy_y: jax.Array  # int32 (32,)
    enemy_right: jax.Array  # bool (32,)
    enemy_timer: jax.Array  # int32 (32,) steps until it moves
    enemy_shot: jax.Array  # int32 (32,) steps until a sub fires
    enemy_seq: jax.Array  # int32 (32,)
    shot_active: jax.Array  # bool (16,) enemy bullets
    shot_x: jax.Array  # int32 (16,)
    shot_y: jax.Array  # int32 (16,)
    shot_right: jax.Array  # bool (16,)
    diver_active: jax.Array  # bool (4,)
    diver_x: jax.Array  # int32 (4,)
    diver_y: jax.Array  # int32 (4,)
    diver_right: jax.Array  # bool (4,)
    diver_move: jax.Array  # int32 (4,) steps until it moves
    diver_seq: jax.Array  # int32 (4,)


@pytree_dataclass
class SeaquestParams:
    ramping: bool = True
    init_spawn_speed: int = 20
    diver_spawn_speed: int = 30
    init_move_interval: int = 5
    shot_cool_down: int = 5
    enemy_shot_interval: int = 10
    diver_move_interval: int = 5
    max_divers: int = 6
    sub_prob: float = 1 / 3
    left_prob: float = 1 / 2  # an entity enters from the left edge (moving right)
    leak: int = 20  # oxygen lost to one ``oxygen_leak`` event


def first_free(active: jax.Array) -> jax.Array:
    """One-hot of the first free slot (all false if none is free)."""
    free = ~active
    return free & (jnp.cumsum(free, dtype=jnp.int32) == 1)


def oldest(candidates: jax.Array, seq: jax.Array) -> jax.Array:
    """One-hot of the candidate spawned first (lowest sequence number)."""
    return candidates & (seq == jnp.min(jnp.where(candidates, seq, BIG)))


def newest(candidates: jax.Array, seq: jax.Array) -> jax.Array:
    """One-hot of the candidate spawned last (MinAtar walks its lists in reverse)."""
    return candidates & (seq == jnp.max(jnp.where(candidates, seq, -1)))


def step_x(x: jax.Array, right: jax.Array) -> jax.Array:
    return x + jnp.where(right, 1, -1)


def on_grid(x: jax.Array) -> jax.Array:
    return (x >= 0) & (x <= 9)


class Seaquest(MinAtarGame[SeaquestState, SeaquestParams]):
    name = "seaquest"
    channels = (
        "sub_front",
        "sub_back",
        "friendly_bullet",
        "trail",
        "enemy_bullet",
        "enemy_fish",
        "enemy_sub",
        "oxygen_guage",
        "diver_guage",
        "diver",
    )
    minimal_actions = ("n", "l", "u", "r", "d", "f")
    event_modes = {
        "cancel_keep": "kills are cancelled (the enemy survives), reward kept",
        "cancel_zero": "kills are cancelled (the enemy survives), reward 0",
        "oxygen_leak": "underwater, the oxygen drops by one gauge cell",
        "diver_lost": "one rescued diver is lost",
    }
    blackout_regions = {
        "submarine": ("sub_front", "sub_back"),
        "enemies": ("enemy_fish", "enemy_sub", "trail"),
        "bullets": ("friendly_bullet", "enemy_bullet"),
        "gauges": ("oxygen_guage", "diver_guage"),
        "divers": ("diver",),
    }

    def default_params(self) -> SeaquestParams:
        return SeaquestParams()

    def reset(self, rng: WordStream, params: SeaquestParams) -> SeaquestState:
        def slots(n: int, dtype=jnp.int32) -> jax.Array:
            return jnp.zeros(n, dtype)

        spawn_speed = jnp.asarray(params.init_spawn_speed, jnp.int32)
        return SeaquestState(
            sub_x=jnp.int32(5),
            sub_y=jnp.int32(0),
            sub_right=jnp.asarray(False),
            oxygen=jnp.int32(MAX_OXYGEN),
            diver_count=jnp.int32(0),
            spawn_speed=spawn_speed,
            spawn_timer=spawn_speed,
            diver_timer=jnp.asarray(params.diver_spawn_speed, jnp.int32),
            move_speed=jnp.asarray(params.init_move_interval, jnp.int32),
            ramp_index=jnp.int32(0),
            shot_timer=jnp.int32(0),
            surface=jnp.asarray(True),
            next_seq=jnp.int32(0),
            bullet_active=slots(BULLET_SLOTS, bool),
            bullet_x=slots(BULLET_SLOTS),
            bullet_y=slots(BULLET_SLOTS),
            bullet_right=slots(BULLET_SLOTS, bool),
            enemy_active=slots(ENEMY_SLOTS, bool),
            enemy_sub=slots(ENEMY_SLOTS, bool),
            enemy_x=slots(ENEMY_SLOTS),
            enemy_y=slots(ENEMY_SLOTS),
            enemy_right=slots(ENEMY_SLOTS, bool),
            enemy_timer=slots(ENEMY_SLOTS),
            enemy_shot=slots(ENEMY_SLOTS),
            enemy_seq=slots(ENEMY_SLOTS),
            shot_active=slots(ENEMY_BULLET_SLOTS, bool),
            shot_x=slots(ENEMY_BULLET_SLOTS),
            shot_y=slots(ENEMY_BULLET_SLOTS),
            shot_right=slots(ENEMY_BULLET_SLOTS, bool),
            diver_active=slots(DIVER_SLOTS, bool),
            diver_x=slots(DIVER_SLOTS),
            diver_y=slots(DIVER_SLOTS),
            diver_right=slots(DIVER_SLOTS, bool),
            diver_move=slots(DIVER_SLOTS),
            diver_seq=slots(DIVER_SLOTS),
        )

    # -- the step, in MinAtar's order --------------------------------------------------------------
    def step(self, rng, s: SeaquestState, action, params, events: Mapping[str, jax.Array]):
        s = self._spawn(rng, s, params)
        s = self._act(s, action, params)
        cancelled = armed(events, "cancel_keep") | armed(events, "cancel_zero")
        s, kills = self._friendly_bullets(s, cancelled)
        s = self._divers(s, params)
        s, kills_subs, hit_subs, new_shots = self._enemies(s, params, True, cancelled)
        s, hit_shots = self._enemy_bullets(s, new_shots)
        s, kills_fish, hit_fish = self._enemies(s, params, False, cancelled)[:3]
        kills = kills + kills_subs + kills_fish
        reward = jnp.where(armed(events, "cancel_zero"), 0, kills)
        terminated = hit_subs | hit_shots | hit_fish

        if "diver_lost" in events:
            s = s.replace(diver_count=s.diver_count - (events["diver_lost"] & (s.diver_count > 0)))
        oxygen = s.oxygen
        if "oxygen_leak" in events:
            oxygen = oxygen - jnp.where(events["oxygen_leak"] & (s.sub_y > 0), params.leak, 0)

        # Timers, oxygen and surfacing.
        terminated = terminated | (oxygen <= 0)
        underwater = s.sub_y > 0
        surfacing = ~underwater & ~s.surface
        terminated = terminated | (surfacing & (s.diver_count == 0))
        scores = surfacing & (s.diver_count != 0)
        full = s.diver_count == params.max_divers
        bonus = jnp.where(scores & full, oxygen * 10 // MAX_OXYGEN, 0)
        diver_count = jnp.where(scores, jnp.where(full, 0, s.diver_count) - 1, s.diver_count)
        can_ramp = scores & jnp.asarray(params.ramping) & ((s.spawn_speed > 1) | (s.move_speed > 2))
        move_speed = jnp.where(can_ramp & (s.move_speed > 2) & (s.ramp_index % 2 == 1), s.move_speed - 1, s.move_speed)
        spawn_speed = jnp.where(can_ramp & (s.spawn_speed > 1), s.spawn_speed - 1, s.spawn_speed)
        s = s.replace(
            spawn_timer=s.spawn_timer - (s.spawn_timer > 0),
            diver_timer=s.diver_timer - (s.diver_timer > 0),
            shot_timer=s.shot_timer - (s.shot_timer > 0),
            oxygen=jnp.where(underwater, oxygen - 1, jnp.where(scores, MAX_OXYGEN, oxygen)),
            surface=~underwater & (s.surface | scores),
            diver_count=diver_count,
            move_speed=move_speed,
            spawn_speed=spawn_speed,
            ramp_index=s.ramp_index + can_ramp,
        )
        return s, (reward + bonus).astype(jnp.float32), terminated

    def _spawn(self, rng: WordStream, s: SeaquestState, params: SeaquestParams) -> SeaquestState:
        # An enemy, unless its row holds an enemy moving the other way.
        from_left = bernoulli(rng.take(), params.left_prob)
        is_sub = bernoulli(rng.take(), params.sub_prob)
        row = 1 + randint(rng.take(), 8)
        blocked = jnp.any(s.enemy_active & (s.enemy_y == row) & (s.enemy_right != from_left))
        spawn = s.spawn_timer == 0
        slot = first_free(s.enemy_active) & spawn & ~blocked
        seq = s.next_seq
        s = s.replace(
            enemy_active=s.enemy_active | slot,
            enemy_sub=jnp.where(slot, is_sub, s.enemy_sub),
            enemy_x=jnp.where(slot, jnp.where(from_left, 0, 9), s.enemy_x),
            enemy_y=jnp.where(slot, row, s.enemy_y),
            enemy_right=jnp.where(slot, from_left, s.enemy_right),
            enemy_timer=jnp.where(slot, s.move_speed, s.enemy_timer),
            enemy_shot=jnp.where(slot, params.enemy_shot_interval, s.enemy_shot),
            enemy_seq=jnp.where(slot, seq, s.enemy_seq),
            spawn_timer=jnp.where(spawn, s.spawn_speed, s.spawn_timer),
            next_seq=seq + jnp.any(slot),
        )
        # A diver.
        from_left = bernoulli(rng.take(), params.left_prob)
        row = 1 + randint(rng.take(), 8)
        spawn = s.diver_timer == 0
        slot = first_free(s.diver_active) & spawn
        seq = s.next_seq
        return s.replace(
            diver_active=s.diver_active | slot,
            diver_x=jnp.where(slot, jnp.where(from_left, 0, 9), s.diver_x),
            diver_y=jnp.where(slot, row, s.diver_y),
            diver_right=jnp.where(slot, from_left, s.diver_right),
            diver_move=jnp.where(slot, params.diver_move_interval, s.diver_move),
            diver_seq=jnp.where(slot, seq, s.diver_seq),
            diver_timer=jnp.where(spawn, params.diver_spawn_speed, s.diver_timer),
            next_seq=seq + jnp.any(slot),
        )

    def _act(self, s: SeaquestState, action: jax.Array, params: SeaquestParams) -> SeaquestState:
        fire = (action == FIRE) & (s.shot_timer == 0)
        slot = first_free(s.bullet_active) & fire
        left, right = action == LEFT, action == RIGHT
        return s.replace(
            bullet_active=s.bullet_active | slot,
            bullet_x=jnp.where(slot, s.sub_x, s.bullet_x),
            bullet_y=jnp.where(slot, s.sub_y, s.bullet_y),
            bullet_right=jnp.where(slot, s.sub_right, s.bullet_right),
            shot_timer=jnp.where(fire, params.shot_cool_down, s.shot_timer),
            sub_x=jnp.where(left, jnp.maximum(s.sub_x - 1, 0), jnp.where(right, jnp.minimum(s.sub_x + 1, 9), s.sub_x)),
            sub_right=jnp.where(left, False, jnp.where(right, True, s.sub_right)),
            sub_y=jnp.where(
                action == UP,
                jnp.maximum(s.sub_y - 1, 0),
                jnp.where(action == DOWN, jnp.minimum(s.sub_y + 1, 8), s.sub_y),
            ),
        )

    def _friendly_bullets(self, s: SeaquestState, cancelled) -> tuple[SeaquestState, jax.Array]:
        """Bullets fly one cell; each hits the first-spawned fish in its cell, else the first sub."""
        x = step_x(s.bullet_x, s.bullet_right)
        active = s.bullet_active & on_grid(x)
        enemies = s.enemy_active
        kills = jnp.int32(0)
        for b in range(BULLET_SLOTS):
            here = enemies & (s.enemy_x == x[b]) & (s.enemy_y == s.bullet_y[b]) & active[b]
            fish = oldest(here & ~s.enemy_sub, s.enemy_seq)
            sub = oldest(here & s.enemy_sub, s.enemy_seq) & ~jnp.any(fish)
            victim = fish | sub
            hit = jnp.any(victim)
            enemies = enemies & ~(victim & ~cancelled)
            active = active.at[b].set(active[b] & ~hit)
            kills = kills + hit
        return s.replace(bullet_x=x, bullet_active=active, enemy_active=enemies), kills

    def _divers(self, s: SeaquestState, params: SeaquestParams) -> SeaquestState:
        """Divers move; those reaching the sub are picked up, newest first, while there is room."""
        at_sub_before = s.diver_active & (s.diver_x == s.sub_x) & (s.diver_y == s.sub_y)
        moves = s.diver_active & (s.diver_move == 0)
        x = jnp.where(moves, step_x(s.diver_x, s.diver_right), s.diver_x)
        at_sub_after = moves & on_grid(x) & (x == s.sub_x) & (s.diver_y == s.sub_y)
        candidate = at_sub_before | at_sub_after
        newer = candidate[None, :] & (s.diver_seq[None, :] > s.diver_seq[:, None])  # (i, j): j before i
        rank = jnp.sum(newer, axis=1, dtype=jnp.int32)
        picked = candidate & (rank < params.max_divers - s.diver_count)
        active = s.diver_active & ~picked & on_grid(x)
        return s.replace(
            diver_active=active,
            diver_x=x,
            diver_move=jnp.where(moves, params.diver_move_interval, s.diver_move - 1),
            diver_count=s.diver_count + jnp.sum(picked, dtype=jnp.int32),
        )

    def _enemies(self, s: SeaquestState, params: SeaquestParams, subs: bool, cancelled):
        """MinAtar's enemy-sub loop (``subs=True``) or fish loop, newest first.

        Returns the state, kills, whether the player was hit, and (subs) the shots fired as
        ``(fire, x, y, right)`` per enemy slot.
        """
        mine = s.enemy_active & (s.enemy_sub if subs else ~s.enemy_sub)
        at_player = (s.enemy_x == s.sub_x) & (s.enemy_y == s.sub_y)
        hit_player = jnp.any(mine & at_player)
        moves = mine & (s.enemy_timer == 0)
        x = jnp.where(moves, step_x(s.enemy_x, s.enemy_right), s.enemy_x)
        gone = moves & ~on_grid(x)
        at_player_after = moves & ~gone & (x == s.sub_x) & (s.enemy_y == s.sub_y)
        hit_player = hit_player | jnp.any(at_player_after)
        can_be_shot = moves & ~gone & ~at_player_after
        active, bullets = s.enemy_active & ~gone, s.bullet_active
        kills = jnp.int32(0)
        for b in range(BULLET_SLOTS):
            here = can_be_shot & (x == s.bullet_x[b]) & (s.enemy_y == s.bullet_y[b]) & bullets[b]
            victim = newest(here, s.enemy_seq)
            hit = jnp.any(victim)
            active = active & ~(victim & ~cancelled)
            bullets = bullets.at[b].set(bullets[b] & ~hit)
            kills = kills + hit
        timer = jnp.where(moves, s.move_speed, jnp.where(mine, s.enemy_timer - 1, s.enemy_timer))
        fire = mine & (s.enemy_shot == 0) & subs
        shot = jnp.where(fire, params.enemy_shot_interval, jnp.where(mine & subs, s.enemy_shot - 1, s.enemy_shot))
        s = s.replace(enemy_active=active, enemy_x=x, enemy_timer=timer, enemy_shot=shot, bullet_active=bullets)
        return s, kills, hit_player, (fire & ~gone, x, s.enemy_y, s.enemy_right)

    def _enemy_bullets(self, s: SeaquestState, new_shots) -> tuple[SeaquestState, jax.Array]:
        """Place the subs' new shots in free slots, then move every enemy bullet one cell."""
        fire, fx, fy, fright = new_shots
        free = ~s.shot_active
        free_rank = jnp.cumsum(free, dtype=jnp.int32) - 1
        fire_rank = jnp.cumsum(fire, dtype=jnp.int32) - 1
        match = free[:, None] & fire[None, :] & (free_rank[:, None] == fire_rank[None, :])  # (16, 32)
        placed = jnp.any(match, axis=1)
        pick = lambda v: jnp.sum(jnp.where(match, v[None, :], 0), axis=1)  # noqa: E731
        active = s.shot_active | placed
        x = jnp.where(placed, pick(fx), s.shot_x)
        y = jnp.where(placed, pick(fy), s.shot_y)
        right = jnp.where(placed, jnp.any(match & fright[None, :], axis=1), s.shot_right)

        hit = jnp.any(active & (x == s.sub_x) & (y == s.sub_y))
        x = step_x(x, right)
        active = active & on_grid(x)
        hit = hit | jnp.any(active & (x == s.sub_x) & (y == s.sub_y))
        return s.replace(shot_active=active, shot_x=x, shot_y=y, shot_right=right), hit

    # -- observation -----------------------------------------------------------------------------
    def planes(self, s: SeaquestState) -> jax.Array:
        def trail(active, x, y, right):
            return entity_rows(active, y, jnp.where(right, x - 1, x + 1))

        trails = any_bit_or(
            jnp.stack(
                [
                    trail(s.enemy_active, s.enemy_x, s.enemy_y, s.enemy_right),
                    trail(s.diver_active, s.diver_x, s.diver_y, s.diver_right),
                ]
            )
        )
        oxygen_cells = jnp.maximum(s.oxygen, 0) * 10 // MAX_OXYGEN
        divers = jnp.clip(s.diver_count, 0, 9)
        diver_gauge = ((1 << 9) - 1) & ~(jnp.left_shift(1, 9 - divers) - 1)  # columns 9 - count .. 8
        return jnp.stack(
            [
                cell_rows(s.sub_y, s.sub_x),
                cell_rows(s.sub_y, jnp.where(s.sub_right, s.sub_x - 1, s.sub_x + 1)),
                entity_rows(s.bullet_active, s.bullet_y, s.bullet_x),
                trails,
                entity_rows(s.shot_active, s.shot_y, s.shot_x),
                entity_rows(s.enemy_active & ~s.enemy_sub, s.enemy_y, s.enemy_x),
                entity_rows(s.enemy_active & s.enemy_sub, s.enemy_y, s.enemy_x),
                at_row(9, jnp.left_shift(1, oxygen_cells) - 1),
                at_row(9, diver_gauge),
                entity_rows(s.diver_active, s.diver_y, s.diver_x),
            ],
            axis=-1,
        )

    def agent_position(self, s: SeaquestState):
        return s.sub_y, s.sub_x
