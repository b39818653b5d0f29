"""`agentlab.tensorboard.MetricsMirror`: a metrics file rewritten chunk by chunk becomes exactly its rows as events,
a resumed run's first sync starts the events over, and a disabled mirror writes nothing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from agentlab import tensorboard

pytest.importorskip("tensorboardX")


def _frame(updates: int, seeds=(0, 1)) -> pl.DataFrame:
    rows = [
        {"seed": s, "update": 10 * u, "loss": 1.0 / (u + 1) + s, "note": "text", "mean_return": None if u % 2 else u}
        for u in range(1, updates + 1)
        for s in seeds
    ]
    return pl.DataFrame(rows)


def _expected(frame: pl.DataFrame) -> dict:
    found = {}
    for seed in frame["seed"].unique().to_list():
        rows = frame.filter(pl.col("seed") == seed)
        folder = found.setdefault(f"seed-{seed}", {})
        for column in ("loss", "mean_return"):
            kept = rows.filter(pl.col(column).is_not_null())
            if kept.height:  # a column with no value yet has no tag
                folder[column] = [(int(u), float(np.float32(v))) for u, v in zip(kept["update"], kept[column])]
    return found


def test_chunk_by_chunk_sync_writes_each_row_once(tmp_path):
    """(Read after closing: tensorboardX writes from a background thread, so a flush is not a barrier.)"""
    with tensorboard.MetricsMirror(tmp_path) as mirror:
        mirror.sync()  # no metrics yet: nothing, no folder
        assert not (tmp_path / "tensorboard").exists()
        for chunk in range(1, 4):
            _frame(chunk).write_parquet(tmp_path / "metrics.parquet")
            mirror.sync()
    assert tensorboard.read_scalars(tmp_path / "tensorboard") == _expected(_frame(3))


def test_a_resumed_run_starts_over_from_the_committed_rows(tmp_path):
    with tensorboard.MetricsMirror(tmp_path) as mirror:
        _frame(3).write_parquet(tmp_path / "metrics.parquet")  # 3 chunks written before the crash ...
        mirror.sync()
    _frame(3).write_parquet(tmp_path / "metrics.parquet")  # ... then resumed: the file holds 2 committed + 1 new
    with tensorboard.MetricsMirror(tmp_path) as mirror:
        mirror.sync()
    assert tensorboard.read_scalars(tmp_path / "tensorboard") == _expected(_frame(3))  # no row twice


def test_no_group_column_is_one_folder_and_a_disabled_mirror_writes_nothing(tmp_path):
    frame = pl.DataFrame({"update": [1, 2], "loss": [0.5, 0.25]})
    frame.write_parquet(tmp_path / "metrics.parquet")
    with tensorboard.MetricsMirror(tmp_path, enabled=False) as mirror:
        mirror.sync()
    assert not (tmp_path / "tensorboard").exists()
    with tensorboard.MetricsMirror(tmp_path) as mirror:
        mirror.sync()
    assert tensorboard.read_scalars(tmp_path / "tensorboard") == {"all": {"loss": [(1, 0.5), (2, 0.25)]}}


def test_requested_reads_a_resumed_runs_record(tmp_path):
    from agentlab import rundir

    rundir.write_config(tmp_path, "train pgd", {"tensorboard": True})
    assert tensorboard.requested(False, tmp_path, resume=True)
    assert not tensorboard.requested(False, tmp_path, resume=False)
    rundir.write_config(tmp_path, "train pgd", {})
    assert not tensorboard.requested(False, tmp_path, resume=True)
