"""`agentlab bench ppo | grid | grid-study | markets | synergy | report` and `agentlab calibrate examples`: help,
tiny runs that write their run directories, bad input as one line with exit code 2; and no argparse or sys.argv
outside cli/ (one command line, one harness)."""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab import rundir
from agentlab.cli.app import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("agentlab", "kernels", "rl", "synergy", "bench", "studies")


def invoke(*args: str):
    return runner.invoke(app, list(args))


def _error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    return lines[0]


def _run_files(out: Path) -> dict:
    assert {"config.json", "summary.json", "metrics.parquet"} <= {p.name for p in out.iterdir()}
    assert rundir.run_record(out) is not None
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            ["bench", "ppo"],
            [
                "--purejaxrl",
                "--steps",
                "--default-steps",
                "--seeds",
                "--seed-start",
                "--episodes",
                "--env",
                "--peer-on-agentlab",
            ],
        ),  # fmt: skip
        (["bench", "grid"], ["--events", "--rounds", "--repeats", "--out"]),
        (["bench", "grid-study"], ["--events", "--seed", "--out"]),
        (["bench", "markets"], ["--markets", "--throughput-markets", "--days", "--out"]),
        (["bench", "synergy"], ["--fan-in", "--depth", "--words", "--configs", "--repeats"]),
        (["bench", "report"], ["--json", "--quiet", "bench kernels"]),
        (["calibrate", "examples"], ["--out", "--force", "--json"]),
    ],
)
def test_help_names_the_options(command, options):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output


def test_bench_help_lists_every_benchmark():
    result = invoke("bench", "--help")
    assert result.exit_code == 0
    for name in ("kernels", "ppo", "grid", "grid-study", "markets", "synergy", "report"):
        assert name in result.output


