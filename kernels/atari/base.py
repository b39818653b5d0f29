"""The shared machinery of the Atari-style kernels: the `MinAtarGame` interface each game implements,
and `AtariEnv`, which applies the stochasticity taxonomy around a game.

Observations are ``bool`` arrays ``(10, 10, C)`` with MinAtar's channels in MinAtar's order; actions
are int32 indices into the kernel's action set (by default the game's minimal set; `action_set`
gives the MinAtar full-set index of each); rewards are float32.

Inside a step, grids are *row bitmasks*: int32 ``(10,)`` for one grid (bit c of entry r is the
cell in row r, column c) and int32 ``(10, C)`` for an observation's channels ("planes"). Games
write planes, masks act on planes, and one elementwise `expand` at the end produces the boolean
observation; this is what keeps the kernels fast on a CPU.

Random draws: a step's key gives two seed words (one threefry block); the game draws from the seed's
`GAME_STREAM` and the taxonomy from its `TAXONOMY_STREAM`, so adding a profile with p=0 never
changes the game's own draws, and the plain game is reproduced exactly.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.kernels.stochasticity import (
    GAME_STREAM,
    MASK_STREAM,
    TAXONOMY_STREAM,
    ActionNoise,
    ObservationMask,
    RandomEvent,
    StickyActions,
    WordStream,
    active_profiles,
    bernoulli,
    draws_needed,
    flat_profiles,
    randint,
    seed_words,
)

#: MinAtar's full action set, in MinAtar's order: no-op, left, up, right, down, fire.
FULL_ACTIONS = ("n", "l", "u", "r", "d", "f")
ACTION_NAMES = {"n": "noop", "l": "left", "u": "up", "r": "right", "d": "down", "f": "fire"}
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)

GRID = 10
FULL_ROW = (1 << GRID) - 1  # all ten columns of a row
ROWS = jnp.arange(GRID, dtype=jnp.int32)  # (10,)
ROW = ROWS[:, None]  # (10, 1)
COL = ROWS[None, :]  # (1, 10)
BITS = jnp.left_shift(jnp.int32(1), ROWS)  # (10,) the bit of each column

GameState = TypeVar("GameState")
GameParams = TypeVar("GameParams")


# ---------------------------------------------------------------------------------------------- bits
def bit(x: jax.Array) -> jax.Array:
    """int32: the bit of column `x`, or 0 when `x` is off the grid (broadcasts)."""
    on = (x >= 0) & (x < GRID)
    return jnp.where(on, jnp.left_shift(jnp.int32(1), jnp.clip(x, 0, GRID - 1)), 0).astype(jnp.int32)


def at_row(y: jax.Array, value: jax.Array) -> jax.Array:
    """int32 ``(10,)``: `value` in row `y` and 0 elsewhere."""
    return jnp.where(ROWS == y, value, 0).astype(jnp.int32)


def cell_rows(y: jax.Array, x: jax.Array) -> jax.Array:
    """int32 ``(10,)``: the single cell (y, x) as row bitmasks (empty if off the grid)."""
    return at_row(y, bit(x))


def row_value(rows: jax.Array, y: jax.Array) -> jax.Array:
    """The bitmask of row `y` of ``rows (10,)`` (0 if `y` is off the grid)."""
    return jnp.sum(jnp.where(ROWS == y, rows, 0), dtype=jnp.int32)


def occupied(rows: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """bool: is cell (y, x) set in ``rows (10,)``."""
    return ((row_value(rows, y) >> jnp.clip(x, 0, GRID - 1)) & 1).astype(bool) & (x >= 0) & (x < GRID)


def any_bit_or(values: jax.Array, axis: int = 0) -> jax.Array:
    """Bitwise OR over an axis of an int32 array."""
    return jax.lax.reduce(values, jnp.int32(0), jax.lax.bitwise_or, (axis,))


def entity_rows(active: jax.Array, y: jax.Array, x: jax.Array) -> jax.Array:
    """int32 ``(10,)``: the cells of entities in slots (``active, y, x`` of shape (n,)) as row bitmasks."""
    per_slot = jnp.where(active[:, None] & (y[:, None] == ROWS[None, :]), bit(x)[:, None], 0)  # (n, 10)
    return any_bit_or(per_slot.astype(jnp.int32), axis=0)


def popcount(rows: jax.Array) -> jax.Array:
    """int32: the number of set cells."""
    return jnp.sum(jax.lax.population_count(rows), dtype=jnp.int32)


def pack(grid: jax.Array) -> jax.Array:
    """bool ``(..., 10, 10)`` -> int32 row bitmasks ``(..., 10)``."""
    return jnp.sum(jnp.where(grid, BITS, 0), axis=-1, dtype=jnp.int32)


def unpack(rows: jax.Array) -> jax.Array:
    """int32 row bitmasks ``(..., 10)`` -> bool ``(..., 10, 10)``."""
    return ((rows[..., :, None] >> ROWS) & 1).astype(bool)


def expand(planes: jax.Array) -> jax.Array:
    """int32 planes ``(10, C)`` -> the bool observation ``(10, 10, C)``."""
    return ((planes[:, None, :] >> ROWS[None, :, None]) & 1).astype(bool)


def pick_kth(rows: jax.Array, word: jax.Array) -> jax.Array:
    """int32 ``(10,)``: one set cell of ``rows (10,)`` drawn uniformly (row-major), or none if empty."""
    flat = unpack(rows).reshape(-1)
    count = jnp.sum(flat, dtype=jnp.int32)
    k = randint(word, jnp.maximum(count, 1))
    chosen = flat & (jnp.cumsum(flat, dtype=jnp.int32) == k + 1)
    return pack(chosen.reshape(GRID, GRID))


def pick_slot(candidates: jax.Array, word: jax.Array) -> jax.Array:
    """bool ``(n,)``: one candidate slot drawn uniformly (in slot order), or none."""
    count = jnp.sum(candidates, dtype=jnp.int32)
    k = randint(word, jnp.maximum(count, 1))
    return candidates & (jnp.cumsum(candidates, dtype=jnp.int32) == k + 1)


def armed(events: Mapping[str, jax.Array], mode: str) -> jax.Array:
    """Whether event `mode` is armed this step (a constant False when the mode is not in use)."""
    return events[mode] if mode in events else jnp.zeros((), bool)


# ---------------------------------------------------------------------------------------------- games
class MinAtarGame(abc.ABC, Generic[GameState, GameParams]):
    """One game with MinAtar's rules. Implementations are pure and branch-free.

    Class attributes: `name`, `channels` (MinAtar's order), `minimal_actions` (letters of
    `FULL_ACTIONS`), `event_modes` (mode -> what an armed event does), `blackout_regions`
    (region -> channel names).
    """

    name: str
    channels: tuple[str, ...]
    minimal_actions: tuple[str, ...]
    event_modes: Mapping[str, str]
    blackout_regions: Mapping[str, tuple[str, ...]]

    @abc.abstractmethod
    def default_params(self) -> GameParams: ...

    @abc.abstractmethod
    def reset(self, rng: WordStream, params: GameParams) -> GameState: ...

    @abc.abstractmethod
    def step(
        self,
        rng: WordStream,
        state: GameState,
        action: jax.Array,
        params: GameParams,
        events: Mapping[str, jax.Array],
    ) -> tuple[GameState, jax.Array, jax.Array]:
        """``(state, reward float32, terminated bool)`` for `action`, a full-set index.

        `events` holds, for each event mode in the specification, whether it is armed this step.
        """

    @abc.abstractmethod
    def planes(self, state: GameState) -> jax.Array:
        """The observation as row bitmasks, int32 ``(10, len(channels))``."""

    def render(self, state: GameState) -> jax.Array:
        """The observation, bool ``(10, 10, len(channels))``."""
        return expand(self.planes(state))

    @abc.abstractmethod
    def agent_position(self, state: GameState) -> tuple[jax.Array, jax.Array]:
        """The (row, column) of the agent's cell, the centre of ``mask:kind=torch,centre=agent``."""


