"""The command line through Typer's runner: outputs, files, and bad input (one line, exit code 2)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from agentlab.cli.app import app

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def test_envs_json_lists_kernels_action_sets_and_the_grammar():
    result = invoke("envs", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {k["name"]: k for k in data["kernels"]}
    assert by_name["breakout"]["action_set"] == [0, 1, 3]
    assert by_name["seaquest"]["channels"][7] == "oxygen_guage"
    assert "regenerate" in by_name["breakout"]["event_modes"]
    assert by_name["coordination"]["agents"] == 3
    assert set(data["stochasticity"]["kinds"]) >= {"action", "sticky", "event", "drift", "mask"}


def test_envs_table_goes_to_stderr_and_stdout_stays_clean():
    result = invoke("envs")
    assert result.exit_code == 0
    assert result.stdout == "" and "seaquest" in result.stderr and "STORI type 3.2" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["render", "pong"], "valid ENV values are"),
        (
            ["render", "breakout", "--stochasticity", "acton:p=1", "--out", "x.gif"],
            "unknown stochasticity kind 'acton'",
        ),
        (["render", "breakout", "--stochasticity", "action:p=2", "--out", "x.gif"], "outside [0, 1]"),
        (["render", "breakout", "--out", "x.mp4"], "must end in .gif or .png"),
        (["render", "breakout", "--actions", "0,7", "--out", "x.gif"], "breakout has 3 actions"),
        (["render", "breakout", "--policy", "greedy", "--out", "x.gif"], "unknown --policy"),
        (["bench", "kernels", "--batch-sizes", "0"], "must be >= 1"),
        (["bench", "kernels", "--batch-sizes", "4,x"], "is not an integer"),
        (["bench", "kernels", "--envs", "pong"], "unknown name 'pong'"),
        (["bench", "kernels", "--vs", "envpool"], "'envpool' is not one of 'gymnax'"),
        (
            ["bench", "kernels", "--stochasticity", "event:mode=regenerate"],
            "unknown event mode 'regenerate' for asterix",
        ),
        (["bench", "kernels", "--auto-reset", "maybe"], "'maybe' is not one of 'on', 'off', 'both'"),
        (["bench", "kernels", "--steps", "0"], "--steps must be an integer in [1, "),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("render", "breakout", "--stochasticity", "acton", env={"AGENTLAB_DEBUG": "1"})
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_config_file_with_a_wrong_key_or_type_is_bad_input(tmp_path):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("batch_size = 4\n")
    result = invoke("bench", "kernels", "--config", str(bad_key), "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "unknown key 'batch_size'" in result.stderr
    bad_type = tmp_path / "bad_type.toml"
    bad_type.write_text("steps = 'many'\n")
    result = invoke("bench", "kernels", "--config", str(bad_type), "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "steps must be int" in result.stderr


def test_bench_writes_a_run_directory_resumes_and_refuses_to_overwrite(tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text('envs = "breakout,freeway"\nbatch_sizes = "2,4"\nsteps = 8\nrepeats = 1\n')
    out = tmp_path / "run"
    result = invoke("bench", "kernels", "--config", str(config), "--out", str(out), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["largest_batch_size"] == 4 and summary["breakout_steps_per_second"] > 0
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == 4 and set(metrics["env"]) == {"breakout", "freeway"}
    assert {"seed", "step", "wall_seconds", "steps_per_second", "compile_seconds"} <= set(metrics.columns)
    assert (metrics["step"] == metrics["batch_size"] * 8).all()
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["config"]["batch_sizes"] == [2, 4] and "jax" in recorded["versions"]
    assert Image.open(out / "plots" / "throughput.png").size[0] > 100

    again = invoke("bench", "kernels", "--config", str(config), "--out", str(out))
    assert again.exit_code == 2 and "already exists" in again.stderr

    # Drop one row, as if interrupted; --resume measures only what is missing.
    metrics.head(3).write_parquet(out / "metrics.parquet")
    resumed = invoke("bench", "kernels", "--config", str(config), "--out", str(out), "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    after = pl.read_parquet(out / "metrics.parquet")
    assert after.height == 4 and after.head(3).equals(metrics.head(3))

    changed = invoke("bench", "kernels", "--config", str(config), "--steps", "9", "--out", str(out), "--resume")
    assert changed.exit_code == 2 and "config differs" in changed.stderr
    missing = invoke("bench", "kernels", "--out", str(tmp_path / "nothing"), "--resume")
    assert missing.exit_code == 2


def test_render_writes_a_gif_of_the_episode_and_a_png_strip(tmp_path):
    gif = tmp_path / "clip.gif"
    result = invoke("render", "breakout", "--steps", "30", "--policy", "noop", "--out", str(gif), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    frames = Image.open(gif).n_frames
    assert frames == summary["steps"] + 1 and summary["steps"] <= 30
    # A noop paddle misses the ball: the ball starts at row 3 and the episode ends within 30 steps.
    assert summary["episode_ended"]
    png = tmp_path / "strip.png"
    result = invoke(
        "render",
        "freeway",
        "--steps",
        "12",
        "--actions",
        "1",
        "--out",
        str(png),
        "--stochasticity",
        "mask:kind=crop,region=right,p=1",
    )
    assert result.exit_code == 0, result.stderr
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[1] > 10 * 16 * 10  # ten frames a row
    exists = invoke("render", "breakout", "--out", str(gif))
    assert exists.exit_code == 2 and "already exists" in exists.stderr


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [(3, 1.5, 3.0), ([64, 64], "32,32", "64,64"), (7, "5", "7"), (True, False, True), ("x", None, "x"), (2, 1, 2)],
)
def test_one_config_value_rule_for_every_command(value, default, expected):
    """`--config` of every command (and train ppo's config fields) takes a TOML value by one rule."""
    from agentlab.cli.common import config_value

    got = config_value("key", value, default, "--config f.toml")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("value", "default"), [(True, 1), (False, 0.5), (1, True), ("3", 3), (1.5, 2), ([1], 1)])
def test_config_value_refuses_a_value_of_another_type_in_one_line(value, default):
    from agentlab.cli.common import config_value
    from agentlab.errors import UsageError

    with pytest.raises(UsageError, match=f"^--config f.toml: key must be {type(default).__name__}, got "):
        config_value("key", value, default, "--config f.toml")
