"""`agentlab train qlearn`: Calvano's tabular Q-learning sessions on the `calvano` kernel's stage game.

The run driver (batches, resume, metrics, summary, plots) is `agentlab.rl.qlearn_training.train`; this module parses
and checks the options, shows the progress bar and prints the table.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentlab.cli.common import (
    Config,
    Force,
    Json,
    Out,
    Quiet,
    Resume,
    Seed,
    Tensorboard,
    apply_config_file,
    checked_out,
    choice,
    fail,
    handle_errors,
    print_json,
    run_with_progress,
)
from agentlab.rl import names


@handle_errors
def qlearn(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="The pricing game (only 'calvano').")] = "calvano",
    firms: Annotated[int, typer.Option("--firms", help="Number of firms n.")] = 2,
    prices: Annotated[int, typer.Option("--prices", help="Price grid size m (Calvano: 15).")] = 15,
    sessions: Annotated[int, typer.Option("--sessions", help="Independent learning sessions.")] = 100,
    alpha: Annotated[float, typer.Option("--alpha", help="Learning rate.")] = 0.15,
    beta: Annotated[float, typer.Option("--beta", help="Exploration decay: eps_t = exp(-beta t).")] = 4e-6,
    delta: Annotated[float, typer.Option("--delta", help="Discount factor.")] = 0.95,
    converge_periods: Annotated[
        int, typer.Option("--converge-periods", help="Greedy strategies unchanged this many periods = converged.")
    ] = 100_000,
    max_periods: Annotated[int, typer.Option("--max-periods", help="Cap on periods per session.")] = 1_000_000_000,
    backend: Annotated[
        choice("QLearnBackend", names.QLEARN_BACKENDS),
        typer.Option("--backend", help="numba (CPU, parallel sessions) or jax (lockstep)."),
    ] = "numba",
    threads: Annotated[int, typer.Option("--threads", help="numba threads (0: all cores).")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="Sessions per batch (progress and resume unit).")] = 16,
    seed: Seed = 0,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    tensorboard: Tensorboard = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Calvano et al. (2020) Q-learning pricing sessions: a run directory with metrics.parquet (one row per session:
    converged prices, Delta, periods to convergence, price cycle), impulse.parquet (tidy impulse responses),
    summary.json and plots/delta_hist.png, plots/impulse_response.png."""
    values = {k: v for k, v in locals().items() if k != "ctx"}
    values = apply_config_file(ctx, config, values)
    env, backend = values["env"], values["backend"]
    if env != "calvano":
        fail(f"--env {env!r}: train qlearn supports only 'calvano'")
    from agentlab.rl.qlearn import QLearnConfig
    from agentlab.rl.qlearn_training import check_options

    backend, threads, batch = check_options(backend, values["threads"], values["batch"])

    qconfig = QLearnConfig(
        firms=values["firms"],
        prices=values["prices"],
        alpha=values["alpha"],
        beta=values["beta"],
        delta=values["delta"],
        converge_periods=values["converge_periods"],
        max_periods=values["max_periods"],
        sessions=values["sessions"],
        seed=values["seed"],
    ).validate()
    run(qconfig, backend, threads, batch, out, resume, force, json, quiet, values["tensorboard"])


def run(
    qconfig,
    backend: str,
    threads: int,
    batch: int,
    out,
    resume: bool,
    force: bool,
    json: bool,
    quiet: bool,
    tensorboard: bool = False,
):
    """Run `qconfig` into `out` (`agentlab.rl.qlearn_training.train`) with a progress bar; print the table."""
    from agentlab.rl import qlearn_training

    record = qlearn_training.config_record(qconfig, backend, batch, threads)
    out = checked_out(  # before the progress bar: errors come first
        out, "train-qlearn", record=record, resume=resume, force=force, ignore=qlearn_training.RESUME_IGNORES
    )
    summary = run_with_progress(  # the bar appears at the first finished batch: errors in the input come alone
        lambda on_batch: qlearn_training.train(
            qconfig,
            out,
            backend=backend,
            threads=threads,
            batch=batch,
            resume=resume,
            force=force,
            on_batch=on_batch,
            tensorboard=tensorboard,
        ),
        title="[bold]qlearn[/bold] calvano",
        unit="sessions",
        total=qconfig.sessions,
        done="sessions",
        of="total_sessions",
        figure=("mean Delta", "mean_delta", ".3f"),
        quiet=quiet,
    )
    if not quiet:
        _table(summary)
        typer.echo(f"wrote {out}", err=True)
    if json:
        print_json(summary)
    return summary


def _table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Calvano Q-learning: profit gain Delta over sessions")
    for name in ("sessions", "converged", "mean", "sd", "5%", "median", "95%", "periods (median)", "periods/s"):
        table.add_column(name, justify="right")
    table.add_row(
        str(summary["sessions"]),
        f"{summary['converged_share']:.0%}",
        f"{summary['mean_delta']:.3f}",
        f"{summary['sd_delta']:.3f}",
        f"{summary['q05_delta']:.3f}",
        f"{summary['median_delta']:.3f}",
        f"{summary['q95_delta']:.3f}",
        f"{summary['median_periods_to_convergence']:,.0f}",
        f"{summary['periods_per_second'] or 0:,.0f}",
    )
    Console(stderr=True).print(table)
