"""The generic STORI types as a wrapper on any kernel: `Stochastic(env, spec)`.

The Atari-style games implement the whole taxonomy inside their step (`agentlab.kernels.atari.base`);
every other kernel gets the generic kinds of `agentlab.kernels.stochasticity` from this wrapper, a
contract `Environment` around the kernel:

- ``action:p=P``: with prob. P the action is replaced by a uniform one from the kernel's action space:
  a uniform integer in ``[0, n)`` for `Discrete`, uniform in ``[low, high)`` for `Box`. For multi-agent
  kernels each agent is hit independently; where a kernel has an action mask (`env.action_mask`), an
  agent's replacement is uniform over the actions its role allows (for a continuous mask, only the
  allowed dimensions are redrawn).
- ``sticky:p=P``: with prob. P the previously executed action is repeated (per agent, independently).
  The wrapped state holds the previous executed action; a reset clears it, and the first step of an
  episode (time 0) has no previous action, so it always executes the agent's action.
- ``drift:mode=sudden|cyclic,at=T,to=(SPEC)``: SPEC is switched on per `ConceptDrift` (steps counted
  from the episode's reset, `state.time`).
- ``mask:kind=dropout,p=P`` (vector observations only: ``(obs_dim,)``, or ``(num_agents, obs_dim)``
  for multi-agent kernels): each feature is hidden (set to 0) independently with prob. P each step, per
  agent per feature.

``event:`` and the image masks (crop, torch, blackout) are game-specific: asking for them here is a
one-line `UsageError` naming the kinds the kernel supports (`supported_kinds`).

Order within a step (the module docstring of `agentlab.kernels.stochasticity`): drift decides which
profiles are active at the state's time `t`; sticky, then action noise, transform the action taken at
`t`; the kernel steps with the executed action (``info["executed_action"]``); dropout masks active at
``t + 1`` hide features of the new observation (and at time 0, of the reset's observation).

Randomness (docs/contract.md, rule 1: the counter hash): the wrapper's words come from
``seed_words(derive_key(key, STOCHASTIC_STREAM))``, the action draws from its `TAXONOMY_STREAM`
counters and the dropout draws from its `MASK_STREAM` counters. The kernel is handed the step key
unchanged, so its own draws (whatever scheme it uses) are never touched, and a specification with
p = 0 reproduces the plain kernel bit for bit. A step costs two cheap hashes for the derived key plus
one per draw: per agent one per sticky profile, one for action noise's hit and one per action element
for its replacement; one per observation element per dropout profile.

States and params: `StochasticState` holds the kernel's state (`inner`) and the previous executed
action; `StochasticParams` holds the kernel's params (`inner`) and the specification
(`stochasticity`, whose probabilities and drift steps are leaves: one compiled step can `vmap` over
them). Both read unknown attributes through to `inner` (``params.max_steps``, ``state.time``, a
kernel's own fields), so code that reads a kernel's state or params keeps working on the wrapped one.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from agentlab.errors import UsageError, choices
from agentlab.hashing import derive_key
from agentlab.kernels.environment import Environment, StepResult
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.kernels.stochasticity import (
    MASK_STREAM,
    TAXONOMY_STREAM,
    ActionNoise,
    ObservationMask,
    RandomEvent,
    Spec,
    StickyActions,
    WordStream,
    active_profiles,
    as_spec,
    bernoulli,
    flat_profiles,
    format_profile,
    randbelow,
    seed_words,
    uniform,
    validate_spec,
)

#: The wrapper draws from ``derive_key(step_key, STOCHASTIC_STREAM)``, never from the kernel's key.
STOCHASTIC_STREAM = 0x5707
#: The largest `Discrete` action space action noise can draw from (`randbelow`'s exact range).
MAX_NOISE_ACTIONS = 2**15


def _read_through(self: Any, name: str) -> Any:
    """Attribute access that falls back to the wrapped kernel's state or params (`inner`)."""
    if name.startswith("__") or name in ("inner", "stochasticity", "last_action"):
        raise AttributeError(name)
    return getattr(self.inner, name)


@pytree_dataclass
class StochasticState:
    inner: Any  # the kernel's own state (its `time` is the episode's step count)
    last_action: jax.Array  # the action space's shape and dtype: the previous executed action (zeros after reset)

    __getattr__ = _read_through


@pytree_dataclass
class StochasticParams:
    inner: Any  # the kernel's own params (`max_steps` among them)
    stochasticity: tuple = ()  # the generic profiles of `agentlab.kernels.stochasticity`

    __getattr__ = _read_through


def _inner(params: Any) -> Any:
    return params.inner if isinstance(params, StochasticParams) else params


