"""The `gems` kernel: the jitted step against a plain-Python statement of the rules, then the rules one by one."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.errors import UsageError
from agentlab.kernels.environment import RESET_STREAM, AutoReset, derive_key
from agentlab.kernels.multi.gems import Gems, GemsState, describe, make_gems, render
from agentlab.rl.rollout import random_rollout

# Grid configurations the randomised tests draw from: (size, num_blue, num_red, num_purple). Small grids so
# that agents often stand on gems; one of each compiles once per session.
CONFIGS = ((4, 2, 2, 2), (3, 1, 2, 3), (5, 3, 3, 3))
EGO_SWAP = [1, 0, 3, 2, 4]  # agent 1's ego planes from the authors' planes


@functools.cache
def kernel(size=15, num_blue=3, num_red=3, num_purple=3, plane_order="ego"):
    """``(env, params, reset, step, batch_step)`` jitted once per configuration (no auto-reset)."""
    env, params = make_gems(size, num_blue, num_red, num_purple, plane_order=plane_order)
    batch_step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    return env, params, jax.jit(env.reset), jax.jit(env.step), batch_step


@functools.cache
def respawn_draws(*config):
    """The candidate respawn cells of a batch of step keys: ``(batch, num_gems, 2)``."""
    env, _, _, _, _ = kernel(*config)
    return jax.jit(jax.vmap(env.respawn_cells))


@functools.cache
def joint_rewards(*config):
    """`Gems.joint_reward` jitted and mapped over a batch of states and actions."""
    env, _, _, _, _ = kernel(*config)
    return jax.jit(jax.vmap(env.joint_reward, in_axes=(0, 0, 0, None)))


def state(agents, gems, collected=0, time=0):
    return GemsState(
        agents=jnp.asarray(agents, jnp.int32),
        gems=jnp.asarray(gems, jnp.int32).reshape(-1, 2),
        collected=jnp.int32(collected),
        time=jnp.int32(time),
    )


# -- the rules in plain Python ------------------------------------------------------------------------------------


def reference_step(agents, gems, kinds, action, respawn, collected, time, params, size):
    """One step of the stated rules, agent by agent, each collection respawning at once (from `respawn`, the
    kernel's candidate cell per gem for this step): ``(agents, gems, reward, collected, terminated, truncated)``."""
    agents = [tuple(map(int, a)) for a in agents]
    gems = [tuple(map(int, g)) for g in gems]
    respawn = [tuple(map(int, r)) for r in respawn]
    start = list(agents)
    reward = [0.0, 0.0]
    moves = {0: (0, 1), 1: (1, 0), 2: (0, -1), 3: (-1, 0)}
    for i in (0, 1):
        dx, dy = moves.get(int(action[i]), (0, 0))
        x, y = agents[i][0] + dx, agents[i][1] + dy
        if 0 <= x < size and 0 <= y < size:
            agents[i] = (x, y)
        for g, kind in enumerate(kinds):
            if kind == i and gems[g] == agents[i]:
                reward[i] += params.own_reward
                if params.collect:
                    gems[g] = respawn[g]
                    collected += 1
    purple = [g for g, kind in enumerate(kinds) if kind == 2]
    on_after = [any(gems[g] == agents[i] for g in purple) for i in (0, 1)]
    on_before = [any(gems[g] == start[i] for g in purple) for i in (0, 1)]
    on = [on_after[i] or (params.purple_quirk and on_before[i]) for i in (0, 1)]
    if on[0] and on[1]:
        reward = [r + params.purple_reward for r in reward]
        taken = [g for g in purple if gems[g] in agents]
        if params.collect:
            for g in taken:
                gems[g] = respawn[g]
            collected += len(taken)
    terminated = bool(params.collect) and collected > params.gem_limit
    truncated = (not terminated) and time + 1 >= params.max_steps
    return agents, gems, reward, collected, terminated, truncated


def reference_planes(agents, gems, kinds, size, order):
    """``(2, 5, size, size)`` float32, ``[agent, plane, x, y]``."""
    base = np.zeros((5, size, size), np.float32)
    for i, (x, y) in enumerate(agents):
        base[i, x, y] = 1
    for (x, y), kind in zip(gems, kinds):
        base[2 + kind, x, y] = 1
    if order == "authors":
        return np.stack([base, base])
    return np.stack([base, base[EGO_SWAP]])


def random_states(rng, size, num_gems, batch, params):
    agents = rng.integers(0, size, (batch, 2, 2))
    gems = rng.integers(0, size, (batch, num_gems, 2))
    # Put agents on gems often: copy a random gem's cell onto each agent with prob. 1/2.
    for b in range(batch):
        for i in range(2):
            if num_gems and rng.random() < 0.5:
                agents[b, i] = gems[b, rng.integers(num_gems)]
    collected = rng.integers(0, params.gem_limit + 2, batch)
    time = rng.integers(0, params.max_steps, batch)
    actions = rng.integers(0, 5, (batch, 2))
    return agents, gems, collected, time, actions


@given(
    seed=st.integers(0, 2**31 - 1),
    config=st.sampled_from(CONFIGS),
    gem_limit=st.integers(0, 8),
    max_steps=st.integers(1, 50),
)
def test_jitted_step_matches_the_rules_in_python(seed, config, gem_limit, max_steps):
    """Random states (agents put on gems half the time) and joint actions, under each of collect and
    purple_quirk on and off: next state, rewards, flags and observation as the rules in Python say."""
    env, params, _, _, batch_step = kernel(*config)
    size = config[0]
    rng = np.random.default_rng(seed)
    batch = 32
    keys = jax.random.split(jax.random.key(seed), batch)
    respawn = np.asarray(respawn_draws(*config)(keys))
    assert respawn.min() >= 1 and respawn.max() <= size - 1
    kinds = list(env.gem_kind)
    for collect in (False, True):
        for quirk in (False, True):
            params = params.replace(collect=collect, purple_quirk=quirk, gem_limit=gem_limit, max_steps=max_steps)
            agents, gems, collected, time, actions = random_states(rng, size, env.num_gems, batch, params)
            states = GemsState(
                agents=jnp.asarray(agents, jnp.int32),
                gems=jnp.asarray(gems, jnp.int32),
                collected=jnp.asarray(collected, jnp.int32),
                time=jnp.asarray(time, jnp.int32),
            )
            step = batch_step(keys, states, jnp.asarray(actions, jnp.int32), params)
            obs, out, reward, terminated, truncated, info = jax.tree.map(np.asarray, step)
            for b in range(batch):
                exp = reference_step(
                    agents[b], gems[b], kinds, actions[b], respawn[b], int(collected[b]), int(time[b]), params, size
                )
                exp_agents, exp_gems, exp_reward, exp_collected, exp_term, exp_trunc = exp
                where = f"collect={collect} quirk={quirk} lane {b}"
                np.testing.assert_array_equal(out.agents[b], np.asarray(exp_agents), err_msg=where)
                np.testing.assert_array_equal(out.gems[b].reshape(-1, 2), np.reshape(exp_gems, (-1, 2)), err_msg=where)
                np.testing.assert_allclose(reward[b], exp_reward, err_msg=where)
                assert int(out.collected[b]) == exp_collected, where
                assert bool(terminated[b]) == exp_term and bool(truncated[b]) == exp_trunc, where
                assert int(out.time[b]) == int(time[b]) + 1
                np.testing.assert_array_equal(obs[b], reference_planes(exp_agents, exp_gems, kinds, size, "ego"))
                assert float(info["episode_metrics"]["gems_collected"][b]) == exp_collected
            assert reward.dtype == np.float32 and reward.shape == (batch, 2)
            assert info["action_mask"].shape == (batch, 2, 5) and info["action_mask"].all()


@given(seed=st.integers(0, 2**31 - 1), config=st.sampled_from(CONFIGS), collect=st.booleans())
def test_joint_reward_is_what_the_step_pays(seed, config, collect):
    """The pure helper for a tabular export moves the agents and pays exactly as `step` does."""
    env, params, _, _, batch_step = kernel(*config)
    params = params.replace(collect=collect, purple_quirk=seed % 2 == 1)
    rng = np.random.default_rng(seed)
    agents, gems, collected, time, actions = random_states(rng, config[0], env.num_gems, 32, params)
    states = GemsState(
        agents=jnp.asarray(agents, jnp.int32),
        gems=jnp.asarray(gems, jnp.int32),
        collected=jnp.zeros(32, jnp.int32),
        time=jnp.asarray(time, jnp.int32),
    )
    keys = jax.random.split(jax.random.key(seed), 32)
    _, out, reward, _, _, _ = batch_step(keys, states, jnp.asarray(actions, jnp.int32), params)
    helper = joint_rewards(*config)
    next_agents, helper_reward = helper(jnp.asarray(agents), jnp.asarray(gems), jnp.asarray(actions), params)
    np.testing.assert_array_equal(np.asarray(next_agents), np.asarray(out.agents))
    np.testing.assert_array_equal(np.asarray(helper_reward), np.asarray(reward))


# -- the rules one by one -----------------------------------------------------------------------------------------


def one_step(env_params_step, st_, action, **changes):
    env, params, _, step, _ = env_params_step
    params = params.replace(**changes)
    return step(jax.random.key(7), st_, jnp.asarray(action, jnp.int32), params)


def test_respawn_cells_cover_1_to_size_minus_1_uniformly_never_0():
    size = 5
    keys = jax.random.split(jax.random.key(0), 4000)
    cells = np.asarray(respawn_draws(size, 1, 1, 1)(keys)).reshape(-1)  # 4000 keys x 3 gems x 2 coordinates
    assert cells.min() == 1 and cells.max() == size - 1
    counts = np.bincount(cells, minlength=size)[1:]
    expected = cells.size / (size - 1)
    se = np.sqrt(cells.size * (1 / (size - 1)) * (1 - 1 / (size - 1)))
    assert np.all(np.abs(counts - expected) < 4 * se), counts


def test_a_collected_gem_respawns_inside_1_to_size_minus_1():
    """Agent 0 steps onto its blue gem at the border row x = 0; over many keys the gem's new cell is never on row
    or column 0."""
    k = kernel(4, 1, 1, 1)
    env, params, _, _, batch_step = k
    n = 500
    st_ = state([[0, 1], [3, 3]], [[0, 2], [2, 2], [1, 1]])
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), st_)
    keys = jax.random.split(jax.random.key(3), n)
    _, out, reward, _, _, _ = batch_step(keys, states, jnp.broadcast_to(jnp.int32([0, 4]), (n, 2)), params)
    np.testing.assert_array_equal(np.asarray(reward), np.broadcast_to([1.0, 0.0], (n, 2)))
    blue = np.asarray(out.gems[:, 0])
    assert blue.min() == 1 and blue.max() == 3 and len(np.unique(blue, axis=0)) == 9
    np.testing.assert_array_equal(np.asarray(out.gems[:, 1:]), np.broadcast_to([[2, 2], [1, 1]], (n, 2, 2)))
    assert np.all(np.asarray(out.collected) == 1)


