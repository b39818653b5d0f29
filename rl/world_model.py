"""An autoregressive world model, the baseline of the policy-guided-diffusion study: a probabilistic
ensemble of MLPs in the style of MBPO (Janner et al. 2019) and MOPO (Yu et al. 2020), in JAX.

    state = init(key, WorldModelConfig(), data)           # data: an `offline.Batch` (the dataset)
    state, metrics = update(state, batch, key)             # one Adam step on the ensemble
    state, metrics = fit(key, state, data, num_updates)    # `num_updates` steps in one lax.scan
    next_obs, reward = predict(state, obs, action, key)    # a random member per row, a sampled outcome
    synthetic = rollout(key, state, policy_fn, start_obs, horizon)   # a Batch of B * horizon rows

**Model.** Each of `members` networks maps the standardised ``(obs, action)`` to a diagonal Gaussian
over the standardised ``(next_obs - obs, reward)`` (``obs_dim + 1`` outputs): swish layers of
`hidden`, a linear head giving the mean and a raw log-variance, bounded softly by learned per-member
vectors as in MBPO: ``logvar = max - softplus(max - raw)``, then ``logvar = min + softplus(logvar -
min)`` (``max`` starts at 0.5, ``min`` at -10, in standardised units). The members are one flax module
with a leading member axis on every weight (``nn.vmap``), so a forward pass of the ensemble is one
batched computation, and they differ from initialisation on. Inputs and targets are standardised
with the dataset's statistics, computed once in `init` and held in the state (std floored at 1e-6).

**Loss** (`loss`), summed over members, each member on its own rows::

    sum_m mean_rows sum_dims 0.5 [(y - mu_m)^2 exp(-logvar_m) + logvar_m]
        + logvar_bound_weight (sum max_logvar - sum min_logvar)

with AdamW (`lr`, decoupled `weight_decay` on every weight; MBPO instead adds per-layer L2 terms of
2.5e-5 .. 1e-4 to the loss). `update` given a batch ``(B, ...)`` gives each member its own bootstrap
resample of it (rows drawn with replacement by the key); a batch with a leading member axis
``(members, B, ...)`` is used as it is. `fit` draws each member's rows from the dataset
independently (with replacement) on every step. No hold-out set, elite selection or early stopping
(MBPO trains 7 and keeps the best 5): a driver that wants them can score `loss` on held-out rows.

**Prediction.** `predict` picks a member per row uniformly at random (or the given `member`) and
returns its mean (``deterministic=True``) or a draw from its Gaussian, de-standardised:
``next_obs = obs + delta``. With ``reward_penalty`` lambda > 0 the reward is MOPO's penalised reward
``r - lambda max_m |sigma_m(s, a)|_2`` (the largest standard deviation norm over members, in the
de-standardised units of all outputs). The model predicts no termination: `rollout` takes an optional
``termination_fn(obs, action, next_obs) -> bool (B,)`` (the known termination rule, as MOPO) and
marks those rows done; a row that terminates starts again from its own start observation, so that
every one of the ``B * horizon`` transitions is a real model step.

**Randomness.** Raw ``uint32[2]`` keys (typed keys work too); every draw is the counter hash
(`agentlab.hashing`): initial weights, bootstrap rows, members, Gaussian noise. The same key gives
the same output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from agentlab import hashing, limits
from agentlab.errors import UsageError
from agentlab.kernels.pytree import pytree_dataclass, static_field
from agentlab.rl.offline import Batch

STD_FLOOR = 1e-6

WIDTH = limits.Bound("layer width", int, low=1, high=2**16)
BOUNDS = {
    "members": limits.Bound("members", int, low=1, high=1024),
    "lr": limits.Bound("lr", float, low=0, high=1, low_open=True),
    "weight_decay": limits.Bound("weight_decay", float, low=0, high=1),
    "batch_size": limits.Bound("batch_size", int, low=1, high=2**20, unit="transitions per member per update"),
    "init_max_logvar": limits.Bound("init_max_logvar", float, low=-100, high=100),
    "init_min_logvar": limits.Bound("init_min_logvar", float, low=-100, high=100),
    "logvar_bound_weight": limits.Bound("logvar_bound_weight", float, low=0, high=1e6),
    "reward_penalty": limits.Bound("reward_penalty", float, low=0, high=1e6),
}


@dataclasses.dataclass(frozen=True)
class WorldModelConfig:
    """The ensemble's architecture and training (MBPO/MOPO-like defaults; see the module docstring)."""

    members: int = 5
    hidden: tuple[int, ...] = (200, 200, 200)  # swish layers of each member
    lr: float = 1e-3
    weight_decay: float = 2.5e-5  # AdamW's decoupled decay
    batch_size: int = 256  # rows per member per update (for `fit`)
    init_max_logvar: float = 0.5  # starting upper soft bound of the log-variance (standardised units)
    init_min_logvar: float = -10.0  # starting lower soft bound
    logvar_bound_weight: float = 0.01  # weight of (sum max_logvar - sum min_logvar) in the loss
    reward_penalty: float = 0.0  # MOPO's lambda (0: the plain predicted reward)

    def validate(self) -> WorldModelConfig:
        """Raise `UsageError` naming the first bad field; return self."""
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name))
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise UsageError(f"hidden must be a non-empty tuple of integers, got {self.hidden!r}")
        for width in self.hidden:
            WIDTH.check(width, "each of hidden")
        if self.init_min_logvar >= self.init_max_logvar:
            raise UsageError("init_min_logvar must be below init_max_logvar")
        return self


