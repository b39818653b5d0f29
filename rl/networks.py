"""Actor-critic networks (flax.linen) and the two action distributions PPO needs.

`ActorCritic` maps an observation of any shape (flattened, bool or float) to policy parameters and a
value: logits ``(..., num_actions)`` for a discrete policy, or a mean ``(..., action_dim)`` with a
state-independent log standard deviation for a Gaussian one. Separate actor and critic MLPs by
default (PureJaxRL's layout); ``shared_layers=k`` shares the first k hidden layers (a trunk), after
which actor and critic each have their own layers and head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from agentlab import hashing

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros)


class ActorCritic(nn.Module):
    """``apply(params, obs) -> (policy, value)``; `obs` has `obs_ndim` trailing observation axes."""

    num_outputs: int  # actions (discrete) or action dimensions (continuous)
    obs_ndim: int  # trailing axes of one observation (3 for (10, 10, C), 1 for a feature vector)
    continuous: bool = False
    hidden: Sequence[int] = (64, 64)
    activation: str = "relu"
    shared_layers: int = 0  # leading hidden layers the actor and critic share (0: two separate MLPs)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        batch = obs.shape[: obs.ndim - self.obs_ndim]
        x = obs.reshape(*batch, -1).astype(jnp.float32)

        def mlp(h: jax.Array, widths: Sequence[int]) -> jax.Array:
            for width in widths:
                h = act(_dense(width, math.sqrt(2))(h))
            return h

        trunk = mlp(x, self.hidden[: self.shared_layers])
        actor = mlp(trunk, self.hidden[self.shared_layers :])
        critic = mlp(trunk, self.hidden[self.shared_layers :])
        policy = _dense(self.num_outputs, 0.01)(actor)
        value = _dense(1, 1.0)(critic)[..., 0]
        if self.continuous:
            log_std = self.param("log_std", nn.initializers.zeros, (self.num_outputs,))
            policy = jnp.concatenate([policy, jnp.broadcast_to(log_std, policy.shape)], axis=-1)
        return policy, value


# ---------------------------------------------------------------------------------------- distributions
def categorical_sample(key: jax.Array, logits: jax.Array, first_row: int | jax.Array = 0) -> jax.Array:
    """int32 ``logits.shape[:-1]``: one action per row by the Gumbel-max trick, with the Gumbel
    noise drawn from counter-based words of `key` (`agentlab.hashing`), not threefry: on the CPU a
    threefry call per rollout step costs more than the policy's forward pass. Actions whose logits
    are -1e9 (masked) are never drawn. `first_row`: these are rows ``first_row ..`` of a larger batch (the draws
    that batch has there: `hashing.key_words`)."""
    gumbel = -jnp.log(-jnp.log(hashing.open_uniform(hashing.key_words(key, logits.shape, first_row))))
    return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def gaussian_split(policy: jax.Array) -> tuple[jax.Array, jax.Array]:
    dim = policy.shape[-1] // 2
    return policy[..., :dim], policy[..., dim:]


def gaussian_sample(key: jax.Array, policy: jax.Array, first_row: int | jax.Array = 0) -> jax.Array:
    """A draw from the diagonal Gaussian (inverse-CDF standard normals from counter-based words); `first_row` as
    in `categorical_sample`."""
    mean, log_std = gaussian_split(policy)
    uniform = hashing.open_uniform(hashing.key_words(key, mean.shape, first_row))
    normal = jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(2.0 * uniform - 1.0)
    return mean + jnp.exp(log_std) * normal


def gaussian_log_prob(policy: jax.Array, action: jax.Array) -> jax.Array:
    mean, log_std = gaussian_split(policy)
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def gaussian_entropy(policy: jax.Array) -> jax.Array:
    _, log_std = gaussian_split(policy)
    return jnp.sum(log_std + 0.5 * np.log(2 * np.pi * np.e), axis=-1)
