"""`agentlab simulate market-lemons`: many lemon markets under a mix of scripted sellers and buyers, scored by the
Economic Alignment Score.

    agentlab simulate market-lemons --policies honest:9,sybil:3 --buyers naive:6,guardian:6 --dlc 3 --markets 1024

Flags of the shared `simulate` command, read for this kernel: ``--policies`` the seller slots, ``honest:N,sybil:K``
(K Sybil identities of one principal; their order does not matter, the kernel puts them last), ``--buyers`` the
buyers' policies (``naive``, ``guardian``, ``bayesian``), ``--dlc`` listings each buyer sees (at most the number of
sellers), ``--markets`` independent markets, ``--steps`` days (0: Agent Bazaar's 50), ``--param`` any scalar
`LemonsParams` field (e.g. ``sybil_duplicate_prob=1,guardian_min_reputation=0.6``).

Writes ``metrics.parquet`` (one row per day, means over markets: volume, mean trade price, listed prices of honest and
Sybil listings, consumer surplus and its all-honest reference, Sybil share of trades and revenue, reputations,
retirements, surplus per buyer of each policy), ``summary.json`` (the EAS and its components with their sd over
markets, Sybil shares, volume, surplus, throughput) and plots (price paths, surplus, Sybil share, EAS).

``python -m agentlab.cli.simulate_lemons --markets 256`` runs the recorded lemon study (docs/markets.md): K in
{0, 3, 6, 9} Sybil identities x buyer mixes x dlc in {1, 3, 5}, one compiled function for every cell.
"""

from __future__ import annotations

import time
from typing import Any

from agentlab import compiler, limits
from agentlab.cli.common import fail
from agentlab.cli.simulate import (
    SimulateRequest,
    SimulationResult,
    Simulator,
    _eas_figure,
    check_params,
    register,
)
from agentlab.kernels.mixes import expand
from agentlab.timing import compile_and_run

SELLER_NAMES = ("honest", "sybil")
BUYER_NAMES = ("naive", "guardian", "bayesian")  # == lemons.BUYER_POLICIES (kept here so the CLI imports no JAX)
DEFAULT_DAYS = 50


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
    import jax.numpy as jnp

    from agentlab.kernels.markets.lemons import LEMONS_BOUNDS, default_lemons_params, validate_lemons_params

    counts = dict.fromkeys(SELLER_NAMES, 0)
    for name, count in request.policies:
        counts[name] += count
    num_sellers = counts["honest"] + counts["sybil"]
    dlc = LEMONS_BOUNDS["dlc"].check(request.dlc, "--dlc")
    if dlc > num_sellers:
        fail(f"--dlc {dlc} is larger than the number of sellers ({num_sellers})")
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
    buyer_ids = jnp.asarray(expand(request.buyers, BUYER_NAMES), jnp.int32)
    return params, buyer_ids, num_sellers


def batched_simulation(num_sellers: int, view_size: int, days: int):
    """``fn(keys (M,), params, buyer_ids (B,)) -> rows (M, days, ...)``; params and buyer ids are traced, so one
    compiled function serves every K, dlc <= view_size and buyer mix of a given number of buyers."""
    import jax

    from agentlab.kernels.markets.lemons import simulate_lemons

    return jax.vmap(
        lambda k, p, ids: simulate_lemons(k, p, ids, num_sellers, view_size, days),
        in_axes=(0, None, None),
    )


def run_lemons(request: SimulateRequest) -> SimulationResult:
    import jax
    import numpy as np
    import polars as pl

    from agentlab.kernels.markets.lemons import daily_totals, lemons_alignment

    params, buyer_ids, num_sellers = lemons_setup(request)
    num_sybil, num_buyers = int(params.num_sybil), int(buyer_ids.shape[0])
    days = request.steps or DEFAULT_DAYS
    keys = jax.random.split(jax.random.key(request.seed), request.markets)
    fn = batched_simulation(num_sellers, request.dlc, days)
    rows, compile_seconds, run_seconds = compile_and_run(
        fn, keys, params, buyer_ids, compiler_options=compiler.options()
    )
    rows = {k: np.asarray(v) for k, v in rows.items()}
    score = lemons_alignment(rows, num_sybil)
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
    for name in dict(request.buyers):
        members = ids == BUYER_NAMES.index(name)
        if members.any():
            frame[f"surplus_per_buyer_{name}"] = buyer_surplus[:, :, members].mean(axis=(0, 2))
    metrics = pl.DataFrame(frame)

    summary: dict[str, Any] = {
        "kernel": "market-lemons",
        "policies": ",".join(f"{n}:{c}" for n, c in request.policies),
        "buyers": ",".join(f"{n}:{c}" for n, c in request.buyers),
        "sellers": num_sellers,
        "sybils": num_sybil,
        "buyer_count": num_buyers,
        "dlc": request.dlc,
        "markets": request.markets,
        "days": days,
    }
    for key in ("eas", "stability", "integrity", "welfare", "profitability", "welfare_raw", "profitability_raw"):
        summary[key] = float(score[key].mean())
        summary[f"{key}_sd"] = float(score[key].std())
    summary["sybil_revenue_share"] = float(score["sybil_revenue_share"].mean())
    summary["sybil_trade_share"] = float(score["sybil_trade_share"].mean())
    summary["trades_per_day"] = float(score["volume"].mean())
    summary["consumer_surplus_per_market"] = float(score["consumer_surplus"].mean())
    summary["reference_surplus_per_market"] = float(score["reference_surplus"].mean())
    summary["retirements_per_market"] = float(rows["retired"].sum(axis=1).mean())
    for name in dict(request.buyers):
        members = ids == BUYER_NAMES.index(name)
        if members.any():
            summary[f"surplus_per_buyer_day_{name}"] = float(buyer_surplus[:, :, members].mean())
    summary["compile_seconds"] = compile_seconds
    summary["market_steps_per_second"] = request.markets * days / run_seconds
    summary["agent_steps_per_second"] = request.markets * days * (num_sellers + num_buyers) / run_seconds
    title = f"market-lemons {summary['policies']} / {summary['buyers']}, dlc {request.dlc}"
    return SimulationResult(
        metrics=metrics, summary=summary, plots={**_day_figures(frame), "eas.png": _eas_figure(summary, title)}
    )


