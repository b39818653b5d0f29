"""Monte Carlo of majority trees in JAX (model; docs/synergy.md), bit-packed.

Each uint32 word holds 32 independent trials (bit = 1: the message or vote is correct), so one
bitwise operation advances 32 trials. Random words come from a counter-based hash (two MurmurHash3
finalisers of a two-word seed and a counter, `words`), so every draw is addressed by
``(seed, stream tag, counter)`` and the numba cross-check (`agentlab.synergy.reference`) reproduces
the JAX samplers bit for bit.

The model of one tree (the reference's "model"): a leaf's output is correct with probability
``(1 + mu0) / 2``; every child -> parent message is flipped with probability ``(1 - gamma) / 2``; at
each internal node, with probability rho the b received messages are one shared draw (the first
child's received message), otherwise the b independent received messages; the node outputs their
majority. A leaf's received message is drawn in one step with bias ``gamma mu0`` (the same
distribution as a leaf draw followed by a channel flip).

Bernoulli(p) words use the binary expansion of ``p`` rounded to `BITS` = 16 bits (one random word per
bit: r <- r | u where the bit is 1, r & u where it is 0, least significant first), so the sampled
probabilities differ from the requested ones by at most 2**-17, far below any standard error here.

Samplers:
- `full_tree_counts`: full b-ary trees of depth L (b**L leaves per trial), root outputs only.
- `level_counts`: a level-wise population sampler for deep trees: level l + 1's P words of nodes
  take their b children from level l's population through random affine word permutations and random
  bit rotations (one per child slot and level), so cost grows linearly in depth. Children of one node
  are distinct trials, but ancestries may overlap with probability about b**(2d) / (32 P) at distance
  d: an approximation that is exact as P -> infinity (tested against the recursion).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.hashing import GOLDEN, counter_words, fmix32

BITS = 16
ONE = 1 << BITS
# Stream kinds inside a seed: tag = 4 * level + kind.
LEAF, FLIP, SHARE, PERM = 0, 1, 2, 3


def stream_seed(seed: jax.Array, tag: int | jax.Array) -> jax.Array:
    """An independent two-word seed for stream `tag` of `seed` (uint32 (2,))."""
    tag = jnp.asarray(tag, jnp.uint32)
    return jnp.stack(
        [counter_words(seed, 2 * tag + jnp.uint32(0x10000)), counter_words(seed, 2 * tag + jnp.uint32(0x10001))]
    )


def quantize(p: jax.Array) -> jax.Array:
    """``round(p 2**BITS)`` as uint32, clipped to [0, 2**BITS] (2**BITS means certain)."""
    return jnp.clip(jnp.round(jnp.asarray(p, jnp.float32) * ONE), 0, ONE).astype(jnp.uint32)


def bernoulli_words(seed: jax.Array, q: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 words of `shape` whose bits are independent Bernoulli(q / 2**BITS) (q from `quantize`).

    Word number n (C order) gets ``base_n = fmix32(seed[1] + n * 0x9E3779B9)`` once and, for bit i of q
    (least significant first), the random word ``fmix32(base_n ^ fmix32(seed[0] + i * 0x632BE5AB))``:
    one finaliser per random word."""
    size = math.prod(shape)
    base = fmix32(seed[1] + jnp.arange(size, dtype=jnp.uint32).reshape(shape) * jnp.uint32(GOLDEN))
    r = jnp.zeros(shape, jnp.uint32)
    for i in range(BITS):
        u = fmix32(base ^ fmix32(seed[0] + jnp.uint32((i * 0x632BE5AB) & 0xFFFFFFFF)))
        mask = jnp.uint32(0) - ((q >> i) & jnp.uint32(1))
        r = (r & u) | (mask & (r | u))
    return jnp.where(q >= ONE, jnp.uint32(0xFFFFFFFF), r)


def majority_words(votes: jax.Array, b: int) -> jax.Array:
    """Bitwise majority over axis -2 of `votes` (``(..., b, W)`` uint32, b odd): a bit-sliced counter of
    the ones, compared with ``(b + 1) / 2``."""
    if b == 3:
        x, y, z = votes[..., 0, :], votes[..., 1, :], votes[..., 2, :]
        return (x & y) | (z & (x | y))
    width = b.bit_length()
    counter = [jnp.zeros_like(votes[..., 0, :]) for _ in range(width)]
    for j in range(b):
        carry = votes[..., j, :]
        for k in range(width):
            counter[k], carry = counter[k] ^ carry, counter[k] & carry
    threshold = (b + 1) // 2
    greater = jnp.zeros_like(counter[0])
    equal = ~greater
    for k in reversed(range(width)):
        if (threshold >> k) & 1:
            equal = equal & counter[k]
        else:
            greater = greater | (equal & counter[k])
            equal = equal & ~counter[k]
    return greater | equal


