"""grid-curtailment under a mix of scripted participants: the outcome split, offers per round and frequency.

    from agentlab.studies.grid import run_grid
    from agentlab.studies.simulation import SimulateRequest
    request = SimulateRequest(policies=(("solver", 2), ("bounded", 3)), markets=4096, params={"shortfall": 0.1})
    result = run_grid(request)
    result.summary["compromise_rate"]

What `agentlab simulate grid-curtailment` computes (``request.markets`` is the number of events, ``request.steps``
the deadline in rounds, 0: the kernel's): ``metrics`` one row per round (share of events still negotiating, mean
offer per family and per participant, mean ask, frequency deviation, reserves); ``summary`` the aggregated outcome
metrics of `agentlab.kernels.grid.metrics.aggregate`, the configuration and throughput; ``plots`` outcome shares,
offers per round, frequency. ``request.params`` are numeric overrides: any scalar `GridParams` or `PolicyParams`
field, ``shortfall`` (both ends of the shortfall range), ``load_<class>`` (MW) and ``voll_<class>`` ($/MWh), each
checked against its declaration beside the kernel's params (`GRID_BOUNDS`, `POLICY_BOUNDS`, `CLASS_BOUNDS`,
`SHORTFALL`).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from agentlab import compiler, limits
from agentlab.kernels.grid.curtailment import (
    CLASS_BOUNDS,
    GRID_BOUNDS,
    SHORTFALL,
    GridCurtailment,
    default_grid_params,
    validate_grid_params,
)
from agentlab.kernels.grid.metrics import aggregate
from agentlab.kernels.grid.names import CLASSES, OUTCOMES, POLICIES
from agentlab.kernels.grid.policies import (
    POLICY_BOUNDS,
    PolicyParams,
    policy_ids,
    simulate,
    validate_policy_params,
)
from agentlab.studies.simulation import SimulateRequest, SimulationResult, check_params, mix_text, over_markets


def grid_bytes(events: int, rounds: int, participants: int) -> float:
    """Estimated peak memory of `run_grid`: per event-round the trace (offer and ask per participant, frequency,
    reserves, active) and its float64 copies; per event the state, metrics and the policies' candidates."""
    per_round = participants * (2 * 4 + 4 * 8) + 3 * 4 + 3 * 8
    per_event = participants * 512 + 2048
    return float(events) * (rounds * per_round + per_event)


def grid_setup(mix: tuple[tuple[str, int], ...], overrides: dict[str, float], deadline: int = 0, events: int = 1):
    """``(env, params, policy_params, ids)`` for a policy mix and ``--param`` overrides; bad input (a --param key or
    value, a --deadline out of range, a run too large for this machine) raises `UsageError` (one line)."""
    ids = policy_ids(mix)
    params = default_grid_params()
    settable = {**GRID_BOUNDS, **POLICY_BOUNDS, **CLASS_BOUNDS, "shortfall": SHORTFALL}
    values = check_params(overrides, settable)
    grid_changes: dict[str, Any] = {}
    policy_changes: dict[str, Any] = {}
    loads = list(map(float, params.class_load_mw))
    volls = list(map(float, params.class_voll))
    for key, value in values.items():
        if key == "shortfall":
            grid_changes["shortfall_min"] = grid_changes["shortfall_max"] = value
        elif key in CLASS_BOUNDS and key.startswith("load_"):
            loads[CLASSES.index(key[5:])] = value
        elif key in CLASS_BOUNDS:
            volls[CLASSES.index(key[5:])] = value
        elif key in GRID_BOUNDS:
            grid_changes[key] = value
        else:
            policy_changes[key] = value
    if deadline:
        grid_changes["deadline"] = GRID_BOUNDS["deadline"].check(deadline, "--deadline (--steps)")
    params = params.replace(
        class_load_mw=jnp.asarray(loads, jnp.float32), class_voll=jnp.asarray(volls, jnp.float32), **grid_changes
    )
    params = validate_grid_params(params)
    pp = validate_policy_params(PolicyParams(**policy_changes))
    rounds = int(params.deadline)
    limits.check_memory(
        grid_bytes(events, rounds, len(ids)),
        f"grid-curtailment with {events:,} events x {rounds:,} rounds x {len(ids)} participants",
        "lower --events or --deadline",
    )
    return GridCurtailment(num_agents=len(ids)), params, pp, ids


