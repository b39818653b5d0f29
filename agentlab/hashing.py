"""The one integer hash behind agentlab's counter-based random draws (kernels, PPO's rollouts,
Q-learning, synergy Monte Carlo), in its three forms side by side: JAX (`fmix32`), NumPy
(`fmix32_np`) and plain integers for numba (`fmix32_int`; ``numba.njit(fmix32_int)`` is the numba
version, jitted where it is used so that this module needs no numba). A light module: it imports
only JAX and NumPy, so samplers outside `agentlab.kernels` can share it without loading every kernel.

Counter-based draws: a key's two uint32 words (`seed_words`) seed a cheap, well-mixed hash of a
counter (`counter_words`), so a computation with many draws costs one hash per draw instead of a
threefry block (which JAX's CPU backend runs as a rolled loop: tens of microseconds a call).
"""

from __future__ import annotations

import math

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: the counter stride of `counter_words`


def fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijective avalanche mix of a uint32 array (same shape)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def fmix32_np(h: np.ndarray) -> np.ndarray:
    """`fmix32` on NumPy uint64 arrays holding 32-bit values (the low 32 bits of the input are used)."""
    h = np.asarray(h, np.uint64) & np.uint64(MASK32)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(MASK32)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(MASK32)
    return h ^ (h >> np.uint64(16))


def fmix32_int(h: int) -> int:
    """`fmix32` on one integer (its low 32 bits), for plain Python and, jitted, for numba: with int64
    arithmetic the products wrap modulo 2**64 and the masks keep the low 32 bits, so it is exact."""
    h = h & MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def seed_words(key: jax.Array) -> jax.Array:
    """The two uint32 words every draw of a step is derived from: the key's own data.

    A step key is already the output of a mixing hash (threefry's `split` or `fold_in`, or this
    module's `derive_key` and `split_key`), so its words are used as they are and every draw is a
    cheap counter-based hash of them (`counter_words`): no further threefry block per step.
    Raw ``uint32[2]`` keys and typed keys are both accepted.
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
    return fmix32(seed[0] ^ fmix32(seed[1] + counters * jnp.uint32(GOLDEN)))


def uniform(word: jax.Array) -> jax.Array:
    """A float32 uniform in [0, 1) from the top 24 bits of a uint32 word."""
    return (word >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def open_uniform(word: jax.Array) -> jax.Array:
    """A float32 uniform in the open interval (0, 1): the midpoints of 2**23 equal cells (from the
    top 23 bits), so that the largest, ``1 - 2**-24``, is still a float32 below 1 and the log of
    the log is finite."""
    return ((word >> 9).astype(jnp.float32) + jnp.float32(0.5)) * jnp.float32(2.0**-23)


def key_words(key: jax.Array, shape: tuple[int, ...], first_row: int | jax.Array = 0) -> jax.Array:
    """uint32 `shape`: one counter-based word per element, from a raw ``uint32[2]`` (or typed) key. With
    `first_row`, the words of rows ``first_row ..`` of a larger batch with `shape`'s trailing dimensions (a device's
    block of the batch gets the words the whole batch has there)."""
    start = jnp.asarray(first_row, jnp.uint32) * jnp.uint32(math.prod(shape[1:]))
    return counter_words(seed_words(key), start + jnp.arange(math.prod(shape), dtype=jnp.uint32)).reshape(shape)


def derive_key(key: jax.Array, tag: int | jax.Array) -> jax.Array:
    """A new key for the stream `tag` of `key`, like ``jax.random.fold_in`` but from a cheap
    integer hash of the key's data instead of a threefry block.

    Keys handed to a kernel are already mixed (threefry's `split`, or `split_key`), so re-mixing
    their words is enough to decorrelate a derived stream, at a fraction of the cost (the auto-reset key is derived
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


# ------------------------------------------------------------------------------ a JAX PRNG on the hash
def _hash_seed(seed: jax.Array) -> jax.Array:
    """uint32[2] key data from an integer seed (the low and, for 64-bit seeds, high word)."""
    seed = jnp.asarray(seed)
    low = seed.astype(jnp.uint32)
    high = (seed >> 32).astype(jnp.uint32) if seed.dtype.itemsize == 8 else jnp.zeros((), jnp.uint32)
    return jnp.stack([fmix32(low ^ fmix32(high + jnp.uint32(0x9E3779B9))), fmix32(high ^ jnp.uint32(0x85EBCA6B))])


def _hash_split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    streams = jnp.arange(math.prod(shape), dtype=jnp.uint32)
    return derive_key(jnp.broadcast_to(key, (streams.size, 2)), streams).reshape(*shape, 2)


def _hash_random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    if bit_width == 64:
        words = key_words(key, (*shape, 2)).astype(jnp.uint64)
        return (words[..., 0] << 32) | words[..., 1]
    words = key_words(key, shape)
    return words if bit_width == 32 else (words >> (32 - bit_width)).astype(jnp.dtype(f"uint{bit_width}"))


#: A JAX PRNG implementation on the counter hash (``jax.random.wrap_key_data(data, impl=HASH_PRNG)``):
#: `split`, `fold_in` and `random_bits` are a few integer multiplies instead of threefry blocks,
#: which JAX's CPU backend compiles as separate rolled loops (about a quarter of a second of XLA
#: compile time each). PPO uses it where a library wants a JAX key (flax's initial weights: a key
#: folded in per layer and a normal draw per kernel); its draws are the same counter hash as every
#: other draw in agentlab (tests/test_sampling.py checks their moments).
HASH_PRNG = jax.extend.random.define_prng_impl(
    key_shape=(2,),
    seed=_hash_seed,
    split=_hash_split,
    random_bits=_hash_random_bits,
    fold_in=derive_key,
    name="agentlab_hash",
    tag="ahash",
)


def split_key(key: jax.Array, num: int = 2) -> jax.Array:
    """``num`` new keys from one: `derive_key` streams 0..num-1, the counter-hash counterpart of
    ``jax.random.split`` (no threefry block to compile or run). A raw ``uint32[2]`` key gives raw
    keys ``(num, 2)`` of its dtype; a typed key gives typed keys ``(num,)`` of its implementation."""
    data = _hash_split(seed_words(key), (num,))
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))
    return data.astype(key.dtype)


#: Up to this many rows `sort_order` packs each row's index into its word's low bits.
PACKED_SORT_ROWS = 8192


def sort_order(words: jax.Array) -> jax.Array:
    """int32: the permutation that sorts uint32 `words` along the last axis (a uniform random order when
    the words are counter-hash draws).

    Up to `PACKED_SORT_ROWS` rows, each word's low ``ceil(log2 n)`` bits are replaced by the row's index
    and the packed words sorted as plain integers: one single-operand sort, about 6x faster on the CPU
    than the key-and-payload sort of ``argsort``. The cost of packing: rows whose remaining high bits
    tie (about ``n**3 / 2**33`` pairs; 64 pairs among 8192 rows, none expected among 50) come out in
    index order instead of a random one. Longer rows sort the full words with the index as payload
    (ties, probability about ``n**2 / 2**33``, keep index order).
    """
    n = words.shape[-1]
    if n <= PACKED_SORT_ROWS:
        mask = jnp.uint32((1 << max(1, (n - 1).bit_length())) - 1)
        packed = (words & ~mask) | jnp.arange(n, dtype=jnp.uint32)
        return (jnp.sort(packed, axis=-1) & mask).astype(jnp.int32)
    return jnp.argsort(words, axis=-1, stable=True).astype(jnp.int32)
