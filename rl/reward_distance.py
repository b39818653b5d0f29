"""Reward distances for tabular inverse RL: the Pearson distance and EPIC (Gleave, Dennis, Legg, Russell, Leike 2020,
"Quantifying differences in reward functions", arXiv 2006.13900).

EPIC compares rewards written as functions of transitions ``R(s, a, s')`` (dense arrays ``(S, A, S)`` here):

    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')],  S, S' ~ D_S, A ~ D_A

(D_S, D_A uniform by default), then ``EPIC(R1, R2) = pearson_distance(C(R1), C(R2))`` over a coverage distribution
of transitions, ``sqrt((1 - rho) / 2)`` in [0, 1]. It is exactly invariant to potential shaping
``R + gamma Phi(s') - Phi(s)`` and to positive scaling of either reward.

**Which representation, for soft-Q inverse RL.** A state-action reward is identified by a soft-optimal policy only
up to *expected* shaping ``gamma E[Phi(s') | s, a] - Phi(s)`` (what IQ-Learn's ``r = Q - gamma P V`` carries:
``Q + c(s)`` fits the same policy and gives ``r + c(s) - gamma E c(s')``). When ``P`` is stochastic (a marginal MDP
is stochastic through the other agent's policy) expected shaping is *not* a potential shaping of transitions, so
comparing state-action rewards ``R(s, a, s') = r(s, a)`` leaves a residual ``gamma (c(s') - E c(s'))`` that depends
on the arbitrary ``c``. The comparison used here (`soft_bellman_epic`) lifts both rewards to transitions through
their own soft values,

    R_learned(s, a, s') = Q(s, a) - gamma V(s'),     R_true(s, a, s') = Q*(s, a) - gamma V*(s')

with ``(Q*, V*)`` the soft optimum of the true marginal reward ``rbar`` in the same MDP. Both have conditional mean
over ``s'`` equal to their state-action reward (``r`` and ``rbar``); ``Q + c`` changes ``R_learned`` by the exact
potential shaping ``c(s) - gamma c(s')``, so at a perfect fit EPIC is 0 whatever ``c`` is. (Since
``Q - gamma V(s') = lam log pi(a|s) + V(s) - gamma V(s')``, this distance is that of ``lam log pi`` against
``lam log pi*`` as rewards: with the dynamics known, the policy is the reward modulo shaping, and this is the
identifiable part.) The residuals of the other choices (measured in `tests/test_mamql_tabular.py` on the 5 x 5 gems
export): against the true per-transition reward ``E[r_i | s, a_i, s']`` (in gems a function of ``s'`` only) even
the *true* soft lift is at a distance ``> 0``, because ``rbar(s,a) + gamma (E V*(s') - V*(s'))`` and
``E[r|s,a,s']`` differ by the zero-mean but non-shaping ``E g(s') - g(s')``, ``g = r + gamma V*``.

Measured on the 5 x 5 gems export (gamma 0.9, lam 1, QRE experts, uniform mu0, full coverage, agent 0): the exact
mode's soft-lift EPIC is 0.0012 (chi2 0.044, joint critic 0.0029); the true soft lift against ``E[r|s,a,s']``
(= the landing reward) is 0.60, and so is the learned one's; the state-action comparison of the learned ``r`` with
``rbar`` is 0.54 (the arbitrary ``c``), while ``rbar`` itself is 0.30 from the landing reward. So EPIC < 0.05 is
reachable only in the soft-lift representation, and there it is met.
"""

from __future__ import annotations

import numpy as np

from agentlab.errors import UsageError


