"""bench/pgd.py and `agentlab bench pgd`: agentlab's side of the timing through the CLI on a tiny U-Net (positive,
finite figures, the summary's structure), the summary's arithmetic on a made-up peer result, and bad input as one
line with exit code 2 and nothing written. The authors' side needs a checkout of EmptyJackson/policy-guided-diffusion
and a python with their JAX stack; it is not run here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentlab.bench.pgd import PEER_FILES, PGDBench, lines, summarise
from agentlab.cli.app import app
from agentlab.errors import UsageError

runner = CliRunner()
TINY = [
    *("--rounds", "2", "--steps", "2", "--windows", "3", "--sampler-steps", "2", "--batch-size", "4"),
    *("--length", "8", "--obs-dim", "2", "--act-dim", "1", "--features", "8", "--blocks", "2"),
]


def _positive(spread: dict, count: int) -> None:
    assert len(spread["values"]) == count
    assert 0 < spread["min"] <= spread["median"] <= spread["max"] < math.inf, spread


def test_agentlab_side_through_the_cli_on_a_tiny_unet(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["bench", "pgd", *TINY, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert "bench pgd" in json.dumps(config)
    train, sample = summary["agentlab-train"], summary["agentlab-sample"]
    for train in (summary["agentlab-train"], summary["agentlab-train-scan"]):
        for spread in (train["steps_per_second"], train["windows_per_second"], train["seconds_per_step"]):
            _positive(spread, 2)
    for spread in (sample["windows_per_second"], sample["calls_per_second"], sample["seconds_per_call"]):
        _positive(spread, 2)
    assert train["windows_per_second"]["median"] == pytest.approx(4 * train["steps_per_second"]["median"])
    assert sample["windows_per_second"]["median"] == pytest.approx(3 * sample["calls_per_second"]["median"])
    assert "peer-train" not in summary and summary["ratios"] == {} and summary["goal_2x"] == {}
    assert summary["peer"] is None and set(summary["params"]) == {"agentlab"} and summary["params"]["agentlab"] > 0
    assert set(summary["compile_seconds"]) == {"agentlab-train", "agentlab-train-scan", "agentlab-sample"}
    assert all(value >= 0 for value in summary["compile_seconds"].values())
    assert summary["compile_seconds"]["agentlab-train"] > 0
    assert summary["widths"] == [8, 16] and summary["dim"] == 5 and summary["rounds"] == 2
    assert {"commit", "cpu", "cores"} <= set(summary["machine"])
    assert (out / "metrics.parquet").is_file()


def test_summary_has_medians_ranges_and_ratios_of_medians():
    bench = PGDBench(batch_size=4, windows=10)
    seconds = {
        "agentlab-train": [0.5, 0.25, 1.0],  # 2, 4, 1 steps/s
        "agentlab-train-scan": [2.0, 2.0, 2.0],  # 0.5 steps/s
        "agentlab-sample": [1.0, 2.0, 5.0],  # 10, 5, 2 windows/s
        "peer-train": [1.0, 1.0, 2.0],  # median 1 step/s
        "peer-train-step": [0.25, 0.25, 0.25],  # 4 steps/s
        "peer-sample": [0.5, 0.5, 0.5],  # 20 windows/s
    }
    summary = summarise(seconds, bench)
    steps = summary["agentlab-train"]["steps_per_second"]
    assert (steps["median"], steps["min"], steps["max"]) == (2.0, 1.0, 4.0)
    assert summary["agentlab-train"]["windows_per_second"]["median"] == 8.0
    assert summary["agentlab-sample"]["windows_per_second"]["median"] == 5.0
    assert summary["peer-sample"]["calls_per_second"]["median"] == 2.0
    assert summary["ratios"] == {"train": 2.0, "sample": 0.25, "train_both_per_step": 0.5, "train_both_scan": 0.5}
    assert summary["goal_2x"] == {
        "train": True,
        "sample": False,
        "train_both_per_step": False,
        "train_both_scan": False,
    }
    text = lines(summary)
    assert len(text) == 7 and "train agentlab/peer 2.00x" in text[-1]


def _checkout(tmp_path: Path) -> Path:
    for name in PEER_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_validate_checks_sizes_and_paths_before_anything_runs(tmp_path):
    assert PGDBench().validate().learners() == ("agentlab-train", "agentlab-train-scan", "agentlab-sample")
    assert PGDBench().channels == (32, 64, 128) and PGDBench().dim == 8
    with pytest.raises(UsageError, match="no models/diffusion.py"):
        PGDBench(pgd_repo=tmp_path, peer_python=Path("python")).validate()
    with pytest.raises(UsageError, match="needs --peer-python"):
        PGDBench(pgd_repo=_checkout(tmp_path)).validate()
    with pytest.raises(UsageError, match="multiple of 4"):
        PGDBench(length=6).validate()


def test_help_names_the_options():
    result = runner.invoke(app, ["bench", "pgd", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--pgd-repo", "--peer-python", "--rounds", "--steps", "--windows", "--features", "--out"):
        assert option in result.output
    assert "pgd" in runner.invoke(app, ["bench", "--help"]).output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pgd-repo", "nowhere", "--peer-python", "python"], "no models/diffusion.py"),
        (["--peer-python", "python"], "needs --pgd-repo"),
        (["--pgd-repo", "CHECKOUT"], "needs --peer-python"),
        (["--pgd-repo", "CHECKOUT", "--peer-python", "nowhere/python"], "not an executable file"),
        (["--rounds", "0"], "--rounds must be"),
        (["--features", "12"], "multiple of the 8"),
        (["--length", "30"], "multiple of 4"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    checkout = str(_checkout(tmp_path / "pgd"))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["bench", "pgd", *[checkout if a == "CHECKOUT" else a for a in args], "--out", str(out)]
    )
    text = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(text) == 1 and text[0].startswith("error: ") and needle in text[0], result.output
    assert not out.exists()
