"""The Q-learning run driver: Calvano's sessions in batches, each batch saved as soon as it is done, into a run
directory with resume; `agentlab train qlearn` wires flags to `train`, and a notebook calls it directly.

Per session: converged prices, profit gain Delta, periods to convergence, the price cycle and an impulse response
(firm 0 forced to its static best response for one period, learning frozen, then `IMPULSE_AFTER` periods of greedy
play). A batch file (``checkpoints/sessions-NNNNNNN.npz``) is a cache of deterministic work: a resumed run recomputes
only the batches it lacks, and the metrics of a resumed run equal an uninterrupted run's (timings aside).

The final Q tables are kept as plain arrays: each batch file holds its sessions' ``q`` (float64
``(sessions, n, m**n, m)``, `agentlab.rl.qlearn`'s state encoding; a batch file of an older version without it is
recomputed), and the run directory gets ``q_tables.npy``, every session's in session order (``(S, n, m**n, m)``,
``np.load``), which ``agentlab data collect --policy qtable:RUN_DIR`` plays.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import rundir
from agentlab import tensorboard as agentlab_tensorboard
from agentlab.errors import UsageError
from agentlab.limits import Bound
from agentlab.rl import names, qlearn
from agentlab.rl.qlearn import QLearnConfig

COMMAND = "agentlab train qlearn"
BACKENDS = names.QLEARN_BACKENDS
IMPULSE_AFTER = 15
BATCH_KEYS = ("greedy", "periods", "converged", "final_state", "compute_seconds", "q")
Q_FILE = "q_tables.npy"
THREADS = Bound("--threads", int, low=0, high=65536, unit="numba threads; 0: all cores")
BATCH = Bound("--batch", int, low=1, high=2**31 - 1, unit="sessions per batch")
RESUME_IGNORES = (*rundir.RESUME_IGNORES, "threads")  # the thread count changes no number


def config_record(config: QLearnConfig, backend: str, batch: int, threads: int) -> dict[str, Any]:
    """What ``config.json`` records (and a resumed run must match, `threads` aside)."""
    return dataclasses.asdict(config) | {"env": "calvano", "backend": backend, "batch": batch, "threads": threads}


def check_options(backend: str, threads: int, batch: int) -> tuple[str, int, int]:
    """The driver's own options, checked (`UsageError`): ``(backend, threads, batch)``."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: valid backends are 'numba' or 'jax'")
    return backend, THREADS.check(threads), BATCH.check(batch)