def _node(received: jax.Array, share: jax.Array, b: int) -> jax.Array:
    """A node's output: the first received message where `share`, else the majority of the b received."""
    return (share & received[..., 0, :]) | (~share & majority_words(received, b))


def _popcount(x: jax.Array) -> jax.Array:
    return jnp.sum(jax.lax.population_count(x).astype(jnp.int32), axis=-1)


def full_tree_root(seed: jax.Array, mu0, rho, gamma, *, b: int, depth: int, n_words: int) -> jax.Array:
    """Root outputs of ``32 n_words`` independent full trees (uint32 (n_words,)). Scalars mu0, rho, gamma."""
    if depth == 0:
        return bernoulli_words(stream_seed(seed, LEAF), quantize((1 + mu0) / 2), (n_words,))
    q_flip, q_share = quantize((1 - gamma) / 2), quantize(rho)
    received = bernoulli_words(stream_seed(seed, LEAF), quantize((1 + gamma * mu0) / 2), (b**depth, n_words))
    for level in range(1, depth + 1):
        nodes = b ** (depth - level)
        received = received.reshape(nodes, b, n_words)
        share = bernoulli_words(stream_seed(seed, 4 * level + SHARE), q_share, (nodes, n_words))
        out = _node(received, share, b)
        if level < depth:
            received = out ^ bernoulli_words(stream_seed(seed, 4 * level + FLIP), q_flip, (nodes, n_words))
    return out[0]


def _rotl(x: jax.Array, r: jax.Array) -> jax.Array:
    return (x << r) | (x >> (jnp.uint32(32) - r))


def level_population(seed: jax.Array, mu0, rho, gamma, *, b: int, depth: int, n_words: int) -> jax.Array:
    """Correct counts per level 0..depth of the level-wise population sampler (int32 (depth + 1,)).

    `n_words` must be a power of two. Level 0 is ``32 n_words`` leaf outputs; level l + 1's node w
    takes child slot j from level l's word ``(a_j w + c_j) mod n_words`` rotated left by ``r_j`` bits
    (a_j odd, r_j in 1..31, both from stream ``4 l + PERM``), flips it through the channel, and votes.
    A `lax.scan` over levels, so compile time does not grow with depth."""
    if n_words & (n_words - 1):
        raise ValueError(f"n_words must be a power of two, got {n_words}")
    q_flip, q_share = quantize((1 - gamma) / 2), quantize(rho)
    population = bernoulli_words(stream_seed(seed, LEAF), quantize((1 + mu0) / 2), (n_words,))
    index = jnp.arange(n_words, dtype=jnp.uint32)
    mask = jnp.uint32(n_words - 1)

    def level_step(population, level):
        draws = counter_words(stream_seed(seed, 4 * level + PERM), jnp.arange(3 * b, dtype=jnp.uint32)).reshape(b, 3)
        a, c = (draws[:, 0] | jnp.uint32(1)) & mask, draws[:, 1] & mask
        r = jnp.uint32(1) + draws[:, 2] % jnp.uint32(31)
        children = _rotl(population[(a[:, None] * index[None, :] + c[:, None]) & mask], r[:, None])  # (b, W)
        flips = bernoulli_words(stream_seed(seed, 4 * level + FLIP), q_flip, (b, n_words))
        share = bernoulli_words(stream_seed(seed, 4 * level + SHARE), q_share, (n_words,))
        population = _node(children ^ flips, share, b)
        return population, _popcount(population)

    _, counts = jax.lax.scan(level_step, population, jnp.arange(1, depth + 1, dtype=jnp.uint32))
    return jnp.concatenate([_popcount(population)[None], counts])


@functools.cache
def compiled_full_tree(b: int, depth: int, n_words: int):
    """Jitted ``(seeds (C, 2) uint32, mu0 (C,), rho (C,), gamma (C,)) -> correct roots (C,) int64``."""

    def one(seed, mu0, rho, gamma):
        return _popcount(full_tree_root(seed, mu0, rho, gamma, b=b, depth=depth, n_words=n_words))

    return jax.jit(jax.vmap(one))


@functools.cache
def compiled_levels(b: int, depth: int, n_words: int):
    """Jitted ``(seeds (C, 2) uint32, mu0 (C,), rho (C,), gamma (C,)) -> correct counts (C, depth + 1)``."""

    def one(seed, mu0, rho, gamma):
        return level_population(seed, mu0, rho, gamma, b=b, depth=depth, n_words=n_words)

    return jax.jit(jax.vmap(one))


