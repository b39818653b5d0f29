"""grid-curtailment: throughput benchmark and the solver-versus-bounded study.

    python -m agentlab.bench.grid bench --events 4096 --rounds 6
    python -m agentlab.bench.grid study --out docs/grid

`bench`: participant-rounds per second of the kernel's `step` (auto-reset on, uniformly random actions) over
`events` parallel events, compile time excluded, blocking on results; each event-round counts `num_agents`
participant-rounds. `study`: outcome rates of every policy family on a grid of deadlines x shortfall sizes
(`study.parquet`, `study.md`, `study.png` in `--out`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEADLINES = (1, 2, 3, 4, 6, 8)
SHORTFALLS = (0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
MIXES = ("solver:5", "bounded:5", "sampler:5", "prorata:5", "solver:2,bounded:3", "bounded:3,solver:2")


def bench(events: int, rounds: int, repeats: int = 3) -> dict:
    import jax

    from agentlab.kernels import make

    env, params = make("grid-curtailment")

    def run(keys, state):
        def body(state, key):
            k_act, k_env = jax.random.split(key)
            action = env.action_space().sample(k_act)
            _, state, reward, *_ = env.step(k_env, state, action, params)
            return state, reward

        return jax.lax.scan(body, state, jax.random.split(keys, rounds))

    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    batched = jax.jit(jax.vmap(run))
    keys = jax.random.split(jax.random.key(0), events)
    _, state = reset(keys, params)
    tick = time.perf_counter()
    compiled = batched.lower(keys, state).compile()
    compile_seconds = time.perf_counter() - tick
    jax.block_until_ready(compiled(keys, state))
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        jax.block_until_ready(compiled(keys, state))
        best = min(best, time.perf_counter() - tick)
    rounds_total = events * rounds
    return {
        "events": events,
        "rounds_per_event": rounds,
        "participants": env.num_agents,
        "substeps_per_round": env.substeps,
        "compile_seconds": compile_seconds,
        "seconds": best,
        "event_rounds_per_second": rounds_total / best,
        "participant_rounds_per_second": rounds_total * env.num_agents / best,
        "device": str(jax.devices()[0]),
    }


def study(out: Path, events: int = 512, seed: int = 0) -> None:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import polars as pl

    from agentlab.kernels.grid.curtailment import GridCurtailment, default_grid_params
    from agentlab.kernels.grid.metrics import aggregate
    from agentlab.kernels.grid.policies import POLICIES, PolicyParams, policy_ids, simulate_events
    from agentlab.kernels.mixes import parse_mix

    env = GridCurtailment()
    rounds = max(DEADLINES)
    fn = jax.jit(lambda key, p, ids, pp: simulate_events(key, env, p, ids, pp, events, rounds))
    rows = []
    for mix in MIXES:
        ids = jnp.asarray(policy_ids(parse_mix(mix, POLICIES, "--policies")))
        for deadline in DEADLINES:
            for shortfall in SHORTFALLS:
                params = default_grid_params(shortfall_min=shortfall, shortfall_max=shortfall, deadline=deadline)
                metrics, _ = fn(jax.random.key(seed), params, ids, PolicyParams())
                agg = aggregate(jax.tree.map(np.asarray, metrics))
                rows.append({"policies": mix, "deadline": deadline, "shortfall": shortfall, **agg})
    frame = pl.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out / "study.parquet")
    lines = []
    for value in ("compromise_rate", "authority_rate", "automatic_rate"):
        lines.append(f"\n{value} (rows: policies x deadline, columns: shortfall / demand)\n")
        lines.append("| policies | deadline | " + " | ".join(f"{s:.2f}" for s in SHORTFALLS) + " |")
        lines.append("|---|---|" + "---|" * len(SHORTFALLS))
        for mix in MIXES:
            for deadline in DEADLINES:
                sub = frame.filter((pl.col("policies") == mix) & (pl.col("deadline") == deadline)).sort("shortfall")
                lines.append(f"| {mix} | {deadline} | " + " | ".join(f"{v:.2f}" for v in sub[value]) + " |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, len(MIXES), figsize=(3.2 * len(MIXES), 3.2), sharey=True)
    for ax, mix in zip(axes, MIXES):
        grid = np.array(
            [
                frame.filter((pl.col("policies") == mix) & (pl.col("deadline") == d)).sort("shortfall")[
                    "compromise_rate"
                ]
                for d in DEADLINES
            ]
        )
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", origin="lower", aspect="auto")
        ax.set_xticks(range(len(SHORTFALLS)), [f"{s:.2f}" for s in SHORTFALLS], fontsize=7)
        ax.set_yticks(range(len(DEADLINES)), DEADLINES)
        ax.set_title(mix, fontsize=9)
        ax.set_xlabel("shortfall / demand")
    axes[0].set_ylabel("deadline (rounds)")
    fig.colorbar(image, ax=axes, label="compromise rate")
    fig.savefig(out / "study.png", dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--events", type=int, default=4096)
    b.add_argument("--rounds", type=int, default=6)
    s = sub.add_parser("study")
    s.add_argument("--out", type=Path, default=Path("docs/grid"))
    s.add_argument("--events", type=int, default=512)
    args = parser.parse_args()
    if args.what == "bench":
        import orjson

        print(orjson.dumps(bench(args.events, args.rounds), option=orjson.OPT_INDENT_2).decode())
    else:
        study(args.out, args.events)


if __name__ == "__main__":
    main()