def test_reset_draws_every_cell_including_row_and_column_0():
    env, params, reset, _, _ = kernel(3, 1, 1, 1)
    states = jax.jit(jax.vmap(lambda k: env.init(k, params)))(jax.random.split(jax.random.key(1), 600))
    cells = np.concatenate([np.asarray(states.agents), np.asarray(states.gems)], axis=1).reshape(-1, 2)
    assert len(np.unique(cells, axis=0)) == 9
    assert np.all(np.asarray(states.time) == 0) and np.all(np.asarray(states.collected) == 0)


def test_purple_bonus_only_when_both_agents_stand_on_purple():
    k = kernel(5, 1, 1, 2)
    gems = [[4, 4], [4, 0], [1, 1], [3, 3]]  # blue, red, purple, purple
    # Both step onto different purple gems: +6 each, both purple gems collected.
    _, out, reward, _, _, _ = one_step(k, state([[1, 0], [2, 3]], gems), [0, 1])
    np.testing.assert_array_equal(np.asarray(reward), [6.0, 6.0])
    assert int(out.collected) == 2
    # Only one on purple: nothing, nothing collected.
    _, out, reward, _, _, _ = one_step(k, state([[1, 0], [2, 2]], gems), [0, 4])
    np.testing.assert_array_equal(np.asarray(reward), [0.0, 0.0])
    assert int(out.collected) == 0
    np.testing.assert_array_equal(np.asarray(out.gems), gems)
    # Both on the same purple gem: +6 each, that one gem collected once.
    _, out, reward, _, _, _ = one_step(k, state([[1, 1], [1, 2]], gems), [4, 2])
    np.testing.assert_array_equal(np.asarray(reward), [6.0, 6.0])
    assert int(out.collected) == 1
    np.testing.assert_array_equal(np.asarray(out.gems[3]), [3, 3])
    # Own gems never count as purple: agent 0 on blue, agent 1 on purple.
    _, out, reward, _, _, _ = one_step(k, state([[4, 4], [3, 3]], gems), [4, 4])
    np.testing.assert_array_equal(np.asarray(reward), [1.0, 0.0])


