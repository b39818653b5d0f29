"""bench/mamql.py and `agentlab bench mamql`: agentlab's side of the timing on a tiny config (positive, finite), the
work estimates and the summary's arithmetic, and bad paths as one line with exit code 2. The authors' side needs a
checkout of USC-Lira/ma-mql and a python with torch; neither is here, so it is skipped: without --ma-mql the
benchmark times agentlab alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentlab.bench.mamql import (
    LEARNERS,
    PEER_FILES,
    MAMQLBench,
    agentlab_updates_per_second,
    forward_mflop,
    gflop_per_update,
    lines,
    run,
    summarise,
)
from agentlab.cli.app import app
from agentlab.errors import UsageError

runner = CliRunner()
TINY = MAMQLBench(
    rounds=2,
    updates=2,
    batch_size=8,
    expert_rows=64,
    env_options=(("size", 5),),  # gems on 5 x 5: observations (2, 5, 5, 5)
    conv_channels=(4,),
    conv_kernels=(2,),
    hidden=(8,),
    buffer_size=256,
)


@pytest.mark.parametrize("online", [False, True])
def test_agentlabs_timing_on_a_tiny_config_is_positive_and_finite(online):
    result = agentlab_updates_per_second(TINY, online, rounds=2)
    for key in ("updates_per_second", "compile_seconds", "init_seconds"):
        assert math.isfinite(result[key]) and result[key] > 0, result
    assert result["obs_shape"] == [5, 5, 5] and result["num_agents"] == 2
    assert result["rollout_steps_per_update"] == (90 if online else 0)


def test_run_without_the_peer_times_agentlab_alone_and_has_no_ratios():
    seen = []
    summary = run(TINY, on_round=lambda r, seconds: seen.append((r, sorted(seconds))))
    assert seen == [(0, ["agentlab-offline", "agentlab-online"]), (1, ["agentlab-offline", "agentlab-online"])]
    for name in ("agentlab-offline", "agentlab-online"):
        rate = summary[name]["updates_per_second"]
        assert len(rate["values"]) == 2 and 0 < rate["min"] <= rate["median"] <= rate["max"] < math.inf
    assert "peer-update" not in summary and summary["ratios"] == {} and summary["peer"] is None
    assert set(summary["compile_seconds"]) == {"agentlab-offline", "agentlab-online"}
    assert {"commit", "cpu", "cores"} <= set(summary["machine"])
    assert len(lines(summary)) == 2


def test_the_work_estimate_at_the_authors_sizes():
    # conv 5->64 k5 on 15x15 (11x11 out), conv 64->64 k3 (9x9 out), dense 5184->1024->1024->5
    expected = 2 * (121 * 25 * 5 * 64 + 81 * 9 * 64 * 64 + 5184 * 1024 + 1024 * 1024 + 1024 * 5) / 1e6
    forward = forward_mflop(MAMQLBench(), (5, 15, 15), 5)
    assert forward == pytest.approx(expected) and 20 < forward < 21
    bench = MAMQLBench()
    # x3 for forward + backward; batches of 256 per agent: offline 2, online 4; the peer 2 critics x 4 per agent
    assert gflop_per_update(bench, "agentlab-offline", forward) == pytest.approx(3 * 2 * 2 * 256 * forward / 1e3)
    assert gflop_per_update(bench, "agentlab-online", forward) == pytest.approx(3 * 2 * 4 * 256 * forward / 1e3)
    assert gflop_per_update(bench, "peer-update", forward) == pytest.approx(3 * 2 * 8 * 256 * forward / 1e3)


def test_summary_has_medians_ranges_and_ratios_of_medians():
    seconds = {
        "agentlab-offline": [0.5, 0.25, 1.0],
        "agentlab-online": [1.0, 2.0, 4.0],
        "peer-update": [2.0, 2.0, 4.0],
        "peer-iteration": [4.0, 4.0, 4.0],
    }
    summary = summarise(seconds, dict.fromkeys(LEARNERS, 10.0))
    offline = summary["agentlab-offline"]["updates_per_second"]
    assert (offline["median"], offline["min"], offline["max"]) == (2.0, 1.0, 4.0)
    assert summary["agentlab-offline"]["gflop_per_second"] == 20.0
    assert summary["ratios"] == {
        "agentlab-offline_vs_peer_update": 4.0,
        "agentlab-online_vs_peer_update": 1.0,
        "agentlab-online_vs_peer_iteration": 2.0,
    }


def _checkout(tmp_path: Path) -> Path:
    for name in PEER_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_validate_checks_paths_before_anything_runs(tmp_path):
    assert MAMQLBench().validate().learners() == ("agentlab-offline", "agentlab-online")
    with pytest.raises(UsageError, match="no models.py"):
        MAMQLBench(ma_mql=tmp_path, torch_python=Path("python")).validate()
    with pytest.raises(UsageError, match="needs --torch-python"):
        MAMQLBench(ma_mql=_checkout(tmp_path)).validate()
    assert MAMQLBench(ma_mql=tmp_path, peer_iteration=False).learners() == LEARNERS[:3]


def test_help_names_the_options():
    result = runner.invoke(app, ["bench", "mamql", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--ma-mql", "--torch-python", "--rounds", "--updates", "--peer-updates", "--threads", "--out"):
        assert option in result.output
    assert "mamql" in runner.invoke(app, ["bench", "--help"]).output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ma-mql", "nowhere", "--torch-python", "python"], "no models.py"),
        (["--torch-python", "python"], "needs --ma-mql"),
        (["--ma-mql", "CHECKOUT"], "needs --torch-python"),
        (["--ma-mql", "CHECKOUT", "--torch-python", "nowhere/python"], "not an executable file"),
        (["--rounds", "0"], "--rounds must be"),
        (["--threads", "0"], "--threads must be"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    checkout = str(_checkout(tmp_path / "ma-mql"))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["bench", "mamql", *[checkout if a == "CHECKOUT" else a for a in args], "--out", str(out)]
    )
    text = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(text) == 1 and text[0].startswith("error: ") and needle in text[0], result.output
    assert not out.exists()
