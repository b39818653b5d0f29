"""Offline RL agents for the policy-guided-diffusion study: TD3+BC and IQL, in JAX (flax.linen, optax).

    state = init(key, TD3BCConfig(), obs_dim, act_dim, obs_mean, obs_std)   # or IQLConfig()
    state, metrics = update(state, batch, key)        # one gradient step; pure, jittable, vmappable
    action = act(state, obs)                          # (..., act_dim) in [-1, 1], deterministic
    logp = log_prob(state, obs, action)               # (...,) the target-policy log-likelihood (guidance)

`init`, `update`, `act` and `log_prob` pick the algorithm from the config's (the state's) type;
``AGENTS["td3bc"]`` and ``AGENTS["iql"]`` hold the same four functions per algorithm for a driver that
picks one by name. The config lives in the state as a static field (part of the tree structure), so
``jax.vmap(update)`` over states stacked on a leading seed axis (``jax.vmap(init, in_axes=(0, None,
...))``) and a ``lax.scan`` of updates just work; changing the config recompiles.

**Data** (`Batch`): ``obs`` float32 ``(B, obs_dim)``, ``action`` float32 ``(B, act_dim)`` in
``[-1, 1]``, ``reward`` float32 ``(B,)``, ``next_obs`` float32 ``(B, obs_dim)``, ``done`` float32
``(B,)``: 1 where the episode *terminated* at this transition (a truncated step is not done and
bootstraps from ``next_obs``). `sample_batch` draws rows with replacement; `mixed_batch` builds the
PGD paper's batch of 16 real + 240 synthetic rows.

**TD3+BC** (Fujimoto & Gu 2021, arXiv 2106.06860; defaults from the paper): a deterministic tanh
actor ``pi``, twin critics ``Q1, Q2`` and target copies of all three. Per update, ``d`` the done flag::

    a' = clip(pi_targ(s') + clip(0.2 eps, -0.5, 0.5), -1, 1),   eps ~ N(0, I)
    y = r + gamma (1 - d) min(Q1_targ, Q2_targ)(s', a')
    L_critic = mean (Q1(s, a) - y)^2 + mean (Q2(s, a) - y)^2
    L_actor = -lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2,   lambda = alpha / mean |Q1(s, pi(s))|

with the critic stepped every update and, every `policy_freq`-th update (the 2nd, 4th, ...: after
the critic's step, with the new critic), the actor stepped and all targets moved by Polyak averaging
``target <- tau online + (1 - tau) target``. ``lambda`` is held constant in the gradient (stop-gradient);
the behaviour-cloning MSE is averaged over rows and action dimensions (PyTorch's ``mse_loss``).
Observations are normalised ``(s - mean) / (std + 1e-3)`` with the dataset's statistics held in the
state (``normalize_obs``, the paper's default). For guidance the deterministic actor is read as
``Normal(pi(s), I)`` (the PGD paper's choice): ``log_prob = -|a - pi(s)|^2 / 2 - act_dim log(2 pi) / 2``,
whose gradient in ``a`` is ``pi(s) - a``.

**IQL** (Kostrikov, Nair & Levine 2021, arXiv 2110.06169; locomotion defaults): twin critics with a
target copy, a value network and a Gaussian actor. Per update, in the authors' order (value, actor,
critic, target), ``Q_targ = min(Q1_targ, Q2_targ)``, ``L2_tau(u) = |tau - 1(u < 0)| u^2``::

    L_V = mean L2_tau(Q_targ(s, a) - V(s))                              tau = expectile 0.7
    L_pi = -mean min(exp(beta (Q_targ(s, a) - V(s))), 100) log pi(a | s)  beta = 3 (V: the new one)
    L_Q = mean (Q1(s, a) - y)^2 + mean (Q2(s, a) - y)^2,  y = r + gamma (1 - d) V(s')  (the new V)
    Q_targ <- tau Q + (1 - tau) Q_targ                                    every update, tau = 0.005

The policy is ``Normal(tanh(f(s)), exp(log_std))`` over the action itself, ``log_std`` a learned
state-independent vector clipped to ``[-5, 2]``: the mean is squashed by tanh, the distribution is not
(no change of variables), as in the authors' locomotion setup; no dropout. `log_prob` is this same
density, summed over action dimensions: the likelihood the actor was trained on. (PGD's guidance term
is ``log pi(tanh a_tilde | s)`` with ``a_tilde`` the diffusion model's pre-tanh action: the driver applies
the tanh before calling `log_prob` and differentiates through it.) The actor's learning rate decays
by a cosine over `total_updates` (to 0); the value and critic rates are constant. The authors scale
locomotion rewards by ``1000 / (max return - min return)`` over the dataset's episodes: that is the
driver's preprocessing, not done here. Observations are not normalised by default (the authors' code).

**Randomness.** `update` takes a raw ``uint32[2]`` key (a typed key works too); its only draws are
TD3+BC's target-policy noise (IQL's update draws nothing), made by the counter hash
(`agentlab.hashing`), as are the initial weights (flax through `hashing.HASH_PRNG`) and the rows of
`sample_batch`. The same key, state and batch give the same result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentlab import hashing, limits
from agentlab.errors import UsageError
from agentlab.kernels.pytree import pytree_dataclass, static_field

OBS_STD_EPS = 1e-3  # added to the dataset's observation std before dividing (Fujimoto & Gu)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # IQL's clip of the actor's log std

WIDTH = limits.Bound("layer width", int, low=1, high=2**16)
BATCH = limits.Bound("batch_size", int, low=1, high=2**20, unit="transitions per update")
COMMON_BOUNDS = {
    "discount": limits.Bound("discount", float, low=0, high=1),
    "tau": limits.Bound("tau", float, low=0, high=1),
}
LR = limits.Bound("learning rate", float, low=0, high=1, low_open=True)


# -------------------------------------------------------------------------------------------------- data
@pytree_dataclass
class Batch:
    """Transitions; every field has the same leading row axis (B)."""

    obs: jax.Array  # float32 (B, obs_dim)
    action: jax.Array  # float32 (B, act_dim), in [-1, 1]
    reward: jax.Array  # float32 (B,)
    next_obs: jax.Array  # float32 (B, obs_dim)
    done: jax.Array  # float32 (B,): 1 where the episode terminated (truncation is not done)


def sample_batch(key: jax.Array, arrays: Batch, batch_size: int) -> Batch:
    """`batch_size` rows of `arrays` drawn uniformly with replacement (counter-hash words modulo the
    row count; a bias of at most rows / 2**32). Pure; `batch_size` is static."""
    rows = arrays.obs.shape[0]
    index = (hashing.key_words(key, (batch_size,)) % jnp.uint32(rows)).astype(jnp.int32)
    return jax.tree.map(lambda x: x[index], arrays)


def mixed_batch(key: jax.Array, real: Batch, synthetic: Batch, n_real: int = 16, n_synthetic: int = 240) -> Batch:
    """``n_real`` rows of `real` followed by ``n_synthetic`` rows of `synthetic` (each drawn with
    replacement): the PGD paper's batch of 256 = 16 real + 240 synthetic transitions."""
    k_real, k_synth = hashing.split_key(key, 2)
    a, b = sample_batch(k_real, real, n_real), sample_batch(k_synth, synthetic, n_synthetic)
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y.astype(x.dtype)]), a, b)


