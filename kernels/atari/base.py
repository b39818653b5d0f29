"""The shared machinery of the Atari-style kernels: the `MinAtarGame` interface each game implements,
and `AtariEnv`, which applies the stochasticity taxonomy around a game.

Observations are ``bool`` arrays ``(10, 10, C)`` with MinAtar's channels in MinAtar's order; actions
are int32 indices into the kernel's action set (by default the game's minimal set; `action_set`
gives the MinAtar full-set index of each); rewards are float32.

Random draws: a step derives the game's words as ``random.bits(step_key)`` and the taxonomy's
words as ``random.bits(fold_in(step_key, TAXONOMY_STREAM))``, so adding a profile with p=0 never
changes the game's own draws, and the plain game is reproduced exactly.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from agentlab.kernels.environment import Environment
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.kernels.stochasticity import (
    ActionNoise,
    ObservationMask,
    RandomEvent,
    Spec,
    StickyActions,
    WordStream,
    active_profiles,
    bernoulli,
    count_words,
    flat_profiles,
    randint,
)

#: MinAtar's full action set, in MinAtar's order: no-op, left, up, right, down, fire.
FULL_ACTIONS = ("n", "l", "u", "r", "d", "f")
ACTION_NAMES = {"n": "noop", "l": "left", "u": "up", "r": "right", "d": "down", "f": "fire"}
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)

TAXONOMY_STREAM = 1
GRID = 10
ROW = jnp.arange(GRID, dtype=jnp.int32)[:, None]  # (10, 1)
COL = jnp.arange(GRID, dtype=jnp.int32)[None, :]  # (1, 10)
_TAXONOMY_WORDS = {"sticky": 1, "action": 2, "event": 1, "mask": 1}

GameState = TypeVar("GameState")
GameParams = TypeVar("GameParams")


def cell(y: jax.Array, x: jax.Array) -> jax.Array:
    """A (10, 10) bool grid that is true only at row `y`, column `x` (all false if off the grid)."""
    return (ROW == y) & (COL == x)


def armed(events: Mapping[str, jax.Array], mode: str) -> jax.Array:
    """Whether event `mode` is armed this step (a constant False when the mode is not in use)."""
    return events[mode] if mode in events else jnp.zeros((), bool)


def words(key: jax.Array, n: int) -> WordStream:
    """`n` uint32 words from `key` as a `WordStream` (none drawn for n = 0)."""
    return WordStream(jax.random.bits(key, (n,), jnp.uint32) if n else None)


class MinAtarGame(abc.ABC, Generic[GameState, GameParams]):
    """One game with MinAtar's rules. Implementations are pure and branch-free.

    Class attributes: `name`, `channels` (MinAtar's order), `minimal_actions` (letters of
    `FULL_ACTIONS`), `event_modes` (mode -> what an armed event does), `blackout_regions`
    (region -> channel names), `reset_words` (random words `reset` takes).
    """

    name: str
    channels: tuple[str, ...]
    minimal_actions: tuple[str, ...]
    event_modes: Mapping[str, str]
    blackout_regions: Mapping[str, tuple[str, ...]]
    reset_words: int = 0

    @abc.abstractmethod
    def default_params(self) -> GameParams: ...

    def step_words(self, modes: frozenset[str]) -> int:
        """Random words one step takes when the event `modes` are armed-able."""
        return 0

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
    def render(self, state: GameState) -> jax.Array:
        """The observation, bool ``(10, 10, len(channels))``."""

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
    def reset(self, key: jax.Array, params: AtariParams) -> tuple[jax.Array, AtariState]:
        game_state = self.game.reset(words(key, self.game.reset_words), params.game)
        state = AtariState(game=game_state, time=jnp.zeros((), jnp.int32), last_action=jnp.zeros((), jnp.int32))
        profiles = active_profiles(params.stochasticity, state.time)
        rng = words(jax.random.fold_in(key, TAXONOMY_STREAM), _mask_words(params.stochasticity))
        return self._observe(rng, game_state, profiles), state

    def transition(self, key: jax.Array, state: AtariState, action: jax.Array, params: AtariParams):
        spec = params.stochasticity
        profiles = active_profiles(spec, state.time)
        rng = words(jax.random.fold_in(key, TAXONOMY_STREAM), count_words(spec, _TAXONOMY_WORDS))

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
                armed = on & bernoulli(rng.take(), profile.p)
                events[profile.mode] = events[profile.mode] | armed if profile.mode in events else armed
        full_action = jnp.asarray(self.action_set, jnp.int32)[executed]
        game_rng = words(key, self.game.step_words(frozenset(events)))
        game_state, reward, terminated = self.game.step(game_rng, state.game, full_action, params.game, events)

        obs = self._observe(rng, game_state, profiles)
        next_state = AtariState(game=game_state, time=state.time, last_action=executed)
        return obs, next_state, reward, terminated, {"executed_action": executed}

    # -- observation masks ----------------------------------------------------------------------
    def _observe(self, rng: WordStream, game_state: Any, profiles: list) -> jax.Array:
        obs = self.game.render(game_state)
        for profile, on in profiles:
            if isinstance(profile, ObservationMask):
                apply = on & bernoulli(rng.take(), profile.p)
                keep = self._keep(profile, rng, game_state)
                obs = obs & (keep | ~apply)
        return obs

    def _keep(self, mask: ObservationMask, rng: WordStream, game_state: Any) -> jax.Array:
        """What a mask leaves visible, broadcastable to ``(10, 10, C)``."""
        if mask.kind_ == "crop":
            hidden = {
                "left": COL < GRID // 2,
                "right": COL >= GRID // 2,
                "top": ROW < GRID // 2,
                "bottom": ROW >= GRID // 2,
            }[mask.region]
            return jnp.broadcast_to(~hidden, (GRID, GRID))[:, :, None]
        if mask.kind_ == "torch":
            if mask.centre == "agent":
                row, col = self.game.agent_position(game_state)
            else:
                row, col = randint(rng.take(), GRID), randint(rng.take(), GRID)
            dist2 = (ROW - row) ** 2 + (COL - col) ** 2
            return (dist2.astype(jnp.float32) <= jnp.asarray(mask.radius, jnp.float32) ** 2)[:, :, None]
        hidden_channels = self.channels if mask.region == "all" else self.game.blackout_regions[mask.region]
        return jnp.asarray([c not in hidden_channels for c in self.channels])[None, None, :]


def _mask_words(spec: Spec) -> int:
    return count_words(spec, {"mask": 1})


def describe(env: AtariEnv) -> dict[str, Any]:
    """What `agentlab envs` lists about an Atari-style kernel."""
    game = env.game
    return {
        "name": env.name,
        "family": "atari",
        "agents": 1,
        "observation": f"bool (10, 10, {len(env.channels)})",
        "channels": list(env.channels),
        "actions": list(env.action_names),
        "action_set": list(env.action_set),
        "event_modes": dict(game.event_modes),
        "blackout_regions": ["all", *game.blackout_regions],
    }


__all__ = [
    "AtariEnv",
    "AtariParams",
    "AtariState",
    "MinAtarGame",
    "FULL_ACTIONS",
    "cell",
    "describe",
    "flat_profiles",
]
