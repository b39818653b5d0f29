"""Other libraries' JAX environments as contract kernels: ``gymnax:ID`` (gymnax 1.0.1), ``jaxmarl:ID`` (JaxMARL 0.2.0).

    >>> env, params = make("gymnax:CartPole-v1")                # agentlab.kernels.make: AutoReset on top
    >>> env, params = make("jaxmarl:MPE_simple_spread_v3", num_agents=4)

The external environment is driven through its own reset and transition functions, never through its
auto-resetting ``step`` (which splits the key its own way): gymnax's ``reset_env(key, env_params)`` and
``step_env(key, state, action, env_params)``, JaxMARL's ``reset(key)`` and ``step_env(key, state, actions)``.
A contract `init` is the external reset with the same key, `advance` the external transition with the
same key, so a trajectory equals the external environment's driven with the same keys (tested).
`AutoReset` then starts new episodes from ``derive_key(step_key, RESET_STREAM)`` like every kernel.

State: `ExternalState` holds the external state (``inner``), the observation the external environment
returned with it (``obs``, so `observe` is free) and the contract's int32 ``time``. Leaves are made
strongly typed arrays (a gymnax reset returns Python ``0`` for ``time``), so `lax.scan` carries and
`AutoReset`'s select see one dtype. The external ``info`` is dropped (contract kernels report their own).

Params: `ExternalParams` holds the external params (``inner``: gymnax's ``EnvParams``, a flax struct
dataclass; None for JaxMARL, whose settings are constructor arguments) and the contract's ``max_steps``.

Termination and truncation:

- gymnax 1.0.1's ``step_env`` returns the natural termination only (its time limit is the separate
  ``is_truncated``: ``time >= max_steps_in_episode``), so ``terminated`` is that flag and the contract
  truncates at ``max_steps``, which the option keeps equal to ``max_steps_in_episode`` (default: the
  environment's own, 500 for CartPole-v1). The option ``max_steps`` sets both; every other scalar field
  of ``EnvParams`` is an option of the same name (``gravity``, ``force_mag``, ...).
- JaxMARL environments end episodes through ``dones["__all__"]``; where the environment has a
  ``max_steps`` attribute (the MPE, Overcooked, ...), its own limit is disabled (built with
  ``max_steps=2**31 - 1``) and the contract truncates at the option ``max_steps`` (default: the
  environment's ``max_steps``), so ``dones["__all__"]`` is the termination. JaxMARL's MPE ends an
  episode on the step *after* ``step >= max_steps`` (26 steps for its default 25); the contract counts
  ``max_steps`` steps (25, as PettingZoo's MPE). Other constructor arguments with a scalar default
  (``num_agents``, ``local_ratio``, ``action_type``, ...) are options of the same name; Overcooked's
  ``layout`` is named by its key in JaxMARL's ``overcooked_layouts`` (``layout=asymm_advantages``).

Multi-agent layout (JaxMARL): agents in ``env.agents`` order on a leading axis: observations
``(num_agents, *obs_shape)`` (the per-agent dict stacked), actions int32 ``(num_agents,)`` (discrete)
or float32 ``(num_agents, act_dim)`` (continuous), rewards float32 ``(num_agents,)``; every agent has
role 0 and every action is allowed (no mask). Environments whose agents' spaces differ are refused.

Spaces: `Discrete` or `Box` of agentlab with the external space's size; a `Box` keeps the smallest
lower and the largest upper bound over elements (agentlab's bounds are scalars); shape and dtype are
those the external environment actually returns (`jax.eval_shape` of a reset).

Randomness: whatever the external environment draws (threefry through `jax.random`); rule 2 of the
randomness rule does not bind an external environment, which keeps its own draws. Determinism holds (a
lane depends only on its keys), but not always bit for bit between programs: XLA fuses some external
physics differently under `vmap` (Pendulum-v1, the MPE: last-bit differences, below 1e-6).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.names import EXTERNAL_PREFIXES, split_external_id
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete

__all__ = [
    "EXTERNAL_PREFIXES",
    "EXTRAS",
    "ExternalParams",
    "ExternalState",
    "GymnaxKernel",
    "JaxMARLKernel",
    "describe_external",
    "external_available",
    "external_ids",
    "external_option_defaults",
    "make_external",
]

#: prefix -> how to install the library (the package extra).
EXTRAS = {"gymnax": "pip install 'agentlab[gymnax]'", "jaxmarl": "pip install 'agentlab[jaxmarl]'"}
#: What JaxMARL's own time limit is set to, so that the contract's ``max_steps`` decides (int32 max).
NO_LIMIT = 2**31 - 1
#: JaxMARL environments whose ``layout`` argument is a dict, named here by the key of JaxMARL's own table
#: (``jaxmarl.environments.<table>``) and its default: ``layout=asymm_advantages`` builds
#: ``make("overcooked", layout=overcooked_layouts["asymm_advantages"])``.
LAYOUT_TABLES = {"overcooked": ("overcooked_layouts", "cramped_room")}
_SCALARS = (bool, int, float, str)


@pytree_dataclass
class ExternalState:
    inner: Any  # the external environment's state pytree (leaves strongly typed arrays)
    obs: jax.Array  # the observation of `inner` as the external environment returned it; JaxMARL: (num_agents, ...)
    time: jax.Array  # int32 (): steps in this episode


@pytree_dataclass
class ExternalParams:
    inner: Any  # gymnax: its EnvParams (a flax struct dataclass); JaxMARL: None (settings are constructor arguments)
    max_steps: int | None = None  # the contract's time limit (None: none)


def _strong(tree: Any) -> Any:
    """Every leaf as an array of its own dtype, not weakly typed (Python scalars included)."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


