"""market-lemons under a mix of scripted sellers and buyers (`run_lemons`), and the recorded lemon study
(`lemon_study`: K Sybil identities x buyer mix x dlc, docs/markets.md).

    from agentlab.studies.lemons import lemon_study, run_lemons, study_markdown
    from agentlab.studies.simulation import SimulateRequest
    result = run_lemons(SimulateRequest(policies=(("honest", 9), ("sybil", 3)), buyers=(("naive", 12),), dlc=3))
    print(study_markdown(lemon_study(markets=64)))

`run_lemons` is what `agentlab simulate market-lemons` computes: ``metrics`` one row per day, means over markets
(volume, mean trade price, listed prices of honest and Sybil listings, consumer surplus and its all-honest
reference, Sybil share of trades and revenue, reputations, retirements, surplus per buyer of each policy);
``summary`` the EAS and its components with their sd over markets, Sybil shares, volume, surplus, throughput;
``plots`` price paths, surplus, Sybil share, EAS. `lemon_study` is `agentlab bench lemons`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from agentlab import compiler, limits
from agentlab.errors import UsageError
from agentlab.kernels.markets.alignment import score_summary
from agentlab.kernels.markets.lemons.env import (
    LEMONS_BOUNDS,
    MarketLemons,
    default_lemons_params,
    validate_lemons_params,
)
from agentlab.kernels.markets.lemons.metrics import alignment, daily_totals
from agentlab.kernels.markets.lemons.policies import simulate
from agentlab.kernels.markets.names import BUYER_POLICIES, SELLER_POLICIES
from agentlab.kernels.mixes import expand, parse_mix
from agentlab.limits import Bound
from agentlab.studies.simulation import (
    SimulateRequest,
    SimulationResult,
    check_params,
    eas_figure,
    mix_text,
    over_markets,
)
from agentlab.timing import compile_and_run, compile_only

DEFAULT_DAYS = 50  # days when the request's steps is 0 (Agent Bazaar's 50)
SCORES = ("eas", "stability", "integrity", "welfare", "profitability", "welfare_raw", "profitability_raw")


def lemons_bytes(markets: int, days: int, sellers: int, buyers: int, view: int) -> float:
    """Estimated peak memory of `run_lemons`: per market-day the device's rows (7 per-seller and 4 per-buyer arrays,
    19 and 10 bytes), their float64 copies in `daily_totals` / `lemons_alignment` and about 20 float64 daily totals;
    per market the running state (vote windows, views)."""
    per_day = sellers * (19 + 4 * 8) + buyers * (10 + 2 * 8) + 20 * 8
    per_market = sellers * (10 * 4 + 64) + buyers * view * 16 + 256
    return float(markets) * (days * per_day + per_market)


def lemons_setup(request: SimulateRequest):
    """``(params, buyer_ids (B,) int32, num_sellers)`` for a request; bad input (a --dlc or --param out of range, a run
    too large for this machine) raises `UsageError` (one line) before anything is allocated."""
    counts = dict.fromkeys(SELLER_POLICIES, 0)
    for name, count in request.policies:
        counts[name] += count
    num_sellers = counts["honest"] + counts["sybil"]
    dlc = LEMONS_BOUNDS["dlc"].check(request.dlc, "--dlc")
    if dlc > num_sellers:
        raise UsageError(f"--dlc {dlc} is larger than the number of sellers ({num_sellers})")
    settable = {key: bound for key, bound in LEMONS_BOUNDS.items() if key not in ("num_sybil", "dlc")}
    overrides = check_params(request.params, settable)
    params = default_lemons_params().replace(num_sybil=counts["sybil"], dlc=dlc, **overrides)
    params = validate_lemons_params(params, num_sellers)
    num_buyers = sum(count for _, count in request.buyers)
    days = request.steps or DEFAULT_DAYS
    limits.check_memory(
        lemons_bytes(request.markets, days, num_sellers, num_buyers, dlc),
        f"market-lemons with {request.markets:,} markets x {days:,} days x {num_sellers} sellers and {num_buyers} "
        "buyers",
        "lower --markets or --steps",
    )
    buyer_ids = jnp.asarray(expand(request.buyers, BUYER_POLICIES), jnp.int32)
    return params, buyer_ids, num_sellers


def validate_lemons(request: SimulateRequest) -> None:
    """`lemons_setup`'s checks alone (`UsageError` on bad input)."""
    lemons_setup(request)


