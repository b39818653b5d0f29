"""MAMQL and its baselines (agentlab.rl.mamql) on the `coordination` kernel: the loss against a NumPy
computation of the formula, the marginal critic's independence of the other agent's action, seeds
under `vmap`, determinism, and learning from demonstrations (bc and MAMQL)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentlab import compiler, hashing
from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.rl.mamql import MAMQL, MAMQLConfig, prepare_data

ENV, PARAMS = make("coordination", num_agents=2)
MASK = np.asarray(ENV.action_mask(PARAMS))  # the leader (agent 0) may not pick the last option
K = ENV.num_actions
SMALL = MAMQLConfig(hidden=(8,), batch_size=4, buffer_size=64, rollout_envs=2, rollout_steps=4, updates_per_chunk=3)
LEARN = MAMQLConfig(online=False, hidden=(64, 64), batch_size=256, updates_per_chunk=100)
EVAL = functools.partial(jax.jit, static_argnames=("env", "episodes", "greedy", "max_steps"))


@functools.cache
def learner(config: MAMQLConfig) -> MAMQL:
    return MAMQL(config, ENV, PARAMS)


@functools.cache
def jitted(config: MAMQLConfig):
    """``(learner, init, chunk, logits)``, compiled once per config."""
    learn = learner(config)
    return learn, compiler.jit(learn.init), compiler.jit(learn.chunk), compiler.jit(learn.logits)


@functools.cache
def _collect():
    def lane(key, eps):
        obs, state = ENV.reset(hashing.derive_key(key, 0), PARAMS)

        def step(carry, t):
            obs, state = carry
            k = hashing.derive_key(key, t + 1)
            words = hashing.key_words(k, (2, 2))
            rand = (words[1] % jnp.asarray(MASK.sum(axis=1), jnp.uint32)).astype(jnp.int32)  # an allowed action
            action = jnp.where(hashing.uniform(words[0]) < eps, rand, 0)
            nobs, state, reward, term, trunc, info = ENV.step(hashing.derive_key(k, 7), state, action, PARAMS)
            row = dict(obs=obs, action=action, reward=reward, next_obs=info["final_observation"], terminated=term)
            return (nobs, state), dict(row, truncated=trunc)

        return jax.lax.scan(step, (obs, state), jnp.arange(64, dtype=jnp.uint32))[1]

    def collect(key, eps):
        rows = jax.vmap(lane, in_axes=(0, None))(hashing.split_key(key, 32), eps)
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), rows)

    return jax.jit(collect)


@functools.cache
def dataset(eps: float, seed: int = 0) -> dict[str, np.ndarray]:
    """2048 joint transitions (32 lanes x 64 steps) of the noisy expert: both agents pick action 0,
    or with probability `eps` a uniform allowed action; the dict of NumPy arrays a driver writes."""
    out = _collect()(jax.random.PRNGKey(seed), jnp.float32(eps))
    return {name: np.asarray(value) for name, value in out.items()}


def tiny_batch(rng, size: int) -> dict[str, jnp.ndarray]:
    action = np.stack([rng.integers(0, K - 1, size), rng.integers(0, K, size)], axis=1).astype(np.int32)
    return {
        "obs": jnp.asarray(rng.random((size, 2, ENV.obs_dim)), jnp.float32),
        "next_obs": jnp.asarray(rng.random((size, 2, ENV.obs_dim)), jnp.float32),
        "action": jnp.asarray(action),
        "terminated": jnp.asarray(np.arange(size) % 3 == 1),
    }


# ----------------------------------------------------------------------------------- NumPy reference
def agent(tree, i: int):
    """Agent i's weights (the leading agent axis sliced off)."""
    return jax.tree.map(lambda w: w[i], tree)


def raw_outputs(learn: MAMQL, tree, obs) -> np.ndarray:
    """Agent i's network on agent i's observation, one agent at a time, float64 (B, agents, outputs)."""
    out = [learn.critic.apply(agent(tree, i), obs[:, i]) for i in range(2)]
    return np.stack([np.asarray(o, np.float64) for o in out], axis=1)


