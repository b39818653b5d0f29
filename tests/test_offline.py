"""TD3+BC and IQL (`agentlab.rl.offline`): each loss against NumPy on a fixed batch with the networks
recomputed in NumPy from their weights; the target update, the actor's delay, determinism, vmap over
seeds, the guidance log-likelihoods, the samplers, and that both agents learn a 1-step bandit."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentlab.errors import UsageError
from agentlab.rl import offline as off

OBS_DIM, ACT_DIM, ROWS = 3, 2, 6
KEY = jnp.array([7, 11], jnp.uint32)
SMALL = (8, 8)


def relu(x):
    return np.maximum(x, 0.0)


def np_mlp(layers: dict, x: np.ndarray) -> np.ndarray:
    """A ReLU MLP from flax's ``Dense_i`` weights (the last layer linear)."""
    names = sorted(layers, key=lambda n: int(n.split("_")[1]))
    for i, name in enumerate(names):
        x = x @ np.asarray(layers[name]["kernel"], np.float64) + np.asarray(layers[name]["bias"], np.float64)
        if i < len(names) - 1:
            x = relu(x)
    return x


def np_twin(params: dict, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """``(2, B)``: the twin critics from their stacked weights."""
    layers = params["params"]["VmapMLP_0"]
    x = np.concatenate([obs, action], axis=-1)
    return np.stack([np_mlp(jax.tree.map(lambda w, i=i: np.asarray(w)[i], layers), x)[:, 0] for i in range(2)])


def fixed_batch(done_row: int = 2) -> off.Batch:
    rng = np.random.default_rng(3)
    done = np.zeros(ROWS, np.float32)
    done[done_row] = 1.0
    return off.Batch(
        obs=jnp.asarray(rng.normal(size=(ROWS, OBS_DIM)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(ROWS, ACT_DIM)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=ROWS), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(ROWS, OBS_DIM)), jnp.float32),
        done=jnp.asarray(done),
    )


def np_batch(batch: off.Batch) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(getattr(batch, name), np.float64) for name in ("obs", "action", "reward", "next_obs", "done")
    }


OBS_MEAN = np.array([0.5, -0.2, 0.1], np.float32)
OBS_STD = np.array([2.0, 0.5, 1.0], np.float32)


def td3bc_state(**overrides) -> off.TD3BCState:
    config = off.TD3BCConfig(hidden=SMALL, **overrides)
    state = off.td3bc_init(KEY, config, OBS_DIM, ACT_DIM, OBS_MEAN, OBS_STD)
    # distinct targets, so that a loss reading the wrong weights fails
    shift = lambda tree: jax.tree.map(lambda w: w + 0.05, tree)  # noqa: E731
    return state.replace(actor_target=shift(state.actor), critic_target=shift(state.critic))


def iql_state(**overrides) -> off.IQLState:
    state = off.iql_init(KEY, off.IQLConfig(hidden=SMALL, **overrides), OBS_DIM, ACT_DIM)
    actor = jax.tree.map(lambda w: w, state.actor)
    actor["params"]["log_std"] = jnp.array([0.3, -0.5], jnp.float32)
    return state.replace(actor=actor, critic_target=jax.tree.map(lambda w: w - 0.05, state.critic))


def norm(obs: np.ndarray) -> np.ndarray:
    return (obs - OBS_MEAN) / (OBS_STD + off.OBS_STD_EPS)


# ------------------------------------------------------------------------------------------------ TD3+BC
def test_td3bc_critic_loss_matches_numpy():
    state, batch = td3bc_state(policy_noise=0.0), fixed_batch()
    b = np_batch(batch)
    target = np.asarray(off.td3bc_target(state, batch, KEY), np.float64)
    pi_next = np.clip(np.tanh(np_mlp(state.actor_target["params"], norm(b["next_obs"]))), -1, 1)
    q_next = np_twin(state.critic_target, norm(b["next_obs"]), pi_next).min(axis=0)
    expected_target = b["reward"] + 0.99 * (1 - b["done"]) * q_next
    np.testing.assert_allclose(target, expected_target, rtol=1e-5, atol=1e-6)
    assert target[2] == pytest.approx(b["reward"][2])  # the done row does not bootstrap
    q = np_twin(state.critic, norm(b["obs"]), b["action"])
    expected = np.mean((q[0] - expected_target) ** 2) + np.mean((q[1] - expected_target) ** 2)
    loss, _ = off.td3bc_critic_loss(state.critic, state, batch, jnp.asarray(expected_target, jnp.float32))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_td3bc_target_noise_is_clipped():
    state, batch = td3bc_state(policy_noise=100.0, noise_clip=0.1), fixed_batch()
    b = np_batch(batch)
    pi_next = np.tanh(np_mlp(state.actor_target["params"], norm(b["next_obs"])))
    target = np.asarray(off.td3bc_target(state, batch, KEY), np.float64)
    # with a huge noise every component is pushed to +-noise_clip: the target is one of 4 corner actions
    candidates = []
    for s0 in (-0.1, 0.1):
        for s1 in (-0.1, 0.1):
            a = np.clip(pi_next + np.array([s0, s1]), -1, 1)
            q = np_twin(state.critic_target, norm(b["next_obs"]), a).min(axis=0)
            candidates.append(b["reward"] + 0.99 * (1 - b["done"]) * q)
    gap = np.min(np.abs(np.stack(candidates) - target), axis=0)
    assert np.all(gap < 1e-5)


