"""Market studies and throughput: `agentlab bench markets [--markets N]`.

Crash study (`crash_study`): dlc in {1, 3, 5} x number of stabilising firms 0..5 (the rest undercut), bankruptcy
rate, collapse rate and EAS; then market-crash throughput (`crash_throughput`: 5 firms, 50 consumers, scripted
firms, 365 days) over 4096 markets, compile time excluded, blocking on the result."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from agentlab import compiler, limits, timing
from agentlab.kernels.markets import crash
from agentlab.kernels.markets.crash import default_crash_params
from agentlab.limits import Bound

FIRMS = 5
CONSUMERS = 50
DLCS = (1, 3, 5)
# The `crash.alignment` columns of the study, in the order the table shows them (`collapsed` is the collapse rate).
COLUMNS = ("bankruptcy_rate", "collapsed", "eas", "stability", "integrity", "welfare", "profitability")
# The numeric inputs (the command line checks its flags through them).
BOUNDS = {
    "markets": Bound("--markets", int, low=1, high=2**24, unit="markets per study cell"),
    "throughput_markets": Bound("--throughput-markets", int, low=1, high=2**24, unit="markets in the timed call"),
    "days": Bound("--days", int, low=1, high=100_000, unit="days per market"),
}


def crash_env() -> crash.MarketCrash:
    """The benchmark's market: `FIRMS` firms, `CONSUMERS` consumers."""
    return crash.MarketCrash(num_firms=FIRMS, num_consumers=CONSUMERS)


def simulate(days: int) -> Callable:
    """``(keys (M,), params, firm ids (5,)) -> per-day rows``, `vmap` over markets (not yet jitted)."""
    env = crash_env()
    return jax.vmap(lambda k, p, ids: crash.simulate(k, env, p, ids, days), in_axes=(0, None, None))


def crash_bytes(markets: int, days: int) -> float:
    """Estimated peak memory of one call over `markets` markets: the per-day rows (a few dozen float32 per firm)
    plus the scan's carry, about 4 times over."""
    return 4.0 * markets * days * (FIRMS * 32 + 64) * 4 + 4.0 * markets * CONSUMERS * 64


def check_memory(markets: int, throughput_markets: int, days: int) -> None:
    limits.check_memory(
        crash_bytes(max(markets, throughput_markets), days),
        f"bench markets over {max(markets, throughput_markets):,} markets x {days:,} days",
        "lower --markets, --throughput-markets or --days",
    )


def crash_study(markets: int = 128, days: int = 365, on_cell: Callable[[dict], None] | None = None):
    """Mean alignment metrics (`COLUMNS`) of `markets` markets (seed 0) for every dlc in `DLCS` and every number of
    stabilising firms 0..5 (firm id 1; the rest undercut, id 0): a polars DataFrame, a row per cell.
    `on_cell(row)` is called after each cell."""
    import polars as pl

    fn = compiler.jit(simulate(days))
    rows = []
    for dlc in DLCS:
        for stabilisers in range(FIRMS + 1):
            ids = jnp.asarray([1] * stabilisers + [0] * (FIRMS - stabilisers), jnp.int32)
            params = default_crash_params(dlc=dlc)
            out = fn(jax.random.split(jax.random.key(0), markets), params, ids)
            s = crash.alignment({k: np.asarray(v) for k, v in out.items()}, crash_env(), params)
            row = {"dlc": dlc, "stabilisers": stabilisers, **{k: float(s[k].mean()) for k in COLUMNS}}
            rows.append(row)
            if on_cell is not None:
                on_cell(row)
    return pl.DataFrame(rows)


def crash_throughput(markets: int = 4096, days: int = 365) -> dict:
    """Market-steps (market-days) per second of one call over `markets` markets (seed 1; firms 0, 0, 0, 1, 1),
    compiled with `agentlab.compiler.options()` (`agentlab.timing.compile_and_run`)."""
    keys = jax.random.split(jax.random.key(1), markets)
    ids = jnp.asarray([0, 0, 0, 1, 1], jnp.int32)
    params = default_crash_params()
    _, compile_seconds, seconds = timing.compile_and_run(
        simulate(days), keys, params, ids, compiler_options=compiler.options()
    )
    steps = markets * days
    return {
        "throughput_markets": markets,
        "days": days,
        "compile_seconds": compile_seconds,
        "seconds": seconds,
        "market_steps_per_second": steps / seconds,
        "firm_steps_per_second": FIRMS * steps / seconds,
    }


def study_line(row: dict) -> str:
    """One row of the study as the recorded table prints it (docs/markets.md)."""
    return " ".join([str(row["dlc"]), str(row["stabilisers"]), *(f"{row[k]:.3f}" for k in COLUMNS)])


STUDY_HEADER = "dlc stabilisers bankruptcy_rate collapse_rate eas stability integrity welfare profitability"