def _box(space: Any, shape: tuple[int, ...], dtype: Any) -> Box:
    low = float(np.min(np.asarray(space.low, np.float64))) if hasattr(space, "low") else -np.inf
    high = float(np.max(np.asarray(space.high, np.float64))) if hasattr(space, "high") else np.inf
    return Box(low, high, tuple(int(n) for n in shape), dtype)


def _space(space: Any, name: str, what: str) -> tuple[str, Any]:
    """An external Discrete or Box as ``("discrete", n)`` or ``("box", space)``; anything else -> `UsageError`."""
    kind = type(space).__name__
    if kind == "Discrete":
        return "discrete", int(space.n)
    if kind == "Box":
        return "box", space
    raise UsageError(f"{name}: its {what} space is a {kind}; agentlab wraps Discrete and Box spaces only")


# ---------------------------------------------------------------- names, availability, imports (no JAX work)


def external_available(prefix: str) -> bool:
    """Whether the library behind `prefix` is installed (without importing it)."""
    return importlib.util.find_spec(prefix) is not None


def _library(prefix: str, name: str) -> Any:
    """The imported library behind `prefix`; a missing one -> `UsageError` naming the extra."""
    if not external_available(prefix):
        raise UsageError(f"{name} needs the {prefix} extra: {EXTRAS[prefix]}")
    try:
        with _stdout_to_stderr():
            return importlib.import_module(prefix)
    except ImportError as error:
        raise UsageError(f"{name} needs the {prefix} extra ({EXTRAS[prefix]}): import failed: {error}") from None


@contextlib.contextmanager
def _stdout_to_stderr():
    """Python-level stdout goes to stderr (stdout carries only JSON). JaxMARL 0.2.0 prints while importing, after
    its ``mabrax`` module has set ``sys.stdout = sys.__stdout__``, so both names are redirected."""
    saved = sys.stdout, sys.__stdout__
    sys.stdout = sys.__stdout__ = sys.stderr
    try:
        yield
    finally:
        sys.stdout, sys.__stdout__ = saved


def external_ids(prefix: str, name: str | None = None) -> tuple[str, ...]:
    """The environment ids the installed library registers (imports it), sorted; `name` is what an error names."""
    library = _library(prefix, name or f"{prefix}:ID")
    return tuple(sorted(library.registered_envs))


