"""PPO's counter-based random draws: actions (Gumbel-max), Gaussian actions, minibatch orders and
per-lane derived keys, checked against their distributions and against per-lane loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlab.hashing import HASH_PRNG, derive_key, key_words, open_uniform, sort_order, split_key
from agentlab.rl import networks as nets
from agentlab.rl.ppo import PPO, PPOConfig, shuffle_order

categorical = jax.jit(nets.categorical_sample)
gaussian = jax.jit(nets.gaussian_sample)


def _binomial_ok(counts: np.ndarray, probs: np.ndarray, draws: int, sigmas: float = 5.0) -> bool:
    expected = probs * draws
    sd = np.sqrt(draws * probs * (1 - probs)) + 1e-9
    return bool(np.all(np.abs(counts - expected) <= sigmas * sd + 1))


def test_categorical_draws_follow_the_softmax_and_never_a_masked_action():
    logits = jnp.array([0.5, -1.0, 2.0, 0.0, -1e9, 1.0], jnp.float32)
    rows = 60_000
    actions = np.asarray(categorical(jax.random.PRNGKey(3), jnp.broadcast_to(logits, (rows, 6))))
    counts = np.bincount(actions, minlength=6)
    probs = np.asarray(jax.nn.softmax(logits))
    assert counts[4] == 0  # masked
    assert _binomial_ok(counts, probs, rows)


def test_categorical_rows_and_keys_draw_independently():
    uniform = jnp.zeros((40_000, 2), jnp.float32)  # fair coin per row
    a = np.asarray(categorical(jax.random.PRNGKey(0), uniform))
    b = np.asarray(categorical(jax.random.PRNGKey(1), uniform))
    assert abs(a.mean() - 0.5) < 0.01 and abs(b.mean() - 0.5) < 0.01
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.03  # neighbouring rows
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03  # two keys
    np.testing.assert_array_equal(a, np.asarray(categorical(jax.random.PRNGKey(0), uniform)))  # determinism


def test_gaussian_draws_have_the_policys_mean_and_standard_deviation():
    rows = 50_000
    mean = jnp.array([1.5, -2.0], jnp.float32)
    log_std = jnp.log(jnp.array([0.5, 2.0], jnp.float32))
    policy = jnp.broadcast_to(jnp.concatenate([mean, log_std]), (rows, 4))
    x = np.asarray(gaussian(jax.random.PRNGKey(7), policy))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=4 * 2.0 / np.sqrt(rows))
    np.testing.assert_allclose(x.std(axis=0), [0.5, 2.0], rtol=0.02)
    # standardised draws: the normal's quartiles
    z = (x[:, 0] - 1.5) / 0.5
    np.testing.assert_allclose(np.quantile(z, [0.25, 0.5, 0.75]), [-0.6745, 0.0, 0.6745], atol=0.03)


def test_open_uniform_is_strictly_inside_the_unit_interval():
    words = jnp.array([0, 255, 256, 2**32 - 1], jnp.uint32)
    u = np.asarray(open_uniform(words))
    assert np.all(u > 0) and np.all(u < 1)
    assert np.isfinite(np.log(-np.log(u))).all()


@settings(max_examples=25, deadline=None)
@given(n=st.one_of(st.integers(1, 3000), st.sampled_from([8191, 8192, 8193, 20_000])), seed=st.integers(0, 2**31 - 1))
def test_shuffle_order_is_a_permutation(n, seed):
    order = np.asarray(shuffle_order(jax.random.PRNGKey(seed), n))
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_shuffle_order_puts_each_row_anywhere_with_equal_chance():
    n, trials = 8, 8000
    keys = jax.vmap(lambda i: derive_key(jax.random.PRNGKey(11), i))(jnp.arange(trials))
    orders = np.asarray(jax.vmap(lambda k: shuffle_order(k, n))(keys))
    for row in range(n):
        position = np.argmax(orders == row, axis=1)
        counts = np.bincount(position, minlength=n)
        assert _binomial_ok(counts, np.full(n, 1 / n), trials)
    # and not always the same permutation pattern: many distinct orders among 8! possible
    assert len({tuple(o) for o in orders}) > 0.9 * trials


def test_shuffle_order_spreads_a_ppo_batch_evenly_over_its_minibatches():
    """8192 rows (the packed sort) into 8 minibatches: consecutive rows (one rollout step's
    environments) are no likelier than any other pair to share a minibatch."""
    orders = [np.asarray(shuffle_order(derive_key(jax.random.PRNGKey(2), i), 8192)) for i in range(4)]
    for order in orders:
        minibatch = np.empty(8192, np.int64)
        minibatch[order] = np.arange(8192) // 1024
        same = (minibatch[:-1] == minibatch[1:]).mean()
        assert abs(same - 1023 / 8191) < 0.02, same  # chance that a given other row shares one's minibatch
        assert np.all(np.bincount(minibatch[:64], minlength=8) <= 20)  # one step's 64 environments
    assert not np.array_equal(orders[0], orders[1])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lanes=st.integers(1, 33))
def test_derive_key_on_a_batch_equals_a_loop_over_lanes(seed, lanes):
    key = jax.random.PRNGKey(seed)
    tags = jnp.arange(1, lanes + 1, dtype=jnp.uint32)
    batch = np.asarray(derive_key(jnp.broadcast_to(key, (lanes, 2)), tags))
    for lane in range(lanes):
        np.testing.assert_array_equal(batch[lane], np.asarray(derive_key(key, lane + 1)))
    assert len({tuple(k) for k in batch}) == lanes


def test_key_words_match_counter_words_in_row_major_order():
    from agentlab.hashing import counter_words, seed_words

    key = jax.random.PRNGKey(5)
    words = np.asarray(key_words(key, (3, 4)))
    flat = np.asarray(counter_words(seed_words(key), jnp.arange(12, dtype=jnp.uint32)))
    np.testing.assert_array_equal(words.reshape(-1), flat)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 12), width=st.integers(1, 5), data=st.data())
def test_a_block_of_rows_gets_the_words_and_draws_the_whole_batch_has_there(rows, width, data):
    """`first_row`: a device's block of a batch draws what the batch draws in those rows (no gather needed)."""
    first = data.draw(st.integers(0, rows - 1))
    count = data.draw(st.integers(1, rows - first))
    key = jax.random.PRNGKey(rows * 7 + width)
    whole = np.asarray(key_words(key, (rows, width, 2)))
    np.testing.assert_array_equal(np.asarray(key_words(key, (count, width, 2), first)), whole[first : first + count])
    logits = jax.random.normal(jax.random.PRNGKey(1), (rows, width, 3))
    np.testing.assert_array_equal(
        np.asarray(nets.categorical_sample(key, logits[first : first + count], first)),
        np.asarray(nets.categorical_sample(key, logits))[first : first + count],
    )
    policy = jax.random.normal(jax.random.PRNGKey(2), (rows, 2 * width))
    np.testing.assert_array_equal(
        np.asarray(nets.gaussian_sample(key, policy[first : first + count], first)),
        np.asarray(nets.gaussian_sample(key, policy))[first : first + count],
    )


