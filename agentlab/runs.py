"""Reading run directories side by side: `agentlab runs ls | show | compare`.

Every agentlab run directory has ``config.json`` (`rundir.run_record`); most have ``summary.json`` and
``metrics.parquet`` (tidy rows with ``seed`` and ``step`` or ``update``). This module finds them (`find`),
loads one (`load`), lists them (`listing`), and compares several: the learning curves of one metric, seeds
averaged with their min-max (`curves`, drawn by `figure`), and their summaries as a table (`summary_table`).
Anything that is not a run, or a run whose files are corrupt, is a one-line `UsageError`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from pathlib import Path
from typing import Any

import orjson

from agentlab import rundir
from agentlab.errors import UsageError

DEFAULT_ROOT = Path("runs")
DEFAULT_METRICS = ("mean_return", "episode_return")  # the first one every run has is compared by default
X_COLUMNS = ("step", "update")  # the first one a run's metrics have is its curve's x; else the row's order
STATUSES = ("finished", "resumable", "unfinished", "damaged")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory: its ``config.json`` record, its summary (None when it has none) and its status:
    ``finished`` (summary.json), ``resumable`` (no summary yet, a checkpoint), ``unfinished`` or
    ``damaged`` (a summary.json that cannot be read; only `find` returns such runs)."""

    path: Path
    record: dict[str, Any]
    summary: dict[str, Any] | None
    status: str

    @property
    def command(self) -> str:
        return self.record["command"]

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.parquet"


def _read_summary(path: Path) -> dict[str, Any] | None:
    """``summary.json`` of the run `path` (None when there is none); unreadable or not an object -> UsageError."""
    file = path / "summary.json"
    if not file.exists():
        return None
    summary = rundir.read_json_file(file, "summary")
    if not isinstance(summary, dict):
        raise UsageError(f"summary {file} is not a JSON object (corrupt or foreign)")
    return summary


def _status(path: Path, summary: dict | None) -> str:
    if summary is not None:
        return "finished"
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir() and any(entry.is_file() for entry in checkpoints.iterdir()):
        return "resumable"
    return "unfinished"


def load(path: Path) -> Run:
    """The run directory `path`; not a run directory, a corrupt config.json or summary.json -> `UsageError`."""
    path = rundir.check_text(Path(path), "run")
    record = rundir.load_record(path)
    summary = _read_summary(path)
    return Run(path, record, summary, _status(path, summary))


def find(root: Path = DEFAULT_ROOT) -> list[Run]:
    """The run directories at or below `root`, sorted by path (hidden folders, such as a run being built,
    and symbolic links are skipped; a folder whose config.json is not a run record is not a run). A run whose
    summary.json cannot be read is listed as ``damaged``. `root` missing or not a folder -> `UsageError`."""
    root = rundir.check_text(Path(root), "ROOT")
    if not root.exists():
        raise UsageError(f"{root} does not exist (expected a folder of run directories)")
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory (expected a folder of run directories)")
    found = []
    for folder, dirs, files in os.walk(root, onerror=None, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "config.json" not in files:
            continue
        path = Path(folder)
        record = rundir.run_record(path)
        if record is None:
            continue
        try:
            summary = _read_summary(path)
            status = _status(path, summary)
        except UsageError:
            summary, status = None, "damaged"
        found.append(Run(path, record, summary, status))
    return sorted(found, key=lambda run: run.path.as_posix())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


def env_of(run: Run) -> str:
    """The kernel(s) a run used: its config's ``env`` (or ``envs``), else its summary's."""
    for source in (run.config, run.summary or {}):
        for key in ("env", "envs"):
            if source.get(key) not in (None, ""):
                return _text(source[key])
    return ""


def algo_of(run: Run) -> str:
    """The learner or policy of a run: its config's ``algorithm``, ``algo``, ``algos`` or ``policy``, else the
    last word of a ``train`` command (``train ppo`` -> ``ppo``)."""
    for key in ("algorithm", "algo", "algos", "policy"):
        if run.config.get(key) not in (None, ""):
            return _text(run.config[key])
    words = run.command.split()
    return words[-1] if "train" in words[:-1] else ""


def mean_return(run: Run) -> float | None:
    """The summary's ``mean_return`` when it is a finite number, else None."""
    value = (run.summary or {}).get("mean_return")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def modified(run: Run) -> str:
    """The newest modification time of the files at the top of the run, local time, to the second."""
    times = []
    with os.scandir(run.path) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                pass
    stamp = max(times) if times else run.path.stat().st_mtime
    return datetime.datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="seconds")


