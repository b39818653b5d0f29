"""`agentlab simulate KERNEL`: many markets under a mix of scripted policies, scored by the Economic Alignment Score.

    agentlab simulate market-crash --policies undercut:3,stabilise:2 --dlc 3 --markets 1024 --out DIR

Each kernel plugs in through a small registry: a `Simulator` names its policy families (role -> valid policy names)
and a ``run(request) -> SimulationResult`` function. A new kernel (say `grid-curtailment`) adds
``register(Simulator(...))`` in its own module and this command's logic stays as it is.

Each kernel's sub-command has only the options that apply to it: ``--buyers`` where the kernel has a second role,
``--dlc`` where it has a discovery limit. Every value is checked before anything runs or is written: the shared
options here (`EPISODES`, `STEPS`, `SEED`), the kernel's ``--param`` keys and values through the kernel's own
`agentlab.limits.Bound` declarations, and the run's memory estimate (`agentlab.limits.check_memory`). ``--devices N``
splits the episodes over N devices (`agentlab.studies.simulation.over_markets`; the outputs are the one-device ones).

What a simulator computes is a library function (`agentlab.studies.crash.run_crash`, `...lemons.run_lemons`,
`...grid.run_grid`) a notebook can call with a `SimulateRequest`; this command parses and checks the options, opens
the run directory, writes the result's files and prints.
"""

import dataclasses
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from agentlab import limits
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
from agentlab.kernels.markets.names import FIRM_POLICIES
from agentlab.kernels.mixes import parse_mix
from agentlab.limits import Bound
from agentlab.studies.simulation import SimulateRequest, SimulationResult

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
_DEVICES = Annotated[
    int, typer.Option("--devices", help="Devices the episodes are split over (shard_map); divides --episodes.")
]


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
        _option("devices", _DEVICES, 1),
        _option("out", Out, None),
        _option("force", Force, False),
        _option("json", Json, False),
        _option("quiet", Quiet, False),
    ]

    @handle_errors
    def command(**options: Any) -> None:
        from agentlab import devices

        markets = EPISODES.check(options["markets"])
        request = SimulateRequest(
            policies=parse_mix(options["policies"], first_names, "--policies", simulator.max_agents),
            buyers=parse_mix(options["buyers"], second[1], "--buyers", simulator.max_agents) if second else (),
            dlc=options.get("dlc"),
            markets=markets,
            steps=STEPS.check(options["steps"]),
            seed=SEED.check(options["seed"]),
            params=parse_params(options["param"]),
            devices=devices.check(options["devices"], markets, "--episodes (--markets, --events)"),
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


# -- market-crash (agentlab.studies.crash; imported when run, so the command line starts without JAX) ---------------


def _run_crash(request: SimulateRequest) -> SimulationResult:
    from agentlab.studies import crash

    return crash.run_crash(request)


def _validate_crash(request: SimulateRequest) -> None:
    from agentlab.studies import crash

    crash.validate_crash(request)


register(
    Simulator(
        kernel="market-crash",
        roles=(("firm", FIRM_POLICIES),),
        default_policies="undercut:3,stabilise:2",
        default_buyers="",
        run=_run_crash,
        validate=_validate_crash,
        dlc_help="Discovery limit: firms each consumer compares (1 to the number of firms).",
        max_agents=64,
        description="Agent Bazaar's B2C crash market (5 firms, 50 consumers by default): price and cash paths, "
        "survival curves, and the Economic Alignment Score. --param sets any numeric CrashParams field, e.g. "
        "shock_day=25,shock_cost=10.",
    )
)
