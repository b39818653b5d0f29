"""Fusion boundaries for XLA's CPU compiler.

XLA fuses cheap producers into every consumer, including consumers that broadcast them. In a kernel
that is often a loss: a per-lane value (a hash, a random draw, a freshly reset state) feeding the
``10 x 10 x C`` observation gets recomputed for every cell. `materialize` stores a value once,
before its users run.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def materialize(tree: Any, key: jax.Array) -> Any:
    """`tree`, unchanged, computed once and stored before its users run.

    XLA's CPU fusion copies cheap producers into every consumer, including consumers that broadcast
    them: left alone it recomputes the whole new-episode draw (a few dozen hashes per lane) for each
    of the 100*C cells of the observation. A while loop that runs exactly once, with a trip count
    XLA cannot know at compile time, is a fusion boundary; its body adds a run-time zero, so nothing
    changes. `agentlab bench kernels` measured auto-reset at 2-3x the cost of a plain step without
    it and within noise of a plain step with it; per-lane random draws feeding observation masks cost
    up to 60% of Freeway's throughput without it.
    """
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    word = (jax.random.key_data(key) if typed else key).reshape(-1)[0].astype(jnp.uint32)
    trips = (word >> 31).astype(jnp.int32) | 1  # 1 at run time; unknown to the compiler

    def body(carry):
        i, values = carry
        zero = i >> 31  # 0 at run time
        return i + 1, jax.tree.map(
            lambda v: v + zero.astype(v.dtype) if v.dtype != jnp.bool_ else v ^ (zero != 0), values
        )

    return jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), tree))[1]
