"""`pendulum`: the classic torque-limited swing-up, step for step gymnax's ``Pendulum-v1`` (gym's pendulum).

State: the angle `theta` (radians from upright, counter-clockwise; not wrapped, as in gym), the angular velocity
`theta_dot` and `time`. Action: float32 ``(1,)`` in [-1, 1]; the executed torque is
``u = max_torque * clip(a, -1, 1)`` (gymnax's action is this torque, so our ``a`` is its ``u / max_torque``).
One step (the gym/gymnax update order):

    reward    = -(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)      # from the state before the step
    theta_dot = clip(theta_dot + (3 g / (2 l) sin(theta) + 3 / (m l^2) u) dt, -max_speed, max_speed)
    theta     = theta + theta_dot dt                                            # with the new theta_dot

Observation: float32 ``(3,)`` = ``(cos theta, sin theta, theta_dot)``. Never terminates; truncated at
`max_steps` (200). Reset: ``theta ~ U(-pi, pi)``, ``theta_dot ~ U(-1, 1)``, drawn as gymnax draws them (one
``uniform((2,))`` from the reset key), so a reset key gives gymnax's start state too.

`transition_from_observation(obs, action, params)` is the true ``(next_obs, reward)`` of an observation (the
state ``theta = atan2(sin, cos)``, ``theta_dot = clip(obs[2])``); `render(obs, params, env)` draws the rod.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.kernels.control.viewer import canvas, disc, segment
from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box
from agentlab.limits import Bound

# The bounded `PendulumParams` fields (`agentlab.limits`); `make`'s options of the same names are checked through them.
PENDULUM_BOUNDS: dict[str, Bound] = {
    "max_speed": Bound("max_speed", float, low=0, low_open=True, high=100, unit="rad/s"),
    "max_torque": Bound("max_torque", float, low=0, low_open=True, high=100, unit="N m"),
    "dt": Bound("dt", float, low=0, low_open=True, high=1, unit="s per step"),
    "g": Bound("g", float, low=0, high=100, unit="m/s^2"),
    "m": Bound("m", float, low=0, low_open=True, high=100, unit="kg"),
    "l": Bound("l", float, low=0, low_open=True, high=100, unit="m"),
}


@pytree_dataclass
class PendulumState:
    theta: jax.Array  # float32 (): radians from upright, not wrapped
    theta_dot: jax.Array  # float32 (): rad/s, within [-max_speed, max_speed]
    time: jax.Array  # int32 ()


@pytree_dataclass
class PendulumParams:
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (gym's name for the length)
    max_steps: int | None = 200


def angle_normalize(theta: jax.Array) -> jax.Array:
    """`theta` wrapped into [-pi, pi)."""
    return (theta + jnp.pi) % (2 * jnp.pi) - jnp.pi


class Pendulum(Environment[PendulumState, PendulumParams]):
    name = "pendulum"

    def default_params(self) -> PendulumParams:
        return PendulumParams()

    def validate_params(self, params: PendulumParams) -> PendulumParams:
        """Every field of `PENDULUM_BOUNDS`; `params` unchanged, or `UsageError` naming the field."""
        for name, bound in PENDULUM_BOUNDS.items():
            bound.check(np.asarray(getattr(params, name)).item())
        return params

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        params = self.default_params() if params is None else params
        high = max(1.0, float(params.max_speed))
        return Box(-high, high, (3,), jnp.float32)

    def init(self, key, params) -> PendulumState:
        high = jnp.array([jnp.pi, 1.0])
        draw = jax.random.uniform(key, (2,), minval=-high, maxval=high)
        return PendulumState(theta=draw[0], theta_dot=draw[1], time=jnp.zeros((), jnp.int32))

    def torque(self, action: jax.Array, params: PendulumParams) -> jax.Array:
        """float32 (): the executed torque of an action in [-1, 1] (clipped first)."""
        return params.max_torque * jnp.clip(jnp.asarray(action, jnp.float32).reshape(-1)[0], -1.0, 1.0)

    def advance(self, key, state, action, params):
        u = self.torque(action, params)
        reward = -(angle_normalize(state.theta) ** 2 + 0.1 * state.theta_dot**2 + 0.001 * u**2)
        accel = 3 * params.g / (2 * params.l) * jnp.sin(state.theta) + 3.0 / (params.m * params.l**2) * u
        theta_dot = jnp.clip(state.theta_dot + accel * params.dt, -params.max_speed, params.max_speed)
        theta = state.theta + theta_dot * params.dt
        next_state = state.replace(theta=theta.astype(jnp.float32), theta_dot=theta_dot.astype(jnp.float32))
        return next_state, reward.astype(jnp.float32), jnp.asarray(False), {}

    def observe(self, key, state, params) -> jax.Array:
        return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(jnp.float32)

    def state_from_observation(self, obs: jax.Array, params: PendulumParams) -> PendulumState:
        """The state an observation shows: ``theta = atan2(sin, cos)``, `theta_dot` clipped to the speed limit."""
        obs = jnp.asarray(obs, jnp.float32)
        return PendulumState(
            theta=jnp.arctan2(obs[1], obs[0]),
            theta_dot=jnp.clip(obs[2], -params.max_speed, params.max_speed),
            time=jnp.zeros((), jnp.int32),
        )

    def transition_from_observation(
        self, obs: jax.Array, action: jax.Array, params: PendulumParams
    ) -> tuple[jax.Array, jax.Array]:
        """``(next_obs, reward)``: the true step from the state `obs` shows (pure; `vmap` it for a batch)."""
        state = self.state_from_observation(obs, params)
        next_state, reward, _, _ = self.advance(jax.random.key(0), state, action, params)
        return self.observe(jax.random.key(0), next_state, params), reward

    def valid_observation(self, obs: jax.Array, params: PendulumParams) -> jax.Array:
        """bool (): always True (every ``(cos, sin)`` pair names an angle, every velocity is clipped to one)."""
        return jnp.asarray(True)


def render(obs, params: PendulumParams, env: Pendulum, size: int = 128) -> np.ndarray:
    """uint8 ``(size, size, 3)``: the rod from the pivot (centre) to the bob, upright when ``theta = 0`` and turning
    counter-clockwise with theta; the bob's colour goes from blue (at rest) to red (at ``max_speed``)."""
    cos, sin, theta_dot = (float(v) for v in np.asarray(obs, np.float64))
    norm = max(np.hypot(cos, sin), 1e-12)
    image = canvas(size, size, (245, 245, 245))
    centre, reach = size / 2, 0.4 * size
    tip = (centre - reach * sin / norm, centre - reach * cos / norm)
    segment(image, (centre, centre), tip, 0.06 * size, (60, 60, 60))
    heat = min(abs(theta_dot) / float(params.max_speed), 1.0)
    disc(image, tip[0], tip[1], 0.07 * size, (int(40 + 200 * heat), 60, int(220 - 180 * heat)))
    disc(image, centre, centre, 0.03 * size, (0, 0, 0))
    return image


def describe(env: Pendulum) -> dict:
    return describe_kernel(
        env,
        "control",
        observation_note="(cos theta, sin theta, theta_dot)",
        action_note="torque = max_torque * a",
    )
