"""Sweeps in resumable units: any study's work, split into named units, computed once each, locally or on Ray.

A study gives

- its units as ``(name, work)`` pairs: a name is a file stem (letters, digits, ``.``, ``_``, ``-``; unique), the work
  anything picklable;
- a pure ``compute(work) -> rows``: a polars DataFrame or what `polars.DataFrame` takes (a dict of columns), a
  function of the work only (for Ray it is pickled: a module-level function or a `functools.partial` of one);
- a folder for the results.

`run_units` writes each unit's rows to ``folder/NAME.parquet`` atomically as soon as it is done, with two columns
added: ``unit`` (its name) and ``wall_seconds`` (seconds since this call started). Run again into the same folder
(after Ctrl-C, a crash, a killed job), it computes only the units without a file, and `collect` gives the table an
uninterrupted sweep gives (``wall_seconds`` aside). A unit file that cannot be read back whole, or lacks the columns
or rows the study expects (`check_units`), is refused with one line naming it: never trusted, never silently
recomputed (an unreadable file is a disk or copy problem worth knowing about); deleting it recomputes that unit.

Executors: ``local`` (in this process, in the order given) and ``ray`` (Ray tasks on an existing cluster if
``RAY_ADDRESS`` is set, else a local instance; files written as tasks finish). A unit's file holds only its own rows,
and `collect` reads units in name order, so the table is the same for either executor and any order of units.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from agentlab.errors import UsageError

EXECUTORS = ("local", "ray")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
ADDED = ("unit", "wall_seconds")  # the columns `run_units` adds to every unit's rows

Units = Iterable[tuple[str, Any]]
Compute = Callable[[Any], Any]


class Counts(NamedTuple):
    computed: int  # units computed by this call
    skipped: int  # units whose file was already there (a resumed sweep)


def unit_list(units: Units) -> list[tuple[str, Any]]:
    """`units` as a list of ``(name, work)``; a name that is not a plain file stem, or given twice -> `UsageError`."""
    listed, seen = [], set()
    for name, work in units:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UsageError(f"unit name {name!r}: give a file stem of letters, digits, '.', '_' or '-'")
        if name in seen:
            raise UsageError(f"unit name {name!r} is given twice: unit names must be unique")
        seen.add(name)
        listed.append((name, work))
    return listed


def unit_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.parquet"


def check_units(
    folder: Path,
    units: Units,
    *,
    columns: Sequence[str] = (),
    rows: Callable[[Any], int] | None = None,
    label: str = "--resume",
) -> int:
    """Every unit file already in `folder` must read back whole, with `columns` and ``rows(work)`` rows (when
    given); otherwise `UsageError` (``"{label}: unit file PATH ..."``, one line). Returns the number found."""
    import polars as pl

    found = 0
    for name, work in unit_list(units):
        path = unit_path(folder, name)
        if not path.exists():
            continue
        try:
            frame = pl.read_parquet(path)
        except Exception as error:  # noqa: BLE001 - polars raises several kinds for a damaged file
            detail = (str(error).strip().splitlines() or [""])[0][:200]
            raise UsageError(
                f"{label}: unit file {path} cannot be read ({type(error).__name__}: {detail}); it is truncated or "
                "corrupt: delete it and resume to recompute that unit"
            ) from None
        missing = [c for c in (*columns, *ADDED) if c not in frame.columns]
        expected = rows(work) if rows is not None else frame.height
        if missing or frame.height != expected:
            what = f"lacks column {missing[0]!r}" if missing else f"has {frame.height} rows, expected {expected}"
            raise UsageError(
                f"{label}: unit file {path} {what}: it is not a unit of this sweep; delete it and resume to "
                "recompute that unit"
            )
        found += 1
    return found


def run_units(
    folder: Path,
    units: Units,
    compute: Compute,
    *,
    executor: str = "local",
    columns: Sequence[str] = (),
    rows: Callable[[Any], int] | None = None,
    schema: Mapping[str, Any] | None = None,
    on_unit: Callable[[int], None] | None = None,
) -> Counts:
    """Compute every unit without a file in `folder` on `executor`, writing each as soon as it is done.

    Existing files are checked first (`check_units` with `columns` and `rows`). `schema` overrides column types
    when rows are a dict (e.g. a column that may be all null). ``on_unit(done)`` receives the number of units
    done (found or computed): once after the check, then after every unit."""
    if executor not in EXECUTORS:
        raise UsageError(f"executor must be 'local' or 'ray', got {executor!r}")
    listed = unit_list(units)
    folder = Path(folder)
    check_units(folder, listed, columns=columns, rows=rows)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(name, work) for name, work in listed if not unit_path(folder, name).exists()]
    skipped = len(listed) - len(todo)
    if on_unit is not None:
        on_unit(skipped)
    start = time.perf_counter()
    results = _ray_map(compute, todo) if executor == "ray" else ((name, compute(work)) for name, work in todo)
    for done, (name, result) in enumerate(results, start=skipped + 1):
        _save(unit_path(folder, name), name, result, schema, time.perf_counter() - start)
        if on_unit is not None:
            on_unit(done)
    return Counts(len(todo), skipped)


def _save(path: Path, name: str, result: Any, schema: Mapping[str, Any] | None, wall: float) -> None:
    import polars as pl

    from agentlab.rundir import write_parquet

    frame = result if isinstance(result, pl.DataFrame) else pl.DataFrame(result, schema_overrides=schema)
    write_parquet(path, frame.with_columns(pl.lit(name).alias("unit"), pl.lit(wall).alias("wall_seconds")))


def _ray_map(compute: Compute, todo: list[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """``(name, rows)`` of every unit of `todo` computed as a Ray task, as they finish."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'agentlab[ray]'") from None
    if not todo:
        return
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(compute)
    pending = {remote.remote(work): name for name, work in todo}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            yield pending.pop(ref), ray.get(ref)


def collect(folder: Path, units: Units, *, sort: Sequence[str] | None = None):
    """The table of every unit's file (polars DataFrame), units in name order, then sorted by `sort` if given.
    A unit without a file -> `UsageError` naming it."""
    import polars as pl

    frames = []
    for name, _ in sorted(unit_list(units), key=lambda unit: unit[0]):
        path = unit_path(folder, name)
        if not path.exists():
            raise UsageError(f"unit file {path}: no such file (the sweep has not computed unit {name!r})")
        frames.append(pl.read_parquet(path))
    table = pl.concat(frames)
    return table.sort(list(sort)) if sort else table
