"""`agentlab.executors`, the sweep layer, through a toy study: resume computes only what is missing, the table does not
depend on interruptions, the executor or the order of units, and a damaged unit file is one line naming it."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlab import executors
from agentlab.errors import UsageError

COLUMNS = ("x", "square", "label")
TIMING = "wall_seconds"


def squares(offset: int, work: tuple[int, int]) -> dict:
    """The toy study's pure compute: rows ``x, x**2 + offset`` for ``x`` in ``[lo, hi)``, and a nullable column."""
    lo, hi = work
    x = np.arange(lo, hi, dtype=np.int64)
    return {"x": x, "square": x * x + offset, "label": [None] * len(x)}


def toy_units(count: int = 5, size: int = 3) -> list[tuple[str, tuple[int, int]]]:
    return [(f"u{k:03d}", (k * size, (k + 1) * size)) for k in range(count)]


def rows(work: tuple[int, int]) -> int:
    return work[1] - work[0]


class Counting:
    """`compute` that records the work it was called on; raises KeyboardInterrupt on call `interrupt_at` (1-based)."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls: list = []
        self.interrupt_at = interrupt_at

    def __call__(self, work):
        if self.interrupt_at is not None and len(self.calls) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(work)
        return squares(7, work)


def sweep(folder: Path, units, compute, **options) -> executors.Counts:
    return executors.run_units(
        folder, units, compute, columns=COLUMNS, rows=rows, schema={"label": pl.String}, **options
    )


def table(folder: Path, units) -> pl.DataFrame:
    return executors.collect(folder, units).drop(TIMING)


def test_a_sweep_writes_one_file_per_unit_with_its_name(tmp_path):
    units = toy_units()
    done = []
    assert sweep(tmp_path, units, Counting(), on_unit=done.append) == (5, 0)
    assert done == [0, 1, 2, 3, 4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"u{k:03d}.parquet" for k in range(5)]
    frame = executors.collect(tmp_path, units)
    assert frame.columns == [*COLUMNS, "unit", TIMING]
    assert frame["x"].to_list() == list(range(15)) and frame["square"].to_list() == [x * x + 7 for x in range(15)]
    assert frame["unit"].to_list() == [f"u{k // 3:03d}" for k in range(15)]
    assert frame.schema["label"] == pl.String


def test_resume_after_an_interruption_computes_only_the_missing_units(tmp_path):
    units = toy_units()
    sweep(tmp_path / "whole", units, Counting())
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path / "cut", units, Counting(interrupt_at=3))
    assert sorted(p.stem for p in (tmp_path / "cut").glob("*.parquet")) == ["u000", "u001"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cut").iterdir()}
    resumed = Counting()
    done = []
    assert sweep(tmp_path / "cut", units, resumed, on_unit=done.append) == (3, 2)
    assert resumed.calls == [work for _, work in units[2:]] and done == [2, 3, 4, 5]
    assert all((tmp_path / "cut" / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    assert table(tmp_path / "cut", units).equals(table(tmp_path / "whole", units))
    again = Counting()
    assert sweep(tmp_path / "cut", units, again) == (0, 5) and again.calls == []


@settings(deadline=None, max_examples=15, derandomize=True)
@given(order=st.permutations(range(5)))
def test_the_table_does_not_depend_on_the_order_of_units(order):
    units = toy_units()
    with tempfile.TemporaryDirectory() as root:
        sweep(Path(root) / "given", units, functools.partial(squares, 7))
        shuffled = [units[k] for k in order]
        sweep(Path(root) / "shuffled", shuffled, functools.partial(squares, 7))
        assert table(Path(root) / "shuffled", shuffled).equals(table(Path(root) / "given", units))


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("truncated", "cannot be read"),
        ("garbage", "cannot be read"),
        ("other table", "lacks column 'square'"),
        ("wrong rows", "has 2 rows, expected 3"),
    ],
)
def test_a_damaged_unit_file_is_one_line_naming_it(tmp_path, damage, needle):
    units = toy_units()
    sweep(tmp_path, units, Counting())
    path = tmp_path / "u002.parquet"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"PAR1" + b"\x07" * 64 + b"PAR1")
    elif damage == "other table":
        pl.DataFrame({"x": [0, 1, 2], "unit": ["u002"] * 3, TIMING: [0.0] * 3}).write_parquet(path)
    else:
        pl.read_parquet(path).head(2).write_parquet(path)
    untouched = Counting()
    for check in (
        lambda: executors.check_units(tmp_path, units, columns=COLUMNS, rows=rows),
        lambda: sweep(tmp_path, units, untouched),
    ):
        with pytest.raises(UsageError) as error:
            check()
        message = str(error.value)
        assert len(message.splitlines()) == 1 and str(path) in message and needle in message
        assert message.startswith("--resume: unit file") and "delete it" in message
    assert untouched.calls == []  # refused before computing anything


def test_a_dataframe_result_is_written_as_it_is(tmp_path):
    def frame(work):
        return pl.DataFrame({"x": [work], "square": [work * work], "label": ["a"]})

    units = [("one", 1), ("two", 2)]
    assert executors.run_units(tmp_path, units, frame, columns=COLUMNS) == (2, 0)
    assert executors.collect(tmp_path, units, sort=["x"])["square"].to_list() == [1, 4]


@pytest.mark.parametrize(
    ("units", "needle"),
    [
        ([("a/b", 1)], "unit name 'a/b'"),
        ([("", 1)], "unit name ''"),
        ([(".hidden", 1)], "unit name '.hidden'"),
        ([("a", 1), ("a", 2)], "given twice"),
    ],
)
def test_bad_unit_names_are_refused(tmp_path, units, needle):
    with pytest.raises(UsageError, match=needle):
        executors.run_units(tmp_path, units, functools.partial(squares, 0))
    assert not list(tmp_path.iterdir())


def test_an_unknown_executor_and_a_missing_unit_are_refused(tmp_path):
    with pytest.raises(UsageError, match="executor must be 'local' or 'ray', got 'spark'"):
        sweep(tmp_path, toy_units(), Counting(), executor="spark")
    with pytest.raises(UsageError, match="u000.parquet: no such file"):
        executors.collect(tmp_path, toy_units())


# The Ray executor's tests (a real local Ray instance: retries, resume, errors) are in tests/test_ray.py.