def batched_simulation(num_sellers: int, view_size: int, days: int):
    """``fn(keys (M,), params, buyer_ids (B,)) -> rows (M, days, ...)``; params and buyer ids are traced, so one
    compiled function serves every K, dlc <= view_size and buyer mix of a given number of buyers (the kernel's
    number of buyers is the ids' length)."""

    def one(key, params, ids):
        env = MarketLemons(num_sellers=num_sellers, num_buyers=ids.shape[0], view_size=view_size)
        return simulate(key, env, params, ids, days)

    return jax.vmap(one, in_axes=(0, None, None))


def run_lemons(request: SimulateRequest) -> SimulationResult:
    """Simulate ``request.markets`` markets (one compiled call, `vmap` over markets) and score them."""
    params, buyer_ids, num_sellers = lemons_setup(request)
    num_sybil, num_buyers = int(params.num_sybil), int(buyer_ids.shape[0])
    days = request.steps or DEFAULT_DAYS
    keys = jax.random.split(jax.random.key(request.seed), request.markets)
    fn = over_markets(batched_simulation(num_sellers, request.dlc, days), request, replicated=2)
    rows, compile_seconds, run_seconds = compile_and_run(
        fn, keys, params, buyer_ids, compiler_options=compiler.options()
    )
    rows = {k: np.asarray(v) for k, v in rows.items()}
    env = MarketLemons(num_sellers=num_sellers, num_buyers=num_buyers, view_size=request.dlc)
    score = alignment(rows, env, params)
    buyer_surplus = rows["surplus"]  # (M, T, B)
    rows = daily_totals(rows, num_sybil)

    volume = rows["volume"].astype(np.float64)  # (M, T)
    revenue = rows["revenue"].astype(np.float64)
    total_volume, total_revenue = volume.sum(axis=0), revenue.sum(axis=0)
    frame: dict[str, Any] = {
        "seed": np.full(days, request.seed),
        "step": np.arange(1, days + 1),
        "wall_seconds": np.full(days, compile_seconds + run_seconds),
        "volume": volume.mean(axis=0),
        "reference_volume": rows["reference_volume"].mean(axis=0),
        "mean_trade_price": np.where(total_volume > 0, total_revenue / np.maximum(total_volume, 1), np.nan),
        "listed_price_honest": rows["listed_price_honest"].mean(axis=0),
        "listed_price_sybil": rows["listed_price_sybil"].mean(axis=0) if num_sybil else np.full(days, np.nan),
        "consumer_surplus": rows["surplus"].mean(axis=0),
        "reference_surplus": rows["reference_surplus"].mean(axis=0),
        "sybil_trade_share": np.where(total_volume > 0, rows["sybil_trades"].sum(0) / np.maximum(total_volume, 1), 0),
        "sybil_revenue_share": np.where(
            total_revenue > 0, rows["sybil_revenue"].sum(0) / np.maximum(total_revenue, 1), 0
        ),
        "reputation_honest": rows["reputation_honest"].mean(axis=0),
        "reputation_sybil": rows["reputation_sybil"].mean(axis=0) if num_sybil else np.full(days, np.nan),
        "retired": rows["retired"].mean(axis=0),
        "oversold": rows["oversold"].mean(axis=0),
    }
    ids = np.asarray(buyer_ids)
    members = {name: ids == BUYER_POLICIES.index(name) for name in dict(request.buyers)}
    members = {name: mask for name, mask in members.items() if mask.any()}
    for name, mask in members.items():
        frame[f"surplus_per_buyer_{name}"] = buyer_surplus[:, :, mask].mean(axis=(0, 2))

    summary: dict[str, Any] = {
        "kernel": "market-lemons",
        "policies": mix_text(request.policies),
        "buyers": mix_text(request.buyers),
        "sellers": num_sellers,
        "sybils": num_sybil,
        "buyer_count": num_buyers,
        "dlc": request.dlc,
        "markets": request.markets,
        "days": days,
    }
    summary.update(score_summary(score, SCORES))
    summary["sybil_revenue_share"] = float(score["sybil_revenue_share"].mean())
    summary["sybil_trade_share"] = float(score["sybil_trade_share"].mean())
    summary["trades_per_day"] = float(score["volume"].mean())
    summary["consumer_surplus_per_market"] = float(score["consumer_surplus"].mean())
    summary["reference_surplus_per_market"] = float(score["reference_surplus"].mean())
    summary["retirements_per_market"] = float(rows["retired"].sum(axis=1).mean())
    for name, mask in members.items():
        summary[f"surplus_per_buyer_day_{name}"] = float(buyer_surplus[:, :, mask].mean())
    summary["compile_seconds"] = compile_seconds
    summary["market_steps_per_second"] = request.markets * days / run_seconds
    summary["agent_steps_per_second"] = request.markets * days * (num_sellers + num_buyers) / run_seconds
    title = f"market-lemons {summary['policies']} / {summary['buyers']}, dlc {request.dlc}"
    plots = {**lemons_figures(frame), "eas.png": eas_figure(summary, title)}
    return SimulationResult(metrics=pl.DataFrame(frame), summary=summary, plots=plots)