def supported_kinds(env: Environment, params: Any = None) -> tuple[str, ...]:
    """The profile kinds `Stochastic` applies to `env`: ``action`` (Discrete, or a Box with finite bounds),
    ``sticky``, ``drift`` and ``mask:kind=dropout`` (vector observations: ``(obs_dim,)`` for one agent,
    ``(num_agents, obs_dim)`` for several)."""
    params = _inner(params) if params is not None else env.default_params()
    space = env.action_space(params)
    kinds = []
    if isinstance(space, Discrete) or (math.isfinite(space.low) and math.isfinite(space.high)):
        kinds.append("action")
    kinds += ["sticky", "drift"]
    obs = env.observation_space(params)
    if len(obs.shape) == (2 if env.multi_agent else 1) and jnp.issubdtype(obs.dtype, jnp.floating):
        kinds.append("mask:kind=dropout")
    return tuple(kinds)


def validate_generic_spec(env: Environment, params: Any, stochasticity: Any) -> Spec:
    """`stochasticity` (a string, profiles or None) as a specification checked for `env` and its `params`;
    a profile the kernel does not support is a one-line `UsageError` naming the kinds it does support."""
    spec = as_spec(stochasticity)
    if not spec:
        return spec
    kinds = supported_kinds(env, params)
    for profile in flat_profiles(spec):
        kind = profile.kind if not isinstance(profile, ObservationMask) else f"mask:kind={profile.kind_}"
        if kind not in kinds:
            if isinstance(profile, RandomEvent) or kind.startswith("mask") and kind != "mask:kind=dropout":
                why = "game-specific: the Atari-style games only"
            elif kind == "mask:kind=dropout":
                obs = env.observation_space(_inner(params))
                why = f"it needs float vector observations, not {jnp.dtype(obs.dtype).name} {tuple(obs.shape)}"
            else:
                why = "it needs a Discrete space or a Box with finite bounds"
            raise UsageError(
                f"{format_profile(profile)!r} is not available for {env.name} ({why}): "
                f"valid kinds for {env.name} are {choices(kinds)}"
            )
    if isinstance(env.action_space(_inner(params)), Discrete) and any(
        isinstance(p, ActionNoise) for p in flat_profiles(spec)
    ):
        n = env.action_space(_inner(params)).n
        if n > MAX_NOISE_ACTIONS:
            raise UsageError(f"action noise on {env.name} needs at most {MAX_NOISE_ACTIONS} actions, it has {n}")
    return validate_spec(spec, (), (), where=env.name, mask_kinds=("dropout",))


