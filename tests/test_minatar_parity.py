"""Parity with MinAtar 1.0.15 (the oracle; GPL-3.0, imported only here).

1. Lockstep: both start from the same reset and take the same random actions; MinAtar's random draws
   are replayed from ours (`ScriptedRandom`, which checks each replayed value lies in the range MinAtar
   asks for), so observations, rewards, terminations and full states must agree at every step.
2. Injection: states reached by MinAtar itself (its own RNG, a heuristic policy, also at maximum
   difficulty) are converted into ours; one step of each from there must agree.

Replaying our draws cannot show that they have MinAtar's distributions: tests/test_minatar_distributions.py
compares the distributions of every random element (spawn lanes, sides, kinds, car speeds, ball start).
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle
from conftest import ATARI, compiled


def _words(key):
    return np.asarray(oracle.game_words(key))


def _assert_same_state(name, ours, e):
    if name == "seaquest":
        assert oracle.seaquest_lists(ours) == oracle.seaquest_minatar_lists(e)
        ours = ours.replace(**{f: 0 for f in _SEAQUEST_SLOT_FIELDS})
        theirs = oracle.seaquest_from(e).replace(**{f: 0 for f in _SEAQUEST_SLOT_FIELDS})
    else:
        theirs = oracle.ORACLE[name][0](e)
    if name == "asterix":  # empty slots hold stale values on our side, None on MinAtar's
        clear = lambda st: st.replace(**{f: jnp.where(st.active, getattr(st, f), 0) for f in ("x", "right", "gold")})  # noqa: E731
        ours, theirs = clear(ours), clear(theirs)
    for field, a, b in zip(ours.__dataclass_fields__, jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{name}.{field}")


_SEAQUEST_SLOT_FIELDS = [
    f
    for f in oracle.SeaquestState.__dataclass_fields__
    if f.startswith(
        ("bullet_", "enemy_", "shot_", "diver_active", "diver_x", "diver_y", "diver_right", "diver_move", "diver_seq")
    )
    or f == "next_seq"
]


def _heuristic(name, e, rng, env):
    """A policy that lives longer than a random one, to reach deeper states."""
    if name == "seaquest":
        if e.oxygen < 60 and e.diver_count > 0 or e.diver_count >= 6:
            return 2  # up
        if e.sub_y == 0 and e.diver_count == 0:
            return int(rng.choice([4, 1, 3, 5]))  # never surface empty-handed at once
        return int(rng.choice([0, 1, 3, 4, 5, 5, 2]))
    if name == "breakout":
        return 1 if e.ball_x < e.pos else 3 if e.ball_x > e.pos else 0
    if name == "space-invaders":
        return int(rng.choice([1, 3, 5, 5]))
    if name == "freeway":
        return int(rng.choice([2, 2, 2, 0, 4]))
    return env.action_set[int(rng.integers(env.num_actions))]


@pytest.mark.parametrize("name", ATARI)
def test_lockstep_trajectories_match_minatar(name):
    env, params, reset, step = compiled(name, auto_reset=False, full_action_set=True)
    from_minatar, reset_draws, step_draws = oracle.ORACLE[name]
    rng = np.random.default_rng(7)
    key = jax.random.key(7)
    steps = 0
    for _episode in range(2 if name == "freeway" else 8):
        key, k = jax.random.split(key)
        e = oracle.minatar_env(name)
        e.random.push(*reset_draws(_words(k), e))
        e.reset()
        obs, state = reset(k, params)
        np.testing.assert_array_equal(np.asarray(obs), e.state())
        for _t in range(400 if name != "freeway" else 2600):
            action = _heuristic(name, e, rng, env) if rng.random() < 0.9 else int(rng.integers(6))
            key, k = jax.random.split(key)
            e.random.push(*step_draws(_words(k), e, action))
            reward, terminal = e.act(action)
            e.random.assert_drained()
            obs, state, r, terminated, truncated, _ = step(k, state, action, params)
            steps += 1
            np.testing.assert_array_equal(np.asarray(obs), e.state(), err_msg=f"{name} step {_t}")
            assert float(r) == reward and bool(terminated) == terminal and not bool(truncated)
            _assert_same_state(name, state.game, e)
            if terminal:
                break
    assert steps > 100


_HARD = {
    "asterix": {"spawn_speed": 1, "move_speed": 1},
    "seaquest": {"e_spawn_speed": 1, "move_speed": 2},
    "space-invaders": {"enemy_move_interval": 6},
    "breakout": {},
    "freeway": {},
}


@pytest.mark.parametrize("hard", [False, True], ids=["default", "max-difficulty"])
@pytest.mark.parametrize("name", ATARI)
def test_injected_minatar_states_step_identically(name, hard):
    import minatar.environments  # noqa: F401  (the oracle)

    env, params, _, step = compiled(name, auto_reset=False, full_action_set=True)
    from_minatar, _, step_draws = oracle.ORACLE[name]
    rng = np.random.default_rng(11 + hard)
    e = oracle.minatar_env(name)
    e.random = np.random.RandomState(3 + hard)
    e.reset()
    if hard:
        for attr, value in _HARD[name].items():
            setattr(e, attr, value)
    key = jax.random.key(5)
    checked = 0
    for t in range(1500):
        action = _heuristic(name, e, rng, env) if rng.random() < 0.8 else int(rng.integers(6))
        if t % 3 == 0:  # inject every third state
            twin = copy.deepcopy(e)
            twin.random = oracle.ScriptedRandom()
            key, k = jax.random.split(key)
            twin.random.push(*step_draws(_words(k), twin, action))
            ours = from_minatar(e)
            state = env.reset(k, params)[1].replace(game=ours)
            obs, state, r, terminated, _, _ = step(k, state, action, params)
            reward, terminal = twin.act(action)
            twin.random.assert_drained()
            np.testing.assert_array_equal(np.asarray(obs), twin.state(), err_msg=f"{name} t={t}")
            assert float(r) == reward and bool(terminated) == terminal
            _assert_same_state(name, state.game, twin)
            checked += 1
        _, terminal = e.act(action)
        if terminal:
            e.reset()
            if hard:
                for attr, value in _HARD[name].items():
                    setattr(e, attr, value)
    assert checked == 500


def test_scripted_random_rejects_draws_outside_minatars_bounds():
    """A script drawing outside what MinAtar asks for fails, naming the call, instead of passing silently."""
    e = oracle.minatar_env("seaquest")
    e.reset()
    e.e_spawn_timer = 0
    e.random.push(("rand", 0.25), ("rand", 0.75), ("randint", 0))  # row 0: MinAtar draws randint(low=1, high=9)
    with pytest.raises(AssertionError, match=r"randint\(low=1, high=9, size=None\).*outside \[1, 9\)"):
        e.act(0)
    f = oracle.minatar_env("freeway")
    f.random.push(("randint", np.array([1, 2, 3, 4, 5, 6, 1, 2])))  # speed 6: MinAtar draws randint(1, 6, 8)
    with pytest.raises(AssertionError, match=r"randint\(low=1, high=6, size=8\).*outside \[1, 6\)"):
        f.reset()
    b = oracle.minatar_env("breakout")
    b.random.push(("rand", 0.5))  # a float where MinAtar asks for an integer
    with pytest.raises(AssertionError, match="asked for randint"):
        b.reset()