def np_soft_value(q, allowed, lam):
    z = np.where(allowed, q / lam, -np.inf)
    top = z.max(axis=-1, keepdims=True)
    return lam * (np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0])


def np_loss(learn: MAMQL, params, expert, policy) -> np.ndarray:
    """Per-agent loss, written straight from the formula."""
    cfg = learn.config
    joint = cfg.algo == "iq-joint"
    allowed = (MASK[0][:, None] & MASK[1][None, :]).reshape(-1) if joint else MASK
    allowed = np.broadcast_to(allowed, (2, K * K if joint else K))
    lam, gamma = cfg.temperature, cfg.gamma
    e = {k: np.asarray(v) for k, v in expert.items()}
    q = raw_outputs(learn, params["critic"], e["obs"])
    v_next = np_soft_value(raw_outputs(learn, params["critic"], e["next_obs"]), allowed, lam)
    index = e["action"][:, 0] * K + e["action"][:, 1] if joint else None
    q_sa = np.stack([q[np.arange(len(q)), i, index if joint else e["action"][:, i]] for i in range(2)], axis=1)
    y = q_sa - gamma * (1 - e["terminated"][:, None]) * v_next
    phi = y - y**2 / (4 * cfg.chi2_alpha) if cfg.phi == "chi2" else y
    p = e if policy is None else {k: np.asarray(v) for k, v in policy.items()}
    v_s = np_soft_value(raw_outputs(learn, params["critic"], p["obs"]), allowed, lam)
    v_s2 = np_soft_value(raw_outputs(learn, params["critic"], p["next_obs"]), allowed, lam)
    policy_term = (v_s - gamma * (1 - p["terminated"][:, None]) * v_s2).mean(axis=0)
    l2 = sum(np.sum(np.asarray(w, np.float64).reshape(2, -1) ** 2, axis=1) for w in jax.tree.leaves(params))
    loss = policy_term - phi.mean(axis=0) + cfg.l2 * l2
    if joint:  # agent i's model of the other agent, cross-entropy on the other's action
        out = [learn.model.apply(agent(params["model"], i), e["obs"][:, i]) for i in range(2)]
        for i in range(2):
            z = np.where(MASK[1 - i], np.asarray(out[i], np.float64), -np.inf)
            logp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
            loss[i] -= logp[np.arange(len(z)), e["action"][:, 1 - i]].mean()
    return loss


