"""`agentlab simulate KERNEL`: many markets under a mix of scripted policies, scored by the Economic Alignment Score.

    agentlab simulate market-crash --policies undercut:3,stabilise:2 --dlc 3 --markets 1024 --out DIR

Each kernel plugs in through a small registry: a `Simulator` names its policy families (role -> valid policy names)
and a ``run(request) -> SimulationResult`` function. A new kernel (say `grid-curtailment`) adds
``register(Simulator(...))`` in its own module and this command's logic stays as it is.

Each kernel's sub-command has only the options that apply to it: ``--buyers`` where the kernel has a second role,
``--dlc`` where it has a discovery limit. Every value is checked before anything runs or is written: the shared
options here (`EPISODES`, `STEPS`, `SEED`), the kernel's ``--param`` keys and values through the kernel's own
`agentlab.limits.Bound` declarations, and the run's memory estimate (`agentlab.limits.check_memory`).
"""

import dataclasses
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from agentlab import compiler, limits
from agentlab.cli.common import (
    Force,
    Json,
    Out,
    Quiet,
    Seed,
    default_out,
    fail,
    handle_errors,
    print_json,
    progress_display,
)
from agentlab.errors import choices
from agentlab.kernels.mixes import expand, parse_mix  # noqa: F401 (parse_mix: the plug-ins use it)
from agentlab.limits import Bound
from agentlab.timing import compile_and_run

