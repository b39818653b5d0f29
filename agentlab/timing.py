"""Timing a jitted computation the way every agentlab measurement does: compile first (timed on its
own), then run, blocking on the result before the clock stops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def compile_and_run(
    fn: Callable[..., Any], *args: Any, compiler_options: dict[str, Any] | None = None
) -> tuple[Any, float, float]:
    """``(result, compile_seconds, run_seconds)`` of ``jax.jit(fn)(*args)``, blocking on the result;
    `compiler_options` as for `jax.jit` (e.g. `agentlab.compiler.options()`)."""
    import jax

    tick = time.perf_counter()
    compiled = jax.jit(fn, compiler_options=compiler_options).lower(*args).compile()
    compile_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    return result, compile_seconds, time.perf_counter() - tick
