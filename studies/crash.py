"""market-crash under a mix of scripted firms: per-day paths, the Economic Alignment Score and its figures.

    from agentlab.studies.crash import run_crash
    from agentlab.studies.simulation import SimulateRequest
    result = run_crash(SimulateRequest(policies=(("undercut", 3), ("stabilise", 2)), dlc=3, markets=64))
    result.summary["eas"], result.metrics, result.plots["price_paths.png"]

What `agentlab simulate market-crash` computes (the command adds the run directory and the printing):
``metrics`` one row per day, means over markets (share of firms alive, mean posted price of active firms, units
sold, consumer spend, unit cost, each firm's price, cash and survival); ``summary`` the EAS and its components with
their sd over markets, collapse and recovery, survival per policy, throughput; ``plots`` price and cash paths,
survival curves and the EAS.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from agentlab import compiler, limits
from agentlab.errors import UsageError
from agentlab.kernels.markets.alignment import score_summary
from agentlab.kernels.markets.crash import (
    CRASH_BOUNDS,
    FIRM_POLICIES,
    MAX_FIRMS,
    MarketCrash,
    alignment,
    default_crash_params,
    simulate,
    validate_crash_params,
)
from agentlab.kernels.mixes import expand
from agentlab.studies.simulation import (
    SimulateRequest,
    SimulationResult,
    check_params,
    eas_figure,
    mix_text,
    over_markets,
)
from agentlab.timing import compile_and_run

CRASH_CONSUMERS = 50
CRASH_DAYS = 365  # days when the request's steps is 0
SCORES = ("eas", "stability", "integrity", "welfare", "profitability", "bankruptcy_rate")  # summarised with sd


def crash_bytes(markets: int, days: int, firms: int, consumers: int = CRASH_CONSUMERS) -> float:
    """Estimated peak memory of `run_crash`: per market-day 8 per-firm and 4 scalar float32 rows from the device, their
    float64 copies in `crash_alignment` and the metrics (about 8 more per firm), and per market the running state and
    one day's ``1 + C (1 + F)`` hash words and draws."""
    per_day = firms * (8 * 4 + 8 * 8) + 4 * 4 + 8 * 8
    per_market = 16 * (1 + consumers * (1 + firms)) + 64 * (firms + consumers)
    return float(markets) * (days * per_day + per_market)


def crash_setup(request: SimulateRequest):
    """``(params, policy_ids (F,) int32, days)`` for a request; bad input (a --dlc or --param out of range, a run too
    large for this machine) raises `UsageError` (one line) before anything is allocated."""
    firms = sum(count for _, count in request.policies)
    if firms > MAX_FIRMS:
        raise UsageError(f"--policies: at most {MAX_FIRMS} firms, got {firms}")
    dlc = CRASH_BOUNDS["dlc"].check(request.dlc, "--dlc")
    if dlc > firms:
        raise UsageError(f"--dlc {dlc} is larger than the number of firms ({firms})")
    overrides = check_params(request.params, CRASH_BOUNDS)
    params = validate_crash_params(default_crash_params().replace(dlc=dlc, **overrides), firms)
    days = request.steps or CRASH_DAYS
    limits.check_memory(
        crash_bytes(request.markets, days, firms),
        f"market-crash with {request.markets:,} markets x {days:,} days x {firms} firms",
        "lower --markets or --steps",
    )
    policy_ids = jnp.asarray(expand(request.policies, tuple(FIRM_POLICIES)), jnp.int32)
    return params, policy_ids, days


def validate_crash(request: SimulateRequest) -> None:
    """`crash_setup`'s checks alone (`UsageError` on bad input)."""
    crash_setup(request)