class Stochastic(Environment[StochasticState, StochasticParams]):
    """`env` with the generic stochasticity profiles `spec` applied around it (see the module docstring).

    `spec` (a string or profiles, validated for `env`) is the default params' specification; the
    specification a step applies is ``params.stochasticity``, so other probabilities need no new wrapper.
    """

    def __init__(self, env: Environment, spec: Any = ()):
        if isinstance(env, Stochastic):
            raise UsageError(f"{env.name} is already wrapped in Stochastic: give one specification")
        self.env = env
        self.name = env.name
        self.num_agents = env.num_agents
        self.spec = validate_generic_spec(env, env.default_params(), spec)

    def __getattr__(self, name: str) -> Any:
        # Kernel-specific attributes (roles, action_names, obs_dim, ...) come from the wrapped kernel.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    # -- params and spaces ------------------------------------------------------------------------
    def default_params(self) -> StochasticParams:
        return StochasticParams(inner=self.env.default_params(), stochasticity=self.spec)

    def validate_params(self, params: StochasticParams) -> StochasticParams:
        inner = self.env.validate_params(params.inner)
        return StochasticParams(inner=inner, stochasticity=validate_generic_spec(self.env, inner, params.stochasticity))

    def wrap_params(self, inner: Any, stochasticity: Any = None) -> StochasticParams:
        """The kernel's `inner` params with `stochasticity` (None: this wrapper's `spec`), validated."""
        spec = self.spec if stochasticity is None else stochasticity
        return self.validate_params(StochasticParams(inner=inner, stochasticity=as_spec(spec)))

    def action_space(self, params: Any = None) -> Discrete | Box:
        return self.env.action_space(_inner(params))

    def observation_space(self, params: Any = None) -> Box:
        return self.env.observation_space(_inner(params))

    def action_mask(self, params: Any = None) -> jax.Array | None:
        return self.env.action_mask(_inner(params))

    # -- kernel -----------------------------------------------------------------------------------
    def init(self, key: jax.Array, params: StochasticParams) -> StochasticState:
        inner = self.env.init(key, params.inner)
        space = self.env.action_space(params.inner)
        return StochasticState(inner=inner, last_action=jnp.zeros(space.shape, space.dtype))

    def advance(self, key: jax.Array, state: StochasticState, action: jax.Array, params: StochasticParams):
        executed = self.executed_action(key, state, action, params)
        inner, reward, terminated, info = self.env.advance(key, state.inner, executed, params.inner)
        return StochasticState(inner, executed), reward, terminated, {**info, "executed_action": executed}

    def timed_advance(self, key: jax.Array, state: StochasticState, action: jax.Array, params: StochasticParams):
        """The kernel's own `timed_advance` on the executed action: its state keeps its `time`, and
        truncation comes from its params' `max_steps`."""
        executed = self.executed_action(key, state, action, params)
        inner, reward, terminated, truncated, info = self.env.timed_advance(key, state.inner, executed, params.inner)
        info = {**info, "executed_action": executed}
        return StochasticState(inner, executed), reward, terminated, truncated, info

    def step(self, key: jax.Array, state: StochasticState, action: jax.Array, params: StochasticParams) -> StepResult:
        next_state, reward, terminated, truncated, info = self.timed_advance(key, state, action, params)
        return self.observe(key, next_state, params), next_state, reward, terminated, truncated, info

    def observe(self, key: jax.Array, state: StochasticState, params: StochasticParams) -> jax.Array:
        """The kernel's observation with the dropout masks active at ``state.time`` applied."""
        obs = self.env.observe(key, state.inner, params.inner)
        profiles = [(p, on) for p, on in active_profiles(params.stochasticity, state.inner.time) if p.kind == "mask"]
        if not profiles:
            return obs
        rng = WordStream(seed_words(derive_key(key, STOCHASTIC_STREAM)), MASK_STREAM)
        for profile, on in profiles:
            hidden = on & bernoulli(rng.take_many(obs.size).reshape(obs.shape), profile.p)
            obs = jnp.where(hidden, jnp.zeros((), obs.dtype), obs)
        return obs

    # -- the action transformations ---------------------------------------------------------------
    def executed_action(
        self, key: jax.Array, state: StochasticState, action: jax.Array, params: StochasticParams
    ) -> jax.Array:
        """The action the kernel executes for `action` (the action space's shape and dtype): sticky profiles, then
        action noise, in specification order (what a step reports as ``info["executed_action"]``)."""
        space = self.env.action_space(params.inner)
        executed = jnp.asarray(action, space.dtype)
        profiles = [
            (p, on)
            for p, on in active_profiles(params.stochasticity, state.inner.time)
            if isinstance(p, (StickyActions, ActionNoise))
        ]
        if not profiles:
            return executed
        rng = WordStream(seed_words(derive_key(key, STOCHASTIC_STREAM)), TAXONOMY_STREAM)
        agents = self.num_agents if self.multi_agent else None
        has_previous = state.inner.time > 0
        for profile, on in profiles:
            if isinstance(profile, StickyActions):
                repeat = on & has_previous & bernoulli(self._per_agent(rng, agents), profile.p)
                executed = jnp.where(self._to_action(repeat, space), state.last_action, executed)
        for profile, on in profiles:
            if isinstance(profile, ActionNoise):
                hit = on & bernoulli(self._per_agent(rng, agents), profile.p)
                executed = jnp.where(
                    self._to_action(hit, space), self._uniform_action(rng, space, params, executed), executed
                )
        return executed

    @staticmethod
    def _per_agent(rng: WordStream, agents: int | None) -> jax.Array:
        """One word per agent: uint32 ``(agents,)``, or ``()`` for a single-agent kernel."""
        return rng.take() if agents is None else rng.take_many(agents)

    def _to_action(self, per_agent: jax.Array, space: Discrete | Box) -> jax.Array:
        """A per-agent bool broadcast against the action: ``(agents, 1)`` for multi-agent Box actions."""
        if self.multi_agent and len(space.shape) == 2:
            return per_agent[:, None]
        return per_agent

    def _uniform_action(self, rng: WordStream, space: Discrete | Box, params: StochasticParams, executed: jax.Array):
        """A uniform action of the kernel's space (within each agent's action mask, where there is one)."""
        mask = self.env.action_mask(params.inner)
        size = math.prod(space.shape)
        words = rng.take_many(size).reshape(space.shape)
        if isinstance(space, Discrete):
            if mask is None:
                return randbelow(words, space.n)
            mask = jnp.asarray(mask, bool).reshape((*space.shape, space.n))
            count = jnp.sum(mask, axis=-1, dtype=jnp.int32)
            k = randbelow(words, jnp.maximum(count, 1))
            chosen = mask & (jnp.cumsum(mask, axis=-1, dtype=jnp.int32) == (k + 1)[..., None])
            return jnp.argmax(chosen, axis=-1).astype(space.dtype)
        low, high = jnp.float32(space.low), jnp.float32(space.high)
        drawn = (low + (high - low) * uniform(words)).astype(space.dtype)
        if mask is None:
            return drawn
        return jnp.where(jnp.asarray(mask, bool).reshape(space.shape), drawn, executed)


def apply_stochasticity(env: Environment, params: Any, stochasticity: Any) -> tuple[Environment, Any]:
    """``(env, params)`` with the generic profiles of `stochasticity` (a string, profiles or None) applied:
    `env` and `params` unchanged for the plain kernel, else ``Stochastic(env)`` and its params. What `make`
    does for every kernel other than the Atari-style games (which apply the taxonomy themselves)."""
    spec = validate_generic_spec(env, params, stochasticity)
    if not spec:
        return env, params
    wrapped = Stochastic(env, spec)
    return wrapped, StochasticParams(inner=params, stochasticity=spec)


__all__ = [
    "STOCHASTIC_STREAM",
    "Stochastic",
    "StochasticParams",
    "StochasticState",
    "apply_stochasticity",
    "supported_kinds",
    "validate_generic_spec",
]
