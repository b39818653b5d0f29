"""`agentlab runs ls | show | compare` on tiny real runs, and `train ppo --tensorboard`'s event files."""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from agentlab import runs
from agentlab.cli.app import app

runner = CliRunner()
SMALL = "num_envs = 8\nnum_steps = 16\nnum_minibatches = 2\nupdates_per_chunk = 2\nhidden = [16, 16]\n"
HAS_TENSORBOARDX = True
try:
    import tensorboardX  # noqa: F401
except ImportError:
    HAS_TENSORBOARDX = False
needs_tensorboardx = pytest.mark.skipif(not HAS_TENSORBOARDX, reason="the tensorboard extra is not installed")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def record(command: str, config: dict) -> dict:
    return {"command": command, "config": config, "versions": {"agentlab": "0.1.0"}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/ppo2 (2 seeds, --tensorboard), root/ppo1 (1 seed), root/collect (data collect), root/sub/unfinished
    (config.json only), root/other (a fake `train other` run whose metrics have update and episode_return, no
    seed), and two folders that are not runs (no config.json; a foreign config.json)."""
    root = tmp_path_factory.mktemp("runs")
    config = root.parent / f"{root.name}-small.toml"
    config.write_text(SMALL)
    tensorboard = ["--tensorboard"] if HAS_TENSORBOARDX else []
    train = ["train", "ppo", "--env", "catch", "--config", config, "-q"]
    ok(*train, "--steps", 512, "--seeds", 2, "--out", root / "ppo2", *tensorboard)
    ok(*train, "--steps", 256, "--out", root / "ppo1")
    ok("data", "collect", "--env", "catch", "--env-option", "max_steps=20", "--steps", 64, "--out", root / "collect",
       "-q")  # fmt: skip
    unfinished = root / "sub" / "unfinished"
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_bytes((root / "ppo1" / "config.json").read_bytes())
    other = root / "other"
    other.mkdir()
    (other / "config.json").write_bytes(orjson.dumps(record("train other", {"env": "catch", "algo": "other"})))
    (other / "summary.json").write_bytes(orjson.dumps({"mean_return": 0.5, "updates": 3}))
    pl.DataFrame({"update": [0, 1, 2], "episode_return": [0.0, float("nan"), 1.0]}).write_parquet(
        other / "metrics.parquet"
    )
    (root / "notarun").mkdir()
    (root / "notarun" / "notes.txt").write_text("hello")
    (root / "foreign").mkdir()
    (root / "foreign" / "config.json").write_text('{"a": 1}')
    return root


RUNS = ("collect", "other", "ppo1", "ppo2", "sub/unfinished")


def summary_of(path: Path):
    file = path / "summary.json"
    return orjson.loads(file.read_bytes()) if file.exists() else None


def test_ls_lists_exactly_the_runs_with_their_status_and_mean_return(tree):
    rows = json.loads(ok("runs", "ls", tree, "--json").stdout)
    assert [Path(row["path"]).relative_to(tree).as_posix() for row in rows] == list(RUNS)
    by_name = {Path(row["path"]).relative_to(tree).as_posix(): row for row in rows}
    for name in RUNS:
        summary = summary_of(tree / name)
        row = by_name[name]
        assert row["status"] == ("finished" if summary else "unfinished"), row
        assert row["mean_return"] == (summary or {}).get("mean_return"), row
    assert by_name["ppo2"]["command"] == "train ppo" and by_name["ppo2"]["algo"] == "ppo"
    assert by_name["collect"]["command"] == "data collect" and by_name["collect"]["env"] == "catch"
    assert by_name["other"]["algo"] == "other"
    table = ok("runs", "ls", tree)  # the table goes to stderr, stdout stays clean
    assert table.stdout == "" and "ppo2" in table.stderr and "unfinished" in table.stderr


def test_show_json_equals_the_files(tree):
    for name in RUNS:
        shown = json.loads(ok("runs", "show", tree / name, "--json").stdout)
        assert shown["config"] == orjson.loads((tree / name / "config.json").read_bytes())
        assert shown["summary"] == summary_of(tree / name)
        metrics = tree / name / "metrics.parquet"
        if metrics.exists():
            frame = pl.read_parquet(metrics)
            assert shown["metrics"] == {"columns": frame.columns, "rows": frame.height}
        else:
            assert shown["metrics"] is None
    human = ok("runs", "show", tree / "ppo2")
    assert human.stdout == "" and "summary.json" in human.stderr and "mean_return" in human.stderr


def test_compare_writes_a_png_and_tables_every_summary_value(tree, tmp_path):
    before = snapshot(tree)
    out = tmp_path / "figs" / "compare.png"
    result = json.loads(
        ok("runs", "compare", tree / "ppo2", tree / "ppo1", tree / "other", "--out", out, "--json").stdout
    )
    assert snapshot(tree) == before and sorted(tmp_path.rglob("*")) == [out.parent, out]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert result["metric"] == "episode_return" and result["out"] == str(out)
    names = ("ppo2", "ppo1", "other")
    for key, values in result["table"].items():
        for name, value in zip(names, values, strict=True):
            summary = summary_of(tree / name)
            expected = (
                orjson.loads((tree / name / "config.json").read_bytes())["command"]
                if key == "command"
                else summary.get(key)
            )
            assert value == expected, (key, name)
    assert set(result["table"]) == {"command"} | set(summary_of(tree / "ppo2")) | {"updates"}
    assert [run["curve"]["seeds"] for run in result["runs"]] == [2, 1, 1]
    assert result["runs"][2]["curve"]["x_column"] == "update"
    human = ok("runs", "compare", tree / "ppo2", tree / "ppo1")
    assert human.stdout == "" and "ppo2" in human.stderr and "mean_return" in human.stderr
    assert snapshot(tree) == before and sorted(tmp_path.rglob("*")) == [out.parent, out]  # no --out: nothing


def test_the_plotted_curves_equal_the_metrics(tree):
    loaded = [runs.load(tree / name) for name in ("ppo2", "ppo1", "other")]
    metric, curves = runs.curves(loaded, "episode_return")
    fig = runs.figure(metric, curves)
    try:
        (ax,) = fig.axes
        assert len(ax.lines) == 3 and len(ax.collections) == 1  # the min-max band of the 2-seed run only
        for line, run in zip(ax.lines, loaded, strict=True):
            frame = pl.read_parquet(run.metrics_path)
            if "seed" in frame.columns:
                seeds = sorted(set(frame["seed"].to_list()))
                steps = sorted(set(frame["step"].to_list()))
                table = {(r["seed"], r["step"]): r["episode_return"] for r in frame.to_dicts()}
                values = np.array([[table[s, x] for s in seeds] for x in steps], dtype=float)
                expected_x, expected_y = np.array(steps, float), np.nanmean(values, axis=1)
                expected_low, expected_high = values.min(axis=1), values.max(axis=1)
            else:
                expected_x = frame["update"].to_numpy().astype(float)
                expected_y = expected_low = expected_high = frame["episode_return"].to_numpy()
            np.testing.assert_array_equal(line.get_xdata(), expected_x)
            np.testing.assert_allclose(line.get_ydata(), expected_y, rtol=0, atol=1e-12)
            item = next(c for c in curves if c.label == str(run.path))
            np.testing.assert_allclose(item.low, expected_low, atol=1e-12)
            np.testing.assert_allclose(item.high, expected_high, atol=1e-12)
        assert ax.get_ylabel() == "episode_return" and ax.get_xlabel() == "step / update"
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_compare_refuses_runs_without_the_metric_in_one_line(tree, tmp_path):
    before = snapshot(tree)
    out = tmp_path / "x.png"
    one_line_error(invoke("runs", "compare", tree / "ppo1", tree / "collect", "--out", out), "has no metrics.parquet")
    one_line_error(
        invoke("runs", "compare", tree / "ppo1", tree / "other", "--metric", "loss"), "other has no column 'loss'"
    )
    one_line_error(invoke("runs", "compare", tree / "ppo1", "--metric", "nope"), "has no column 'nope'")
    assert snapshot(tree) == before and not out.exists()


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tree, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"command": "train ppo", "config"')
    bad_summary = tmp_path / "bad-summary"
    bad_summary.mkdir()
    (bad_summary / "config.json").write_bytes((tree / "ppo1" / "config.json").read_bytes())
    (bad_summary / "summary.json").write_text("[1, 2")
    bad_metrics = tmp_path / "bad-metrics"
    bad_metrics.mkdir()
    (bad_metrics / "config.json").write_bytes((tree / "ppo1" / "config.json").read_bytes())
    (bad_metrics / "metrics.parquet").write_bytes(b"PAR1 not really")
    before, here = snapshot(tree), snapshot(tmp_path)
    cases = [
        (["runs", "show", tmp_path / "missing"], "does not exist"),
        (["runs", "show", tree / "notarun"], "not an agentlab run directory (no config.json)"),
        (["runs", "show", tree / "foreign"], "is not an agentlab run record"),
        (["runs", "show", corrupt], "is not an agentlab run record"),
        (["runs", "show", tree / "notarun" / "notes.txt"], "is not a directory"),
        (["runs", "show", bad_summary], "is not valid JSON"),
        (["runs", "show", bad_metrics], "is truncated or corrupt"),
        (["runs", "compare", tree / "ppo1", corrupt, "--out", tmp_path / "c.png"], "is not an agentlab run record"),
        (["runs", "compare", tree / "ppo1", bad_metrics], "is truncated or corrupt"),
        (["runs", "compare", tree / "ppo1", "--out", tmp_path / "c.jpg"], "ending in .png"),
        (["runs", "compare", tree / "ppo1", "--out", tree / "ppo1" / "plots"], "ending in .png"),
        (["runs", "compare", tree / "ppo1", "--out", tree / "notarun" / "notes.txt" / "c.png"], "is a file"),
        (["runs", "ls", tmp_path / "missing"], "does not exist"),
        (["runs", "ls", tree / "notarun" / "notes.txt"], "is not a directory"),
    ]
    for args, message in cases:
        one_line_error(invoke(*args), message)
    assert snapshot(tree) == before and snapshot(tmp_path) == here
    rows = json.loads(ok("runs", "ls", tmp_path, "--json").stdout)  # ls lists what it can and marks the rest
    assert {Path(r["path"]).name: r["status"] for r in rows} == {"bad-metrics": "unfinished", "bad-summary": "damaged"}


# -- train ppo --tensorboard ------------------------------------------------------------------------------------

_CRC_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x82F63B78 if _crc & 1 else _crc >> 1
    _CRC_TABLE.append(_crc)


def masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The scalars of the event files below `folder`, read here from the TFRecord framing (both CRCs checked)
    and the Event proto: ``{seed folder: {tag: [(step, value), ...]}}``."""
    from tensorboardX.proto import event_pb2

    found: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        scalars = found.setdefault(path.parent.name, {})
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            header = data[offset : offset + 8]
            (length,) = struct.unpack("<Q", header)
            assert struct.unpack("<I", data[offset + 8 : offset + 12])[0] == masked_crc32c(header)
            payload = data[offset + 12 : offset + 12 + length]
            assert struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])[0] == masked_crc32c(payload)
            offset += 16 + length
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def assert_events_equal_metrics(run: Path) -> None:
    frame = pl.read_parquet(run / "metrics.parquet")
    events = read_events(run / "tensorboard")
    assert sorted(events) == [f"seed-{seed}" for seed in sorted(set(frame["seed"].to_list()))]
    for folder, scalars in events.items():
        rows = frame.filter(pl.col("seed") == int(folder.removeprefix("seed-"))).to_dicts()
        assert set(scalars) == set(frame.columns) - {"seed", "step"}
        for tag, points in scalars.items():
            expected = [(row["step"], np.float32(row[tag])) for row in rows]
            assert [step for step, _ in points] == [step for step, _ in expected], tag
            for (_, value), (_, want) in zip(points, expected, strict=True):
                assert (math.isnan(value) and math.isnan(want)) or np.float32(value) == want, (tag, value, want)
    assert runs.load(run).record["config"]["tensorboard"] is True
    from agentlab.tensorboard import read_scalars  # the library's reader agrees

    assert read_scalars(run / "tensorboard").keys() == events.keys()