@pytest.mark.parametrize(
    "algo, phi, online",
    [
        ("mamql", "chi2", True),
        ("mamql", "linear", True),
        ("mamql", "chi2", False),
        ("iq-joint", "chi2", True),
        ("iq-joint", "linear", False),
    ],
)
def test_loss_matches_numpy(algo, phi, online):
    cfg = dataclasses.replace(
        SMALL, algo=algo, phi=phi, online=online, temperature=0.7, gamma=0.9, chi2_alpha=0.8, l2=1e-2
    )
    learn = learner(cfg)
    params = learn.init_params(jnp.asarray([3, 4], jnp.uint32))
    rng = np.random.default_rng(1)
    expert, policy = tiny_batch(rng, 5), tiny_batch(rng, 3)
    policy = policy if online else None
    total, terms = jax.jit(learn.loss)(params, expert, policy)
    want = np_loss(learn, params, expert, policy)
    np.testing.assert_allclose(np.asarray(terms["loss"]), want, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(float(total), want.sum(), rtol=2e-5, atol=2e-5)


def test_bc_loss_and_logits_match_numpy():
    rng = np.random.default_rng(2)
    batch = tiny_batch(rng, 6)
    # bc: cross-entropy of the masked logits
    learn = learner(dataclasses.replace(SMALL, algo="bc", l2=0.0))
    params = learn.init_params(jnp.asarray([5, 6], jnp.uint32))
    z = np.where(MASK, raw_outputs(learn, params["critic"], np.asarray(batch["obs"])), -np.inf)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    a = np.asarray(batch["action"])
    want = [-logp[np.arange(6), i, a[:, i]].mean() for i in range(2)]
    np.testing.assert_allclose(np.asarray(jax.jit(learn.loss)(params, batch)[1]["loss"]), want, rtol=1e-5)
    # iq-joint acts on its joint critic marginalised over its model of the other agent
    learn = learner(dataclasses.replace(SMALL, algo="iq-joint", temperature=0.5))
    params = learn.init_params(jnp.asarray([7, 8], jnp.uint32))
    obs = np.asarray(batch["obs"])
    q = raw_outputs(learn, params["critic"], obs).reshape(6, 2, K, K)  # [b, i, a0, a1]
    q = np.where(MASK[0][:, None] & MASK[1][None, :], q, 0.0)
    model = [np.asarray(learn.model.apply(agent(params["model"], i), obs[:, i])) for i in range(2)]
    other = [np.exp(np.where(MASK[1 - i], m, -np.inf) - m.max(-1, keepdims=True)) for i, m in enumerate(model)]
    other = [o / o.sum(-1, keepdims=True) for o in other]
    q0 = np.einsum("bxy,by->bx", q[:, 0], other[0])
    q1 = np.einsum("bxy,bx->by", q[:, 1], other[1])
    got = np.asarray(learn.logits(params, batch["obs"]))
    np.testing.assert_allclose(got[:, 0, : K - 1], q0[:, : K - 1] / 0.5, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[:, 1], q1 / 0.5, rtol=1e-4, atol=1e-5)
    assert (got[:, 0, K - 1] < -1e8).all()  # the leader's forbidden option
    logp = np.asarray(learn.log_probs(params, batch["obs"]))
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("algo", ["mamql", "iq-joint"])
def test_marginal_critic_ignores_the_other_agents_action(algo):
    """Permuting agent 1's actions across the batch leaves agent 0's loss and gradient unchanged for
    the marginal critic, and changes them for the joint one."""
    learn = learner(dataclasses.replace(SMALL, algo=algo))
    params = learn.init_params(jnp.asarray([9, 10], jnp.uint32))
    rng = np.random.default_rng(3)
    expert, policy = tiny_batch(rng, 16), tiny_batch(rng, 8)
    permuted = dict(expert, action=expert["action"].at[:, 1].set(expert["action"][::-1, 1]))
    assert not np.array_equal(np.asarray(permuted["action"]), np.asarray(expert["action"]))

    def agent0(p, batch):
        return learn.loss(p, batch, policy)[1]["loss"][0]

    grad_fn = jax.jit(jax.value_and_grad(agent0))
    loss_a, grad_a = grad_fn(params, expert)
    loss_b, grad_b = grad_fn(params, permuted)
    critic_a = np.concatenate([np.ravel(x[0]) for x in jax.tree.leaves(grad_a["critic"])])
    critic_b = np.concatenate([np.ravel(x[0]) for x in jax.tree.leaves(grad_b["critic"])])
    if algo == "mamql":
        assert float(loss_a) == float(loss_b)
        np.testing.assert_array_equal(critic_a, critic_b)
    else:
        assert abs(float(loss_a) - float(loss_b)) > 1e-4
        assert np.abs(critic_a - critic_b).max() > 1e-5


def test_vmap_over_seeds_equals_a_loop_and_is_deterministic():
    learn, init, chunk, _ = jitted(SMALL)  # online mamql: rollouts into the replay buffer
    data = prepare_data(dataset(0.1), learn)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    looped = [chunk(init(key), data) for key in keys]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *looped)
    vmapped = compiler.jit(jax.vmap(lambda k: learn.chunk(learn.init(k), data)))(keys)
    for got, want in zip(jax.tree.leaves(vmapped), jax.tree.leaves(stacked), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    again = chunk(init(keys[0]), data)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(looped[0]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    state = looped[0][0]
    assert int(state.update) == 3 and int(state.buffer.count) == 4 * 8  # init's rollout + one per update
    a0, a1 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(s[0].params)]) for s in looped)
    assert not np.allclose(a0, a1)


