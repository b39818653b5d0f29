"""`agentlab train qlearn`: Calvano's tabular Q-learning sessions on the `calvano` kernel's stage game.

Per session: converged prices, profit gain Delta, periods to convergence, the price cycle and an impulse response
(firm 0 forced to its static best response for one period, learning frozen, then 15 periods of greedy play). Sessions
run in batches; each finished batch is saved under ``checkpoints/`` so ``--resume`` recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
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
    apply_config_file,
    default_out,
    fail,
    handle_errors,
    print_json,
    progress_display,
)

BACKENDS = ("numba", "jax")
IMPULSE_AFTER = 15


def _batches(sessions: int, batch: int) -> list[tuple[int, int]]:
    return [(start, min(batch, sessions - start)) for start in range(0, sessions, batch)]


def _run_batch(config, payoff, start: int, count: int, backend: str, timing: dict):
    from agentlab.rl.qlearn import session_keys, train_numba

    keys = session_keys(config.seed, count, start)
    if backend == "jax":
        from agentlab.rl.qlearn_jax import train_jax

        inner: dict = {}
        result = train_jax(config, payoff, keys, timing=inner)
        timing["compile_seconds"] = timing.get("compile_seconds", 0.0) + inner.get("compile_seconds", 0.0)
        return result
    return train_numba(config, payoff, keys)


def _save_batch(out: Path, start: int, result, wall: float) -> None:
    import io

    import numpy as np

    from agentlab.rundir import atomic_write

    buffer = io.BytesIO()
    np.savez(
        buffer,
        greedy=result.greedy.astype(np.int16),
        periods=result.periods,
        converged=result.converged,
        final_state=result.final_state,
        compute_seconds=np.float64(wall),
    )
    data = buffer.getvalue()
    atomic_write(out / "checkpoints" / f"sessions-{start:07d}.npz", lambda tmp: tmp.write_bytes(data))


def _load_batch(out: Path, start: int) -> dict | None:
    """The saved batch starting at session `start`, or None if it has to be computed.

    A batch file is a cache of deterministic work (one atomic file per batch, so a crash leaves a whole
    file or none): one that is missing, truncated, corrupt or not a batch of this command is recomputed
    to the same numbers and saved again rather than refused. A path that cannot be read at all (a
    directory, permission denied) is a one-line `UsageError` naming it.
    """
    import zipfile
    import zlib

    import numpy as np

    from agentlab.errors import UsageError

    keys = ("greedy", "periods", "converged", "final_state", "compute_seconds")
    path = out / "checkpoints" / f"sessions-{start:07d}.npz"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (zipfile.BadZipFile, ValueError, EOFError):  # truncated, corrupt or not an archive: recompute it
        return None
    except OSError as error:
        raise UsageError(f"session batch {path}: {error.strerror or error}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        return None
    with data:
        try:
            batch = {k: data[k] for k in keys}
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError):
            return None
    sessions = {batch[k].shape[:1] for k in keys[:4]}
    if len(sessions) != 1 or () in sessions or batch["compute_seconds"].shape != ():
        return None
    return batch


def _rows(config, params, payoff, bench, batch: dict, start: int, wall: float) -> tuple[list[dict], list[dict]]:
    """Per-session metrics rows and tidy impulse-response rows."""
    import numpy as np

    from agentlab.rl.qlearn import analyse_session

    grid = np.asarray(params.prices, np.float64)
    rows, impulse = [], []
    for k in range(batch["periods"].shape[0]):
        result = analyse_session(
            batch["greedy"][k].astype(np.int64), int(batch["final_state"][k]), config.prices, payoff, bench
        )
        session = start + k
        row = {
            "seed": config.seed,
            "session": session,
            "step": int(batch["periods"][k]),
            "wall_seconds": wall,
            "converged": bool(batch["converged"][k]),
            "periods_to_convergence": int(batch["periods"][k]),
            "delta": result["delta"],
            "cycle_length": result["cycle_length"],
            "cycle_prices": [[float(grid[a]) for a in play] for play in result["cycle_actions"]],
        }
        for i in range(config.firms):
            row[f"price_firm{i}"] = float(grid[result["cycle_actions"][:, i]].mean())
            row[f"profit_firm{i}"] = float(result["profit"][i])
        rows.append(row)
        for tau, play in enumerate(result["impulse"]):
            for i, a in enumerate(play):
                impulse.append({"session": session, "tau": tau, "firm": i, "price": float(grid[a])})
    return rows, impulse


def summarise(frame, impulse, bench: dict, config, compute_seconds: float, compile_seconds: float, backend: str):
    import numpy as np
    import polars as pl

    delta = frame["delta"].to_numpy()
    periods = frame["periods_to_convergence"].to_numpy()
    s = len(delta)
    summary = {
        "env": "calvano",
        "backend": backend,
        "sessions": s,
        "firms": config.firms,
        "prices": config.prices,
        "converged_share": float(frame["converged"].mean()),
        "mean_delta": float(delta.mean()),
        "sd_delta": float(delta.std(ddof=1)) if s > 1 else 0.0,
        "se_delta": float(delta.std(ddof=1) / np.sqrt(s)) if s > 1 else 0.0,
        "median_delta": float(np.median(delta)),
        "q05_delta": float(np.quantile(delta, 0.05)),
        "q95_delta": float(np.quantile(delta, 0.95)),
        "mean_periods_to_convergence": float(periods.mean()),
        "median_periods_to_convergence": float(np.median(periods)),
        "max_periods_to_convergence": int(periods.max()),
        "mean_cycle_length": float(frame["cycle_length"].mean()),
        "mean_price": float(np.mean([frame[f"price_firm{i}"].mean() for i in range(config.firms)])),
        "nash_price": bench["nash_price"],
        "monopoly_price": bench["monopoly_price"],
        "nash_profit": bench["nash_profit"],
        "monopoly_profit": bench["monopoly_profit"],
        "total_periods": int(periods.sum()),
        "compute_seconds": compute_seconds,
        "compile_seconds": compile_seconds,
        "periods_per_second": float(periods.sum() / compute_seconds) if compute_seconds > 0 else None,
        "sessions_per_second": float(s / compute_seconds) if compute_seconds > 0 else None,
    }
    mean = impulse.group_by(["tau", "firm"]).agg(pl.col("price").mean()).sort(["firm", "tau"])
    for i in range(config.firms):
        summary[f"impulse_mean_price_firm{i}"] = mean.filter(mean["firm"] == i)["price"].to_list()
    return summary


def _plots(out: Path, frame, impulse, summary: dict, config) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from agentlab.rundir import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(frame["delta"].to_numpy(), bins=np.linspace(-0.2, 1.1, 27), color="tab:blue", edgecolor="white")
    ax.axvline(summary["mean_delta"], color="black", linestyle="--", label=f"mean {summary['mean_delta']:.3f}")
    ax.set_xlabel("profit gain Delta = (pi - pi_N) / (pi_M - pi_N)")
    ax.set_ylabel("sessions")
    ax.set_title(f"Calvano Q-learning, {summary['sessions']} sessions, {config.firms} firms")
    ax.legend()
    save_figure(out / "plots" / "delta_hist.png", fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    taus = np.arange(IMPULSE_AFTER + 2)
    for i in range(config.firms):
        label = "firm 0 (deviates at 1)" if i == 0 else f"firm {i}"
        ax.plot(taus, summary[f"impulse_mean_price_firm{i}"], marker="o", label=label)
    ax.axhline(summary["nash_price"], color="grey", linestyle=":", label="Nash price")
    ax.axhline(summary["monopoly_price"], color="grey", linestyle="--", label="monopoly price")
    ax.set_xlabel("period (0: before the deviation, 1: deviation)")
    ax.set_ylabel("mean price over sessions")
    ax.set_title("Impulse response: one-period deviation, learning frozen")
    ax.legend(fontsize=8)
    save_figure(out / "plots" / "impulse_response.png", fig)


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
    backend: Annotated[str, typer.Option("--backend", help="numba (CPU, parallel sessions) or jax (lockstep).")] = (
        "numba"
    ),
    threads: Annotated[int, typer.Option("--threads", help="numba threads (0: all cores).")] = 0,
    batch: Annotated[int, typer.Option("--batch", help="Sessions per batch (progress and resume unit).")] = 16,
    seed: Seed = 0,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
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
    if backend not in BACKENDS:
        fail(f"--backend {backend!r}: valid backends are 'numba' or 'jax'")
    if values["threads"] < 0:
        fail(f"--threads must be >= 0, got {values['threads']}")
    if values["batch"] < 1:
        fail(f"--batch must be at least 1, got {values['batch']}")
    from agentlab.rl.qlearn import QLearnConfig

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
    run(qconfig, backend, values["threads"], values["batch"], out, resume, force, json, quiet)


def run(qconfig, backend: str, threads: int, batch: int, out, resume: bool, force: bool, json: bool, quiet: bool):
    from agentlab import rundir

    out = Path(out or default_out("train-qlearn"))
    record = dataclasses.asdict(qconfig) | {"env": "calvano", "backend": backend, "batch": batch, "threads": threads}
    ignore = (*rundir.RESUME_IGNORES, "threads")
    with rundir.open_run(
        out, "agentlab train qlearn", record, resume=resume, force=force, resumable=True, ignore=ignore
    ) as work:
        summary = _run(qconfig, backend, threads, batch, work, quiet)
    if not quiet:
        _table(summary)
        typer.echo(f"wrote {out}", err=True)
    if json:
        print_json(summary)
    return summary


def _run(qconfig, backend: str, threads: int, batch: int, out: Path, quiet: bool) -> dict:
    import numba
    import polars as pl
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    from agentlab import rundir
    from agentlab.kernels.markets.calvano import benchmarks, calvano_params, payoff_table
    from agentlab.rl.qlearn import train_numba

    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    params = calvano_params(qconfig.firms, qconfig.prices)
    bench = benchmarks(qconfig.firms, params)
    payoff = payoff_table(qconfig.firms, params)
    started = time.perf_counter()
    timing = {"compile_seconds": 0.0}
    if backend == "numba":  # compile once on a one-period session, timed apart
        from agentlab.rl.qlearn import session_keys

        train_numba(dataclasses.replace(qconfig, max_periods=1), payoff, session_keys(0, 1))
        timing["compile_seconds"] = time.perf_counter() - started
    rows, impulse, compute = [], [], 0.0
    columns = (
        TextColumn("[bold]qlearn[/bold] calvano"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sessions"),
        TextColumn("mean Delta {task.fields[delta]:.3f}"),
        TimeElapsedColumn(),
    )
    with progress_display(*columns, quiet=quiet) as progress:
        task = progress.add_task("sessions", total=qconfig.sessions, delta=float("nan"))
        for start, count in _batches(qconfig.sessions, batch):
            saved = _load_batch(out, start)
            if saved is None:
                tick = time.perf_counter()
                before = timing["compile_seconds"]
                result = _run_batch(qconfig, payoff, start, count, backend, timing)
                wall = time.perf_counter() - tick - (timing["compile_seconds"] - before)
                _save_batch(out, start, result, wall)
                saved = _load_batch(out, start)
            compute += float(saved["compute_seconds"])
            batch_rows, batch_impulse = _rows(
                qconfig, params, payoff, bench, saved, start, time.perf_counter() - started
            )
            rows += batch_rows
            impulse += batch_impulse
            mean_delta = sum(r["delta"] for r in rows) / len(rows)
            progress.update(task, advance=count, delta=mean_delta)
    frame = pl.DataFrame(rows)
    impulse_frame = pl.DataFrame(impulse)
    summary = summarise(frame, impulse_frame, bench, qconfig, compute, timing["compile_seconds"], backend)
    summary["wall_seconds"] = time.perf_counter() - started
    rundir.write_parquet(out / "metrics.parquet", frame)
    rundir.write_parquet(out / "impulse.parquet", impulse_frame)
    rundir.write_json(out / "summary.json", summary)
    _plots(out, frame, impulse_frame, summary, qconfig)
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