# -- HASH_PRNG and split_key: the counter hash behind the initial weights and the per-update keys
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num=st.integers(1, 50))
def test_split_key_gives_distinct_keys_equal_to_the_prng_impls_split(seed, num):
    raw = jax.random.PRNGKey(seed)
    keys = np.asarray(split_key(raw, num))
    assert keys.shape == (num, 2) and keys.dtype == np.uint32
    assert len({tuple(k) for k in keys}) == num  # and none equals its parent
    assert not any((k == np.asarray(raw)).all() for k in keys)
    typed = jax.random.split(jax.random.wrap_key_data(raw, impl=HASH_PRNG), num)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(typed)), keys)
    for i in range(num):  # stream i of the parent, one lane at a time
        np.testing.assert_array_equal(keys[i], np.asarray(derive_key(raw, jnp.uint32(i))))


def test_hash_prng_draws_have_the_moments_and_ranges_of_jax_random():
    key = jax.random.key(11, impl=HASH_PRNG)
    normal = np.asarray(jax.random.normal(key, (200_000,)))
    assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1) < 0.01
    assert abs(np.mean(np.abs(normal) < 1) - 0.6827) < 0.005  # the normal's one-sigma mass
    uniform = np.asarray(jax.random.uniform(jax.random.fold_in(key, 3), (200_000,)))
    assert uniform.min() >= 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.005
    for dtype in (jnp.uint8, jnp.uint16):
        bits = np.asarray(jax.random.bits(key, (100_000,), dtype))
        top = np.iinfo(dtype).max
        assert bits.dtype == dtype and bits.max() > 0.99 * top and abs(bits.mean() / top - 0.5) < 0.01
    folded = [tuple(np.asarray(jax.random.key_data(jax.random.fold_in(key, i)))) for i in range(100)]
    assert len(set(folded)) == 100


def test_initial_kernels_are_orthogonal_with_each_layers_gain():
    """PPO's network starts from orthogonal kernels (gains sqrt 2 for hidden layers, 0.01 for the
    policy head, 1 for the value head) and zero biases, drawn from the hash PRNG; different seeds
    give different weights."""
    learner = PPO(PPOConfig(env="breakout", num_envs=2, num_steps=4, num_minibatches=1, shared_layers=0))
    params = jax.jit(learner.init)(jax.random.PRNGKey(0)).params["params"]
    other = jax.jit(learner.init)(jax.random.PRNGKey(1)).params["params"]
    gains = {"Dense_0": np.sqrt(2), "Dense_1": np.sqrt(2), "Dense_2": np.sqrt(2), "Dense_3": np.sqrt(2)}
    gains |= {"Dense_4": 0.01, "Dense_5": 1.0}
    for name, gain in gains.items():
        kernel = np.asarray(params[name]["kernel"], np.float64)
        small = min(kernel.shape)
        gram = kernel.T @ kernel if kernel.shape[0] >= kernel.shape[1] else kernel @ kernel.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-5 * max(gain**2, 1))
        np.testing.assert_array_equal(np.asarray(params[name]["bias"]), 0.0)
        assert not np.allclose(kernel, np.asarray(other[name]["kernel"]))


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 6), n=st.integers(1, 80), seed=st.integers(0, 2**31 - 1))
def test_sort_order_of_a_batch_sorts_each_row_like_a_loop(rows, n, seed):
    """`sort_order` on ``(rows, n)`` words (market-crash's serving orders under `vmap`) is a permutation
    per row that puts the row's words in ascending order, the same as sorting each row alone."""
    words = key_words(jax.random.PRNGKey(seed), (rows, n))
    order = np.asarray(sort_order(words))
    w = np.asarray(words)
    for r in range(rows):
        np.testing.assert_array_equal(np.sort(order[r]), np.arange(n))
        np.testing.assert_array_equal(order[r], np.asarray(sort_order(words[r])))
        assert np.all(np.diff(w[r][order[r]].astype(np.int64) >> max(1, (n - 1).bit_length())) >= 0)
