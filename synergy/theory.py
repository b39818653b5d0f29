"""Closed forms of budgeted multi-agent synergy (Liu, Kong and Pei 2026, arXiv 2601.17311).

Every function is plain NumPy, broadcasts over array arguments and returns float64 (a Python float
for scalar input). Each docstring says whether the formula is the paper's result ("paper") or the
first-principles model agentlab implements and tests ("model"; docs/synergy.md).

Notation: fan-in ``b`` (odd, >= 3), shared-error correlation ``rho`` in [0, 1), message fidelity
``gamma`` in (0, 1], leaf bias ``mu`` in [-1, 1] (accuracy ``p = (1 + mu) / 2``), leaf scaling
exponent ``beta`` (``mu0(x) = kappa x**beta``), message length ``m`` tokens, context window ``W``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agentlab.errors import UsageError

ArrayLike = Any

#: Default scale of agentlab's fidelity curve ``gamma(m) = 1 - exp(-m / m0)`` (tokens).
DEFAULT_M0 = 100.0


def _out(value: np.ndarray) -> Any:
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


def check_fan_in(b: ArrayLike) -> np.ndarray:
    """`b` as an int64 array; every value must be an odd integer >= 3 (else `UsageError`)."""
    arr = np.asarray(b)
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        raise UsageError(f"fan-in b must be an odd integer >= 3, got {b!r}")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 3) | (arr % 2 == 0)]
    if bad.size:
        raise UsageError(f"fan-in b must be an odd integer >= 3, got {int(bad.flat[0])}")
    return arr


def check_rho(rho: ArrayLike) -> np.ndarray:
    arr = np.asarray(rho, dtype=np.float64)
    bad = arr[~((arr >= 0) & (arr < 1))]
    if bad.size:
        raise UsageError(f"rho must lie in [0, 1), got {float(bad.flat[0])}")
    return arr


def check_gamma(gamma: ArrayLike) -> np.ndarray:
    arr = np.asarray(gamma, dtype=np.float64)
    bad = arr[~((arr > 0) & (arr <= 1))]
    if bad.size:
        raise UsageError(f"gamma must lie in (0, 1], got {float(bad.flat[0])}")
    return arr


def check_mu(mu: ArrayLike, name: str = "mu0") -> np.ndarray:
    arr = np.asarray(mu, dtype=np.float64)
    bad = arr[~((arr >= -1) & (arr <= 1))]
    if bad.size:
        raise UsageError(f"{name} must lie in [-1, 1], got {float(bad.flat[0])}")
    return arr


# --------------------------------------------------------------------------------------------- binary core
def majority_slope(b: ArrayLike) -> Any:
    """``f_b'(0) = b C(b-1, (b-1)/2) / 2**(b-1)`` (paper, Thm 4): 1.5, 1.875, 2.1875, 2.4609 for b = 3..9.
    Computed in log space (``lgamma``), so large fan-ins (a star of hundreds) do not overflow."""
    b = check_fan_in(b).astype(np.float64)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    log_slope = np.log(b) + lgamma(b) - 2.0 * lgamma((b + 1.0) / 2.0) - (b - 1.0) * np.log(2.0)
    return _out(np.exp(log_slope))


def majority_map(mu: ArrayLike, b: ArrayLike) -> Any:
    """``f_b(mu) = 2 P[Bin(b, (1 + mu)/2) > b/2] - 1`` (model): the bias of a majority of `b` independent
    votes of bias `mu`. Odd, increasing, concave on [0, 1], ``f_b(1) = 1``."""
    b = check_fan_in(b)
    mu = np.asarray(mu, dtype=np.float64)
    mu, b = np.broadcast_arrays(mu, b)
    p = (1.0 + mu) / 2.0
    total = np.zeros(mu.shape)
    for bb in np.unique(b):
        sel = b == bb
        pp = p[sel]
        upper = sum(math.comb(int(bb), j) * pp**j * (1 - pp) ** (int(bb) - j) for j in range(int(bb) // 2 + 1, bb + 1))
        total[sel] = upper
    return _out(2.0 * total - 1.0)


def majority_map_derivative(mu: ArrayLike, b: ArrayLike) -> Any:
    """``f_b'(mu) = b C(b-1, k) ((1 - mu**2) / 4)**k`` with ``k = (b-1)/2`` (model)."""
    b = check_fan_in(b)
    mu = np.asarray(mu, dtype=np.float64)
    k = (b - 1) // 2
    return _out(np.asarray(majority_slope(b)) * 2.0 ** (b - 1) * ((1.0 - mu**2) / 4.0) ** k)


