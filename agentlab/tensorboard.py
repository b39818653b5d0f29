"""TensorBoard event files beside ``metrics.parquet`` (the optional ``tensorboard`` extra, tensorboardX).

A driver that writes metrics rows hands each new batch of rows to a `ScalarWriter` too (or, having just rewritten
``metrics.parquet``, calls `MetricsMirror.sync`, which hands it the rows added since the last sync): every numeric
column becomes a scalar tag, the row's ``step`` its global step, one event folder per seed
(``RUN/tensorboard/seed-<seed>/``), so TensorBoard shows each seed as a run. The writer opens its files
lazily, at the first rows, and then replaces the folder's old events: a resumed run's first batch holds
every committed row again, so the events always hold exactly the rows of ``metrics.parquet``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agentlab.errors import UsageError

FOLDER = "tensorboard"
INSTALL = "pip install 'agentlab[tensorboard]'"


def requested(tensorboard: bool, out: Path, resume: bool) -> bool:
    """Whether a run writes events: `tensorboard` asked for, or a resumed run whose config.json recorded it
    (a driver then records ``"tensorboard": true`` itself). Checks the extra is installed when it does."""
    if resume and not tensorboard:
        from agentlab import rundir

        tensorboard = bool(((rundir.run_record(Path(out)) or {}).get("config") or {}).get("tensorboard"))
    if tensorboard:
        require()
    return bool(tensorboard)


def require() -> None:
    """Raise a one-line `UsageError` when the extra (tensorboardX) is not installed."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageError(f"--tensorboard needs the tensorboard extra (tensorboardX): {INSTALL}") from None


class ScalarWriter:
    """Metrics rows -> TensorBoard scalars under `folder` (one sub-folder per value of `group`).

    ``write(rows)`` takes dicts as the drivers build them: `step` is the global step, `group` (``seed``)
    picks the sub-folder, every other int or float value (bool too) is a scalar under its column name, NaN kept.
    """

    def __init__(self, folder: Path, step: str = "step", group: str = "seed"):
        self.folder = Path(folder)
        self.step = step
        self.group = group
        self._writers: dict[Any, Any] = {}
        self._opened = False

    def _writer(self, key: Any):
        if key not in self._writers:
            from tensorboardX import SummaryWriter

            name = f"{self.group}-{key}" if key is not None else "all"
            self._writers[key] = SummaryWriter(str(self.folder / name), flush_secs=30)
        return self._writers[key]

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        if not self._opened:  # the first rows: a resumed run's events start over from its committed rows
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            self._opened = True
        for row in rows:
            writer = self._writer(row.get(self.group))
            step = int(row[self.step])
            for name, value in row.items():
                if name not in (self.step, self.group) and isinstance(value, (int, float)):
                    writer.add_scalar(name, float(value), step)  # a float32 simple_value, as TensorBoard's own
        self.flush()

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> ScalarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetricsMirror:
    """``RUN/metrics.parquet`` mirrored into TensorBoard events under ``RUN/tensorboard/``.

    A driver calls `sync` each time it has rewritten ``metrics.parquet``: the rows added since the last sync go
    to a `ScalarWriter` (`step` names the column of the global step: ``update`` for the offline learners,
    ``session`` for Q-learning; `group`, one event folder per seed). The first sync of a resumed run hands over
    every committed row (the `ScalarWriter` starts its folder over), so the events hold exactly the file's rows.
    With ``enabled=False`` every call does nothing, so a driver needs no branch.
    """

    def __init__(self, run_dir: Path, *, step: str = "update", group: str = "seed", enabled: bool = True):
        self.path = Path(run_dir) / "metrics.parquet"
        self.writer = ScalarWriter(Path(run_dir) / FOLDER, step=step, group=group) if enabled else None
        self.synced = 0

    def sync(self) -> None:
        if self.writer is None or not self.path.exists():
            return
        import polars as pl

        frame = pl.read_parquet(self.path)
        self.writer.write(frame.slice(self.synced).to_dicts())
        self.synced = frame.height

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> MetricsMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def open_run(
    out: Path,
    command: str,
    record: dict,
    *,
    tensorboard: bool,
    step: str = "update",
    resume: bool = False,
    **options: Any,
) -> Iterator[tuple[Path, MetricsMirror]]:
    """`agentlab.rundir.open_run` with the run's `MetricsMirror` beside it: yields ``(work, mirror)``. The mirror
    writes (and config.json records ``"tensorboard": true``) when `tensorboard` is asked for or a resumed run
    recorded it (`requested`); otherwise it does nothing. `options` go to `rundir.open_run`."""
    from agentlab import rundir

    board = requested(tensorboard, out, resume)
    record = {**record, **({"tensorboard": True} if board else {})}
    with (
        rundir.open_run(out, command, record, resume=resume, **options) as work,
        MetricsMirror(work, step=step, enabled=board) as mirror,
    ):
        yield work, mirror


def read_scalars(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The scalars of the event files below `folder`: ``{sub-folder: {tag: [(step, value), ...]}}``, in file
    order. Reads the TFRecord framing itself and parses the ``Event`` protos with tensorboardX's classes (no
    TensorBoard install needed); for tests and quick looks."""
    import struct

    from tensorboardX.proto import event_pb2

    found: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for path in sorted(Path(folder).rglob("events.out.tfevents.*")):
        scalars = found.setdefault(path.parent.relative_to(folder).as_posix(), {})
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            start = offset + 12  # u64 length, u32 masked CRC of the length
            event = event_pb2.Event.FromString(data[start : start + length])
            offset = start + length + 4  # the record, u32 masked CRC of the record
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
    return found