def test_purple_quirk_counts_the_cell_an_agent_left():
    """Agent 0 starts on a purple gem and walks off while agent 1 arrives on another: the rule as stated pays
    nothing; the authors' quirk pays both, and collects only the purple gem still occupied."""
    k = kernel(5, 1, 1, 2)
    gems = [[4, 4], [4, 0], [1, 1], [3, 3]]
    before = state([[1, 1], [2, 3]], gems)
    _, out, reward, _, _, _ = one_step(k, before, [1, 1], purple_quirk=False)
    np.testing.assert_array_equal(np.asarray(reward), [0.0, 0.0])
    assert int(out.collected) == 0
    _, out, reward, _, _, _ = one_step(k, before, [1, 1], purple_quirk=True)
    np.testing.assert_array_equal(np.asarray(reward), [6.0, 6.0])
    assert int(out.collected) == 1
    np.testing.assert_array_equal(np.asarray(out.gems[2]), [1, 1])  # left behind, not collected
    # The quirk needs purple under the agent at some point: starting off purple and staying off pays nothing.
    _, _, reward, _, _, _ = one_step(k, state([[0, 1], [2, 3]], gems), [3, 1], purple_quirk=True)
    np.testing.assert_array_equal(np.asarray(reward), [0.0, 0.0])


