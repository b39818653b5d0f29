"""The JAX backend of `agentlab.rl.qlearn`: many Calvano sessions advanced in lockstep (`--backend jax`).

Same learner, same counter-based draws and the same float64 arithmetic as the numba backend (JAX's 64-bit mode is
switched on inside these functions only), so the two give the same sessions period by period; see `agentlab.rl.qlearn`
for the algorithm. Sessions advance together in chunks of `chunk` periods (one jitted `lax.scan`); a session that has
converged or reached the cap is frozen (its updates are masked), and the host loop stops when every session is done.
Suited to accelerators; on a CPU the numba backend is much faster.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.hashing import fmix32
from agentlab.rl.qlearn import GOLDEN, LANE_MIX, QLearnConfig, SessionsResult, initial_q, initial_states


def word(k0: jax.Array, k1: jax.Array, t: jax.Array, lane: jax.Array) -> jax.Array:
    """uint32 draw of (session key, period, lane); `agentlab.rl.qlearn.word_np` in uint32 arithmetic."""
    t = jnp.asarray(t).astype(jnp.uint32)
    lane = jnp.asarray(lane).astype(jnp.uint32)
    inner = k1 + t * jnp.uint32(GOLDEN) + lane * jnp.uint32(LANE_MIX)
    return fmix32(k0 ^ fmix32(inner))


def _period(carry, t, *, payoff, n, m, alpha, beta, delta, converge, max_periods):
    """One period of one session (vmapped over sessions)."""
    q, greedy, state, stable_for, done, periods, k0, k1 = carry
    eps = jnp.exp(-beta * t.astype(jnp.float64))
    firms = jnp.arange(n, dtype=jnp.uint32)
    explore = word(k0, k1, t, 2 * firms).astype(jnp.float64) * 2.3283064365386963e-10 < eps
    rand = ((word(k0, k1, t, 2 * firms + 1).astype(jnp.uint64) * jnp.uint64(m)) >> jnp.uint64(32)).astype(jnp.int64)
    actions = jnp.where(explore, rand, greedy[:, state])  # (n,)
    nxt = jnp.sum(actions * (m ** jnp.arange(n - 1, -1, -1, dtype=jnp.int64)))
    idx = jnp.arange(n)
    target = payoff[nxt] + delta * q[idx, nxt, greedy[:, nxt]]  # (n,)
    old = q[idx, state, actions]
    new = (1.0 - alpha) * old + alpha * target
    active = ~done
    q = q.at[idx, state, actions].set(jnp.where(active, new, old))
    best = jnp.argmax(q[:, state, :], axis=-1).astype(greedy.dtype)  # (n,) first argmax, as in numba
    changed = jnp.any(best != greedy[:, state])
    greedy = greedy.at[:, state].set(best)
    stable_for = jnp.where(active, jnp.where(changed, 0, stable_for + 1), stable_for)
    converged_now = active & (stable_for >= converge)
    capped_now = active & ~converged_now & (t + 1 >= max_periods)
    periods = jnp.where(converged_now | capped_now, t + 1, periods)
    state = jnp.where(active, nxt, state)
    done = done | converged_now | capped_now
    return (q, greedy, state, stable_for, done, periods, k0, k1)


@functools.cache
def _chunk_fn(n: int, m: int, alpha: float, beta: float, delta: float, converge: int, max_periods: int, chunk: int):
    def run(carry, payoff, t0):
        step = functools.partial(
            _period,
            payoff=payoff,
            n=n,
            m=m,
            alpha=alpha,
            beta=beta,
            delta=delta,
            converge=converge,
            max_periods=max_periods,
        )
        batched = jax.vmap(step, in_axes=(0, None))

        def body(c, t):
            return batched(c, t), None

        carry, _ = jax.lax.scan(body, carry, t0 + jnp.arange(chunk, dtype=jnp.int64))
        return carry

    return jax.jit(run, donate_argnums=0)


def train_jax(
    config: QLearnConfig,
    payoff: np.ndarray,
    keys: np.ndarray,
    chunk: int = 10_000,
    on_chunk: Callable[[int, int], None] | None = None,
    timing: dict | None = None,
) -> SessionsResult:
    """Run the sessions of `keys` (uint32 ``(S, 2)``) in lockstep; ``on_chunk(periods_done, sessions_done)`` after
    each chunk. Returns the same `SessionsResult` as `agentlab.rl.qlearn.train_numba`; `timing`, if given, receives
    ``compile_seconds``."""
    import time

    n, m = config.firms, config.prices
    sessions = keys.shape[0]
    q0 = initial_q(payoff, n, m, config.delta)
    with jax.enable_x64(True):
        fn = _chunk_fn(
            n,
            m,
            float(config.alpha),
            float(config.beta),
            float(config.delta),
            int(config.converge_periods),
            int(config.max_periods),
            int(chunk),
        )
        carry = (
            jnp.broadcast_to(jnp.asarray(q0), (sessions,) + q0.shape).copy(),
            jnp.broadcast_to(jnp.argmax(jnp.asarray(q0), axis=-1), (sessions, n, q0.shape[1])).astype(jnp.int64),
            jnp.asarray(initial_states(keys, n, m), jnp.int64),
            jnp.zeros(sessions, jnp.int64),
            jnp.zeros(sessions, bool),
            jnp.zeros(sessions, jnp.int64),
            jnp.asarray(keys[:, 0], jnp.uint32),
            jnp.asarray(keys[:, 1], jnp.uint32),
        )
        payoff_j = jnp.asarray(payoff, jnp.float64)
        start = time.perf_counter()
        fn = fn.lower(carry, payoff_j, jnp.int64(0)).compile()
        if timing is not None:
            timing["compile_seconds"] = time.perf_counter() - start
        t0 = 0
        while t0 < config.max_periods:
            carry = fn(carry, payoff_j, jnp.int64(t0))
            t0 += chunk
            done = np.asarray(carry[4])
            if on_chunk is not None:
                on_chunk(t0, int(done.sum()))
            if done.all():
                break
        q, greedy, state, stable_for, done, periods, _, _ = (np.asarray(x) for x in carry)
    converged = stable_for >= config.converge_periods
    return SessionsResult(q=q, greedy=greedy.astype(np.int64), periods=periods, converged=converged, final_state=state)
