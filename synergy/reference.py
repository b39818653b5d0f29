"""numba cross-check of `agentlab.synergy.montecarlo`: the same samplers, written as scalar loops.

Same hash, seeds, streams and Bernoulli construction as the JAX code, so for the same seed and
parameters the counts agree exactly; the majority is a plain per-bit count (not the bit-sliced adder
of the JAX code), so the cross-check also tests the bitwise majority. Model as in the reference
(docs/synergy.md); used in tests, not for speed.
"""

from __future__ import annotations

import numba
import numpy as np

from agentlab.hashing import GOLDEN, fmix32_int
from agentlab.hashing import MASK32 as MASK

BITS = 16
ONE = 1 << BITS
LEAF, FLIP, SHARE, PERM = 0, 1, 2, 3


fmix32 = numba.njit(cache=False)(fmix32_int)


@numba.njit
def word(s0, s1, counter):
    return fmix32(s0 ^ fmix32((s1 + counter * GOLDEN) & MASK))


@numba.njit
def stream_seed(s0, s1, tag):
    return word(s0, s1, (2 * tag + 0x10000) & MASK), word(s0, s1, (2 * tag + 0x10001) & MASK)


@numba.njit
def bernoulli(s0, s1, q, n):
    out = np.empty(n, np.int64)
    for idx in range(n):
        base = fmix32((s1 + idx * GOLDEN) & MASK)
        r = 0
        for i in range(BITS):
            u = fmix32(base ^ fmix32((s0 + ((i * 0x632BE5AB) & MASK)) & MASK))
            if (q >> i) & 1:
                r = r | u
            else:
                r = r & u
        out[idx] = MASK if q >= ONE else r
    return out


@numba.njit
def node(received, share, b, n_words):
    """received (b, W), share (W,): per bit, the first message if shared, else the majority."""
    out = np.zeros(n_words, np.int64)
    for w in range(n_words):
        value = 0
        for bit in range(32):
            if (share[w] >> bit) & 1:
                vote = (received[0, w] >> bit) & 1
            else:
                ones = 0
                for j in range(b):
                    ones += (received[j, w] >> bit) & 1
                vote = 1 if 2 * ones > b else 0
            value |= vote << bit
        out[w] = value
    return out


@numba.njit
def popcount(x):
    total = 0
    for w in range(x.size):
        v = x[w]
        while v:
            v &= v - 1
            total += 1
    return total


@numba.njit
def full_tree_count(s0, s1, q_leaf0, q_leaf, q_flip, q_share, b, depth, n_words):
    """Correct roots among 32 n_words full trees (`montecarlo.full_tree_root`)."""
    if depth == 0:
        a0, a1 = stream_seed(s0, s1, LEAF)
        return popcount(bernoulli(a0, a1, q_leaf0, n_words))
    a0, a1 = stream_seed(s0, s1, LEAF)
    received = bernoulli(a0, a1, q_leaf, b**depth * n_words).reshape(b**depth, n_words)
    out = received[0]
    for level in range(1, depth + 1):
        nodes = b ** (depth - level)
        h0, h1 = stream_seed(s0, s1, 4 * level + SHARE)
        share = bernoulli(h0, h1, q_share, nodes * n_words).reshape(nodes, n_words)
        outs = np.empty((nodes, n_words), np.int64)
        for k in range(nodes):
            outs[k] = node(received[k * b : (k + 1) * b], share[k], b, n_words)
        if level < depth:
            f0, f1 = stream_seed(s0, s1, 4 * level + FLIP)
            flips = bernoulli(f0, f1, q_flip, nodes * n_words).reshape(nodes, n_words)
            received = outs ^ flips
        out = outs[0]
    return popcount(out)


@numba.njit
def level_counts(s0, s1, q_leaf0, q_flip, q_share, b, depth, n_words):
    """Correct counts per level of the population sampler (`montecarlo.level_population`)."""
    counts = np.zeros(depth + 1, np.int64)
    a0, a1 = stream_seed(s0, s1, LEAF)
    population = bernoulli(a0, a1, q_leaf0, n_words)
    counts[0] = popcount(population)
    mask = n_words - 1
    for level in range(1, depth + 1):
        p0, p1 = stream_seed(s0, s1, 4 * level + PERM)
        f0, f1 = stream_seed(s0, s1, 4 * level + FLIP)
        flips = bernoulli(f0, f1, q_flip, b * n_words).reshape(b, n_words)
        h0, h1 = stream_seed(s0, s1, 4 * level + SHARE)
        share = bernoulli(h0, h1, q_share, n_words)
        children = np.empty((b, n_words), np.int64)
        for j in range(b):
            a = (word(p0, p1, 3 * j) | 1) & mask
            c = word(p0, p1, 3 * j + 1) & mask
            r = 1 + word(p0, p1, 3 * j + 2) % 31
            for w in range(n_words):
                x = population[((a * w + c) & MASK) & mask]
                children[j, w] = (((x << r) | (x >> (32 - r))) & MASK) ^ flips[j, w]
        population = node(children, share, b, n_words)
        counts[level] = popcount(population)
    return counts


def _quantize(p: np.ndarray) -> int:
    return int(np.clip(np.round(np.float32(p) * np.float32(ONE)), 0, ONE))


def _probabilities(mu0: float, rho: float, gamma: float) -> tuple[int, int, int, int]:
    """(q_leaf0, q_leaf_received, q_flip, q_share) computed in float32 like the JAX samplers."""
    mu0, rho, gamma = np.float32(mu0), np.float32(rho), np.float32(gamma)
    one, two = np.float32(1), np.float32(2)
    return (
        _quantize((one + mu0) / two),
        _quantize((one + gamma * mu0) / two),
        _quantize((one - gamma) / two),
        _quantize(rho),
    )


def _chunk_seed(seed: np.ndarray, chunk: int) -> tuple[int, int]:
    return stream_seed(int(seed[0]), int(seed[1]), 0x7000_0000 + chunk)


def simulate_full_tree(seed, mu0, rho, gamma, *, b: int, depth: int, trials: int, words_per_call: int = 64):
    """One configuration: ``(correct, trials)``, equal to `montecarlo.simulate_full_tree` for that row."""
    q0, q_leaf, q_flip, q_share = _probabilities(mu0, rho, gamma)
    calls = max(1, -(-trials // (32 * words_per_call)))
    total = 0
    for chunk in range(calls):
        s0, s1 = _chunk_seed(seed, chunk)
        total += full_tree_count(s0, s1, q0, q_leaf, q_flip, q_share, b, depth, words_per_call)
    return total, calls * 32 * words_per_call


def simulate_levels(seed, mu0, rho, gamma, *, b: int, depth: int, n_words: int, populations: int = 1):
    """One configuration: correct counts per level, equal to `montecarlo.simulate_levels` for that row."""
    q0, _, q_flip, q_share = _probabilities(mu0, rho, gamma)
    total = np.zeros(depth + 1, np.int64)
    for chunk in range(populations):
        s0, s1 = _chunk_seed(seed, chunk)
        total += level_counts(s0, s1, q0, q_flip, q_share, b, depth, n_words)
    return total