def train(
    config: QLearnConfig,
    out: Path,
    *,
    backend: str = "numba",
    threads: int = 0,
    batch: int = 16,
    resume: bool = False,
    force: bool = False,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Run `config.sessions` sessions into the run directory `out`; return the summary.

    `on_batch` receives, after every batch, ``{"sessions", "total_sessions", "mean_delta"}`` (sessions done so
    far, for a progress bar). Ctrl-C keeps the finished batches; ``resume=True`` recomputes only the others.
    `tensorboard` (or a resumed run that recorded it) mirrors ``metrics.parquet`` into TensorBoard events under
    ``out/tensorboard/`` with the session number as the step (`agentlab.tensorboard.MetricsMirror`).
    """
    config = config.validate()
    backend, threads, batch = check_options(backend, threads, batch)
    record = config_record(config, backend, batch, threads)
    with agentlab_tensorboard.open_run(
        out,
        COMMAND,
        record,
        tensorboard=tensorboard,
        step="session",
        resume=resume,
        force=force,
        resumable=True,
        ignore=RESUME_IGNORES,
    ) as (work, mirror):
        return _train(config, work, backend, threads, batch, on_batch, mirror)


def _train(
    config: QLearnConfig,
    out: Path,
    backend: str,
    threads: int,
    batch: int,
    on_batch: Callable[[dict[str, Any]], None] | None,
    mirror: agentlab_tensorboard.MetricsMirror,
) -> dict[str, Any]:
    import numba
    import polars as pl

    from agentlab.kernels.markets.calvano import benchmarks, calvano_params, payoff_table

    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    params = calvano_params(config.firms, config.prices)
    bench = benchmarks(config.firms, params)
    payoff = payoff_table(config.firms, params)
    started = time.perf_counter()
    timing = {"compile_seconds": 0.0}
    if backend == "numba":  # compile once on a one-period session, timed apart
        qlearn.train_numba(dataclasses.replace(config, max_periods=1), payoff, qlearn.session_keys(0, 1))
        timing["compile_seconds"] = time.perf_counter() - started
    rows, impulse, compute, tables = [], [], 0.0, []
    for start, count in batches(config.sessions, batch):
        saved = load_batch(out, start)
        if saved is None:
            tick = time.perf_counter()
            before = timing["compile_seconds"]
            result = run_batch(config, payoff, start, count, backend, timing)
            seconds = time.perf_counter() - tick - (timing["compile_seconds"] - before)
            save_batch(out, start, result, seconds)
            saved = load_batch(out, start)
        compute += float(saved["compute_seconds"])
        tables.append((start, saved["q"].shape))
        wall = time.perf_counter() - started
        batch_rows, batch_impulse = session_rows(config, params, payoff, bench, saved, start, wall)
        rows += batch_rows
        impulse += batch_impulse
        if on_batch is not None:
            mean_delta = sum(r["delta"] for r in rows) / len(rows)
            on_batch({"sessions": len(rows), "total_sessions": config.sessions, "mean_delta": mean_delta})
    frame = pl.DataFrame(rows)
    impulse_frame = pl.DataFrame(impulse)
    summary = summarise(frame, impulse_frame, bench, config, compute, timing["compile_seconds"], backend)
    summary["wall_seconds"] = time.perf_counter() - started
    rundir.write_parquet(out / "metrics.parquet", frame)
    mirror.sync()
    rundir.write_parquet(out / "impulse.parquet", impulse_frame)
    rundir.atomic_write(out / Q_FILE, lambda tmp: write_q_tables(tmp, out, tables))
    rundir.write_json(out / "summary.json", summary)
    plot(out, frame, summary, config)
    return summary


def batches(sessions: int, batch: int) -> list[tuple[int, int]]:
    """``(first session, sessions)`` of every batch."""
    return [(start, min(batch, sessions - start)) for start in range(0, sessions, batch)]


def run_batch(config: QLearnConfig, payoff: np.ndarray, start: int, count: int, backend: str, timing: dict):
    """Sessions ``start .. start + count - 1`` on `backend`; the JAX backend adds its compile time to `timing`."""
    keys = qlearn.session_keys(config.seed, count, start)
    if backend == "jax":
        from agentlab.rl.qlearn_jax import train_jax

        inner: dict = {}
        result = train_jax(config, payoff, keys, timing=inner)
        timing["compile_seconds"] = timing.get("compile_seconds", 0.0) + inner.get("compile_seconds", 0.0)
        return result
    return qlearn.train_numba(config, payoff, keys)


def write_q_tables(path: Path, out: Path, tables: list[tuple[int, tuple[int, ...]]]) -> None:
    """``q_tables.npy`` at `path` from the batch files (``(start, q shape)`` each), one batch in memory at a time."""
    shape = (sum(s[0] for _, s in tables), *tables[0][1][1:])
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
    for start, q_shape in tables:
        saved = load_batch(out, start)
        if saved is None or saved["q"].shape != q_shape:
            raise UsageError(f"{batch_path(out, start)} changed while the run was writing {Q_FILE}; run it again")
        array[start : start + q_shape[0]] = saved["q"]
    array.flush()
    del array


def batch_path(out: Path, start: int) -> Path:
    return Path(out) / "checkpoints" / f"sessions-{start:07d}.npz"


def save_batch(out: Path, start: int, result, wall: float) -> None:
    """The batch starting at session `start`, atomically (a crash leaves a whole file or none)."""
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        greedy=result.greedy.astype(np.int16),
        periods=result.periods,
        converged=result.converged,
        final_state=result.final_state,
        compute_seconds=np.float64(wall),
        q=np.asarray(result.q, np.float64),
    )
    data = buffer.getvalue()
    rundir.atomic_write(batch_path(out, start), lambda tmp: tmp.write_bytes(data))


def load_batch(out: Path, start: int) -> dict | None:
    """The saved batch starting at session `start`, or None if it has to be computed.

    A batch file is a cache of deterministic work (one atomic file per batch, so a crash leaves a whole
    file or none): one that is missing, truncated, corrupt or not a batch of this command is recomputed
    to the same numbers and saved again rather than refused. A path that cannot be read at all (a
    directory, permission denied) is a one-line `UsageError` naming it.
    """
    import zipfile
    import zlib

    path = batch_path(out, start)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (zipfile.BadZipFile, ValueError, EOFError):  # truncated, corrupt or not an archive: recompute it
        return None
    except OSError as error:
        raise rundir.file_error(f"session batch {path}", error) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        return None
    with data:
        try:
            saved = {k: data[k] for k in BATCH_KEYS}
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError):
            return None
    sessions = {saved[k].shape[:1] for k in (*BATCH_KEYS[:4], "q")}
    if len(sessions) != 1 or () in sessions or saved["compute_seconds"].shape != () or saved["q"].ndim != 4:
        return None
    return saved


def session_rows(
    config: QLearnConfig, params, payoff: np.ndarray, bench: dict, saved: dict, start: int, wall: float
) -> tuple[list[dict], list[dict]]:
    """Per-session metrics rows and tidy impulse-response rows of one saved batch."""
    grid = np.asarray(params.prices, np.float64)
    rows, impulse = [], []
    for k in range(saved["periods"].shape[0]):
        result = qlearn.analyse_session(
            saved["greedy"][k].astype(np.int64), int(saved["final_state"][k]), config.prices, payoff, bench
        )
        session = start + k
        row = {
            "seed": config.seed,
            "session": session,
            "step": int(saved["periods"][k]),
            "wall_seconds": wall,
            "converged": bool(saved["converged"][k]),
            "periods_to_convergence": int(saved["periods"][k]),
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


def summarise(
    frame, impulse, bench: dict, config: QLearnConfig, compute_seconds: float, compile_seconds: float, backend: str
) -> dict[str, Any]:
    """Flat summary over sessions: Delta's distribution, periods to convergence, speed, mean impulse response."""
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


def plot(out: Path, frame, summary: dict, config: QLearnConfig) -> None:
    """``plots/delta_hist.png`` and ``plots/impulse_response.png``."""
    from agentlab.rundir import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(frame["delta"].to_numpy(), bins=np.linspace(-0.2, 1.1, 27), color="tab:blue", edgecolor="white")
    ax.axvline(summary["mean_delta"], color="black", linestyle="--", label=f"mean {summary['mean_delta']:.3f}")
    ax.set_xlabel("profit gain Delta = (pi - pi_N) / (pi_M - pi_N)")
    ax.set_ylabel("sessions")
    ax.set_title(f"Calvano Q-learning, {summary['sessions']} sessions, {config.firms} firms")
    ax.legend()
    rundir.save_figure(Path(out) / "plots" / "delta_hist.png", fig)

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
    rundir.save_figure(Path(out) / "plots" / "impulse_response.png", fig)
