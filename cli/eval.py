"""`agentlab eval RUN...`: the STORI robustness matrix of trained policies."""

from __future__ import annotations

import os
import time
import zipfile
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
    fail,
    handle_errors,
    print_json,
    progress_display,
)
from agentlab.errors import UsageError


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
    stochasticity_grid: Annotated[
        str,
        typer.Option(
            "--stochasticity-grid",
            help="'default' (plain, action noise at 0.1/0.3/0.5, sticky, every event mode, a drift, crop, torch and "
            "blackout masks) or a file with one stochasticity string per line.",
        ),
    ] = "default",
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
    """Evaluate trained policies under every taxonomy profile: robustness.parquet (one row per run, profile and
    seed; `run` is the path given, `label` the run's unique label, `step` the steps per seed it trained), a heat
    map (trained under x tested under) in plots/robustness.png, and the table on stderr. summary.json keys each
    cell as mean_return_<label>_<profile>."""
    from agentlab import rundir
    from agentlab.kernels.atari import GAMES
    from agentlab.rl import evaluate as ev

    # Everything about the input is checked before anything is loaded, compiled or written.
    episodes = ev.EPISODES.check(episodes)
    grid = None if stochasticity_grid == "default" else ev.read_grid(Path(stochasticity_grid))
    runs = _distinct(runs)
    labels = ev.run_labels(runs)
    configs = [_config(run) for run in runs]
    envs = {config.env for config in configs}
    if len(envs) > 1:
        fail(f"the runs were trained on different kernels ({', '.join(sorted(envs))}): evaluate one kernel at a time")
    env = envs.pop()
    grid = grid or ev.default_grid(env)
    if env not in GAMES and grid != ["plain"]:
        fail(f"{env} has no stochasticity profiles: the grid must be 'plain' only")
    for spec in grid:  # every profile must be valid for this kernel
        try:
            ev.make_eval_env(configs[0], spec)
        except UsageError as error:
            fail(f"--stochasticity-grid profile {spec!r}: {error}")
    ev.check_memory(configs, grid, episodes)
    out = out or (Path(runs[0]) / "eval" if len(runs) == 1 else default_out("eval"))
    rundir.check_out(out, resume=resume, force=force)
    loaded = [(run, label, *_load(run), _step(run)) for run, label in zip(runs, labels)]

    record = {"runs": [str(r) for r in runs], "grid": grid, "episodes": episodes, "greedy": greedy, "seed": seed}
    with rundir.open_run(out, "eval", record, resume=resume, force=force, resumable=True) as run_dir:
        _evaluate(run_dir, out, loaded, grid, env, episodes, seed, greedy, resume, json, quiet)


def _distinct(runs: list[Path]) -> list[Path]:
    """`runs` without repeats (the same folder by resolved path: also through another path or a link), in
    the order given."""
    seen: dict[str, Path] = {}
    for run in runs:
        seen.setdefault(os.path.realpath(run), Path(run))
    return list(seen.values())


