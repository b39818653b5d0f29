"""The autoregressive world model (`agentlab.rl.world_model`): it learns a known noisy linear system
(mean and noise variance), its members differ, its rollouts chain their own predictions, and it is
pure."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentlab.errors import UsageError
from agentlab.rl import world_model as wm
from agentlab.rl.offline import Batch

OBS_DIM, ACT_DIM, NOISE = 3, 2, 0.1
KEY = jnp.array([5, 9], jnp.uint32)
CONFIG = wm.WorldModelConfig(hidden=(64, 64))


@functools.cache
def system():
    """``s' = A s + B a + 0.1 N(0, I)``, ``r = c . s``, with s ~ N(0, I), a ~ U[-1, 1]: 8192 rows."""
    rng = np.random.default_rng(0)
    a_mat = 0.8 * np.eye(OBS_DIM) + 0.1 * rng.normal(size=(OBS_DIM, OBS_DIM))
    b_mat = 0.5 * rng.normal(size=(OBS_DIM, ACT_DIM))
    c = rng.normal(size=OBS_DIM)
    obs = rng.normal(size=(8192, OBS_DIM))
    action = rng.uniform(-1, 1, size=(8192, ACT_DIM))
    next_obs = obs @ a_mat.T + action @ b_mat.T + NOISE * rng.normal(size=obs.shape)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    data = Batch(f32(obs), f32(action), f32(obs @ c), f32(next_obs), jnp.zeros(8192, jnp.float32))
    return data, a_mat, b_mat, c


@functools.cache
def trained():
    data = system()[0]
    state = wm.init(KEY, CONFIG, data)
    state, metrics = jax.jit(wm.fit, static_argnums=3)(KEY, state, data, 1500)
    return state, metrics


def test_learns_a_linear_system_and_its_noise():
    data, a_mat, b_mat, c = system()
    state, metrics = trained()
    assert float(metrics["nll"][-1]) < float(metrics["nll"][0])
    rng = np.random.default_rng(1)
    obs, action = rng.normal(size=(1000, OBS_DIM)), rng.uniform(-1, 1, size=(1000, ACT_DIM))
    mean, var = wm.distribution(state, jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32))
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    delta = obs @ a_mat.T + action @ b_mat.T - obs
    spread = np.var(np.asarray(data.next_obs - data.obs), axis=0)  # about 0.2-0.5 per dimension
    error = np.mean((mean[..., :OBS_DIM] - delta) ** 2, axis=(0, 1))
    assert np.all(error < 0.02 * spread), (error, spread)  # measured: about 3e-4 vs 0.2
    assert np.mean((mean[..., -1] - obs @ c) ** 2) < 0.01 * np.var(obs @ c)
    ratio = var[..., :OBS_DIM].mean(axis=(0, 1)) / NOISE**2
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio  # measured: about 1.0
    assert np.all(var[..., -1].mean() < 0.1 * NOISE**2)  # the reward has no noise


