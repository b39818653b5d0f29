"""One kernel vocabulary: ``simulate(key, env, params, policy_ids, steps, **extra)`` for the scripted-policy kernels,
``alignment(rows, env, params)`` for the markets, and `describe` entries whose common keys come from the kernel's
spaces (`agentlab.kernels.environment.describe_kernel`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentlab.kernels import describe, make, registered_kernels
from agentlab.kernels.environment import describe_kernel, insert_after
from agentlab.kernels.grid import policies as grid_policies
from agentlab.kernels.grid.curtailment import GridCurtailment, default_grid_params
from agentlab.kernels.markets import crash
from agentlab.kernels.markets.alignment import COMPONENTS
from agentlab.kernels.markets.lemons import metrics as lemons_metrics
from agentlab.kernels.markets.lemons import policies as lemons_policies
from agentlab.kernels.markets.lemons.env import MarketLemons
from agentlab.kernels.spaces import Box, Discrete

MARKETS = 3
COMMON = (
    "name",
    "family",
    "agents",
    "observation",
    "channels",
    "actions",
    "action_set",
    "event_modes",
    "blackout_regions",
)
OWN_KEYS = {"buyer_actions", "classes", "options", "stochasticity"}  # a kernel's own keys, the registry's two


def both(new, old, keys):
    """``(new rows, old rows)``: the two simulations jitted and `vmap`ped over the same `keys`, as NumPy."""
    a = jax.jit(jax.vmap(new))(keys)
    b = jax.jit(jax.vmap(old))(keys)
    return jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b)


def assert_same(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_alignment_contract(score: dict):
    for key in (*COMPONENTS, "eas"):
        assert score[key].shape == (MARKETS,)
        assert score[key].dtype == np.float64
        assert np.all((score[key] >= 0) & (score[key] <= 1))
    np.testing.assert_allclose(score["eas"], sum(score[k] for k in COMPONENTS) / 4)


def test_crash_simulate_and_alignment_equal_the_old_functions():
    env = crash.MarketCrash(num_firms=3, num_consumers=12)
    params = env.validate_params(env.default_params().replace(dlc=2))
    ids = jnp.asarray([0, 1, 1], jnp.int32)
    keys = jax.random.split(jax.random.key(7), MARKETS)
    new, old = both(
        lambda k: crash.simulate(k, env, params, ids, 20),
        lambda k: crash.simulate_crash(k, params, ids, env.num_consumers, 20),
        keys,
    )
    assert_same(new, old)
    score = crash.alignment(new, env, params)
    assert_same(score, crash.crash_alignment(old, params))
    assert_alignment_contract(score)


def test_lemons_simulate_and_alignment_equal_the_old_functions():
    env = MarketLemons(num_sellers=5, num_buyers=3, view_size=2)
    params = env.validate_params(env.default_params().replace(num_sybil=2))
    ids = jnp.asarray([0, 1, 2], jnp.int32)
    keys = jax.random.split(jax.random.key(11), MARKETS)
    new, old = both(
        lambda k: lemons_policies.simulate(k, env, params, ids, 8),
        lambda k: lemons_policies.simulate_lemons(k, params, ids, env.num_sellers, env.view_size, 8),
        keys,
    )
    assert_same(new, old)
    score = lemons_metrics.alignment(new, env, params)
    assert_same(score, lemons_metrics.lemons_alignment(old, 2))
    assert_alignment_contract(score)


def test_grid_simulate_equals_simulate_event():
    env = GridCurtailment(num_agents=3, substeps=20)
    params = default_grid_params()
    pp = grid_policies.PolicyParams(temperature=0.7)
    ids = (0, 1, 2)
    rounds = int(params.deadline)
    keys = jax.random.split(jax.random.key(5), MARKETS)
    new, old = both(
        lambda k: grid_policies.simulate(k, env, params, ids, rounds, policy_params=pp),
        lambda k: grid_policies.simulate_event(k, env, params, jnp.asarray(ids, jnp.int32), pp, rounds),
        keys,
    )
    for a, b in zip(new, old):
        assert_same(a, b)
    events = jax.tree.map(np.asarray, grid_policies.simulate_events(keys[0], env, params, ids, pp, MARKETS, rounds))
    one = jax.vmap(lambda k: grid_policies.simulate(k, env, params, ids, rounds, policy_params=pp))
    for a, b in zip(events, jax.tree.map(np.asarray, one(jax.random.split(keys[0], MARKETS)))):
        assert_same(a, b)


def test_simulate_refuses_policy_ids_that_do_not_fit_the_kernel():
    with pytest.raises(ValueError, match="firm policies"):
        crash.simulate(
            jax.random.key(0), crash.MarketCrash(num_firms=3), crash.default_crash_params(), jnp.zeros(2, int), 2
        )
    lemons = MarketLemons(num_sellers=4, num_buyers=2, view_size=2)
    with pytest.raises(ValueError, match="buyer policies"):
        lemons_policies.simulate(jax.random.key(0), lemons, lemons.default_params(), jnp.zeros(3, int), 2)
    with pytest.raises(ValueError, match="participant policies"):
        grid_policies.simulate(jax.random.key(0), GridCurtailment(num_agents=3), default_grid_params(), (0, 1), 2)


def space_text(space) -> str:
    return f"{jnp.dtype(space.dtype).name} {tuple(int(n) for n in space.shape)}"


@pytest.mark.parametrize("name", registered_kernels())
def test_describe_common_keys_come_from_the_spaces(name):
    env, params = make(name, auto_reset=False)
    entry = describe(name)
    assert [k for k in entry if k in COMMON] == list(COMMON)  # every common key, in one order
    assert set(entry) - set(COMMON) - {"roles"} <= OWN_KEYS
    assert entry["name"] == env.name and entry["agents"] == env.num_agents
    assert entry["observation"].startswith(space_text(env.observation_space(params)))
    space = env.action_space(params)
    if isinstance(space, Box):
        assert entry["action_set"] == []
        assert entry["actions"][0].startswith(f"continuous {tuple(space.shape)} in [{space.low:g}, {space.high:g}]")
    else:
        assert isinstance(space, Discrete)
        assert len(entry["action_set"]) == space.n
        assert len(entry["actions"]) <= space.n
    assert ("roles" in entry) == env.multi_agent
    if env.multi_agent:
        assert entry["roles"] == list(env.roles)
    assert entry["blackout_regions"] in ([], ["all", *entry["blackout_regions"][1:]])


def test_describe_follows_the_options():
    env, _ = make("coordination", num_agents=6, num_choices=3, auto_reset=False)
    entry = describe_kernel(env, "multi-agent", actions=["a", "b", "c"])
    assert entry["observation"] == f"float32 (6, {env.obs_dim})"
    assert entry["agents"] == 6 and entry["roles"] == list(env.roles) and entry["action_set"] == [0, 1, 2]
    env, _ = make("grid-curtailment", num_agents=7, auto_reset=False)
    assert describe_kernel(env, "x")["actions"] == ["continuous (7, 2) in [0, 1]"]
    env, _ = make("breakout", full_action_set=True, auto_reset=False)
    entry = describe_kernel(env, "atari", blackout_regions={"paddle": ()})
    assert entry["action_set"] == list(range(6)) and entry["blackout_regions"] == ["all", "paddle"]
    assert "roles" not in entry


def test_insert_after_places_a_kernels_own_keys():
    assert list(insert_after({"a": 1, "b": 2, "c": 3}, "b", x=0, y=0)) == ["a", "b", "x", "y", "c"]