# ----------------------------------------------------------------------------------------------- configs
def _check_hidden(hidden: Any) -> None:
    if not isinstance(hidden, tuple) or not hidden:
        raise UsageError(f"hidden must be a non-empty tuple of integers, got {hidden!r}")
    for width in hidden:
        WIDTH.check(width, "each of hidden")


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC (Fujimoto & Gu 2021); defaults: the paper's."""

    alpha: float = 2.5  # weight of the Q term: lambda = alpha / mean |Q|
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the targets
    policy_noise: float = 0.2  # std of the target-policy smoothing noise
    noise_clip: float = 0.5
    policy_freq: int = 2  # actor and target updates every this many critic updates
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)  # ReLU layers of the actor and of each critic
    batch_size: int = 256  # for the driver's sampling; `update` takes whatever batch it is given
    normalize_obs: bool = True

    def validate(self) -> TD3BCConfig:
        """Raise `UsageError` naming the first bad field; return self."""
        for name, bound in COMMON_BOUNDS.items():
            bound.check(getattr(self, name), name)
        limits.Bound("alpha", float, low=0, high=1e6).check(self.alpha)
        limits.Bound("policy_noise", float, low=0, high=1e3).check(self.policy_noise)
        limits.Bound("noise_clip", float, low=0, high=1e3).check(self.noise_clip)
        limits.Bound("policy_freq", int, low=1, high=10**6).check(self.policy_freq)
        LR.check(self.actor_lr, "actor_lr")
        LR.check(self.critic_lr, "critic_lr")
        BATCH.check(self.batch_size)
        _check_hidden(self.hidden)
        if not isinstance(self.normalize_obs, bool):
            raise UsageError(f"normalize_obs must be true or false, got {self.normalize_obs!r}")
        return self


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """IQL (Kostrikov et al. 2021); defaults: the authors' locomotion settings."""

    expectile: float = 0.7  # tau of the value's expectile regression
    beta: float = 3.0  # inverse temperature of the advantage weights
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    lr: float = 3e-4  # actor (cosine-decayed), critic and value
    hidden: tuple[int, ...] = (256, 256)
    exp_adv_max: float = 100.0  # clip of the advantage weights
    total_updates: int = 1_000_000  # length of the actor's cosine decay
    batch_size: int = 256
    normalize_obs: bool = False  # the authors' code does not normalise observations

    def validate(self) -> IQLConfig:
        """Raise `UsageError` naming the first bad field; return self."""
        for name, bound in COMMON_BOUNDS.items():
            bound.check(getattr(self, name), name)
        limits.Bound("expectile", float, low=0, high=1, low_open=True, high_open=True).check(self.expectile)
        limits.Bound("beta", float, low=0, high=1e6).check(self.beta)
        limits.Bound("exp_adv_max", float, low=0, high=1e30, low_open=True).check(self.exp_adv_max)
        limits.Bound("total_updates", int, low=1, high=limits.MAX_INDEX).check(self.total_updates)
        LR.check(self.lr, "lr")
        BATCH.check(self.batch_size)
        _check_hidden(self.hidden)
        if not isinstance(self.normalize_obs, bool):
            raise UsageError(f"normalize_obs must be true or false, got {self.normalize_obs!r}")
        return self