def _split(name: str) -> tuple[str, str]:
    parts = split_external_id(name)
    if parts is None:
        raise UsageError(
            f"{name!r} is not an external environment id: write PREFIX:ID, PREFIX one of {choices(EXTERNAL_PREFIXES)}"
        )
    prefix, env_id = parts
    valid = external_ids(prefix, name)
    if env_id not in valid:
        raise UsageError(f"{name}: unknown {prefix} environment; valid: {', '.join(valid)}")
    return prefix, env_id


# ------------------------------------------------------------------------------------------------ gymnax


class GymnaxKernel(Environment[ExternalState, ExternalParams]):
    """A gymnax environment (single agent) on the contract; see the module docstring."""

    def __init__(self, name: str, inner_env: Any, inner_params: Any):
        self.name = name
        self.inner_env = inner_env
        self._default_inner = inner_params  # the external defaults (what `default_params` starts from)
        obs = jax.eval_shape(lambda key: inner_env.reset_env(key, inner_params)[0], jax.random.key(0))
        self._obs_shape, self._obs_dtype = tuple(obs.shape), obs.dtype
        self.action_names = None

    def default_params(self) -> ExternalParams:
        return ExternalParams(self._default_inner, _gymnax_limit(self._default_inner))

    def init(self, key, params: ExternalParams) -> ExternalState:
        obs, inner = self.inner_env.reset_env(key, params.inner)
        return ExternalState(_strong(inner), jnp.asarray(obs), jnp.zeros((), jnp.int32))

    def advance(self, key, state: ExternalState, action, params: ExternalParams):
        obs, inner, reward, terminated, _ = self.inner_env.step_env(key, state.inner, action, params.inner)
        next_state = ExternalState(_strong(inner), jnp.asarray(obs, state.obs.dtype), state.time)
        return next_state, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool), {}

    def observe(self, key, state: ExternalState, params: ExternalParams) -> jax.Array:
        return state.obs

    def action_space(self, params: ExternalParams | None = None) -> Discrete | Box:
        inner = (params or self.default_params()).inner
        kind, space = _space(self.inner_env.action_space(inner), self.name, "action")
        return Discrete(space) if kind == "discrete" else _box(space, tuple(space.shape), jnp.float32)

    def observation_space(self, params: ExternalParams | None = None) -> Box:
        inner = (params or self.default_params()).inner
        kind, space = _space(self.inner_env.observation_space(inner), self.name, "observation")
        if kind == "discrete":
            return Box(0, space - 1, self._obs_shape, self._obs_dtype)
        return _box(space, self._obs_shape, self._obs_dtype)


def _gymnax_limit(inner_params: Any) -> int | None:
    limit = getattr(inner_params, "max_steps_in_episode", None)
    return None if limit is None else int(limit)


def _gymnax_fields(inner_params: Any) -> dict[str, Any]:
    """The settable scalar fields of a gymnax ``EnvParams`` and their defaults (``max_steps_in_episode`` is
    the option ``max_steps``)."""
    out = {}
    for field in getattr(inner_params, "__dataclass_fields__", {}):
        value = getattr(inner_params, field)
        if field == "max_steps_in_episode":
            continue
        if isinstance(value, _SCALARS):
            out[field] = value
        elif isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
            out[field] = np.asarray(value).item()
    return out


def _make_gymnax(name: str, env_id: str, options: dict[str, Any]) -> tuple[GymnaxKernel, ExternalParams]:
    gymnax = _library("gymnax", name)
    inner_env, inner_params = gymnax.make(env_id)
    fields = _gymnax_fields(inner_params)
    limit = _gymnax_limit(inner_params)
    defaults = {"max_steps": limit, **fields}
    _check_options(name, options, defaults)
    changes = {k: (float(v) if isinstance(fields[k], float) else v) for k, v in options.items() if k != "max_steps"}
    max_steps = options.get("max_steps", limit)
    if max_steps is not None and limit is not None:
        changes["max_steps_in_episode"] = max_steps
    env = GymnaxKernel(name, inner_env, inner_params)
    return env, ExternalParams(inner_params.replace(**changes), max_steps)


