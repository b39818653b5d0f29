"""The Stable-Baselines3 bridge (`agentlab.adapters.sb3`): against SB3's own `DummyVecEnv` of the single Gymnasium
adapter (the arrays SB3 would see), against the vector adapter stepped by hand in `AutoresetMode.NEXT_STEP`
(terminal observations and reset observations), its refusals, and a short SB3 PPO run. Skipped without
stable-baselines3 (and torch), which CI does not install."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

from agentlab.adapters.gymnasium import make as make_gymnasium  # noqa: E402
from agentlab.adapters.gymnasium import make_vec as make_gymnasium_vec  # noqa: E402
from agentlab.adapters.sb3 import SB3VecEnv, make_vec  # noqa: E402
from agentlab.errors import UsageError  # noqa: E402

# Kernel -> (options, steps): short time limits, so that both terminations and truncations happen in `steps`.
CASES = {
    "breakout": ({"max_steps": 12}, 40),
    "pendulum": ({"max_steps": 7}, 20),
}
NUM_ENVS = 3
SEED = 5


def random_actions(venv, steps: int, seed: int = 0) -> list[np.ndarray]:
    """`steps` batches of actions for `venv`'s lanes from a fixed NumPy generator."""
    space = venv.action_space
    rng = np.random.default_rng(seed)
    if hasattr(space, "n"):
        return [rng.integers(0, space.n, venv.num_envs) for _ in range(steps)]
    return [rng.uniform(space.low, space.high, (venv.num_envs, *space.shape)).astype(np.float32) for _ in range(steps)]


def rollout(venv, actions: list[np.ndarray]) -> list[tuple]:
    """``[(obs, rewards, dones, infos), ...]``: the first from ``reset()`` (after ``seed(SEED)``), then one per step."""
    venv.seed(SEED)
    steps = [(venv.reset(), None, None, None)]
    for action in actions:
        steps.append(venv.step(action))
    return steps


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_bridge_gives_dummy_vec_env_arrays_bit_for_bit(name):
    options, steps = CASES[name]
    bridge = make_vec(name, NUM_ENVS, **options)
    dummy = DummyVecEnv([lambda: make_gymnasium(name, **options) for _ in range(NUM_ENVS)])
    actions = random_actions(bridge, steps)
    ours, theirs = rollout(bridge, actions), rollout(dummy, actions)
    finished = truncated = 0
    for t, ((obs, rew, done, info), (obs_d, rew_d, done_d, info_d)) in enumerate(zip(ours, theirs)):
        assert obs.dtype == obs_d.dtype and obs.shape == (NUM_ENVS, *bridge.observation_space.shape)
        np.testing.assert_array_equal(obs, obs_d, err_msg=f"obs at step {t}")
        if t == 0:
            continue
        assert rew.dtype == np.float32 and done.dtype == np.bool_
        np.testing.assert_array_equal(rew, rew_d, err_msg=f"rewards at step {t}")
        np.testing.assert_array_equal(done, done_d, err_msg=f"dones at step {t}")
        for i in range(NUM_ENVS):
            assert info[i]["TimeLimit.truncated"] == info_d[i]["TimeLimit.truncated"]
            assert ("terminal_observation" in info[i]) == bool(done[i])
            if done[i]:
                np.testing.assert_array_equal(info[i]["terminal_observation"], info_d[i]["terminal_observation"])
        finished += int(done.sum())
        truncated += sum(info[i]["TimeLimit.truncated"] for i in range(NUM_ENVS))
    assert truncated >= NUM_ENVS  # the time limit ended episodes in every case ...
    if name == "breakout":
        assert finished > truncated  # ... and breakout's random play also lost its ball


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_bridge_is_the_next_step_adapter_without_its_empty_steps(name):
    """Lane i of the bridge against a one-lane `make_vec` reset with seed ``SEED + i`` and stepped by hand: where the
    lane finishes, `terminal_observation` is the adapter's observation of that step (with the same reward and flags),
    and the bridge's observation is the one the adapter returns on its next (empty) step, whatever its action."""
    options, steps = CASES[name]
    bridge = make_vec(name, NUM_ENVS, **options)
    actions = random_actions(bridge, steps, seed=1)
    ours = rollout(bridge, actions)
    for i in range(NUM_ENVS):
        lane = make_gymnasium_vec(name, 1, **options)
        obs, _ = lane.reset(seed=SEED + i)
        np.testing.assert_array_equal(ours[0][0][i], obs[0])
        resets = 0
        for t, action in enumerate(actions, start=1):
            obs, rew, term, trunc, _ = lane.step(action[i : i + 1])
            b_obs, b_rew, b_done, b_info = ours[t]
            assert b_rew[i] == np.float32(rew[0]) and b_done[i] == (term[0] | trunc[0])
            assert b_info[i]["TimeLimit.truncated"] == bool(trunc[0] and not term[0])
            if term[0] or trunc[0]:
                np.testing.assert_array_equal(b_info[i]["terminal_observation"], obs[0])
                empty = actions[(t + 7) % steps][i : i + 1]  # any action: NEXT_STEP ignores it
                obs, rew, term, trunc, _ = lane.step(empty)
                assert rew[0] == 0 and not term[0] and not trunc[0]
                resets += 1
            np.testing.assert_array_equal(b_obs[i], obs[0], err_msg=f"lane {i}, step {t}")
        assert resets >= 1


def test_refusals():
    with pytest.raises(UsageError, match="make_vec"):
        SB3VecEnv(make_gymnasium("breakout"))
    with pytest.raises(UsageError, match="multi-agent"):
        make_vec("coordination", 2)
    with pytest.raises(UsageError, match="num_envs"):
        make_vec("breakout", 0)
    bridge = make_vec("breakout", 2)
    with pytest.raises(UsageError, match="reset"):
        bridge.step_wait()
    with pytest.raises(UsageError, match="every lane"):
        bridge.set_attr("render_mode", None, indices=[0])
    bridge.set_attr("kernel_name", "breakout")
    assert bridge.get_attr("kernel_name", indices=[0, 1]) == ["breakout", "breakout"]
    assert bridge.env_is_wrapped(VecMonitor) == [False, False]


def test_sb3_ppo_learns_steps_on_the_bridge():
    """A short PPO run: SB3's own checks of the spaces pass, rollouts and updates run, and `VecMonitor` sees episodes
    whose lengths add up to at most the steps taken."""
    venv = VecMonitor(make_vec("breakout", 4, max_steps=50))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps == 256
    lengths = [episode["l"] for episode in model.ep_info_buffer]
    assert lengths and all(1 <= n <= 50 for n in lengths) and sum(lengths) <= 256
