"""grid-curtailment: throughput benchmark and the solver-versus-bounded study.

    agentlab bench grid --events 4096 --rounds 6
    agentlab bench grid-study --out runs/grid-study

`throughput`: participant-rounds per second of the kernel's `step` (auto-reset on, uniformly random actions) over
`events` parallel events, compile time excluded, blocking on results, best of `repeats` timed calls; each
event-round counts `num_agents` participant-rounds. `study`: the outcome split of every policy mix over
shortfall x price cap (`study_markdown` and `study_figure` render it).
"""

from __future__ import annotations

import math

from agentlab import timing
from agentlab.limits import Bound

SHORTFALLS = (0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
# Around the classes' VoLL (interruptible 500, residential 12k, industrial 20k, commercial 40k, critical 150k $/MWh).
PRICE_CAPS = (2_000.0, 5_000.0, 15_000.0, 30_000.0, 60_000.0, 200_000.0)
MIXES = ("solver:5", "bounded:5", "sampler:5", "prorata:5", "solver:2,bounded:3")


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


def study(events: int = 256, seed: int = 0, on_cell=None):
    """The outcome split of grid-curtailment (docs/grid.md, "Study"): `aggregate` rates of every mix in
    `MIXES` on every shortfall x price cap, default params otherwise, the same `events` event keys (seed
    `seed`) in every cell; a polars DataFrame with a row per (policies, shortfall, price_cap). `on_cell()` is
    called after each mix (progress). One compilation per mix: shortfall and cap are traced params."""
    import polars as pl

    from agentlab.kernels.grid.curtailment import default_grid_params
    from agentlab.kernels.grid.policies import POLICIES, outcome_split
    from agentlab.kernels.mixes import parse_mix

    params = default_grid_params()
    rows = []
    for mix in MIXES:
        rows += outcome_split(seed, (parse_mix(mix, POLICIES, "--policies"),), SHORTFALLS, PRICE_CAPS, events, params)
        if on_cell is not None:
            on_cell()
    return pl.DataFrame(rows)


def study_markdown(frame) -> str:
    """The study's tables: compromise, authority and automatic rates (rows: policies x price cap, columns:
    shortfall / demand), headed by the classes' values of lost load."""
    import polars as pl

    from agentlab.kernels.grid.curtailment import CLASSES, default_grid_params

    voll = dict(zip(CLASSES, map(float, default_grid_params().class_voll)))
    events = int(frame["episodes"][0]) if "episodes" in frame.columns else 0
    lines = [f"Outcome split, {events} events per cell, default params (VoLL $/MWh: {voll}).", ""]
    for rate in ("compromise_rate", "authority_rate", "automatic_rate"):
        lines += [f"{rate} (rows: policies x price cap $/MWh, columns: shortfall / demand)", ""]
        lines += ["| policies | price cap | " + " | ".join(f"{s:.2f}" for s in SHORTFALLS) + " |"]
        lines += ["|---|---|" + "---|" * len(SHORTFALLS)]
        for mix in frame["policies"].unique(maintain_order=True):
            for cap in PRICE_CAPS:
                cells = frame.filter((pl.col("policies") == mix) & (pl.col("price_cap") == cap)).sort("shortfall")
                lines.append(f"| {mix} | {cap:,.0f} | " + " | ".join(f"{v:.2f}" for v in cells[rate]) + " |")
        lines.append("")
    return "\n".join(lines)


def study_figure(frame):
    """Heat maps of the compromise, authority and automatic rates (rows) of each mix (columns): price cap x
    shortfall (a matplotlib figure)."""
    import polars as pl

    from agentlab.rundir import pyplot

    plt = pyplot()
    mixes = list(frame["policies"].unique(maintain_order=True))
    fig, axes = plt.subplots(3, len(mixes), figsize=(3.2 * len(mixes), 8), sharex=True, sharey=True, squeeze=False)
    image = None
    for col, mix in enumerate(mixes):
        for row, rate in enumerate(("compromise_rate", "authority_rate", "automatic_rate")):
            ax = axes[row, col]
            grid = [
                list(frame.filter((pl.col("policies") == mix) & (pl.col("price_cap") == cap)).sort("shortfall")[rate])
                for cap in PRICE_CAPS
            ]
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
            ax.set_xticks(range(len(SHORTFALLS)), [f"{s:.2f}" for s in SHORTFALLS], fontsize=7)
            ax.set_yticks(range(len(PRICE_CAPS)), [f"{c / 1000:g}k" for c in PRICE_CAPS], fontsize=7)
            if row == 0:
                ax.set_title(mix, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{rate.removesuffix('_rate')}\nprice cap $/MWh", fontsize=8)
            if row == 2:
                ax.set_xlabel("shortfall / demand", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="share of events")
    return fig
