"""PPO: GAE against a NumPy loop, learning where the optimum is known, exact resume."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agentlab import hashing
from agentlab.errors import RunInterrupted, UsageError
from agentlab.rl import checkpoint, training
from agentlab.rl.ppo import PPO, PPOConfig, gae, seed_keys


def gae_reference(rewards, values, next_values, terminated, done, gamma, lam):
    """The textbook backward loop, in plain NumPy."""
    T = len(rewards)
    advantages = np.zeros_like(values)
    running = np.zeros_like(values[0])
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        running = delta + gamma * lam * (1.0 - done[t]) * running
        advantages[t] = running
    return advantages, advantages + values


@given(
    rewards=arrays(np.float32, (12, 3), elements=st.floats(-2, 2, width=32)),
    values=arrays(np.float32, (12, 3), elements=st.floats(-2, 2, width=32)),
    next_values=arrays(np.float32, (12, 3), elements=st.floats(-2, 2, width=32)),
    terminated=arrays(np.bool_, (12, 3)),
    truncated=arrays(np.bool_, (12, 3)),
    gamma=st.floats(0.5, 1.0),
    lam=st.floats(0.0, 1.0),
)
def test_gae_matches_a_numpy_loop(rewards, values, next_values, terminated, truncated, gamma, lam):
    done = terminated | truncated
    got = gae(*(jnp.asarray(x) for x in (rewards, values, next_values, terminated, done)), gamma, lam)
    want = gae_reference(
        rewards, values, next_values, terminated.astype(np.float32), done.astype(np.float32), gamma, lam
    )
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-4)


def test_truncated_steps_bootstrap_from_the_final_observation():
    # One step, truncated: advantage = r + gamma * V(final) - V(s); terminated: r - V(s).
    adv, _ = gae(jnp.array([1.0]), jnp.array([0.5]), jnp.array([2.0]), jnp.array([False]), jnp.array([True]), 0.9, 0.95)
    assert float(adv[0]) == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    adv, _ = gae(jnp.array([1.0]), jnp.array([0.5]), jnp.array([2.0]), jnp.array([True]), jnp.array([True]), 0.9, 0.95)
    assert float(adv[0]) == pytest.approx(0.5)


@functools.cache
def _trained(env: str, total_steps: int, **overrides):
    config = PPOConfig(env=env, total_steps=total_steps, **overrides)
    learner = PPO(config)
    state, metrics = jax.jit(learner.train)(jax.random.PRNGKey(0))
    return learner, state, jax.tree.map(np.asarray, metrics)


@pytest.mark.slow
def test_ppo_learns_catch_to_its_optimal_return():
    learner, state, metrics = _trained(
        "catch", 16 * 32 * 96, num_envs=16, num_steps=32, num_minibatches=4, lr=3e-3, updates_per_chunk=8
    )
    final = np.nanmean(metrics["episode_return"][-10:])
    assert final >= 0.9, metrics["episode_return"]  # optimal +1; random about -0.6
    assert np.nanmean(metrics["episode_return"][:3]) < 0.0


@pytest.mark.slow
def test_ppo_learns_a_continuous_action_kernel():
    learner, state, metrics = _trained(
        "point",
        16 * 40 * 96,
        num_envs=16,
        num_steps=40,
        num_minibatches=4,
        lr=3e-3,
        updates_per_chunk=8,
        hidden=(32, 32),
    )
    final = np.nanmean(metrics["episode_return"][-10:])
    assert final > -2.0, metrics["episode_return"]  # optimal about -0.6; standing still about -10
    assert np.nanmean(metrics["episode_return"][:3]) < -4.0


def test_multi_agent_ppo_learns_to_coordinate_with_one_shared_network():
    """Three agents on `coordination` (32-step episodes, an agent earns the share of the others that
    picked its option). Uniformly random play earns about 32 / 4 = 8 per agent (the leader picks
    among 3 options, followers among 4); agents that track the leader approach 32."""
    config = PPOConfig(
        env="coordination",
        total_steps=32 * 32 * 32,
        num_envs=32,
        num_steps=32,
        num_minibatches=4,
        lr=3e-3,
        updates_per_chunk=8,
        hidden=(32, 32),
    )
    learner = PPO(config)
    state, metrics = jax.jit(learner.train)(jax.random.PRNGKey(0))
    assert state.episode_return.shape == (32, 3)  # one running return per environment and agent
    returns = np.asarray(metrics["episode_return"])
    assert np.nanmean(returns[:3]) < 10.0, returns
    assert np.nanmean(returns[-5:]) > 15.0, returns


def test_config_validation_names_the_bad_field():
    with pytest.raises(UsageError, match="num_envs must be a positive integer"):
        PPOConfig(num_envs=0).validate()
    with pytest.raises(UsageError, match="not divisible by num_minibatches"):
        PPOConfig(num_envs=6, num_steps=5, num_minibatches=4).validate()
    with pytest.raises(UsageError, match="unknown kernel 'pong'"):
        PPOConfig(env="pong").validate()
    with pytest.raises(UsageError, match="total_steps .* must be an integer in"):
        PPOConfig(total_steps=10**13).validate()


@pytest.mark.parametrize(
    ("total_steps", "chunk", "expected"),
    [(1, 8, 1), (8 * 16, 8, 1), (8 * 16 + 1, 8, 2), (250_000, 8, 1960), (5 * 128, 2, 6)],
)
def test_steps_are_at_least_what_was_asked_in_whole_chunks(total_steps, chunk, expected):
    """--steps means at least the steps asked for: ceil(steps / batch) updates, rounded up to whole chunks
    (a chunk of the whole run when it is shorter than one)."""
    config = PPOConfig(env="catch", total_steps=total_steps, num_envs=8, num_steps=16, updates_per_chunk=chunk)
    assert config.num_updates == expected
    assert config.num_updates * config.batch_size >= total_steps
    assert config.num_updates % min(chunk, -(-total_steps // 128)) == 0
    with pytest.raises(UsageError, match=r"shared_layers must lie in \[0, 2\]"):
        PPOConfig(shared_layers=3).validate()


def test_shared_layers_share_exactly_the_leading_hidden_layers():
    """0: two separate MLPs (PureJaxRL's 2 x (400x64 + 64x64) + heads); k: one trunk of k layers."""
    obs = jnp.zeros((1, 10, 10, 4), bool)
    sizes = {}
    for k in (0, 1, 2):
        network = PPO(PPOConfig(shared_layers=k)).network
        params = network.init(jax.random.PRNGKey(0), obs)
        sizes[k] = sum(x.size for x in jax.tree.leaves(params))
    first, second, heads = 400 * 64 + 64, 64 * 64 + 64, (64 * 3 + 3) + (64 + 1)
    assert sizes[0] == 2 * (first + second) + heads
    assert sizes[1] == first + 2 * second + heads
    assert sizes[2] == first + second + heads


def test_run_directories_written_with_shared_trunk_resume_with_the_same_network():
    from agentlab.rl.training import config_from_record

    assert config_from_record({"env": "catch", "shared_trunk": True, "hidden": [32, 32, 32]}).shared_layers == 3
    assert config_from_record({"env": "catch", "shared_trunk": False}).shared_layers == 0


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    config = PPOConfig(
        env="catch", total_steps=8 * 16 * 6, num_envs=8, num_steps=16, num_minibatches=2, updates_per_chunk=2, seeds=2
    )
    training.train(config, tmp_path / "whole")

    def stop_after_first_chunk(info):
        raise KeyboardInterrupt  # Ctrl-C: a resumable run stays on disk (an error would remove a new run)

    with pytest.raises(RunInterrupted, match="--resume"):
        training.train(config, tmp_path / "split", on_chunk=stop_after_first_chunk)
    training.train(config, tmp_path / "split", resume=True)

    learner = PPO(config)
    template = learner.init_seeds(seed_keys(config))
    whole, meta_whole = checkpoint.load(tmp_path / "whole" / training.CHECKPOINT, template)
    split, meta_split = checkpoint.load(tmp_path / "split" / training.CHECKPOINT, template)
    assert meta_whole["update"] == meta_split["update"] == 6
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    import polars as pl

    rows_whole = pl.read_parquet(tmp_path / "whole" / "metrics.parquet").drop("wall_seconds", "steps_per_second")
    rows_split = pl.read_parquet(tmp_path / "split" / "metrics.parquet").drop("wall_seconds", "steps_per_second")
    assert rows_whole.sort("seed", "update").equals(rows_split.sort("seed", "update"))
    assert rows_whole.height == 2 * 6


def test_checkpoint_refuses_another_configuration(tmp_path):
    config = PPOConfig(
        env="catch", total_steps=8 * 16 * 2, num_envs=8, num_steps=16, num_minibatches=2, updates_per_chunk=2
    )
    training.train(config, tmp_path / "run")
    other = PPO(PPOConfig(env="catch", num_envs=4, num_steps=16, num_minibatches=2, total_steps=4 * 16 * 2))
    with pytest.raises(UsageError, match="this configuration needs"):
        checkpoint.load(tmp_path / "run" / training.CHECKPOINT, other.init_seeds(seed_keys(other.config)))


def test_a_kernels_episode_metrics_are_averaged_over_finished_episodes():
    """grid-curtailment reports its outcome per finished episode in info["episode_metrics"]; PPO's
    per-update metrics carry their means, and the three outcome indicators' means (rates) sum to 1."""
    config = PPOConfig(
        env="grid-curtailment", total_steps=8 * 16 * 2, num_envs=8, num_steps=16, num_minibatches=2, updates_per_chunk=2
    )
    learner = PPO(config)
    _, metrics = jax.jit(learner.train)(jax.random.PRNGKey(0))
    assert int(np.asarray(metrics["episodes"]).sum()) > 0  # deadline 6 rounds: episodes end within 16 steps
    rates = sum(np.asarray(metrics[f"episode/{k}"]) for k in ("compromise", "authority_decision", "automatic_shedding"))
    np.testing.assert_allclose(rates, 1.0, rtol=1e-5)
    rounds = np.asarray(metrics["episode/rounds"])
    assert ((rounds >= 1) & (rounds <= 6)).all(), rounds


def test_policies_never_take_an_action_their_role_forbids():
    """coordination's leader may not pick the last option (``env.action_mask``); an untrained policy
    samples uniformly, so without masking about a quarter of the leader's actions would be it."""
    learner = PPO(PPOConfig(env="coordination", num_envs=16, num_steps=32, num_minibatches=2))
    state = learner.init(jax.random.PRNGKey(3))
    _, traj = jax.jit(learner._rollout)(state)
    actions = np.asarray(traj.action)  # (steps, envs, agents)
    assert (actions[..., 0] != learner.env.num_choices - 1).all()
    assert (actions[..., 1:] == learner.env.num_choices - 1).any()  # followers may
    greedy = jax.jit(lambda p, o: learner.act(p, jax.random.PRNGKey(0), o, greedy=True))(state.params, state.obs)
    assert (np.asarray(greedy)[:, 0] != learner.env.num_choices - 1).all()


def test_rollout_bootstraps_truncated_steps_from_the_value_of_the_final_observation():
    """A rollout keeps, for each truncated step, the value of ``info["final_observation"]`` (the
    observation before the auto-reset) and 0 elsewhere. Reference: the same steps replayed here from
    the rollout's documented keys and actions, with the final observations evaluated directly."""
    learner = PPO(PPOConfig(env="catch", max_episode_steps=3, num_envs=6, num_steps=10, num_minibatches=2))
    state = learner.init(jax.random.PRNGKey(4))
    _, traj = jax.jit(learner._rollout)(state)
    truncated = np.asarray(traj.truncated)
    assert truncated.any() and not truncated.all()

    _, k_rollout = hashing.split_key(state.key)
    env_state, expected = state.env_state, []
    step = jax.jit(jax.vmap(learner.env.step, in_axes=(0, 0, 0, None)))
    for t in range(10):
        k_step = hashing.derive_key(k_rollout, jnp.uint32(t))
        keys = hashing.derive_key(jnp.broadcast_to(k_step, (6, 2)), jnp.arange(1, 7, dtype=jnp.uint32))
        _, env_state, _, _, trunc, info = step(keys, env_state, traj.action[t], learner.env_params)
        np.testing.assert_array_equal(np.asarray(trunc), truncated[t])
        _, final = learner.network.apply(state.params, info["final_observation"])
        expected.append(np.where(np.asarray(trunc), np.asarray(final), 0.0))
    np.testing.assert_allclose(np.asarray(traj.final_value), np.stack(expected), rtol=1e-6, atol=1e-7)
