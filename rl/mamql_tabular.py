"""Tabular multi-agent inverse soft-Q learning (MAMQL, Haynam et al. 2025, arXiv 2503.04679) on an exported
two-agent game (`agentlab.kernels.multi.gems_tabular`): expert generation, occupancy measures, the marginal critic
learner with a JAX twin, and two baselines (joint-critic IQ-Learn, behaviour cloning).

Inputs are a joint game ``next_state[s, a0, a1]`` (int32, deterministic) and ``reward[i, s, a0, a1]`` (float64);
``S`` states, ``A`` actions per agent. Temperature ``lam`` (lambda), discount ``gamma``.

**Marginal MDP of agent i** given the other's policy ``pi_-i``: ``P_i(s'|s, a_i) = sum_{a_-i} pi_-i(a_-i|s)
[next_state(s, a_i, a_-i) = s']`` and ``rbar_i(s, a_i) = E_{a_-i ~ pi_-i(.|s)} r_i(s, a_i, a_-i)``. Every
transition model here is a *successor structure*: ``succ (S, A, K)`` int32 and ``prob (S, A, K)`` float64 with
``P(s'|s,a) = sum_k prob[s,a,k] [succ[s,a,k] = s']`` (for the exact marginal MDP, ``K = A`` and slot ``k`` is the
other agent's action; rows of unvisited pairs in an empirical model are all zero: no future).

**Soft best response** (`soft_best_response`): soft value iteration ``Q = rbar + gamma P V``,
``V(s) = lam logsumexp_a Q(s, a)/lam``, until ``max |V_new - V| <= vi_tol``; policy ``softmax(Q/lam)``.

**Experts: logit quantal-response equilibrium** (`quantal_response_equilibrium`): from uniform policies, damped
simultaneous (Jacobi) iteration in *policy space*, ``pi_i <- (1 - eta) pi_i + eta BR_i(pi_-i)`` for both agents at
once (soft-VI warm-started from the previous values), until the residual ``max_{i,s,a} |pi_i - BR_i(pi_-i)|`` is at
most `tol`. Gems is general-sum and coordination-shaped, so it can have several logit equilibria: the one returned
is the one this iteration reaches from uniform policies (deterministic, not a selection criterion).

**Occupancy** (`occupancy`): ``d(s) = (1 - gamma) sum_t gamma^t Pr(s_t = s)`` from the initial distribution
``mu0`` (uniform over all states unless given; so every state is visited: full coverage), by fixed-point iteration of
``d = (1 - gamma) mu0 + gamma P_pi^T d``; joint ``rho(s, a0, a1) = d(s) pi_0(a0|s) pi_1(a1|s)``, marginal
``rho_i(s, a_i) = d(s) pi_i(a_i|s)``.

**The learner** (`iq_learn`, numba; its JAX twin `iq_learn_jax`),
the IQ-Learn objective (Garg et al. 2021) on weights instead of samples, *maximised*:

    J(Q) = sum_{s,a} rho(s,a) phi(Q(s,a) - gamma (P V)(s,a)) - sum_s init(s) V(s) + gamma sum_{s,a} u(s,a) (P V)(s,a)

with ``V = lam logsumexp(Q/lam)`` and either ``init = (1 - gamma) mu0, u = 0`` (the initial-state form, used with
exact occupancies) or ``init = rho_S, u = rho`` (the telescoped "value difference" form of offline IQ-Learn,
``(1-gamma) E_mu0 V = E_rho[V(s) - gamma V(s')]``, used for datasets whose mu0 is unknown). Modes: **exact**
``phi(x) = x`` (by telescoping J is ``lam`` times the expert's log-likelihood of ``softmax(Q/lam)``, so the optimum is
``pi_E``), **chi2** ``phi(x) = x - x^2/(4 alpha)``, alpha = 1 (the paper's). For MAMQL the critic of agent i is
``Qbar_i(s, a_i)`` on the marginal MDP with the other's (expert / behaviour-cloned) policy; the recovered reward is
``r_i(s, a_i) = Qbar_i(s, a_i) - gamma E_{s' ~ P_i} Vbar_i(s')``.

Solver: full-batch Adam ascent on J (``beta1 = 0.9, beta2 = 0.999, eps = 1e-12``: J's gradients are of the size of
``rho(s, a)``, about ``1/(S A)``, hence the small eps) from ``Q = 0``, step ``lr`` cosine-annealed to
``lr * lr_final`` over `steps`; the gradient is hand-written (numba) and ``jax.grad`` of the same J in the JAX twin
(same schedule, same update arithmetic): Q agrees to ~1e-12 over hundreds of steps (tested to 1e-6 at 300). Exact
mode is flat along ``Q(s, .) + c(s)``, and over thousands of steps rounding moves the two along it differently (5 x 5
gems, 5000 steps: Q apart by ~2e-3, policies by ~2e-9). Measured on the 5 x 5 export (gamma 0.9, lam 1, defaults
5000 steps, lr 1): about 1 s per agent on one core; policy KL ~3e-10 in exact mode (chi2: ~9e-3).

**Joint-critic IQ-Learn baseline** (`joint_critic`): a critic ``Q(s, a0, a1)`` over the A**2 joint actions trained
with the same J on the joint occupancy (deterministic transitions). The objective does not involve either agent's
reward, so both agents' joint critics are the same function; agent i acts by ``softmax(sum_{a_-i} pi_BC,-i(a_-i|s)
Q(s, a_i, a_-i) / lam)``. **Behaviour cloning** (`behaviour_cloning`): ``rho_i(s, a) / sum_a rho_i(s, a)``
(uniform where a state has no weight).

**Empirical input** (`from_transitions`): rows ``(s, a0, a1, s')`` (counts, e.g. a ``data.parquet``'s columns).
Plug-in estimator: ``rho_hat(s, a)`` = the rows' empirical frequency of ``(s, a_i)`` (or the joint action), the
transition model the empirical conditional ``P_hat(s'|s, a_i) = n(s, a_i, s') / n(s, a_i)`` (which carries the other
agent's empirical behaviour), the behaviour-cloned policies from the same counts, and the telescoped form of J
(mu0 given: the initial-state form). Rows are treated as draws from the discounted occupancy (as IQ-Learn does).
"""