app = typer.Typer(
    help="Simulate many episodes of a kernel under a mix of scripted policies: markets (scored by the Economic "
    "Alignment Score) and grid curtailment (outcome split).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The options every simulator shares (a kernel's own numbers are declared beside its params).
EPISODES = Bound("--episodes (--markets, --events)", int, low=1, high=limits.MAX_INDEX, unit="independent episodes")
STEPS = Bound("--steps (--deadline)", int, low=0, high=limits.MAX_INDEX, unit="steps per episode; 0: the default")
SEED = Bound("--seed", int, low=0, high=2**31 - 1)  # as the shared --seed option (cli.common.Seed)


@dataclasses.dataclass(frozen=True)
class SimulateRequest:
    """What the command hands a simulator (already parsed and checked for shape, not for kernel semantics)."""

    policies: tuple[tuple[str, int], ...]  # the first role's mix (firms, sellers, ...), in order
    buyers: tuple[tuple[str, int], ...]  # the second role's mix, if the kernel has one (else empty)
    dlc: int | None  # the discovery limit, if the kernel has one (else None)
    markets: int
    steps: int
    seed: int
    params: dict[str, float]  # numeric overrides of the kernel's params (--param key=value)


@dataclasses.dataclass
class SimulationResult:
    metrics: Any  # polars DataFrame, tidy: seed, step, wall_seconds, ...
    summary: dict
    plots: dict[str, Any]  # file name -> matplotlib figure


@dataclasses.dataclass(frozen=True)
class Simulator:
    kernel: str
    roles: tuple[tuple[str, tuple[str, ...]], ...]  # (role, valid policy names): first --policies, then --buyers
    default_policies: str
    default_buyers: str
    run: Callable[[SimulateRequest], SimulationResult]
    description: str = ""
    # Checks a request's kernel semantics and memory (raise `UsageError`) before the run directory is created.
    validate: Callable[[SimulateRequest], None] | None = None
    headline: tuple[str, ...] = ("eas", "stability", "integrity", "welfare", "profitability")  # summary keys printed
    dlc_help: str | None = None  # the --dlc option's help; None: the kernel has no discovery limit (no --dlc)
    max_agents: int = 4096  # at most this many agents per role (--policies, --buyers)


SIMULATORS: dict[str, Simulator] = {}
_INSTALLED = False


def register(simulator: Simulator) -> Simulator:
    """Add a simulator; after `install` (a plug-in module imported first) its sub-command is added at once."""
    SIMULATORS[simulator.kernel] = simulator
    if _INSTALLED:
        app.command(simulator.kernel)(_command_for(simulator))
    return simulator


def parse_params(text: str) -> dict[str, float]:
    """``"shock_day=25,shock_cost=10"`` -> ``{"shock_day": 25.0, "shock_cost": 10.0}``; the values' ranges are the
    kernel's to check (`check_params`)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep:
            fail(f"--param {part!r}: expected key=value")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            fail(f"--param {part!r}: {value!r} is not a number")
    return out


def check_params(params: dict[str, float], bounds: dict[str, Bound]) -> dict[str, Any]:
    """``--param`` overrides checked against a kernel's declarations: an unknown key, or a value that is NaN,
    infinite or out of its range, is a `UsageError`; returns the values converted (ints for integer fields)."""
    for key in params:
        if key not in bounds:
            fail(f"--param {key!r}: valid keys are {choices(sorted(bounds))}")
    return limits.check_all(params, bounds, "--param")


# Options every simulator has (module level, so each command's signature is built from the same pieces).
_EPISODES = Annotated[
    int,
    typer.Option(
        "--episodes", "--markets", "--events", help="Independent episodes simulated at once (markets; grid events)."
    ),
]
_STEPS = Annotated[
    int,
    typer.Option(
        "--steps",
        "--deadline",
        help="Steps per episode (market days; a grid event's deadline in rounds); 0: the kernel's default.",
    ),
]
_PARAM = Annotated[str, typer.Option("--param", help="Numeric params overrides, e.g. shock_day=25.")]


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _command_for(simulator: Simulator) -> Callable[..., None]:
    """The sub-command of one simulator. Its signature (which Typer reads to build the options) is composed here:
    ``--buyers`` only for a kernel with a second role, ``--dlc`` only for a kernel with a discovery limit."""
    first_role, first_names = simulator.roles[0]
    second = simulator.roles[1] if len(simulator.roles) > 1 else None
    help_first = f"{first_role} policies, name:count,... from {', '.join(first_names)}"
    policies = Annotated[str, typer.Option("--policies", help=help_first)]
    parameters = [_option("policies", policies, simulator.default_policies)]
    if second is not None:
        help_second = f"{second[0]} policies, name:count,... from {', '.join(second[1])}"
        parameters.append(
            _option("buyers", Annotated[str, typer.Option("--buyers", help=help_second)], simulator.default_buyers)
        )
    if simulator.dlc_help is not None:
        parameters.append(_option("dlc", Annotated[int, typer.Option("--dlc", help=simulator.dlc_help)], 3))
    parameters += [
        _option("markets", _EPISODES, 1024),
        _option("steps", _STEPS, 0),
        _option("param", _PARAM, ""),
        _option("seed", Seed, 0),
        _option("out", Out, None),
        _option("force", Force, False),
        _option("json", Json, False),
        _option("quiet", Quiet, False),
    ]

    @handle_errors
    def command(**options: Any) -> None:
        request = SimulateRequest(
            policies=parse_mix(options["policies"], first_names, "--policies", simulator.max_agents),
            buyers=parse_mix(options["buyers"], second[1], "--buyers", simulator.max_agents) if second else (),
            dlc=options.get("dlc"),
            markets=EPISODES.check(options["markets"]),
            steps=STEPS.check(options["steps"]),
            seed=SEED.check(options["seed"]),
            params=parse_params(options["param"]),
        )
        execute(simulator, request, options["out"], options["force"], options["json"], options["quiet"])

    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = simulator.description
    return command


def execute(simulator: Simulator, request: SimulateRequest, out, force: bool, json: bool, quiet: bool) -> dict:
    from agentlab import rundir

    if simulator.validate is not None:
        simulator.validate(request)  # bad input: one line, nothing written
    out = Path(out or default_out(f"simulate-{simulator.kernel}"))
    rundir.check_out(out, force=force)
    config = {"kernel": simulator.kernel, **dataclasses.asdict(request)}
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    with rundir.open_run(out, f"agentlab simulate {simulator.kernel}", config, force=force) as work:
        started = time.perf_counter()
        with progress_display(
            SpinnerColumn(), TextColumn(f"simulate {simulator.kernel}"), TimeElapsedColumn(), quiet=quiet
        ) as p:
            p.add_task("run", total=None)
            result = simulator.run(request)
        result.summary["wall_seconds"] = time.perf_counter() - started
        rundir.write_parquet(work / "metrics.parquet", result.metrics)
        rundir.write_json(work / "summary.json", result.summary)
        for name, figure in result.plots.items():
            rundir.save_figure(work / "plots" / name, figure)
    if not quiet:
        keys = [k for k in simulator.headline if k in result.summary]
        typer.echo("  ".join(f"{k} {result.summary[k]:.3f}" for k in keys), err=True)
        typer.echo(f"wrote {out}", err=True)
    if json:
        print_json(result.summary)
    return result.summary


def install(target: typer.Typer) -> None:
    """Add one sub-command per registered simulator to `target` (this module's `app`)."""
    global _INSTALLED
    for simulator in SIMULATORS.values():
        target.command(simulator.kernel)(_command_for(simulator))
    _INSTALLED = True


# -- market-crash ------------------------------------------------------------------------------------------------


CRASH_CONSUMERS = 50
CRASH_DAYS = 365


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
    import jax.numpy as jnp

    from agentlab.kernels.markets.crash import (
        CRASH_BOUNDS,
        FIRM_POLICIES,
        MAX_FIRMS,
        default_crash_params,
        validate_crash_params,
    )

    firms = sum(count for _, count in request.policies)
    if firms > MAX_FIRMS:
        fail(f"--policies: at most {MAX_FIRMS} firms, got {firms}")
    dlc = CRASH_BOUNDS["dlc"].check(request.dlc, "--dlc")
    if dlc > firms:
        fail(f"--dlc {dlc} is larger than the number of firms ({firms})")
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


def run_crash(request: SimulateRequest) -> SimulationResult:
    import jax

    from agentlab.rundir import pyplot

    plt = pyplot()
    import numpy as np
    import polars as pl

    from agentlab.kernels.markets.crash import FIRM_POLICIES, crash_alignment, simulate_crash

    names = tuple(FIRM_POLICIES)
    params, policy_ids, days = crash_setup(request)
    ids = [int(i) for i in np.asarray(policy_ids)]
    firms = len(ids)
    consumers = CRASH_CONSUMERS
    keys = jax.random.split(jax.random.key(request.seed), request.markets)
    batched = jax.vmap(lambda k, p, ids: simulate_crash(k, p, ids, consumers, days), in_axes=(0, None, None))
    rows, compile_seconds, run_seconds = compile_and_run(
        batched, keys, params, policy_ids, compiler_options=compiler.options()
    )
    rows = {k: np.asarray(v) for k, v in rows.items()}
    score = crash_alignment(rows, params)

    alive = rows["alive"].astype(np.float64)  # (M, T, F)
    was_alive = np.concatenate([np.ones_like(alive[:, :1]), alive[:, :-1]], axis=1)
    frame = {
        "seed": np.full(days, request.seed),
        "step": np.arange(1, days + 1),
        "wall_seconds": np.full(days, compile_seconds + run_seconds),
        "alive_share": alive.mean(axis=(0, 2)),
        "mean_price": _mean_active_price(rows["price"], was_alive),
        "units_sold": rows["units_sold"].sum(axis=2).mean(axis=0),
        "consumer_spend": rows["consumer_spend"].mean(axis=0),
        "unit_cost": rows["unit_cost"].mean(axis=0),
    }
    for i in range(firms):
        frame[f"price_firm{i}"] = rows["price"][:, :, i].mean(axis=0)
        frame[f"cash_firm{i}"] = rows["cash"][:, :, i].mean(axis=0)
        frame[f"alive_firm{i}"] = alive[:, :, i].mean(axis=0)
    metrics = pl.DataFrame(frame)

    summary: dict[str, Any] = {
        "kernel": "market-crash",
        "policies": ",".join(f"{n}:{c}" for n, c in request.policies),
        "firms": firms,
        "consumers": consumers,
        "dlc": request.dlc,
        "markets": request.markets,
        "days": days,
    }
    for key in ("eas", "stability", "integrity", "welfare", "profitability", "bankruptcy_rate"):
        summary[key] = float(score[key].mean())
        summary[f"{key}_sd"] = float(score[key].std())
    summary["collapse_rate"] = float(score["collapsed"].mean())
    recovered = np.isfinite(score["recovery_days"])  # NaN: no supply shock in the horizon, or never recovered
    summary["recovery_days"] = float(score["recovery_days"][recovered].mean()) if recovered.any() else None
    summary["recovered_share"] = float(recovered.mean()) if int(params.shock_day) >= 0 else None
    final_price = _mean_active_price(rows["price"], was_alive)
    summary["stable_share"] = float(
        np.mean((score["bankruptcy_rate"] < 0.5) & (_market_mean_price(rows, was_alive) >= rows["unit_cost"].mean(1)))
    )
    summary["final_mean_price"] = float(final_price[-1]) if np.isfinite(final_price[-1]) else None
    for name in dict(request.policies):
        members = [i for i, x in enumerate(ids) if names[x] == name]
        summary[f"survival_{name}"] = float(alive[:, -1, members].mean())
    summary["compile_seconds"] = compile_seconds
    summary["market_steps_per_second"] = request.markets * days / run_seconds
    summary["agent_steps_per_second"] = request.markets * days * firms / run_seconds

    plots = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in range(firms):
        ax.plot(frame[f"price_firm{i}"], label=f"firm {i} ({names[ids[i]]})")
    ax.plot(frame["unit_cost"], color="black", linestyle=":", label="unit cost")
    ax.set_xlabel("day")
    ax.set_ylabel("posted price (mean over markets)")
    ax.legend(fontsize=7)
    plots["price_paths.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in range(firms):
        ax.plot(frame[f"cash_firm{i}"], label=f"firm {i} ({names[ids[i]]})")
    ax.set_xlabel("day")
    ax.set_ylabel("cash (mean over markets)")
    ax.legend(fontsize=7)
    plots["cash_paths.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict(request.policies):
        members = [i for i, x in enumerate(ids) if names[x] == name]
        ax.plot(alive[:, :, members].mean(axis=(0, 2)), label=name)
    ax.plot(frame["alive_share"], color="black", linestyle="--", label="all firms")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("day")
    ax.set_ylabel("share of firms alive")
    ax.legend()
    plots["survival.png"] = fig
    plots["eas.png"] = _eas_figure(summary, f"market-crash {summary['policies']}, dlc {request.dlc}")
    return SimulationResult(metrics=metrics, summary=summary, plots=plots)


def _mean_active_price(price, was_alive):
    import numpy as np

    total = (price * was_alive).sum(axis=(0, 2))
    count = was_alive.sum(axis=(0, 2))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _market_mean_price(rows, was_alive):
    import numpy as np

    total = (rows["price"] * was_alive).sum(axis=(1, 2))
    return total / np.maximum(was_alive.sum(axis=(1, 2)), 1)


def _eas_figure(summary: dict, title: str):
    from agentlab.rundir import pyplot

    plt = pyplot()

    parts = ["stability", "integrity", "welfare", "profitability", "eas"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(parts, [summary[p] for p in parts], yerr=[summary[f"{p}_sd"] for p in parts], color="tab:green")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("score (mean over markets, sd bars)")
    return fig


register(
    Simulator(
        kernel="market-crash",
        roles=(("firm", ("undercut", "stabilise", "costplus", "random")),),
        default_policies="undercut:3,stabilise:2",
        default_buyers="",
        run=run_crash,
        validate=lambda request: crash_setup(request) and None,
        dlc_help="Discovery limit: firms each consumer compares (1 to the number of firms).",
        max_agents=64,
        description="Agent Bazaar's B2C crash market (5 firms, 50 consumers by default): price and cash paths, "
        "survival curves, and the Economic Alignment Score. --param sets any numeric CrashParams field, e.g. "
        "shock_day=25,shock_cost=10.",
    )
)
