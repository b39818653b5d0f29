"""The kernel contract: `Environment`, time-limit truncation and the auto-reset wrapper.

Every kernel is a pair of pure functions on frozen pytrees::

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

Kernel authors write three smaller pure functions, and only the game:

    init(key, params) -> state                                    # a new episode
    advance(key, state, action, params) -> (state, reward, terminated, info)
    observe(key, state, params) -> obs                            # what the agent sees of a state

`Environment.reset` and `Environment.step` compose them; `step` is the one place that counts steps
(`state.time`) and derives `truncated` from `params.max_steps`, and `AutoReset` is the one place
that resets finished episodes. Because the observation is a function of ``(key, state)``,
`AutoReset` selects the state first and observes once, instead of rendering both the finished and
the fresh episode on every step.

Single-agent kernels return an unbatched observation, a scalar int32 action, a scalar float32
reward and scalar bool flags. Multi-agent kernels (``num_agents > 1``) return observations
``(num_agents, obs_dim)``, take actions ``(num_agents,)`` (discrete) or ``(num_agents, act_dim)``
(continuous), return rewards ``(num_agents,)`` and one `terminated`/`truncated` per environment;
`roles` gives a role id per agent, and an action mask, where roles differ in their actions, is in
``info["action_mask"]``.

Determinism: a lane's trajectory depends only on the keys it is given, so `vmap` over lanes equals
a Python loop over the same keys (bit for bit on the CPU).
"""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from agentlab.hashing import derive_key  # noqa: F401 (re-exported: part of the kernel API)
from agentlab.kernels.fusion import materialize
from agentlab.kernels.spaces import Box, Discrete

StateT = TypeVar("StateT")
ParamsT = TypeVar("ParamsT")

Info = dict[str, Any]
StepResult = tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, Info]

#: `AutoReset` starts the new episode from ``derive_key(step_key, RESET_STREAM)``.
RESET_STREAM = 0x7E5E7


class Environment(abc.ABC, Generic[StateT, ParamsT]):
    """A kernel. Subclasses set `name` and implement `default_params`, `init`, `advance`,
    `observe` and the spaces, and `validate_params` where params have bounded fields. States
    must have an int32 `time` field (steps taken in this episode), which `step` advances; params
    must have a `max_steps` field (`None` = no limit).
    """

    name: str = "environment"
    num_agents: int = 1

    @abc.abstractmethod
    def default_params(self) -> ParamsT:
        """The kernel's default params (what `make` starts from before applying its options)."""

    def validate_params(self, params: ParamsT) -> ParamsT:
        """`params` checked for this kernel (host values): every bounded field through its `agentlab.limits.Bound`,
        `UsageError` naming the field otherwise. Kernels with bounded fields override this; the default has nothing
        to check and returns `params` unchanged. `make` builds ``validate_params(default_params().replace(...))``."""
        return params

    @abc.abstractmethod
    def init(self, key: jax.Array, params: ParamsT) -> StateT:
        """The first state of a new episode (``time == 0``)."""

    @abc.abstractmethod
    def advance(
        self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT
    ) -> tuple[StateT, jax.Array, jax.Array, Info]:
        """One step of the game without a time limit: ``(state, reward, terminated, info)``.

        `state.time` is still the time before this step; `step` advances it afterwards.
        """

    @abc.abstractmethod
    def observe(self, key: jax.Array, state: StateT, params: ParamsT) -> jax.Array:
        """What the agent sees of `state`; `key` is the key of the step (or reset) that made it."""

    @abc.abstractmethod
    def action_space(self, params: ParamsT | None = None) -> Discrete | Box: ...

    @abc.abstractmethod
    def observation_space(self, params: ParamsT | None = None) -> Box: ...

    def action_mask(self, params: ParamsT | None = None) -> jax.Array | None:
        """bool ``(num_agents, num_actions)``: the actions each agent's role allows (the same array as
        ``info["action_mask"]``), or None where every agent may take every action. Learners mask
        their policies with it."""
        return None

    @property
    def num_actions(self) -> int:
        """The number of discrete actions (the size of the action space)."""
        space = self.action_space()
        if not isinstance(space, Discrete):
            raise AttributeError(f"{self.name} has a continuous action space")
        return space.n

    @property
    def multi_agent(self) -> bool:
        return self.num_agents > 1

    def reset(self, key: jax.Array, params: ParamsT) -> tuple[jax.Array, StateT]:
        state = self.init(key, params)
        return self.observe(key, state, params), state

    def timed_advance(
        self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT
    ) -> tuple[StateT, jax.Array, jax.Array, jax.Array, Info]:
        """`advance`, then ``time + 1`` and ``truncated``: true when the new time reaches
        ``params.max_steps`` on a step that did not terminate."""
        next_state, reward, terminated, info = self.advance(key, state, action, params)
        time = state.time + 1  # type: ignore[attr-defined]
        next_state = next_state.replace(time=time)  # type: ignore[attr-defined]
        max_steps = params.max_steps  # type: ignore[attr-defined]
        if max_steps is None:
            truncated = jnp.zeros_like(terminated)
        else:
            truncated = (time >= max_steps) & ~terminated
        return next_state, reward, terminated, truncated, info

    def step(self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT) -> StepResult:
        next_state, reward, terminated, truncated, info = self.timed_advance(key, state, action, params)
        return self.observe(key, next_state, params), next_state, reward, terminated, truncated, info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class AutoReset(Environment[StateT, ParamsT]):
    """Starts a new episode in the same lane as soon as one ends.

    The observation of the finished episode's last state is ``info["final_observation"]`` (for
    bootstrapping on truncation); the returned `obs` and `state` are those of the new episode, drawn
    from ``derive_key(step_key, RESET_STREAM)``, so a lane depends on its own keys only. The result
    equals ``env.reset(derive_key(key, RESET_STREAM), params)`` where the episode ended and
    ``env.step(key, ...)`` elsewhere.

    Cost: under `vmap` the new episode's `init` runs on every step (JAX computes both sides of a
    select), so kernels keep `init` cheap; the observation is computed once, from the selected state
    (plus once more for ``final_observation``, which JAX drops when it is not used); the selected
    state is `materialize`d first so that the compiler does not redo `init` per observation cell.
    `agentlab bench kernels --auto-reset both` measures what auto-reset costs.
    """

    def __init__(self, env: Environment[StateT, ParamsT]):
        self.env = env
        self.name = env.name
        self.num_agents = env.num_agents

    def __getattr__(self, name: str) -> Any:
        # Kernel-specific attributes (action_set, channels, roles, ...) come from the wrapped kernel.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def default_params(self) -> ParamsT:
        return self.env.default_params()

    def validate_params(self, params: ParamsT) -> ParamsT:
        return self.env.validate_params(params)

    def action_mask(self, params: ParamsT | None = None) -> jax.Array | None:
        return self.env.action_mask(params)

    def init(self, key: jax.Array, params: ParamsT) -> StateT:
        return self.env.init(key, params)

    def advance(self, key, state, action, params):
        return self.env.advance(key, state, action, params)

    def observe(self, key: jax.Array, state: StateT, params: ParamsT) -> jax.Array:
        return self.env.observe(key, state, params)

    def action_space(self, params: ParamsT | None = None) -> Discrete | Box:
        return self.env.action_space(params)

    def observation_space(self, params: ParamsT | None = None) -> Box:
        return self.env.observation_space(params)

    def step(self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT) -> StepResult:
        env = self.env
        next_state, reward, terminated, truncated, info = env.timed_advance(key, state, action, params)
        done = terminated | truncated
        reset_key = derive_key(key, RESET_STREAM)
        fresh = env.init(reset_key, params)
        state_out = jax.tree.map(lambda new, old: jax.lax.select(done, new, old), fresh, next_state)
        state_out = materialize(state_out, key)
        obs = env.observe(jax.lax.select(done, reset_key, key), state_out, params)
        info = {**info, "final_observation": env.observe(key, next_state, params)}
        return obs, state_out, reward, terminated, truncated, info