from __future__ import annotations

import dataclasses
import math

import numba
import numpy as np

from agentlab.errors import UsageError
from agentlab.rl import names

MODES = names.MAMQL_MODES

# -- soft value iteration, best response, equilibrium ----------------------------------------------------------------


@numba.njit(cache=True)
def _soft_values(q, lam):
    n, a = q.shape
    v = np.empty(n)
    for s in range(n):
        m = q[s, 0]
        for j in range(1, a):
            if q[s, j] > m:
                m = q[s, j]
        tot = 0.0
        for j in range(a):
            tot += math.exp((q[s, j] - m) / lam)
        v[s] = m + lam * math.log(tot)
    return v


@numba.njit(cache=True)
def _softmax(q, v, lam):
    n, a = q.shape
    pi = np.empty((n, a))
    for s in range(n):
        for j in range(a):
            pi[s, j] = math.exp((q[s, j] - v[s]) / lam)
    return pi


@numba.njit(cache=True)
def _expect(v, succ, prob):
    """(P V)(s, a) of a successor structure."""
    n, a, k = succ.shape
    out = np.zeros((n, a))
    for s in range(n):
        for j in range(a):
            tot = 0.0
            for m in range(k):
                tot += prob[s, j, m] * v[succ[s, j, m]]
            out[s, j] = tot
    return out


@numba.njit(cache=True)
def _soft_vi(r, succ, prob, gamma, lam, v, tol, max_iter):
    q = r.copy()
    iters = 0
    for it in range(max_iter):
        iters = it + 1
        ev = _expect(v, succ, prob)
        for s in range(r.shape[0]):
            for j in range(r.shape[1]):
                q[s, j] = r[s, j] + gamma * ev[s, j]
        v_new = _soft_values(q, lam)
        diff = np.max(np.abs(v_new - v))
        v = v_new
        if diff <= tol:
            break
    ev = _expect(v, succ, prob)
    for s in range(r.shape[0]):
        for j in range(r.shape[1]):
            q[s, j] = r[s, j] + gamma * ev[s, j]
    return q, _soft_values(q, lam), iters


@numba.njit(cache=True)
def _marginal(next_state, reward_i, pi_other, agent):
    n, a, _ = next_state.shape
    succ = np.empty((n, a, a), np.int32)
    prob = np.empty((n, a, a))
    rbar = np.zeros((n, a))
    for s in range(n):
        for ai in range(a):
            for k in range(a):
                if agent == 0:
                    succ[s, ai, k] = next_state[s, ai, k]
                    r = reward_i[s, ai, k]
                else:
                    succ[s, ai, k] = next_state[s, k, ai]
                    r = reward_i[s, k, ai]
                prob[s, ai, k] = pi_other[s, k]
                rbar[s, ai] += pi_other[s, k] * r
    return succ, prob, rbar


