"""Market studies and throughput: `python -m agentlab.bench.markets [--markets N]`.

Crash study: dlc in {1, 3, 5} x number of stabilising firms 0..5 (the rest undercut), bankruptcy rate, collapse rate
and EAS; then market-crash throughput (5 firms, 50 consumers, scripted firms, 365 days) over 4096 markets."""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from agentlab import compiler
from agentlab.kernels.markets.crash import crash_alignment, default_crash_params, simulate_crash


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markets", type=int, default=128)
    parser.add_argument("--throughput-markets", type=int, default=4096)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    days = args.days
    fn = compiler.jit(jax.vmap(lambda k, p, ids: simulate_crash(k, p, ids, 50, days), in_axes=(0, None, None)))
    print("dlc stabilisers bankruptcy_rate collapse_rate eas stability integrity welfare profitability")
    for dlc in (1, 3, 5):
        for stabilisers in range(6):
            ids = jnp.asarray([1] * stabilisers + [0] * (5 - stabilisers), jnp.int32)
            params = default_crash_params(dlc=dlc)
            rows = fn(jax.random.split(jax.random.key(0), args.markets), params, ids)
            s = crash_alignment({k: np.asarray(v) for k, v in rows.items()}, params)
            print(
                dlc,
                stabilisers,
                *(
                    f"{float(s[k].mean()):.3f}"
                    for k in (
                        "bankruptcy_rate",
                        "collapsed",
                        "eas",
                        "stability",
                        "integrity",
                        "welfare",
                        "profitability",
                    )
                ),
                flush=True,
            )
    keys = jax.random.split(jax.random.key(1), args.throughput_markets)
    ids = jnp.asarray([0, 0, 0, 1, 1], jnp.int32)
    params = default_crash_params()
    tick = time.perf_counter()
    compiled = fn.lower(keys, params, ids).compile()
    compile_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    jax.block_until_ready(compiled(keys, params, ids))
    seconds = time.perf_counter() - tick
    steps = args.throughput_markets * days
    print(
        f"market-crash: {args.throughput_markets} markets x {days} days in {seconds:.2f} s = "
        f"{steps / seconds:,.0f} market-steps/s ({5 * steps / seconds:,.0f} firm-steps/s), "
        f"compile {compile_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
