"""`point`: steer a point on a line to the origin, a continuous-action sanity check.

The point starts uniformly in [-1, 1]; each step the action (float32 ``(1,)``, clipped to [-1, 1])
moves it by ``0.25 * action``, and the reward is ``-|x|`` after the move. Episodes are truncated at
`max_steps` (default 20). Optimal play reaches 0 within 4 steps: an optimal return is above -1.3 for
every start (about -0.6 on average), while standing still scores about -10.

Observation: float32 ``(1,)``, the position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box
from agentlab.limits import Bound

# The bounded `PointParams` field (`agentlab.limits`); `make`'s ``speed`` option is checked through it too.
POINT_BOUNDS: dict[str, Bound] = {
    "speed": Bound("speed", float, low=0, low_open=True, high=1, unit="distance per step"),
}


@pytree_dataclass
class PointState:
    x: jax.Array  # float32 ()
    time: jax.Array  # int32 ()


@pytree_dataclass
class PointParams:
    speed: float = 0.25
    max_steps: int | None = 20


class Point(Environment[PointState, PointParams]):
    name = "point"

    def default_params(self) -> PointParams:
        return PointParams()

    def validate_params(self, params: PointParams) -> PointParams:
        """`speed` through `POINT_BOUNDS`; `params` unchanged, or `UsageError` naming it."""
        POINT_BOUNDS["speed"].check(np.asarray(params.speed).item())
        return params

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        return Box(-2.0, 2.0, (1,), jnp.float32)

    def init(self, key, params) -> PointState:
        return PointState(x=jax.random.uniform(key, (), jnp.float32, -1.0, 1.0), time=jnp.zeros((), jnp.int32))

    def advance(self, key, state, action, params):
        step = jnp.clip(jnp.asarray(action, jnp.float32).reshape(-1)[0], -1.0, 1.0) * params.speed
        x = jnp.clip(state.x + step, -2.0, 2.0)
        return state.replace(x=x), -jnp.abs(x), jnp.asarray(False), {}

    def observe(self, key, state, params) -> jax.Array:
        return state.x[None]


def describe(env: Point) -> dict:
    return describe_kernel(env, "toy")
