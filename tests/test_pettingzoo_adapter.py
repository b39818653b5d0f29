"""The PettingZoo adapter (`agentlab.adapters.pettingzoo`): PettingZoo's own API and seed tests on every multi-agent
kernel, the adapter against the raw kernel, seeding, action masks, agent names, and what it refuses."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

pettingzoo = pytest.importorskip("pettingzoo")

import gymnasium  # noqa: E402
from pettingzoo.test import parallel_api_test, parallel_seed_test  # noqa: E402

from agentlab.adapters.pettingzoo import parallel_env  # noqa: E402
from agentlab.errors import UsageError  # noqa: E402
from agentlab.hashing import split_key  # noqa: E402
from agentlab.kernels import make as make_kernel  # noqa: E402
from agentlab.kernels import registered_kernels  # noqa: E402

KERNELS = {name: make_kernel(name, auto_reset=False)[0] for name in registered_kernels()}
SINGLE = sorted(name for name, kernel in KERNELS.items() if not kernel.multi_agent)
MULTI = sorted(name for name, kernel in KERNELS.items() if kernel.multi_agent)

# Small configurations whose episodes end within `CYCLES` steps (a kernel not listed runs with its defaults).
SMALL = {
    "calvano": {"max_steps": 8},
    "coordination": {"max_steps": 8},
    "gems": {"size": 5, "max_steps": 8},
    "grid-curtailment": {"num_agents": 5, "substeps": 10, "deadline": 4},
    "market-crash": {"firms": 3, "consumers": 8, "max_steps": 8},
    "market-lemons": {"sellers": 3, "sybils": 1, "buyers": 3, "dlc": 2, "max_steps": 8},
}
CYCLES = 40


def test_the_multi_agent_kernels_are_covered():
    assert {"coordination", "calvano", "market-crash", "market-lemons", "grid-curtailment", "gems"} <= set(MULTI)


@pytest.mark.parametrize("name", MULTI)
def test_parallel_api_test_passes(name):
    env = parallel_env(name, **SMALL.get(name, {}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning from the checker is a failure here
        parallel_api_test(env, num_cycles=CYCLES)
        parallel_seed_test(lambda: parallel_env(name, **SMALL.get(name, {})), num_cycles=CYCLES)
    assert env.agents == []  # the checker's last episode ended within its cycles, all agents at once
    observations, _ = env.reset(seed=3)
    spaces = {agent: env.observation_space(agent) for agent in env.possible_agents}
    assert all(spaces[agent].contains(obs) for agent, obs in observations.items())
    while env.agents:
        observations, *_ = env.step({agent: env.action_space(agent).sample() for agent in env.agents})
        assert all(spaces[agent].contains(obs) for agent, obs in observations.items())


def test_agents_are_named_by_role_in_the_kernels_order():
    assert parallel_env("coordination").possible_agents == ["leader_0", "follower_0", "follower_1"]
    assert parallel_env("calvano", firms=3).possible_agents == ["firm_0", "firm_1", "firm_2"]
    lemons = parallel_env("market-lemons", sellers=2, sybils=1, buyers=3, dlc=2)
    assert lemons.possible_agents == ["seller_0", "seller_1", "buyer_0", "buyer_1", "buyer_2"]
    grid = parallel_env("grid-curtailment", num_agents=6, substeps=10)
    assert grid.possible_agents == [
        "critical_0",
        "residential_0",
        "commercial_0",
        "industrial_0",
        "interruptible_0",
        "critical_1",
    ]
    assert parallel_env("gems", size=5).possible_agents == ["agent_0", "agent_1"]
    assert parallel_env("market-crash", firms=1, consumers=4, dlc=1).possible_agents == [
        "firm_0"
    ]  # one firm, still an axis


def test_spaces_are_the_kernels_without_the_agent_axis():
    calvano = parallel_env("calvano")
    assert calvano.observation_space("firm_1") == gymnasium.spaces.Box(0.0, np.inf, (2,), np.float32)
    assert calvano.action_space("firm_1") == gymnasium.spaces.Discrete(15)
    grid = parallel_env("grid-curtailment", substeps=10)
    assert grid.action_space("critical_0") == gymnasium.spaces.Box(0.0, 1.0, (2,), np.float32)
    assert grid.observation_space("critical_0") == gymnasium.spaces.Box(-10.0, 10.0, (17,), np.float32)
    gems = parallel_env("gems", size=6)
    assert gems.observation_space("agent_0") == gymnasium.spaces.Box(0.0, 1.0, (5, 6, 6), np.float32)
    assert gems.action_space("agent_1") == gymnasium.spaces.Discrete(5)


@pytest.mark.parametrize("name", MULTI)
def test_action_masks_are_the_kernels(name):
    """Where the kernel has an action mask, ``infos[agent]["action_mask"]`` is the agent's row of
    ``env.action_mask(params)`` as int8, on reset and every step; elsewhere infos are empty."""
    options = SMALL.get(name, {})
    kernel, params = make_kernel(name, auto_reset=False, **options)
    mask = kernel.action_mask(params)
    env = parallel_env(name, **options)
    _, infos = env.reset(seed=0)
    _, _, _, _, step_infos = env.step({agent: env.action_space(agent).sample() for agent in env.agents})
    for got in (infos, step_infos):
        assert list(got) == env.possible_agents
        if mask is None:
            assert all(info == {} for info in got.values())
            continue
        for i, agent in enumerate(env.possible_agents):
            assert got[agent]["action_mask"].dtype == np.int8
            np.testing.assert_array_equal(got[agent]["action_mask"], np.asarray(mask[i], np.int8))
    assert (mask is not None) == (name in {"coordination", "market-lemons"})


def test_masks_differ_by_role():
    _, infos = parallel_env("coordination").reset(seed=0)
    np.testing.assert_array_equal(infos["leader_0"]["action_mask"], [1, 1, 1, 0])
    np.testing.assert_array_equal(infos["follower_1"]["action_mask"], [1, 1, 1, 1])
    _, infos = parallel_env("market-lemons", **SMALL["market-lemons"]).reset(seed=0)
    assert infos["seller_0"]["action_mask"].all()
    np.testing.assert_array_equal(infos["buyer_2"]["action_mask"], [1, 1, 1] + [0] * 17)  # pass or one of 2 slots
    space = parallel_env("coordination").action_space("leader_0")
    space.seed(0)
    mask = parallel_env("coordination").reset(seed=0)[1]["leader_0"]["action_mask"]
    assert {int(space.sample(mask)) for _ in range(50)} == {0, 1, 2}  # the form Gymnasium's masked sample takes


def rollout(env, seed: int, steps: int, action_seed: int = 1) -> list:
    """``[(observations, infos), (observations, rewards, terminations, truncations, infos), ...]``, resetting without
    a seed (the key chain goes on) whenever an episode ends."""
    out = [env.reset(seed=seed)]
    for agent in env.possible_agents:
        env.action_space(agent).seed(action_seed)
    for _ in range(steps):
        out.append(env.step({agent: env.action_space(agent).sample() for agent in env.agents}))
        if not env.agents:
            out.append(env.reset())
    return out


def assert_same_rollouts(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            assert list(u) == list(v)
            for agent in u:
                np.testing.assert_equal(u[agent], v[agent])


@pytest.mark.parametrize("name", ["coordination", "market-crash"])
def test_reset_seed_is_deterministic(name):
    options = SMALL[name]
    env = parallel_env(name, **options)
    first = rollout(env, 7, 20)
    assert_same_rollouts(first, rollout(env, 7, 20))
    assert_same_rollouts(first, rollout(parallel_env(name, **options), 7, 20))
    observations = lambda r: np.stack([np.stack(list(x[0].values())) for x in r])
    assert not np.array_equal(observations(rollout(env, 8, 20)), observations(first))


# (kernel, options, rtol): bit for bit where XLA compiles the adapter's step (the key split inside) and the raw step
# alike; grid-curtailment's frequency integration rounds differently in the two programs (by ~1e-7 relative).
REPLAY_CASES = [
    ("coordination", {"max_steps": 6}, 0.0),
    ("market-lemons", SMALL["market-lemons"], 0.0),
    ("grid-curtailment", SMALL["grid-curtailment"], 1e-5),
]


def assert_close(actual, desired, rtol: float) -> None:
    if rtol == 0:
        np.testing.assert_array_equal(actual, desired)
    else:
        np.testing.assert_allclose(actual, desired, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize(("name", "options", "rtol"), REPLAY_CASES)
def test_the_adapter_replays_the_raw_kernel(name, options, rtol):
    """The adapter's trajectory is the kernel's (jitted, no auto-reset) with the keys of its chain: ``PRNGKey(seed)``,
    then one `split_key` per reset and step; rewards per agent, and all agents leave on the step the episode ends."""
    kernel, params = make_kernel(name, auto_reset=False, **options)
    reset, step = jax.jit(kernel.reset), jax.jit(kernel.step)
    env = parallel_env(name, **options)
    dtype = np.dtype(kernel.action_space(params).dtype)
    for agent in env.possible_agents:
        env.action_space(agent).seed(2)
    observations, infos = env.reset(seed=5)
    key, sub = split_key(jax.random.PRNGKey(5))
    raw_obs, state = reset(sub, params)
    np.testing.assert_array_equal(np.stack([observations[a] for a in env.possible_agents]), raw_obs)
    episodes = 0
    for _ in range(20):
        actions = {agent: env.action_space(agent).sample(infos[agent].get("action_mask")) for agent in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)
        key, sub = split_key(key)
        joint = np.stack([np.asarray(actions[a], dtype) for a in env.possible_agents])
        raw_obs, state, raw_reward, raw_terminated, raw_truncated, _ = step(sub, state, joint, params)
        assert_close(np.stack([observations[a] for a in env.possible_agents]), raw_obs, rtol)
        assert_close([rewards[a] for a in env.possible_agents], np.asarray(raw_reward, np.float64), rtol)
        assert all(isinstance(r, float) for r in rewards.values())
        assert terminations == dict.fromkeys(env.possible_agents, bool(raw_terminated))
        assert truncations == dict.fromkeys(env.possible_agents, bool(raw_truncated))
        ended = bool(raw_terminated | raw_truncated)
        assert env.agents == ([] if ended else env.possible_agents)
        if ended:
            episodes += 1
            observations, infos = env.reset()
            key, sub = split_key(key)
            raw_obs, state = reset(sub, params)
            assert_close(np.stack([observations[a] for a in env.possible_agents]), raw_obs, rtol)
    assert episodes >= 2  # the comparison crossed the end of an episode and a reset from the key chain


@pytest.mark.parametrize("name", SINGLE)
def test_single_agent_kernels_are_refused_with_the_gymnasium_pointer(name):
    with pytest.raises(UsageError, match=r"single-agent kernel: .*use the Gymnasium adapter"):
        parallel_env(name)


def test_bad_calls_are_refused():
    with pytest.raises(ValueError, match="unknown option"):
        parallel_env("coordination", firms=2)
    with pytest.raises(UsageError, match="render_mode of coordination"):
        parallel_env("coordination", render_mode="rgb_array")
    env = parallel_env("coordination", max_steps=1)
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step({agent: 0 for agent in env.possible_agents})
    with pytest.raises(UsageError, match="seed must be an integer"):
        env.reset(seed=-1)
    env.reset(seed=0)
    with pytest.raises(UsageError, match=r"missing \['follower_1'\], unknown \['firm_0'\]"):
        env.step({"leader_0": 0, "follower_0": 0, "firm_0": 0})
    env.step({agent: 0 for agent in env.agents})
    assert env.agents == []
    with pytest.raises(gymnasium.error.ResetNeeded, match="episode has ended"):
        env.step({})


def test_gems_renders_rgb_frames():
    env = parallel_env("gems", size=5, render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["rgb_array"]
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (5, 5, 3) and frame.dtype == np.uint8 and frame.any()
    assert parallel_env("gems", size=5).render() is None
