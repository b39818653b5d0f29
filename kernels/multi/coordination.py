"""`coordination`: a small repeated coordination game, the reference kernel of the multi-agent contract.

Each step every agent picks one of `num_choices` options. An agent earns the fraction of the *other*
agents that picked the same option as it did, so the team is best off when all agree. Agent 0 is
the *leader* (role 0) and may only pick among the first ``num_choices - 1`` options (its action mask
in ``info["action_mask"]`` says which); the others are followers (role 1). With prob. `switch_prob`
per step the options are relabelled by a random cyclic shift for the followers only: a follower's
action a then means option ``(a + shift) % num_choices``, so followers must track the leader.

Observation per agent (float32, ``(num_agents, obs_dim)``, ``obs_dim = 2 * num_choices + 2``): the
share of agents on each option at the last step, the agent's own last option (one-hot), its role, and
the fraction of the time limit used. Actions: int32 ``(num_agents,)``. Rewards: float32
``(num_agents,)``. No termination; episodes end by truncation at `max_steps` (default 32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.limits import Bound

# The bounded `CoordinationParams` field (`agentlab.limits`).
COORDINATION_BOUNDS: dict[str, Bound] = {
    "switch_prob": Bound("switch_prob", float, low=0, high=1, unit="probability of a relabelling per step")
}


@pytree_dataclass
class CoordinationState:
    last_option: jax.Array  # int32 (num_agents,) option each agent picked last step (-1 at reset)
    shift: jax.Array  # int32 () followers' relabelling
    time: jax.Array  # int32 ()


@pytree_dataclass
class CoordinationParams:
    switch_prob: float = 0.05
    max_steps: int | None = 32


class Coordination(Environment[CoordinationState, CoordinationParams]):
    name = "coordination"

    def __init__(self, num_agents: int = 3, num_choices: int = 4):
        if num_agents < 2 or num_choices < 2:
            from agentlab.errors import UsageError

            raise UsageError(
                f"coordination needs num_agents >= 2 and num_choices >= 2, got {num_agents}, {num_choices}"
            )
        self.num_agents = int(num_agents)
        self.num_choices = int(num_choices)
        self.roles = (0,) + (1,) * (self.num_agents - 1)
        self.obs_dim = 2 * self.num_choices + 2

    def default_params(self) -> CoordinationParams:
        return CoordinationParams()

    def validate_params(self, params: CoordinationParams) -> CoordinationParams:
        """`switch_prob` through `COORDINATION_BOUNDS`; `params` unchanged, or `UsageError` naming it."""
        COORDINATION_BOUNDS["switch_prob"].check(np.asarray(params.switch_prob).item())
        return params

    def action_space(self, params=None) -> Discrete:
        return Discrete(self.num_choices, shape=(self.num_agents,))

    def observation_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (self.num_agents, self.obs_dim), jnp.float32)

    def action_mask(self, params: CoordinationParams | None = None) -> jax.Array:
        """bool ``(num_agents, num_choices)``: the leader may not pick the last option."""
        mask = jnp.ones((self.num_agents, self.num_choices), bool)
        return mask.at[0, -1].set(False)

    def observe(self, key, state: CoordinationState, params: CoordinationParams) -> jax.Array:
        picked = jax.nn.one_hot(state.last_option, self.num_choices, dtype=jnp.float32)  # (n, k); -1 -> zeros
        share = jnp.broadcast_to(jnp.mean(picked, axis=0), picked.shape)
        role = jnp.asarray(self.roles, jnp.float32)[:, None]
        limit = jnp.float32(1.0) if params.max_steps is None else jnp.asarray(params.max_steps, jnp.float32)
        progress = jnp.broadcast_to(state.time.astype(jnp.float32) / limit, (self.num_agents, 1))
        return jnp.concatenate([share, picked, role, progress], axis=1)

    def init(self, key, params) -> CoordinationState:
        return CoordinationState(
            last_option=jnp.full((self.num_agents,), -1, jnp.int32),
            shift=jax.random.randint(key, (), 0, self.num_choices, jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )

    def advance(self, key, state, action, params):
        mask = self.action_mask()
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_choices - 1)
        # A masked-out choice falls back to option 0.
        allowed = jnp.take_along_axis(mask, action[:, None], axis=1)[:, 0]
        action = jnp.where(allowed, action, 0)
        follower = jnp.asarray(self.roles) == 1
        option = jnp.where(follower, (action + state.shift) % self.num_choices, action)
        same = option[:, None] == option[None, :]
        reward = (jnp.sum(same, axis=1) - 1).astype(jnp.float32) / (self.num_agents - 1)
        switch_key, shift_key = jax.random.split(key)
        switch = jax.random.bernoulli(switch_key, params.switch_prob)
        shift = jnp.where(switch, jax.random.randint(shift_key, (), 0, self.num_choices, jnp.int32), state.shift)
        next_state = CoordinationState(last_option=option, shift=shift, time=state.time)
        return next_state, reward, jnp.asarray(False), {"action_mask": mask}


def describe(env: Coordination) -> dict:
    return describe_kernel(env, "multi-agent", actions=[f"option{i}" for i in range(env.num_choices)])