def test_moves_off_the_grid_are_no_ops_and_actions_map_to_axes():
    k = kernel(4, 1, 1, 1)
    gems = [[2, 2], [2, 2], [2, 2]]
    for action, corner, expected in [
        (0, [3, 3], [3, 3]),  # +y at the top
        (1, [3, 3], [3, 3]),  # +x at the right
        (2, [0, 0], [0, 0]),  # -y at the bottom
        (3, [0, 0], [0, 0]),  # -x at the left
        (0, [0, 0], [0, 1]),
        (1, [0, 0], [1, 0]),
        (2, [3, 3], [3, 2]),
        (3, [3, 3], [2, 3]),
        (4, [1, 3], [1, 3]),
        (7, [1, 3], [1, 3]),  # any other integer stays
        (-1, [1, 1], [1, 1]),  # (not +y)
    ]:
        _, out, _, _, _, _ = one_step(k, state([corner, corner], gems), [action, action])
        np.testing.assert_array_equal(np.asarray(out.agents), [expected, expected], err_msg=f"action {action}")


def test_agents_move_in_order_and_never_block_each_other():
    """Agents may share a cell and swap places; each collects only its own gems on its own move."""
    k = kernel(4, 1, 1, 1)
    gems = [[1, 0], [0, 0], [3, 3]]  # agent 0's blue at agent 1's start, agent 1's red at agent 0's start
    _, out, reward, _, _, _ = one_step(k, state([[0, 0], [1, 0]], gems), [1, 3])
    np.testing.assert_array_equal(np.asarray(out.agents), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(np.asarray(reward), [1.0, 1.0])
    assert int(out.collected) == 2
    # Onto the same cell.
    _, out, reward, _, _, _ = one_step(k, state([[0, 0], [2, 0]], [[1, 0], [1, 0], [3, 3]]), [1, 3])
    np.testing.assert_array_equal(np.asarray(out.agents), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(np.asarray(reward), [1.0, 1.0])


def test_termination_after_more_than_gem_limit_and_truncation_at_max_steps():
    k = kernel(4, 1, 1, 1)
    gems = [[0, 1], [3, 2], [2, 2]]
    on_blue = state([[0, 0], [3, 3]], gems, collected=6, time=3)
    _, _, _, terminated, truncated, _ = one_step(k, on_blue, [0, 4])
    assert bool(terminated) and not bool(truncated)  # 7 > 6
    _, _, _, terminated, _, _ = one_step(k, on_blue.replace(collected=jnp.int32(5)), [0, 4])
    assert not bool(terminated)  # 6 is not more than 6
    # Termination wins over truncation on the last step.
    _, _, _, terminated, truncated, _ = one_step(k, on_blue.replace(time=jnp.int32(44)), [0, 4])
    assert bool(terminated) and not bool(truncated)
    # No collection on the last step: truncated.
    _, out, _, terminated, truncated, _ = one_step(k, on_blue.replace(time=jnp.int32(44)), [4, 4])
    assert not bool(terminated) and bool(truncated) and int(out.time) == 45
    _, _, _, _, truncated, _ = one_step(k, on_blue.replace(time=jnp.int32(43)), [4, 4])
    assert not bool(truncated)


def test_collect_off_pays_every_step_keeps_gems_and_never_terminates():
    env, params, _, step, _ = kernel(4, 1, 1, 2)
    params = params.replace(collect=False, gem_limit=0, max_steps=60)
    gems = [[0, 1], [3, 2], [2, 2], [2, 2]]
    st_ = state([[0, 0], [3, 3]], gems)
    total = np.zeros(2)
    for t in range(60):
        action = [0, 2] if t == 0 else [4, 2 if t % 2 else 0]  # agent 0 sits on blue; agent 1 toggles on red
        _, st_, reward, terminated, truncated, _ = step(jax.random.key(t), st_, jnp.int32(action), params)
        total += np.asarray(reward)
        assert not bool(terminated)
        assert bool(truncated) == (t == 59)
        np.testing.assert_array_equal(np.asarray(st_.gems), gems)
        assert int(st_.collected) == 0
    np.testing.assert_array_equal(total, [60.0, 30.0])
    # Both on the (two stacked) purple gems: +6 every step, gems stay.
    st_ = state([[2, 2], [2, 2]], gems)
    for t in range(3):
        _, st_, reward, terminated, _, _ = step(jax.random.key(t), st_, jnp.int32([4, 4]), params)
        np.testing.assert_array_equal(np.asarray(reward), [6.0, 6.0])
        assert not bool(terminated)
    np.testing.assert_array_equal(np.asarray(st_.gems), gems)


def test_stacked_own_gems_pay_and_collect_each():
    k = kernel(4, 2, 1, 1)
    _, out, reward, _, _, _ = one_step(k, state([[1, 1], [3, 3]], [[1, 2], [1, 2], [0, 0], [0, 3]]), [0, 4])
    np.testing.assert_array_equal(np.asarray(reward), [2.0, 0.0])
    assert int(out.collected) == 2


def test_fixed_cells_at_reset():
    gem_cells = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (0, 4), (4, 0), (1, 3), (3, 1))
    env, params = make_gems(size=5, gem_cells=gem_cells, agent_cells=((2, 0), (2, 4)), collect=False)
    reset = jax.jit(env.reset)
    for seed in range(3):
        obs, st_ = reset(jax.random.key(seed), params)
        np.testing.assert_array_equal(np.asarray(st_.gems), gem_cells)
        np.testing.assert_array_equal(np.asarray(st_.agents), [[2, 0], [2, 4]])


def test_observation_planes_ego_and_authors_orders_agree():
    env, params, reset, step, _ = kernel()
    authors_env, _, authors_reset, authors_step, _ = kernel(plane_order="authors")
    key = jax.random.key(5)
    ego, st_ = reset(key, params)
    auth, st2 = authors_reset(key, params)
    for t in range(5):
        assert ego.shape == (2, 5, 15, 15) and ego.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(ego[0]), np.asarray(auth[0]))
        np.testing.assert_array_equal(np.asarray(auth[0]), np.asarray(auth[1]))
        np.testing.assert_array_equal(np.asarray(ego[1]), np.asarray(auth[1])[EGO_SWAP])
        kinds = list(env.gem_kind)
        np.testing.assert_array_equal(np.asarray(auth), reference_planes(st_.agents, st_.gems, kinds, 15, "authors"))
        # Each agent's "self" plane has exactly one cell, at its own position.
        for i in range(2):
            x, y = np.asarray(st_.agents[i])
            assert ego[i, 0].sum() == 1 and ego[i, 0, x, y] == 1
        action = jnp.int32([t % 5, (t + 2) % 5])
        ego, st_, *_ = step(jax.random.key(t), st_, action, params)
        auth, st2, *_ = authors_step(jax.random.key(t), st2, action, params)
    assert env.channels[2] == "own gems" and authors_env.channels[2] == "blue"


