"""The one integer hash behind agentlab's counter-based random draws (kernels, PPO's rollouts,
Q-learning, synergy Monte Carlo). A light module: it imports only JAX, so samplers outside
`agentlab.kernels` can share it without loading every kernel.

Counter-based draws: a key's two uint32 words (`seed_words`) seed a cheap, well-mixed hash of a
counter (`counter_words`), so a computation with many draws costs one hash per draw instead of a
threefry block (which JAX's CPU backend runs as a rolled loop: tens of microseconds a call).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijective avalanche mix of a uint32 array (same shape)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def seed_words(key: jax.Array) -> jax.Array:
    """The two uint32 words every draw of a step is derived from: the key's own data.

    A step key is already the output of a threefry hash (`split` or `fold_in`), so its words are
    used as they are and every draw is a cheap counter-based hash of them (`counter_words`): no
    further threefry block per step. Raw ``uint32[2]`` keys and typed keys are both accepted.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return key.astype(jnp.uint32).reshape(-1)[-2:]


def counter_words(seed: jax.Array, counters: jax.Array) -> jax.Array:
    """uint32 words for the given counters, keyed by a two-word `seed`.

    One threefry block per step gives the seed; each draw is then a cheap, well-mixed hash of the
    seed and its counter (two MurmurHash3 finalisers), so a step with many draws (Freeway re-draws
    eight car speeds) costs little more than one with none.
    """
    counters = jnp.asarray(counters, jnp.uint32)
    return fmix32(seed[0] ^ fmix32(seed[1] + counters * jnp.uint32(0x9E3779B9)))


def uniform(word: jax.Array) -> jax.Array:
    """A float32 uniform in [0, 1) from the top 24 bits of a uint32 word."""
    return (word >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def open_uniform(word: jax.Array) -> jax.Array:
    """A float32 uniform in the open interval (0, 1): the midpoints of 2**23 equal cells (from the
    top 23 bits), so that the largest, ``1 - 2**-24``, is still a float32 below 1 and the log of
    the log is finite."""
    return ((word >> 9).astype(jnp.float32) + jnp.float32(0.5)) * jnp.float32(2.0**-23)


def key_words(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 `shape`: one counter-based word per element, from a raw ``uint32[2]`` (or typed) key."""
    return counter_words(seed_words(key), jnp.arange(math.prod(shape), dtype=jnp.uint32)).reshape(shape)


def derive_key(key: jax.Array, tag: int | jax.Array) -> jax.Array:
    """A new key for the stream `tag` of `key`, like ``jax.random.fold_in`` but from a cheap
    integer hash of the key's data instead of a threefry block.

    Keys handed to a kernel are already threefry outputs (`split`), so re-mixing their words is
    enough to decorrelate a derived stream, at a fraction of the cost (the auto-reset key is derived
    on every step of every lane). `key` may be a batch ``(..., 2)`` and `tag` an array that
    broadcasts against it (one stream per lane).
    """
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(key) if typed else key
    lo, hi = data[..., 0].astype(jnp.uint32), data[..., 1].astype(jnp.uint32)
    salt = jnp.asarray(tag, jnp.uint32)
    a = fmix32(lo ^ fmix32(hi + salt * jnp.uint32(0x9E3779B9)))
    b = fmix32(hi ^ fmix32(a + salt * jnp.uint32(0x85EBCA6B) + jnp.uint32(1)))
    new = jnp.stack([a, b], axis=-1)
    return jax.random.wrap_key_data(new, impl=jax.random.key_impl(key)) if typed else new.astype(data.dtype)
