"""The one integer hash behind agentlab's counter-based random draws (kernels, Q-learning, synergy
Monte Carlo). A light module: it imports only JAX, so samplers outside `agentlab.kernels` can share
it without loading every kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijective avalanche mix of a uint32 array (same shape)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)