@functools.cache
def rollouts():
    env, params = make_gems(size=6)
    env = AutoReset(env)
    single = jax.jit(lambda key: random_rollout(env, params, key, 50))
    batched = jax.jit(jax.vmap(lambda key: random_rollout(env, params, key, 50)))
    return env, params, single, batched


@given(seed=st.integers(0, 2**31 - 1))
def test_same_key_same_trajectory_and_vmap_equals_a_python_loop(seed):
    env, params, single, batched = rollouts()
    keys = jax.random.split(jax.random.key(seed), 3)
    together = batched(keys)
    again = batched(keys)
    for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for lane in range(3):
        alone = single(keys[lane])
        for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(alone)):
            np.testing.assert_array_equal(np.asarray(a)[lane], np.asarray(b))
    other = single(jax.random.key(seed ^ 1))
    assert not np.array_equal(np.asarray(other[1].obs), np.asarray(together[1].obs[0]))


def test_auto_reset_starts_from_the_derived_key():
    env, params, _, _, _ = kernel(4, 1, 1, 1)
    params = params.replace(max_steps=3)
    wrapped = AutoReset(env)
    obs, st_ = env.reset(jax.random.key(0), params)
    step = jax.jit(wrapped.step)
    for t in range(3):
        key = jax.random.key(10 + t)
        obs, st_, _, terminated, truncated, info = step(key, st_, jnp.int32([4, 4]), params)
    assert bool(truncated) and int(st_.time) == 0
    fresh_obs, fresh = env.reset(derive_key(key, RESET_STREAM), params)
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(fresh_obs))
    assert info["final_observation"].shape == obs.shape