def marginal_mdp(next_state: np.ndarray, reward: np.ndarray, pi_other: np.ndarray, agent: int):
    """Agent `agent`'s marginal MDP against ``pi_other`` (S, A): ``(succ (S, A, A) int32, prob (S, A, A),
    rbar (S, A))``; slot k of ``succ``/``prob`` is the other agent's action k."""
    if agent not in (0, 1):
        raise UsageError(f"agent must be 0 or 1, got {agent!r}")
    return _marginal(
        np.ascontiguousarray(next_state, np.int32),
        np.ascontiguousarray(reward[agent], np.float64),
        np.ascontiguousarray(pi_other, np.float64),
        agent,
    )


def soft_best_response(rbar, succ, prob, gamma: float, lam: float = 1.0, tol: float = 1e-12, max_iter: int = 100_000):
    """Soft value iteration on one MDP: ``(Q (S, A), V (S,), policy (S, A), iterations)``."""
    q, v, iters = _soft_vi(
        np.ascontiguousarray(rbar, np.float64),
        succ,
        prob,
        float(gamma),
        float(lam),
        np.zeros(rbar.shape[0]),
        tol,
        max_iter,
    )
    return q, v, _softmax(q, v, float(lam)), iters


@numba.njit(cache=True)
def _qre(next_state, reward, gamma, lam, eta, tol, max_iter, vi_tol, vi_max):
    n, a, _ = next_state.shape
    pi = np.full((2, n, a), 1.0 / a)
    v = np.zeros((2, n))
    q = np.zeros((2, n, a))
    rbar = np.zeros((2, n, a))
    br = np.zeros((2, n, a))
    residual = np.inf
    iters = 0
    for it in range(max_iter + 1):
        for i in range(2):
            succ, prob, rb = _marginal(next_state, reward[i], pi[1 - i], i)
            qi, vi, _ = _soft_vi(rb, succ, prob, gamma, lam, v[i], vi_tol, vi_max)
            q[i] = qi
            v[i] = vi
            rbar[i] = rb
            br[i] = _softmax(qi, vi, lam)
        residual = np.max(np.abs(pi - br))
        iters = it
        if residual <= tol or it == max_iter:
            break
        pi = (1.0 - eta) * pi + eta * br
    return pi, rbar, q, v, residual, iters


@dataclasses.dataclass(frozen=True)
class Equilibrium:
    """A logit QRE reached from uniform policies. Arrays are per agent: ``policy``, ``rbar`` and ``q`` ``(2, S, A)``
    (the soft best response to the other's `policy`), ``v`` ``(2, S)``."""

    policy: np.ndarray
    rbar: np.ndarray
    q: np.ndarray
    v: np.ndarray
    residual: float  # max |pi - BR(pi)| at the returned policies
    iterations: int
    gamma: float
    lam: float


def quantal_response_equilibrium(
    next_state: np.ndarray,
    reward: np.ndarray,
    gamma: float = 0.9,
    lam: float = 1.0,
    damping: float = 0.5,
    tol: float = 1e-10,
    max_iter: int = 5000,
    vi_tol: float = 1e-13,
) -> Equilibrium:
    """Damped soft-best-response iteration from uniform policies (see the module docstring)."""
    if not 0.0 < gamma < 1.0:
        raise UsageError(f"gamma must be in (0, 1), got {gamma!r}")
    if not lam > 0.0:
        raise UsageError(f"lam must be > 0, got {lam!r}")
    if not 0.0 < damping <= 1.0:
        raise UsageError(f"damping must be in (0, 1], got {damping!r}")
    pi, rbar, q, v, res, iters = _qre(
        np.ascontiguousarray(next_state, np.int32),
        np.ascontiguousarray(reward, np.float64),
        float(gamma),
        float(lam),
        float(damping),
        float(tol),
        int(max_iter),
        float(vi_tol),
        100_000,
    )
    return Equilibrium(pi, rbar, q, v, float(res), int(iters), float(gamma), float(lam))


