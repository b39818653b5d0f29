"""`agentlab eval RUN...`: the STORI robustness matrix of trained policies (`agentlab.rl.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import (
    Force,
    Json,
    Quiet,
    Resume,
    Seed,
    default_out,
    handle_errors,
    print_json,
    progress_display,
)


@handle_errors
def evaluate(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN...",
            help="Training run directories (agentlab train ppo). A run given twice (the same folder, also through "
            "another path or a link) is evaluated once. Each run is labelled by its folder's name, with parent "
            "folders added where names collide (a/run, b/run).",
        ),
    ],
    grid: Annotated[
        str,
        typer.Option(
            "--grid",
            "--stochasticity-grid",
            metavar="stori|extended|FILE",
            help="'stori' (STORI's paper profiles: plain, action p=0.3, the game's cancelling event p=0.25, a "
            "sudden drift at step 300 to a full blackout, a blackout of the game's main region, crop-left p=0.75, "
            "a random torch; 'default' is the same), 'extended' (action noise at 0.1/0.3/0.5, sticky, every event "
            "mode, a drift to action noise, crop, agent torch and full blackout) or a file with one stochasticity "
            "string per line (./stori for a file of that name).",
        ),
    ] = "stori",
    episodes: Annotated[
        int, typer.Option("--episodes", help="Episodes per profile and seed (1 to 1,000,000; must fit in memory).")
    ] = 32,
    greedy: Annotated[bool, typer.Option("--greedy", help="Take the most likely action instead of sampling.")] = False,
    seed: Seed = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write (default: RUN/eval for one run, runs/eval-<time>)."),
    ] = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate trained policies under every profile of a grid, every column on the same episodes (common
    random numbers): robustness.parquet (one row per run, profile and seed; `run` is the path given, `label`
    the run's unique label, `step` the steps per seed it trained), matrix.parquet (one row per cell: mean
    return over all episodes of all seeds with its 95% t interval, the return relative to the plain one, the
    episodes a drift fired in), heat maps (trained under x tested under) in plots/robustness.png and
    plots/robustness_normalised.png, and the table on stderr. summary.json keys each cell as
    mean_return_<label>_<profile> (and ci95_low_return_..., ci95_high_return_..., normalised_return_...)."""
    import polars as pl

    from agentlab.rl import evaluate as ev

    distinct = ev.distinct_runs(runs)
    out = out or (Path(distinct[0]) / "eval" if len(distinct) == 1 else default_out("eval"))
    bar = progress_display(quiet=quiet)  # started at the first cell: bad input prints one line and nothing else
    task = bar.add_task("eval", total=None)
    started = []

    def on_cell(done: int, total: int, cell: tuple[str, str] | None) -> None:
        if not started:
            bar.start()
            started.append(True)
        description = "eval" if cell is None else f"{cell[0]}: {cell[1]}"
        bar.update(task, total=total, completed=done, description=description)

    try:
        summary = ev.evaluate_runs(runs, grid, episodes, seed, greedy, out, resume=resume, force=force, on_cell=on_cell)
    finally:
        if started:
            bar.stop()
    if json:
        print_json(summary)
    if not quiet:
        show(pl.read_parquet(out / "matrix.parquet"), _grid_of(out), out)


def _grid_of(out: Path) -> list[str]:
    from agentlab import rundir

    return rundir.load_record(out, "eval")["config"]["grid"]


def show(matrix, grid: list[str], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from agentlab.rl import evaluate as ev

    names, rows = ev.table_cells(matrix, grid)
    # One row per tested-under profile (long names read well down a column), one column per run.
    table = Table(
        title="robustness: mean return ± 95% interval (share of plain) (rows tested under, columns trained under)"
    )
    table.add_column("tested under", overflow="fold")
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    for spec, row in zip(grid, rows):
        table.add_row(spec, *row)
    console = Console(stderr=True)
    console.print(table)
    console.print(f"wrote {run_dir}")
