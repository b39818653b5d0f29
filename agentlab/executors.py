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

Executors: ``local`` (in this process, in the order given) and ``ray`` (one Ray task per unit; files written by this
process as tasks finish). A unit's file holds only its own rows, and `collect` reads units in name order, so the table
is the same for either executor and any order of units.

Ray (`ray_map`, `ray_session`): the cluster at ``address`` (``--ray-address``), else at ``RAY_ADDRESS``, else a local
instance sized for the machine (``num_cpus``: the CPUs this process may use; no dashboard; Ray's own logs at ERROR
only), shut down when the map ends; an instance already initialised by the caller is used as it is. A task whose
worker process dies (killed, out of memory, ``os._exit``, a lost node) is run again, up to `RAY_MAX_RETRIES` times:
Ray's ``max_retries`` with ``retry_exceptions=False``, so an exception raised by the study's own code is never retried.
A ``ValueError`` there (a `UsageError`, bad input the study found) surfaces as one `UsageError` line naming the unit;
any other exception is re-raised as it was raised in the worker. Ctrl-C cancels the tasks still pending; the units
already written stay and a resumed sweep does not redo them.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from agentlab.errors import UsageError

EXECUTORS = ("local", "ray")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
ADDED = ("unit", "wall_seconds")  # the columns `run_units` adds to every unit's rows
RAY_MAX_RETRIES = 3  # runs of a task after the first whose worker died (system failures only)

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
    ray_address: str | None = None,
) -> Counts:
    """Compute every unit without a file in `folder` on `executor`, writing each as soon as it is done.

    Existing files are checked first (`check_units` with `columns` and `rows`). `schema` overrides column types
    when rows are a dict (e.g. a column that may be all null). ``on_unit(done)`` receives the number of units
    done (found or computed): once after the check, then after every unit. `ray_address`: the Ray cluster to join
    (``executor="ray"`` only; default ``RAY_ADDRESS``, else a local instance)."""
    check_executor(executor, ray_address)
    listed = unit_list(units)
    folder = Path(folder)
    check_units(folder, listed, columns=columns, rows=rows)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(name, work) for name, work in listed if not unit_path(folder, name).exists()]
    skipped = len(listed) - len(todo)
    if on_unit is not None:
        on_unit(skipped)
    start = time.perf_counter()
    if executor == "ray":
        results = ray_map(compute, todo, address=ray_address)
    else:
        results = ((name, compute(work)) for name, work in todo)
    with contextlib.closing(results):  # leaving early closes the Ray map: its pending tasks are cancelled
        for done, (name, result) in enumerate(results, start=skipped + 1):
            _save(unit_path(folder, name), name, result, schema, time.perf_counter() - start)
            if on_unit is not None:
                on_unit(done)
    return Counts(len(todo), skipped)


def check_executor(executor: str, ray_address: str | None = None) -> None:
    """`executor` must be one of `EXECUTORS`, ``ray`` importable; `ray_address` goes only with ``ray`` (one
    `UsageError` line each)."""
    if executor not in EXECUTORS:
        raise UsageError(f"--executor must be 'local' or 'ray', got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise UsageError(f"--ray-address {ray_address} needs --executor ray (the executor is {executor!r})")
    if ray_address is not None and not ray_address.strip():
        raise UsageError("--ray-address is empty: give a cluster address (host:port, ray://host:port or auto)")
    if executor == "ray":
        _require_ray()  # refused before anything is written


def _save(path: Path, name: str, result: Any, schema: Mapping[str, Any] | None, wall: float) -> None:
    import polars as pl

    from agentlab.rundir import write_parquet

    frame = result if isinstance(result, pl.DataFrame) else pl.DataFrame(result, schema_overrides=schema)
    write_parquet(path, frame.with_columns(pl.lit(name).alias("unit"), pl.lit(wall).alias("wall_seconds")))


def _require_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'agentlab[ray]'") from None
    return ray


def local_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """The `ray` module, initialised: an instance the caller already started is used as it is; else the cluster at
    `address` (or ``RAY_ADDRESS``), else a local instance (``num_cpus`` = `local_cpus`, no dashboard, quiet logs),
    shut down on leaving."""
    ray = _require_ray()
    if ray.is_initialized():
        yield ray
        return
    import logging

    label = "--ray-address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_reachable(address, label)
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        with warnings.catch_warnings():  # Ray starts its processes by fork + exec, which JAX's warning does not know
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            if address is None:
                ray.init(num_cpus=local_cpus(), **quiet)
            else:
                ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
    except (ConnectionError, ValueError, RuntimeError) as error:
        if address is None:
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise UsageError(f"{label} {address}: cannot join the Ray cluster ({first})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def session(executor: str, address: str | None = None) -> contextlib.AbstractContextManager:
    """`ray_session` for ``executor="ray"`` (a command opens it before writing anything, so that a cluster it cannot
    join is refused first, and all its maps share one instance), else a context that does nothing."""
    return ray_session(address) if executor == "ray" else contextlib.nullcontext()


def _check_reachable(address: str, label: str = "--ray-address", timeout_s: float = 10.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address must accept a TCP connection within `timeout_s` (Ray itself
    retries an unreachable cluster for minutes); other forms (``auto``, ``local``) are left to Ray."""
    import socket

    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d{1,5})", address.strip())
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(
            f"{label} {address}: cannot reach a Ray cluster there ({reason}); give the head node's host:port "
            "(`ray start --head` prints it)"
        ) from None


def _run_task(compute: Compute, work: Any) -> Any:
    """The body of every Ray task: ``compute(work)`` (a plain function, so `compute` may be a `functools.partial`)."""
    return compute(work)


def ray_map(compute: Compute, todo: Sequence[tuple[str, Any]], *, address: str | None = None) -> Iterator[tuple]:
    """``(name, compute(work))`` of every ``(name, work)`` of `todo`, each computed as a Ray task (see the module
    docstring: retries, errors, the cluster), yielded as they finish. Closing the generator early (an exception in
    the consumer, Ctrl-C) cancels the tasks still pending."""
    ray = _require_ray()
    todo = list(todo)
    if not todo:
        return
    with ray_session(address):
        remote = ray.remote(max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_run_task)
        pending = {remote.remote(compute, work): name for name, work in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    name = pending.pop(ref)
                    yield name, _result(ray, ref, name)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _result(ray, ref, name: str) -> Any:
    """``ray.get(ref)``; a study's ValueError -> one `UsageError` line, its other exceptions as raised, a worker that
    died more often than the retries allow -> `RuntimeError` naming the unit."""
    from ray import exceptions

    try:
        return ray.get(ref)
    except exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, ValueError):
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise UsageError(f"unit {name}: {first}") from None
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.OutOfMemoryError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise RuntimeError(
            f"unit {name}: its Ray worker died {RAY_MAX_RETRIES + 1} times ({type(error).__name__}: {first})"
        ) from None


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
