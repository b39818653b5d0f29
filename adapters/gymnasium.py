"""Gymnasium adapters: a single-agent kernel as a `gymnasium.Env` (`make`) or a `gymnasium.vector.VectorEnv`
(`make_vec`, every lane stepped in one jitted `vmap`).

    >>> from agentlab.adapters.gymnasium import make, make_vec
    >>> env = make("breakout", max_steps=1000)
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> envs = make_vec("breakout", 1024)  # lane i behaves as make("breakout") reset with seed + i

Both use the kernel without `AutoReset`: a `gymnasium.Env` is reset by its caller, and `make_vec` resets finished lanes
itself, in Gymnasium 1.x's default `AutoresetMode.NEXT_STEP`: a lane that ended on step t returns its new episode's
first observation on step t + 1, ignoring that step's action, with reward 0 and both flags False.

Spaces: `Discrete(n)` becomes ``gymnasium.spaces.Discrete(n)`` (int64 actions, as Gymnasium samples them); a `Box`
becomes ``gymnasium.spaces.Box(low, high, shape, dtype)`` with the kernel's bounds and dtype, so the Atari-style and
catch observations stay boolean images, ``Box(0, 1, (10, 10, C), bool)`` (`check_env` accepts bool Boxes; no copy to
uint8). Observations come back as NumPy arrays, rewards as float and flags as bool (Python scalars from `make`,
``(num_envs,)`` arrays of float64 and bool from `make_vec`, as `gymnasium.vector.SyncVectorEnv` returns them). `info` is
``{}``: the kernels' own info stays inside the jitted step.

Keys: ``reset(seed=s)`` sets the env's key to ``jax.random.PRNGKey(s)`` (raw ``uint32[2]``: `seed_key`); every reset
and step then splits the next key from it (``key, sub = split_key(key)``, `agentlab.hashing`) and hands `sub` to the
kernel. ``reset()`` without a seed continues the same key (an env never seeded first draws a seed from
``self.np_random``), so an env's trajectory depends only on its seed and its actions, and lane i of ``make_vec`` reset
with ``seed`` equals ``make`` reset with ``seed + i`` stepped with the same actions, bit for bit.

Rendering: ``render_mode="rgb_array"`` where the kernel renders: the boolean-image kernels (the Atari-style games, with
the cells a mask hid drawn grey, and catch) through `agentlab.kernels.atari.viewer.to_rgb`, pendulum and maze2d
through their own `render`.

Cost: `make` and `make_vec` compile the kernel's reset and step once per kernel configuration (``name`` and
``options``; adapters built alike share the compiled functions, so a `SyncVectorEnv` of `make` adapters compiles once).
`make_vec` computes a new episode on every step of every lane and selects it where a lane has ended, as `AutoReset`
does (its `init` is cheap by the contract); one step is one jitted call and one transfer of ``(obs, reward,
terminated, truncated)`` to NumPy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    import gymnasium
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError:  # pragma: no cover (the extra is missing)
    raise ImportError("agentlab.adapters.gymnasium needs gymnasium: pip install 'agentlab[gymnasium]'") from None

from agentlab.errors import UsageError
from agentlab.hashing import split_key
from agentlab.kernels import make as make_kernel
from agentlab.kernels.environment import Environment
from agentlab.kernels.fusion import materialize
from agentlab.kernels.spaces import Box, Discrete

MASK32 = 0xFFFFFFFF
RENDER_FPS = 15


def seed_key(seed: int) -> np.ndarray:
    """uint32 ``(2,)``: the key data of ``jax.random.PRNGKey(seed)`` (the seed's high and low words), for any seed in
    ``[0, 2**64)``, computed on the host."""
    return np.array([(seed >> 32) & MASK32, seed & MASK32], np.uint32)


def _check_seed(seed: Any, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise UsageError(f"{what} must be an integer in [0, 2**64) or None, got {seed!r}")
    return int(seed)


def gymnasium_space(space: Discrete | Box) -> gymnasium.spaces.Space:
    """The Gymnasium space of a single-agent kernel space: `Discrete` -> ``Discrete(n)``, `Box` -> ``Box`` with the
    kernel's bounds, shape and dtype (bool for image observations)."""
    if isinstance(space, Discrete):
        return gymnasium.spaces.Discrete(space.n)
    dtype = np.dtype(space.dtype)
    if dtype == np.bool_:
        return gymnasium.spaces.Box(0, 1, tuple(space.shape), np.bool_)
    return gymnasium.spaces.Box(space.low, space.high, tuple(space.shape), dtype)


# ------------------------------------------------------------------------------------- the jitted pieces
def _lane_reset(kernel: Environment, key: jax.Array, params: Any):
    """``(key, obs, state)``: a new episode from the next key of `key`'s chain."""
    key, sub = split_key(key)
    obs, state = kernel.reset(sub, params)
    return key, obs, state


def _lane_step(kernel: Environment, key: jax.Array, state: Any, action: jax.Array, params: Any):
    """``(key, obs, state, reward, terminated, truncated)``: one step with the next key of `key`'s chain."""
    key, sub = split_key(key)
    obs, state, reward, terminated, truncated, _ = kernel.step(sub, state, action, params)
    return key, obs, state, reward, terminated, truncated


def _lane_step_or_reset(kernel: Environment, key, state, action, pending, params):
    """`_lane_step`, or `_lane_reset` where `pending` (the lane's episode ended on the previous step) with reward 0 and
    both flags False. Both sides draw the same sub-key (one split of `key`), so the state is selected first and
    observed once, as `AutoReset` does."""
    key, sub = split_key(key)
    next_state, reward, terminated, truncated, _ = kernel.timed_advance(sub, state, action, params)
    fresh = kernel.init(sub, params)
    state = jax.tree.map(lambda new, old: jax.lax.select(pending, new, old), fresh, next_state)
    state = materialize(state, sub)
    obs = kernel.observe(sub, state, params)
    reward = jnp.where(pending, jnp.zeros_like(reward), reward)
    terminated, truncated = terminated & ~pending, truncated & ~pending
    return key, obs, state, reward, terminated, truncated, terminated | truncated


def _select_lanes(mask: jax.Array, new: Any, old: Any) -> Any:
    """`new` in the lanes where `mask`, `old` elsewhere (leading axis = lanes)."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One kernel configuration: the kernel (no auto-reset), its params and its jitted functions (compiled on first
    use, once per shape)."""

    kernel: Environment
    params: Any
    reset: Callable  # (key, params) -> (key, obs, state)
    step: Callable  # (key, state, action, params) -> (key, obs, state, reward, terminated, truncated)
    reset_lanes: Callable  # vmap of reset over keys (num_envs, 2)
    step_lanes: Callable  # (keys, states, actions, pending, params) -> (keys, obs, states, reward, term, trunc, done)
    select_lanes: Callable  # (mask, new, old) -> tree


def _build(name: str, options: dict[str, Any]) -> Compiled:
    kernel, params = make_kernel(name, auto_reset=False, **options)
    if kernel.multi_agent:
        raise UsageError(
            f"{kernel.name} is a multi-agent kernel ({kernel.num_agents} agents): the Gymnasium adapter takes "
            "single-agent kernels; use the PettingZoo adapter (agentlab.adapters.pettingzoo.parallel_env)"
        )
    reset = functools.partial(_lane_reset, kernel)
    step = functools.partial(_lane_step, kernel)
    step_or_reset = functools.partial(_lane_step_or_reset, kernel)
    return Compiled(
        kernel=kernel,
        params=params,
        reset=jax.jit(reset),
        step=jax.jit(step),
        reset_lanes=jax.jit(jax.vmap(reset, in_axes=(0, None))),
        step_lanes=jax.jit(jax.vmap(step_or_reset, in_axes=(0, 0, 0, 0, None))),
        select_lanes=jax.jit(_select_lanes),
    )


@functools.lru_cache(maxsize=64)
def _cached(name: str, options: tuple[tuple[str, Any], ...]) -> Compiled:
    return _build(name, dict(options))


def compiled(name: str, **options: Any) -> Compiled:
    """The kernel `name` with `options` and its jitted functions, shared by every adapter built alike (options that
    cannot be hashed get their own)."""
    try:
        return _cached(name, tuple(sorted(options.items())))
    except TypeError:  # an unhashable option value
        return _build(name, options)


# ------------------------------------------------------------------------------------------- rendering
def _renderer(kernel: Environment, params: Any) -> Callable[[np.ndarray, Any], np.ndarray] | None:
    """``draw(obs, state) -> uint8 (H, W, 3)`` where the kernel renders, else None."""
    from agentlab.kernels.control.maze2d import Maze2d
    from agentlab.kernels.control.pendulum import Pendulum

    if isinstance(kernel, Pendulum):
        from agentlab.kernels.control.pendulum import render

        return lambda obs, state: render(obs, params, kernel)
    if isinstance(kernel, Maze2d):
        from agentlab.kernels.control.maze2d import render

        return lambda obs, state: render(obs, params, kernel)
    space = kernel.observation_space(params)
    if np.dtype(space.dtype) == np.bool_ and len(space.shape) == 3:
        from agentlab.kernels.atari.viewer import to_rgb

        game = getattr(kernel, "game", None)
        if game is None:
            return lambda obs, state: to_rgb(obs)
        truth = jax.jit(lambda state: game.render(state.game))  # the unmasked frame: hidden cells drawn grey
        return lambda obs, state: to_rgb(obs, np.asarray(truth(state)))
    return None


# ----------------------------------------------------------------------------------------- the adapters
class GymnasiumEnv(gymnasium.Env):
    """One kernel as a `gymnasium.Env` (see the module docstring for spaces, keys and rendering)."""

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": RENDER_FPS}

    def __init__(self, name: str, render_mode: str | None = None, **options: Any):
        self._compiled = compiled(name, **options)
        kernel, params = self._compiled.kernel, self._compiled.params
        self.kernel_name = kernel.name
        self.observation_space = gymnasium_space(kernel.observation_space(params))
        self.action_space = gymnasium_space(kernel.action_space(params))
        self._draw = _renderer(kernel, params)
        self.metadata = {**self.metadata, "render_modes": ["rgb_array"] if self._draw is not None else []}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"] or "none"
            raise UsageError(f"render_mode of {kernel.name} must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self.spec = gymnasium.envs.registration.EnvSpec(
            id=f"agentlab/{kernel.name}",
            entry_point="agentlab.adapters.gymnasium:make",
            kwargs={"name": kernel.name, **options},
        )
        self._action_dtype = np.dtype(kernel.action_space(params).dtype)
        self._key: np.ndarray | jax.Array | None = None  # uint32 (2,): the key chain
        self._state: Any = None
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """A new episode: from ``PRNGKey(seed)`` when `seed` is given, else from the env's key chain (a seed drawn
        from `np_random` when the env was never seeded). `options` is accepted and unused."""
        if seed is not None:
            seed = _check_seed(seed, "seed")
        super().reset(seed=seed)
        if seed is not None:
            self._key = seed_key(seed)
        elif self._key is None:
            self._key = seed_key(int(self.np_random.integers(2**63)))
        c = self._compiled
        self._key, obs, self._state = c.reset(self._key, c.params)
        self._obs = np.array(obs)
        return self._obs, {}

    def step(self, action: Any):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset before step")
        c = self._compiled
        action = np.asarray(action, self._action_dtype)
        self._key, obs, self._state, reward, terminated, truncated = c.step(self._key, self._state, action, c.params)
        obs, reward, terminated, truncated = jax.device_get((obs, reward, terminated, truncated))
        self._obs = np.array(obs)
        return self._obs, float(reward), bool(terminated), bool(truncated), {}

    def render(self) -> np.ndarray | None:
        """uint8 ``(H, W, 3)`` of the current observation with ``render_mode="rgb_array"``; None without one."""
        if self.render_mode is None:
            return None
        if self._obs is None:
            raise gymnasium.error.ResetNeeded("call reset before render")
        return self._draw(self._obs, self._state)


class GymnasiumVectorEnv(VectorEnv):
    """`num_envs` lanes of one kernel as a `gymnasium.vector.VectorEnv`, stepped in one jitted `vmap` with
    `AutoresetMode.NEXT_STEP` (see the module docstring). Lane i equals `GymnasiumEnv` reset with ``seed + i``."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, name: str, num_envs: int, **options: Any):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise UsageError(f"num_envs must be a positive integer, got {num_envs!r}")
        self._compiled = compiled(name, **options)
        kernel, params = self._compiled.kernel, self._compiled.params
        self.kernel_name = kernel.name
        self.num_envs = num_envs
        self.single_observation_space = gymnasium_space(kernel.observation_space(params))
        self.single_action_space = gymnasium_space(kernel.action_space(params))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self.spec = None
        self._action_dtype = np.dtype(kernel.action_space(params).dtype)
        self._keys: jax.Array | None = None  # uint32 (num_envs, 2): each lane's key chain
        self._obs: jax.Array | None = None
        self._states: Any = None
        self._pending: jax.Array | None = None  # bool (num_envs,): the lane's episode ended on the last step

    def _lane_keys(self, seeds: Sequence[int | None]) -> np.ndarray:
        """uint32 ``(num_envs, 2)``: ``PRNGKey(seed)`` where a lane has a seed, else its key chain (a seed drawn from
        `np_random` where the lane has none yet)."""
        current = None if self._keys is None else np.asarray(self._keys)
        keys = np.empty((self.num_envs, 2), np.uint32)
        for i, seed in enumerate(seeds):
            if seed is not None:
                keys[i] = seed_key(_check_seed(seed, f"seed of lane {i}"))
            elif current is not None:
                keys[i] = current[i]
            else:
                keys[i] = seed_key(int(self.np_random.integers(2**63)))
        return keys

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Every lane (or, with ``options={"reset_mask": mask}``, the lanes where `mask`) starts a new episode: an int
        `seed` gives lane i ``seed + i``, a list one seed per lane (None: the lane's key chain), None every lane's key
        chain, as `SyncVectorEnv` resets its environments."""
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=_check_seed(seed, "seed"))
            seeds: Sequence[int | None] = [int(seed) + i for i in range(self.num_envs)]
        elif seed is None:
            seeds = [None] * self.num_envs
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise UsageError(f"seed: a list of seeds needs one per lane ({self.num_envs}), got {len(seeds)}")
        mask = None if options is None else options.get("reset_mask")
        c = self._compiled
        keys, obs, states = c.reset_lanes(self._lane_keys(seeds), c.params)
        if mask is not None and self._states is not None:
            mask = np.asarray(mask, bool).reshape(self.num_envs)
            keys, obs, states = c.select_lanes(mask, (keys, obs, states), (self._keys, self._obs, self._states))
            self._pending = self._pending & ~mask
        else:
            self._pending = jnp.zeros(self.num_envs, bool)
        self._keys, self._obs, self._states = keys, obs, states
        return np.array(obs), {}

    def step(self, actions: Any):
        if self._states is None:
            raise gymnasium.error.ResetNeeded("call reset before step")
        c = self._compiled
        actions = np.asarray(actions, self._action_dtype)
        self._keys, self._obs, self._states, reward, terminated, truncated, self._pending = c.step_lanes(
            self._keys, self._states, actions, self._pending, c.params
        )
        obs, reward, terminated, truncated = jax.device_get((self._obs, reward, terminated, truncated))
        return np.array(obs), np.asarray(reward, np.float64), np.array(terminated), np.array(truncated), {}


def make(name: str, render_mode: str | None = None, **options: Any) -> GymnasiumEnv:
    """The single-agent kernel `name` (the options of `agentlab.kernels.make`) as a `gymnasium.Env`.

    Raises `UsageError` (a `ValueError`) for a multi-agent kernel, an unknown kernel or option, or a `render_mode`
    the kernel does not draw."""
    return GymnasiumEnv(name, render_mode=render_mode, **options)


def make_vec(name: str, num_envs: int, **options: Any) -> GymnasiumVectorEnv:
    """`num_envs` lanes of the single-agent kernel `name` as a `gymnasium.vector.VectorEnv` (`AutoresetMode.NEXT_STEP`);
    lane i behaves as ``make(name, **options)`` reset with ``seed + i`` and stepped with the same actions."""
    return GymnasiumVectorEnv(name, num_envs, **options)
