"""Fit the theory's parameters to agent logs and recommend an organisation (agentlab's calibration).

Data schema (Parquet or CSV, one row per answer): ``item`` (any id), ``agent`` (any id), ``compute``
(tokens the agent spent, > 0), ``correct`` (0/1 or bool); optional ``message_length`` (tokens of the
message the agent sent) and ``relayed_correct`` (0/1: the answer as the receiver decoded it).

Estimators (model; docs/synergy.md):
- leaf bias per compute level ``mu(x) = 2 mean(correct) - 1``; ``log mu = log kappa + beta log x`` by
  least squares over levels with mu > 0;
- rho: pooled pairwise correlation of signed correctness across agents on the same item, centred by
  the compute level's mean (`agentlab.synergy.agents.pairwise_rho`); ``n_eff = n / (1 + (n - 1) rho)``;
- gamma(m) (with relay data): ``gamma_hat(m) = 2 P[relayed_correct == correct] - 1`` per message
  length, fitted by ``1 - exp(-m / m0)`` (least squares of ``-log(1 - gamma)`` on m through 0);
- 95% percentile bootstrap intervals, resampling items within compute levels (rows within lengths for m0).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from agentlab.errors import UsageError
from agentlab.synergy import theory

REQUIRED = ("item", "agent", "compute", "correct")
RELAY = ("message_length", "relayed_correct")
FAN_INS = (3, 5, 7, 9)
MAX_STAR = 99


# --------------------------------------------------------------------------------------------- loading
def load_table(path: Path):
    """Read and validate a calibration table (polars DataFrame). Bad input -> `UsageError` naming the
    file and the problem: the file itself (missing, a directory, binary, not Parquet or CSV, truncated:
    `agentlab.synergy.confidence.read_table`), then its schema (`validate_table`)."""
    from agentlab.synergy.confidence import read_table

    path = Path(path)
    return validate_table(read_table(path), f"DATA {path}")


def _binary(frame, column: str, source: str):
    import polars as pl

    values = frame[column]
    if values.null_count():
        raise UsageError(f"{source}: column {column!r} has {values.null_count()} missing values (expected 0/1)")
    if values.dtype == pl.Boolean:
        return values.cast(pl.Int8)
    if not values.dtype.is_numeric():
        raise UsageError(f"{source}: column {column!r} must be 0/1, got {values.dtype} values like {values[0]!r}")
    array = values.cast(pl.Float64).to_numpy()
    bad = np.flatnonzero((array != 0) & (array != 1))  # NaN included
    if bad.size:
        raise UsageError(f"{source}: column {column!r} must be 0/1, got {array[bad[0]]:g} (row {bad[0]})")
    return values.cast(pl.Int8)


def _positive(frame, column: str, source: str) -> None:
    """Column `column` must hold finite numbers > 0 (tokens), no missing values."""
    import polars as pl

    values = frame[column]
    if not values.dtype.is_numeric():
        raise UsageError(f"{source}: column {column!r} must be positive numbers (tokens), got {values.dtype} values")
    if values.null_count():
        raise UsageError(f"{source}: column {column!r} has {values.null_count()} missing values (expected tokens > 0)")
    array = values.cast(pl.Float64).to_numpy()
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if bad.size:
        raise UsageError(
            f"{source}: column {column!r} must be finite numbers > 0 (tokens), got {array[bad[0]]!r} (row {bad[0]})"
        )


def validate_table(frame, source: str = "DATA"):
    """Check the schema; returns the frame with ``correct`` (and ``relayed_correct``) as Int8 and
    ``compute`` as Float64. Bad input -> `UsageError` naming `source`, the column and the value."""
    import polars as pl

    from agentlab.synergy.confidence import column_list

    for column in REQUIRED:
        if column not in frame.columns:
            raise UsageError(
                f"{source}: missing column {column!r} (required: {', '.join(REQUIRED)}); columns are "
                f"{column_list(frame)}"
            )
    if frame.height == 0:
        raise UsageError(f"{source}: no rows")
    for column in ("item", "agent"):
        if frame[column].null_count():
            raise UsageError(f"{source}: column {column!r} has {frame[column].null_count()} missing values")
    frame = frame.with_columns(_binary(frame, "correct", source).alias("correct"))
    _positive(frame, "compute", source)
    present = [c for c in RELAY if c in frame.columns]
    if len(present) == 1:
        missing = next(c for c in RELAY if c not in frame.columns)
        raise UsageError(f"{source}: column {present[0]!r} needs column {missing!r} too")
    if present:
        frame = frame.with_columns(_binary(frame, "relayed_correct", source).alias("relayed_correct"))
        _positive(frame, "message_length", source)
    return frame.with_columns(pl.col("compute").cast(pl.Float64))


# --------------------------------------------------------------------------------------------- fitting
@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclasses.dataclass(frozen=True)
class SynergyFit:
    """What `fit_synergy` measured."""

    beta: Interval
    kappa: Interval
    rho: Interval
    m0: Interval | None  # None without relay data
    n_agents: int  # median number of agents per item
    compute_levels: tuple[float, ...]
    leaf_bias: tuple[float, ...]  # per compute level
    items: tuple[int, ...]  # per compute level
    gamma_lengths: tuple[float, ...] = ()
    gamma_values: tuple[float, ...] = ()

    @property
    def n_eff(self) -> float:
        return float(theory.effective_votes(self.n_agents, self.rho.estimate))


@dataclasses.dataclass(frozen=True)
class _Groups:
    """One row per (item, compute) group: the sum of signed correctness S, the count n, the level index."""

    signed_sum: np.ndarray
    count: np.ndarray
    level: np.ndarray
    levels: np.ndarray


def _groups(frame) -> _Groups:
    import polars as pl

    grouped = (
        frame.with_columns((2 * pl.col("correct").cast(pl.Int64) - 1).alias("signed"))
        .group_by(["item", "compute"])
        .agg(pl.col("signed").sum().alias("S"), pl.len().alias("n"))
        .sort(["compute", "item"])
    )
    levels, level = np.unique(grouped["compute"].to_numpy(), return_inverse=True)
    return _Groups(
        grouped["S"].to_numpy().astype(np.float64), grouped["n"].to_numpy().astype(np.float64), level, levels
    )


def _estimate(signed_sum, count, level, n_levels):
    """(beta, kappa, rho, per-level mu) from group sums; works on a leading bootstrap axis."""
    totals = np.stack([np.sum(np.where(level == k, signed_sum, 0.0), -1) for k in range(n_levels)], -1)
    counts = np.stack([np.sum(np.where(level == k, count, 0.0), -1) for k in range(n_levels)], -1)
    mu = totals / counts
    mean = np.take_along_axis(mu, np.broadcast_to(level, signed_sum.shape), -1)
    centred_sum = signed_sum - count * mean  # sum_a r_ai
    squares = count - 2 * mean * signed_sum + count * mean**2  # sum_a r_ai**2 (s**2 = 1)
    rho = np.sum(centred_sum**2 - squares, -1) / np.sum((count - 1) * squares, -1)
    return mu, rho


def _power_law(levels: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of log mu on log x over the levels with mu > 0 (per bootstrap row)."""
    logx = np.log(levels)
    ok = mu > 0
    logmu = np.log(np.where(ok, mu, 1.0))
    w = ok.astype(np.float64)
    n = w.sum(-1)
    mx = (w * logx).sum(-1) / np.maximum(n, 1)
    my = (w * logmu).sum(-1) / np.maximum(n, 1)
    sxx = (w * (logx - mx[..., None]) ** 2).sum(-1)
    sxy = (w * (logx - mx[..., None]) * (logmu - my[..., None])).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(n >= 2, sxy / sxx, np.nan)
    return beta, np.exp(my - beta * mx)


