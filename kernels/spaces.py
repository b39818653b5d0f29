"""Observation and action spaces with `sample(key)` and `contains(x)`.

Both are small frozen descriptions; `contains` checks shape and dtype statically (Python bool)
and the bounds with JAX (a scalar bool array), so it works on host values and inside `jit`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Discrete:
    """Integers in ``[0, n)``; `shape` is ``()`` for one agent and ``(n_agents,)`` for a team."""

    n: int
    shape: tuple[int, ...] = ()
    dtype: Any = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)

    def contains(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape or not jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.asarray(False)
        return jnp.all((x >= 0) & (x < self.n))


@dataclasses.dataclass(frozen=True)
class Box:
    """Arrays of a fixed `shape` and `dtype` with elementwise bounds ``low <= x <= high``.

    A boolean Box (`dtype=bool`) is the observation space of the Atari-style kernels.
    """

    low: float
    high: float
    shape: tuple[int, ...]
    dtype: Any = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        if self.dtype == jnp.bool_:
            return jax.random.bernoulli(key, 0.5, self.shape)
        if jnp.issubdtype(self.dtype, jnp.integer):
            return jax.random.randint(key, self.shape, int(self.low), int(self.high) + 1, dtype=self.dtype)
        low = np.maximum(self.low, np.finfo(np.float32).min / 2)
        high = np.minimum(self.high, np.finfo(np.float32).max / 2)
        return jax.random.uniform(key, self.shape, self.dtype, low, high)

    def contains(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != self.shape or x.dtype != jnp.dtype(self.dtype):
            return jnp.asarray(False)
        if self.dtype == jnp.bool_:
            return jnp.asarray(True)
        return jnp.all((x >= self.low) & (x <= self.high))