def config_seeds(seed: int, indices) -> np.ndarray:
    """Two-word seeds (uint32 (C, 2)) of configurations `indices` under the master `seed`: a cell's draws
    depend only on (seed, its index), never on how a sweep is chunked."""
    base = jnp.asarray(np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint32))
    tags = jnp.asarray(1_000_000 + np.asarray(indices, dtype=np.int64).reshape(-1), jnp.uint32)
    return np.asarray(jax.vmap(lambda tag: stream_seed(base, tag))(tags))  # one vectorised call, not one per cell


def _chunk_seeds(seeds: np.ndarray, chunk: int) -> jax.Array:
    return jax.vmap(lambda s: stream_seed(s, 0x7000_0000 + chunk))(jnp.asarray(seeds, jnp.uint32))


def _as_configs(mu0, rho, gamma):
    mu0, rho, gamma = np.broadcast_arrays(
        np.atleast_1d(np.asarray(mu0, np.float32)),
        np.atleast_1d(np.asarray(rho, np.float32)),
        np.atleast_1d(np.asarray(gamma, np.float32)),
    )
    return jnp.asarray(mu0), jnp.asarray(rho), jnp.asarray(gamma)


def simulate_full_tree(seeds, mu0, rho, gamma, *, b: int, depth: int, trials: int, words_per_call: int = 64):
    """Root accuracy of full trees: ``(correct (C,) int64, trials)`` with trials rounded up to whole calls
    of ``32 words_per_call``. `seeds` (C, 2) uint32 (`config_seeds`); mu0, rho, gamma broadcast to (C,).
    Chunk k uses ``stream_seed(seed, 0x70000000 + k)``."""
    fn = compiled_full_tree(b, depth, words_per_call)
    mu0, rho, gamma = _as_configs(mu0, rho, gamma)
    calls = max(1, -(-trials // (32 * words_per_call)))
    total = 0
    for chunk in range(calls):
        total = total + np.asarray(fn(_chunk_seeds(seeds, chunk), mu0, rho, gamma))
    return total, calls * 32 * words_per_call


def population_words(trials: int, max_words: int = 4096) -> tuple[int, int]:
    """``(n_words, populations)`` of the level sampler for at least `trials` trials: a power-of-two
    population of at most `max_words` words, repeated."""
    need = max(1, -(-trials // 32))
    n_words = min(1 << (need - 1).bit_length(), max_words)
    return n_words, -(-need // n_words)


def simulate_levels(seeds, mu0, rho, gamma, *, b: int, depth: int, trials: int, max_words: int = 4096):
    """Accuracy per level 0..depth from the level-wise sampler: ``(correct (C, depth + 1) int64, trials)``."""
    n_words, populations = population_words(trials, max_words)
    fn = compiled_levels(b, depth, n_words)
    mu0, rho, gamma = _as_configs(mu0, rho, gamma)
    total = 0
    for chunk in range(populations):
        total = total + np.asarray(fn(_chunk_seeds(seeds, chunk), mu0, rho, gamma))
    return total, populations * n_words * 32


def bias_and_error(correct, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Bias ``mu = 2 p - 1`` and its standard error ``2 sqrt(p (1 - p) / n)`` from correct counts."""
    p = np.asarray(correct, np.float64) / trials
    return 2 * p - 1, 2 * np.sqrt(np.maximum(p * (1 - p), 0.25 / trials) / trials)


def level_standard_errors(mu_hat, trials: int, b: int, rho, gamma) -> np.ndarray:
    """Standard errors of the level sampler's biases (shape of `mu_hat`, levels on the last axis).

    One population carries every level, so level l's sampling error reaches level L multiplied by
    ``prod_{k=l}^{L-1} F'(mu_k)`` (delta method, F' at the estimates): ``se_L**2 = sum_l G_{l,L}**2
    se_binomial(mu_l)**2``. A plain binomial error would understate deep levels by up to alpha**L."""
    from agentlab.synergy.theory import level_map_derivative

    mu_hat = np.asarray(mu_hat, np.float64)
    _, binomial = bias_and_error((mu_hat + 1) / 2 * trials, trials)
    rho = np.asarray(rho, np.float64)[..., None]
    gamma = np.asarray(gamma, np.float64)[..., None]
    slope = np.asarray(level_map_derivative(np.clip(mu_hat, -1, 1), b, rho, gamma))
    variance = np.zeros(mu_hat.shape)
    running = np.zeros(mu_hat.shape[:-1])
    for level in range(mu_hat.shape[-1]):
        if level:
            running = running * slope[..., level - 1] ** 2
        running = running + binomial[..., level] ** 2
        variance[..., level] = running
    return np.sqrt(variance)
