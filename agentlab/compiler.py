"""XLA options agentlab compiles its learners with, and a `jit` that applies them.

On the CPU backend JAX 0.10 routes small dense dots through YNNPACK fusions by default. For PPO's
networks (a 1024 x 400 minibatch into 64 units, 64 environments per rollout step) Eigen's dot is
faster: in-process A/B on a 2-core EPYC, one breakout update took 78-105 ms with YNNPACK disabled
against 87-120 ms with it (medians of 12 interleaved rounds), 5-8% of a whole training run, and
compiles no slower. XLA also routes small reductions there; with them on Eigen the market-crash
simulation ran 97k instead of 56k market-steps/s, `simulate market-lemons` and `simulate
grid-curtailment` 8-25% faster. Learners, `agentlab simulate` and the market and PPO benchmarks use
these options; other backends get none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: DebugOptions fields set on CPU. An empty fusion-type list turns the YNNPACK fusions off.
CPU_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def options() -> dict[str, Any]:
    """The compiler options for the default backend (a fresh dict; empty off the CPU)."""
    import jax

    return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fn, **kwargs)`` compiled with `options()`."""
    import jax

    return jax.jit(fn, compiler_options=options(), **kwargs)
