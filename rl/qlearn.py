"""Tabular Q-learning for repeated pricing games (Calvano, Calzolari, Denicolò, Pastorello 2020, AER 110(10)),
numba-compiled, many sessions in parallel; `agentlab.rl.qlearn_jax` is the JAX lockstep backend of the same learner.

The learner (the paper's baseline unless a `QLearnConfig` field says otherwise):

- n firms, m prices, memory 1: the state is last period's joint action, ``s = sum_i a_i m**(n-1-i)`` (m**n states);
- each firm has its own table ``Q_i[s, a_i]``, float64, initialised to the discounted payoff against uniformly random
  opponents, ``Q_i[s, a] = mean_{a_-i} pi_i(a, a_-i) / (1 - delta)`` in every state;
- in period t (from 0) every firm explores with probability ``eps_t = exp(-beta t)`` (a uniform price), else plays its
  greedy price ``argmax_a Q_i[s, a]`` (the first index on ties); then every firm updates
  ``Q_i[s, a_i] <- (1 - alpha) Q_i[s, a_i] + alpha (pi_i(a) + delta max_a' Q_i[s', a'])`` with ``s'`` the new state;
- convergence: no firm's greedy price changes in any state for `converge_periods` consecutive periods (paper:
  100,000); a session that has not converged after `max_periods` periods stops there (paper: 1e9) and is flagged.

Random draws are counter-based, so both backends draw the very same numbers: period t, firm i, session key
``(k0, k1)`` (uint32) gives ``word(k0, k1, t, 2i)`` (explore iff ``word / 2**32 < eps_t``) and
``word(k0, k1, t, 2i + 1)`` (the random price ``(word * m) >> 32``), where
``word(k0, k1, t, lane) = fmix32(k0 ^ fmix32(k1 + t * 0x9E3779B9 + lane * 0x632BE5AB))`` (mod 2**32, MurmurHash3's
finaliser). The first state comes from lanes ``2n + i`` at ``t = 2**32 - 1``. A session is therefore a pure function
of its key; numba and JAX agree period by period (tested), the only possible difference being a last-bit difference
of ``exp`` right at a draw's threshold.

A period (the contract's unit) is every firm acting once and learning once.
"""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np

from agentlab.errors import UsageError
from agentlab.hashing import GOLDEN, MASK32, fmix32_int, fmix32_np
from agentlab.limits import Bound

LANE_MIX = 0x632BE5AB
INIT_PERIOD = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class QLearnConfig:
    """Calvano's baseline learner; every field is a CLI flag of `agentlab train qlearn`."""

    firms: int = 2  # n
    prices: int = 15  # m, Calvano's grid size
    alpha: float = 0.15  # learning rate
    beta: float = 4e-6  # exploration decay, eps_t = exp(-beta t)
    delta: float = 0.95  # discount factor
    converge_periods: int = 100_000  # greedy strategies unchanged this long = converged
    max_periods: int = 1_000_000_000  # cap per session (the paper's); must stay below 2**32
    sessions: int = 100
    seed: int = 0

    def validate(self) -> QLearnConfig:
        """Every field through its `BOUNDS` declaration (one-line `UsageError`), then the Q tables' size."""
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name), f"--{name.replace('_', '-')}")
        if self.prices**self.firms * self.prices * self.firms > 50_000_000:
            raise UsageError(f"{self.firms} firms x {self.prices} prices need too large Q tables (m**n * m * n > 5e7)")
        return self


# One declaration per QLearnConfig field (`agentlab.limits`): the CLI, --config and Python callers check through them.
BOUNDS = {
    "firms": Bound("firms", int, low=2, high=16),
    "prices": Bound("prices", int, low=2, high=10_000),
    "alpha": Bound("alpha", float, low=0, low_open=True, high=1, unit="learning rate"),
    "beta": Bound("beta", float, low=0, high=1, unit="exploration decay per period"),
    "delta": Bound("delta", float, low=0, high=1, high_open=True, unit="discount factor"),
    "converge_periods": Bound("converge_periods", int, low=1, high=2**32 - 1, unit="periods"),
    "max_periods": Bound("max_periods", int, low=1, high=2**32 - 1, unit="periods"),
    "sessions": Bound("sessions", int, low=1, high=10**7),
    "seed": Bound("seed", int, low=0, high=2**31 - 1),
}


# -- counter-based draws (NumPy; the numba and JAX versions below are the same arithmetic) -------------------------


def word_np(k0, k1, t, lane) -> np.ndarray:
    """The uint32 draw of (session key, period, lane), as a uint64 array."""
    m = np.uint64(MASK32)
    inner = (np.asarray(k1, np.uint64) + np.asarray(t, np.uint64) * np.uint64(GOLDEN)) & m
    inner = (inner + np.asarray(lane, np.uint64) * np.uint64(LANE_MIX)) & m
    return fmix32_np(np.asarray(k0, np.uint64) ^ fmix32_np(inner))