# -- occupancy measures ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _occupancy(next_state, pi0, pi1, mu0, gamma, tol, max_iter):
    n, a, _ = next_state.shape
    d = mu0.copy()
    for _ in range(max_iter):
        new = (1.0 - gamma) * mu0
        for s in range(n):
            for a0 in range(a):
                w0 = gamma * d[s] * pi0[s, a0]
                for a1 in range(a):
                    new[next_state[s, a0, a1]] += w0 * pi1[s, a1]
        diff = np.max(np.abs(new - d))
        d = new
        if diff <= tol:
            break
    return d


@dataclasses.dataclass(frozen=True)
class Occupancy:
    """Discounted occupancies of a joint policy: ``state (S,)``, ``joint (S, A, A)``, ``marginal (2, S, A)``."""

    state: np.ndarray
    joint: np.ndarray
    marginal: np.ndarray
    mu0: np.ndarray


def occupancy(next_state: np.ndarray, policy: np.ndarray, gamma: float, mu0: np.ndarray | None = None) -> Occupancy:
    """Occupancy of the product policy ``policy`` (2, S, A) from ``mu0`` (default uniform over states)."""
    n = next_state.shape[0]
    mu0 = np.full(n, 1.0 / n) if mu0 is None else np.asarray(mu0, np.float64)
    if mu0.shape != (n,) or np.any(mu0 < 0) or not np.isclose(mu0.sum(), 1.0):
        raise UsageError(f"mu0 must be a probability vector of length {n}")
    d = _occupancy(np.ascontiguousarray(next_state, np.int32), policy[0], policy[1], mu0, float(gamma), 1e-15, 100_000)
    joint = d[:, None, None] * policy[0][:, :, None] * policy[1][:, None, :]
    return Occupancy(d, joint, d[None, :, None] * policy, mu0)


# -- the IQ-Learn objective and its solver --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IQProblem:
    """One critic's data: expert weights ``rho (S, A)`` (sum 1), the transition model ``succ``/``prob``
    ``(S, A, K)``, and the initial-term weights ``init (S,)`` and ``u (S, A)`` (module docstring)."""

    rho: np.ndarray
    succ: np.ndarray
    prob: np.ndarray
    init: np.ndarray
    u: np.ndarray
    gamma: float
    lam: float = 1.0


def _initial_terms(rho, mu0, gamma):
    if mu0 is None:  # telescoped form
        return rho.sum(axis=1), rho.copy()
    return (1.0 - gamma) * np.asarray(mu0, np.float64), np.zeros_like(rho)


def make_problem(rho, succ, prob, gamma: float, lam: float = 1.0, mu0=None) -> IQProblem:
    """An `IQProblem` with the initial-state form (``mu0`` given) or the telescoped form (``mu0=None``)."""
    rho = np.ascontiguousarray(rho, np.float64)
    init, u = _initial_terms(rho, mu0, gamma)
    return IQProblem(
        rho, np.ascontiguousarray(succ, np.int32), np.ascontiguousarray(prob, np.float64), init, u, float(gamma), lam
    )


@numba.njit(cache=True)
def _objective_grad(q, rho, succ, prob, init, u, gamma, lam, alpha):
    """J(Q) and dJ/dQ; alpha <= 0 means phi(x) = x, else phi(x) = x - x^2/(4 alpha)."""
    n, a, k = succ.shape
    v = _soft_values(q, lam)
    pi = _softmax(q, v, lam)
    ev = _expect(v, succ, prob)
    grad = np.zeros((n, a))
    gv = np.zeros(n)  # dJ/dV
    j_val = 0.0
    for s in range(n):
        j_val -= init[s] * v[s]
        gv[s] -= init[s]
        for b in range(a):
            y = q[s, b] - gamma * ev[s, b]
            if alpha > 0.0:
                phi = y - y * y / (4.0 * alpha)
                dphi = 1.0 - y / (2.0 * alpha)
            else:
                phi = y
                dphi = 1.0
            j_val += rho[s, b] * phi + gamma * u[s, b] * ev[s, b]
            g = rho[s, b] * dphi
            grad[s, b] = g
            c = gamma * (u[s, b] - g)  # coefficient of (P V)(s, b)
            for m in range(k):
                gv[succ[s, b, m]] += c * prob[s, b, m]
    for s in range(n):
        for b in range(a):
            grad[s, b] += pi[s, b] * gv[s]
    return j_val, grad