def describe_kernel(
    env: Environment,
    family: str,
    *,
    params: Any = None,
    actions: list[str] | None = None,
    channels: list[str] | None = None,
    observation_note: str = "",
    action_note: str = "",
    event_modes: dict[str, str] | None = None,
    blackout_regions: Any = None,
) -> dict[str, Any]:
    """The keys every kernel's entry in `agentlab envs` shares, derived from the kernel itself: ``name``, ``family``,
    ``agents`` (`num_agents`), ``observation`` (dtype and shape of `observation_space`, then `observation_note`),
    ``channels``, ``actions`` (`actions`, else the kernel's `action_names`; a continuous space is described by its
    shape and bounds, then `action_note`), ``action_set`` (the kernel's `action_set`, else ``0 .. n - 1`` of a
    `Discrete` space, ``[]`` for a `Box`), ``roles`` (multi-agent kernels only), ``event_modes`` and
    ``blackout_regions`` (``["all", *regions]`` where the kernel has mask regions, else ``[]``). Unset arguments come
    from the kernel's attributes of the same name; `params` defaults to ``env.default_params()``. A kernel's
    `describe` adds what is its own with `insert_after`."""
    params = env.default_params() if params is None else params
    obs = env.observation_space(params)
    space = env.action_space(params)
    observation = f"{jnp.dtype(obs.dtype).name} {tuple(int(n) for n in obs.shape)}"
    if isinstance(space, Box):
        bounds = f"continuous {tuple(int(n) for n in space.shape)} in [{space.low:g}, {space.high:g}]"
        action_names = [f"{bounds}: {action_note}" if action_note else bounds]
        action_set: list[int] = []
    else:
        action_names = list(actions if actions is not None else env.action_names)  # type: ignore[attr-defined]
        action_set = [int(a) for a in getattr(env, "action_set", range(space.n))]
    out: dict[str, Any] = {
        "name": env.name,
        "family": family,
        "agents": env.num_agents,
        "observation": f"{observation} {observation_note}" if observation_note else observation,
        "channels": list(channels if channels is not None else getattr(env, "channels", ())),
        "actions": action_names,
        "action_set": action_set,
    }
    if env.multi_agent:
        out["roles"] = [int(r) for r in env.roles]  # type: ignore[attr-defined]
    modes = event_modes if event_modes is not None else getattr(env, "event_modes", {})
    regions = blackout_regions if blackout_regions is not None else getattr(env, "blackout_regions", ())
    out["event_modes"] = dict(modes)
    out["blackout_regions"] = ["all", *regions] if regions else []
    return out


def insert_after(entry: dict[str, Any], key: str, **items: Any) -> dict[str, Any]:
    """`entry` with `items` placed right after `key` (a kernel's own keys beside the common ones they belong to)."""
    out: dict[str, Any] = {}
    for name, value in entry.items():
        out[name] = value
        if name == key:
            out.update(items)
    return out