def session_keys(seed: int, sessions: int, start: int = 0) -> np.ndarray:
    """uint32 ``(sessions, 2)``: the keys of sessions ``start, start + 1, ...`` of a run seeded `seed`."""
    index = np.arange(start, start + sessions, dtype=np.uint64)
    lo, hi = np.uint64(seed & MASK32), np.uint64((seed >> 32) & MASK32)
    k0 = fmix32_np(lo ^ fmix32_np(index * np.uint64(GOLDEN) + np.uint64(1)))
    k1 = fmix32_np(hi ^ fmix32_np(k0 + index + np.uint64(0x51ED270B)))
    return np.stack([k0, k1], axis=1).astype(np.uint32)


def initial_states(keys: np.ndarray, n: int, m: int) -> np.ndarray:
    """int64 ``(sessions,)``: each session's first state, uniform over the m**n joint actions."""
    keys = np.asarray(keys, np.uint64)
    state = np.zeros(keys.shape[0], np.int64)
    for i in range(n):
        w = word_np(keys[:, 0], keys[:, 1], INIT_PERIOD, 2 * n + i)
        state = state * m + ((w * np.uint64(m)) >> np.uint64(32)).astype(np.int64)
    return state


def initial_q(payoff: np.ndarray, n: int, m: int, delta: float) -> np.ndarray:
    """float64 ``(n, m**n, m)``: ``Q_i[s, a] = mean over the others' prices of pi_i(a, a_-i) / (1 - delta)``."""
    table = payoff.reshape((m,) * n + (n,))
    q = np.empty((n, m**n, m))
    for i in range(n):
        others = tuple(j for j in range(n) if j != i)
        q[i] = (table[..., i].mean(axis=others) / (1.0 - delta))[None, :]
    return q


# -- the numba learner ----------------------------------------------------------------------------------------------


_fmix32 = numba.njit(cache=False, inline="always")(fmix32_int)


@numba.njit(cache=False, inline="always")
def _word(k0, k1, t, lane):
    # int64 arithmetic on 32-bit values: products wrap modulo 2**64 and the mask keeps the low 32 bits.
    inner = (k1 + t * GOLDEN + lane * LANE_MIX) & MASK32
    return _fmix32(k0 ^ _fmix32(inner))


@numba.njit(cache=False)
def run_session(payoff, q, greedy, n, m, alpha, beta, delta, converge, max_periods, k0, k1, state):
    """One session in place on ``q`` (float64 ``(n, m**n, m)``) and ``greedy`` (int64 ``(n, m**n)``, the first
    argmax of each row, kept current). Returns ``(periods, converged, final_state)``."""
    actions = np.zeros(n, np.int64)
    stable_for = 0
    for t in range(max_periods):
        eps = math.exp(-beta * t)
        nxt = 0
        for i in range(n):
            if _word(k0, k1, t, 2 * i) * 2.3283064365386963e-10 < eps:
                a = (_word(k0, k1, t, 2 * i + 1) * m) >> 32
            else:
                a = greedy[i, state]
            actions[i] = a
            nxt = nxt * m + a
        stable = True
        for i in range(n):
            a = actions[i]
            target = payoff[nxt, i] + delta * q[i, nxt, greedy[i, nxt]]
            old = q[i, state, a]
            new = (1.0 - alpha) * old + alpha * target
            q[i, state, a] = new
            g = greedy[i, state]
            if a == g:
                if new < old:
                    best = 0
                    for j in range(1, m):
                        if q[i, state, j] > q[i, state, best]:
                            best = j
                    if best != g:
                        greedy[i, state] = best
                        stable = False
            elif new > q[i, state, g] or (new == q[i, state, g] and a < g):
                greedy[i, state] = a
                stable = False
        state = nxt
        stable_for = stable_for + 1 if stable else 0
        if stable_for >= converge:
            return t + 1, True, state
    return max_periods, False, state


@numba.njit(cache=False, parallel=True)
def run_sessions(payoff, q0, n, m, alpha, beta, delta, converge, max_periods, keys, states):
    """Sessions in parallel (numba `prange`, one session per task). ``keys`` int64 ``(S, 2)``, ``states`` int64
    ``(S,)``. Returns ``(q (S, n, m**n, m), greedy (S, n, m**n), periods (S,), converged (S,), final_state (S,))``."""
    sessions = keys.shape[0]
    q = np.empty((sessions,) + q0.shape)
    greedy = np.empty((sessions, n, q0.shape[1]), np.int64)
    periods = np.zeros(sessions, np.int64)
    converged = np.zeros(sessions, np.bool_)
    final = np.zeros(sessions, np.int64)
    for k in numba.prange(sessions):
        q[k] = q0
        for i in range(n):
            for s in range(q0.shape[1]):
                greedy[k, i, s] = np.argmax(q0[i, s])
        periods[k], converged[k], final[k] = run_session(
            payoff, q[k], greedy[k], n, m, alpha, beta, delta, converge, max_periods, keys[k, 0], keys[k, 1], states[k]
        )
    return q, greedy, periods, converged, final


