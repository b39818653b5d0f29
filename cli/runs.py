"""`agentlab runs ls | show | compare`: run directories printed and plotted side by side.

The reading, the curves, the figure and the table are `agentlab.runs`; this module parses the arguments and
prints (tables on stderr, ``--json`` on stdout). Nothing is written except ``compare --out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import fail, handle_errors, print_json, stderr_console

app = typer.Typer(
    help="Run directories side by side: `ls` lists them, `show` prints one, `compare` plots their learning "
    "curves on one figure and tables their summaries.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (tables go to stderr).")]


def _console():
    """The stderr console, at least 160 columns wide when stderr is not a terminal (a log file, a pipe)."""
    console = stderr_console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def _table(title: str, columns: list[str], rows: list[list[str]], no_wrap: tuple[str, ...] = ()):
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    for row in rows:
        table.add_row(*row, end_section=False)
    return table


@app.command("ls")
@handle_errors
def ls(
    root: Annotated[
        Path, typer.Argument(help="A folder: every run directory at or below it is listed.", show_default=True)
    ] = Path("runs"),
    json: JsonOut = False,
) -> None:
    """List the run directories below ROOT: path, command, env, algo, status (finished: summary.json
    present; resumable: a checkpoint but no summary yet; unfinished; damaged: summary.json unreadable),
    mean_return where the summary has one, and when the run's files last changed."""
    from agentlab import runs

    rows = runs.listing(runs.find(root))
    if json:
        print_json(rows)
        return
    console = _console()
    if not rows:
        console.print(f"no run directories below {root}", markup=False, highlight=False)
        return
    columns = ["path", "command", "env", "algo", "status", "mean_return", "modified"]
    for row in rows:  # the table names runs below ROOT; --json keeps the full paths
        path = Path(row["path"])
        row["path"] = path.relative_to(root).as_posix() if path != root and path.is_relative_to(root) else str(path)
    console.print(
        _table(
            f"{len(rows)} run(s) below {root}",
            columns,
            [[runs.cell(row[c]) for c in columns] for row in rows],
            no_wrap=("status", "mean_return", "modified"),
        )
    )


@app.command("show")
@handle_errors
def show(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    json: JsonOut = False,
) -> None:
    """Print one run: its config.json (command, config, versions), its summary.json and its metrics' columns."""
    from agentlab import runs

    loaded = runs.load(run)
    metrics = runs.metrics_columns(loaded)
    result = {
        "path": str(loaded.path),
        "status": loaded.status,
        "config": loaded.record,
        "summary": loaded.summary,
        "metrics": None if metrics is None else {"columns": metrics[0], "rows": metrics[1]},
    }
    if json:
        print_json(result)
        return
    console = _console()
    config_rows = [["command", loaded.command], ["status", loaded.status]]
    config_rows += [[key, runs.cell(value, width=80)] for key, value in loaded.config.items()]
    config_rows += [["agentlab", runs.cell(loaded.record["versions"].get("agentlab"))]]
    console.print(_table(f"{loaded.path}: config.json", ["key", "value"], config_rows))
    if loaded.summary is None:
        console.print("no summary.json (the run has not finished)", markup=False, highlight=False)
    else:
        summary_rows = [[key, runs.cell(value, width=80)] for key, value in loaded.summary.items()]
        console.print(_table(f"{loaded.path}: summary.json", ["key", "value"], summary_rows))
    if metrics is not None:
        console.print(
            f"metrics.parquet: {metrics[1]:,} rows; columns {', '.join(metrics[0])}", markup=False, highlight=False
        )


def _check_png(out: Path) -> None:
    from agentlab import rundir

    rundir.check_text(out, "--out")
    if out.suffix.lower() != ".png":
        fail(f"--out {out}: the figure is a PNG; give a file name ending in .png")
    if out.is_dir():
        fail(f"--out {out} is a directory; give a file name ending in .png")
    rundir.check_creatable(out)
    if out.exists() and not out.is_file():
        fail(f"--out {out} exists and is not a regular file")


@app.command("compare")
@handle_errors
def compare(
    run: Annotated[list[Path], typer.Argument(help="Run directories (one or more).")],
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="A metrics.parquet column every run has (default: mean_return, else episode_return).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the figure of the learning curves to this PNG file.")
    ] = None,
    json: JsonOut = False,
) -> None:
    """Compare runs: their learning curves of one metric on one figure (x: step, else update; one line per run,
    the mean over its seeds with the min-max shaded) and their summaries in one table. Runs of different
    commands may be compared when they share the metric."""
    from agentlab import rundir, runs

    if out is not None:
        _check_png(out)
    loaded = [runs.load(path) for path in run]
    labels = [str(item.path) for item in loaded]
    name, curves = runs.curves(loaded, metric, labels)
    keys, values = runs.summary_table(loaded)
    if out is not None:
        rundir.save_figure(out, runs.figure(name, curves))
    if json:
        print_json(
            {
                "metric": name,
                "out": None if out is None else str(out),
                "runs": [
                    {
                        "path": label,
                        "command": item.command,
                        "status": item.status,
                        "summary": item.summary,
                        "curve": {
                            "x_column": c.x_column,
                            "x": c.x.tolist(),
                            "mean": c.mean.tolist(),
                            "min": c.low.tolist(),
                            "max": c.high.tolist(),
                            "seeds": c.seeds,
                        },
                    }
                    for label, item, c in zip(labels, loaded, curves, strict=True)
                ],
                "table": {key: row for key, row in zip(keys, values, strict=True)},
            }
        )
        return
    console = _console()
    console.print(
        _table(
            f"summaries ({name} curves: {', '.join(f'{c.seeds} seed(s)' for c in curves)})",
            ["key", *labels],
            [[key, *(runs.cell(v) for v in row)] for key, row in zip(keys, values, strict=True)],
        )
    )
    if out is not None:
        console.print(f"wrote {out}", markup=False, highlight=False)
