"""Trajectory diffusion for PGD (agentlab.rl.diffusion): EDM preconditioning and loss against their
closed forms, the Heun sampler against the exact denoiser of Gaussian data and a NumPy loop of
Karras et al.'s Algorithm 2, policy guidance, host-side windowing against Python loops, and training."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.errors import UsageError
from agentlab.rl import diffusion as dif

CONFIG = dif.EDMConfig()
TINY = dif.EDMConfig(channels=(8, 16, 16), groups=4, kernel_size=3, warmup_steps=20, lr=3e-3)

# Gaussian data N(MU, S^2) per dimension, and the exact denoiser E[x0 | x0 + sigma eps = x]
MU = np.array([2.0, -1.0, 0.5], np.float32)
S = np.array([0.5, 1.5, 1.0], np.float32)


def gaussian_denoiser(mu, s):
    mu, s2 = jnp.asarray(mu), jnp.asarray(s) ** 2
    return lambda x, sigma: (s2 * x + sigma**2 * mu) / (s2 + sigma**2)


def zero_network(params, x, c_noise):
    return jnp.zeros_like(x)


def assert_moments(samples, mu, s, se_factor=4.0):
    """Per-dimension sample mean and variance within `se_factor` standard errors of mu and s^2."""
    n = samples.shape[0]
    mean, var = samples.mean(axis=0), samples.var(axis=0, ddof=1)
    np.testing.assert_array_less(np.abs(mean - mu), se_factor * s / math.sqrt(n))
    np.testing.assert_array_less(np.abs(var - s**2), se_factor * s**2 * math.sqrt(2.0 / (n - 1)))


# ------------------------------------------------------------------------------------------------ EDM
def test_preconditioning_at_sigma_data():
    sd = 2.0
    c_skip, c_out, c_in, c_noise = dif.preconditioning(jnp.float32(sd), sd)
    np.testing.assert_allclose([c_skip, c_out, c_in], [0.5, sd / math.sqrt(2), 1 / (sd * math.sqrt(2))], rtol=1e-6)
    np.testing.assert_allclose(c_noise, 0.25 * math.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(dif.loss_weight(jnp.float32(sd), sd), 2 / sd**2, rtol=1e-6)


def test_preconditioning_closed_forms():
    sigma = jnp.asarray([0.002, 0.1, 1.0, 3.0, 80.0], jnp.float32)
    sd = 0.5
    c_skip, c_out, c_in, c_noise = dif.preconditioning(sigma, sd)
    s = np.asarray(sigma, np.float64)
    np.testing.assert_allclose(c_skip, sd**2 / (s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_out, s * sd / np.sqrt(s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_noise, 0.25 * np.log(s), rtol=1e-5)
    # the loss weight undoes c_out, so the network's effective target has unit weight
    np.testing.assert_allclose(dif.loss_weight(sigma, sd) * c_out**2, 1.0, rtol=1e-5)


def test_weighted_loss_of_a_zero_network_at_worked_values():
    # F = 0: D = c_skip (x0 + n); at sigma = sd = 1, c_skip = 1/2 and the weight is 2
    x0 = jnp.ones((1, 1, 1), jnp.float32)
    sigma = jnp.ones((1,), jnp.float32)
    loss = dif.weighted_loss(None, zero_network, x0, sigma, jnp.zeros_like(x0), 1.0)
    np.testing.assert_allclose(loss, 2 * (0.5 - 1) ** 2, rtol=1e-6)  # 0.5
    loss = dif.weighted_loss(None, zero_network, x0, sigma, jnp.ones_like(x0), 1.0)
    np.testing.assert_allclose(loss, 0.0, atol=1e-7)  # D = (1 + 1) / 2 = x0


def test_zero_network_loss_is_one_on_data_of_variance_sigma_data_squared():
    """With F = 0, w (D - x0)^2 = ((sigma^2 x0 - sd^2 n) / (sigma sd sqrt(sigma^2 + sd^2)))^2, whose
    mean over x0 ~ N(0, sd^2), n ~ N(0, sigma^2) is (sigma^4 sd^2 + sd^4 sigma^2) / (sigma^2 sd^2
    (sigma^2 + sd^2)) = 1 at every sigma: a chi-square(1) mean, standard error sqrt(2 / elements)."""
    sd = 1.7
    config = dataclasses.replace(CONFIG, sigma_data=sd)
    x0 = sd * jax.random.normal(jax.random.PRNGKey(0), (4096, 8, 3))
    loss = dif.edm_loss(None, zero_network, jax.random.PRNGKey(1), x0, config)
    assert abs(float(loss) - 1.0) < 4 * math.sqrt(2 / x0.size)
    for sigma in (0.01, 1.0, 50.0):
        noise = sigma * jax.random.normal(jax.random.PRNGKey(2), x0.shape)
        loss = dif.weighted_loss(None, zero_network, x0, jnp.full((4096,), sigma, jnp.float32), noise, sd)
        assert abs(float(loss) - 1.0) < 4 * math.sqrt(2 / x0.size)


def test_sigma_steps_closed_form():
    n = 18
    t = np.asarray(dif.sigma_steps(CONFIG, n))
    assert t.shape == (n + 1,) and t.dtype == np.float32
    i = np.arange(n)
    hi, lo = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    np.testing.assert_allclose(t[:n], (hi + i / (n - 1) * (lo - hi)) ** 7, rtol=1e-6)
    assert t[0] == np.float32(80.0) and t[n - 1] == np.float32(0.002) and t[n] == 0
    assert np.all(np.diff(t) < 0)
    np.testing.assert_array_equal(dif.sigma_steps(CONFIG, 1), np.float32([80.0, 0.0]))


# ------------------------------------------------------------------------------------------------ sampler
def numpy_heun(x, denoiser, t):
    """Algorithm 2 of Karras et al. with S_churn = 0 (deterministic), float64."""
    x = np.asarray(x, np.float64)
    for i in range(len(t) - 1):
        d = (x - denoiser(x, t[i])) / t[i]
        x_next = x + (t[i + 1] - t[i]) * d
        if t[i + 1] != 0:
            d_next = (x_next - denoiser(x_next, t[i + 1])) / t[i + 1]
            x_next = x + (t[i + 1] - t[i]) * (0.5 * d + 0.5 * d_next)
        x = x_next
    return x


def test_deterministic_heun_equals_a_numpy_loop():
    config = dataclasses.replace(CONFIG, s_churn=0.0)
    steps = 12
    x_init = 80.0 * np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    got = dif.heun_solve(jax.random.PRNGKey(0), gaussian_denoiser(MU, S), jnp.asarray(x_init), config, steps)
    mu, s2 = MU.astype(np.float64), S.astype(np.float64) ** 2
    t = np.asarray(dif.sigma_steps(config, steps), np.float64)
    want = numpy_heun(x_init, lambda x, sigma: (s2 * x + sigma**2 * mu) / (s2 + sigma**2), t)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("s_churn, steps", [(0.0, 48), (80.0, 256)])
def test_heun_samples_the_gaussian_of_the_exact_denoiser(s_churn, steps):
    """The stochastic sampler needs more steps: with s_churn 80 its variance is about 5% high at 48
    steps, 1-2% at 128 and within noise at 256 (PGD's N), a discretisation error shrinking like 1/N."""
    config = dataclasses.replace(CONFIG, s_churn=s_churn)
    sample = jax.jit(lambda key: dif.heun_sample(key, gaussian_denoiser(MU, S), (8192, 3), config, steps))
    x = np.asarray(sample(jax.random.PRNGKey(3)), np.float64)
    assert np.all(np.isfinite(x))
    assert_moments(x, MU, S)


def test_churn_changes_the_samples_and_keys_reproduce_them():
    denoiser = gaussian_denoiser(MU, S)
    a = dif.heun_sample(jax.random.PRNGKey(0), denoiser, (16, 3), CONFIG, 8)
    b = dif.heun_sample(jax.random.PRNGKey(0), denoiser, (16, 3), CONFIG, 8)
    c = dif.heun_sample(jax.random.PRNGKey(0), denoiser, (16, 3), dataclasses.replace(CONFIG, s_churn=0.0), 8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ------------------------------------------------------------------------------------------------ guidance
LAYOUT = dif.RowLayout(obs_dim=2, act_dim=1)  # rows [s0, s1, arctanh a, r, done]
STANDARDIZER = dif.Standardizer(
    mean=jnp.float32([0.3, -0.2, 0.1, 1.0, 0.0]), std=jnp.float32([2.0, 0.5, 0.8, 1.0, 1e-3])
)
TARGET = 0.6  # the toy target policy's preferred action (in [-1, 1])


def toy_log_prob(obs, action):
    """Normal(TARGET + 0.1 s0, 0.2) on each action dimension."""
    return jnp.sum(-0.5 * ((action - TARGET - 0.1 * obs[..., :1]) / 0.2) ** 2, axis=-1)


def test_layout_slices():
    assert LAYOUT.dim == 5 and LAYOUT.obs == slice(0, 2) and LAYOUT.action == slice(2, 3)
    assert (LAYOUT.reward, LAYOUT.done) == (3, 4)


def test_guidance_schedule_formula():
    n = 10
    k = np.arange(n)
    want = 0.7 * ((1 - k / n) + 0.3 * np.sin(np.pi * (k + 1) / n))
    np.testing.assert_allclose(dif.guidance_schedule(0.7, jnp.arange(n), n), want, rtol=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_guide_touches_only_the_action_columns(normalize):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, LAYOUT.dim))
    guide = dif.policy_guide(toy_log_prob, LAYOUT, STANDARDIZER, 0.5, 10, normalize=normalize)
    dx = np.asarray(guide(x, jnp.int32(2)))
    assert dx.shape == x.shape
    outside = np.ones(LAYOUT.dim, bool)
    outside[LAYOUT.action] = False
    assert np.all(dx[..., outside] == 0)
    assert np.all(dx[..., LAYOUT.action] != 0)
    # the action gradient by the chain rule through the standardizer and tanh
    raw = np.asarray(STANDARDIZER.unstandardize(x), np.float64)
    a, s0 = raw[..., 2], raw[..., 0]
    grad = -(np.tanh(a) - TARGET - 0.1 * s0) / 0.04 * (1 - np.tanh(a) ** 2) * 0.8
    if normalize:
        grad = grad / np.sqrt(np.sum(grad**2, axis=-1, keepdims=True))
    np.testing.assert_allclose(dx[..., 2], float(dif.guidance_schedule(0.5, 2, 10)) * grad, rtol=1e-4, atol=1e-6)


def test_zero_guidance_is_the_unguided_sampler_bit_for_bit():
    denoiser = gaussian_denoiser(np.zeros(LAYOUT.dim, np.float32), np.ones(LAYOUT.dim, np.float32))
    shape = (32, 8, LAYOUT.dim)
    guide = dif.policy_guide(toy_log_prob, LAYOUT, STANDARDIZER, 0.0, 16)
    assert guide is None  # a static c = 0 is no guide at all
    plain = dif.heun_sample(jax.random.PRNGKey(5), denoiser, shape, CONFIG, 16)
    guided = dif.heun_sample(jax.random.PRNGKey(5), denoiser, shape, CONFIG, 16, guide)
    np.testing.assert_array_equal(plain, guided)
    # a traced c = 0 adds 0 * gradient: equal up to XLA's rounding of a differently fused program
    traced = dif.policy_guide(toy_log_prob, LAYOUT, STANDARDIZER, jnp.float32(0.0), 16)
    np.testing.assert_allclose(
        dif.heun_sample(jax.random.PRNGKey(5), denoiser, shape, CONFIG, 16, traced), plain, rtol=1e-5, atol=1e-6
    )


def test_guidance_moves_actions_toward_the_target_and_leaves_states():
    """Standardised rows ~ N(0, 1) per dimension (exact denoiser); the raw action column has mean
    tanh-space far from TARGET. Guided samples' actions move toward TARGET; the state columns keep
    their N(0, 1) marginal (the guide never touches them and the denoiser is per dimension)."""
    steps, n = 48, 4096
    config = dataclasses.replace(CONFIG, s_churn=0.0)
    zero, one = np.zeros(LAYOUT.dim, np.float32), np.ones(LAYOUT.dim, np.float32)
    denoiser = gaussian_denoiser(zero, one)
    guide = dif.policy_guide(toy_log_prob, LAYOUT, STANDARDIZER, 0.02, steps)
    sample = jax.jit(
        lambda key, g: dif.heun_sample(key, denoiser, (n, 2, LAYOUT.dim), config, steps, g if g else None),
        static_argnums=1,
    )
    plain = np.asarray(sample(jax.random.PRNGKey(7), None))
    guided = np.asarray(sample(jax.random.PRNGKey(7), guide))
    act_plain = np.tanh(np.asarray(STANDARDIZER.unstandardize(plain))[..., 2]).ravel()
    act_guided = np.tanh(np.asarray(STANDARDIZER.unstandardize(guided))[..., 2]).ravel()
    se = act_plain.std() / math.sqrt(act_plain.size)
    assert abs(act_plain.mean()) < 0.2  # unguided: tanh of N(0.1, 0.8^2)
    assert abs(act_guided.mean() - TARGET) < abs(act_plain.mean() - TARGET) - 10 * se
    assert act_guided.std() < act_plain.std()
    for column in (0, 1):
        assert_moments(guided[:, 0, column], 0.0, 1.0)
        np.testing.assert_allclose(guided[..., column], plain[..., column], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ host-side data
def loop_window_starts(episode, length, stride):
    starts, begin = [], 0
    for i in range(1, len(episode) + 1):
        if i == len(episode) or episode[i] != episode[i - 1]:
            offset = 0
            while begin + offset + length <= i:
                starts.append(begin + offset)
                offset += stride
            begin = i
    return np.asarray(starts, np.int64)


@given(
    sizes=st.lists(st.integers(0, 40), min_size=0, max_size=12),
    length=st.integers(1, 12),
    stride=st.integers(1, 10),
)
def test_window_starts_equal_a_loop_over_episodes(sizes, length, stride):
    episode = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    starts = dif.window_starts(episode, length, stride)
    assert starts.dtype == np.int64
    np.testing.assert_array_equal(starts, loop_window_starts(episode, length, stride))
    rows = np.stack([episode.astype(np.float32), np.arange(len(episode), dtype=np.float32)], axis=1)
    windows = dif.make_windows(rows, starts, length)
    assert windows.shape == (len(starts), length, 2)
    for j, s in enumerate(starts):
        np.testing.assert_array_equal(windows[j], rows[s : s + length])
    assert np.all(windows[:, :, 0] == windows[:, :1, 0])  # no window crosses an episode boundary


def test_window_starts_worked_example():
    episode = np.array([0] * 10 + [1] * 3 + [2] * 7)
    # episode 0 (rows 0-9): 0, 4 (8 would end at 12 > 10: rows 8, 9 are in no window);
    # episode 1 (3 rows) is too short; episode 2 (rows 13-19): 13 (17 would end at 21 > 20)
    np.testing.assert_array_equal(dif.window_starts(episode, 4, 4), [0, 4, 13])
    np.testing.assert_array_equal(dif.window_starts(episode, 4, 3), [0, 3, 6, 13, 16])
    np.testing.assert_array_equal(dif.episode_ids(np.array([0, 0, 1, 0, 1, 1], bool)), [0, 0, 0, 1, 1, 2])
    with pytest.raises(UsageError):
        dif.window_starts(episode, 4, 0)


def test_rows_round_trip_and_transitions():
    rng = np.random.default_rng(0)
    n, layout = 40, dif.RowLayout(obs_dim=3, act_dim=2)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    action[0] = [1.0, -1.0]  # clipped at 0.999
    reward = rng.standard_normal(n).astype(np.float32)
    terminated = rng.random(n) < 0.2
    rows = dif.to_rows(obs, action, reward, terminated)
    assert rows.shape == (n, layout.dim) and rows.dtype == np.float32
    assert np.all(np.isfinite(rows)) and np.abs(rows[:, layout.action]).max() <= np.arctanh(0.999) + 1e-4
    obs2, action2, reward2, term2 = dif.from_rows(rows, layout)
    np.testing.assert_array_equal(obs2, obs)
    np.testing.assert_allclose(action2, action, atol=1e-3)
    np.testing.assert_array_equal(reward2, reward)
    np.testing.assert_array_equal(term2, terminated)

    windows = dif.make_windows(rows, np.array([0, 5, 30]), 6)
    batch = dif.transitions_from_windows(windows, layout)
    expect = {key: [] for key in ("obs", "action", "reward", "next_obs", "terminated")}
    for start in (0, 5, 30):
        for t in range(start, start + 5):
            for key, value in zip(expect, (obs[t], action[t], reward[t], obs[t + 1], terminated[t])):
                expect[key].append(value)
    for key, value in expect.items():
        np.testing.assert_allclose(batch[key], np.asarray(value), atol=1e-3, err_msg=key)
    assert batch["terminated"].dtype == bool and batch["obs"].shape == (15, 3)


def test_standardizer_fit_and_floor():
    rows = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    s = dif.Standardizer.fit(rows)
    np.testing.assert_allclose(s.mean, [4.5, 3.0])
    np.testing.assert_allclose(s.std, [np.arange(10.0).std(), 1e-3], rtol=1e-6)
    np.testing.assert_allclose(s.unstandardize(s.standardize(jnp.asarray(rows, jnp.float32))), rows, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ model and training
def test_config_validation():
    assert CONFIG.validate() is CONFIG
    for bad in (
        {"groups": 3},
        {"sigma_min": 100.0},
        {"channels": ()},
        {"kernel_size": 4},
        {"ema_decay": 1.5},
        {"lr": 0.0},
        {"s_churn": float("nan")},
    ):
        with pytest.raises(UsageError):
            dataclasses.replace(CONFIG, **bad).validate()
    with pytest.raises(UsageError):
        CONFIG.check_length(30)
    with pytest.raises(UsageError):
        dif.make_update(CONFIG, CONFIG.warmup_steps)


def test_unet_keeps_the_window_shape_and_compiles_once():
    apply = jax.jit(dif.make_model(TINY).apply)
    for dim in (1, 4, 7):
        x = jax.random.normal(jax.random.PRNGKey(dim), (2, 32, dim))
        params = dif.init_state(jax.random.PRNGKey(0), TINY, 32, dim).params
        out = np.asarray(apply(params, x, jnp.zeros(2)))
        assert out.shape == x.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out, 0.0)  # zero-initialised output layer
        shifted = jax.tree.map(lambda p: p + 0.01, params)
        assert np.any(np.asarray(apply(shifted, x, jnp.ones(2))) != 0)
    assert apply._cache_size() == 3  # one compilation per dim: new parameter values do not recompile


def test_training_reduces_the_loss_and_the_update_is_pure():
    config = dataclasses.replace(TINY, channels=(8, 16))  # two levels: a quicker compile
    length, dim, steps = 8, 3, 300
    # a fixed set of 32 windows (standardised scale): sine curves with a random phase per window and column
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, length)[None, :, None]
    data = jnp.asarray(np.sin(2 * np.pi * (t + rng.uniform(0, 1, (32, 1, dim)))), jnp.float32)
    state = dif.init_state(jax.random.PRNGKey(0), config, length, dim)
    update = jax.jit(dif.make_update(config, steps))
    apply = dif.make_model(config).apply
    keys = jax.random.split(jax.random.PRNGKey(9), 16)
    held_out = jax.jit(lambda params: jnp.mean(jax.vmap(lambda k: dif.edm_loss(params, apply, k, data, config))(keys)))

    before = float(held_out(state.ema_params))
    s1, loss1 = update(state, jax.random.PRNGKey(1), data)
    s2, loss2 = update(state, jax.random.PRNGKey(1), data)
    jax.tree.map(np.testing.assert_array_equal, s1, s2)  # pure: same key, same state
    assert float(loss1) == float(loss2) and int(s1.step) == 1
    # EMA after one step: decay * old + (1 - decay) * new parameters
    jax.tree.map(
        lambda e, old, p: np.testing.assert_allclose(e, 0.995 * old + 0.005 * p, rtol=1e-5, atol=1e-7),
        s1.ema_params,
        state.ema_params,
        s1.params,
    )
    final = s1
    for key in jax.random.split(jax.random.PRNGKey(2), steps - 1):
        final, _ = update(final, key, data)
    assert int(final.step) == steps
    after_params, after_ema = float(held_out(final.params)), float(held_out(final.ema_params))
    assert after_params < 0.75 * before, (before, after_params)
    assert after_ema < 0.9 * before, (before, after_ema)
    dist = lambda a, b: sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert dist(final.ema_params, final.params) < dist(state.params, final.params)  # the EMA followed the params

    # sampling from the trained model: raw units, chunked, and c = 0 equal to no guidance
    layout = dif.RowLayout(obs_dim=1, act_dim=0)  # dim 3: [s, r, done]
    standardizer = dif.Standardizer(mean=jnp.float32([1.0, 0.0, 0.0]), std=jnp.float32([2.0, 1.0, 1.0]))
    common = dict(config=config, length=length, layout=layout, standardizer=standardizer, num_steps=6, batch=3)
    out = dif.sample_windows(jax.random.PRNGKey(4), final.ema_params, apply, n=7, **common)
    assert out.shape == (7, length, dim) and out.dtype == jnp.float32 and np.all(np.isfinite(out))
    same = dif.sample_windows(
        jax.random.PRNGKey(4), final.ema_params, apply, n=7, log_prob_fn=toy_log_prob, guidance=0.0, **common
    )
    np.testing.assert_array_equal(out, same)
    first = dif.sample_windows(jax.random.PRNGKey(4), final.ema_params, apply, n=3, **common)
    np.testing.assert_array_equal(out[:3], first)  # chunk i comes from fold_in(key, i)
