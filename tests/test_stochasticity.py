"""The STORI taxonomy: the string form, and what each profile does to a trajectory."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlab.errors import UsageError
from agentlab.kernels import make, with_stochasticity
from agentlab.kernels.atari import GAMES
from agentlab.kernels.atari.base import unpack
from agentlab.kernels.stochasticity import (
    ActionNoise,
    ConceptDrift,
    ObservationMask,
    RandomEvent,
    StickyActions,
    format_spec,
    parse_spec,
)

from conftest import ATARI, compiled_rollout

# ------------------------------------------------------------------------------------ strings

probabilities = st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0])
simple_profiles = st.one_of(
    st.builds(ActionNoise, p=probabilities),
    st.builds(StickyActions, p=probabilities),
    st.builds(RandomEvent, mode=st.sampled_from(["cancel_keep", "cancel_zero", "regenerate"]), p=probabilities),
    st.builds(
        lambda r, p: ObservationMask(kind_="crop", region=r, p=p),
        st.sampled_from(["left", "right", "top", "bottom"]),
        probabilities,
    ),
    st.builds(
        lambda r, c, p: ObservationMask(kind_="torch", radius=r, centre=c, p=p),
        st.sampled_from([0.0, 1.5, 3.0]),
        st.sampled_from(["agent", "random"]),
        probabilities,
    ),
    st.builds(
        lambda r, p: ObservationMask(kind_="blackout", region=r, p=p),
        st.sampled_from(["all", "bricks", "paddle"]),
        probabilities,
    ),
    st.builds(lambda p: ObservationMask(kind_="dropout", p=p), probabilities),
)
profiles = st.one_of(
    simple_profiles,
    st.builds(
        lambda m, at, to: ConceptDrift(mode=m, at=at, to=tuple(to)),
        st.sampled_from(["sudden", "cyclic"]),
        st.integers(1, 1000),
        st.lists(simple_profiles, min_size=1, max_size=3),
    ),
)


@given(spec=st.lists(profiles, max_size=4).map(tuple))
def test_format_then_parse_round_trips(spec):
    text = format_spec(spec)
    assert parse_spec(text) == spec
    assert format_spec(parse_spec(text)) == text


def test_contract_examples_parse_to_the_typed_config():
    assert parse_spec("action:p=0.3") == (ActionNoise(p=0.3),)
    assert parse_spec("sticky:p=0.1+mask:kind=torch,radius=3,centre=agent,p=1") == (
        StickyActions(p=0.1),
        ObservationMask(kind_="torch", radius=3.0, centre="agent", p=1.0),
    )
    assert parse_spec("drift:mode=sudden,at=300,to=(mask:kind=blackout,region=all,p=1)") == (
        ConceptDrift(mode="sudden", at=300, to=(ObservationMask(kind_="blackout", region="all", p=1.0),)),
    )
    assert parse_spec("drift:mode=cyclic,at=50,to=(action:p=0.5+event:mode=cancel_zero,p=0.25)")[0].to == (
        ActionNoise(p=0.5),
        RandomEvent(mode="cancel_zero", p=0.25),
    )
    assert parse_spec("plain") == parse_spec("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acton:p=0.3", "unknown stochasticity kind 'acton'"),
        ("action:p=1.5", "outside [0, 1]"),
        ("action:p=-0.1", "outside [0, 1]"),
        ("action:p=abc", "is not a number"),
        ("action:q=0.3", "unknown key 'q' for action"),
        ("action:p", "is not KEY=VALUE"),
        ("action:", "nothing after ':'"),
        ("mask:p=1", "needs kind="),
        ("mask:kind=fog", "unknown mask kind 'fog'"),
        ("mask:kind=crop,region=middle", "unknown crop region 'middle'"),
        ("mask:kind=torch,centre=player", "unknown torch centre 'player'"),
        ("mask:kind=torch,radius=-1", "must be >= 0"),
        ("drift:mode=sudden,at=10", "needs to=(SPEC)"),
        ("drift:mode=gradual,to=(action)", "unknown drift mode 'gradual'"),
        ("drift:at=0,to=(action)", "must be >= 1"),
        ("drift:to=(drift:to=(action))", "cannot contain another drift"),
        ("drift:to=(action", "unbalanced"),
        ("event:p=0.2", "needs mode=NAME"),
        ("action:p=0.1,p=0.2", "given twice"),
    ],
)
def test_malformed_strings_raise_a_clear_value_error(text, message):
    with pytest.raises(ValueError, match=None) as info:
        parse_spec(text)
    assert isinstance(info.value, UsageError)
    assert message in str(info.value)


def test_game_specific_names_are_checked_by_make():
    with pytest.raises(UsageError, match="unknown event mode 'regenerate' for asterix: valid modes are"):
        make("asterix", stochasticity="event:mode=regenerate,p=0.1")
    with pytest.raises(UsageError, match="unknown blackout region 'gold' for breakout"):
        make("breakout", stochasticity="mask:kind=blackout,region=gold")
    with pytest.raises(UsageError, match="unknown blackout region 'gold' for breakout"):
        make("breakout", stochasticity="drift:to=(mask:kind=blackout,region=gold)")
    with pytest.raises(UsageError, match="unknown kernel 'pong'"):
        make("pong")
    with pytest.raises(UsageError, match="unknown option 'stochastic'"):
        make("breakout", stochastic="action")
    with pytest.raises(UsageError, match="max_steps must be a positive integer"):
        make("breakout", max_steps=0)


def test_make_accepts_the_string_or_the_typed_form():
    _, from_string = make("breakout", stochasticity="action:p=0.2+mask:kind=crop,region=top,p=0.5")
    _, from_typed = make(
        "breakout", stochasticity=(ActionNoise(p=0.2), ObservationMask(kind_="crop", region="top", p=0.5))
    )
    assert from_string == from_typed


# ------------------------------------------------------------------------------------ effects

STEPS = 96


def _rollout(name, spec, seed=0, batch=4):
    env, params, rollout = compiled_rollout(name, STEPS, batch)
    params = with_stochasticity(env, params, spec)
    return rollout(jax.random.split(jax.random.key(seed), batch), params)


def _leaves(result):
    first_obs, traj = result
    return first_obs, traj


@pytest.mark.parametrize("name", ATARI)
def test_probability_zero_reduces_every_kind_to_the_plain_game(name):
    event = next(iter(GAMES[name].event_modes))
    spec = (
        f"sticky:p=0+action:p=0+event:mode={event},p=0+mask:kind=crop,region=left,p=0"
        "+mask:kind=torch,radius=1,centre=random,p=0+drift:mode=cyclic,at=3,to=(action:p=0+mask:kind=blackout,region=all,p=0)"
    )
    plain = _rollout(name, "plain")
    zero = _rollout(name, spec)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(zero)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


MASKS = [
    "mask:kind=crop,region=left,p=1",
    "mask:kind=crop,region=bottom,p=0.5",
    "mask:kind=torch,radius=2,centre=agent,p=1",
    "mask:kind=torch,radius=1.5,centre=random,p=0.7",
    "mask:kind=blackout,region=all,p=0.3",
]


@pytest.mark.parametrize(
    ("name", "mask"),
    [(game, MASKS[i]) for i, game in enumerate(ATARI)] + [(game, "+".join(MASKS[1:])) for game in ATARI],
)
def test_masks_only_ever_remove_information(name, mask):
    plain_first, plain = _rollout(name, "plain")
    masked_first, masked = _rollout(name, mask)
    assert not np.any(np.asarray(masked.obs) & ~np.asarray(plain.obs))
    assert not np.any(np.asarray(masked_first) & ~np.asarray(plain_first))
    np.testing.assert_array_equal(np.asarray(masked.reward), np.asarray(plain.reward))
    np.testing.assert_array_equal(np.asarray(masked.action), np.asarray(plain.action))
    assert np.sum(masked.obs) < np.sum(plain.obs)


def test_crop_torch_and_blackout_hide_what_they_name():
    _, crop = _rollout("breakout", "mask:kind=crop,region=left,p=1")
    assert not np.any(np.asarray(crop.obs)[..., :, :5, :]) and np.any(np.asarray(crop.obs)[..., :, 5:, :])
    _, top = _rollout("breakout", "mask:kind=crop,region=top,p=1")
    assert not np.any(np.asarray(top.obs)[..., :5, :, :])
    _, black = _rollout("space-invaders", "mask:kind=blackout,region=aliens,p=1")
    assert not np.any(np.asarray(black.obs)[..., 1:4]) and np.any(np.asarray(black.obs)[..., 0])
    _, torch = _rollout("asterix", "mask:kind=torch,radius=2,centre=agent,p=1")
    obs = np.asarray(torch.obs)
    player = obs[..., 0]  # the player channel is always inside its own torch
    rows, cols = np.indices((10, 10))
    for lane, t in [(0, 5), (1, 17), (2, 40), (3, 80)]:
        (r,), (c,) = np.nonzero(player[lane, t])
        far = (rows - r) ** 2 + (cols - c) ** 2 > 4
        assert not np.any(obs[lane, t][far])


@functools.cache
def _freeway_noreset(spec: str, steps: int = 40):
    env, params = make("freeway", auto_reset=False, stochasticity=spec)
    from agentlab.rl.rollout import random_rollout

    return jax.jit(lambda key: random_rollout(env, params, key, steps))


def test_sudden_drift_switches_once_at_the_step_and_a_reset_returns_to_plain():
    first, traj = _freeway_noreset("drift:mode=sudden,at=12,to=(mask:kind=blackout,region=all,p=1)")(jax.random.key(1))
    visible = np.asarray(traj.obs).any(axis=(1, 2, 3))
    # traj.obs[t] is the observation of the state at time t + 1: hidden from time 12 on.
    assert visible[:11].all() and not visible[11:].any()
    assert np.asarray(first).any()  # the reset observation belongs to the plain game


def test_cyclic_drift_alternates_every_at_steps():
    _, traj = _freeway_noreset("drift:mode=cyclic,at=5,to=(mask:kind=blackout,region=all,p=1)")(jax.random.key(2))
    visible = np.asarray(traj.obs).any(axis=(1, 2, 3))
    expected = ((np.arange(40) + 1) // 5) % 2 == 0  # the state at time t + 1
    np.testing.assert_array_equal(visible, expected)


def test_action_noise_probability_is_traced_so_one_call_gives_a_robustness_curve():
    env, params = make("space-invaders", stochasticity="action:p=0.5")
    ps = jnp.array([0.0, 0.25, 0.5, 1.0], jnp.float32)

    def replaced_fraction(p, key):
        from agentlab.rl.rollout import random_rollout

        q = params.replace(stochasticity=(ActionNoise(p=p),))
        _, traj = random_rollout(env, q, key, 2000)
        return jnp.mean(traj.info["executed_action"] != traj.action)

    fractions = np.asarray(jax.jit(jax.vmap(replaced_fraction, in_axes=(0, None)))(ps, jax.random.key(0)))
    expected = np.asarray(ps) * 3 / 4  # a replacement equals the chosen action 1/4 of the time
    stderr = np.sqrt(np.maximum(expected * (1 - expected), 1e-12) / 2000)
    assert np.all(np.abs(fractions - expected) <= 4 * stderr + 1e-9), fractions


def test_sticky_repeats_the_executed_action_and_noise_applies_after_it():
    _, sticky = _rollout("breakout", "sticky:p=1")
    assert not np.any(np.asarray(sticky.info["executed_action"]))  # the first executed action is noop, forever
    _, both = _rollout("breakout", "sticky:p=1+action:p=1")
    executed = np.asarray(both.info["executed_action"]).ravel()
    counts = np.bincount(executed, minlength=3) / executed.size
    assert np.all(np.abs(counts - 1 / 3) < 4 * np.sqrt(2 / 9 / executed.size))


# ------------------------------------------------------------------------------------ events


@functools.cache
def _event_pair(name: str, mode: str, n: int = 1024):
    """From `n` states of plain play, one step with `mode` armed (p=1) and one plain, same keys."""
    env, params = make(name, auto_reset=False, full_action_set=True)
    plain_env, _ = make(name)

    def collect(key):
        def body(carry, k):
            obs, state = carry
            k_act, k_step = jax.random.split(k)
            action = plain_env.action_space().sample(k_act)
            if name == "freeway":  # mostly up, so that crossings happen
                action = jnp.where(jax.random.bernoulli(k_step, 0.9), 1, action)
            out = plain_env.step(k_step, state, action, params)
            return (out[0], out[1]), (state, jnp.asarray(plain_env.action_set)[action])

        init = plain_env.reset(key, params)
        _, (states, actions) = jax.lax.scan(body, init, jax.random.split(key, n))
        return states, actions

    states, actions = jax.jit(collect)(jax.random.key(ATARI.index(name)))
    keys = jax.random.split(jax.random.key(1), n)
    armed = with_stochasticity(env, params, f"event:mode={mode},p=1")
    unarmed = with_stochasticity(env, params, f"event:mode={mode},p=0")
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    return states, step(keys, states, actions, armed), step(keys, states, actions, unarmed)


@pytest.mark.parametrize(("name", "mode"), [(g, m) for g in ATARI for m in GAMES[g].event_modes])
def test_every_event_mode_changes_the_game(name, mode):
    _, armed, plain = _event_pair(name, mode)
    differs = any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(armed[:3]), jax.tree.leaves(plain[:3]))
    )
    assert differs, f"{name} event {mode} armed on 1024 states never changed a transition"


@pytest.mark.parametrize("name", ATARI)
def test_cancelled_hits_keep_or_zero_the_reward(name):
    _, keep, plain = _event_pair(name, "cancel_keep")
    _, zero, _ = _event_pair(name, "cancel_zero")
    r_plain, r_keep, r_zero = (np.asarray(x[2]) for x in (plain, keep, zero))
    np.testing.assert_array_equal(r_keep, r_plain)
    assert r_plain.sum() > 0
    if name == "seaquest":  # the surfacing bonus is not a hit
        assert np.all(r_zero <= r_plain) and r_zero.sum() < r_plain.sum()
    else:
        assert not r_zero.any()
    # The world does not register a cancelled hit: the next states differ where a hit scored.
    scored = r_plain > 0
    game_keep, game_plain = keep[1].game, plain[1].game
    changed = np.zeros_like(scored)
    for a, b in zip(jax.tree.leaves(game_keep), jax.tree.leaves(game_plain)):
        a, b = np.asarray(a), np.asarray(b)
        changed |= (a != b).reshape(len(scored), -1).any(axis=1)
    assert changed[scored].mean() > 0.9


def test_breakout_regenerate_restores_one_broken_brick():
    states, armed, plain = _event_pair("breakout", "regenerate")
    a, p = np.asarray(unpack(armed[1].game.bricks)), np.asarray(unpack(plain[1].game.bricks))
    assert not np.any(p & ~a)
    added = (a & ~p).sum(axis=(1, 2))
    missing = (~p[:, 1:4]).sum(axis=(1, 2))
    assert np.all(added <= 1) and np.all(added[missing > 1] == 1)


def test_asterix_gold_to_enemy_and_burst_spawn():
    _, armed, plain = _event_pair("asterix", "gold_to_enemy")
    ga, gp = (
        np.asarray(armed[1].game.gold & armed[1].game.active),
        np.asarray(plain[1].game.gold & plain[1].game.active),
    )
    assert np.all(gp.sum(1) - ga.sum(1) == (gp.sum(1) > 0))
    _, armed, plain = _event_pair("asterix", "burst_spawn")
    na, npl = np.asarray(armed[1].game.active).sum(1), np.asarray(plain[1].game.active).sum(1)
    assert np.all(na >= npl) and np.mean(na > npl) > 0.5


def test_space_invaders_respawn_and_extra_shot():
    _, armed, plain = _event_pair("space-invaders", "respawn")
    a, p = np.asarray(unpack(armed[1].game.aliens)), np.asarray(unpack(plain[1].game.aliens))
    assert not np.any(p & ~a) and np.all((a & ~p).sum(axis=(1, 2)) <= 1) and np.any(a & ~p)
    _, armed, plain = _event_pair("space-invaders", "extra_shot")
    a, p = np.asarray(unpack(armed[1].game.enemy_bullets)), np.asarray(unpack(plain[1].game.enemy_bullets))
    assert not np.any(p & ~a) and np.mean((a & ~p).any(axis=(1, 2))) > 0.5


def test_seaquest_oxygen_leak_and_diver_lost():
    states, armed, plain = _event_pair("seaquest", "oxygen_leak")
    under = np.asarray(armed[1].game.sub_y) > 0
    drop = np.asarray(plain[1].game.oxygen) - np.asarray(armed[1].game.oxygen)
    assert under.any() and np.all(drop[under] == 20) and np.all(drop[~under] == 0)
    states, armed, plain = _event_pair("seaquest", "diver_lost")
    under = np.asarray(plain[1].game.sub_y) > 0  # no surfacing in this step
    count = np.asarray(plain[1].game.diver_count)
    lost = count - np.asarray(armed[1].game.diver_count)
    np.testing.assert_array_equal(lost[under], (count[under] > 0).astype(int))
    assert (count[under] > 0).any()


def test_freeway_shuffle_speeds_keeps_positions():
    _, armed, plain = _event_pair("freeway", "shuffle_speeds")
    np.testing.assert_array_equal(np.asarray(armed[1].game.car_x), np.asarray(plain[1].game.car_x))
    assert np.mean(np.any(np.asarray(armed[1].game.car_speed) != np.asarray(plain[1].game.car_speed), axis=1)) > 0.9