@dataclasses.dataclass(frozen=True)
class SessionsResult:
    """What a batch of sessions ends with (NumPy arrays; S sessions)."""

    q: np.ndarray  # float64 (S, n, m**n, m)
    greedy: np.ndarray  # int64 (S, n, m**n)
    periods: np.ndarray  # int64 (S,) periods run (to convergence, or the cap)
    converged: np.ndarray  # bool (S,)
    final_state: np.ndarray  # int64 (S,)


def train_numba(config: QLearnConfig, payoff: np.ndarray, keys: np.ndarray) -> SessionsResult:
    """Run the sessions of `keys` (uint32 ``(S, 2)``) with the numba learner on the stage game `payoff`
    (float64 ``(m**n, n)``, `agentlab.kernels.markets.calvano.payoff_table`'s layout)."""
    n, m = config.firms, config.prices
    q0 = initial_q(payoff, n, m, config.delta)
    states = initial_states(keys, n, m)
    out = run_sessions(
        np.ascontiguousarray(payoff, np.float64),
        q0,
        n,
        m,
        float(config.alpha),
        float(config.beta),
        float(config.delta),
        int(config.converge_periods),
        int(config.max_periods),
        np.asarray(keys, np.int64),
        states,
    )
    return SessionsResult(*out)


# -- after convergence: cycle, profit gain, impulse response -------------------------------------------------------


def greedy_next(greedy: np.ndarray, state: int, m: int) -> int:
    """The state after `state` when every firm plays its greedy price (``greedy`` ``(n, m**n)``)."""
    nxt = 0
    for i in range(greedy.shape[0]):
        nxt = nxt * m + int(greedy[i, state])
    return nxt


def limit_cycle(greedy: np.ndarray, start: int, m: int) -> list[int]:
    """The states of the cycle the greedy strategies reach from `start` (in order of play)."""
    seen: dict[int, int] = {}
    path = []
    state = start
    while state not in seen:
        seen[state] = len(path)
        path.append(state)
        state = greedy_next(greedy, state, m)
    return path[seen[state] :]


def profit_gain(profit: np.ndarray, nash_profit: float, monopoly_profit: float) -> np.ndarray:
    """Calvano's collusion index ``Delta = (pi - pi_N) / (pi_M - pi_N)``: 0 competitive, 1 monopoly."""
    return (np.asarray(profit) - nash_profit) / (monopoly_profit - nash_profit)


def impulse_response(greedy: np.ndarray, start: int, m: int, payoff: np.ndarray, deviator: int = 0, after: int = 15):
    """Price indices ``(after + 2, n)`` around a one-period deviation, learning frozen.

    Row 0: the greedy play at `start` (pre-deviation); row 1: `deviator` plays its static best response to the others'
    greedy prices at `start` (the one-period most profitable deviation), the others their greedy prices; rows 2..:
    every firm greedy again for `after` periods."""
    n = greedy.shape[0]
    table = payoff.reshape((m,) * n + (n,))
    rows = [greedy[:, start].copy()]
    dev = greedy[:, start].copy()
    index = [int(a) for a in dev]
    index[deviator] = slice(None)
    dev[deviator] = int(np.argmax(table[tuple(index)][:, deviator]))
    rows.append(dev)
    state = 0
    for a in dev:
        state = state * m + int(a)
    for _ in range(after):
        play = greedy[:, state].copy()
        rows.append(play)
        state = 0
        for a in play:
            state = state * m + int(a)
    return np.stack(rows).astype(np.int64)


def analyse_session(greedy: np.ndarray, final_state: int, m: int, payoff: np.ndarray, bench: dict) -> dict:
    """Converged play of one session: the price cycle (indices), mean profit per firm over it, Delta (the mean over
    firms of each firm's profit gain) and the impulse response (firm 0 deviates at the cycle's first state)."""
    n = greedy.shape[0]
    cycle = limit_cycle(greedy, final_state, m)
    played = np.array([[greedy[i, s] for i in range(n)] for s in cycle], np.int64)  # (len, n) prices played
    next_states = [greedy_next(greedy, s, m) for s in cycle]
    profit = payoff[next_states].mean(axis=0)  # (n,) profit of the prices played from each cycle state
    gain = profit_gain(profit, bench["nash_profit"], bench["monopoly_profit"])
    return {
        "cycle_actions": played,
        "cycle_length": len(cycle),
        "profit": profit,
        "delta": float(gain.mean()),
        "impulse": impulse_response(greedy, cycle[0], m, payoff),
    }