def run_crash(request: SimulateRequest) -> SimulationResult:
    """Simulate ``request.markets`` markets (one compiled call, `vmap` over markets) and score them."""
    names = tuple(FIRM_POLICIES)
    params, policy_ids, days = crash_setup(request)
    ids = [int(i) for i in np.asarray(policy_ids)]
    firms = len(ids)
    keys = jax.random.split(jax.random.key(request.seed), request.markets)
    env = MarketCrash(num_firms=firms, num_consumers=CRASH_CONSUMERS)
    batched = jax.vmap(lambda k, p, ids: simulate(k, env, p, ids, days), in_axes=(0, None, None))
    batched = over_markets(batched, request, replicated=2)  # request.devices > 1: markets split over devices
    rows, compile_seconds, run_seconds = compile_and_run(
        batched, keys, params, policy_ids, compiler_options=compiler.options()
    )
    rows = {k: np.asarray(v) for k, v in rows.items()}
    score = alignment(rows, env, params)

    alive = rows["alive"].astype(np.float64)  # (M, T, F)
    was_alive = np.concatenate([np.ones_like(alive[:, :1]), alive[:, :-1]], axis=1)
    frame = {
        "seed": np.full(days, request.seed),
        "step": np.arange(1, days + 1),
        "wall_seconds": np.full(days, compile_seconds + run_seconds),
        "alive_share": alive.mean(axis=(0, 2)),
        "mean_price": mean_active_price(rows["price"], was_alive),
        "units_sold": rows["units_sold"].sum(axis=2).mean(axis=0),
        "consumer_spend": rows["consumer_spend"].mean(axis=0),
        "unit_cost": rows["unit_cost"].mean(axis=0),
    }
    for i in range(firms):
        frame[f"price_firm{i}"] = rows["price"][:, :, i].mean(axis=0)
        frame[f"cash_firm{i}"] = rows["cash"][:, :, i].mean(axis=0)
        frame[f"alive_firm{i}"] = alive[:, :, i].mean(axis=0)

    summary: dict[str, Any] = {
        "kernel": "market-crash",
        "policies": mix_text(request.policies),
        "firms": firms,
        "consumers": CRASH_CONSUMERS,
        "dlc": request.dlc,
        "markets": request.markets,
        "days": days,
    }
    summary.update(score_summary(score, SCORES))
    summary["collapse_rate"] = float(score["collapsed"].mean())
    recovered = np.isfinite(score["recovery_days"])  # NaN: no supply shock in the horizon, or never recovered
    summary["recovery_days"] = float(score["recovery_days"][recovered].mean()) if recovered.any() else None
    summary["recovered_share"] = float(recovered.mean()) if int(params.shock_day) >= 0 else None
    final_price = frame["mean_price"]
    summary["stable_share"] = float(
        np.mean((score["bankruptcy_rate"] < 0.5) & (market_mean_price(rows, was_alive) >= rows["unit_cost"].mean(1)))
    )
    summary["final_mean_price"] = float(final_price[-1]) if np.isfinite(final_price[-1]) else None
    survival = {}  # policy name -> (T,) share of its firms alive, over all markets
    for name in dict(request.policies):
        members = [i for i, x in enumerate(ids) if names[x] == name]
        survival[name] = alive[:, :, members].mean(axis=(0, 2))
        summary[f"survival_{name}"] = float(alive[:, -1, members].mean())
    summary["compile_seconds"] = compile_seconds
    summary["market_steps_per_second"] = request.markets * days / run_seconds
    summary["agent_steps_per_second"] = request.markets * days * firms / run_seconds

    labels = [f"firm {i} ({names[x]})" for i, x in enumerate(ids)]
    plots = {
        **crash_figures(frame, labels, survival),
        "eas.png": eas_figure(summary, f"market-crash {summary['policies']}, dlc {request.dlc}"),
    }
    return SimulationResult(metrics=pl.DataFrame(frame), summary=summary, plots=plots)


def mean_active_price(price, was_alive):
    """float64 (T,): the mean posted price per day over the firms alive the day before, over all markets (NaN on a
    day with none)."""
    total = (price * was_alive).sum(axis=(0, 2))
    count = was_alive.sum(axis=(0, 2))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def market_mean_price(rows, was_alive):
    """float64 (M,): each market's mean posted price over its active firm-days."""
    total = (rows["price"] * was_alive).sum(axis=(1, 2))
    return total / np.maximum(was_alive.sum(axis=(1, 2)), 1)


def crash_figures(frame: dict, labels: list[str], survival: dict[str, Any]) -> dict[str, Any]:
    """Price paths, cash paths and survival curves: `frame` as `run_crash` builds it, `labels` one per firm,
    `survival` policy name -> (T,) share of its firms alive."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    plots = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, label in enumerate(labels):
        ax.plot(frame[f"price_firm{i}"], label=label)
    ax.plot(frame["unit_cost"], color="black", linestyle=":", label="unit cost")
    ax.set_xlabel("day")
    ax.set_ylabel("posted price (mean over markets)")
    ax.legend(fontsize=7)
    plots["price_paths.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, label in enumerate(labels):
        ax.plot(frame[f"cash_firm{i}"], label=label)
    ax.set_xlabel("day")
    ax.set_ylabel("cash (mean over markets)")
    ax.legend(fontsize=7)
    plots["cash_paths.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, share in survival.items():
        ax.plot(share, label=name)
    ax.plot(frame["alive_share"], color="black", linestyle="--", label="all firms")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("day")
    ax.set_ylabel("share of firms alive")
    ax.legend()
    plots["survival.png"] = fig
    return plots