def test_spaces_describe_and_render():
    env, params, reset, _, _ = kernel()
    obs, st_ = reset(jax.random.key(0), params)
    assert bool(env.observation_space(params).contains(obs))
    assert env.action_space().n == 5 and env.action_space().shape == (2,) and env.action_mask(params) is None
    info = describe(env)
    assert info["observation"] == "float32 (2, 5, 15, 15)" and info["agents"] == 2 and len(info["actions"]) == 5
    image = render(st_, env)
    assert image.shape == (15, 15, 3) and image.dtype == np.uint8
    x, y = np.asarray(st_.agents[1])
    assert tuple(image[x, y]) == (255, 140, 0)
    assert isinstance(env, Gems) and params.max_steps == 45 and params.gem_limit == 6


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"size": 1}, "size must be an integer in [2, 256]"),
        ({"size": 3.5}, "size must be"),
        ({"num_blue": -1}, "num_blue must be"),
        ({"num_purple": 1000}, "num_purple must be"),
        ({"gem_limit": -1}, "gem_limit must be"),
        ({"max_steps": 0}, "max_steps must be"),
        ({"plane_order": "mine"}, "plane_order must be"),
        ({"collect": "yes"}, "collect must be True or False"),
        ({"purple_quirk": 1}, "purple_quirk must be True or False"),
        ({"gem_cells": ((0, 0),)}, "gem_cells must be None or 9"),
        ({"size": 5, "gem_cells": ((5, 0),) * 9}, "coordinates in [0, 4]"),
        ({"agent_cells": ((0, 0), (0, -1))}, "agent_cells must be"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_field(options, fragment):
    with pytest.raises(UsageError) as error:
        make_gems(**options)
    message = str(error.value)
    assert fragment in message and "\n" not in message