def validate_grid(request: SimulateRequest) -> None:
    """`grid_setup`'s checks alone (`UsageError` on bad input)."""
    grid_setup(request.policies, request.params, request.steps, request.markets)


def run_grid(request: SimulateRequest) -> SimulationResult:
    """Simulate ``request.markets`` events (one compiled call) and aggregate their outcomes."""
    env, params, pp, ids = grid_setup(request.policies, request.params, request.steps, request.markets)
    deadline = int(params.deadline)
    events = request.markets
    simulate_events = over_markets(  # request.devices > 1: events split over devices
        lambda keys, p, q: jax.vmap(lambda k: simulate(k, env, p, ids, deadline, policy_params=q))(keys),
        request,
        replicated=2,
    )
    fn = compiler.jit(lambda key, p, q: simulate_events(jax.random.split(key, events), p, q))
    args = (jax.random.key(request.seed), params, pp)
    tick = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    metrics, trace = jax.block_until_ready(compiled(*args))
    run_seconds = time.perf_counter() - tick
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    trace = {k: np.asarray(v) for k, v in trace.items()}  # (events, rounds, ...)
    summary: dict[str, Any] = {
        "kernel": "grid-curtailment",
        "policies": mix_text(request.policies),
        "participants": len(ids),
        "classes": ",".join(env.class_names),
        "events": events,
        "deadline_rounds": deadline,
        "shortfall_min": float(params.shortfall_min),
        "shortfall_max": float(params.shortfall_max),
        **aggregate(metrics),
    }
    active = trace["active"]  # (E, R)
    rounds_played = float(active.sum())
    summary["compile_seconds"] = compile_seconds
    summary["event_rounds_per_second"] = rounds_played / run_seconds
    summary["participant_rounds_per_second"] = rounds_played * len(ids) / run_seconds

    names = [POLICIES[i] for i in ids]
    weight = active.astype(np.float64)
    count = np.maximum(weight.sum(axis=0), 1.0)
    frame: dict[str, Any] = {
        "seed": np.full(deadline, request.seed),
        "step": np.arange(1, deadline + 1),
        "wall_seconds": np.full(deadline, compile_seconds + run_seconds),
        "negotiating_share": weight.mean(axis=0),
        "mean_ask": (trace["ask"].mean(axis=2) * weight).sum(axis=0) / count,
        "mean_df_hz": trace["df_hz"].mean(axis=0),
        "mean_reserve_mwh": trace["reserve_mwh"].mean(axis=0),
    }
    for name in dict.fromkeys(names):
        members = [i for i, n in enumerate(names) if n == name]
        frame[f"mean_offer_{name}"] = (trace["offer"][:, :, members].mean(axis=2) * weight).sum(axis=0) / count
    for i, cls in enumerate(env.class_names):
        frame[f"mean_offer_{i}_{cls}"] = (trace["offer"][:, :, i] * weight).sum(axis=0) / count
    plots = grid_figures(frame, summary, list(dict.fromkeys(names)))
    return SimulationResult(metrics=pl.DataFrame(frame), summary=summary, plots=plots)


def grid_figures(frame: dict, summary: dict, families: list[str]) -> dict[str, Any]:
    """Outcome shares, mean offer per round of each policy family, and frequency, of `run_grid`'s frame and
    summary."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    steps = frame["step"]
    plots = {}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [outcome.replace("_", " ") for outcome in OUTCOMES[1:]]  # compromise, authority decision, automatic ...
    rates = [summary["compromise_rate"], summary["authority_rate"], summary["automatic_rate"]]
    ax.bar(labels, rates, color=["tab:green", "tab:red", "tab:orange"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"share of {summary['events']} events")
    ax.set_title(f"grid-curtailment {summary['policies']}, deadline {summary['deadline_rounds']}", fontsize=9)
    plots["outcomes.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in families:
        ax.plot(steps, frame[f"mean_offer_{name}"], marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("mean offered fraction of load (negotiating events)")
    ax.legend()
    plots["offers.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, frame["mean_df_hz"], marker="o")
    ax.set_xlabel("round")
    ax.set_ylabel("mean frequency deviation at round end (Hz)")
    plots["frequency.png"] = fig
    return plots