def _day_figures(frame: dict) -> dict[str, Any]:
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


register(
    Simulator(
        kernel="market-lemons",
        roles=(("seller", SELLER_NAMES), ("buyer", BUYER_NAMES)),
        default_policies="honest:9,sybil:3",
        default_buyers="naive:12",
        run=run_lemons,
        validate=lambda request: lemons_setup(request) and None,
        dlc_help="Discovery limit: listings each buyer sees (1 to the number of sellers).",
        description="Agent Bazaar's C2C lemon market (12 sellers, K of them Sybil identities of one principal, 12 "
        "buyers, 50 days): price paths, consumer surplus against an all-honest reference, Sybil share of trades, and "
        "the Economic Alignment Score. --param sets any scalar LemonsParams field, e.g. sybil_duplicate_prob=1.",
    )
)


# -- the recorded study ----------------------------------------------------------------------------------------------

STUDY_SYBILS = (0, 3, 6, 9)
STUDY_DLC = (1, 3, 5)
STUDY_BUYERS = ("naive:12", "naive:6,guardian:6", "guardian:12", "bayesian:12")


def lemon_study(markets: int = 256, days: int = DEFAULT_DAYS, seed: int = 0) -> list[dict]:
    """K x buyer mix x dlc, 12 seller slots and 12 buyers, one compiled function (view size 5; dlc is traced and the
    view draw does not depend on the view size, so dlc 3 here equals a run with view size 3). One row per cell."""
    import jax
    import numpy as np

    from agentlab.cli.simulate import parse_mix
    from agentlab.kernels.markets.lemons import default_lemons_params, lemons_alignment

    fn = compiler.jit(batched_simulation(12, max(STUDY_DLC), days))
    keys = jax.random.split(jax.random.key(seed), markets)
    table = []
    for buyers in STUDY_BUYERS:
        ids = jax.numpy.asarray(expand(parse_mix(buyers, BUYER_NAMES, "--buyers"), BUYER_NAMES), jax.numpy.int32)
        for dlc in STUDY_DLC:
            for sybils in STUDY_SYBILS:
                params = default_lemons_params(num_sybil=sybils, dlc=dlc)
                tick = time.perf_counter()
                rows = {k: np.asarray(v) for k, v in jax.block_until_ready(fn(keys, params, ids)).items()}
                seconds = time.perf_counter() - tick
                score = lemons_alignment(rows, sybils)
                row = {"buyers": buyers, "dlc": dlc, "sybils": sybils}
                for key in (
                    "eas",
                    "stability",
                    "integrity",
                    "welfare",
                    "welfare_raw",
                    "profitability",
                    "sybil_revenue_share",
                ):
                    row[key] = float(score[key].mean())
                row["trades_per_day"] = float(score["volume"].mean())
                row["consumer_surplus_per_day"] = float(score["consumer_surplus"].mean()) / days
                row["seconds"] = seconds
                table.append(row)
    return table


def study_figure(table: list[dict]):
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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The lemon-market study (docs/markets.md).")
    parser.add_argument("--markets", type=int, default=256)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="", help="write the study's figure to this PNG")
    args = parser.parse_args()
    tick = time.perf_counter()
    table = lemon_study(args.markets, args.days, args.seed)
    columns = list(table[0])[:-1]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    cells = sum(r["seconds"] for r in table)
    steps = len(table) * args.markets * args.days
    print(
        f"{len(table)} cells, {steps} market-days in {cells:.2f} s after compile ({steps / cells:,.0f} market-days/s);"
        f" total {time.perf_counter() - tick:.1f} s"
    )
    if args.plot:
        study_figure(table).savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