@numba.njit(cache=True)
def _adam(rho, succ, prob, init, u, gamma, lam, alpha, steps, lr, lr_final, q0):
    q = q0.copy()
    m = np.zeros_like(q)
    vv = np.zeros_like(q)
    b1, b2, eps = 0.9, 0.999, 1e-12
    j_val = 0.0
    for t in range(steps):
        j_val, g = _objective_grad(q, rho, succ, prob, init, u, gamma, lam, alpha)
        m = b1 * m + (1.0 - b1) * g
        vv = b2 * vv + (1.0 - b2) * g * g
        mhat = m / (1.0 - b1 ** (t + 1))
        vhat = vv / (1.0 - b2 ** (t + 1))
        rate = lr * (lr_final + (1.0 - lr_final) * 0.5 * (1.0 + math.cos(math.pi * t / steps)))
        q = q + rate * mhat / (np.sqrt(vhat) + eps)
    j_val, _ = _objective_grad(q, rho, succ, prob, init, u, gamma, lam, alpha)
    return q, j_val


@dataclasses.dataclass(frozen=True)
class IQResult:
    """A learned critic: ``q (S, A)``, ``v (S,)``, ``policy (S, A)`` = softmax(q/lam), ``reward (S, A)`` =
    ``q - gamma P v`` (under the problem's transition model) and the final objective J."""

    q: np.ndarray
    v: np.ndarray
    policy: np.ndarray
    reward: np.ndarray
    objective: float


def _alpha(mode: str) -> float:
    if mode not in MODES:
        raise UsageError(f"mode must be one of {MODES}, got {mode!r}")
    return 0.0 if mode == "exact" else 1.0


def recovered_reward(q: np.ndarray, succ: np.ndarray, prob: np.ndarray, gamma: float, lam: float = 1.0) -> np.ndarray:
    """``(S, A)``: the inverse soft Bellman operator ``r(s, a) = Q(s, a) - gamma E_{s' ~ P(.|s, a)} V(s')``,
    ``V = lam logsumexp(Q / lam)``, on the successor structure ``succ``/``prob``."""
    q = np.ascontiguousarray(q, np.float64)
    return q - gamma * _expect(_soft_values(q, float(lam)), succ, prob)


def _finish(problem: IQProblem, q: np.ndarray, j_val: float) -> IQResult:
    v = _soft_values(q, float(problem.lam))
    reward = recovered_reward(q, problem.succ, problem.prob, problem.gamma, problem.lam)
    return IQResult(q, v, _softmax(q, v, float(problem.lam)), reward, float(j_val))


def objective(problem: IQProblem, q: np.ndarray, mode: str = "exact") -> tuple[float, np.ndarray]:
    """``(J(Q), dJ/dQ)`` (numba, hand-written gradient)."""
    p = problem
    return _objective_grad(
        np.ascontiguousarray(q, np.float64), p.rho, p.succ, p.prob, p.init, p.u, p.gamma, float(p.lam), _alpha(mode)
    )


def iq_learn(
    problem: IQProblem, mode: str = "exact", steps: int = 5000, lr: float = 1.0, lr_final: float = 1e-3
) -> IQResult:
    """Maximise J by full-batch Adam from Q = 0 (numba)."""
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps!r}")
    p = problem
    q, j_val = _adam(
        p.rho,
        p.succ,
        p.prob,
        p.init,
        p.u,
        p.gamma,
        float(p.lam),
        _alpha(mode),
        int(steps),
        float(lr),
        float(lr_final),
        np.zeros_like(p.rho),
    )
    return _finish(p, q, j_val)


