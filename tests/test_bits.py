"""The small pieces under the kernels: row bitmasks, the counter-based draws, derived keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agentlab.kernels.atari.base import entity_rows, expand, pack, pick_kth, popcount, unpack
from agentlab.kernels.environment import derive_key, materialize
from agentlab.kernels.stochasticity import counter_words, randint, seed_words, uniform

grids = arrays(np.bool_, (10, 10))


@given(grid=grids)
def test_pack_and_unpack_are_inverse_and_match_numpy(grid):
    rows = np.asarray(pack(jnp.asarray(grid)))
    expected = (grid * (1 << np.arange(10))).sum(axis=1)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(np.asarray(unpack(jnp.asarray(rows))), grid)
    assert int(popcount(jnp.asarray(rows))) == grid.sum()


@given(planes=arrays(np.int32, (10, 3), elements=st.integers(0, 1023)))
def test_expand_equals_a_python_loop(planes):
    obs = np.asarray(expand(jnp.asarray(planes)))
    for r in range(10):
        for c in range(10):
            for ch in range(3):
                assert obs[r, c, ch] == bool((planes[r, ch] >> c) & 1)


@given(
    active=arrays(np.bool_, (6,)),
    ys=arrays(np.int32, (6,), elements=st.integers(0, 9)),
    xs=arrays(np.int32, (6,), elements=st.integers(-1, 10)),
)
def test_entity_rows_marks_each_active_entity_on_the_grid(active, ys, xs):
    grid = np.zeros((10, 10), bool)
    for a, y, x in zip(active, ys, xs):
        if a and 0 <= x <= 9:
            grid[y, x] = True
    np.testing.assert_array_equal(
        np.asarray(unpack(entity_rows(jnp.asarray(active), jnp.asarray(ys), jnp.asarray(xs)))), grid
    )


def test_pick_kth_draws_every_set_cell_uniformly():
    rows = pack(jnp.zeros((10, 10), bool).at[2, 3].set(True).at[5, 0].set(True).at[9, 9].set(True))
    words = counter_words(seed_words(jax.random.key(0)), jnp.arange(6000, dtype=jnp.uint32))
    picks = jax.vmap(lambda w: unpack(pick_kth(rows, w)))(words)
    counts = np.asarray(picks.sum(axis=0))[[2, 5, 9], [3, 0, 9]]
    assert np.asarray(picks.sum(axis=(1, 2)) == 1).all()
    assert np.all(np.abs(counts - 2000) < 4 * np.sqrt(6000 * (1 / 3) * (2 / 3)))
    assert int(pick_kth(jnp.zeros(10, jnp.int32), words[0]).sum()) == 0


def test_counter_words_are_uniform_and_keyed():
    n = 200_000
    words = counter_words(seed_words(jax.random.key(1)), jnp.arange(n, dtype=jnp.uint32))
    u = np.asarray(uniform(words), np.float64)
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / n)
    bits = (np.asarray(words)[:, None] >> np.arange(32)) & 1  # every bit is a fair coin
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 4 * 0.5 / np.sqrt(n))
    counts = np.bincount(np.asarray(randint(words, 5)), minlength=5)
    assert np.all(np.abs(counts - n / 5) < 4 * np.sqrt(n * 0.2 * 0.8))
    other = counter_words(seed_words(jax.random.key(2)), jnp.arange(8, dtype=jnp.uint32))
    assert not np.array_equal(np.asarray(other), np.asarray(words[:8]))


@given(seed=st.integers(0, 2**31 - 1), tag=st.integers(0, 2**31 - 1))
def test_derive_key_is_deterministic_and_distinct(seed, tag):
    key = jax.random.key(seed)
    a, b = derive_key(key, tag), derive_key(key, tag)
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
    assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(key))
    assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(derive_key(key, tag + 1)))
    raw = derive_key(jax.random.PRNGKey(seed), tag)
    np.testing.assert_array_equal(raw, jax.random.key_data(a))


def test_materialize_returns_its_input_unchanged():
    tree = {"a": jnp.arange(5), "b": jnp.array([True, False]), "c": jnp.float32(2.5)}
    out = jax.jit(jax.vmap(lambda k: materialize(tree, k)))(jax.random.split(jax.random.key(0), 3))
    for name, value in tree.items():
        np.testing.assert_array_equal(
            np.asarray(out[name]), np.broadcast_to(np.asarray(value), np.asarray(out[name]).shape)
        )


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64))
def test_the_three_forms_of_the_hash_agree(values):
    """JAX, NumPy, plain integers and numba (as Q-learning and the synergy cross-check jit it): one hash.
    Checked against MurmurHash3's finaliser written out here from its definition."""
    import numba

    from agentlab.hashing import fmix32, fmix32_int, fmix32_np

    def murmur(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) % 2**32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) % 2**32
        return h ^ (h >> 16)

    expected = [murmur(v) for v in values]
    jitted = numba.njit(fmix32_int)
    assert np.asarray(fmix32(jnp.asarray(values, jnp.uint32))).tolist() == expected
    assert fmix32_np(np.asarray(values, np.uint64)).tolist() == expected
    assert [fmix32_int(v) for v in values] == expected
    assert [jitted(v) for v in values] == expected
