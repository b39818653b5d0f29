"""The Gymnasium adapters (`agentlab.adapters.gymnasium`): Gymnasium's own checker on every single-agent kernel, the
vector env against `SyncVectorEnv` of the single adapter, seeding, and the adapter against the raw kernel."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402
from gymnasium.vector import AutoresetMode, SyncVectorEnv  # noqa: E402

from agentlab.adapters.gymnasium import make, make_vec, seed_key  # noqa: E402
from agentlab.errors import UsageError  # noqa: E402
from agentlab.hashing import split_key  # noqa: E402
from agentlab.kernels import make as make_kernel  # noqa: E402
from agentlab.kernels import registered_kernels  # noqa: E402

AGENTS = {name: make_kernel(name, auto_reset=False)[0].num_agents for name in registered_kernels()}
SINGLE = sorted(name for name, n in AGENTS.items() if n == 1)
MULTI = sorted(name for name, n in AGENTS.items() if n > 1)
UNRENDERED = {"point"}  # every other single-agent kernel draws itself

# Kernels and options for the vector comparison: short time limits, so that ~2 episodes fit in `STEPS` steps.
VECTOR_CASES = {
    "catch": ({"max_steps": 20}, 24),
    "point": ({"max_steps": 20}, 44),
    "pendulum": ({"max_steps": 20}, 44),
    "breakout": ({"max_steps": 30}, 64),
}
NUM_ENVS = 4


def test_the_kernels_split_into_single_and_multi_agent():
    assert {"breakout", "catch", "point", "pendulum", "maze2d"} <= set(SINGLE)
    assert {"coordination", "calvano", "market-crash", "market-lemons", "grid-curtailment", "gems"} <= set(MULTI)


@pytest.mark.parametrize("name", MULTI)
def test_multi_agent_kernels_are_refused_with_the_pettingzoo_pointer(name):
    with pytest.raises(UsageError, match=r"multi-agent kernel .*use the PettingZoo adapter"):
        make(name)
    with pytest.raises(ValueError, match="PettingZoo"):
        make_vec(name, 2)


@pytest.mark.parametrize("name", SINGLE)
def test_check_env_passes(name):
    env = make(name)
    renders = name not in UNRENDERED
    assert env.metadata["render_modes"] == (["rgb_array"] if renders else [])
    if renders:
        env = make(name, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning from the checker is a failure here
        check_env(env.unwrapped)
    space = env.observation_space
    kernel_space = make_kernel(name, auto_reset=False)[0].observation_space()
    assert space.shape == tuple(kernel_space.shape) and space.dtype == np.dtype(kernel_space.dtype)


def test_spaces_translate_bounds_and_dtypes():
    pendulum = make("pendulum")
    assert pendulum.observation_space == gymnasium.spaces.Box(-8.0, 8.0, (3,), np.float32)
    assert pendulum.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    breakout = make("breakout")
    assert breakout.observation_space == gymnasium.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    assert breakout.action_space == gymnasium.spaces.Discrete(3)


def test_render_draws_rgb_frames():
    for name, shape in {"breakout": (160, 160, 3), "catch": (160, 80, 3), "pendulum": (128, 128, 3)}.items():
        env = make(name, render_mode="rgb_array")
        env.reset(seed=0)
        frame = env.render()
        assert frame.shape == shape and frame.dtype == np.uint8 and frame.any(), name
    assert make("breakout").render() is None  # no render_mode: nothing drawn
    with pytest.raises(UsageError, match="render_mode of point"):
        make("point", render_mode="rgb_array")


def test_step_before_reset_is_refused():
    with pytest.raises(gymnasium.error.ResetNeeded):
        make("catch").step(0)
    with pytest.raises(gymnasium.error.ResetNeeded):
        make_vec("catch", 2).step(np.zeros(2, np.int64))


def test_seed_key_is_prng_key():
    for seed in (0, 1, 123, 2**31 - 1):
        np.testing.assert_array_equal(seed_key(seed), np.asarray(jax.random.PRNGKey(seed)))
    with pytest.raises(UsageError, match="seed must be an integer"):
        make("catch").reset(seed=-1)
    with pytest.raises(UsageError, match="seed of lane 1"):
        make_vec("catch", 2).reset(seed=[0, "1"])


def rollout(env, seed: int, actions) -> list:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            out.append(env.reset()[0])  # no seed: the env's key chain goes on
    return out


def assert_same_rollouts(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x if isinstance(x, tuple) else (x,), y if isinstance(y, tuple) else (y,)):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("name", ["breakout", "pendulum"])
def test_reset_seed_is_deterministic(name):
    env = make(name, max_steps=10)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(25)]
    first = rollout(env, 7, actions)
    assert_same_rollouts(first, rollout(env, 7, actions))
    assert_same_rollouts(first, rollout(make(name, max_steps=10), 7, actions))
    observations = lambda r: np.stack([x[0] if isinstance(x, tuple) else x for x in r])
    other = rollout(env, 8, actions)
    assert len(other) != len(first) or not np.array_equal(observations(other), observations(first))


@pytest.mark.parametrize("name", ["breakout", "pendulum"])
def test_the_adapter_replays_the_raw_kernel(name):
    """The adapter's trajectory is the kernel's with the keys of its chain: ``PRNGKey(seed)``, then one
    `split_key` per reset and step. (The kernel is jitted too: op-by-op float arithmetic may round differently.)"""
    kernel, params = make_kernel(name, auto_reset=False)
    reset, step = jax.jit(kernel.reset), jax.jit(kernel.step)
    env = make(name)
    env.action_space.seed(1)
    actions = [env.action_space.sample() for _ in range(30)]
    obs, _ = env.reset(seed=5)
    key, sub = split_key(jax.random.PRNGKey(5))
    raw_obs, state = reset(sub, params)
    np.testing.assert_array_equal(obs, raw_obs)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        key, sub = split_key(key)
        raw_obs, state, raw_reward, raw_terminated, raw_truncated, _ = step(
            sub, state, np.asarray(action, np.dtype(kernel.action_space().dtype)), params
        )
        np.testing.assert_array_equal(obs, raw_obs)
        assert (reward, terminated, truncated, info) == (
            float(raw_reward),
            bool(raw_terminated),
            bool(raw_truncated),
            {},
        )
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)


@pytest.mark.parametrize("name", list(VECTOR_CASES))
def test_the_vector_env_equals_sync_vector_env_of_the_single_adapter(name):
    options, steps = VECTOR_CASES[name]
    vector = make_vec(name, NUM_ENVS, **options)
    sync = SyncVectorEnv([lambda: make(name, **options) for _ in range(NUM_ENVS)])
    assert vector.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vector.single_observation_space == sync.single_observation_space
    assert vector.action_space == sync.action_space and vector.observation_space == sync.observation_space
    obs, info = vector.reset(seed=11)
    sync_obs, sync_info = sync.reset(seed=11)
    np.testing.assert_array_equal(obs, sync_obs)
    assert info == sync_info == {}
    vector.action_space.seed(3)
    ended = 0
    for _ in range(steps):
        actions = vector.action_space.sample()
        got, want = vector.step(actions), sync.step(actions)
        for g, w in zip(got[:4], want[:4]):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
        assert got[4] == want[4] == {}
        ended += int((got[2] | got[3]).sum())
    assert ended >= NUM_ENVS  # the comparison crossed auto-resets


def test_vector_reset_without_seed_and_with_a_reset_mask_match_sync():
    vector = make_vec("catch", NUM_ENVS)
    sync = SyncVectorEnv([lambda: make("catch") for _ in range(NUM_ENVS)])
    vector.reset(seed=[3, 1, 4, 1])
    sync.reset(seed=[3, 1, 4, 1])
    actions = np.array([0, 1, 2, 1])
    for _ in range(3):
        np.testing.assert_array_equal(vector.step(actions)[0], sync.step(actions)[0])
    mask = np.array([True, False, True, False])
    np.testing.assert_array_equal(
        vector.reset(options={"reset_mask": mask})[0], sync.reset(options={"reset_mask": mask.copy()})[0]
    )
    np.testing.assert_array_equal(vector.reset()[0], sync.reset()[0])
    for _ in range(12):
        got, want = vector.step(actions), sync.step(actions)
        for g, w in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(g, w)


def test_the_package_init_imports_nothing():
    init = Path(__file__).resolve().parent.parent / "adapters" / "__init__.py"
    tree = ast.parse(init.read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_bench_gymnasium_reports_both_rates_and_their_ratio(tmp_path):
    """`agentlab bench gymnasium` writes summary.json with positive rates whose ratio is their quotient; an unknown
    or multi-agent kernel is one line, exit 2, nothing written."""
    import orjson
    from typer.testing import CliRunner

    from agentlab.cli.app import app

    out = tmp_path / "bench"
    args = ["bench", "gymnasium", "--envs", "catch", "--lanes", "4", "--steps", "3", "--rounds", "1", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads((out / "summary.json").read_bytes())["results"]
    assert row["env"] == "catch" and row["lanes"] == 4
    assert row["adapter_per_second"] > 0 and row["raw_step_per_second"] > 0 and "raw_scan_per_second" not in row
    assert row["adapter_over_raw_step"] == pytest.approx(row["adapter_per_second"] / row["raw_step_per_second"])
    for bad in ("gems", "nope"):
        result = CliRunner().invoke(app, ["bench", "gymnasium", "--envs", bad, "--out", str(tmp_path / bad)])
        assert result.exit_code == 2 and not (tmp_path / bad).exists()