def iq_learn_jax(
    problem: IQProblem, mode: str = "exact", steps: int = 5000, lr: float = 1.0, lr_final: float = 1e-3
) -> IQResult:
    """The JAX twin of `iq_learn`: ``jax.grad`` of the same J, the same Adam and schedule (float64, one jitted
    ``lax.fori_loop``)."""
    import jax
    import jax.numpy as jnp

    p = problem
    alpha = _alpha(mode)
    with jax.enable_x64(True):
        rho, succ, prob = jnp.asarray(p.rho), jnp.asarray(p.succ), jnp.asarray(p.prob)
        init, u = jnp.asarray(p.init), jnp.asarray(p.u)
        gamma, lam = p.gamma, float(p.lam)

        def j_fn(q):
            v = lam * jax.nn.logsumexp(q / lam, axis=1)
            ev = jnp.sum(prob * v[succ], axis=2)
            y = q - gamma * ev
            phi = y - y * y / (4.0 * alpha) if alpha > 0 else y
            return jnp.sum(rho * phi) - jnp.sum(init * v) + gamma * jnp.sum(u * ev)

        grad = jax.grad(j_fn)

        def body(t, carry):
            q, m, vv = carry
            g = grad(q)
            m = 0.9 * m + 0.1 * g
            vv = 0.999 * vv + 0.001 * g * g
            tf = t.astype(jnp.float64)
            mhat = m / (1.0 - 0.9 ** (tf + 1))
            vhat = vv / (1.0 - 0.999 ** (tf + 1))
            rate = lr * (lr_final + (1.0 - lr_final) * 0.5 * (1.0 + jnp.cos(jnp.pi * tf / steps)))
            return q + rate * mhat / (jnp.sqrt(vhat) + 1e-12), m, vv

        @jax.jit
        def run(q0):
            q, _, _ = jax.lax.fori_loop(0, steps, body, (q0, jnp.zeros_like(q0), jnp.zeros_like(q0)))
            return q, j_fn(q)

        q, j_val = run(jnp.zeros_like(rho))
        q = np.asarray(q)
        j_val = float(j_val)
    return _finish(p, q, j_val)


# -- MAMQL, the baselines, and their inputs -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExpertData:
    """What the learners see, exact or empirical: joint weights ``joint (S, A, A)`` (sum 1), the per-agent marginal
    critics' problems (`problems`, one `IQProblem` per agent), the joint critic's problem (`joint_problem`,
    ``A*A`` actions, index ``a0 * A + a1``) and the behaviour-cloned policies ``bc (2, S, A)``."""

    joint: np.ndarray
    problems: tuple[IQProblem, IQProblem]
    joint_problem: IQProblem
    bc: np.ndarray


def behaviour_cloning(marginal: np.ndarray) -> np.ndarray:
    """``(2, S, A)`` conditional action frequencies of marginal weights ``(2, S, A)`` (uniform where a state has no
    weight)."""
    tot = marginal.sum(axis=2, keepdims=True)
    a = marginal.shape[2]
    return np.where(tot > 0, marginal / np.where(tot > 0, tot, 1.0), 1.0 / a)


def from_occupancy(
    next_state: np.ndarray, policy: np.ndarray, occ: Occupancy, gamma: float, lam: float = 1.0
) -> ExpertData:
    """Exact data: occupancies of the expert joint policy, the marginal MDPs under the expert's own other-agent
    policy, and the initial-state form of J with ``occ.mu0``."""
    n, a, _ = next_state.shape
    probs = []
    for i in range(2):
        succ, prob, _ = marginal_mdp(next_state, np.zeros((2,) + next_state.shape), policy[1 - i], i)
        probs.append(make_problem(occ.marginal[i], succ, prob, gamma, lam, occ.mu0))
    joint_problem = make_problem(
        occ.joint.reshape(n, a * a), next_state.reshape(n, a * a, 1), np.ones((n, a * a, 1)), gamma, lam, occ.mu0
    )
    return ExpertData(occ.joint, (probs[0], probs[1]), joint_problem, behaviour_cloning(occ.marginal))


def _grouped(state, action, nxt, count, n, a):
    """rho (n, a) and a successor structure from weighted rows (s, action, s')."""
    key = (state.astype(np.int64) * a + action) * n + nxt
    uniq, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=count)
    sa = uniq // n
    sp = uniq % n
    rho_flat = np.bincount(sa, weights=w, minlength=n * a)
    # slot of each distinct (s, a, s') within its (s, a) group (uniq is sorted by sa)
    starts = np.searchsorted(sa, sa, side="left")
    slot = np.arange(len(uniq)) - starts
    k = int(slot.max()) + 1 if len(uniq) else 1
    succ = np.zeros((n * a, k), np.int32)
    prob = np.zeros((n * a, k))
    succ[sa, slot] = sp
    prob[sa, slot] = w / rho_flat[sa]
    total = rho_flat.sum()
    return (rho_flat / total).reshape(n, a), succ.reshape(n, a, k), prob.reshape(n, a, k)