def lemons_figures(frame: dict) -> dict[str, Any]:
    """Price paths, consumer surplus against the all-honest reference, and Sybil shares of `run_lemons`'s frame."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    plots = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(frame["listed_price_honest"], label="listed, honest sellers")
    ax.plot(frame["listed_price_sybil"], label="listed, Sybil identities")
    ax.plot(frame["mean_trade_price"], color="black", label="paid (mean over trades)")
    ax.set_xlabel("day")
    ax.set_ylabel("price (money, mean over markets)")
    ax.legend(fontsize=8)
    plots["price_paths.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(frame["consumer_surplus"], label="realised")
    ax.plot(frame["reference_surplus"], linestyle="--", label="all-honest reference")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("day")
    ax.set_ylabel("consumer surplus per market-day (money)")
    ax.legend(fontsize=8)
    plots["surplus.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(frame["sybil_trade_share"], label="Sybil share of trades")
    ax.plot(frame["sybil_revenue_share"], label="Sybil share of revenue")
    ax.plot(frame["reputation_sybil"], linestyle=":", label="mean Sybil reputation")
    ax.plot(frame["reputation_honest"], linestyle=":", label="mean honest reputation")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("day")
    ax.legend(fontsize=8)
    plots["sybil_share.png"] = fig
    return plots


# -- the recorded study ----------------------------------------------------------------------------------------------

STUDY_SELLERS = STUDY_BUYER_COUNT = 12
STUDY_SYBILS = (0, 3, 6, 9)
STUDY_DLC = (1, 3, 5)
STUDY_BUYERS = ("naive:12", "naive:6,guardian:6", "guardian:12", "bayesian:12")
STUDY_COLUMNS = (
    "eas",
    "stability",
    "integrity",
    "welfare",
    "welfare_raw",
    "profitability",
    "sybil_revenue_share",
)  # the `alignment` means a cell reports
# The study's numeric inputs (the command line checks its flags through them).
STUDY_BOUNDS = {
    "markets": Bound("--markets", int, low=1, high=2**24, unit="markets per study cell"),
    "days": Bound("--days", int, low=1, high=100_000, unit="days per market"),
    "seed": Bound("--seed", int, low=0, high=2**31 - 1),
}


def check_study(markets: int, days: int, seed: int) -> tuple[int, int, int]:
    """The study's inputs checked (`UsageError` on a value out of range or a run too large for this machine)."""
    values = {"markets": markets, "days": days, "seed": seed}
    markets, days, seed = (STUDY_BOUNDS[key].check(value) for key, value in values.items())
    limits.check_memory(
        lemons_bytes(markets, days, STUDY_SELLERS, STUDY_BUYER_COUNT, max(STUDY_DLC)),
        f"the lemon study with {markets:,} markets x {days:,} days",
        "lower --markets or --days",
    )
    return markets, days, seed