def pearson_distance(x, y, weights=None) -> float:
    """``sqrt((1 - rho) / 2)`` with rho the (weighted) Pearson correlation of `x` and `y` (same shape); 0 when
    either is constant under the weights (EPIC's convention for a reward equivalent to zero is left to the caller)."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64).ravel()
    if x.shape != y.shape or x.shape != w.shape:
        raise UsageError(f"x, y and weights must have the same size, got {x.size}, {y.size}, {w.size}")
    if np.any(w < 0) or w.sum() <= 0:
        raise UsageError("weights must be non-negative with a positive total")
    w = w / w.sum()
    xc = x - w @ x
    yc = y - w @ y
    sx = np.sqrt(w @ (xc * xc))
    sy = np.sqrt(w @ (yc * yc))
    if sx == 0 or sy == 0:
        return 0.0 if (sx == 0 and sy == 0) else float(np.sqrt(0.5))
    rho = float(np.clip((w @ (xc * yc)) / (sx * sy), -1.0, 1.0))
    return float(np.sqrt((1.0 - rho) / 2.0))


def canonicalize(reward: np.ndarray, gamma: float, ds=None, da=None) -> np.ndarray:
    """EPIC's canonically shaped reward of a dense ``R (S, A, S)`` under ``D_S``, ``D_A`` (uniform by default)."""
    r = np.asarray(reward, np.float64)
    if r.ndim != 3 or r.shape[0] != r.shape[2]:
        raise UsageError(f"reward must be a dense (S, A, S) array, got shape {r.shape}")
    n, a, _ = r.shape
    ds = np.full(n, 1.0 / n) if ds is None else np.asarray(ds, np.float64)
    da = np.full(a, 1.0 / a) if da is None else np.asarray(da, np.float64)
    m1 = np.einsum("xat,a,t->x", r, da, ds)  # E_{A, S'} R(x, A, S')
    total = ds @ m1
    return r + gamma * m1[None, None, :] - m1[:, None, None] - gamma * total


def epic_distance(r1: np.ndarray, r2: np.ndarray, gamma: float, coverage=None, ds=None, da=None) -> float:
    """EPIC between dense rewards ``(S, A, S)``; ``coverage`` ``(S, A, S)`` weights of the transitions the Pearson
    distance is taken over (default: all transitions, uniformly)."""
    return pearson_distance(canonicalize(r1, gamma, ds, da), canonicalize(r2, gamma, ds, da), coverage)


def dense_transitions(succ: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """``P (S, A, S)`` of a successor structure (``succ``/``prob`` ``(S, A, K)``)."""
    n, a, k = succ.shape
    p = np.zeros((n, a, n))
    s_idx = np.repeat(np.arange(n), a * k)
    a_idx = np.tile(np.repeat(np.arange(a), k), n)
    np.add.at(p, (s_idx, a_idx, succ.ravel()), prob.ravel())
    return p


def soft_lift(q: np.ndarray, gamma: float, lam: float = 1.0) -> np.ndarray:
    """``R(s, a, s') = Q(s, a) - gamma V(s')`` with ``V = lam logsumexp(Q / lam)`` (dense ``(S, A, S)``)."""
    q = np.asarray(q, np.float64)
    m = q.max(axis=1)
    v = m + lam * np.log(np.exp((q - m[:, None]) / lam).sum(axis=1))
    return q[:, :, None] - gamma * v[None, None, :]


def state_action(r: np.ndarray) -> np.ndarray:
    """A state-action reward ``(S, A)`` as a transition reward ``(S, A, S)`` that ignores ``s'``."""
    r = np.asarray(r, np.float64)
    return np.broadcast_to(r[:, :, None], r.shape + (r.shape[0],)).copy()


def next_state_reward(f: np.ndarray, num_actions: int) -> np.ndarray:
    """A reward of the next state only, ``f (S,)``, as ``(S, A, S)``."""
    f = np.asarray(f, np.float64)
    return np.broadcast_to(f[None, None, :], (f.shape[0], num_actions, f.shape[0])).copy()


def full_coverage(succ: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Coverage weights ``(S, A, S)``: uniform over state-action pairs, ``s' ~ P(.|s, a)``."""
    p = dense_transitions(succ, prob)
    return p / p.sum()


def soft_bellman_epic(q_learned, q_true, succ, prob, gamma: float, lam: float = 1.0, coverage=None) -> float:
    """EPIC of the soft lifts ``Q - gamma V(s')`` of a learned and the true soft-Q (see the module docstring);
    coverage defaults to `full_coverage` of the model ``succ``/``prob``."""
    cov = full_coverage(succ, prob) if coverage is None else coverage
    return epic_distance(soft_lift(q_learned, gamma, lam), soft_lift(q_true, gamma, lam), gamma, cov)