def _fit_m0(lengths: np.ndarray, agree: np.ndarray) -> float:
    """m0 of ``gamma(m) = 1 - exp(-m / m0)`` from per-length agreement rates."""
    gamma = 2 * agree - 1
    ok = (gamma > 0) & (gamma < 1)
    if not ok.any():
        return float("inf") if (gamma >= 1).all() else float("nan")
    y = -np.log(1 - gamma[ok])
    return float(np.sum(lengths[ok] ** 2) / np.sum(lengths[ok] * y))


def _interval(estimate: float, samples: np.ndarray) -> Interval:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"))
    low, high = np.percentile(samples, [2.5, 97.5])
    return Interval(float(estimate), float(low), float(high))


def fit_synergy(frame, *, bootstrap: int = 200, seed: int = 0) -> SynergyFit:
    """Fit beta, kappa, rho and (with relay data) m0 of gamma(m), with bootstrap intervals.
    `frame` a validated table (`load_table`); `seed` seeds the bootstrap's NumPy generator."""
    groups = _groups(frame)
    n_levels = len(groups.levels)
    mu, rho = _estimate(groups.signed_sum, groups.count, groups.level, n_levels)
    beta, kappa = _power_law(groups.levels, mu)
    if not np.isfinite(beta):
        raise UsageError(
            "DATA: need at least two compute levels with accuracy above 1/2 to fit beta "
            f"(found {int((mu > 0).sum())} of {n_levels})"
        )
    rng = np.random.default_rng(seed)
    # Resample groups within each compute level.
    index = np.empty((bootstrap, groups.level.size), np.int64)
    for k in range(n_levels):
        members = np.flatnonzero(groups.level == k)
        index[:, members] = rng.choice(members, size=(bootstrap, members.size))
    boot_mu, boot_rho = _estimate(groups.signed_sum[index], groups.count[index], groups.level, n_levels)
    boot_beta, boot_kappa = _power_law(groups.levels, boot_mu)
    m0 = None
    lengths: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    if "relayed_correct" in frame.columns:
        m = frame["message_length"].to_numpy().astype(np.float64)
        agree = (frame["relayed_correct"].to_numpy() == frame["correct"].to_numpy()).astype(np.float64)
        unique, inverse = np.unique(m, return_inverse=True)
        rates = np.bincount(inverse, agree) / np.bincount(inverse)
        boots = []
        for _ in range(bootstrap):
            pick = rng.integers(0, m.size, m.size)
            counts = np.bincount(inverse[pick], minlength=unique.size)
            boot_rates = np.bincount(inverse[pick], agree[pick], minlength=unique.size) / np.maximum(counts, 1)
            boots.append(_fit_m0(unique, boot_rates))
        m0 = _interval(_fit_m0(unique, rates), np.asarray(boots))
        lengths, values = tuple(unique.tolist()), tuple((2 * rates - 1).tolist())
    return SynergyFit(
        beta=_interval(float(beta), boot_beta),
        kappa=_interval(float(kappa), boot_kappa),
        rho=_interval(float(rho), boot_rho),
        m0=m0,
        n_agents=int(np.median(groups.count)),
        compute_levels=tuple(groups.levels.tolist()),
        leaf_bias=tuple(mu.tolist()),
        items=tuple(np.bincount(groups.level, minlength=n_levels).tolist()),
        gamma_lengths=lengths,
        gamma_values=values,
    )


