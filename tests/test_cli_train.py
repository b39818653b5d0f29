"""`agentlab train` and `agentlab eval` through Typer's runner, and the console script's one-line usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from agentlab.cli.app import app

runner = CliRunner()
SMALL = "num_envs = 8\nnum_steps = 16\nnum_minibatches = 2\nupdates_per_chunk = 2\nhidden = [16, 16]\n"


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    config = base / "small.toml"
    config.write_text(SMALL)
    out = base / "run"
    result = invoke(
        "train",
        "ppo",
        "--env",
        "catch",
        "--steps",
        str(8 * 16 * 4),
        "--seeds",
        "2",
        "--config",
        str(config),
        "--out",
        str(out),
        "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.stderr
    return base, out, json.loads(result.stdout)


def test_train_writes_a_complete_run_directory(trained):
    base, out, summary = trained
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2 and summary["steps_per_seed"] == 8 * 16 * 4 and summary["compile_seconds"] > 0
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == 2 * 4 and set(metrics["seed"]) == {0, 1}
    assert {"seed", "step", "wall_seconds", "episode_return", "entropy", "value_loss", "steps_per_second"} <= set(
        metrics.columns
    )
    assert metrics.filter(pl.col("seed") == 0)["step"].to_list() == [128, 256, 384, 512]
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["num_envs"] == 8 and config["config"]["hidden"] == [16, 16] and "jax" in config["versions"]
    with np.load(out / "checkpoints" / "latest.npz", allow_pickle=False) as data:
        assert len(data.files) > 4
    assert Image.open(out / "plots" / "learning_curve.png").size[0] > 100


def test_resume_of_a_finished_run_adds_nothing_and_a_changed_config_is_refused(trained):
    base, out, summary = trained
    again = invoke("train", "ppo", "--out", str(out), "--resume", "--json", "--quiet")
    assert again.exit_code == 0, again.stderr
    assert pl.read_parquet(out / "metrics.parquet").height == 8
    changed = invoke("train", "ppo", "--out", str(out), "--resume", "--steps", "9999", "--quiet")
    assert changed.exit_code == 2 and "config differs" in changed.stderr
    exists = invoke("train", "ppo", "--env", "catch", "--out", str(out), "--quiet")
    assert exists.exit_code == 2 and "already exists" in exists.stderr


def test_eval_writes_the_robustness_matrix(trained):
    base, out, _ = trained
    result = invoke("eval", str(out), "--episodes", "4", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    frame = pl.read_parquet(out / "eval" / "robustness.parquet")
    grid = ["plain", "action:p=0.3", "sticky:p=0.25", "drift:mode=sudden,at=100,to=(action:p=0.5)"]
    assert frame.height == 2 * len(grid)  # catch: the generic kinds (no dropout on its images) x two seeds
    assert json.loads((out / "eval" / "config.json").read_text())["config"]["grid_name"] == "stori"
    matrix = pl.read_parquet(out / "eval" / "matrix.parquet")
    assert matrix["episodes"].to_list() == [8] * len(grid)
    plain = matrix.filter(pl.col("tested_under") == "plain")["normalised_return"].to_list()
    assert plain in ([1.0], [None])
    assert set(frame["tested_under"]) == set(grid) and (frame["mean_return"].abs() <= 1).all()
    assert Image.open(out / "eval" / "plots" / "robustness.png").size[0] > 50


def drift_key(spec: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in spec).strip("_")


@pytest.mark.slow
def test_eval_of_an_atari_run_writes_intervals_normalised_returns_and_drift_counts(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "run"
    trained = invoke(
        "train",
        "ppo",
        "--env",
        "breakout",
        "--stochasticity",
        "action:p=0.3",
        "--steps",
        str(8 * 16 * 2),
        "--config",
        str(config),
        "--out",
        str(out),
        "--quiet",
    )
    assert trained.exit_code == 0, trained.stderr
    grid = tmp_path / "grid.txt"
    drift = "drift:mode=sudden,at=5,to=(mask:kind=blackout,region=all,p=1)"
    grid.write_text(f"# three profiles\nplain\nmask:kind=blackout,region=all,p=1\n{drift}\n")
    result = invoke("eval", str(out), "--grid", str(grid), "--episodes", "3", "--json")
    assert result.exit_code == 0, result.stderr
    frame = pl.read_parquet(out / "eval" / "robustness.parquet")
    assert frame["tested_under"].to_list() == ["plain", "mask:kind=blackout,region=all,p=1", drift]
    matrix = pl.read_parquet(out / "eval" / "matrix.parquet")
    plain = matrix["mean_return"][0]
    assert matrix["normalised_return"].to_list() == (
        [m / plain for m in matrix["mean_return"]] if plain else [None] * 3
    )
    assert matrix["drift_fired_episodes"].to_list() == [None, None, frame["drift_fired_episodes"][2]]
    assert (matrix["ci95_low_return"] <= matrix["mean_return"]).all()
    assert (matrix["mean_return"] <= matrix["ci95_high_return"]).all()
    summary = json.loads(result.stdout)
    assert summary["grid"] == "file" and summary["confidence"] == 0.95
    assert f"drift_fired_episodes_run_{drift_key(drift)}" in summary and "ci95_high_return_run_plain" in summary
    assert json.loads((out / "eval" / "config.json").read_text())["config"]["grid_name"] == "file"
    assert "±" in result.stderr and "fired" in result.stderr
    for plot in ("robustness.png", "robustness_normalised.png"):
        assert Image.open(out / "eval" / "plots" / plot).size[0] > 50
    assert set(frame["trained_under"]) == {"action:p=0.3"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "ppo", "--env", "pong"], "unknown kernel 'pong'"),
        (["train", "ppo", "--steps", "0"], "total_steps must be a positive integer"),
        (["train", "ppo", "--env", "catch", "--stochasticity", "mask:kind=dropout"], "needs float vector observations"),
        (["train", "ppo", "--stochasticity", "action:p=7"], "outside [0, 1]"),
        (["eval", "."], "is not an agentlab run directory"),
        (["eval", "nowhere"], "nowhere does not exist"),
    ],
)
def test_bad_training_input_is_one_line_and_exit_code_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_config_file_with_a_wrong_key_or_type(tmp_path):
    for text, message in [
        ("batch = 3\n", "unknown key 'batch'"),
        ("lr = 'fast'\n", "lr must be float"),
        ("hidden = 64\n", "hidden must be a list"),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        result = invoke("train", "ppo", "--config", str(config), "--out", str(tmp_path / "x"))
        assert result.exit_code == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize("args", [["train", "ppo", "--stepz", "5"], ["train", "ppo", "--steps", "abc"], ["trian"]])
def test_console_script_usage_errors_are_one_line(args, tmp_path):
    code = "import sys; from agentlab.cli.app import main; sys.argv = ['agentlab', *sys.argv[1:]]; main()"
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_unknown_algorithm_is_one_line_from_the_console_script(monkeypatch, capsys):
    from agentlab.cli.app import main

    monkeypatch.setattr("sys.argv", ["agentlab", "train", "dqn"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "dqn" in lines[0] and "agentlab train --help" in lines[0], lines