def test_td3bc_actor_loss_and_lambda_match_numpy():
    state, batch = td3bc_state(), fixed_batch()
    b = np_batch(batch)
    pi = np.tanh(np_mlp(state.actor["params"], norm(b["obs"])))
    q1 = np_twin(state.critic, norm(b["obs"]), pi)[0]
    lam = 2.5 / np.mean(np.abs(q1))
    expected = -lam * np.mean(q1) + np.mean((pi - b["action"]) ** 2)
    loss, info = off.td3bc_actor_loss(state.actor, state, batch)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(info["lambda"]) == pytest.approx(lam, rel=1e-5)
    # lambda is a constant in the gradient: the gradient equals that of the loss with lambda fixed
    fixed = lambda p: (
        -lam * jnp.mean(off.td3bc_q(state, state.critic, batch.obs, off.td3bc_policy(state, p, batch.obs))[0])
        + jnp.mean(  # noqa: E501, E731
            (off.td3bc_policy(state, p, batch.obs) - batch.action) ** 2
        )
    )
    got = jax.grad(lambda p: off.td3bc_actor_loss(p, state, batch)[0])(state.actor)
    want = jax.grad(fixed)(state.actor)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_polyak():
    online, target = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, -1.0])}
    out = off.polyak(online, target, 0.1)
    np.testing.assert_allclose(out["w"], [0.1 * 1 + 0.9 * 3, 0.1 * 2 - 0.9], rtol=1e-6)


@functools.cache
def jit_update():
    return jax.jit(off.update)


