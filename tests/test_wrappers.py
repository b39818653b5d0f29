"""The generic STORI types on any kernel (`agentlab.kernels.wrappers.Stochastic`): plain at p = 0, uniform
action noise, sticky actions, feature dropout, drift timing, vmap = loop, and the one-line refusals."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.kernels.atari import AtariParams
from agentlab.kernels.spaces import Box
from agentlab.kernels.stochasticity import ActionNoise, ObservationMask, StickyActions, parse_spec, randbelow
from agentlab.kernels.wrappers import Stochastic, StochasticParams, StochasticState, supported_kinds

N = 4000  # draws for the distribution tests: 4 SE of a frequency near 0.3 is about 0.03


@functools.cache
def kernel(name: str, spec: str, auto_reset: bool = False, **options):
    """``(env, params, reset, step)`` jitted once per configuration."""
    env, params = make(name, stochasticity=spec, auto_reset=auto_reset, **options)
    return env, params, jax.jit(env.reset), jax.jit(env.step)


@functools.cache
def rollout(name: str, spec: str, steps: int, **options):
    """A jitted auto-reset rollout ``(key, actions (steps, ...)) -> (obs0, obs, reward, terminated, truncated)``
    with step keys ``split(key, steps)``, and ``(env, params)``."""
    env, params = make(name, stochasticity=spec, **options)

    def run(key, actions):
        obs0, state = env.reset(key, params)

        def body(state, xs):
            step_key, action = xs
            obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
            return state, (obs, reward, terminated, truncated)

        _, out = jax.lax.scan(body, state, (jax.random.split(key, steps), actions))
        return (obs0, *out)

    return env, params, jax.jit(run)


def random_actions(env, params, key, steps):
    return jax.vmap(env.action_space(params).sample)(jax.random.split(key, steps))


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------------------------ p = 0

ZERO = "sticky:p=0+action:p=0+drift:mode=cyclic,at=2,to=(action:p=0+sticky:p=0)"
ZERO_CASES = [
    ("pendulum", ZERO + "+mask:kind=dropout,p=0", {"max_steps": 7}),
    ("coordination", ZERO + "+mask:kind=dropout,p=0", {"max_steps": 7}),  # an action mask (roles)
    ("catch", ZERO, {}),  # image observations: no dropout
]


@pytest.mark.parametrize(("name", "spec", "options"), ZERO_CASES, ids=[c[0] for c in ZERO_CASES])
def test_p_zero_is_bit_equal_to_the_plain_kernel(name, spec, options):
    env, params, run = rollout(name, spec, 16, **options)
    assert isinstance(params, StochasticParams) and isinstance(env.env, Stochastic)
    plain_env, plain_params, plain_run = rollout(name, "plain", 16, **options)
    assert not isinstance(plain_params, StochasticParams)
    key = jax.random.key(3)
    actions = random_actions(plain_env, plain_params, jax.random.key(4), 16)
    wrapped, plain = run(key, actions), plain_run(key, actions)
    assert_trees_equal(wrapped, plain)
    assert np.asarray(plain[3] | plain[4]).any()  # an episode ended and auto-reset inside the rollout


# ------------------------------------------------------------------------------------------------ action noise


@functools.cache
def executed_batch(name: str, spec: str):
    """``(env, params, state, f)``: ``f(keys, action)`` the executed actions of one step per key (vmapped)."""
    env, params = make(name, stochasticity=spec, auto_reset=False)
    state = env.init(jax.random.key(0), params)
    state = state.replace(inner=state.inner.replace(time=jnp.int32(5)))
    f = jax.jit(jax.vmap(lambda k, a: env.executed_action(k, state, a, params), in_axes=(0, None)))
    return env, params, state, f


def test_action_noise_p1_is_uniform_on_a_discrete_kernel():
    env, params, _, f = executed_batch("catch", "action:p=1")
    executed = np.asarray(f(jax.random.split(jax.random.key(11), N), jnp.int32(0)))
    counts = np.bincount(executed, minlength=3)
    assert counts.sum() == N and stats.chisquare(counts).pvalue > 1e-4, counts


def test_action_noise_p1_is_uniform_within_each_roles_action_mask():
    env, params, _, f = executed_batch("coordination", "action:p=1")
    mask = np.asarray(env.action_mask(params))
    assert not mask.all()  # roles differ: the test means something
    executed = np.asarray(f(jax.random.split(jax.random.key(12), N), jnp.zeros(3, jnp.int32)))
    for agent in range(env.num_agents):
        counts = np.bincount(executed[:, agent], minlength=mask.shape[1])
        assert (counts[~mask[agent]] == 0).all(), (agent, counts)
        assert stats.chisquare(counts[mask[agent]]).pvalue > 1e-4, (agent, counts)
    # agents are hit independently: two agents' draws are uncorrelated
    assert abs(np.corrcoef(executed[:, 0], executed[:, 1])[0, 1]) < 4 / np.sqrt(N)


def test_action_noise_p1_is_uniform_in_a_box():
    env, params, _, f = executed_batch("pendulum", "action:p=1")
    executed = np.asarray(f(jax.random.split(jax.random.key(13), N), jnp.zeros(1, jnp.float32)))
    assert executed.shape == (N, 1) and executed.dtype == np.float32
    assert ((executed >= -1) & (executed < 1)).all()
    assert stats.kstest(executed[:, 0], "uniform", args=(-1, 2)).pvalue > 1e-4


def test_action_noise_hits_each_agent_of_a_continuous_kernel_as_a_whole():
    env, params, _, f = executed_batch("grid-curtailment", "action:p=0.5")
    assert isinstance(env.action_space(params), Box)
    given_action = jnp.full(env.action_space(params).shape, 2.0, jnp.float32)  # outside [0, 1]: kept = untouched
    executed = np.asarray(f(jax.random.split(jax.random.key(14), N), given_action))
    kept = executed == 2.0
    assert (kept.all(-1) | ~kept.any(-1)).all()  # both dimensions of an agent replaced together
    hit = ~kept[..., 0]
    assert np.abs(hit.mean(0) - 0.5).max() < 4 * np.sqrt(0.25 / N)
    assert stats.kstest(executed[~kept], "uniform", args=(0, 1)).pvalue > 1e-4


def test_the_step_executes_the_executed_action():
    env, params, reset, step = kernel("pendulum", "action:p=0.5")
    plain_env, plain_params, plain_reset, plain_step = kernel("pendulum", "plain")
    key, step_key = jax.random.key(21), jax.random.key(22)
    _, state = reset(key, params)
    _, plain_state = plain_reset(key, plain_params)
    for t in range(6):
        k = jax.random.fold_in(step_key, t)
        obs, state, reward, *_, info = step(k, state, jnp.full((1,), 0.75, jnp.float32), params)
        expected = plain_step(k, plain_state, info["executed_action"], plain_params)
        plain_state = expected[1]
        assert_trees_equal((obs, state.inner, reward), (expected[0], expected[1], expected[2]))


# ------------------------------------------------------------------------------------------------ sticky


@pytest.mark.parametrize("name", ["pendulum", "coordination"])
def test_sticky_p1_repeats_the_first_action_for_the_whole_episode(name):
    env, params, reset, step = kernel(name, "sticky:p=1")
    plain_env, plain_params, plain_reset, plain_step = kernel(name, "plain")
    key = jax.random.key(31)
    actions = random_actions(plain_env, plain_params, jax.random.key(32), 12)
    obs, state = reset(key, params)
    plain_obs, plain_state = plain_reset(key, plain_params)
    np.testing.assert_array_equal(obs, plain_obs)
    for t in range(12):  # the plain kernel, in a Python loop, given the first action every step
        k = jax.random.fold_in(key, t)
        obs, state, reward, terminated, truncated, info = step(k, state, actions[t], params)
        plain_obs, plain_state, plain_reward, *_ = plain_step(k, plain_state, actions[0], plain_params)
        np.testing.assert_array_equal(info["executed_action"], actions[0])
        np.testing.assert_array_equal(obs, plain_obs)
        np.testing.assert_array_equal(reward, plain_reward)
    np.testing.assert_array_equal(state.last_action, actions[0])
    # a reset clears the previous action: the new episode's first step executes the agent's action
    _, fresh = reset(jax.random.key(33), params)
    info = step(key, fresh, actions[5], params)[-1]
    np.testing.assert_array_equal(info["executed_action"], actions[5])
    assert int(state.time) == 12 and int(fresh.time) == 0  # state.time reads the kernel's own time


def test_sticky_repeats_the_last_executed_action_after_noise():
    env, params, reset, step = kernel("catch", "sticky:p=1+action:p=1")
    _, state = reset(jax.random.key(41), params)
    executed = []
    for t in range(5):
        _, state, *_, info = step(jax.random.key(100 + t), state, jnp.int32(0), params)
        executed.append(int(info["executed_action"]))
        assert int(state.last_action) == executed[-1]
    assert len(set(executed)) > 1  # noise after sticky: each step draws afresh (p = 1 of both)


# ------------------------------------------------------------------------------------------------ dropout


@functools.cache
def observe_batch(name: str, spec: str):
    """``f(keys) -> (wrapped, plain)`` reset observations, vmapped: the same kernel state, with and without masks."""
    env, params = make(name, stochasticity=spec, auto_reset=False)

    def both(key):
        state = env.init(key, params)
        return env.observe(key, state, params), env.env.observe(key, state.inner, params.inner)

    return env, params, jax.jit(jax.vmap(both))


@pytest.mark.parametrize(("name", "p"), [("pendulum", 0.3), ("market-crash", 0.2), ("grid-curtailment", 0.5)])
def test_dropout_hides_each_feature_independently_with_probability_p(name, p):
    env, params, f = observe_batch(name, f"mask:kind=dropout,p={p}")
    wrapped, plain = (np.asarray(x) for x in f(jax.random.split(jax.random.key(51), N)))
    assert wrapped.shape == (N, *env.observation_space(params).shape)
    changed = wrapped != plain
    assert (wrapped[changed] == 0).all()  # a hidden feature is exactly 0, a kept one unchanged
    visible = plain != 0  # where hiding shows
    cells = visible.sum(0) > N // 2
    assert cells.sum() >= 3, "too few non-zero features to measure"
    freq = changed.sum(0)[cells] / visible.sum(0)[cells]
    se = np.sqrt(p * (1 - p) / visible.sum(0)[cells])
    assert (np.abs(freq - p) < 4 * se).all(), freq
    # independence: two features are hidden together with probability p^2
    flat_changed, flat_visible = changed.reshape(N, -1), visible.reshape(N, -1)
    a, b = np.flatnonzero(cells.reshape(-1))[:2]
    both_visible = flat_visible[:, a] & flat_visible[:, b]
    joint = (flat_changed[:, a] & flat_changed[:, b])[both_visible].mean()
    assert abs(joint - p * p) < 4 * np.sqrt(p * p * (1 - p * p) / both_visible.sum())


# ------------------------------------------------------------------------------------------------ drift


@pytest.mark.parametrize(
    ("mode", "at", "reference"),
    [("sudden", 4, lambda t: t >= 4), ("cyclic", 3, lambda t: (t // 3) % 2 == 1)],
    ids=["sudden", "cyclic"],
)
def test_drift_switches_the_profiles_on_at_the_right_steps(mode, at, reference):
    spec = f"drift:mode={mode},at={at},to=(action:p=1+mask:kind=dropout,p=1)"
    env, params, reset, step = kernel("pendulum", spec, max_steps=None)
    obs, state = reset(jax.random.key(61), params)
    assert not reference(0) and (np.asarray(obs) != 0).all()  # time 0 is plain
    action = jnp.full((1,), 0.123, jnp.float32)
    for t in range(14):  # step t: the action taken at time t, the observation of time t + 1
        obs, state, *_, info = step(jax.random.key(200 + t), state, action, params)
        replaced = bool(np.asarray(info["executed_action"] != action).all())
        assert replaced == reference(t), t
        hidden = bool((np.asarray(obs) == 0).all())
        assert hidden == reference(t + 1), t
        assert int(state.time) == t + 1


def test_drift_counts_steps_from_the_episodes_reset():
    env, params, run = rollout("pendulum", "drift:mode=sudden,at=3,to=(mask:kind=dropout,p=1)", 10, max_steps=4)
    obs0, obs, _, _, truncated = (np.asarray(x) for x in run(jax.random.key(62), jnp.zeros((10, 1), jnp.float32)))
    hidden = (obs == 0).all(-1)
    # times after each step: 1 2 3 (4 -> reset: 0) 1 2 3 (reset: 0) 1 2
    np.testing.assert_array_equal(truncated, [0, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(hidden, [0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    assert (obs0 != 0).all()


# ------------------------------------------------------------------------------------------------ vmap, keys

SPEC = "sticky:p=0.3+action:p=0.3+drift:mode=cyclic,at=3,to=(action:p=0.5)+mask:kind=dropout,p=0.2"


@functools.cache
def lanes():
    env, params, run = rollout("coordination", SPEC, 12, max_steps=5)
    return env, params, run, jax.jit(jax.vmap(run))


@given(seed=st.integers(0, 2**31 - 1))
def test_vmap_equals_a_loop_over_lanes_and_depends_only_on_the_key(seed):
    env, params, run, batched = lanes()
    keys = jax.random.split(jax.random.key(seed), 3)
    actions = jax.vmap(lambda k: random_actions(env, params, k, 12))(jax.random.split(jax.random.key(seed + 1), 3))
    together = batched(keys, actions)
    for lane in range(3):
        alone = run(keys[lane], actions[lane])
        assert_trees_equal([x[lane] for x in together], alone)
    assert_trees_equal(run(keys[0], actions[0]), run(keys[0], actions[0]))
    other = run(jax.random.key(seed ^ 0x5A5A), actions[0])
    assert not np.array_equal(np.asarray(other[1]), np.asarray(together[1][0]))


def test_one_compiled_step_vmaps_over_probabilities():
    env, params = make("catch", stochasticity="action:p=0", auto_reset=False)
    state = env.init(jax.random.key(0), params)
    ps = jnp.asarray([0.0, 1.0, 0.0, 1.0])
    batch = jax.vmap(lambda p: params.replace(stochasticity=(ActionNoise(p=p),)))(ps)
    keys = jax.random.split(jax.random.key(71), 4)
    executed = jax.jit(jax.vmap(lambda k, q: env.executed_action(k, state, jnp.int32(7), q)))(keys, batch)
    assert list(np.asarray(executed) == 7) == [True, False, True, False]  # 7 is not an action: replaced iff p = 1


@given(word=st.integers(0, 2**32 - 1), n=st.integers(1, 2**15))
def test_randbelow_is_the_exact_multiply_high(word, n):
    assert int(randbelow(jnp.uint32(word), n)) == (word * n) >> 32


# ------------------------------------------------------------------------------------------------ strings, registry


def test_the_atari_games_keep_their_own_implementation():
    env, params = make("breakout", stochasticity="action:p=0.3+sticky:p=0.1", auto_reset=False)
    assert isinstance(params, AtariParams) and not isinstance(env, Stochastic)
    assert params.stochasticity == (ActionNoise(p=0.3), StickyActions(p=0.1))
    with pytest.raises(UsageError, match=r"mask kind 'dropout' is not available for breakout.*crop"):
        make("breakout", stochasticity="mask:kind=dropout,p=0.1")


def test_plain_is_not_wrapped_and_wrapped_params_read_through():
    env, params = make("pendulum", stochasticity="plain")
    assert not isinstance(params, StochasticParams)
    env, params = make("pendulum", stochasticity="action:p=0.2+mask:kind=dropout,p=0.1", max_steps=9)
    assert params.max_steps == 9 and params.inner.max_steps == 9  # read through to the kernel's params
    assert params.stochasticity == (ActionNoise(p=0.2), ObservationMask(kind_="dropout", p=0.1))
    state = env.init(jax.random.key(0), params)
    assert isinstance(state, StochasticState) and int(state.time) == 0
    assert supported_kinds(make("catch")[0]) == ("action", "sticky", "drift")
    assert supported_kinds(make("gems")[0]) == ("action", "sticky", "drift")
    assert supported_kinds(make("market-crash")[0]) == ("action", "sticky", "drift", "mask:kind=dropout")
    wrapped = Stochastic(make("point", auto_reset=False)[0], "sticky:p=0.5")
    assert wrapped.default_params().stochasticity == (StickyActions(p=0.5),)
    point_params = make("point", auto_reset=False)[1]
    assert wrapped.wrap_params(point_params, "action:p=1").stochasticity == (ActionNoise(p=1.0),)
    with pytest.raises(UsageError, match="outside"):
        wrapped.wrap_params(point_params, (ActionNoise(p=1.5),))
    assert parse_spec("mask:kind=dropout") == (ObservationMask(kind_="dropout", p=0.1),)


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("pendulum", "event:mode=regenerate,p=0.2", "game-specific: the Atari-style games only"),
        ("coordination", "mask:kind=crop,region=left", "valid kinds for coordination are 'action', 'sticky'"),
        ("catch", "mask:kind=dropout,p=0.1", r"needs float vector observations, not bool \(10, 5, 1\)"),
        ("gems", "drift:mode=sudden,at=3,to=(mask:kind=dropout)", "valid kinds for gems are"),
        ("pendulum", "mask:kind=dropout,p=2", r"p=2 in .* is outside \[0, 1\]"),
        ("pendulum", "mask:kind=dropout,region=left", "valid keys are 'kind' or 'p'"),
        ("calvano", "action:p=0.3+sticky:q=1", "unknown key 'q' for sticky"),
    ],
)
def test_bad_specifications_are_one_line(name, spec, message):
    with pytest.raises(UsageError, match=message) as info:
        make(name, stochasticity=spec)
    assert "\n" not in str(info.value)


def test_a_stochastic_kernel_is_not_wrapped_twice():
    env, _ = make("point", stochasticity="sticky:p=0.5", auto_reset=False)
    with pytest.raises(UsageError, match="already wrapped"):
        Stochastic(env, "action:p=0.1")


def test_ppo_trains_in_the_wrapped_kernel():
    """`train ppo --stochasticity` on a non-Atari kernel: PPO's environment is the wrapped kernel (its
    observations lose features at the asked rate), and a two-update run trains on it."""
    from agentlab.rl.ppo import PPO, PPOConfig, make_env, seed_keys

    config = PPOConfig(
        env="pendulum", stochasticity="mask:kind=dropout,p=0.5", total_steps=2 * 8 * 16, num_envs=8, num_steps=16,
        num_minibatches=2, hidden=(8, 8),
    )  # fmt: skip
    env, params = make_env(config)
    assert isinstance(params, StochasticParams) and params.stochasticity == parse_spec("mask:kind=dropout,p=0.5")
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 2000), params)
    hidden = float((np.asarray(obs) == 0).mean())
    assert abs(hidden - 0.5) < 4 * np.sqrt(0.25 / obs.size)  # pendulum's features are never exactly 0 otherwise
    learner = PPO(config)
    before = learner.init_seeds(seed_keys(config))
    after, metrics = jax.jit(jax.vmap(learner.update))(before)
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before.params, after.params)
    assert all(jax.tree.leaves(changed))  # every layer learned from the wrapped kernel's transitions


SPECS = {
    "action": "action:p=0.3",
    "sticky": "sticky:p=0.1",
    "drift": "drift:mode=sudden,at=5,to=(sticky:p=0.5)",
    "mask:kind=dropout": "mask:kind=dropout,p=0.1",
    "mask:kind=crop": "mask:kind=crop,region=left,p=0.75",
    "mask:kind=torch": "mask:kind=torch,radius=3,centre=agent,p=1",
    "mask:kind=blackout": "mask:kind=blackout,region=all,p=1",
}


@pytest.mark.parametrize("name", ["breakout", "catch", "coordination", "pendulum", "market-crash", "gems"])
def test_the_kinds_describe_lists_are_exactly_those_make_takes(name):
    from agentlab.kernels import describe

    listed = describe(name)["stochasticity"]
    for kind, spec in SPECS.items():
        if kind in listed:
            make(name, stochasticity=spec)
        else:
            with pytest.raises(UsageError):
                make(name, stochasticity=spec)