def listing(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per run: path, command, env, algo, status, mean_return (None where the summary has none),
    modified."""
    return [
        {
            "path": str(run.path),
            "command": run.command,
            "env": env_of(run),
            "algo": algo_of(run),
            "status": run.status,
            "mean_return": mean_return(run),
            "modified": modified(run),
        }
        for run in runs
    ]


def metrics_columns(run: Run) -> tuple[list[str], int] | None:
    """``(columns, rows)`` of the run's metrics.parquet (None when it has none); corrupt -> `UsageError`."""
    import polars as pl

    if not run.metrics_path.exists():
        return None
    try:
        lazy = pl.scan_parquet(run.metrics_path)
        columns = list(lazy.collect_schema().names())
        rows = int(lazy.select(pl.len()).collect().item())
    except (OSError, pl.exceptions.PolarsError) as error:
        raise _corrupt(run.metrics_path, error) from None
    return columns, rows


def _corrupt(path: Path, error: Exception) -> UsageError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UsageError(f"{path} is truncated or corrupt: {first}")


def read_metrics(run: Run):
    """The run's metrics.parquet as a polars DataFrame (None when it has none); corrupt -> `UsageError`."""
    import polars as pl

    if not run.metrics_path.exists():
        return None
    try:
        return pl.read_parquet(run.metrics_path)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise _corrupt(run.metrics_path, error) from None


@dataclasses.dataclass(frozen=True)
class Curve:
    """One run's learning curve: at each `x` (sorted), the metric's mean over seeds and its min and max
    (NaN where no seed has a value). A seed with several rows at one x counts their mean."""

    label: str
    x_column: str
    x: Any  # float64 arrays
    mean: Any
    low: Any
    high: Any
    seeds: int


def default_metric(frames: dict[str, Any]) -> str:
    """The first of `DEFAULT_METRICS` that every run's metrics have; none -> `UsageError` naming what is
    missing. `frames` maps each run's label to its metrics (None: no metrics.parquet)."""
    for name in DEFAULT_METRICS:
        if all(frame is not None and name in frame.columns for frame in frames.values()):
            return name
    raise UsageError(
        f"no default metric ({' or '.join(DEFAULT_METRICS)}) in every run: {_missing(frames, DEFAULT_METRICS[-1])}; "
        "give --metric NAME"
    )


def _missing(frames: dict[str, Any], metric: str) -> str:
    parts = []
    for label, frame in frames.items():
        if frame is None:
            parts.append(f"{label} has no metrics.parquet")
        elif metric not in frame.columns:
            parts.append(f"{label} has no column {metric!r} (it has {', '.join(frame.columns)})")
    return "; ".join(parts)


def curve(frame, metric: str, label: str) -> Curve:
    """The learning curve of `metric` in one run's metrics `frame`."""
    import numpy as np
    import polars as pl

    x_column = next((name for name in X_COLUMNS if name in frame.columns), "row")
    if not frame.schema[metric].is_numeric() and frame.schema[metric] != pl.Boolean:
        raise UsageError(f"{label}: metric {metric!r} is not numeric ({frame.schema[metric]})")
    if "seed" not in frame.columns:
        frame = frame.with_columns(seed=pl.lit(0))
    x = pl.int_range(pl.len()).over("seed") if x_column == "row" else pl.col(x_column)
    table = frame.select(
        pl.col("seed"), x.cast(pl.Float64).alias("x"), pl.col(metric).cast(pl.Float64).fill_nan(None).alias("y")
    ).drop_nulls("x")
    per_seed = table.group_by("seed", "x").agg(pl.col("y").mean())
    wide = per_seed.pivot(on="seed", index="x", values="y").sort("x")
    xs = wide["x"].to_numpy().astype(float)
    values = wide.drop("x").to_numpy().astype(float).reshape(len(xs), -1)
    with np.errstate(all="ignore"):
        finite = np.isfinite(values)
        count = finite.sum(axis=1)
        total = np.where(finite, values, 0.0).sum(axis=1)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        low = np.where(count > 0, np.where(finite, values, np.inf).min(axis=1), np.nan)
        high = np.where(count > 0, np.where(finite, values, -np.inf).max(axis=1), np.nan)
    return Curve(label, x_column, xs, mean, low, high, values.shape[1])


def curves(runs: list[Run], metric: str | None = None, labels: list[str] | None = None) -> tuple[str, list[Curve]]:
    """``(metric, curves)``: every run's learning curve of `metric` (default: `default_metric`). A run
    without metrics.parquet or without the metric -> `UsageError` naming each such run."""
    labels = labels or [str(run.path) for run in runs]
    frames = dict(zip(labels, (read_metrics(run) for run in runs), strict=True))
    if metric is None:
        metric = default_metric(frames)
    elif any(frame is None or metric not in frame.columns for frame in frames.values()):
        raise UsageError(f"not every run has the metric {metric!r}: {_missing(frames, metric)}")
    return metric, [curve(frame, metric, label) for label, frame in frames.items()]


def figure(metric: str, run_curves: list[Curve]):
    """One matplotlib figure: a line per run (the mean over seeds), shaded min-max where a run has several
    seeds. The lines' data are the curves' ``x`` and ``mean`` exactly."""
    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for item in run_curves:
        (line,) = ax.plot(item.x, item.mean, label=f"{item.label} ({item.seeds} seed{'s' * (item.seeds != 1)})")
        if item.seeds > 1:
            ax.fill_between(item.x, item.low, item.high, color=line.get_color(), alpha=0.2, linewidth=0)
    xs = sorted({item.x_column for item in run_curves})
    ax.set_xlabel(" / ".join("row of each seed" if name == "row" else name for name in xs))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, shaded min-max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def summary_table(runs: list[Run]) -> tuple[list[str], list[list[Any]]]:
    """``(keys, values)``: the union of the runs' summary keys (first seen first), ``command`` first, and for
    each key one value per run (None where a run's summary lacks it or it has no summary)."""
    keys = ["command"]
    for run in runs:
        keys += [key for key in (run.summary or {}) if key not in keys]
    values = [[run.command if key == "command" else (run.summary or {}).get(key) for run in runs] for key in keys]
    return keys, values


def cell(value: Any, width: int = 48) -> str:
    """A summary value as table text: numbers to 6 significant digits, lists and tables as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text if len(text) <= width else text[: width - 3] + "..."