def test_td3bc_actor_and_targets_update_every_policy_freq():
    state, batch = td3bc_state(), fixed_batch()
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # noqa: E731
    s1, m1 = jit_update()(state, batch, KEY)
    assert not bool(m1["actor_updated"]) and int(s1.step) == 1
    assert not same(s1.critic, state.critic)
    assert same(s1.actor, state.actor) and same(s1.actor_target, state.actor_target)
    assert same(s1.critic_target, state.critic_target)
    s2, m2 = jit_update()(s1, batch, KEY)
    assert bool(m2["actor_updated"])
    assert not same(s2.actor, s1.actor)
    expected = off.polyak(s2.critic, s1.critic_target, 0.005)
    for got, want in zip(jax.tree.leaves(s2.critic_target), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    expected = off.polyak(s2.actor, s1.actor_target, 0.005)
    for got, want in zip(jax.tree.leaves(s2.actor_target), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    s3, m3 = jit_update()(s2, batch, KEY)
    assert not bool(m3["actor_updated"]) and same(s3.actor, s2.actor)


def test_td3bc_log_prob_is_unit_normal_and_its_gradient():
    state, batch = td3bc_state(), fixed_batch()
    mu = np.asarray(off.act(state, batch.obs), np.float64)
    a = np_batch(batch)["action"]
    expected = np.sum(-0.5 * (a - mu) ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(off.log_prob(state, batch.obs, batch.action), expected, rtol=1e-5)
    grad = jax.grad(lambda x: off.log_prob(state, batch.obs, x).sum())(batch.action)
    np.testing.assert_allclose(grad, mu - a, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(mu) <= 1)


# --------------------------------------------------------------------------------------------------- IQL
def test_expectile_loss_worked_values():
    assert float(off.expectile_loss(jnp.array([-1.0, 2.0]), 0.7)) == pytest.approx((0.3 * 1 + 0.7 * 4) / 2)
    assert float(off.expectile_loss(jnp.array([3.0]), 0.5)) == pytest.approx(0.5 * 9)


def test_iql_losses_match_numpy():
    state, batch = iql_state(), fixed_batch()
    b = np_batch(batch)
    q_targ = np_twin(state.critic_target, b["obs"], b["action"]).min(axis=0)
    v = np_mlp(state.value["params"], b["obs"])[:, 0]
    u = q_targ - v
    expected_v = np.mean(np.where(u > 0, 0.7, 0.3) * u**2)
    assert float(off.iql_value_loss(state.value, state, batch)[0]) == pytest.approx(expected_v, rel=1e-5)

    y = b["reward"] + 0.99 * (1 - b["done"]) * np_mlp(state.value["params"], b["next_obs"])[:, 0]
    q = np_twin(state.critic, b["obs"], b["action"])
    expected_q = np.mean((q[0] - y) ** 2) + np.mean((q[1] - y) ** 2)
    assert float(off.iql_critic_loss(state.critic, state, batch)[0]) == pytest.approx(expected_q, rel=1e-5)

    mean = np.tanh(np_mlp(state.actor["params"]["MLP_0"], b["obs"]))
    log_std = np.array([0.3, -0.5])
    logp = np.sum(-0.5 * ((b["action"] - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)
    weight = np.minimum(np.exp(3.0 * u), 100.0)
    expected_pi = -np.mean(weight * logp)
    assert float(off.iql_actor_loss(state.actor, state, batch)[0]) == pytest.approx(expected_pi, rel=1e-5)
    np.testing.assert_allclose(off.log_prob(state, batch.obs, batch.action), logp, rtol=1e-5)
    np.testing.assert_allclose(off.act(state, batch.obs), mean, rtol=1e-5, atol=1e-6)


def test_iql_advantage_weight_clipped_and_log_std_clipped():
    state, batch = iql_state(beta=1e4), fixed_batch()
    _, info = off.iql_actor_loss(state.actor, state, batch)
    assert float(info["adv_weight"]) <= 100.0
    actor = jax.tree.map(lambda w: w, state.actor)
    actor["params"]["log_std"] = jnp.array([9.0, -9.0], jnp.float32)
    _, log_std = off.iql_policy(state, actor, batch.obs)
    np.testing.assert_array_equal(log_std, [2.0, -5.0])


def test_iql_update_order_and_target():
    state, batch = iql_state(), fixed_batch()
    new, metrics = jit_update()(state, batch, KEY)
    expected = off.polyak(new.critic, state.critic_target, 0.005)
    for got, want in zip(jax.tree.leaves(new.critic_target), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # the critic's metric is computed with the value already stepped
    stepped = state.replace(value=new.value)
    assert float(metrics["critic_loss"]) == pytest.approx(float(off.iql_critic_loss(state.critic, stepped, batch)[0]))
    assert int(new.step) == 1


# ------------------------------------------------------------------------------------------ both agents
@pytest.mark.parametrize("name", ["td3bc", "iql"])
def test_update_is_deterministic_and_vmaps_over_seeds(name):
    agent = off.AGENTS[name]
    config = agent.config(hidden=SMALL)
    keys = jnp.array([[1, 2], [3, 4]], jnp.uint32)
    states = jax.vmap(lambda k: agent.init(k, config, OBS_DIM, ACT_DIM))(keys)
    batch = fixed_batch()
    step = jax.jit(agent.update)
    batched, _ = jax.jit(jax.vmap(agent.update, in_axes=(0, None, 0)))(states, batch, keys)
    for i in range(2):
        one = agent.init(keys[i], config, OBS_DIM, ACT_DIM)
        a, ma = step(one, batch, keys[i])
        b, mb = step(one, batch, keys[i])
        for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(batched), strict=True):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_allclose(z[i], x, rtol=1e-5, atol=1e-6)
    first = jax.tree.leaves(batched.critic)[0]
    assert not np.allclose(first[0], first[1])  # the seeds differ


def bandit(rows: int = 4096, obs_dim: int = 4, act_dim: int = 2):
    """A 1-step bandit: ``a*(s) = 0.3 tanh(s[:act_dim])``, reward ``-|a - a*|^2``, behaviour actions
    ``clip(a* + 0.3 + 0.5 N(0, 1))``: biased by +0.3, so behaviour cloning would stay near a* + 0.3."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    best = 0.3 * np.tanh(obs[:, :act_dim])
    action = np.clip(best + 0.3 + 0.5 * rng.normal(size=(rows, act_dim)), -1, 1).astype(np.float32)
    reward = -np.sum((action - best) ** 2, axis=-1).astype(np.float32)
    data = off.Batch(
        obs=jnp.asarray(obs),
        action=jnp.asarray(action),
        reward=jnp.asarray(reward),
        next_obs=jnp.asarray(obs),
        done=jnp.ones(rows, jnp.float32),
    )
    bc_error = float(np.mean(np.abs(np.mean(action - best, axis=0))))  # what the behaviour mean misses by
    return data, obs, best, bc_error


def train_bandit(name: str, **overrides) -> tuple[float, float]:
    """(error before, error after) of 600 updates on `bandit`: mean |act(s) - a*(s)|."""
    data, obs, best, _ = bandit()
    agent = off.AGENTS[name]
    extra = {"total_updates": 600} if name == "iql" else {}
    config = agent.config(hidden=(64, 64), **extra, **overrides)
    state = agent.init(KEY, config, obs.shape[1], best.shape[1], obs.mean(0), obs.std(0))

    @jax.jit
    def train(state):
        def body(state, t):
            key = jax.random.fold_in(jax.random.PRNGKey(1), t)
            return agent.update(state, off.sample_batch(key, data, 256), key)

        return jax.lax.scan(body, state, jnp.arange(600))

    before = np.mean(np.abs(np.asarray(agent.act(state, obs)) - best))
    state, _ = train(state)
    return float(before), float(np.mean(np.abs(np.asarray(agent.act(state, obs)) - best)))


def test_td3bc_learns_a_biased_bandit():
    bc_error = bandit()[3]
    before, after = train_bandit("td3bc")
    assert bc_error > 0.25
    assert after < 0.5 * bc_error and after < 0.5 * before, (before, after, bc_error)  # measured: 0.43 -> 0.086


def test_iql_learns_a_biased_bandit_better_than_behaviour_cloning():
    bc_error = bandit()[3]
    _, after = train_bandit("iql")
    _, cloned = train_bandit("iql", beta=0.0)  # beta 0: every weight 1, plain behaviour cloning
    assert cloned > 0.8 * bc_error, cloned  # cloning ends near the behaviour's bias (measured 0.27 vs 0.28)
    assert after < 0.65 * bc_error and after < 0.7 * cloned, (after, cloned, bc_error)  # measured 0.12


# ---------------------------------------------------------------------------------------------- sampling
def test_sample_and_mixed_batch():
    real = off.Batch(
        obs=jnp.arange(20, dtype=jnp.float32).reshape(10, 2),
        action=jnp.zeros((10, 1)),
        reward=jnp.arange(10, dtype=jnp.float32),
        next_obs=jnp.zeros((10, 2)),
        done=jnp.zeros(10),
    )
    synthetic = jax.tree.map(lambda x: x + 1000.0, real)
    batch = jax.jit(off.sample_batch, static_argnums=2)(KEY, real, 64)
    assert batch.obs.shape == (64, 2) and batch.reward.shape == (64,)
    np.testing.assert_array_equal(batch.obs[:, 0], 2 * batch.reward)  # whole rows
    assert len(np.unique(batch.reward)) > 5
    mixed = jax.jit(off.mixed_batch)(KEY, real, synthetic)
    assert mixed.obs.shape == (256, 2)
    assert np.all(np.asarray(mixed.reward[:16]) < 10) and np.all(np.asarray(mixed.reward[16:]) >= 1000)
    again = off.mixed_batch(KEY, real, synthetic)
    np.testing.assert_array_equal(again.reward, mixed.reward)


def test_validation_and_dispatch():
    with pytest.raises(UsageError, match="expectile"):
        off.IQLConfig(expectile=1.0).validate()
    with pytest.raises(UsageError, match="policy_freq"):
        off.TD3BCConfig(policy_freq=0).validate()
    with pytest.raises(UsageError, match="hidden"):
        off.init(KEY, off.TD3BCConfig(hidden=()), OBS_DIM, ACT_DIM)
    with pytest.raises(UsageError, match="obs_mean"):
        off.init(KEY, off.TD3BCConfig(), OBS_DIM, ACT_DIM, np.zeros(2), np.ones(2))
    with pytest.raises(UsageError, match="config"):
        off.init(KEY, object(), OBS_DIM, ACT_DIM)
    assert isinstance(off.init(KEY, off.IQLConfig(hidden=SMALL), OBS_DIM, ACT_DIM), off.IQLState)
    assert off.TD3BCConfig().alpha == 2.5 and off.IQLConfig().beta == 3.0