def from_transitions(
    state, action0, action1, next_state, num_states: int, num_actions: int = 5, gamma: float = 0.9,
    lam: float = 1.0, counts=None, mu0=None,
) -> ExpertData:  # fmt: skip
    """Empirical data from rows ``(s, a0, a1, s')`` (optionally weighted by ``counts``); see the module docstring for
    the plug-in estimator. ``mu0=None`` uses the telescoped form of J."""
    s = np.asarray(state, np.int64)
    a0 = np.asarray(action0, np.int64)
    a1 = np.asarray(action1, np.int64)
    sp = np.asarray(next_state, np.int64)
    w = np.ones(len(s)) if counts is None else np.asarray(counts, np.float64)
    n, a = int(num_states), int(num_actions)
    if not (len(s) == len(a0) == len(a1) == len(sp) == len(w)) or len(s) == 0:
        raise UsageError("state, action0, action1, next_state (and counts) must be non-empty and of equal length")
    for name, arr, hi in (("state", s, n), ("next_state", sp, n), ("action0", a0, a), ("action1", a1, a)):
        if arr.min() < 0 or arr.max() >= hi:
            raise UsageError(f"{name} must lie in [0, {hi}), got values in [{arr.min()}, {arr.max()}]")
    if np.any(w < 0) or w.sum() <= 0:
        raise UsageError("counts must be non-negative with a positive total")
    joint = np.bincount((s * a + a0) * a + a1, weights=w, minlength=n * a * a).reshape(n, a, a)
    joint /= joint.sum()
    probs = []
    for act in (a0, a1):
        rho, succ, prob = _grouped(s, act, sp, w, n, a)
        probs.append(make_problem(rho, succ, prob, gamma, lam, mu0))
    rho, succ, prob = _grouped(s, a0 * a + a1, sp, w, n, a * a)
    joint_problem = make_problem(rho, succ, prob, gamma, lam, mu0)
    marginal = np.stack([joint.sum(axis=2), joint.sum(axis=1)])
    return ExpertData(joint, (probs[0], probs[1]), joint_problem, behaviour_cloning(marginal))


def mamql(
    data: ExpertData, mode: str = "exact", steps: int = 5000, lr: float = 1.0, lr_final: float = 1e-3, backend="numba"
):
    """Both agents' marginal critics: a tuple of two `IQResult` (``reward`` is the recovered ``r_i(s, a_i)``)."""
    fn = {"numba": iq_learn, "jax": iq_learn_jax}.get(backend)
    if fn is None:
        raise UsageError(f"backend must be 'numba' or 'jax', got {backend!r}")
    return tuple(fn(p, mode, steps, lr, lr_final) for p in data.problems)


@dataclasses.dataclass(frozen=True)
class JointCriticResult:
    """The joint-critic baseline: the joint critic (`critic`, over ``A*A`` joint actions) and per agent the acting
    critic ``qbar (2, S, A)`` (marginalised over the other's behaviour-cloned policy), its ``policy (2, S, A)`` and
    marginal reward ``reward (2, S, A)`` = ``sum_{a_-i} pi_BC,-i(a_-i|s) r(s, a_i, a_-i)`` with
    ``r = critic.reward`` the joint recovered reward."""

    critic: IQResult
    qbar: np.ndarray
    policy: np.ndarray
    reward: np.ndarray


def joint_critic(data: ExpertData, mode: str = "exact", steps: int = 5000, lr: float = 1.0, lr_final: float = 1e-3):
    """Joint-critic IQ-Learn (one critic serves both agents; see the module docstring)."""
    res = iq_learn(data.joint_problem, mode, steps, lr, lr_final)
    n = res.q.shape[0]
    a = data.bc.shape[2]
    q = res.q.reshape(n, a, a)
    r = res.reward.reshape(n, a, a)
    qbar = np.stack([np.einsum("sxy,sy->sx", q, data.bc[1]), np.einsum("sxy,sx->sy", q, data.bc[0])])
    rbar = np.stack([np.einsum("sxy,sy->sx", r, data.bc[1]), np.einsum("sxy,sx->sy", r, data.bc[0])])
    lam = float(data.joint_problem.lam)
    policy = np.stack([_softmax(qb, _soft_values(qb, lam), lam) for qb in qbar])
    return JointCriticResult(res, qbar, policy, rbar)


def policy_kl(expert: np.ndarray, learned: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over states with positive `weights` (default: all) of ``KL(expert(.|s) || learned(.|s))``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expert > 0, expert * (np.log(expert) - np.log(learned)), 0.0).sum(axis=-1)
    mask = np.ones(terms.shape, bool) if weights is None else np.asarray(weights) > 0
    return float(terms[mask].mean())