class GaussianMLP(nn.Module):
    """One member: ``x (..., in) -> (mean (..., out), logvar (..., out))``, logvar softly bounded."""

    hidden: tuple[int, ...]
    out: int
    init_max_logvar: float
    init_min_logvar: float

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for width in self.hidden:
            x = nn.swish(nn.Dense(width)(x))
        head = nn.Dense(2 * self.out)(x)
        mean, raw = head[..., : self.out], head[..., self.out :]
        max_logvar = self.param("max_logvar", nn.initializers.constant(self.init_max_logvar), (self.out,))
        min_logvar = self.param("min_logvar", nn.initializers.constant(self.init_min_logvar), (self.out,))
        logvar = max_logvar - nn.softplus(max_logvar - raw)
        return mean, min_logvar + nn.softplus(logvar - min_logvar)


def _ensemble(config: WorldModelConfig, out: int) -> nn.Module:
    """``x (members, ..., in) -> (mean, logvar) (members, ..., out)``: member m on row block m."""
    members = nn.vmap(
        GaussianMLP,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=0,
        out_axes=0,
        axis_size=config.members,
    )
    return members(config.hidden, out, config.init_max_logvar, config.init_min_logvar)


@pytree_dataclass
class WorldModelState:
    params: Any  # every leaf has a leading member axis (members, ...)
    opt_state: Any
    in_mean: jax.Array  # float32 (obs_dim + act_dim,): of the dataset's (obs, action)
    in_std: jax.Array  # float32 (obs_dim + act_dim,)
    out_mean: jax.Array  # float32 (obs_dim + 1,): of the dataset's (next_obs - obs, reward)
    out_std: jax.Array  # float32 (obs_dim + 1,)
    step: jax.Array  # int32 (): updates taken
    config: WorldModelConfig = static_field()
    obs_dim: int = static_field()
    act_dim: int = static_field()


def _optimizer(config: WorldModelConfig) -> optax.GradientTransformation:
    return optax.adamw(config.lr, weight_decay=config.weight_decay)


def _inputs(batch: Batch) -> jax.Array:
    return jnp.concatenate([batch.obs, batch.action], axis=-1).astype(jnp.float32)