# --------------------------------------------------------------------------------------------- decisions
@dataclasses.dataclass(frozen=True)
class Organisation:
    """A candidate: ``kind`` single | star | tree, fan-in b (star: N), depth L, leaves N, tokens per leaf x,
    predicted root bias (clipped predictor) and accuracy."""

    kind: str
    fan_in: int
    depth: int
    leaves: int
    leaf_compute: float
    bias: float

    @property
    def accuracy(self) -> float:
        return (1 + self.bias) / 2

    @property
    def label(self) -> str:
        if self.kind == "single":
            return "single agent"
        if self.kind == "star":
            return f"star of {self.leaves}"
        return f"{self.fan_in}-ary tree of depth {self.depth}"


@functools.lru_cache(maxsize=4096)
def _gain(b: int, rho: float, gamma: float) -> tuple[float, float]:
    """(alpha, mu*) of one configuration, cached (the fixed point is a bisection)."""
    return float(theory.alpha_rho(b, rho, gamma)), float(theory.fixed_point(b, rho, gamma))


def candidates(
    kappa, beta, rho, gamma, *, m: float, budget: float, window: float, stars: bool = True
) -> list[Organisation]:
    """Every organisation that fits the budget and the context window (agentlab's rule, reference):
    a single agent; stars of odd N <= min(floor(W / m), 99) (one aggregator); b-ary trees (b in 3, 5, 7, 9,
    ``b m <= W``, depth >= 2) with all remaining tokens on the leaves (x >= 1). Each scored by the clipped
    predictor ``min(mu0 alpha**L, mu*)`` at ``mu0 = min(kappa x**beta, 1)``. Sorted best first."""
    out = [Organisation("single", 1, 0, 1, float(budget), float(theory.leaf_bias(budget, kappa, beta)))]

    def predicted(x: float, depth: int, alpha: float, mu_star: float) -> float:
        grown = float(theory.leaf_bias(x, kappa, beta)) * alpha**depth
        return min(grown, mu_star) if alpha > 1 else grown

    star_sizes = range(3, int(min(theory.star_capacity(m, window), MAX_STAR)) + 1, 2) if stars else ()
    for n in star_sizes:
        x = budget / n - 2 * m
        if x >= 1:
            alpha, mu_star = _gain(n, float(rho), float(gamma))
            out.append(Organisation("star", n, 1, n, float(x), predicted(x, 1, alpha, mu_star)))
    for b in FAN_INS:
        if b * m > window:
            continue
        alpha, mu_star = _gain(b, float(rho), float(gamma))
        depth = 2
        while True:
            n = b**depth
            x = (budget - float(theory.tree_budget(0.0, b, depth, m))) / n
            if x < 1:
                break
            out.append(Organisation("tree", b, depth, n, float(x), predicted(x, depth, alpha, mu_star)))
            depth += 1
    return sorted(out, key=lambda o: -o.bias)


