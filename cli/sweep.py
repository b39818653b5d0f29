"""`agentlab sweep synergy`: map where trees of agents amplify or wash out a signal (theory vs Monte Carlo)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from agentlab.cli.common import (
    Force,
    Json,
    Out,
    Quiet,
    Resume,
    Seed,
    default_out,
    fail,
    handle_errors,
    parse_grid,
    progress_display,
)
from agentlab.cli.common import print_json as print_summary

app = typer.Typer(
    help="Parameter sweeps into a run directory: `agentlab sweep synergy`.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
GRID = "a list (3,5,7) or a range start:stop:count"


@app.command("synergy")
@handle_errors
def synergy(
    fan_in: Annotated[str, typer.Option("--fan-in", "-b", help=f"Fan-ins b (odd, >= 3): {GRID}.")] = "3,5,7,9",
    rho: Annotated[str, typer.Option("--rho", help=f"Shared-error correlations in [0, 1): {GRID}.")] = "0:0.9:19",
    gamma: Annotated[str, typer.Option("--gamma", help=f"Message fidelities in (0, 1]: {GRID}.")] = "0.5:1:11",
    message_length: Annotated[
        str | None,
        typer.Option(
            "--message-length",
            "-m",
            help=f"Instead of --gamma: message lengths (tokens), {GRID}; gamma(m) = 1 - exp(-m / m0).",
        ),
    ] = None,  # fmt: skip
    m0: Annotated[float, typer.Option("--m0", help="Scale of the fidelity curve gamma(m) (tokens).")] = 100.0,
    depth: Annotated[str, typer.Option("--depth", "-L", help=f"Tree depths (0 = one leaf): {GRID}.")] = "0:10:11",
    mu0: Annotated[str, typer.Option("--mu0", help=f"Leaf biases mu0 = 2 p - 1 in [-1, 1]: {GRID}.")] = "0.05",
    beta: Annotated[str, typer.Option("--beta", help=f"Leaf scaling exponents for the budget plots: {GRID}.")] = "0.15",
    kappa: Annotated[float, typer.Option("--kappa", help="Leaf bias scale: mu0(x) = kappa x^beta.")] = 0.02,
    budget: Annotated[str, typer.Option("--budget", help=f"Total budgets (tokens) for the budget plots: {GRID}.")] = (
        "1000:10000000:25"
    ),
    budget_message_length: Annotated[
        float, typer.Option("--budget-message-length", help="Message length m (tokens) in the budget accounting.")
    ] = 200.0,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Monte Carlo trials per cell.")] = 100_000,
    executor: Annotated[str, typer.Option("--executor", help="local (in process) or ray.")] = "local",
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Theory and Monte Carlo side by side for every (fan-in, rho, gamma, mu0) cell and depth: metrics.parquet
    (one row per cell and depth: mu_mc +- mu_se beside the recursion mu_theory and the clipped predictor),
    budget.parquet (x*, B*, tree vs single agent at equal budget), summary.json (phase agreement, speed) and
    plots/ (phase diagram, accuracy vs depth, tree vs single agent, x* vs budget)."""
    from agentlab import rundir
    from agentlab.synergy.sweep import SweepConfig, check_cells

    if executor not in ("local", "ray"):
        fail(f"--executor must be 'local' or 'ray', got {executor!r}")
    config = SweepConfig(
        fan_ins=tuple(parse_grid(fan_in, "--fan-in", int)),
        rhos=tuple(parse_grid(rho, "--rho")),
        gammas=tuple(parse_grid(gamma, "--gamma")) if message_length is None else (),
        message_lengths=tuple(parse_grid(message_length, "--message-length")) if message_length is not None else None,
        m0=m0,
        depths=tuple(sorted(parse_grid(depth, "--depth", int))),
        mu0s=tuple(parse_grid(mu0, "--mu0")),
        betas=tuple(parse_grid(beta, "--beta")),
        kappa=kappa,
        budgets=tuple(parse_grid(budget, "--budget")),
        budget_message_length=budget_message_length,
        trials=trials,
        seed=seed,
    ).validate()  # every field through its Bound, the work and the memory: before anything is written
    record = orjson.loads(orjson.dumps(dataclasses.asdict(config)))  # as config.json stores it (lists)
    out = Path(out or default_out("sweep-synergy"))
    rundir.check_out(out, resume=resume, force=force)
    if resume:
        rundir.check_resume_config(out, record)
        check_cells(out, config)  # a truncated or corrupt unit file: one line naming it, nothing touched
    with rundir.open_run(out, "sweep synergy", record, resume=resume, force=force, resumable=True) as work:
        summary = _run(config, work, executor=executor, quiet=quiet)
    if json:
        print_summary(summary)
    if not quiet:
        typer.echo(
            f"wrote {out}: {summary['cells']} cells x {len(config.depths)} depths, {summary['trials_per_cell']:,} "
            f"trials each; within 4 se of the recursion: {summary['fraction_within_4_se']:.1%}; phase agreement "
            f"with alpha: {summary['phase_agreement_alpha']}",
            err=True,
        )


def _run(config, out: Path, *, executor: str, quiet: bool) -> dict:
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from agentlab import rundir
    from agentlab.synergy import plots
    from agentlab.synergy import sweep as work

    start = time.perf_counter()
    total = len(work.units(config))
    columns = (
        TextColumn("[bold]sweep synergy[/bold]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} units"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with progress_display(*columns, quiet=quiet) as progress:
        task = progress.add_task("units", total=total)
        computed, skipped = work.run_units(
            config, out, executor=executor, on_unit=lambda done: progress.update(task, completed=done)
        )
    table = work.collect(out, config)
    rundir.write_parquet(out / "metrics.parquet", table)
    budget = work.budget_table(config)
    rundir.write_parquet(out / "budget.parquet", budget)
    summary = work.summarise(table, config, computed=computed, skipped=skipped, wall=time.perf_counter() - start)
    rundir.write_json(out / "summary.json", summary)
    rundir.save_figure(out / "plots" / "phase_diagram.png", plots.phase_diagram(table))
    rundir.save_figure(out / "plots" / "accuracy_vs_depth.png", plots.accuracy_vs_depth(table))
    rundir.save_figure(out / "plots" / "tree_vs_single.png", plots.tree_vs_single(budget))
    rundir.save_figure(out / "plots" / "x_star_vs_budget.png", plots.x_star_vs_budget(budget))
    return summary
