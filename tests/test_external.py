"""External JAX environments as contract kernels (`agentlab.kernels.external`): gymnax and JaxMARL.

The oracle is the external library itself, driven directly through its own reset and transition functions with
the same keys (and reset where the contract's `AutoReset` resets: from ``derive_key(step_key, RESET_STREAM)``).
JaxMARL is not in the ``test`` extra; its tests skip where it is not installed.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.errors import UsageError
from agentlab.hashing import derive_key
from agentlab.kernels import describe, make, option_defaults
from agentlab.kernels import external as ext
from agentlab.kernels.environment import RESET_STREAM
from agentlab.kernels.names import canonical_id, split_external_id
from agentlab.kernels.spaces import Box, Discrete

gymnax = pytest.importorskip("gymnax")

STEPS = 300
LANES = 3
SPREAD = "jaxmarl:MPE_simple_spread_v3"
# gymnax envs under test -> a time limit short enough that 300 random steps truncate (and CartPole terminates)
GYMNAX = {"CartPole-v1": 20, "Acrobot-v1": 60, "Pendulum-v1": 40}
# Pendulum's sin/cos fuse differently under `vmap` than in the one-lane program: last-bit differences (<= 5e-7)
NOT_BIT_EXACT = {"Pendulum-v1"}


def jaxmarl_module():
    return pytest.importorskip("jaxmarl")


def random_actions(env, seed: int, steps: int, lanes: tuple[int, ...] = ()) -> jax.Array:
    """Actions drawn with NumPy from the wrapper's action space, ``(*lanes, steps, *action_shape)`` (the same
    array drives both sides)."""
    space = env.action_space()
    rng = np.random.default_rng(seed)
    shape = (*lanes, steps, *space.shape)
    if isinstance(space, Discrete):
        return jnp.asarray(rng.integers(0, space.n, shape), jnp.int32)
    return jnp.asarray(rng.uniform(space.low, space.high, shape), jnp.float32)


def contract_rollout(env, params, steps: int):
    """``(key, actions) -> (obs0, (obs, reward, terminated, truncated, final_obs))`` through the contract."""

    def run(key, actions):
        obs0, state = env.reset(key, params)

        def body(state, x):
            step_key, action = x
            obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
            return state, (obs, reward, terminated, truncated, info["final_observation"])

        keys = jax.random.split(jax.random.fold_in(key, 1), steps)
        return obs0, jax.lax.scan(body, state, (keys, actions))[1]

    return run


def select(done, fresh, old):
    return jax.tree.map(lambda a, b: jnp.where(done, jnp.asarray(a), jnp.asarray(b)), fresh, old)


@functools.cache
def gymnax_case(env_id: str):
    """The wrapper (auto-reset on) beside gymnax's own `reset_env` / `step_env` / `is_truncated`, both jitted."""
    max_steps = GYMNAX[env_id]
    env, params = make(f"gymnax:{env_id}", max_steps=max_steps)
    inner, inner_params = gymnax.make(env_id)
    inner_params = inner_params.replace(max_steps_in_episode=max_steps)

    def direct(key, actions):
        obs0, state = inner.reset_env(key, inner_params)
        state = jax.tree.map(jnp.asarray, state)

        def body(state, x):
            step_key, action = x
            obs, nxt, reward, terminated, _ = inner.step_env(step_key, state, action, inner_params)
            truncated = inner.is_truncated(nxt, inner_params) & ~terminated
            done = terminated | truncated
            fresh_obs, fresh = inner.reset_env(derive_key(step_key, RESET_STREAM), inner_params)
            state = jax.tree.map(lambda a, b: a.astype(b.dtype), select(done, fresh, nxt), state)
            return state, (jnp.where(done, fresh_obs, obs), reward, terminated, truncated, obs)

        keys = jax.random.split(jax.random.fold_in(key, 1), STEPS)
        return obs0, jax.lax.scan(body, state, (keys, actions))[1]

    return env, params, jax.jit(jax.vmap(contract_rollout(env, params, STEPS))), jax.jit(direct)


