"""Timing a jitted computation the way every agentlab measurement does: compile first (timed on its
own), then run, blocking on the result before the clock stops.

- `compile_and_run`: one call (a training run, a simulation) after its compile;
- `compile_only` then `time_interleaved`: repeated calls (throughput), several measurements timed
  round-robin so that a machine that speeds up or slows down affects all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Name = TypeVar("Name")


def compile_only(
    fn: Callable[..., Any], *args: Any, compiler_options: dict[str, Any] | None = None
) -> tuple[Callable[..., Any], float]:
    """``(compiled, compile_seconds)``: ``jax.jit(fn).lower(*args).compile()`` and its wall time.
    `fn` may already be jitted (its own options then apply); `compiler_options` as for `jax.jit`
    (e.g. `agentlab.compiler.options()`)."""
    import jax

    tick = time.perf_counter()
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn, compiler_options=compiler_options)
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - tick


def compile_and_run(
    fn: Callable[..., Any], *args: Any, compiler_options: dict[str, Any] | None = None
) -> tuple[Any, float, float]:
    """``(result, compile_seconds, run_seconds)`` of ``jax.jit(fn)(*args)``, blocking on the result;
    `compiler_options` as for `jax.jit` (e.g. `agentlab.compiler.options()`)."""
    import jax

    compiled, compile_seconds = compile_only(fn, *args, compiler_options=compiler_options)
    tick = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    return result, compile_seconds, time.perf_counter() - tick


def time_interleaved(
    calls: Mapping[Name, Callable[..., Any]],
    arguments: Callable[[Name, int], tuple],
    repeats: int,
    *,
    warm_up: bool = True,
) -> dict[Name, list[float]]:
    """Seconds of each of `repeats` rounds of ``calls[name](*arguments(name, r))`` for r = 1..repeats,
    round-robin over the names, each blocked on; the arguments are made before the clock starts. With
    `warm_up`, one untimed call per name first (r = 0)."""
    import jax

    if warm_up:
        for name, call in calls.items():
            jax.block_until_ready(call(*arguments(name, 0)))
    times: dict[Name, list[float]] = {name: [] for name in calls}
    for r in range(1, repeats + 1):
        for name, call in calls.items():
            args = arguments(name, r)
            tick = time.perf_counter()
            jax.block_until_ready(call(*args))
            times[name].append(time.perf_counter() - tick)
    return times