@needs_tensorboardx
def test_tensorboard_events_hold_the_metrics_scalars(tree):
    assert_events_equal_metrics(tree / "ppo2")
    assert not (tree / "ppo1" / "tensorboard").exists()
    assert "tensorboard" not in runs.load(tree / "ppo1").config


@needs_tensorboardx
def test_tensorboard_of_a_resumed_run_holds_every_row_once(tmp_path):
    from agentlab.rl import training
    from agentlab.rl.ppo import PPOConfig

    config = PPOConfig(env="catch", total_steps=512, num_envs=8, num_steps=16, num_minibatches=2,
                       updates_per_chunk=1, hidden=(16, 16), seeds=2)  # fmt: skip
    out = tmp_path / "run"
    calls = []

    def stop_after_two_chunks(info):
        calls.append(info)
        if len(calls) == 3:  # the first call comes before compiling
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(config, out, on_chunk=stop_after_two_chunks, tensorboard=True)
    assert_events_equal_metrics(out)  # two chunks in both
    assert pl.read_parquet(out / "metrics.parquet")["update"].max() == 1
    assert runs.load(out).status == "resumable"
    training.train(config, out, resume=True)  # the recorded --tensorboard goes on
    assert_events_equal_metrics(out)
    assert pl.read_parquet(out / "metrics.parquet")["update"].max() == 3


def test_tensorboard_without_the_extra_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` raises ImportError
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "ppo", "--env", "catch", "--steps", 256, "--out", "run", "--tensorboard")
    one_line_error(result, "needs the tensorboard extra")
    assert os.listdir(tmp_path) == []