@functools.cache
def spread_case():
    """The MPE simple spread wrapper (auto-reset on, its default 25-step limit) beside JaxMARL's environment
    driven directly (its own limit out of reach) and reset at the contract's limit."""
    jaxmarl = jaxmarl_module()
    env, params = make(SPREAD)
    inner = jaxmarl.make("MPE_simple_spread_v3", max_steps=10_000)
    agents = inner.agents
    limit = params.max_steps

    def direct(key, actions):
        obs0, state = inner.reset(key)

        def body(carry, x):
            state, time = carry
            step_key, action = x
            obs, nxt, rewards, dones, _ = inner.step_env(step_key, state, {a: action[i] for i, a in enumerate(agents)})
            terminated = dones["__all__"]
            truncated = (time + 1 >= limit) & ~terminated
            done = terminated | truncated
            fresh_obs, fresh = inner.reset(derive_key(step_key, RESET_STREAM))
            state = jax.tree.map(lambda a, b: a.astype(b.dtype), select(done, fresh, nxt), state)
            stacked = jnp.stack([obs[a] for a in agents])
            out_obs = jnp.where(done, jnp.stack([fresh_obs[a] for a in agents]), stacked)
            reward = jnp.stack([rewards[a] for a in agents])
            return (state, jnp.where(done, 0, time + 1)), (out_obs, reward, terminated, truncated, stacked)

        keys = jax.random.split(jax.random.fold_in(key, 1), STEPS)
        return jnp.stack([obs0[a] for a in agents]), jax.lax.scan(body, (state, jnp.int32(0)), (keys, actions))[1]

    return env, params, jax.jit(jax.vmap(contract_rollout(env, params, STEPS))), jax.jit(direct)


@functools.cache
def lanes_beside_direct(case: str):
    """The wrapper's `LANES` lanes in one jitted `vmap` and the library driven directly, one lane at a time in a
    Python loop, with the same keys and actions: ``(env, params, keys, actions, batched, [direct per lane])``."""
    env, params, batched, direct = spread_case() if case == "spread" else gymnax_case(case)
    keys = jax.random.split(jax.random.key(7), LANES)
    actions = random_actions(env, 8, STEPS, (LANES,))
    return env, params, keys, actions, batched(keys, actions), [direct(keys[i], actions[i]) for i in range(LANES)]


def lane(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def assert_same(ours, theirs, exact: bool = True):
    """Observations, rewards and final observations equal (to float32 rounding where not `exact`: XLA fuses some
    physics differently in two programs, last-bit differences below 1e-6), flags equal."""
    obs0, (obs, reward, terminated, truncated, final) = ours
    obs0_x, (obs_x, reward_x, terminated_x, truncated_x, final_x) = theirs
    tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-5}
    for mine, other in ((obs0, obs0_x), (obs, obs_x), (reward, reward_x), (final, final_x)):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(other, np.asarray(mine).dtype), **tolerance)
    np.testing.assert_array_equal(np.asarray(terminated), np.asarray(terminated_x))
    np.testing.assert_array_equal(np.asarray(truncated), np.asarray(truncated_x))


# ---------------------------------------------------------------------------------------------- names, bad input


def test_external_ids_pass_through_canonical_id_and_split():
    assert canonical_id("gymnax:CartPole-v1") == "gymnax:CartPole-v1"
    assert canonical_id(SPREAD) == SPREAD
    assert split_external_id("gymnax:CartPole-v1") == ("gymnax", "CartPole-v1")
    assert split_external_id("jaxmarl:MPE_simple_spread_v3") == ("jaxmarl", "MPE_simple_spread_v3")
    for name in ("breakout", "gymnax:", "brax:ant", "gymnaxCartPole-v1", ":CartPole-v1"):
        assert split_external_id(name) is None
    assert ext.EXTERNAL_PREFIXES == ("gymnax", "jaxmarl")


def one_line_error(name: str, **options) -> str:
    with pytest.raises(UsageError) as info:
        make(name, **options)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_bad_ids_options_and_a_missing_extra_are_one_line(monkeypatch):
    text = one_line_error("gymnax:Foo-v0")
    assert text.startswith("gymnax:Foo-v0: unknown gymnax environment; valid: ") and "CartPole-v1" in text
    assert "unknown option 'bogus' for gymnax:CartPole-v1" in one_line_error("gymnax:CartPole-v1", bogus=1)
    assert "valid options are" in one_line_error("gymnax:CartPole-v1", bogus=1)
    assert "option gravity of gymnax:CartPole-v1 must be float" in one_line_error("gymnax:CartPole-v1", gravity="x")
    assert "max_steps must be a positive integer" in one_line_error("gymnax:CartPole-v1", max_steps=0)
    assert "unknown kernel 'brax:ant'" in one_line_error("brax:ant")
    monkeypatch.setattr(ext, "external_available", lambda prefix: False)
    assert one_line_error("gymnax:CartPole-v1") == (
        "gymnax:CartPole-v1 needs the gymnax extra: pip install 'agentlab[gymnax]'"
    )
    assert one_line_error(SPREAD) == f"{SPREAD} needs the jaxmarl extra: pip install 'agentlab[jaxmarl]'"


