"""Trajectory diffusion for policy-guided diffusion (PGD: Jackson, Matthews, Lu, Ellis, Whiteson,
Foerster, RLC 2024, arXiv 2404.06356): an EDM denoiser (Karras, Aittala, Aila, Laine 2022) over
windows of consecutive offline-dataset rows, a stochastic Heun sampler, and guidance of the sampled
actions by a target policy's score.

    layout = RowLayout(obs_dim, act_dim)
    rows = to_rows(obs, action, reward, terminated)               # float32 (N, layout.dim)
    windows = make_windows(rows, window_starts(episode, 32, 8), 32)
    standardizer = Standardizer.fit(rows)
    data = standardizer.standardize(windows)                      # what the denoiser learns
    state = init_state(key, config, 32, layout.dim)
    update = jax.jit(make_update(config, total_steps))
    state, loss = update(state, key, data[batch_indices])         # one Adam step
    synthetic = sample_windows(key, state.ema_params, make_model(config).apply, config, n, 32, layout,
                               standardizer, num_steps=256, log_prob_fn=target_log_prob, guidance=c)
    batch = transitions_from_windows(synthetic, layout)           # obs, action, reward, next_obs, terminated

**Rows.** One row per environment step: ``[s_t (obs_dim), arctanh(a_t) (act_dim), r_t, terminated_t]``
(`RowLayout`); the action is clipped to [-0.999, 0.999] before ``arctanh`` (at most 3.80 in
magnitude). The next state of row t is row t + 1's state, so a window of `length` rows gives
``length - 1`` transitions. Rows are standardised per dimension (`Standardizer`) before diffusion.

**EDM** (`EDMConfig`, Karras et al. Table 1, the values PGD uses): ``D(x; sigma) = c_skip x + c_out
F(c_in x, c_noise)`` with `preconditioning`; training draws ``ln sigma ~ N(p_mean, p_std^2)`` per
window, noise ``n = sigma eps``, and minimises ``loss_weight(sigma) |D(x0 + n; sigma) - x0|^2``
averaged over elements. Since ``loss_weight c_out^2 = 1`` that is ``|F - (x0 - c_skip (x0 + n)) /
c_out|^2``, and for data of variance ``sigma_data^2`` the target has unit variance at every sigma.
Adam with linear warm-up and cosine decay, global-norm clipping, and an exponential moving average of
the parameters (which sampling uses).

**Sampling** (`heun_sample`): Karras et al. Algorithm 2 with the rho schedule `sigma_steps`: at step
k, churn ``gamma = min(s_churn / N, sqrt 2 - 1)`` where ``s_tmin <= sigma_k <= s_tmax`` (else 0),
``sigma_hat = (1 + gamma) sigma_k``, ``x_hat = x + sqrt(sigma_hat^2 - sigma_k^2) s_noise eps``, an
Euler step to ``sigma_{k+1}``, and Heun's correction unless ``sigma_{k+1} = 0`` (the last step).

**Guidance** (`policy_guide`): before every step but the last,
``x += lambda_k grad_x sum_t log pi(tanh a_t | s_t)`` on the action columns only, with
``lambda_k = c [(1 - k/N) + 0.3 sin(pi (k + 1) / N)]`` (`guidance_schedule`). The gradient is taken
with respect to the *standardised* window (the diffusion variable), through `Standardizer` and
``tanh``; no log-det term of ``tanh`` is added (PGD's formula). ``c = 0`` is the unguided
(SynthER-style) sampler.

Nothing here is copied from the PGD authors' code (EmptyJackson/policy-guided-diffusion); the
formulas are the papers'. agentlab's choices: the U-Net below (`UNet1D`), ``s_tmax = 1e9`` for
"no upper limit", ``warmup_steps = 1000``, gradient clipping at global norm 1, and the defaults in
`EDMConfig` marked so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentlab import hashing, limits
from agentlab.errors import UsageError
from agentlab.kernels.pytree import pytree_dataclass

ACTION_CLIP = 0.999  # |a| is clipped to this before arctanh
STD_FLOOR = 1e-3  # per-dimension standard deviations below this are read as this

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]  # (x (..., L, dim), sigma scalar) -> D, like x
Guide = Callable[[jax.Array, jax.Array], jax.Array]  # (x, step k int32) -> dx, like x
LogProb = Callable[[jax.Array, jax.Array], jax.Array]  # (obs (..., obs_dim), action (..., act_dim)) -> (...,)

NUMBER_BOUNDS = {
    "sigma_data": limits.Bound("sigma_data", float, low=0, high=1e6, low_open=True),
    "p_mean": limits.Bound("p_mean", float, low=-20, high=20),
    "p_std": limits.Bound("p_std", float, low=0, high=20, low_open=True),
    "sigma_min": limits.Bound("sigma_min", float, low=0, high=1e6, low_open=True),
    "sigma_max": limits.Bound("sigma_max", float, low=0, high=1e6, low_open=True),
    "rho": limits.Bound("rho", float, low=0, high=100, low_open=True),
    "s_churn": limits.Bound("s_churn", float, low=0, high=1e6),
    "s_tmin": limits.Bound("s_tmin", float, low=0),
    "s_tmax": limits.Bound("s_tmax", float, low=0),
    "s_noise": limits.Bound("s_noise", float, low=0, high=100),
    "lr": limits.Bound("lr", float, low=0, high=1, low_open=True),
    "ema_decay": limits.Bound("ema_decay", float, low=0, high=1),
    "grad_clip": limits.Bound("grad_clip", float, low=0, high=1e9, low_open=True),
}
SIZE_BOUNDS = {
    "batch_size": limits.Bound("batch_size", int, low=1, high=2**20, unit="windows per update"),
    "warmup_steps": limits.Bound("warmup_steps", int, low=0, high=limits.MAX_INDEX),
    "groups": limits.Bound("groups", int, low=1, high=1024),
    "kernel_size": limits.Bound("kernel_size", int, low=1, high=63),
}
WIDTH = limits.Bound("each of channels", int, low=1, high=2**14)
STEPS = limits.Bound("num_steps", int, low=1, high=2**16, unit="sampler steps")


@dataclasses.dataclass(frozen=True)
class EDMConfig:
    """The denoiser, its training and its sampler. EDM values are Karras et al.'s (and PGD's); the
    model is smaller than PGD's by default so that it trains on a CPU."""

    sigma_data: float = 1.0  # standard deviation of the (standardised) data
    p_mean: float = -1.2  # training: ln sigma ~ N(p_mean, p_std^2)
    p_std: float = 1.2
    sigma_min: float = 0.002  # sampling schedule: sigma_max down to sigma_min, then 0
    sigma_max: float = 80.0
    rho: float = 7.0
    s_churn: float = 80.0  # stochastic sampler (Algorithm 2); 0 gives the deterministic Heun ODE solver
    s_tmin: float = 0.0
    s_tmax: float = 1e9  # agentlab: "no upper limit" (above any sigma_max)
    s_noise: float = 1.0
    channels: tuple[int, ...] = (32, 64, 128)  # U-Net widths per level (length / 2^level); agentlab's CPU size
    groups: int = 8  # GroupNorm groups; must divide every width
    kernel_size: int = 5  # temporal convolution width
    lr: float = 2e-3  # Adam peak learning rate
    warmup_steps: int = 1000  # linear warm-up from 0, then cosine decay to 0 (agentlab's choice)
    grad_clip: float = 1.0  # global-norm clipping (agentlab's choice)
    ema_decay: float = 0.995
    batch_size: int = 256  # windows per update (for a driver; `make_update` takes any batch)

    def validate(self) -> EDMConfig:
        """Raise `UsageError` naming the first bad field; return self."""
        for name, bound in NUMBER_BOUNDS.items():
            bound.check(getattr(self, name))
        for name, bound in SIZE_BOUNDS.items():
            bound.check(getattr(self, name))
        if self.sigma_min >= self.sigma_max:
            raise UsageError(f"sigma_min ({self.sigma_min:g}) must be below sigma_max ({self.sigma_max:g})")
        if self.s_tmin > self.s_tmax:
            raise UsageError(f"s_tmin ({self.s_tmin:g}) must not exceed s_tmax ({self.s_tmax:g})")
        if not isinstance(self.channels, tuple) or not self.channels:
            raise UsageError(f"channels must be a non-empty tuple of integers, got {self.channels!r}")
        for width in self.channels:
            WIDTH.check(width)
            if width % self.groups:
                raise UsageError(f"groups ({self.groups}) must divide every width in channels {self.channels}")
        if self.kernel_size % 2 == 0:
            raise UsageError(f"kernel_size must be odd (a centred convolution), got {self.kernel_size}")
        return self

    @property
    def levels(self) -> int:
        return len(self.channels)

    def check_length(self, length: int) -> int:
        """`length` if a window of that many rows fits the U-Net (divisible by 2^(levels - 1))."""
        factor = 2 ** (self.levels - 1)
        if not isinstance(length, int) or length < 1 or length % factor:
            raise UsageError(
                f"window length must be a positive multiple of {factor} for {self.levels} levels, got {length!r}"
            )
        return length