@pytree_dataclass
class AtariState(Generic[GameState]):
    game: Any  # the game's own state
    time: jax.Array  # int32 (): steps taken in this episode
    last_action: jax.Array  # int32 (): the action executed at the previous step (sticky actions)


@pytree_dataclass
class AtariParams(Generic[GameParams]):
    game: Any  # the game's params (MinAtar's constants)
    stochasticity: tuple = ()  # the profiles of `agentlab.kernels.stochasticity`
    max_steps: int | None = None  # None: no time limit (as in MinAtar)


class AtariEnv(Environment[AtariState, AtariParams]):
    """A MinAtar game with the STORI taxonomy applied around it (see the module docstring)."""

    def __init__(self, game: MinAtarGame, full_action_set: bool = False):
        self.game = game
        self.name = game.name
        letters = FULL_ACTIONS if full_action_set else game.minimal_actions
        self.action_letters = tuple(letters)
        self.action_names = tuple(ACTION_NAMES[a] for a in letters)
        self.action_set = tuple(FULL_ACTIONS.index(a) for a in letters)
        self.channels = game.channels

    # -- spaces ---------------------------------------------------------------------------------
    def default_params(self) -> AtariParams:
        return AtariParams(game=self.game.default_params())

    def action_space(self, params: AtariParams | None = None) -> Discrete:
        return Discrete(len(self.action_set))

    def observation_space(self, params: AtariParams | None = None) -> Box:
        return Box(0, 1, (GRID, GRID, len(self.channels)), jnp.bool_)

    # -- kernel ---------------------------------------------------------------------------------
    def init(self, key: jax.Array, params: AtariParams) -> AtariState:
        game_state = self.game.reset(WordStream(seed_words(key), GAME_STREAM), params.game)
        return AtariState(game=game_state, time=jnp.zeros((), jnp.int32), last_action=jnp.zeros((), jnp.int32))

    def advance(self, key: jax.Array, state: AtariState, action: jax.Array, params: AtariParams):
        profiles = active_profiles(params.stochasticity, state.time)
        seed = seed_words(key)
        needed = draws_needed(profiles, (StickyActions, ActionNoise, RandomEvent))
        rng = WordStream.prefetched(seed, TAXONOMY_STREAM, needed, key)

        # Sticky actions, then action noise, transform the agent's action.
        executed = jnp.asarray(action, jnp.int32)
        for profile, on in profiles:
            if isinstance(profile, StickyActions):
                executed = jnp.where(on & bernoulli(rng.take(), profile.p), state.last_action, executed)
        for profile, on in profiles:
            if isinstance(profile, ActionNoise):
                hit, replacement = bernoulli(rng.take(), profile.p), randint(rng.take(), len(self.action_set))
                executed = jnp.where(on & hit, replacement, executed)

        # Events are armed, then the game steps.
        events: dict[str, jax.Array] = {}
        for profile, on in profiles:
            if isinstance(profile, RandomEvent):
                armed_now = on & bernoulli(rng.take(), profile.p)
                events[profile.mode] = events[profile.mode] | armed_now if profile.mode in events else armed_now
        game_state, reward, terminated = self.game.step(
            WordStream(seed, GAME_STREAM), state.game, self._full_action(executed), params.game, events
        )
        next_state = AtariState(game=game_state, time=state.time, last_action=executed)
        return next_state, reward, terminated, {"executed_action": executed}

    def observe(self, key: jax.Array, state: AtariState, params: AtariParams) -> jax.Array:
        """The game's planes, with the masks active at ``state.time`` applied, as a bool observation."""
        planes = self.game.planes(state.game)
        profiles = active_profiles(params.stochasticity, state.time)
        rng = WordStream.prefetched(seed_words(key), MASK_STREAM, draws_needed(profiles, (ObservationMask,)), key)
        for profile, on in profiles:
            if isinstance(profile, ObservationMask):
                apply = on & bernoulli(rng.take(), profile.p)
                keep = self._keep(profile, rng, state.game)
                planes = planes & jnp.where(apply, keep, FULL_ROW)
        return expand(planes)

    def _full_action(self, action: jax.Array) -> jax.Array:
        """The MinAtar full-set index of an action-set index (a select chain, no gather)."""
        full = jnp.int32(self.action_set[0])
        for index, value in enumerate(self.action_set[1:], start=1):
            full = jnp.where(action == index, value, full)
        return full

    # -- observation masks ----------------------------------------------------------------------
    def _keep(self, mask: ObservationMask, rng: WordStream, game_state: Any) -> jax.Array:
        """What a mask leaves visible as row bitmasks, broadcastable to planes ``(10, C)``."""
        if mask.kind_ == "crop":
            left, top = FULL_ROW & ~((1 << GRID // 2) - 1), ROW >= GRID // 2
            keep = {
                "left": jnp.full((GRID, 1), left),  # columns 5-9 stay
                "right": jnp.full((GRID, 1), FULL_ROW & ~left),
                "top": jnp.where(top, FULL_ROW, 0),
                "bottom": jnp.where(~top, FULL_ROW, 0),
            }[mask.region]
            return keep.astype(jnp.int32)
        if mask.kind_ == "torch":
            if mask.centre == "agent":
                row, col = self.game.agent_position(game_state)
            else:
                row, col = randint(rng.take(), GRID), randint(rng.take(), GRID)
            dist2 = ((ROW - row) ** 2 + (COL - col) ** 2).astype(jnp.float32)
            return pack(dist2 <= jnp.asarray(mask.radius, jnp.float32) ** 2)[:, None]
        hidden = self.channels if mask.region == "all" else self.game.blackout_regions[mask.region]
        return jnp.asarray([[0 if c in hidden else FULL_ROW for c in self.channels]], jnp.int32)


def describe(env: AtariEnv) -> dict[str, Any]:
    """What `agentlab envs` lists about an Atari-style kernel."""
    game = env.game
    return describe_kernel(env, "atari", event_modes=game.event_modes, blackout_regions=game.blackout_regions)


__all__ = [
    "AtariEnv",
    "AtariParams",
    "AtariState",
    "MinAtarGame",
    "FULL_ACTIONS",
    "describe",
    "flat_profiles",
]