def test_unknown_jaxmarl_id_and_option_are_one_line():
    jaxmarl_module()
    text = one_line_error("jaxmarl:Nope")
    assert text.startswith("jaxmarl:Nope: unknown jaxmarl environment; valid: ") and "MPE_simple_spread_v3" in text
    assert "unknown option 'bogus' for jaxmarl:MPE_simple_spread_v3" in one_line_error(SPREAD, bogus=1)
    assert "option num_agents of jaxmarl:MPE_simple_spread_v3 must be int" in one_line_error(SPREAD, num_agents=2.5)


# ---------------------------------------------------------------------------------------------- options, spaces


def test_gymnax_options_set_env_params_and_max_steps_maps_to_max_steps_in_episode():
    defaults = option_defaults("gymnax:CartPole-v1")
    assert defaults["max_steps"] == 500 and defaults["gravity"] == 9.8 and "max_steps_in_episode" not in defaults
    env, params = make("gymnax:CartPole-v1", max_steps=7, gravity=20, auto_reset=False)
    assert params.max_steps == 7 and params.inner.max_steps_in_episode == 7
    assert params.inner.gravity == 20.0 and isinstance(params.inner.gravity, float)
    assert make("gymnax:CartPole-v1", max_steps=None)[1].max_steps is None
    assert env.default_params().max_steps == 500


def test_spaces_match_the_external_ones():
    env, params = make("gymnax:CartPole-v1")
    assert env.action_space(params) == Discrete(2) and env.num_actions == 2 and not env.multi_agent
    obs_space = env.observation_space(params)
    assert isinstance(obs_space, Box) and obs_space.shape == (4,) and obs_space.dtype == jnp.float32
    high = np.asarray(gymnax.make("CartPole-v1")[0].observation_space(params.inner).high)
    assert obs_space.high == pytest.approx(float(high.max())) and obs_space.low == pytest.approx(-float(high.max()))
    pendulum, p = make("gymnax:Pendulum-v1")
    assert pendulum.action_space(p) == Box(-2.0, 2.0, (1,), jnp.float32)
    obs, _ = env.reset(jax.random.key(0), params)
    assert bool(obs_space.contains(obs))


def test_jaxmarl_spaces_stack_agents_on_axis_zero_and_options_pass_through():
    jaxmarl_module()
    env, params = make(SPREAD)
    assert env.multi_agent and env.num_agents == 3 and env.roles == (0, 0, 0) and params.max_steps == 25
    assert env.action_space() == Discrete(5, shape=(3,)) and env.action_mask(params) is None
    assert env.observation_space().shape == (3, 18) and env.observation_space().dtype == jnp.float32
    defaults = option_defaults(SPREAD)
    assert defaults["max_steps"] == 25 and defaults["num_agents"] == 3 and defaults["local_ratio"] == 0.5
    four, params4 = make(SPREAD, num_agents=4, max_steps=10, auto_reset=False)
    obs, _ = jax.eval_shape(four.reset, jax.random.key(1), params4)
    assert four.num_agents == 4 and obs.shape == four.observation_space().shape == (4, 22)
    assert obs.dtype == jnp.float32 and params4.max_steps == 10


def test_overcooked_layout_is_named_and_observations_keep_their_real_shape():
    jaxmarl_module()
    env, params = make("jaxmarl:overcooked", layout="asymm_advantages")
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    assert obs.shape == env.observation_space().shape == (2, 5, 9, 26)  # JaxMARL's own space says (9, 5, 26)
    assert option_defaults("jaxmarl:overcooked")["layout"] == "cramped_room" and params.max_steps == 400
    assert "layout of jaxmarl:overcooked must be one of 'cramped_room'" in one_line_error(
        "jaxmarl:overcooked", layout="nope"
    )


def test_describe_lists_spaces_and_options():
    entry = describe("gymnax:CartPole-v1")
    assert entry["name"] == "gymnax:CartPole-v1" and entry["family"] == "gymnax" and entry["agents"] == 1
    assert entry["observation"].startswith("float32 (4,)") and entry["action_set"] == [0, 1]
    assert entry["options"]["max_steps"] == 500


# ---------------------------------------------------------------------------------------------- trajectories