def test_bench_ppo_on_catch_writes_a_row_per_learner_and_seed(tmp_path):
    out = tmp_path / "ppo"
    result = invoke("bench", "ppo", "--env", "catch", "--steps", "1", "--default-steps", "1", "--seeds", "1",
                    "--episodes", "4", "--out", str(out), "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = _run_files(out)
    assert json.loads(result.stdout) == summary
    frame = pl.read_parquet(out / "metrics.parquet")
    assert sorted(frame["learner"]) == ["agentlab-default", "agentlab-purejaxrl"]
    assert frame["seed"].to_list() == [100, 100]  # fresh seeds by default
    assert frame["greedy_return"].is_finite().all() and frame["stochastic_return"].is_finite().all()
    assert summary["agentlab_default"]["steps"] == 8192  # one whole update
    assert summary["agentlab_default"]["greedy_return"]["by_seed"] == frame["greedy_return"][1:].to_list()
    assert "throughput_ratio_same_settings" not in summary  # no PureJaxRL to compare with
    assert summary["machine"]["cores"] >= 1 and "commit" in summary["machine"]


def test_bench_grid_writes_its_throughput(tmp_path):
    out = tmp_path / "grid"
    result = invoke("bench", "grid", "--events", "2", "--rounds", "1", "--repeats", "1", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    summary = _run_files(out)
    assert summary["events"] == 2 and summary["participant_rounds_per_second"] > 0


def test_bench_grid_study_writes_the_tables_and_the_plot(tmp_path):
    out = tmp_path / "study"
    result = invoke("bench", "grid-study", "--events", "2", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert _run_files(out)["cells"] == 5 * 6 * 6  # mixes x shortfalls x price caps
    assert (out / "plots" / "study.png").is_file()
    assert "| policies | price cap | 0.04 |" in (out / "study.md").read_text()


def test_bench_markets_writes_the_study_and_the_throughput(tmp_path):
    out = tmp_path / "markets"
    result = invoke("bench", "markets", "--markets", "2", "--throughput-markets", "2", "--days", "2",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = _run_files(out)
    assert summary["market_steps_per_second"] > 0
    frame = pl.read_parquet(out / "metrics.parquet")
    assert frame.height == 18 and {"dlc", "stabilisers", "eas", "collapsed"} <= set(frame.columns)
    assert "dlc stabilisers bankruptcy_rate" in result.stderr


def test_bench_synergy_writes_its_throughput(tmp_path):
    out = tmp_path / "synergy"
    result = invoke("bench", "synergy", "--fan-in", "2", "--depth", "2", "--words", "1", "--configs", "1",
                    "--repeats", "1", "--out", str(out), "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _run_files(out)["leaves_per_tree"] == 4


def test_bench_report_prints_the_tables_of_a_kernels_run(tmp_path):
    rundir.write_config(tmp_path, "bench kernels", {})
    rows = [{"impl": "agentlab", "env": "breakout", "batch_size": 8, "stochasticity": "plain", "auto_reset": True,
             "steps_per_second": 300.0}]  # fmt: skip
    pl.DataFrame(rows).write_parquet(tmp_path / "metrics.parquet")
    result = invoke("bench", "report", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    assert "| breakout | 8 | 300 | - | - | - |" in json.loads(result.stdout)["markdown"]


def test_calibrate_examples_regenerates_the_shipped_data(tmp_path):
    out = tmp_path / "examples"
    result = invoke("calibrate", "examples", "--out", str(out), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = _run_files(out)
    assert summary["all_match_shipped"]
    assert {"homogeneous.json", "agent_level.json", "confidence_example.json"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bench", "ppo", "--seeds", "0"], "--seeds must be"),
        (["bench", "ppo", "--env", "pong"], "unknown kernel 'pong'"),
        (["bench", "ppo", "--purejaxrl", "."], "no purejaxrl/ppo.py"),
        (["bench", "ppo", "--peer-on-agentlab"], "need --purejaxrl"),
        (["bench", "ppo", "--episodes", "0"], "--episodes must be"),
        (["bench", "ppo", "--seed-start", "-1"], "--seed-start must be"),
        (["bench", "grid", "--events", "0"], "--events must be"),
        (["bench", "grid", "--rounds", "-1"], "--rounds must be"),
        (["bench", "grid-study", "--events", "0"], "--events must be"),
        (["bench", "markets", "--days", "0"], "--days must be"),
        (["bench", "synergy", "--depth", "99"], "--depth must be"),
        (["bench", "synergy", "--fan-in", "64", "--depth", "30"], "memory"),
        (["bench", "report", "nowhere"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "out"
    extra = [] if args[1] == "report" else ["--out", str(out)]
    line = _error_line(invoke(*args, *extra))
    assert line.startswith("error: ") and needle in line, line
    assert not out.exists()


def test_report_refuses_a_run_of_another_command(tmp_path):
    rundir.write_config(tmp_path, "bench grid", {})
    assert "not of `bench kernels`" in _error_line(invoke("bench", "report", str(tmp_path)))


def _side_doors(source: str) -> list[str]:
    """`argparse` anywhere in the code, or `sys.argv` / `from sys import argv` (comments and strings aside)."""
    found, previous = [], []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE):
            continue
        if token.type == tokenize.NAME and token.string == "argparse":
            found.append(f"line {token.start[0]}: argparse")
        if (
            token.type == tokenize.NAME
            and token.string == "argv"
            and [t.string for t in previous[-2:]]
            in (
                ["sys", "."],
                ["sys", "import"],
            )
        ):
            found.append(f"line {token.start[0]}: sys.argv")
        previous.append(token)
    return found


def test_side_door_scanner_finds_both_forms():
    assert len(_side_doors("import argparse\nimport sys\nx = sys.argv[1]\nfrom sys import argv\n")) == 3
    assert _side_doors('"""python -m x; sys.argv"""\n# argparse\n') == []


def test_no_argparse_or_sys_argv_outside_cli():
    offenders = {}
    for folder in LIBRARY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found = _side_doors(path.read_text())
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, f"command-line parsing belongs in cli/: {offenders}"


def test_time_interleaved_warms_up_then_times_round_robin():
    from agentlab.timing import time_interleaved

    calls = []
    fns = {name: (lambda r, name=name: calls.append((name, r))) for name in ("a", "b")}
    times = time_interleaved(fns, lambda name, r: (r,), 2)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert {name: len(seconds) for name, seconds in times.items()} == {"a": 2, "b": 2}