# ------------------------------------------------------------------------------------------------ JaxMARL


class JaxMARLKernel(Environment[ExternalState, ExternalParams]):
    """A JaxMARL environment on the contract's multi-agent layout (agents stacked on a leading axis)."""

    def __init__(self, name: str, inner_env: Any, max_steps: int | None):
        self.name = name
        self.inner_env = inner_env
        self.agents = tuple(inner_env.agents)
        self.num_agents = len(self.agents)
        self.roles = (0,) * self.num_agents
        self._max_steps = max_steps  # the environment's own limit (what `default_params` starts from)
        spaces = {}
        for what, table in (("action", inner_env.action_spaces), ("observation", inner_env.observation_spaces)):
            kinds = [_space(table[a], name, what) for a in self.agents]
            shapes = {(k, v if k == "discrete" else tuple(v.shape)) for k, v in kinds}
            if len(shapes) != 1:
                raise UsageError(f"{name}: its agents' {what} spaces differ; agentlab stacks agents with equal spaces")
            spaces[what] = kinds[0]
        self._action, self._observation = spaces["action"], spaces["observation"]
        obs = jax.eval_shape(lambda key: self._stack(inner_env.reset(key)[0]), jax.random.key(0))
        self._obs_shape, self._obs_dtype = tuple(obs.shape), obs.dtype
        self.action_names = None

    def _stack(self, per_agent: dict) -> jax.Array:
        return jnp.stack([jnp.asarray(per_agent[a]) for a in self.agents])

    def default_params(self) -> ExternalParams:
        return ExternalParams(None, self._max_steps)

    def init(self, key, params: ExternalParams) -> ExternalState:
        obs, inner = self.inner_env.reset(key)
        return ExternalState(_strong(inner), self._stack(obs), jnp.zeros((), jnp.int32))

    def advance(self, key, state: ExternalState, action, params: ExternalParams):
        actions = {a: action[i] for i, a in enumerate(self.agents)}
        obs, inner, rewards, dones, _ = self.inner_env.step_env(key, state.inner, actions)
        next_state = ExternalState(_strong(inner), self._stack(obs).astype(state.obs.dtype), state.time)
        reward = self._stack(rewards).astype(jnp.float32)
        return next_state, reward, jnp.asarray(dones["__all__"], bool), {}

    def observe(self, key, state: ExternalState, params: ExternalParams) -> jax.Array:
        return state.obs

    def action_space(self, params: ExternalParams | None = None) -> Discrete | Box:
        kind, space = self._action
        if kind == "discrete":
            return Discrete(space, shape=(self.num_agents,))
        return _box(space, (self.num_agents, *space.shape), jnp.float32)

    def observation_space(self, params: ExternalParams | None = None) -> Box:
        kind, space = self._observation
        if kind == "discrete":
            return Box(0, space - 1, self._obs_shape, self._obs_dtype)
        return _box(space, self._obs_shape, self._obs_dtype)