def _about(run: Path, error: Exception) -> UsageError:
    """`error` as a one-line `UsageError` that names the run."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return UsageError(message if str(run) in message else f"{run}: {message}")


def _config(run: Path):
    """The PPOConfig the run recorded: not a run directory, not a `train ppo` run or a corrupt
    config.json -> one line naming the run."""
    from agentlab import rundir
    from agentlab.rl import training

    try:
        return training.config_from_record(rundir.load_record(run, "train ppo")["config"])
    except UsageError as error:
        raise _about(run, error) from None


def _load(run: Path):
    """``(config, learner, params)`` of the run; a missing or unreadable checkpoint -> one line."""
    from agentlab.rl import training

    try:
        return training.load_run(run)
    except UsageError as error:
        raise _about(run, error) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        raise UsageError(
            f"{run}: its checkpoint cannot be read (corrupt or truncated?): {type(error).__name__}: {detail}"
        ) from None


def _step(run: Path) -> int:
    from agentlab.rl import evaluate as ev

    try:
        return ev.trained_step(run)
    except UsageError as error:
        raise _about(run, error) from None


def _evaluate(run_dir: Path, out: Path, loaded, grid, env, episodes, seed, greedy, resume, json, quiet) -> None:
    import polars as pl

    from agentlab import rundir
    from agentlab.rl import evaluate as ev

    path = run_dir / "robustness.parquet"
    rows = pl.read_parquet(path).to_dicts() if resume and path.exists() else []
    label_of = {str(run): label for run, label, *_ in loaded}
    for row in rows:  # a run directory written before runs had labels
        row.setdefault("label", label_of.get(row["run"], Path(row["run"]).name))
    done = {(r["run"], r["tested_under"]) for r in rows}
    started = time.perf_counter()

    with progress_display(quiet=quiet) as bar:
        task = bar.add_task("eval", total=len(loaded) * len(grid), completed=len(done))
        for run, label, config, learner, params, step in loaded:
            for spec in grid:
                if (str(run), spec) in done:
                    continue
                bar.update(task, description=f"{label}: {spec}")
                for row in ev.evaluate(learner, params, [spec], episodes, seed, greedy):
                    rows.append(
                        {
                            "run": str(run),
                            "label": label,
                            "trained_under": config.stochasticity,
                            "seed": config.seed + row.pop("seed_index"),
                            "step": step,
                            "wall_seconds": time.perf_counter() - started,
                            **row,
                        }
                    )
                rundir.write_parquet(path, pl.DataFrame(rows))
                bar.advance(task)

    frame = pl.DataFrame(rows)
    matrix = frame.group_by(["label", "trained_under", "tested_under"], maintain_order=True).agg(
        pl.col("mean_return").mean(), pl.col("stderr_return").mean()
    )
    summary = {
        "env": env,
        "runs": len(loaded),
        "profiles": len(grid),
        "episodes_per_profile_and_seed": episodes,
        **{
            f"mean_return_{ev.key_name(label)}_{ev.key_name(spec)}": value
            for label, spec, value in zip(matrix["label"], matrix["tested_under"], matrix["mean_return"])
        },
        "wall_seconds": time.perf_counter() - started,
    }
    rundir.write_json(run_dir / "summary.json", summary)
    heatmap(matrix, grid, run_dir / "plots" / "robustness.png", env)
    if json:
        print_json(summary)
    if not quiet:
        show(matrix, grid, out)


def _labels(matrix, grid):
    import polars as pl

    runs = matrix.select("label", "trained_under").unique(maintain_order=True)
    values = [
        [
            matrix.filter((pl.col("label") == label) & (pl.col("tested_under") == spec))["mean_return"].item()
            for spec in grid
        ]
        for label in runs["label"]
    ]
    names = [f"{label} ({t})" for label, t in zip(runs["label"], runs["trained_under"])]
    return names, values


def heatmap(matrix, grid: list[str], path: Path, env: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from agentlab.rundir import save_figure

    names, values = _labels(matrix, grid)
    data = np.asarray(values, float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(grid), 1.6 + 0.45 * len(names)))
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(grid)), grid, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=6, color="white")
    ax.set_xlabel("tested under")
    ax.set_ylabel("trained under")
    ax.set_title(f"{env}: mean return")
    fig.colorbar(image, ax=ax, fraction=0.03)
    save_figure(path, fig)


def show(matrix, grid: list[str], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    names, values = _labels(matrix, grid)
    # One row per tested-under profile (long names read well down a column), one column per run.
    table = Table(title="robustness: mean return (rows tested under, columns trained under)")
    table.add_column("tested under")
    for name in names:
        table.add_column(name, justify="right", overflow="fold")
    for j, spec in enumerate(grid):
        table.add_row(spec, *(f"{row[j]:.2f}" for row in values))
    console = Console(stderr=True)
    console.print(table)
    console.print(f"wrote {run_dir}")
