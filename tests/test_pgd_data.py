"""Continuous `data collect` (random, planner, noisy PPO) and the exact dynamics measures of `rl.pgd`."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.rl import collect, data, pgd


@functools.cache
def _collected(root: str, env: str, policy: str, episodes: int, options: tuple = ()) -> Path:
    out = Path(root) / f"{env}-{policy.replace(',', '_').replace('=', '')}-{episodes}"
    collect.collect(collect.CollectConfig(env=env, env_options=options, policy=policy, episodes=episodes), out)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("continuous"))


def test_random_rows_are_uniform_in_the_box_and_follow_the_kernel(root):
    ds = data.load(_collected(root, "pendulum", "random", 8), "pendulum")
    env, params = make("pendulum", auto_reset=False)
    a = ds["action"]
    assert a.dtype == np.float32 and a.shape == (8 * 200, 1)
    assert a.min() >= -1 and a.max() <= 1
    # uniform on [-1, 1]: mean 0 and variance 1/3 within 5 standard errors
    n = a.size
    assert abs(a.mean()) < 5 * np.sqrt(1 / 3 / n) and abs(a.var() - 1 / 3) < 5 * np.sqrt(4 / 45 / n)
    # every stored transition is the kernel's own step from the state the observation shows
    step = jax.jit(jax.vmap(lambda o, u: env.transition_from_observation(o, u, params)))
    next_obs, reward = step(jnp.asarray(ds["obs"]), jnp.asarray(a))
    np.testing.assert_allclose(np.asarray(next_obs), ds["next_obs"], atol=1e-4)
    np.testing.assert_allclose(np.asarray(reward), ds["reward"], rtol=1e-5, atol=1e-4)
    assert ds["truncated"].sum() == 8 and not ds["terminated"].any()  # 200-step episodes, never terminal


def test_planner_rows_replay_the_waypoint_controller(root):
    """Each stored action is `policies.planner_action` at that row's observation, clipped: the rows of a noiseless
    planner are a deterministic function of the observation, and the noisy planner's deviations have the asked
    standard deviation."""
    from agentlab.kernels.control import policies

    env, params = make("maze2d", auto_reset=False)
    clean = data.load(_collected(root, "maze2d", "planner,sigma=0", 4), "maze2d")
    replay = jax.jit(jax.vmap(lambda o: policies.planner_action(jax.random.key(0), o, params, env, 0.0)))
    np.testing.assert_allclose(np.asarray(replay(jnp.asarray(clean["obs"]))), clean["action"], atol=1e-6)
    noisy = data.load(_collected(root, "maze2d", "planner,sigma=0.3", 16), "maze2d")
    mean = np.asarray(replay(jnp.asarray(noisy["obs"])))
    inside = np.abs(mean) < 0.05  # far from the clip, the deviation is the Gaussian noise itself
    deviation = (noisy["action"] - mean)[inside]
    assert len(deviation) > 500
    assert abs(deviation.std() - 0.3) < 5 * 0.3 / np.sqrt(2 * len(deviation))
    summary = collect.CollectConfig(env="maze2d", policy="planner,sigma=0.3", episodes=1)
    assert summary.policy == "planner,sigma=0.3"


def test_planner_and_noisy_are_refused_where_they_do_not_apply(tmp_path):
    with pytest.raises(UsageError, match="maze2d's waypoint controller"):
        collect.collect(collect.CollectConfig(env="pendulum", policy="planner", episodes=1), tmp_path / "a")
    with pytest.raises(UsageError, match="discrete"):
        config = collect.CollectConfig(env="coordination", policy=f"noisy:{tmp_path},sigma=0.1", episodes=1)
        collect.collect(config, tmp_path / "b")
    with pytest.raises(UsageError, match="give the noise"):
        collect.collect(collect.CollectConfig(env="pendulum", policy=f"noisy:{tmp_path}", episodes=1), tmp_path / "c")
    with pytest.raises(UsageError, match="sigma"):
        collect.collect(collect.CollectConfig(env="maze2d", policy="planner,sigma=-1", episodes=1), tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


# -- measures -------------------------------------------------------------------------------------------------
def _windows_from_dataset(ds, length: int) -> np.ndarray:
    """Windows of real rows ``[s, arctanh(a), r, done]`` (raw units) from the first episodes."""
    a = np.arctanh(np.clip(ds["action"], -0.999, 0.999))
    rows = np.concatenate([ds["obs"], a, ds["reward"][:, None], ds["terminated"][:, None].astype(np.float32)], 1)
    episodes = np.unique(ds["episode"])[:4]
    out = []
    for e in episodes:
        part = rows[ds["episode"] == e]
        out += [part[i : i + length] for i in range(0, len(part) - length + 1, length)]
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("env_name", ["pendulum", "maze2d"])
def test_real_windows_have_zero_dynamics_error_and_perturbed_ones_do_not(root, env_name):
    policy = "random" if env_name == "pendulum" else "planner"
    ds = data.load(_collected(root, env_name, policy, 4), env_name)
    env, params = make(env_name, auto_reset=False)
    rows = pgd.Rows(ds["obs"].shape[1], ds["action"].shape[1])
    windows = _windows_from_dataset(ds, 16)
    # real data: the only error is the 0.999 clip of the stored action where |a| was 1 (a bounded effect)
    exact = np.where(np.abs(np.tanh(windows[..., rows.obs_dim])) > 0.998, np.nan, 0.0)
    m = pgd.measure_windows(env, params, rows, jnp.asarray(windows))
    assert m["invalid_rate"] == 0.0
    assert m["dynamics_error"] < (2e-2 if np.isnan(exact).any() else 1e-4)
    assert len(m["dynamics_error_by_step"]) == 15
    # the last next state moved by a known offset: that offset's norm at the last step, nothing before it
    shifted = windows.copy()
    shifted[:, -1, rows.obs_dim - 1] += 0.05  # the last observation dimension: pendulum's speed, maze2d's vy
    moved = pgd.measure_windows(env, params, rows, jnp.asarray(shifted))
    by_step = np.asarray(moved["dynamics_error_by_step"])
    base = np.asarray(m["dynamics_error_by_step"])
    np.testing.assert_allclose(by_step[:-1], base[:-1], atol=1e-6)
    assert abs(by_step[-1] - 0.05) < 0.01 + base[-1]


def test_maze_positions_inside_walls_are_invalid_and_left_out():
    env, params = make("maze2d", auto_reset=False)  # umaze: row 2 is '###O#', so (x, y) = (1.5, 2.5) is a wall
    rows = pgd.Rows(4, 2)
    free = np.array([1.5, 1.5, 0.0, 0.0], np.float32)  # cell (row 1, col 1): free
    window = np.zeros((2, 3, rows.dim), np.float32)
    window[:, :, :4] = free
    window[1, 1, :4] = [1.5, 2.5, 0.0, 0.0]  # inside a wall
    m = pgd.measure_windows(env, params, rows, jnp.asarray(window))
    # window 0: two valid transitions, zero action at rest: error 0; window 1: both transitions touch the wall row
    assert m["invalid_rate"] == pytest.approx(2 / 4)
    assert m["dynamics_error"] == pytest.approx(0.0, abs=1e-6)


def test_pendulum_projection_renormalises_the_angle_pair():
    env, params = make("pendulum", auto_reset=False)
    obs = jnp.asarray([[2.0, 0.0, 1.0], [0.0, -0.5, 20.0]], jnp.float32)
    projected = np.asarray(pgd.valid_projection(env, params, obs))
    np.testing.assert_allclose(projected, [[1.0, 0.0, 1.0], [0.0, -1.0, 8.0]], atol=1e-6)


def test_target_log_likelihood_is_the_mean_of_the_policy_density():
    env, params = make("pendulum", auto_reset=False)
    rows = pgd.Rows(3, 1)
    rng = np.random.default_rng(0)
    window = rng.normal(size=(3, 5, rows.dim)).astype(np.float32)

    def log_prob(mean, obs, action):  # Normal(mean, 1) per action dimension
        return jnp.sum(-0.5 * (action - mean) ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)

    m = pgd.measure_windows(env, params, rows, jnp.asarray(window), log_prob, jnp.float32(0.2))
    a = np.tanh(window[:, :-1, 3])
    expected = np.mean(-0.5 * (a - 0.2) ** 2 - 0.5 * np.log(2 * np.pi))
    assert m["target_log_likelihood"] == pytest.approx(expected, rel=1e-5)