# ---------------------------------------------------------------------------------------------- networks
class MLP(nn.Module):
    """``(..., in) -> (..., out)``: ReLU layers of `hidden`, then a linear head."""

    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class TwinCritic(nn.Module):
    """``(obs (..., obs_dim), action (..., act_dim)) -> (2, ...)``: two Q networks, one module with a
    leading member axis on every weight."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        twin = nn.vmap(
            MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=2
        )
        return twin(self.hidden, 1)(jnp.concatenate([obs, action], axis=-1))[..., 0]


class GaussianActor(nn.Module):
    """``obs (..., obs_dim) -> (mean (..., act_dim), log_std (act_dim,))``: ``mean = tanh(MLP(obs))``,
    ``log_std`` a learned vector clipped to ``[-5, 2]``."""

    hidden: tuple[int, ...]
    act_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = jnp.tanh(MLP(self.hidden, self.act_dim)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def _flax_key(key: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(hashing.seed_words(key), impl=hashing.HASH_PRNG)


def _normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """float32 standard normals (inverse CDF of counter-hash uniforms)."""
    uniform = hashing.open_uniform(hashing.key_words(key, shape))
    return jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(2.0 * uniform - 1.0)


def _stats(obs_dim: int, obs_mean: Any, obs_std: Any) -> tuple[jax.Array, jax.Array]:
    mean = jnp.zeros(obs_dim, jnp.float32) if obs_mean is None else jnp.asarray(obs_mean, jnp.float32)
    std = jnp.ones(obs_dim, jnp.float32) if obs_std is None else jnp.asarray(obs_std, jnp.float32)
    if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
        raise UsageError(f"obs_mean and obs_std must be ({obs_dim},), got {mean.shape} and {std.shape}")
    return mean, std


def polyak(online: Any, target: Any, tau: float) -> Any:
    """``tau * online + (1 - tau) * target`` leaf by leaf."""
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """``mean |expectile - 1(diff < 0)| diff^2`` (IQL's asymmetric L2)."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return jnp.mean(weight * diff**2)


def _adam_step(loss_fn: Callable, params: Any, opt_state: Any, optimizer: optax.GradientTransformation, *args):
    (loss, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, info


# ------------------------------------------------------------------------------------------------ TD3+BC
@pytree_dataclass
class TD3BCState:
    actor: Any  # deterministic actor's weights
    critic: Any  # twin critics' weights (leading axis 2)
    actor_target: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    obs_mean: jax.Array  # float32 (obs_dim,)
    obs_std: jax.Array  # float32 (obs_dim,), the dataset's (OBS_STD_EPS is added where it is used)
    step: jax.Array  # int32 (): updates taken
    config: TD3BCConfig = static_field()
    act_dim: int = static_field()


def _td3bc_nets(config: TD3BCConfig, act_dim: int) -> tuple[MLP, TwinCritic]:
    return MLP(config.hidden, act_dim), TwinCritic(config.hidden)


def _td3bc_optimizers(config: TD3BCConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    return optax.adam(config.actor_lr), optax.adam(config.critic_lr)


def _normalise(state: Any, obs: jax.Array) -> jax.Array:
    obs = obs.astype(jnp.float32)
    if not state.config.normalize_obs:
        return obs
    return (obs - state.obs_mean) / (state.obs_std + OBS_STD_EPS)


def td3bc_init(
    key: jax.Array, config: TD3BCConfig, obs_dim: int, act_dim: int, obs_mean: Any = None, obs_std: Any = None
) -> TD3BCState:
    """A fresh state (targets equal to the online weights) from a raw ``uint32[2]`` key; `obs_mean` and
    `obs_std` ``(obs_dim,)`` are the dataset's observation statistics (None: 0 and 1)."""
    config.validate()
    mean, std = _stats(obs_dim, obs_mean, obs_std)
    actor_net, critic_net = _td3bc_nets(config, act_dim)
    k_actor, k_critic = hashing.split_key(key, 2)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor = actor_net.init(_flax_key(k_actor), obs)
    critic = critic_net.init(_flax_key(k_critic), obs, action)
    actor_opt, critic_opt = _td3bc_optimizers(config)
    return TD3BCState(
        actor=actor,
        critic=critic,
        actor_target=actor,
        critic_target=critic,
        actor_opt=actor_opt.init(actor),
        critic_opt=critic_opt.init(critic),
        obs_mean=mean,
        obs_std=std,
        step=jnp.zeros((), jnp.int32),
        config=config,
        act_dim=act_dim,
    )


def td3bc_policy(state: TD3BCState, actor_params: Any, obs: jax.Array) -> jax.Array:
    """``tanh(MLP(normalised obs))``: ``(..., act_dim)`` in [-1, 1] under the given actor weights."""
    actor_net, _ = _td3bc_nets(state.config, state.act_dim)
    return jnp.tanh(actor_net.apply(actor_params, _normalise(state, obs)))


def td3bc_q(state: TD3BCState, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
    """``(2, ...)``: both critics at ``(obs, action)`` under the given critic weights."""
    _, critic_net = _td3bc_nets(state.config, state.act_dim)
    return critic_net.apply(critic_params, _normalise(state, obs), action)


def td3bc_target(state: TD3BCState, batch: Batch, key: jax.Array) -> jax.Array:
    """float32 ``(B,)``: ``y = r + gamma (1 - d) min_i Q_i_targ(s', a')`` with the smoothed target
    action ``a' = clip(pi_targ(s') + clip(policy_noise eps, +-noise_clip), -1, 1)``."""
    cfg = state.config
    next_action = td3bc_policy(state, state.actor_target, batch.next_obs)
    noise = jnp.clip(cfg.policy_noise * _normal(key, next_action.shape), -cfg.noise_clip, cfg.noise_clip)
    next_action = jnp.clip(next_action + noise, -1.0, 1.0)
    q_next = td3bc_q(state, state.critic_target, batch.next_obs, next_action).min(axis=0)
    return batch.reward + cfg.discount * (1.0 - batch.done) * q_next


def td3bc_critic_loss(
    critic_params: Any, state: TD3BCState, batch: Batch, target: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean (Q1(s, a) - y)^2 + mean (Q2(s, a) - y)^2`` with `target` ``y (B,)`` held fixed."""
    q = td3bc_q(state, critic_params, batch.obs, batch.action)
    target = jax.lax.stop_gradient(target)
    loss = jnp.mean((q[0] - target) ** 2) + jnp.mean((q[1] - target) ** 2)
    return loss, {"critic_loss": loss, "q1": jnp.mean(q[0]), "target": jnp.mean(target)}


def td3bc_actor_loss(actor_params: Any, state: TD3BCState, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2`` with ``lambda = alpha / mean |Q1(s, pi(s))|``
    (stop-gradient; the MSE averages rows and action dimensions), at the state's current critic."""
    pi = td3bc_policy(state, actor_params, batch.obs)
    q1 = td3bc_q(state, state.critic, batch.obs, pi)[0]
    lam = jax.lax.stop_gradient(state.config.alpha / jnp.mean(jnp.abs(q1)))
    bc = jnp.mean((pi - batch.action) ** 2)
    loss = -lam * jnp.mean(q1) + bc
    return loss, {"actor_loss": loss, "lambda": lam, "bc_mse": bc}


def td3bc_update(state: TD3BCState, batch: Batch, key: jax.Array) -> tuple[TD3BCState, dict[str, jax.Array]]:
    """One critic step; on every `policy_freq`-th update also one actor step and the Polyak target
    update (a `lax.cond`; under `vmap` both branches run and one is selected). Metrics are scalars; the
    actor's are 0 on updates that skip it (``actor_updated`` says which)."""
    cfg = state.config
    actor_opt, critic_opt = _td3bc_optimizers(cfg)
    target = td3bc_target(state, batch, key)
    critic, critic_state, _, critic_info = _adam_step(
        td3bc_critic_loss, state.critic, state.critic_opt, critic_opt, state, batch, target
    )
    state = state.replace(critic=critic, critic_opt=critic_state, step=state.step + 1)

    def actor_step(state: TD3BCState) -> tuple[TD3BCState, dict[str, jax.Array]]:
        actor, actor_state, _, info = _adam_step(
            td3bc_actor_loss, state.actor, state.actor_opt, actor_opt, state, batch
        )
        state = state.replace(
            actor=actor,
            actor_opt=actor_state,
            actor_target=polyak(actor, state.actor_target, cfg.tau),
            critic_target=polyak(state.critic, state.critic_target, cfg.tau),
        )
        return state, info

    def skip(state: TD3BCState) -> tuple[TD3BCState, dict[str, jax.Array]]:
        return state, {name: jnp.zeros((), jnp.float32) for name in ("actor_loss", "lambda", "bc_mse")}

    updated = state.step % cfg.policy_freq == 0
    state, actor_info = jax.lax.cond(updated, actor_step, skip, state)
    return state, {**critic_info, **actor_info, "actor_updated": updated}


def td3bc_act(state: TD3BCState, obs: jax.Array) -> jax.Array:
    """float32 ``(..., act_dim)`` in [-1, 1]: the actor's action."""
    return td3bc_policy(state, state.actor, obs)


def td3bc_log_prob(state: TD3BCState, obs: jax.Array, action: jax.Array) -> jax.Array:
    """float32 ``(...,)``: ``log Normal(action; pi(obs), I)`` (the PGD paper's reading of a
    deterministic actor); its gradient in `action` is ``pi(obs) - action``."""
    z = action - td3bc_act(state, obs)
    return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * state.act_dim * np.log(2 * np.pi)


# --------------------------------------------------------------------------------------------------- IQL
@pytree_dataclass
class IQLState:
    actor: Any  # Gaussian actor's weights
    critic: Any  # twin critics' weights (leading axis 2)
    critic_target: Any
    value: Any  # V network's weights
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    obs_mean: jax.Array  # float32 (obs_dim,)
    obs_std: jax.Array  # float32 (obs_dim,)
    step: jax.Array  # int32 (): updates taken
    config: IQLConfig = static_field()
    act_dim: int = static_field()


def _iql_nets(config: IQLConfig, act_dim: int) -> tuple[GaussianActor, TwinCritic, MLP]:
    return GaussianActor(config.hidden, act_dim), TwinCritic(config.hidden), MLP(config.hidden, 1)


def _iql_optimizers(config: IQLConfig) -> tuple[optax.GradientTransformation, ...]:
    """(actor: Adam with the cosine-decayed rate, critic: Adam, value: Adam)."""
    actor = optax.adam(optax.cosine_decay_schedule(config.lr, config.total_updates))
    return actor, optax.adam(config.lr), optax.adam(config.lr)


def iql_init(
    key: jax.Array, config: IQLConfig, obs_dim: int, act_dim: int, obs_mean: Any = None, obs_std: Any = None
) -> IQLState:
    """A fresh state (target critics equal to the critics) from a raw ``uint32[2]`` key; `obs_mean` and
    `obs_std` are used only with ``config.normalize_obs``."""
    config.validate()
    mean, std = _stats(obs_dim, obs_mean, obs_std)
    actor_net, critic_net, value_net = _iql_nets(config, act_dim)
    k_actor, k_critic, k_value = hashing.split_key(key, 3)
    obs, action = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, act_dim), jnp.float32)
    actor = actor_net.init(_flax_key(k_actor), obs)
    critic = critic_net.init(_flax_key(k_critic), obs, action)
    value = value_net.init(_flax_key(k_value), obs)
    actor_opt, critic_opt, value_opt = _iql_optimizers(config)
    return IQLState(
        actor=actor,
        critic=critic,
        critic_target=critic,
        value=value,
        actor_opt=actor_opt.init(actor),
        critic_opt=critic_opt.init(critic),
        value_opt=value_opt.init(value),
        obs_mean=mean,
        obs_std=std,
        step=jnp.zeros((), jnp.int32),
        config=config,
        act_dim=act_dim,
    )


def iql_policy(state: IQLState, actor_params: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean (..., act_dim) in [-1, 1], log_std (act_dim,))`` of the Gaussian actor."""
    return _iql_nets(state.config, state.act_dim)[0].apply(actor_params, _normalise(state, obs))


def iql_q(state: IQLState, critic_params: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
    """``(2, ...)``: both critics at ``(obs, action)``."""
    return _iql_nets(state.config, state.act_dim)[1].apply(critic_params, _normalise(state, obs), action)


def iql_v(state: IQLState, value_params: Any, obs: jax.Array) -> jax.Array:
    """``(...,)``: the value network."""
    return _iql_nets(state.config, state.act_dim)[2].apply(value_params, _normalise(state, obs))[..., 0]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """``(...,)``: the diagonal Gaussian's log density at `action`, summed over the last axis."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def iql_value_loss(value_params: Any, state: IQLState, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean L2_expectile(min_i Q_i_targ(s, a) - V(s))``."""
    q = iql_q(state, state.critic_target, batch.obs, batch.action).min(axis=0)
    v = iql_v(state, value_params, batch.obs)
    loss = expectile_loss(jax.lax.stop_gradient(q) - v, state.config.expectile)
    return loss, {"value_loss": loss, "v": jnp.mean(v)}


def iql_critic_loss(critic_params: Any, state: IQLState, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``mean (Q1(s, a) - y)^2 + mean (Q2(s, a) - y)^2``, ``y = r + gamma (1 - d) V(s')`` (the state's V,
    held fixed)."""
    y = batch.reward + state.config.discount * (1.0 - batch.done) * iql_v(state, state.value, batch.next_obs)
    y = jax.lax.stop_gradient(y)
    q = iql_q(state, critic_params, batch.obs, batch.action)
    loss = jnp.mean((q[0] - y) ** 2) + jnp.mean((q[1] - y) ** 2)
    return loss, {"critic_loss": loss, "q1": jnp.mean(q[0])}


def iql_actor_loss(actor_params: Any, state: IQLState, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``-mean min(exp(beta (min_i Q_i_targ(s, a) - V(s))), exp_adv_max) log pi(a | s)``."""
    cfg = state.config
    q = iql_q(state, state.critic_target, batch.obs, batch.action).min(axis=0)
    v = iql_v(state, state.value, batch.obs)
    weight = jax.lax.stop_gradient(jnp.minimum(jnp.exp(cfg.beta * (q - v)), cfg.exp_adv_max))
    mean, log_std = iql_policy(state, actor_params, batch.obs)
    logp = gaussian_log_prob(mean, log_std, batch.action)
    loss = -jnp.mean(weight * logp)
    return loss, {"actor_loss": loss, "adv_weight": jnp.mean(weight), "log_prob": jnp.mean(logp)}


def iql_update(state: IQLState, batch: Batch, key: jax.Array) -> tuple[IQLState, dict[str, jax.Array]]:
    """One step of value, actor, critic (each with the networks already stepped before it), then the
    Polyak target update. `key` is unused (IQL's update draws nothing); it keeps the common call shape."""
    del key
    cfg = state.config
    actor_opt, critic_opt, value_opt = _iql_optimizers(cfg)
    value, value_state, _, value_info = _adam_step(
        iql_value_loss, state.value, state.value_opt, value_opt, state, batch
    )
    state = state.replace(value=value, value_opt=value_state)
    actor, actor_state, _, actor_info = _adam_step(
        iql_actor_loss, state.actor, state.actor_opt, actor_opt, state, batch
    )
    critic, critic_state, _, critic_info = _adam_step(
        iql_critic_loss, state.critic, state.critic_opt, critic_opt, state, batch
    )
    state = state.replace(
        actor=actor,
        actor_opt=actor_state,
        critic=critic,
        critic_opt=critic_state,
        critic_target=polyak(critic, state.critic_target, cfg.tau),
        step=state.step + 1,
    )
    return state, {**value_info, **actor_info, **critic_info}


def iql_act(state: IQLState, obs: jax.Array) -> jax.Array:
    """float32 ``(..., act_dim)`` in [-1, 1]: the actor's mean."""
    return iql_policy(state, state.actor, obs)[0]


def iql_log_prob(state: IQLState, obs: jax.Array, action: jax.Array) -> jax.Array:
    """float32 ``(...,)``: ``log Normal(action; tanh-squashed mean(obs), exp(log_std))`` summed over
    action dimensions, the density the actor is trained on (no tanh change of variables)."""
    mean, log_std = iql_policy(state, state.actor, obs)
    return gaussian_log_prob(mean, log_std, action)


# ------------------------------------------------------------------------------------------------ facade
class Agent(NamedTuple):
    """One algorithm's four functions, with the same call shapes for every algorithm."""

    config: type  # the config class (its defaults: ``agent.config()``)
    init: Callable[..., Any]  # (key, config, obs_dim, act_dim, obs_mean=None, obs_std=None) -> state
    update: Callable[..., Any]  # (state, batch, key) -> (state, metrics)
    act: Callable[..., jax.Array]  # (state, obs) -> action
    log_prob: Callable[..., jax.Array]  # (state, obs, action) -> log-likelihood


AGENTS: dict[str, Agent] = {
    "td3bc": Agent(TD3BCConfig, td3bc_init, td3bc_update, td3bc_act, td3bc_log_prob),
    "iql": Agent(IQLConfig, iql_init, iql_update, iql_act, iql_log_prob),
}
_BY_CONFIG = {agent.config: agent for agent in AGENTS.values()}
_BY_STATE = {TD3BCState: AGENTS["td3bc"], IQLState: AGENTS["iql"]}


def _agent_of(state: Any) -> Agent:
    try:
        return _BY_STATE[type(state)]
    except KeyError:
        raise UsageError(f"not an offline agent's state: {type(state).__name__}") from None


def init(key: jax.Array, config: Any, obs_dim: int, act_dim: int, obs_mean: Any = None, obs_std: Any = None) -> Any:
    """A fresh state of the algorithm named by the config's type (`TD3BCConfig` or `IQLConfig`)."""
    if type(config) not in _BY_CONFIG:
        raise UsageError(f"not an offline agent's config: {type(config).__name__}")
    return _BY_CONFIG[type(config)].init(key, config, obs_dim, act_dim, obs_mean, obs_std)


def update(state: Any, batch: Batch, key: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
    """One update of the state's algorithm."""
    return _agent_of(state).update(state, batch, key)


def act(state: Any, obs: jax.Array) -> jax.Array:
    """The state's deterministic action ``(..., act_dim)`` in [-1, 1]."""
    return _agent_of(state).act(state, obs)


def log_prob(state: Any, obs: jax.Array, action: jax.Array) -> jax.Array:
    """The target policy's log-likelihood ``(...,)`` of `action` at `obs` (differentiable in `action`)."""
    return _agent_of(state).log_prob(state, obs, action)