def lemon_study(
    markets: int = 256, days: int = DEFAULT_DAYS, seed: int = 0, on_cell: Callable[[dict], None] | None = None
) -> list[dict]:
    """K x buyer mix x dlc, 12 seller slots and 12 buyers, one compiled function (view size 5; dlc is traced and the
    view draw does not depend on the view size, so dlc 3 here equals a run with view size 3), compiled before the
    first cell. One row per cell:
    ``buyers, dlc, sybils``, the means of `STUDY_COLUMNS`, ``trades_per_day``, ``consumer_surplus_per_day`` and the
    cell's ``seconds`` (after compile); `on_cell(row)` is called after each cell."""
    keys = jax.random.split(jax.random.key(seed), markets)
    mixes = {b: expand(parse_mix(b, BUYER_POLICIES, "--buyers"), BUYER_POLICIES) for b in STUDY_BUYERS}
    study_env = MarketLemons(num_sellers=STUDY_SELLERS, num_buyers=STUDY_BUYER_COUNT, view_size=max(STUDY_DLC))
    fn, _ = compile_only(
        batched_simulation(STUDY_SELLERS, max(STUDY_DLC), days),
        keys,
        default_lemons_params(num_sybil=STUDY_SYBILS[0], dlc=STUDY_DLC[0]),
        jnp.asarray(mixes[STUDY_BUYERS[0]], jnp.int32),
        compiler_options=compiler.options(),
    )
    table = []
    for buyers in STUDY_BUYERS:
        ids = jnp.asarray(mixes[buyers], jnp.int32)
        for dlc in STUDY_DLC:
            for sybils in STUDY_SYBILS:
                params = default_lemons_params(num_sybil=sybils, dlc=dlc)
                tick = time.perf_counter()
                rows = {k: np.asarray(v) for k, v in jax.block_until_ready(fn(keys, params, ids)).items()}
                seconds = time.perf_counter() - tick
                score = alignment(rows, study_env, params)
                row: dict[str, Any] = {"buyers": buyers, "dlc": dlc, "sybils": sybils}
                row.update({key: float(score[key].mean()) for key in STUDY_COLUMNS})
                row["trades_per_day"] = float(score["volume"].mean())
                row["consumer_surplus_per_day"] = float(score["consumer_surplus"].mean()) / days
                row["seconds"] = seconds
                table.append(row)
                if on_cell is not None:
                    on_cell(row)
    return table


def study_markdown(table: list[dict]) -> str:
    """The study as a Markdown table (every column but the timing; floats to 3 decimals), as docs/markets.md shows."""
    columns = [c for c in table[0] if c != "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        cells = (f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_figure(table: list[dict]):
    """Welfare score, Sybil revenue share, trades per day and EAS against K; colour = buyer mix, line style = dlc."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    panels = (
        ("welfare", "welfare score 1 / (1 + shortfall of CS vs all-honest)"),
        ("sybil_revenue_share", "Sybil share of revenue"),
        ("trades_per_day", "trades per day"),
        ("eas", "EAS"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 4))
    styles = {1: ":", 3: "-", 5: "--"}
    colors = dict(zip(STUDY_BUYERS, ("tab:red", "tab:orange", "tab:green", "tab:blue")))
    for ax, (key, label) in zip(axes, panels):
        for buyers in STUDY_BUYERS:
            for dlc in STUDY_DLC:
                cells = [r for r in table if r["buyers"] == buyers and r["dlc"] == dlc]
                ax.plot(
                    [r["sybils"] for r in cells],
                    [r[key] for r in cells],
                    linestyle=styles[dlc],
                    color=colors[buyers],
                    marker="o",
                    markersize=3,
                    label=f"{buyers}, dlc {dlc}" if key == "eas" else None,
                )
        ax.set_xlabel("Sybil identities K (of 12 sellers)")
        ax.set_title(label, fontsize=9)
    axes[-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return fig