def _targets(batch: Batch) -> jax.Array:
    return jnp.concatenate([batch.next_obs - batch.obs, batch.reward[..., None]], axis=-1).astype(jnp.float32)


def init(key: jax.Array, config: WorldModelConfig, data: Batch) -> WorldModelState:
    """A fresh ensemble from a raw ``uint32[2]`` key, standardised with the statistics of `data` (the
    dataset, rows ``(N, ...)``)."""
    config.validate()
    obs_dim, act_dim = data.obs.shape[-1], data.action.shape[-1]
    x, y = _inputs(data), _targets(data)
    net = _ensemble(config, obs_dim + 1)
    flax_key = jax.random.wrap_key_data(hashing.seed_words(key), impl=hashing.HASH_PRNG)
    params = net.init(flax_key, jnp.zeros((config.members, 1, obs_dim + act_dim), jnp.float32))
    return WorldModelState(
        params=params,
        opt_state=_optimizer(config).init(params),
        in_mean=x.mean(axis=0),
        in_std=jnp.maximum(x.std(axis=0), STD_FLOOR),
        out_mean=y.mean(axis=0),
        out_std=jnp.maximum(y.std(axis=0), STD_FLOOR),
        step=jnp.zeros((), jnp.int32),
        config=config,
        obs_dim=obs_dim,
        act_dim=act_dim,
    )


def _apply(state: WorldModelState, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Standardised ``(mean, logvar) (members, B, obs_dim + 1)`` of raw inputs ``x (members, B, in)``."""
    return _ensemble(state.config, state.obs_dim + 1).apply(params, (x - state.in_mean) / state.in_std)


def loss(params: Any, state: WorldModelState, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ensemble's Gaussian NLL (module docstring) on `batch` with a leading member axis
    ``(members, B, ...)``; metrics: ``loss``, ``nll`` and ``mse`` (standardised, mean over members)."""
    mean, logvar = _apply(state, params, _inputs(batch))
    y = (_targets(batch) - state.out_mean) / state.out_std
    nll = 0.5 * jnp.sum((y - mean) ** 2 * jnp.exp(-logvar) + logvar, axis=-1).mean(axis=-1)  # (members,)
    bounds = params["params"]["max_logvar"].sum() - params["params"]["min_logvar"].sum()
    total = nll.sum() + state.config.logvar_bound_weight * bounds
    return total, {"loss": total, "nll": nll.mean(), "mse": jnp.mean((y - mean) ** 2)}


def update(state: WorldModelState, batch: Batch, key: jax.Array) -> tuple[WorldModelState, dict[str, jax.Array]]:
    """One AdamW step on the ensemble. `batch` ``(B, ...)``: each member trains on its own bootstrap
    resample of its rows (drawn from `key`); ``(members, B, ...)``: member m on block m (`key` unused)."""
    members = state.config.members
    if batch.obs.ndim == 2:
        rows = batch.obs.shape[0]
        index = (hashing.key_words(key, (members, rows)) % jnp.uint32(rows)).astype(jnp.int32)
        batch = jax.tree.map(lambda x: x[index], batch)
    elif batch.obs.shape[0] != members:
        raise UsageError(f"a batch with a member axis must have {members} blocks, got {batch.obs.shape[0]}")
    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params, state, batch)
    updates, opt_state = _optimizer(state.config).update(grads, state.opt_state, state.params)
    state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state, step=state.step + 1)
    return state, metrics


def fit(key: jax.Array, state: WorldModelState, data: Batch, num_updates: int) -> tuple[WorldModelState, Any]:
    """`num_updates` updates in one ``lax.scan`` (static count), each member drawing its own
    `batch_size` rows of `data` with replacement; returns the metrics stacked ``(num_updates,)``."""
    rows = data.obs.shape[0]
    shape = (state.config.members, state.config.batch_size)

    def step(state: WorldModelState, t: jax.Array):
        index = (hashing.key_words(hashing.derive_key(key, t), shape) % jnp.uint32(rows)).astype(jnp.int32)
        return update(state, jax.tree.map(lambda x: x[index], data), key)

    return jax.lax.scan(step, state, jnp.arange(num_updates, dtype=jnp.uint32))


