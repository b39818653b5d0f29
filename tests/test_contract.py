"""The kernel contract, checked over the whole registry."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.kernels import make, registered_kernels
from agentlab.kernels.environment import RESET_STREAM, derive_key
from agentlab.kernels.spaces import Discrete
from agentlab.rl.rollout import random_rollout

from conftest import ATARI, compiled, compiled_rollout

ALL = registered_kernels()


def test_registry_lists_the_five_games_and_the_multi_agent_kernel():
    assert set(ATARI) | {"coordination", "catch", "point"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_step_outputs_match_spaces_dtypes_and_compile_once(name):
    env, params = make(name)
    traces = []

    def counted_step(key, state, action, params):
        traces.append(1)
        return env.step(key, state, action, params)

    step = jax.jit(counted_step)
    obs, state = jax.jit(env.reset)(jax.random.key(0), params)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    assert bool(obs_space.contains(obs))
    key = jax.random.key(1)
    for t in range(60):
        key, k_act, k_step = jax.random.split(key, 3)
        action = act_space.sample(k_act)
        assert bool(act_space.contains(action))
        obs, state, reward, terminated, truncated, info = step(k_step, state, action, params)
        assert bool(obs_space.contains(obs)), f"{name}: observation outside its space at step {t}"
        assert reward.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(reward)))
        assert terminated.dtype == jnp.bool_ and terminated.shape == ()
        assert truncated.dtype == jnp.bool_ and truncated.shape == ()
        assert "final_observation" in info and bool(obs_space.contains(info["final_observation"]))
    assert len(traces) == 1, "step must compile once for a fixed params structure"
    if env.multi_agent:
        assert obs.shape[0] == env.num_agents and obs.dtype == jnp.float32  # (agents, *per-agent shape)
        assert reward.shape == (env.num_agents,) and len(env.roles) == env.num_agents
        space = env.action_space(params)
        width = space.n if isinstance(space, Discrete) else space.shape[-1]  # options, or action dimensions
        assert info["action_mask"].shape == (env.num_agents, width)
        static = env.action_mask(params)  # what learners mask with: the same array, or None for "all allowed"
        expected = np.ones((env.num_agents, width), bool) if static is None else np.asarray(static)
        np.testing.assert_array_equal(np.asarray(info["action_mask"]), expected)
    else:
        assert reward.shape == ()
    if name in ATARI:
        assert obs.dtype == jnp.bool_ and obs.shape[:2] == (10, 10) and obs.shape[2] == len(env.channels)


@pytest.mark.parametrize("name", ATARI)
def test_action_set_maps_to_minatar_full_indices(name):
    env, _ = make(name)
    minimal = {
        "asterix": (0, 1, 2, 3, 4),
        "breakout": (0, 1, 3),
        "freeway": (0, 2, 4),
        "seaquest": (0, 1, 2, 3, 4, 5),
        "space-invaders": (0, 1, 3, 5),
    }[name]
    assert env.action_set == minimal and env.num_actions == len(minimal)
    full, _ = make(name, full_action_set=True)
    assert full.action_set == (0, 1, 2, 3, 4, 5)


@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(ATARI))
def test_same_key_gives_the_same_trajectory(seed, name):
    env, params, rollout = compiled_rollout(name, 64, 2)
    keys = jax.random.split(jax.random.key(seed), 2)
    first = rollout(keys, params)
    again = rollout(keys, params)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(ALL))
def test_vmap_over_lanes_equals_a_python_loop(seed, name):
    env, params, rollout = compiled_rollout(name, 64, 3)
    keys = jax.random.split(jax.random.key(seed), 3)
    batched = rollout(keys, params)
    single = _single_rollout(name)
    for lane in range(3):
        alone = single(keys[lane], params)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(alone)):
            np.testing.assert_array_equal(np.asarray(a)[lane], np.asarray(b))


_SINGLE = {}


def _single_rollout(name):
    if name not in _SINGLE:
        env, _ = make(name)
        _SINGLE[name] = jax.jit(lambda key, p: random_rollout(env, p, key, 64))
    return _SINGLE[name]


def test_lanes_are_independent_of_each_other():
    env, params, rollout = compiled_rollout("breakout", 64, 3)
    keys = jax.random.split(jax.random.key(3), 3)
    other = keys.at[1].set(jax.random.key(99))
    a, b = rollout(keys, params), rollout(other, params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x)[[0, 2]], np.asarray(y)[[0, 2]])


@pytest.mark.parametrize("name", ATARI)
def test_auto_reset_keeps_the_final_observation_and_starts_afresh(name):
    plain_env, params, _, plain_step = compiled(name, auto_reset=False)
    env, _, reset, step = compiled(name)
    obs, state = reset(jax.random.key(2), params)
    key = jax.random.key(4)
    resets = 0
    for _ in range(3000):
        key, k_act, k_step = jax.random.split(key, 3)
        action = env.action_space().sample(k_act)
        expected = plain_step(k_step, state, action, params)
        obs, state, reward, terminated, truncated, info = step(k_step, state, action, params)
        np.testing.assert_array_equal(np.asarray(info["final_observation"]), np.asarray(expected[0]))
        assert float(reward) == float(expected[2]) and bool(terminated) == bool(expected[3])
        if bool(terminated | truncated):
            resets += 1
            fresh_obs, fresh = plain_env.reset(derive_key(k_step, RESET_STREAM), params)
            np.testing.assert_array_equal(np.asarray(obs), np.asarray(fresh_obs))
            assert int(state.time) == 0
            if resets == 3:
                break
        else:
            np.testing.assert_array_equal(np.asarray(obs), np.asarray(expected[0]))
    assert resets >= 1


def test_time_limit_truncates_exactly_at_max_steps():
    env, params = make("freeway", max_steps=7)
    step = jax.jit(env.step)
    obs, state = env.reset(jax.random.key(0), params)
    flags = []
    for t in range(15):
        obs, state, _, terminated, truncated, _ = step(jax.random.key(t), state, 0, params)
        flags.append((bool(terminated), bool(truncated), int(state.time)))
    assert [f[1] for f in flags] == [t in (6, 13) for t in range(15)]
    assert flags[6][2] == 0 and flags[5][2] == 6  # auto-reset after the truncation
    assert not any(f[0] for f in flags)


def test_no_time_limit_by_default_as_in_minatar():
    _, params = make("breakout")
    assert params.max_steps is None


@pytest.mark.parametrize("module", ["kernels", "cli", "rl", "bench", "synergy", "studies"])
def test_no_top_level_package_leaks_from_the_install(module, tmp_path):
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is not None)"
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0


def test_import_agentlab_is_light(tmp_path):
    code = "import sys, agentlab; sys.exit(any(m in sys.modules for m in ('jax', 'numba', 'polars', 'matplotlib')))"
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0


def test_multi_agent_kernel_rewards_agreement():
    env, params = make("coordination", auto_reset=False, num_agents=3, num_choices=4)
    obs, state = env.reset(jax.random.key(0), params)
    state = state.replace(shift=jnp.int32(0))
    _, _, reward, _, _, _ = env.step(jax.random.key(1), state, jnp.array([2, 2, 1]), params)
    np.testing.assert_allclose(np.asarray(reward), [0.5, 0.5, 0.0])
    # Followers' actions are relabelled by the shift; the leader's are not.
    state = state.replace(shift=jnp.int32(1))
    _, _, reward, _, _, _ = env.step(jax.random.key(1), state, jnp.array([2, 1, 1]), params)
    np.testing.assert_allclose(np.asarray(reward), [1.0, 1.0, 1.0])
    # The leader's masked last option falls back to option 0.
    state = state.replace(shift=jnp.int32(0))
    _, next_state, reward, _, _, _ = env.step(jax.random.key(1), state, jnp.array([3, 0, 3]), params)
    assert int(next_state.last_option[0]) == 0