def test_bc_learns_a_deterministic_policy():
    """Labels of a known deterministic policy (option after one's own last, 0 at the start) on states of
    random play: bc's greedy actions match on nearly every state."""
    data = dict(dataset(1.0, seed=1))
    own_last = data["obs"][:, :, K : 2 * K]
    label = np.where(own_last.any(-1), (own_last.argmax(-1) + 1) % (K - 1), 0).astype(np.int32)
    data["action"] = label
    learn, init, chunk, logits = jitted(dataclasses.replace(LEARN, algo="bc"))
    data = prepare_data(data, learn)
    state = init(jax.random.PRNGKey(0))
    before = (np.asarray(jnp.argmax(logits(state.params, data["obs"]), -1)) == label).mean()
    for _ in range(2):
        state, metrics = chunk(state, data)
    after = (np.asarray(jnp.argmax(logits(state.params, data["obs"]), -1)) == label).mean(axis=0)
    assert before < 0.6
    assert (after > 0.98).all(), after


def test_mamql_recovers_the_experts_policy_and_evaluates():
    data = dataset(0.1)
    assert 0.85 < (data["action"] == 0).mean() < 0.97
    learn, init, chunk, logits = jitted(LEARN)
    data = prepare_data(data, learn)
    state = init(jax.random.PRNGKey(0))
    before = (np.asarray(jnp.argmax(logits(state.params, data["obs"]), -1)) == 0).mean(axis=0)
    for _ in range(2):
        state, metrics = chunk(state, data)
    after = (np.asarray(jnp.argmax(logits(state.params, data["obs"]), -1)) == 0).mean(axis=0)
    assert (before < 0.9).any(), before
    assert (after > 0.9).all(), after
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    # the learned Boltzmann policy puts most of its mass on the expert's action
    logp = np.asarray(learn.log_probs(state.params, data["obs"][:256]))
    assert (np.exp(logp[..., 0]).mean(axis=0) > 0.5).all()
    reward = np.asarray(learn.recovered_reward(state.params, {k: data[k][:256] for k in data}))
    assert reward.shape == (256, 2) and np.isfinite(reward).all()
    evaluate = EVAL(learn.evaluate)
    returns = evaluate(jax.random.PRNGKey(5), state.params, env=ENV, env_params=PARAMS, episodes=16, greedy=True)
    same = evaluate(jax.random.PRNGKey(5), state.params, env=ENV, env_params=PARAMS, episodes=16, greedy=True)
    assert returns.shape == (2,)
    np.testing.assert_array_equal(np.asarray(returns), np.asarray(same))
    assert (0 <= np.asarray(returns)).all() and (np.asarray(returns) <= PARAMS.max_steps).all()


def test_config_and_data_are_checked():
    for bad in (
        dict(algo="gail"),
        dict(gamma=1.5),
        dict(lr=0.0),
        dict(batch_size=0),
        dict(phi="kl"),
        dict(hidden=(0,)),
        dict(buffer_size=4, rollout_envs=2, rollout_steps=4),
    ):
        with pytest.raises(UsageError):
            MAMQLConfig(**bad).validate()
    env3, params3 = make("coordination", num_agents=3)
    with pytest.raises(UsageError, match="two agents"):
        MAMQL(dataclasses.replace(SMALL, algo="iq-joint"), env3, params3)
    learn = learner(SMALL)
    data = dataset(0.1)
    with pytest.raises(UsageError):
        prepare_data({k: v for k, v in data.items() if k != "next_obs"}, learn)
    with pytest.raises(UsageError):
        prepare_data(dict(data, action=data["action"] + K), learn)
    with pytest.raises(UsageError):
        prepare_data(dict(data, obs=data["obs"][:, :, :-1], next_obs=data["next_obs"][:, :, :-1]), learn)


def test_patches_are_a_valid_convolution():
    from agentlab.rl.mamql import patches

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.random((2, 7, 6, 3)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 3, 5)), jnp.float32)  # (kh, kw, C, F)
    got = patches(x, 3) @ w.reshape(-1, 5)
    want = jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