def distribution(state: WorldModelState, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every member's Gaussian over ``(next_obs - obs, reward)`` in the data's units: ``(mean, var)``,
    each float32 ``(members, B, obs_dim + 1)``, for ``obs (B, obs_dim)``, ``action (B, act_dim)``."""
    x = jnp.broadcast_to(
        jnp.concatenate([obs, action], axis=-1).astype(jnp.float32),
        (state.config.members, obs.shape[0], state.obs_dim + state.act_dim),
    )
    mean, logvar = _apply(state, state.params, x)
    return mean * state.out_std + state.out_mean, jnp.exp(logvar) * state.out_std**2


def predict(
    state: WorldModelState,
    obs: jax.Array,
    action: jax.Array,
    key: jax.Array,
    member: int | jax.Array | None = None,
    deterministic: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``(next_obs (B, obs_dim), reward (B,))`` float32 for ``obs (B, obs_dim)``, ``action (B, act_dim)``:
    each row from a uniformly drawn member (or `member` for all rows), its mean (`deterministic`) or a
    draw from its Gaussian; the reward MOPO-penalised when ``reward_penalty > 0``."""
    mean, var = distribution(state, obs, action)
    rows = obs.shape[0]
    k_member, k_noise = hashing.split_key(key, 2)
    if member is None:
        pick = (hashing.key_words(k_member, (rows,)) % jnp.uint32(state.config.members)).astype(jnp.int32)
    else:
        pick = jnp.full((rows,), member, jnp.int32)
    row = jnp.arange(rows)
    out = mean[pick, row]
    if not deterministic:
        uniform = hashing.open_uniform(hashing.key_words(k_noise, out.shape))
        out = out + jnp.sqrt(var[pick, row]) * jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(2.0 * uniform - 1.0)
    reward = out[:, -1]
    if state.config.reward_penalty > 0:
        reward = reward - state.config.reward_penalty * jnp.sqrt(var.sum(axis=-1)).max(axis=0)
    return obs + out[:, :-1], reward


def rollout(
    key: jax.Array,
    state: WorldModelState,
    policy_fn: Callable[[jax.Array], jax.Array],
    start_obs: jax.Array,
    horizon: int,
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None = None,
    deterministic: bool = False,
) -> Batch:
    """``B * horizon`` model transitions from ``start_obs (B, obs_dim)`` under ``policy_fn(obs (B,
    obs_dim)) -> action (B, act_dim)``, in one ``lax.scan``: step t's rows are ``t * B .. t * B + B - 1``,
    and step t + 1 starts from step t's predicted ``next_obs`` (from `start_obs` again where step t
    terminated by `termination_fn`; without one nothing is done). `horizon` is static."""
    start_obs = start_obs.astype(jnp.float32)
    rows = start_obs.shape[0]

    def step(obs: jax.Array, t: jax.Array):
        action = policy_fn(obs).astype(jnp.float32)
        next_obs, reward = predict(state, obs, action, hashing.derive_key(key, t), deterministic=deterministic)
        if termination_fn is None:
            done = jnp.zeros((rows,), jnp.float32)
        else:
            done = termination_fn(obs, action, next_obs).astype(jnp.float32)
        carry = jnp.where(done[:, None] > 0, start_obs, next_obs)
        return carry, Batch(obs=obs, action=action, reward=reward, next_obs=next_obs, done=done)

    _, traj = jax.lax.scan(step, start_obs, jnp.arange(horizon, dtype=jnp.uint32))
    return jax.tree.map(lambda x: x.reshape(rows * horizon, *x.shape[2:]), traj)
