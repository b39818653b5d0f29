"""grid-curtailment: throughput benchmark and the solver-versus-bounded study.

    agentlab bench grid --events 4096 --rounds 6
    agentlab bench grid-study --out runs/grid-study

`throughput`: participant-rounds per second of the kernel's `step` (auto-reset on, uniformly random actions) over
`events` parallel events, compile time excluded, blocking on results, best of `repeats` timed calls; each
event-round counts `num_agents` participant-rounds. `study`: outcome rates of every policy family on a grid of
deadlines x shortfall sizes (`study_markdown` and `study_figure` render it).
"""

from __future__ import annotations

import math

from agentlab import timing
from agentlab.limits import Bound

DEADLINES = (1, 2, 3, 4, 6, 8)
SHORTFALLS = (0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
MIXES = ("solver:5", "bounded:5", "sampler:5", "prorata:5", "solver:2,bounded:3", "bounded:3,solver:2")


# The numeric inputs of `throughput` and `study` (the command line checks its flags through them).
BOUNDS = {
    "events": Bound("--events", int, low=1, high=2**24, unit="parallel events"),
    "rounds": Bound("--rounds", int, low=1, high=10_000, unit="rounds per event per timed call"),
    "repeats": Bound("--repeats", int, low=1, high=10_000, unit="timed calls (best reported)"),
    "seed": Bound("--seed", int, low=0, high=2**31 - 1),
}


def event_bytes() -> int:
    """Bytes of one event's state (shapes from `jax.eval_shape`, nothing allocated)."""
    import jax

    from agentlab.kernels import make

    env, params = make("grid-curtailment")
    shapes = jax.eval_shape(env.reset, jax.random.key(0), params)
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def throughput(events: int, rounds: int, repeats: int = 3) -> dict:
    """Participant-rounds per second of `events` events x `rounds` rounds (best of `repeats` timed calls after
    a warm-up), with the compile seconds and the device."""
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
    keys = jax.random.split(jax.random.key(0), events)
    _, state = reset(keys, params)
    compiled, compile_seconds = timing.compile_only(jax.vmap(run), keys, state)
    times = timing.time_interleaved({"grid": compiled}, lambda name, r: (keys, state), repeats)
    best = min(times["grid"])
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


def study(events: int = 512, seed: int = 0, on_cell=None):
    """Outcome rates (`agentlab.kernels.grid.metrics.aggregate`) of every mix in `MIXES` on every deadline x
    shortfall: a polars DataFrame with a row per (policies, deadline, shortfall). `on_cell()` is called after
    each cell (progress)."""
    import jax
    import jax.numpy as jnp
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
                if on_cell is not None:
                    on_cell()
    return pl.DataFrame(rows)


def study_markdown(frame) -> str:
    """The study's tables (compromise, authority and automatic rates: policies x deadline by shortfall)."""
    import polars as pl

    lines = []
    for value in ("compromise_rate", "authority_rate", "automatic_rate"):
        lines.append(f"\n{value} (rows: policies x deadline, columns: shortfall / demand)\n")
        lines.append("| policies | deadline | " + " | ".join(f"{s:.2f}" for s in SHORTFALLS) + " |")
        lines.append("|---|---|" + "---|" * len(SHORTFALLS))
        for mix in MIXES:
            for deadline in DEADLINES:
                sub = frame.filter((pl.col("policies") == mix) & (pl.col("deadline") == deadline)).sort("shortfall")
                lines.append(f"| {mix} | {deadline} | " + " | ".join(f"{v:.2f}" for v in sub[value]) + " |")
    return "\n".join(lines) + "\n"


def study_figure(frame):
    """The compromise rate of each mix as a deadline x shortfall heat map (a matplotlib figure)."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    import numpy as np
    import polars as pl

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
    return fig
