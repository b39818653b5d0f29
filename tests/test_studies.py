"""`agentlab.studies`: the simulations and the lemon study are library functions a notebook calls without the command
line, and the commands write exactly what they return."""

from __future__ import annotations

import math

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.errors import UsageError
from agentlab.studies import crash, lemons
from agentlab.studies.simulation import SimulateRequest, SimulationResult

runner = CliRunner()
TIMING = ("wall_seconds", "compile_seconds")


def untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING and not k.endswith("_per_second")}


@pytest.mark.slow
def test_the_crash_study_is_the_command_without_the_run_directory(tmp_path):
    request = SimulateRequest(policies=(("undercut", 3), ("stabilise", 2)), dlc=3, markets=4, steps=30, seed=7)
    result = crash.run_crash(request)
    assert isinstance(result, SimulationResult)
    assert set(result.plots) == {"price_paths.png", "cash_paths.png", "survival.png", "eas.png"}
    assert result.metrics.height == 30 and 0 <= result.summary["eas"] <= 1

    args = ["--policies", "undercut:3,stabilise:2", "--dlc", "3", "--markets", "4", "--steps", "30", "--seed", "7"]
    out = tmp_path / "run"
    command = runner.invoke(app, ["simulate", "market-crash", *args, "--out", str(out), "--quiet", "--json"])
    assert command.exit_code == 0, command.output
    summary = orjson.loads(command.stdout)
    assert untimed(summary) == untimed(result.summary) and list(summary) == [*result.summary, "wall_seconds"]
    written = pl.read_parquet(out / "metrics.parquet")
    assert_frame_equal(written.drop("wall_seconds"), result.metrics.drop("wall_seconds"), check_exact=True)
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(result.plots)


def test_a_study_refuses_bad_input_with_a_usage_error():
    with pytest.raises(UsageError, match="larger than the number of firms"):
        crash.validate_crash(SimulateRequest(policies=(("undercut", 2),), dlc=3, markets=4))
    request = SimulateRequest(policies=(("honest", 4),), buyers=(("naive", 2),), dlc=2, params={"x": 1.0})
    with pytest.raises(UsageError, match="valid keys"):
        lemons.validate_lemons(request)
    with pytest.raises(UsageError, match="--markets"):
        lemons.check_study(0, 10, 0)


@pytest.mark.slow
def test_bench_lemons_writes_the_lemon_study(tmp_path):
    out = tmp_path / "study"
    args = ["bench", "lemons", "--markets", "2", "--days", "6", "--seed", "3", "--out", str(out), "--quiet", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    cells = len(lemons.STUDY_BUYERS) * len(lemons.STUDY_DLC) * len(lemons.STUDY_SYBILS)
    assert summary["cells"] == cells and summary["markets"] == 2 and summary["days"] == 6
    table = pl.read_parquet(out / "metrics.parquet").to_dicts()
    grid = {(b, d, k) for b in lemons.STUDY_BUYERS for d in lemons.STUDY_DLC for k in lemons.STUDY_SYBILS}
    assert len(table) == cells and {(r["buyers"], r["dlc"], r["sybils"]) for r in table} == grid
    assert (out / "study.md").read_text() == lemons.study_markdown(table)
    assert (out / "plots" / "study.png").is_file()
    no_sybils = [r for r in table if r["sybils"] == 0]
    assert all(r["sybil_revenue_share"] == 0 and math.isclose(r["welfare"], 1) for r in no_sybils)


@pytest.mark.parametrize("args", [["--markets", "0"], ["--days", "0"], ["--markets", "99999999999"]])
def test_bench_lemons_refuses_bad_input_in_one_line(tmp_path, args):
    result = runner.invoke(app, ["bench", "lemons", *args, "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and args[0] in result.output
    assert not (tmp_path / "x").exists()