@pytest.mark.parametrize("env_id", sorted(GYMNAX))
def test_gymnax_lanes_under_jit_vmap_equal_gymnax_driven_directly_lane_by_lane(env_id):
    env, params, _, _, batched, direct = lanes_beside_direct(env_id)
    for i in range(LANES):
        assert_same(lane(batched, i), direct[i], exact=env_id not in NOT_BIT_EXACT)
    terminated, truncated = np.asarray(batched[1][2]), np.asarray(batched[1][3])
    assert truncated.sum() >= 2 and not (terminated & truncated).any()
    if env_id == "CartPole-v1":
        assert terminated.sum() >= 2
    obs_space = env.observation_space(params)
    obs = np.asarray(batched[1][0])
    assert obs.shape == (LANES, STEPS, *obs_space.shape) and obs.dtype == obs_space.dtype


def test_auto_reset_starts_from_the_reset_stream_key():
    env, params, keys, _, batched, _ = lanes_beside_direct("CartPole-v1")
    bare, _ = make("gymnax:CartPole-v1", max_steps=GYMNAX["CartPole-v1"], auto_reset=False)
    _, (obs, _, terminated, truncated, _) = lane(batched, 0)
    t = int(np.flatnonzero(np.asarray(terminated | truncated))[0])
    step_key = jax.random.split(jax.random.fold_in(keys[0], 1), STEPS)[t]
    fresh_obs, fresh = bare.reset(derive_key(step_key, RESET_STREAM), params)
    np.testing.assert_array_equal(np.asarray(obs[t]), np.asarray(fresh_obs))
    assert int(fresh.time) == 0


def test_spread_lanes_under_jit_vmap_equal_jaxmarl_driven_directly_lane_by_lane():
    jaxmarl_module()
    _, _, _, _, batched, direct = lanes_beside_direct("spread")
    for i in range(LANES):
        assert_same(lane(batched, i), direct[i], exact=False)
    truncated = np.asarray(batched[1][3][0])
    assert np.array_equal(np.flatnonzero(truncated), np.arange(24, STEPS, 25))  # every 25 steps
    assert batched[1][1].shape == (LANES, STEPS, 3) and batched[1][1].dtype == jnp.float32


def test_jaxmarl_mpe_ends_a_step_later_than_the_contract_as_documented():
    jaxmarl = jaxmarl_module()
    inner = jaxmarl.make("MPE_simple_spread_v3")  # its own limit: 25
    step = jax.jit(inner.step_env)
    _, state = inner.reset(jax.random.key(0))
    actions = {a: jnp.int32(0) for a in inner.agents}
    ends = []
    for t in range(27):
        _, state, _, dones, _ = step(jax.random.key(t), state, actions)
        ends.append(bool(dones["__all__"]))
    assert ends.index(True) == 25  # the 26th step; the wrapper truncates on the 25th (tested above)


# ---------------------------------------------------------------------------------------------- command line

runner = CliRunner()


def test_envs_says_external_environments_are_available_without_importing_them():
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from agentlab.cli.app import app\n"
        "r = CliRunner().invoke(app, ['envs', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps({'external': json.loads(r.stdout)['external'],"
        " 'imported': [m for m in ('gymnax', 'jaxmarl') if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["imported"] == []
    by_prefix = {e["prefix"]: e for e in data["external"]}
    assert by_prefix["gymnax"]["installed"] is True and by_prefix["gymnax"]["example"] == "gymnax:CartPole-v1"
    assert by_prefix["jaxmarl"]["install"] == "pip install 'agentlab[jaxmarl]'"


def test_train_with_an_unknown_external_id_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "ppo", "--env", "gymnax:Foo-v0", "--out", str(out), "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gymnax:Foo-v0: unknown gymnax environment" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_train_ppo_and_eval_on_gymnax_cartpole(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(
        "num_envs = 8\nnum_steps = 16\nnum_minibatches = 2\nupdates_per_chunk = 2\nhidden = [16, 16]\n"
        "max_episode_steps = 50\n"
    )
    out = tmp_path / "run"
    args = ["train", "ppo", "--env", "gymnax:CartPole-v1", "--env-option", "gravity=9.8", "--steps", "512"]
    result = runner.invoke(app, [*args, "--config", str(config), "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["env"] == "gymnax:CartPole-v1" and summary["steps_per_seed"] == 512
    recorded = json.loads((out / "config.json").read_text())["config"]
    assert recorded["env"] == "gymnax:CartPole-v1"
    evaluated = runner.invoke(app, ["eval", str(out), "--episodes", "4", "--json", "--quiet"])
    assert evaluated.exit_code == 0, evaluated.stderr
    returns = [v for k, v in json.loads(evaluated.stdout).items() if k.startswith("mean_return")]
    assert returns and all(1 <= r <= 50 for r in returns)