def test_members_differ_at_init_and_update_bootstraps():
    data = system()[0]
    state = wm.init(KEY, CONFIG, data)
    kernel = state.params["params"]["Dense_0"]["kernel"]
    assert kernel.shape[0] == CONFIG.members
    assert not np.allclose(kernel[0], kernel[1])
    mean, _ = wm.distribution(state, data.obs[:4], data.action[:4])
    assert mean.shape == (CONFIG.members, 4, OBS_DIM + 1)
    assert not np.allclose(mean[0], mean[1])
    batch = jax.tree.map(lambda x: x[:32], data)
    new, metrics = jax.jit(wm.update)(state, batch, KEY)
    again, _ = jax.jit(wm.update)(state, batch, KEY)
    for x, y in zip(jax.tree.leaves(new), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
    with pytest.raises(UsageError, match="blocks"):
        wm.update(state, jax.tree.map(lambda x: x[None].repeat(2, 0)[:, :8], data), KEY)


def test_loss_matches_numpy():
    data = system()[0]
    state = wm.init(KEY, CONFIG, data)
    block = jax.tree.map(lambda x: jnp.stack([x[i * 4 : i * 4 + 4] for i in range(CONFIG.members)]), data)
    total, _ = wm.loss(state.params, state, block)
    mean, var = [], []
    for m in range(CONFIG.members):  # each member on its own block
        mu, v = wm.distribution(state, block.obs[m], block.action[m])
        mean.append(np.asarray(mu[m], np.float64))
        var.append(np.asarray(v[m], np.float64))
    mean, var = np.stack(mean), np.stack(var)
    std = np.asarray(state.out_std, np.float64)
    target = np.concatenate([np.asarray(block.next_obs - block.obs), np.asarray(block.reward)[..., None]], -1)
    z_mean, z_target, z_var = mean / std, target / std, var / std**2  # standardised (the shift cancels)
    nll = 0.5 * np.sum((z_target - z_mean) ** 2 / z_var + np.log(z_var), axis=-1).mean(axis=-1).sum()
    p = state.params["params"]
    bounds = float(p["max_logvar"].sum() - p["min_logvar"].sum())
    assert float(total) == pytest.approx(nll + 0.01 * bounds, rel=1e-4)


def test_predict_members_and_purity():
    state = trained()[0]
    data = system()[0]
    obs, action = data.obs[:16], data.action[:16]
    predict = jax.jit(wm.predict, static_argnames=("member", "deterministic"))
    a = predict(state, obs, action, KEY)
    b = predict(state, obs, action, KEY)
    c = predict(state, obs, action, jnp.array([1, 2], jnp.uint32))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])
    mean, _ = wm.distribution(state, obs, action)
    nxt, rew = predict(state, obs, action, KEY, member=2, deterministic=True)
    np.testing.assert_allclose(nxt, obs + mean[2, :, :OBS_DIM], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rew, mean[2, :, -1], rtol=1e-5, atol=1e-5)
    penalised = wm.predict(
        state.replace(config=wm.WorldModelConfig(hidden=(64, 64), reward_penalty=1.0)), obs, action, KEY
    )
    assert np.all(np.asarray(penalised[1]) < np.asarray(a[1]))


def test_rollout_chains_its_predictions():
    state = trained()[0]
    start = system()[0].obs[:8]
    policy = lambda obs: jnp.tanh(obs[:, :ACT_DIM])  # noqa: E731
    run = jax.jit(wm.rollout, static_argnums=(2, 4))
    out = run(KEY, state, policy, start, 5)
    assert out.obs.shape == (40, OBS_DIM) and out.action.shape == (40, ACT_DIM)
    assert out.reward.shape == (40,) and out.done.shape == (40,) and out.next_obs.shape == (40, OBS_DIM)
    np.testing.assert_array_equal(out.obs[:8], start)
    for t in range(4):
        np.testing.assert_array_equal(out.obs[(t + 1) * 8 : (t + 2) * 8], out.next_obs[t * 8 : (t + 1) * 8])
    np.testing.assert_allclose(out.action, policy(out.obs), rtol=1e-6)
    np.testing.assert_array_equal(out.done, 0.0)
    again = run(KEY, state, policy, start, 5)
    np.testing.assert_array_equal(again.next_obs, out.next_obs)

    ends = lambda obs, action, next_obs: next_obs[:, 0] > 0  # noqa: E731
    out = wm.rollout(KEY, state, policy, start, 3, termination_fn=ends)
    done = np.asarray(out.done).reshape(3, 8) > 0
    assert done.any() and (~done).any()
    obs, nxt = np.asarray(out.obs).reshape(3, 8, -1), np.asarray(out.next_obs).reshape(3, 8, -1)
    for t in range(2):
        expected = np.where(done[t][:, None], np.asarray(start), nxt[t])
        np.testing.assert_array_equal(obs[t + 1], expected)


def test_validation():
    with pytest.raises(UsageError, match="members"):
        wm.WorldModelConfig(members=0).validate()
    with pytest.raises(UsageError, match="init_min_logvar"):
        wm.WorldModelConfig(init_min_logvar=1.0).validate()
    assert wm.WorldModelConfig().hidden == (200, 200, 200)