def alpha_rho(b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``alpha_rho = gamma [rho + (1 - rho) f_b'(0)]`` (paper, Thm 5): the small-signal gain of one tree
    level. alpha <= 1: a bias washes out to chance with depth; alpha > 1: it amplifies to mu* > 0."""
    rho, gamma = check_rho(rho), check_gamma(gamma)
    return _out(gamma * (rho + (1.0 - rho) * np.asarray(majority_slope(b))))


def level_map(mu: ArrayLike, b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """One tree level (model): ``F(mu) = rho gamma mu + (1 - rho) f_b(gamma mu)``.

    Children's outputs of bias `mu` cross a binary symmetric channel (bias -> ``gamma mu``); with
    probability `rho` the parent's b received messages are one shared draw, otherwise independent;
    the parent outputs their majority. ``F'(0) = alpha_rho``."""
    rho, gamma = check_rho(rho), check_gamma(gamma)
    mu = np.asarray(mu, dtype=np.float64)
    return _out(rho * gamma * mu + (1.0 - rho) * np.asarray(majority_map(gamma * mu, b)))


def level_map_derivative(mu: ArrayLike, b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``F'(mu) = gamma [rho + (1 - rho) f_b'(gamma mu)]`` (model)."""
    rho, gamma = check_rho(rho), check_gamma(gamma)
    mu = np.asarray(mu, dtype=np.float64)
    return _out(gamma * (rho + (1.0 - rho) * np.asarray(majority_map_derivative(gamma * mu, b))))


def trajectory(mu0: ArrayLike, depth: int, b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> np.ndarray:
    """The exact recursion ``mu_{l+1} = F(mu_l)`` (model) for levels ``0..depth``: shape
    ``(depth + 1, *broadcast shape)``, float64. Level 0 is a leaf; level L the root of a depth-L tree."""
    mu = np.asarray(check_mu(mu0), dtype=np.float64)
    out = [mu]
    for _ in range(int(depth)):
        mu = np.asarray(level_map(mu, b, rho, gamma))
        out.append(mu)
    return np.stack(np.broadcast_arrays(*out))


def fixed_point(b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """The saturation bias ``mu* = F(mu*)`` in (0, 1] (model; 0 when alpha <= 1).

    F is increasing and concave with F(0) = 0, so a positive fixed point exists iff ``alpha > 1``; it is
    unique and attracts every mu0 in (0, 1]. ``mu* < 1`` iff ``gamma < 1``. Found by bisection on
    ``F(mu) - mu`` to float64 precision. Root accuracy at saturation ``p* = (1 + mu*) / 2``."""
    b, rho, gamma = np.broadcast_arrays(check_fan_in(b), check_rho(rho), check_gamma(gamma))
    lo, hi = np.zeros(b.shape), np.ones(b.shape)
    for _ in range(80):
        mid = (lo + hi) / 2
        above = np.asarray(level_map(mid, b, rho, gamma)) > mid
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    mu_star = np.where(np.asarray(alpha_rho(b, rho, gamma)) > 1.0, (lo + hi) / 2, 0.0)
    mu_star = np.where((gamma == 1.0) & (mu_star > 0), 1.0, mu_star)
    return _out(mu_star)


def fixed_point_slope(b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``F'(mu*)`` (model): the fixed point is stable iff it is < 1 (true for every mu* > 0 by concavity);
    after mixing, ``|mu_L - mu*|`` shrinks by this factor per level. Equals alpha when mu* = 0."""
    return level_map_derivative(fixed_point(b, rho, gamma), b, rho, gamma)


def organization_exponent(b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``s = log_b(alpha_rho)`` (paper): ``mu_L ~= mu0 N**s`` for a tree of ``N = b**L`` leaves. A tree
    beats the best single agent at equal budget iff ``s > beta`` (budgeted synergy). Negative when alpha < 1."""
    return _out(np.log(np.asarray(alpha_rho(b, rho, gamma))) / np.log(check_fan_in(b)))


def critical_fidelity(b: ArrayLike, rho: ArrayLike) -> Any:
    """``gamma_c = 1 / [rho + (1 - rho) f_b'(0)]`` (model): alpha = 1 at gamma = gamma_c (0.766, 0.652,
    0.529 for b = 3, 5, 9 at rho = 0.39). Trees amplify iff gamma > gamma_c."""
    rho = check_rho(rho)
    return _out(1.0 / (rho + (1.0 - rho) * np.asarray(majority_slope(b))))


def mixing_depth(mu0: ArrayLike, b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``L_mix = ln(mu* / mu0) / ln(alpha)`` (model): levels until the small-signal growth reaches mu*.
    ``inf`` when alpha <= 1 (no saturation), 0 when mu0 >= mu*."""
    mu0 = check_mu(mu0)
    alpha = np.asarray(alpha_rho(b, rho, gamma))
    mu_star = np.asarray(fixed_point(b, rho, gamma))
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.log(mu_star / mu0) / np.log(alpha)
    depth = np.where(alpha > 1, np.maximum(depth, 0.0), np.inf)
    return _out(depth)


def clipped_predictor(mu0: ArrayLike, depth: ArrayLike, b: ArrayLike, rho: ArrayLike, gamma: ArrayLike) -> Any:
    """``min(mu0 alpha**L, mu*)`` when alpha > 1, ``mu0 alpha**L`` otherwise (model).

    By concavity ``F(mu) <= alpha mu``, so for 0 <= mu0 <= mu* it is an upper bound on the exact mu_L
    and tight in both the small-signal and the saturated regime. Predicted accuracy ``(1 + mu) / 2``."""
    mu0 = check_mu(mu0)
    alpha = np.asarray(alpha_rho(b, rho, gamma))
    grown = mu0 * alpha ** np.asarray(depth, dtype=np.float64)
    mu_star = np.asarray(fixed_point(b, rho, gamma))
    return _out(np.where(alpha > 1, np.minimum(grown, mu_star), grown))


def effective_votes(n: ArrayLike, rho: ArrayLike) -> Any:
    """``n_eff = n / (1 + (n - 1) rho)``: independent votes worth n votes of pairwise correlation rho."""
    n = np.asarray(n, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    return _out(n / (1.0 + (n - 1.0) * rho))


# --------------------------------------------------------------------------------------------- budgets
def fidelity(m: ArrayLike, m0: float = DEFAULT_M0) -> Any:
    """agentlab's fidelity curve ``gamma(m) = 1 - exp(-m / m0)`` (model; the paper leaves gamma(m) open)."""
    m = np.asarray(m, dtype=np.float64)
    return _out(1.0 - np.exp(-m / float(m0)))


def leaf_overhead(b: ArrayLike, m: ArrayLike) -> Any:
    """``c0 = 2 m b / (b - 1)`` tokens per leaf (model): every edge costs 2m (written m, read m) and a full
    b-ary tree has ``b (N - 1) / (b - 1)`` edges."""
    b = check_fan_in(b)
    return _out(2.0 * np.asarray(m, dtype=np.float64) * b / (b - 1.0))


def tree_budget(x: ArrayLike, b: ArrayLike, depth: ArrayLike, m: ArrayLike) -> Any:
    """``B = N x + 2 m b (N - 1) / (b - 1)`` with ``N = b**L`` (model): the total tokens of a full tree."""
    b = check_fan_in(b)
    n = b.astype(np.float64) ** np.asarray(depth, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return _out(n * np.asarray(x, dtype=np.float64) + 2.0 * m * b * (n - 1.0) / (b - 1.0))


def leaves_for_budget(budget: ArrayLike, x: ArrayLike, b: ArrayLike, m: ArrayLike) -> Any:
    """``N ~= B / (x + c0)`` (model, continuous): leaves a budget B buys at x tokens per leaf."""
    return _out(np.asarray(budget, dtype=np.float64) / (np.asarray(x, dtype=np.float64) + leaf_overhead(b, m)))


def fits_context(b: ArrayLike, m: ArrayLike, window: ArrayLike) -> Any:
    """An aggregator reading b messages of m tokens needs ``b m <= W`` (paper)."""
    return np.asarray(b) * np.asarray(m) <= np.asarray(window)


def star_capacity(m: ArrayLike, window: ArrayLike) -> Any:
    """The largest star one aggregator can read: ``floor(W / m)`` messages (paper: context saturation)."""
    return np.floor_divide(np.asarray(window), np.asarray(m))


def optimal_leaf_compute(b: ArrayLike, m: ArrayLike, beta: ArrayLike, s: ArrayLike) -> Any:
    """``x* = beta c0 / (s - beta)`` tokens per leaf when ``s > beta`` (model, from maximising
    ``kappa x**beta (B / (x + c0))**s``); ``inf`` when ``s <= beta`` (spend everything on one agent).
    Example b=3, m=200, beta=0.15, s=0.2423: x* ~= 975."""
    c0 = np.asarray(leaf_overhead(b, m))
    beta, s = np.asarray(beta, dtype=np.float64), np.asarray(s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = beta * c0 / (s - beta)
    return _out(np.where(s > beta, x, np.inf))


def budget_threshold(b: ArrayLike, m: ArrayLike, beta: ArrayLike, s: ArrayLike) -> Any:
    """``B* = c0 (s**s / beta**beta)**(1 / (s - beta)) / (s - beta)`` (model): in the small-signal regime
    the best tree (x = x*) beats the single agent with the whole budget iff ``B > B*``; ``inf`` when
    ``s <= beta``. Example b=3, m=200, beta=0.15, s=0.2423: B* ~= 3.43k tokens."""
    c0 = np.asarray(leaf_overhead(b, m))
    beta, s = np.asarray(beta, dtype=np.float64), np.asarray(s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gap = s - beta
        threshold = c0 * (s**s / beta**beta) ** (1.0 / gap) / gap
    return _out(np.where(s > beta, threshold, np.inf))


def leaf_bias(x: ArrayLike, kappa: ArrayLike, beta: ArrayLike) -> Any:
    """``mu0(x) = min(kappa x**beta, 1)`` (paper's small-signal law, clipped at a perfect agent)."""
    x = np.asarray(x, dtype=np.float64)
    return _out(np.minimum(np.asarray(kappa) * np.maximum(x, 0.0) ** np.asarray(beta), 1.0))


# --------------------------------------------------------------------------------------------- continuous warm-up
def star_risk(sigma2: ArrayLike, rho: ArrayLike, n: ArrayLike, channel_var: ArrayLike) -> Any:
    """``R = sigma^2 [rho + (1 - rho)/N] + sigma_c^2(m)/N`` (model): mean of N correlated estimates sent
    over noisy channels; floor ``rho sigma^2`` as N grows."""
    n = np.asarray(n, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    return _out(np.asarray(sigma2) * (rho + (1 - rho) / n) + np.asarray(channel_var) / n)


def chain_risk(sigma2: ArrayLike, depth: ArrayLike, channel_var: ArrayLike) -> Any:
    """``R = sigma^2 + L sigma_c^2(m)`` (model): an estimate relayed L times (an error cascade)."""
    return _out(np.asarray(sigma2, dtype=np.float64) + np.asarray(depth) * np.asarray(channel_var))


def tree_risk(sigma2: ArrayLike, rho: ArrayLike, b: ArrayLike, depth: int, channel_var: ArrayLike) -> Any:
    """``v_{l+1} = [rho + (1 - rho)/b] v_l + sigma_c^2(m)/b`` from ``v_0 = sigma^2`` (model), at level `depth`."""
    b = check_fan_in(b).astype(np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    v = np.asarray(sigma2, dtype=np.float64)
    for _ in range(int(depth)):
        v = (rho + (1 - rho) / b) * v + np.asarray(channel_var) / b
    return _out(v)


def tree_risk_floor(rho: ArrayLike, b: ArrayLike, channel_var: ArrayLike) -> Any:
    """``v* = sigma_c^2(m) / [(b - 1)(1 - rho)]`` (paper, Eq 13): the tree's risk floor; it falls only by
    lowering rho or improving the channel."""
    b = check_fan_in(b).astype(np.float64)
    return _out(np.asarray(channel_var, dtype=np.float64) / ((b - 1) * (1 - np.asarray(rho, dtype=np.float64))))