# ------------------------------------------------------------------------------------------------ EDM
def preconditioning(sigma: jax.Array, sigma_data: float) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(c_skip, c_out, c_in, c_noise)``, each shaped like `sigma` (Karras et al. Table 1)."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / jnp.sqrt(total)
    c_in = 1.0 / jnp.sqrt(total)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` ( = 1 / c_out^2), shaped like `sigma`."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def denoise(
    apply_fn: Callable[..., jax.Array], params: Any, x: jax.Array, sigma: jax.Array, sigma_data: float
) -> jax.Array:
    """``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)``; `x` float32 ``(B, L, dim)``, `sigma` a
    scalar or ``(B,)``; ``apply_fn(params, x_in (B, L, dim), c_noise (B,)) -> F (B, L, dim)``."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, sigma_data)
    F = apply_fn(params, c_in[:, None, None] * x, c_noise)
    return c_skip[:, None, None] * x + c_out[:, None, None] * F


def weighted_loss(
    params: Any,
    apply_fn: Callable[..., jax.Array],
    x0: jax.Array,
    sigma: jax.Array,
    noise: jax.Array,
    sigma_data: float,
) -> jax.Array:
    """Scalar: ``mean(loss_weight(sigma) (D(x0 + noise; sigma) - x0)^2)`` over every element;
    `x0`, `noise` ``(B, L, dim)``, `sigma` ``(B,)``."""
    D = denoise(apply_fn, params, x0 + noise, sigma, sigma_data)
    return jnp.mean(loss_weight(sigma, sigma_data)[:, None, None] * (D - x0) ** 2)


def edm_loss(
    params: Any, apply_fn: Callable[..., jax.Array], key: jax.Array, x0: jax.Array, config: EDMConfig
) -> jax.Array:
    """Scalar EDM loss of a batch of clean windows `x0` float32 ``(B, L, dim)``: one
    ``ln sigma ~ N(p_mean, p_std^2)`` per window, ``noise = sigma eps``, `weighted_loss`."""
    key_sigma, key_noise = jax.random.split(key)
    sigma = jnp.exp(config.p_mean + config.p_std * jax.random.normal(key_sigma, x0.shape[:1]))
    noise = sigma[:, None, None] * jax.random.normal(key_noise, x0.shape)
    return weighted_loss(params, apply_fn, x0, sigma, noise, config.sigma_data)


# ------------------------------------------------------------------------------------------------ U-Net
def sinusoidal_embedding(t: jax.Array, features: int, max_period: float = 10000.0) -> jax.Array:
    """float32 ``(B, features)``: ``[cos(t f_i), sin(t f_i)]`` with ``f_i = max_period^(-i / half)``."""
    half = features // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[:, None] * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class ResidualBlock(nn.Module):
    """Two (conv, GroupNorm, Mish) layers with the noise embedding added between them, plus a
    (1x1-projected where widths differ) skip; ``(B, L, C_in), (B, E) -> (B, L, features)``."""

    features: int
    groups: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = nn.Conv(self.features, (self.kernel_size,), padding="SAME")(x)
        h = jax.nn.mish(nn.GroupNorm(num_groups=self.groups)(h))
        h = h + nn.Dense(self.features)(jax.nn.mish(emb))[:, None, :]
        h = nn.Conv(self.features, (self.kernel_size,), padding="SAME")(h)
        h = jax.nn.mish(nn.GroupNorm(num_groups=self.groups)(h))
        skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1,))(x)
        return h + skip


class UNet1D(nn.Module):
    """A temporal U-Net: ``apply(params, x (B, L, dim) float32, c_noise (B,) float32) -> (B, L, dim)``.

    ``c_noise`` -> sinusoidal embedding (``channels[0]`` features) -> Dense, Mish, Dense (4 x
    ``channels[0]``). An input conv to ``channels[0]``; per level i two `ResidualBlock` of
    ``channels[i]`` then (except the deepest) a stride-2 conv halving the length; two blocks in the
    middle; per level from the deepest up: concatenate that level's skip, two blocks, then (except
    the top) nearest-neighbour up-sampling by 2 and a conv to the next width. Output: GroupNorm, Mish
    and a zero-initialised 1x1 conv to `dim` (so F = 0 at initialisation). L must be divisible by
    ``2^(levels - 1)``."""

    channels: Sequence[int] = (32, 64, 128)
    groups: int = 8
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array) -> jax.Array:
        dim, levels = x.shape[-1], len(self.channels)
        if x.shape[1] % 2 ** (levels - 1):
            raise ValueError(f"window length {x.shape[1]} is not divisible by 2^{levels - 1}")
        block = functools.partial(ResidualBlock, groups=self.groups, kernel_size=self.kernel_size)
        width = 4 * self.channels[0]
        emb = sinusoidal_embedding(c_noise, self.channels[0])
        emb = nn.Dense(width)(jax.nn.mish(nn.Dense(width)(emb)))
        h = nn.Conv(self.channels[0], (self.kernel_size,), padding="SAME")(x.astype(jnp.float32))
        skips = []
        for i, ch in enumerate(self.channels):
            h = block(ch)(block(ch)(h, emb), emb)
            skips.append(h)
            if i < levels - 1:
                h = nn.Conv(self.channels[i + 1], (3,), strides=(2,), padding="SAME")(h)
        h = block(self.channels[-1])(block(self.channels[-1])(h, emb), emb)
        for i in reversed(range(levels)):
            h = jnp.concatenate([h, skips[i]], axis=-1)
            h = block(self.channels[i])(block(self.channels[i])(h, emb), emb)
            if i > 0:
                h = jnp.repeat(h, 2, axis=1)
                h = nn.Conv(self.channels[i - 1], (3,), padding="SAME")(h)
        h = jax.nn.mish(nn.GroupNorm(num_groups=self.groups)(h))
        return nn.Conv(dim, (1,), kernel_init=nn.initializers.zeros)(h)


@functools.cache
def make_model(config: EDMConfig) -> UNet1D:
    """The U-Net of `config`, one instance per config (so ``make_model(config).apply`` is the same
    callable each time and `sample_windows` compiles once per config)."""
    return UNet1D(channels=config.channels, groups=config.groups, kernel_size=config.kernel_size)


# ------------------------------------------------------------------------------------------------ training
@pytree_dataclass
class DiffusionState:
    params: Any  # the U-Net's parameters
    ema_params: Any  # their exponential moving average (what sampling uses)
    opt_state: Any  # optax state of `optimizer`
    step: jax.Array  # int32 (): updates taken


def optimizer(config: EDMConfig, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam with ``lr`` reached linearly over ``warmup_steps`` and decayed
    by a cosine to 0 at `total_steps` (the state's structure does not depend on `total_steps`)."""
    limits.Bound("total_steps", int, low=1, high=limits.MAX_INDEX).check(total_steps)
    if total_steps <= config.warmup_steps:
        raise UsageError(f"total_steps ({total_steps}) must exceed warmup_steps ({config.warmup_steps})")
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, config.warmup_steps, total_steps, 0.0)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(schedule))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_params(key: jax.Array, config: EDMConfig, length: int, dim: int) -> Any:
    flax_key = jax.random.wrap_key_data(hashing.seed_words(key), impl=hashing.HASH_PRNG)
    return make_model(config).init(flax_key, jnp.zeros((1, length, dim), jnp.float32), jnp.zeros((1,), jnp.float32))


def init_state(key: jax.Array, config: EDMConfig, length: int, dim: int) -> DiffusionState:
    """Fresh parameters for windows ``(length, dim)`` (flax's initialisers drawn through
    `hashing.HASH_PRNG` from `key`, a raw ``uint32[2]`` or typed key); the EMA starts at the parameters."""
    config.validate()
    config.check_length(length)
    params = _init_params(key, config, length, dim)
    opt_state = optimizer(config, config.warmup_steps + 1).init(params)
    return DiffusionState(params=params, ema_params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32))


def make_update(
    config: EDMConfig, total_steps: int
) -> Callable[[DiffusionState, jax.Array, jax.Array], tuple[DiffusionState, jax.Array]]:
    """``update(state, key, batch float32 (B, L, dim)) -> (state, loss float32 ())``: one clipped Adam
    step on `edm_loss` of the standardised windows `batch`, then
    ``ema = ema_decay ema + (1 - ema_decay) params``. Pure; jit it."""
    config.validate()
    apply_fn = make_model(config).apply
    tx = optimizer(config, total_steps)
    decay = config.ema_decay

    def update(state: DiffusionState, key: jax.Array, batch: jax.Array) -> tuple[DiffusionState, jax.Array]:
        loss, grads = jax.value_and_grad(edm_loss)(state.params, apply_fn, key, batch, config)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
        return DiffusionState(params=params, ema_params=ema, opt_state=opt_state, step=state.step + 1), loss

    return update


# ------------------------------------------------------------------------------------------------ sampling
def sigma_steps(config: EDMConfig, n: int) -> jax.Array:
    """float32 ``(n + 1,)``: ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho`` for i = 0..n-1 (computed in float64), then 0; n = 1 gives
    ``[sigma_max, 0]``."""
    n = STEPS.check(n)
    i = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    lo, hi = config.sigma_min ** (1 / config.rho), config.sigma_max ** (1 / config.rho)
    sigma = (hi + i * (lo - hi)) ** config.rho
    return jnp.asarray(np.append(sigma, 0.0), jnp.float32)


def heun_solve(
    key: jax.Array, denoiser: Denoiser, x: jax.Array, config: EDMConfig, num_steps: int, guide: Guide | None = None
) -> jax.Array:
    """Karras et al. Algorithm 2 from `x` (float32, any shape, already at noise level ``sigma_max``)
    down to sigma 0 in `num_steps` steps: a `lax.scan` over the steps k = 0..N-2 (guide, churn,
    Euler, Heun correction), then the last step (churn, Euler; no guide, no correction). The churn
    noise of step k is ``normal(fold_in(key, k))``, drawn only when ``s_churn > 0``."""
    t = sigma_steps(config, num_steps)
    gamma_max = min(config.s_churn / num_steps, math.sqrt(2.0) - 1.0)
    stochastic = config.s_churn > 0 and config.s_noise > 0

    def churn(x: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array]:
        if not stochastic:
            return x, t[k]
        inside = (t[k] >= config.s_tmin) & (t[k] <= config.s_tmax)
        t_hat = t[k] * (1.0 + jnp.where(inside, jnp.float32(gamma_max), jnp.float32(0.0)))
        eps = jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)
        return x + jnp.sqrt(t_hat**2 - t[k] ** 2) * config.s_noise * eps, t_hat

    def step(x: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
        if guide is not None:
            x = x + guide(x, k)
        x_hat, t_hat = churn(x, k)
        d = (x_hat - denoiser(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t[k + 1] - t_hat) * d
        d_next = (x_next - denoiser(x_next, t[k + 1])) / t[k + 1]
        return x_hat + (t[k + 1] - t_hat) * (0.5 * d + 0.5 * d_next), None

    x, _ = jax.lax.scan(step, x, jnp.arange(num_steps - 1, dtype=jnp.int32))
    last = jnp.int32(num_steps - 1)
    x_hat, t_hat = churn(x, last)
    return x_hat + (t[num_steps] - t_hat) * (x_hat - denoiser(x_hat, t_hat)) / t_hat


def heun_sample(
    key: jax.Array,
    denoiser: Denoiser,
    shape: tuple[int, ...],
    config: EDMConfig,
    num_steps: int,
    guide: Guide | None = None,
) -> jax.Array:
    """float32 `shape`: ``x_0 = sigma_max normal(split(key)[0])`` solved by `heun_solve` (churn
    noise from ``split(key)[1]``). ``denoiser(x, sigma) -> D(x; sigma)`` is any callable (a trained
    network through `denoise`, or an exact one); ``guide(x, k) -> dx`` is added before step k < N-1."""
    key_init, key_churn = jax.random.split(key)
    x = config.sigma_max * jax.random.normal(key_init, shape, jnp.float32)
    return heun_solve(key_churn, denoiser, x, config, num_steps, guide)


# ------------------------------------------------------------------------------------------------ guidance
@dataclasses.dataclass(frozen=True)
class RowLayout:
    """One row ``[s (obs_dim), arctanh(a) (act_dim), r, terminated]``."""

    obs_dim: int
    act_dim: int

    @property
    def dim(self) -> int:
        return self.obs_dim + self.act_dim + 2

    @property
    def obs(self) -> slice:
        return slice(0, self.obs_dim)

    @property
    def action(self) -> slice:
        return slice(self.obs_dim, self.obs_dim + self.act_dim)

    @property
    def reward(self) -> int:
        return self.obs_dim + self.act_dim

    @property
    def done(self) -> int:
        return self.obs_dim + self.act_dim + 1


@pytree_dataclass
class Standardizer:
    mean: jax.Array  # float32 (dim,)
    std: jax.Array  # float32 (dim,), at least STD_FLOOR

    @staticmethod
    def fit(rows: Any) -> Standardizer:
        """Per-dimension mean and standard deviation (floored at `STD_FLOOR`) of rows ``(..., dim)``."""
        flat = np.asarray(rows, np.float64).reshape(-1, np.shape(rows)[-1])
        std = np.maximum(flat.std(axis=0), STD_FLOOR)
        return Standardizer(mean=jnp.asarray(flat.mean(axis=0), jnp.float32), std=jnp.asarray(std, jnp.float32))

    def standardize(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / self.std

    def unstandardize(self, x: jax.Array) -> jax.Array:
        return x * self.std + self.mean


def guidance_schedule(c: float | jax.Array, k: jax.Array, n: int) -> jax.Array:
    """``lambda_k = c [(1 - k/n) + 0.3 sin(pi (k + 1) / n)]`` (PGD)."""
    k = jnp.asarray(k, jnp.float32)
    return c * ((1.0 - k / n) + 0.3 * jnp.sin(jnp.pi * (k + 1.0) / n))


def policy_guide(
    log_prob_fn: LogProb,
    layout: RowLayout,
    standardizer: Standardizer,
    c: float | jax.Array,
    n: int,
    normalize: bool = False,
) -> Guide | None:
    """``guide(x, k) -> dx``: for standardised windows `x` ``(..., L, dim)``, ``lambda_k g`` where g is
    ``grad_x sum log_prob_fn(s_t, tanh(a_t))`` over every row (s_t and the arctanh-action a_t read from
    the unstandardised row) with every column outside the action slice set to exactly 0, and, with
    `normalize`, divided by its norm over each window (``(L, dim)``; a zero gradient stays zero).

    ``c = 0`` given as a Python or NumPy number returns None (no guide): the sampler is then the
    unguided one bit for bit. (A guide that adds ``0 * g`` gives the same values up to rounding
    only, as XLA fuses the two programs differently.)"""
    if isinstance(c, (int, float, np.number)) and c == 0:
        return None
    mask = np.zeros(layout.dim, bool)
    mask[layout.action] = True

    def total_log_prob(x: jax.Array) -> jax.Array:
        raw = standardizer.unstandardize(x)
        return jnp.sum(log_prob_fn(raw[..., layout.obs], jnp.tanh(raw[..., layout.action])))

    def guide(x: jax.Array, k: jax.Array) -> jax.Array:
        g = jnp.where(mask, jax.grad(total_log_prob)(x), 0.0)
        if normalize:
            norm = jnp.sqrt(jnp.sum(g**2, axis=(-2, -1), keepdims=True))
            g = g / jnp.where(norm > 0, norm, 1.0)
        return guidance_schedule(c, k, n) * g

    return guide


@functools.partial(
    jax.jit,
    static_argnames=("apply_fn", "config", "shape", "layout", "num_steps", "log_prob_fn", "guidance", "normalize"),
)
def _sample_chunk(
    key: jax.Array,
    ema_params: Any,
    standardizer: Standardizer,
    policy: Any,
    *,
    apply_fn: Callable[..., Any],
    config: EDMConfig,
    shape: tuple[int, int, int],
    layout: RowLayout,
    num_steps: int,
    log_prob_fn: LogProb | None,
    guidance: float,
    normalize: bool,
) -> jax.Array:
    def denoiser(x: jax.Array, sigma: jax.Array) -> jax.Array:
        return denoise(apply_fn, ema_params, x, sigma, config.sigma_data)

    guide = None
    if log_prob_fn is not None:
        target = log_prob_fn if policy is None else functools.partial(log_prob_fn, policy)
        guide = policy_guide(target, layout, standardizer, guidance, num_steps, normalize)
    return standardizer.unstandardize(heun_sample(key, denoiser, shape, config, num_steps, guide))


def sample_windows(
    key: jax.Array,
    ema_params: Any,
    apply_fn: Callable[..., Any],
    config: EDMConfig,
    n: int,
    length: int,
    layout: RowLayout,
    standardizer: Standardizer,
    num_steps: int,
    log_prob_fn: LogProb | None = None,
    guidance: float = 0.0,
    batch: int = 1024,
    normalize: bool = False,
    policy: Any = None,
) -> jax.Array:
    """float32 ``(n, length, layout.dim)`` synthetic windows in raw (unstandardised) units, from the
    (EMA) parameters of ``apply_fn`` (``make_model(config).apply``: the same callable each call, so
    the sampler compiles once per config and chunk shape).

    ``ceil(n / batch)`` chunks of ``min(batch, n)`` windows are sampled one after another by one
    compiled sampler (memory is that of one chunk), chunk i from ``fold_in(key, i)`` (so the first
    windows do not depend on `n`), and the surplus of the last chunk is dropped. ``guidance = c``
    (a Python float: it is compiled in) scales `policy_guide` of `log_prob_fn` (the target policy);
    ``c = 0`` or no `log_prob_fn` runs the unguided sampler (the same compiled program). With `policy` (a
    pytree: a learner's state), the target is ``log_prob_fn(policy, s, a)`` and `policy` is an argument of the
    compiled sampler, so guiding by a new state of the same policy does not recompile."""
    config.validate()
    config.check_length(length)
    n = limits.Bound("n", int, low=1, high=limits.MAX_INDEX).check(n)
    batch = limits.Bound("batch", int, low=1, high=2**20).check(batch)
    guidance = limits.Bound("guidance", float).check(guidance)
    if guidance == 0 or log_prob_fn is None:
        log_prob_fn, guidance, normalize = None, 0.0, False
    sample = functools.partial(
        _sample_chunk,
        apply_fn=apply_fn,
        config=config,
        shape=(min(batch, n), length, layout.dim),
        layout=layout,
        num_steps=STEPS.check(num_steps),
        log_prob_fn=log_prob_fn,
        guidance=guidance,
        normalize=bool(normalize),
    )
    if log_prob_fn is None:
        policy = None
    chunks = [sample(jax.random.fold_in(key, i), ema_params, standardizer, policy) for i in range(-(-n // batch))]
    return jnp.concatenate(chunks)[:n]


# ------------------------------------------------------------------------------------------------ host-side data
def episode_ids(ends: np.ndarray) -> np.ndarray:
    """int64 ``(N,)`` episode ids from bool ``(N,)`` episode ends (terminated or truncated): row i
    belongs to the episode after ``sum(ends[:i])`` ends."""
    ends = np.asarray(ends, bool)
    return np.concatenate([[0], np.cumsum(ends[:-1], dtype=np.int64)]) if ends.size else np.zeros(0, np.int64)


def window_starts(episode: np.ndarray, length: int, stride: int) -> np.ndarray:
    """int64 ``(M,)``: the first row of every window of `length` consecutive rows inside one
    episode, in row order. An episode is a maximal run of equal consecutive ids in `episode` (int
    ``(N,)``, rows in order). Within an episode of m rows the starts are offsets 0, stride, 2 stride,
    ... up to ``m - length``: no window is added to reach the episode's last rows when
    ``(m - length) % stride != 0`` (those rows are covered only by earlier, overlapping windows when
    stride <= length), and an episode shorter than `length` gives none."""
    episode = np.asarray(episode)
    length = limits.Bound("length", int, low=1, high=limits.MAX_INDEX).check(length)
    stride = limits.Bound("stride", int, low=1, high=limits.MAX_INDEX).check(stride)
    if episode.ndim != 1:
        raise UsageError(f"episode must be one-dimensional, got shape {episode.shape}")
    if episode.size == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(episode[1:] != episode[:-1]) + 1
    begin = np.concatenate([[0], change]).astype(np.int64)
    size = np.diff(np.concatenate([begin, [episode.size]]))
    count = np.where(size >= length, (size - length) // stride + 1, 0)
    first = np.repeat(np.cumsum(count) - count, count)  # index of each window's episode's first window
    return np.repeat(begin, count) + (np.arange(count.sum(), dtype=np.int64) - first) * stride


def make_windows(rows: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``(M, length, dim)`` of `rows`' dtype: ``rows[starts[j] : starts[j] + length]`` for each j."""
    return np.asarray(rows)[np.asarray(starts, np.int64)[:, None] + np.arange(length)]


def to_rows(obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray) -> np.ndarray:
    """float32 ``(N, obs_dim + act_dim + 2)`` from obs ``(N, obs_dim)`` (or ``(N, ...)``, flattened),
    continuous action ``(N, act_dim)``, reward ``(N,)``, terminated ``(N,)``: actions clipped to
    ``[-ACTION_CLIP, ACTION_CLIP]`` and mapped by arctanh, terminated as 0/1."""
    n = len(obs)
    action = np.clip(np.asarray(action, np.float64).reshape(n, -1), -ACTION_CLIP, ACTION_CLIP)
    columns = [
        np.asarray(obs, np.float32).reshape(n, -1),
        np.arctanh(action),
        np.asarray(reward, np.float32).reshape(n, 1),
        np.asarray(terminated, np.float32).reshape(n, 1),
    ]
    return np.concatenate(columns, axis=1).astype(np.float32)


def from_rows(rows: np.ndarray, layout: RowLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(obs (..., obs_dim), action = tanh(...) (..., act_dim), reward (...), terminated bool (...))``
    from rows ``(..., dim)``; a (diffused, continuous) terminated column counts as true above 0.5."""
    rows = np.asarray(rows, np.float32)
    return (
        rows[..., layout.obs],
        np.tanh(rows[..., layout.action]),
        rows[..., layout.reward],
        rows[..., layout.done] > 0.5,
    )


def transitions_from_windows(windows: np.ndarray, layout: RowLayout) -> dict[str, np.ndarray]:
    """The ``M (L - 1)`` transitions of windows ``(M, L, dim)``, rows t and t + 1 of each window, in
    the dataset's names (`agentlab.rl.data`): ``obs``/``next_obs`` float32 ``(M (L-1), obs_dim)``,
    ``action`` float32 ``(M (L-1), act_dim)`` (tanh applied), ``reward`` float32 ``(M (L-1),)``,
    ``terminated`` bool ``(M (L-1),)`` (row t's flag)."""
    obs, action, reward, terminated = from_rows(windows, layout)
    flat = lambda a: a[:, :-1].reshape(-1, *a.shape[2:])
    return {
        "obs": flat(obs),
        "action": flat(action),
        "reward": flat(reward),
        "next_obs": obs[:, 1:].reshape(-1, layout.obs_dim),
        "terminated": flat(terminated),
    }