def _jaxmarl_arguments(cls: type) -> dict[str, Any]:
    """Constructor arguments with a scalar default along the class chain (a class that takes ``**kwargs``
    passes them on to its base), first definition wins."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = inspect.signature(vars(klass)["__init__"]).parameters
        for key, p in parameters.items():
            if key not in out and p.default is not inspect.Parameter.empty and isinstance(p.default, _SCALARS):
                out[key] = p.default
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            break
    return out


def _jaxmarl_build(jaxmarl: Any, name: str, env_id: str, kwargs: dict[str, Any]) -> Any:
    try:
        with _stdout_to_stderr():
            return jaxmarl.make(env_id, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        raise UsageError(f"{name}: JaxMARL refused the options {kwargs}: {text}") from None


def _make_jaxmarl(name: str, env_id: str, options: dict[str, Any]) -> tuple[JaxMARLKernel, ExternalParams]:
    jaxmarl = _library("jaxmarl", name)
    kwargs = {k: v for k, v in options.items() if k != "max_steps"}
    default_env = _jaxmarl_build(jaxmarl, name, env_id, {})
    _check_options(name, options, _jaxmarl_defaults(default_env, env_id))
    if "layout" in kwargs and env_id in LAYOUT_TABLES:
        table = getattr(importlib.import_module("jaxmarl.environments"), LAYOUT_TABLES[env_id][0])
        if kwargs["layout"] not in table:
            raise UsageError(f"layout of {name} must be one of {choices(tuple(table))}, got {kwargs['layout']!r}")
        kwargs["layout"] = table[kwargs["layout"]]
    probe = _jaxmarl_build(jaxmarl, name, env_id, kwargs) if kwargs else default_env
    own = getattr(probe, "max_steps", None)
    own = None if own is None else int(own)
    inner = probe if own is None else _jaxmarl_build(jaxmarl, name, env_id, {**kwargs, "max_steps": NO_LIMIT})
    return JaxMARLKernel(name, inner, own), ExternalParams(None, options.get("max_steps", own))


def _jaxmarl_defaults(default_env: Any, env_id: str) -> dict[str, Any]:
    """``max_steps`` (the environment's own limit, None where it has none), the constructor's scalar arguments and
    a named ``layout`` where JaxMARL has a table of them (`LAYOUT_TABLES`)."""
    arguments = _jaxmarl_arguments(type(default_env))
    if env_id in LAYOUT_TABLES:
        arguments["layout"] = LAYOUT_TABLES[env_id][1]
    arguments.pop("max_steps", None)
    limit = getattr(default_env, "max_steps", None)
    return {"max_steps": None if limit is None else int(limit), **arguments}


# ------------------------------------------------------------------------------------------------ shared


def _check_options(name: str, options: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Each option a known name whose value has its default's type (an int for an int, a number for a float,
    a bool for a bool, a string for a string); ``max_steps`` a positive int or None."""
    for key, value in options.items():
        if key not in defaults:
            raise UsageError(f"unknown option {key!r} for {name}: valid options are {choices(tuple(defaults))}")
        default = defaults[key]
        if key == "max_steps":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
            if not ok:
                raise UsageError(f"max_steps must be a positive integer or None, got {value!r}")
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise UsageError(
                f"option {key} of {name} must be {type(default).__name__} (default {default!r}), got {value!r}"
            )


def make_external(name: str, **options: Any) -> tuple[Environment, ExternalParams]:
    """``(env, params)`` for ``gymnax:ID`` or ``jaxmarl:ID`` (no auto-reset: `agentlab.kernels.make` adds it).

    Options: ``max_steps`` (the contract's time limit; default the environment's own) and the external
    settings (gymnax: the scalar ``EnvParams`` fields; JaxMARL: the constructor's scalar arguments).
    Unknown id, unknown option, a value of the wrong type or a missing library -> `UsageError` (one line).
    """
    prefix, env_id = _split(name)
    if prefix == "gymnax":
        return _make_gymnax(name, env_id, options)
    return _make_jaxmarl(name, env_id, options)


def external_option_defaults(name: str) -> dict[str, Any]:
    """The options `make_external` takes for `name` and their defaults (``max_steps`` first)."""
    prefix, env_id = _split(name)
    if prefix == "gymnax":
        _, inner_params = _library("gymnax", name).make(env_id)
        return {"max_steps": _gymnax_limit(inner_params), **_gymnax_fields(inner_params)}
    return _jaxmarl_defaults(_jaxmarl_build(_library("jaxmarl", name), name, env_id, {}), env_id)


def describe_external(name: str) -> dict[str, Any]:
    """What `agentlab envs` shows for an external environment (the common keys of `describe_kernel`, family
    ``gymnax`` or ``jaxmarl``, and its options with their defaults)."""
    prefix, _ = _split(name)
    env, params = make_external(name)
    space = env.action_space(params)
    actions = [f"action{i}" for i in range(space.n)] if isinstance(space, Discrete) else None
    note = f"(from {prefix}; agents stacked on axis 0)" if env.multi_agent else f"(from {prefix})"
    entry = describe_kernel(env, prefix, params=params, actions=actions, observation_note=note)
    return {**entry, "options": external_option_defaults(name)}
