"""`agentlab sweep synergy` and `agentlab calibrate synergy`: recovery, resume, bad input."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.synergy import calibrate, examples

runner = CliRunner()
SMALL = ["--fan-in", "3,5", "--rho", "0,0.5", "--gamma", "0.7:1:2", "--depth", "0:6:4", "--trials", "2048",
         "--budget", "1000,100000", "--quiet"]  # fmt: skip


def _error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    return lines[0]


def test_homogeneous_example_recovers_its_parameters():
    truth = examples.HomogeneousGenerator()
    fit = calibrate.fit_synergy(calibrate.load_table(examples.DATA / "homogeneous.parquet"), bootstrap=200, seed=0)
    assert fit.beta.contains(truth.beta) and fit.beta.high - fit.beta.low < 0.25
    assert fit.kappa.contains(truth.kappa)
    assert fit.rho.contains(truth.rho) and abs(fit.rho.estimate - truth.rho) < 0.03
    assert fit.m0.contains(truth.m0) and abs(fit.m0.estimate - truth.m0) < 10


def test_shipped_examples_are_regenerable():
    for name, generate in (
        ("homogeneous", examples.generate_homogeneous),
        ("agent_level", examples.generate_agent_level),
    ):
        shipped = pl.read_parquet(examples.DATA / f"{name}.parquet")
        assert shipped.equals(generate())
        assert (examples.DATA / f"{name}.parquet").stat().st_size < 500_000


def test_calibrate_cli_reports_theory_limits(tmp_path):
    result = runner.invoke(app, ["calibrate", "synergy", "example:agent_level", "--out", str(tmp_path / "a"),
                                 "--bootstrap", "50", "--json", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["homogeneous_theory_holds"] is False
    result = runner.invoke(app, ["calibrate", "synergy", "example:homogeneous", "--out", str(tmp_path / "h"),
                                 "--bootstrap", "50", "--json", "--quiet", "-B", "1e6", "-m", "200"])  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["homogeneous_theory_holds"] is True
    assert summary["phase_b3"] == "amplifying" and summary["recommendation"]
    assert {p.name for p in (tmp_path / "h" / "plots").iterdir()} == {"fit.png", "majority_check.png",
                                                                     "recommendation.png"}  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (pl.DataFrame({"item": [1], "agent": [1], "correct": [1]}), "missing column 'compute'"),
        (pl.DataFrame({"item": [1], "agent": [1], "compute": [10.0], "correct": [2]}), "'correct' must be 0/1, got 2"),
        (pl.DataFrame({"item": [1], "agent": [1], "compute": [10.0], "correct": [1], "message_length": [5]}),
         "needs column 'relayed_correct'"),
    ],
)  # fmt: skip
def test_calibrate_bad_data_is_one_line(tmp_path, frame, needle):
    path = tmp_path / "data.csv"
    frame.write_csv(path)
    line = _error_line(runner.invoke(app, ["calibrate", "synergy", str(path), "--out", str(tmp_path / "o")]))
    assert needle in line


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--rho", "1.0"], "--rho must be a finite number in [0, 1)"),
        (["--gamma", "0"], "--gamma must be a finite number in (0, 1]"),
        (["--fan-in", "4"], "odd integer >= 3, got 4"),
        (["--fan-in", "1"], "--fan-in must be an integer in [3, 99] (odd fan-in b), got 1"),
        (["--rho", "0:x:3"], "--rho"),
        (["--executor", "spark"], "--executor"),
    ],
)
def test_sweep_bad_input_is_one_line(tmp_path, flags, needle):
    line = _error_line(runner.invoke(app, ["sweep", "synergy", *SMALL, *flags, "--out", str(tmp_path / "o")]))
    assert needle in line


def test_sweep_writes_resumes_and_recomputes_nothing(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["sweep", "synergy", *SMALL, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["units_computed"] == 2 and summary["fraction_within_4_se"] == 1.0
    table = pl.read_parquet(out / "metrics.parquet")
    assert table.height == 2 * 2 * 2 * 4
    assert {p.name for p in (out / "plots").iterdir()} == {
        "phase_diagram.png", "accuracy_vs_depth.png", "tree_vs_single.png", "x_star_vs_budget.png"}  # fmt: skip
    # An existing run directory is refused without --resume / --force.
    assert "already exists" in _error_line(runner.invoke(app, ["sweep", "synergy", *SMALL, "--out", str(out)]))
    # Interrupt: one unit lost. Resume recomputes only that one and gives the same numbers.
    kept = out / "cells" / "b3-u0000.parquet"
    stamp = kept.stat().st_mtime_ns
    (out / "cells" / "b5-u0000.parquet").unlink()
    result = runner.invoke(app, ["sweep", "synergy", *SMALL, "--out", str(out), "--resume", "--json"])
    summary = json.loads(result.stdout)
    assert (summary["units_computed"], summary["units_resumed"]) == (1, 1)
    assert kept.stat().st_mtime_ns == stamp
    again = pl.read_parquet(out / "metrics.parquet")
    assert again.select("cell", "depth", "mu_mc").equals(table.select("cell", "depth", "mu_mc"))
    # A changed grid cannot resume.
    changed = [*SMALL[:-1], "--quiet", "--trials", "4096"]
    assert "config differs" in _error_line(runner.invoke(app, ["sweep", "synergy", *changed, "--out", str(out),
                                                                "--resume"]))  # fmt: skip


# sweep synergy --executor ray against the local run directory: tests/test_ray.py.