def report(fit: SynergyFit, *, m: float, budget: float, window: float, m0_default: float) -> dict[str, Any]:
    """The flat summary: fitted parameters, per fan-in alpha / s / phase / x* / B*, and the recommendation."""
    m0 = fit.m0.estimate if fit.m0 is not None else m0_default
    if math.isnan(m0):  # no length reached positive fidelity
        gamma = 1e-6
    else:
        gamma = 1.0 if math.isinf(m0) else max(float(theory.fidelity(m, m0)), 1e-6)
    rho, beta, kappa = fit.rho.estimate, fit.beta.estimate, fit.kappa.estimate
    rho_c = min(max(rho, 0.0), 0.999)
    out: dict[str, Any] = {
        "beta": beta,
        "beta_low": fit.beta.low,
        "beta_high": fit.beta.high,
        "kappa": kappa,
        "kappa_low": fit.kappa.low,
        "kappa_high": fit.kappa.high,
        "rho": rho,
        "rho_low": fit.rho.low,
        "rho_high": fit.rho.high,
        "agents_per_item": fit.n_agents,
        "n_eff": fit.n_eff,
        "m0_tokens": fit.m0.estimate if fit.m0 else None,
        "m0_low_tokens": fit.m0.low if fit.m0 else None,
        "m0_high_tokens": fit.m0.high if fit.m0 else None,
        "gamma_source": "fitted" if fit.m0 else f"default curve, m0 = {m0_default:g} tokens (no relay data)",
        "message_length_tokens": m,
        "gamma": gamma,
        "budget_tokens": budget,
        "context_window_tokens": window,
    }
    for b in FAN_INS:
        alpha = float(theory.alpha_rho(b, rho_c, gamma))
        s = float(theory.organization_exponent(b, rho_c, gamma))
        out[f"alpha_b{b}"] = alpha
        out[f"s_b{b}"] = s
        out[f"phase_b{b}"] = "amplifying" if alpha > 1 else "washout"
        out[f"synergy_b{b}"] = bool(s > beta)
        out[f"x_star_b{b}_tokens"] = float(theory.optimal_leaf_compute(b, m, beta, s))
        out[f"budget_threshold_b{b}_tokens"] = float(theory.budget_threshold(b, m, beta, s))
    ranked = candidates(kappa, beta, rho_c, gamma, m=m, budget=budget, window=window)
    best, runner = ranked[0], ranked[1] if len(ranked) > 1 else ranked[0]
    out.update(
        recommendation=best.label,
        recommended_leaf_compute_tokens=best.leaf_compute,
        recommended_leaves=best.leaves,
        recommended_accuracy=best.accuracy,
        runner_up=runner.label,
        runner_up_accuracy=runner.accuracy,
        margin_accuracy=best.accuracy - runner.accuracy,
    )
    return out


