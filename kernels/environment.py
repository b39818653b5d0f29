"""The kernel contract: `Environment`, time-limit truncation and the auto-reset wrapper.

Every kernel is a pair of pure functions on frozen pytrees::

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

Kernel authors implement `reset` and `transition` (the game, with no notion of a time limit).
`Environment.step` is the one place that counts steps (`state.time`) and derives `truncated` from
`params.max_steps`; `AutoReset` is the one place that resets finished episodes.

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

from agentlab.kernels.spaces import Box, Discrete

StateT = TypeVar("StateT")
ParamsT = TypeVar("ParamsT")

Info = dict[str, Any]
StepResult = tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, Info]

#: `AutoReset` draws the new episode from ``fold_in(step_key, RESET_STREAM)``; kernels must not use
#: this stream for anything else.
RESET_STREAM = 0x7E5E7


class Environment(abc.ABC, Generic[StateT, ParamsT]):
    """A kernel. Subclasses set `name` and implement `default_params`, `reset`, `transition`
    and the spaces. States must have an int32 `time` field (steps taken in this episode), which
    `step` advances; params must have a `max_steps` field (`None` = no time limit).
    """

    name: str = "environment"
    num_agents: int = 1

    @abc.abstractmethod
    def default_params(self) -> ParamsT: ...

    @abc.abstractmethod
    def reset(self, key: jax.Array, params: ParamsT) -> tuple[jax.Array, StateT]: ...

    @abc.abstractmethod
    def transition(
        self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT
    ) -> tuple[jax.Array, StateT, jax.Array, jax.Array, Info]:
        """One step of the game without a time limit: ``(obs, state, reward, terminated, info)``.

        `state.time` is still the time before this step; `step` advances it.
        """

    @abc.abstractmethod
    def action_space(self, params: ParamsT | None = None) -> Discrete | Box: ...

    @abc.abstractmethod
    def observation_space(self, params: ParamsT | None = None) -> Box: ...

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

    def step(self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT) -> StepResult:
        """Advance one step; `truncated` is true when ``state.time`` reaches ``params.max_steps``
        on a step that did not terminate."""
        obs, next_state, reward, terminated, info = self.transition(key, state, action, params)
        time = state.time + 1  # type: ignore[attr-defined]
        next_state = next_state.replace(time=time)  # type: ignore[attr-defined]
        max_steps = params.max_steps  # type: ignore[attr-defined]
        if max_steps is None:
            truncated = jnp.zeros_like(terminated)
        else:
            truncated = (time >= max_steps) & ~terminated
        return obs, next_state, reward, terminated, truncated, info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class AutoReset(Environment[StateT, ParamsT]):
    """Starts a new episode in the same lane as soon as one ends.

    The step's observation before the reset is kept in ``info["final_observation"]`` (for bootstrapping
    on truncation); the returned `obs` and `state` are those of the new episode. The new episode is
    drawn from ``fold_in(step_key, RESET_STREAM)``, so a lane depends on its own keys only.

    The reset sits behind `lax.cond`: on one lane it runs only when an episode ends. Under `vmap`
    JAX turns the cond into a select and computes both sides, so kernels keep `reset` cheap (a few
    random words and constants); `agentlab bench kernels --no-auto-reset` measures what it costs.
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

    def reset(self, key: jax.Array, params: ParamsT) -> tuple[jax.Array, StateT]:
        return self.env.reset(key, params)

    def transition(self, key, state, action, params):  # pragma: no cover - step is overridden
        return self.env.transition(key, state, action, params)

    def action_space(self, params: ParamsT | None = None) -> Discrete | Box:
        return self.env.action_space(params)

    def observation_space(self, params: ParamsT | None = None) -> Box:
        return self.env.observation_space(params)

    def step(self, key: jax.Array, state: StateT, action: jax.Array, params: ParamsT) -> StepResult:
        obs, next_state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        done = terminated | truncated

        def start_new_episode() -> tuple[jax.Array, StateT]:
            return self.env.reset(jax.random.fold_in(key, RESET_STREAM), params)

        def keep_going() -> tuple[jax.Array, StateT]:
            return obs, next_state

        obs_out, state_out = jax.lax.cond(done, start_new_episode, keep_going)
        info = {**info, "final_observation": obs}
        return obs_out, state_out, reward, terminated, truncated, info