def majority_check(frame, fit: SynergyFit, max_votes: int | None = None) -> dict[str, np.ndarray]:
    """Where the homogeneous theory holds: accuracy of a majority of k agents (odd k) on an item from the
    data vs the one-level prediction ``(1 + rho mu_x + (1 - rho) f_k(mu_x)) / 2`` (gamma = 1: the votes are
    read directly). Observed: per item, the mean over the n cyclic windows of k of its n answers (agents in
    id order), so every agent weighs the same; items with fewer than k answers are left out. Returns arrays
    k, observed, predicted, standard_error (binomial over items), z = (observed - predicted) / se."""
    import polars as pl

    rho = min(max(fit.rho.estimate, 0.0), 0.999)
    bias_at = dict(zip(fit.compute_levels, fit.leaf_bias))
    rows = (
        frame.sort(["item", "compute", "agent"])
        .group_by(["item", "compute"], maintain_order=True)
        .agg(pl.col("correct"), pl.len().alias("n"))
    )
    sizes = rows["n"].to_numpy()
    top = min(int(sizes.max()), max_votes or int(sizes.max()))
    by_size = {}
    for n in np.unique(sizes):
        sel = rows.filter(pl.col("n") == n)
        matrix = np.array(sel["correct"].to_list(), np.int64)  # (items, n)
        mu = np.array([bias_at[c] for c in sel["compute"].to_numpy()])
        by_size[int(n)] = (matrix, mu)
    out = {"k": [], "observed": [], "predicted": [], "standard_error": []}
    for k in range(1, top + 1, 2):
        wins, preds = [], []
        for n, (matrix, mu) in by_size.items():
            if n < k:
                continue
            windows = np.stack([np.roll(matrix, -j, axis=1)[:, :k].sum(1) for j in range(n)], 1)
            wins.append((2 * windows > k).mean(1))
            pred = mu if k == 1 else rho * mu + (1 - rho) * np.asarray(theory.majority_map(mu, k))
            preds.append((1 + pred) / 2)
        wins, preds = np.concatenate(wins), np.concatenate(preds)
        out["k"].append(k)
        out["observed"].append(float(wins.mean()))
        out["predicted"].append(float(preds.mean()))
        out["standard_error"].append(float(max(wins.std(), 1e-12) / np.sqrt(wins.size)))
    result = {key: np.asarray(value) for key, value in out.items()}
    result["z"] = (result["observed"] - result["predicted"]) / result["standard_error"]
    return result
