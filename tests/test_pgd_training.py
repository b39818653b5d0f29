"""`agentlab train pgd` and `agentlab train offline` end to end on a tiny pendulum dataset: the run directories and
summaries, resume equal to an uninterrupted run, determinism, independent seeds, and bad input (one line, exit 2,
nothing written).

Every run here is tiny; the XLA compilations the drivers repeat per call (a fresh closure each run) are shared
through a persistent compilation cache in a temporary folder for this module only.
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path

import jax
import numpy as np
import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab.errors import RunInterrupted, UsageError
from agentlab.rl import collect, offline_training, pgd, pgd_training

PGD_TINY = {
    "window": 16,
    "updates": 20,
    "updates_per_chunk": 10,
    "batch_size": 8,
    "channels": (8, 16),
    "sample_steps": 4,
    "eval_windows": 4,
    "guidance": 0.5,  # not the default 1.0: train offline's pgd must take it from the run
}
OFFLINE_TINY = {
    "updates": 20,
    "updates_per_chunk": 10,  # the command line's chunks here too (a phase of 10 updates): one compilation
    "regenerations": 2,
    "hidden": (16, 16),
    "batch_size": 32,
    "eval_episodes": 2,
    "seeds": 2,
    "synthetic_size": 64,
    "sample_steps": 4,
    "model_updates": 20,
    "horizon": 3,
}
PGD_FLAGS = "--window 16 --updates 20 --batch-size 8 --channels 8,16 --sample-steps 4 --eval-windows 4".split()
TIMINGS = ("updates_per_second", "wall_seconds")  # metrics columns that measure the machine, not the run


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent XLA compilation cache for this module's runs (reset and switched off afterwards)."""
    from jax.experimental.compilation_cache import compilation_cache as cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    previous = {name: getattr(jax.config, name) for name in names}
    cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:
        yield
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
        cache.reset_cache()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pgd"))


@functools.cache
def _dataset(root: str, env: str = "pendulum", options: tuple = (), episodes: int = 4) -> Path:
    out = Path(root) / f"data-{env}-{len(options)}-{episodes}"
    policy = "planner" if env == "maze2d" else "random"
    collect.collect(collect.CollectConfig(env=env, env_options=options, policy=policy, episodes=episodes), out)
    return out


def _pgd_config(root: str, **changes) -> pgd_training.PGDRunConfig:
    return pgd_training.PGDRunConfig(data=str(_dataset(root)), **{**PGD_TINY, **changes})


@functools.cache
def _pgd_run(root: str, name: str = "pgd") -> Path:
    out = Path(root) / name
    pgd_training.train(_pgd_config(root), out)
    return out


def _offline_config(root: str, **changes) -> offline_training.OfflineRunConfig:
    return offline_training.OfflineRunConfig(data=str(_dataset(root)), **{**OFFLINE_TINY, **changes})


def _offline_run(root: str, algo: str, synthetic: str, seeds: int = OFFLINE_TINY["seeds"]) -> tuple[Path, dict]:
    return _offline_run_once(root, algo, synthetic, seeds)


@functools.cache
def _offline_run_once(root: str, algo: str, synthetic: str, seeds: int) -> tuple[Path, dict]:
    out = Path(root) / f"offline-{algo}-{synthetic}-{seeds}"
    diffusion = str(_pgd_run(root)) if synthetic in ("unguided", "pgd") else None
    config = _offline_config(root, algo=algo, synthetic=synthetic, diffusion=diffusion, seeds=seeds)
    summary = offline_training.train(config, out)
    assert orjson.loads((out / "summary.json").read_bytes()) == orjson.loads(orjson.dumps(summary))
    return out, summary


def _summary(run: Path) -> dict:
    return orjson.loads((run / "summary.json").read_bytes())


def _leaves(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def _assert_same_leaves(a: Path, b: Path) -> None:
    left, right = _leaves(a), _leaves(b)
    assert left.keys() == right.keys()
    for name in left:
        if name == "metadata":
            continue
        np.testing.assert_allclose(left[name], right[name], rtol=0, atol=1e-6, err_msg=f"{a.name}:{name}")


def _metrics(run: Path) -> pl.DataFrame:
    frame = pl.read_parquet(run / "metrics.parquet")
    return frame.drop([c for c in TIMINGS if c in frame.columns])


def _stop_after(update: int):
    def on_chunk(info: dict) -> None:
        if info["update"] == update:
            raise KeyboardInterrupt

    return on_chunk


# -- train pgd -------------------------------------------------------------------------------------------------
def test_pgd_run_directory_and_summary(root):
    run = _pgd_run(root)
    for name in ("config.json", "model.npz", "metrics.parquet", "summary.json", "checkpoints/latest.npz"):
        assert (run / name).is_file(), name
    assert (run / "plots" / "loss.png").is_file()
    record = orjson.loads((run / "config.json").read_bytes())
    assert record["command"] == "train pgd" and record["config"]["channels"] == [8, 16]
    summary = _summary(run)
    assert summary["mean_return"] is None and summary["target_log_likelihood"] is None
    assert summary["guided"] is None and summary["env"] == "pendulum"
    assert summary["updates_per_second"] > 0
    by_step = summary["dynamics_error_by_step"]
    assert len(by_step) == PGD_TINY["window"] - 1
    assert 0 <= summary["invalid_rate"] <= 1
    assert summary["transitions"] == PGD_TINY["eval_windows"] * (PGD_TINY["window"] - 1)
    assert math.isfinite(summary["dynamics_error"]) and summary["dynamics_error"] > 0  # an untrained denoiser
    if summary["invalid_rate"] == 0:  # every step counts the same windows: the mean is the mean of the steps
        assert summary["dynamics_error"] == pytest.approx(np.mean(by_step), rel=1e-9)
    frame = pl.read_parquet(run / "metrics.parquet")
    chunks = math.ceil(PGD_TINY["updates"] / PGD_TINY["updates_per_chunk"])
    assert frame.height == chunks
    assert frame["update"].to_list() == [PGD_TINY["updates_per_chunk"] * (i + 1) for i in range(chunks)]
    assert frame["loss"].is_finite().all() and summary["final_loss"] == frame["loss"][-1]
    # the windows: every 16-row window at stride 8 inside one of the 4 episodes of 200 rows
    assert summary["windows"] == 4 * ((200 - 16) // 8 + 1)
    # model.npz is what train offline loads: the same EMA weights, the row layout of pendulum
    diffuser, meta = pgd.load_diffuser(run, "pendulum")
    assert (diffuser.layout.obs_dim, diffuser.layout.act_dim, diffuser.window) == (3, 1, 16)
    assert meta["guidance"] == PGD_TINY["guidance"]


def test_pgd_resume_after_the_first_chunk_equals_the_uninterrupted_run(root):
    """Stopped (Ctrl-C) after its first chunk and resumed, a run ends with the same checkpoint, model.npz,
    metrics and measures as an uninterrupted run: which is also the same config and seed run twice."""
    whole = _pgd_run(root)
    part = Path(root) / "pgd-part"
    config = _pgd_config(root)
    with pytest.raises(RunInterrupted):
        pgd_training.train(config, part, on_chunk=_stop_after(PGD_TINY["updates_per_chunk"]))
    assert not (part / "summary.json").exists() and not (part / "model.npz").exists()
    assert pl.read_parquet(part / "metrics.parquet").height == 1
    first_chunk = _leaves(part / "checkpoints" / "latest.npz")
    resumed = pgd_training.train(config, part, resume=True)
    _assert_same_leaves(whole / "model.npz", part / "model.npz")
    _assert_same_leaves(whole / "checkpoints" / "latest.npz", part / "checkpoints" / "latest.npz")
    assert _metrics(whole).equals(_metrics(part))
    expected = _summary(whole)
    for key in ("dynamics_error", "dynamics_error_by_step", "invalid_rate", "final_loss", "windows"):
        assert resumed[key] == expected[key], key
    # the resumed run really trained on: its final weights are not the first chunk's
    assert any(not np.array_equal(v, first_chunk[k]) for k, v in _leaves(part / "checkpoints" / "latest.npz").items())


def test_pgd_same_config_and_seed_give_the_same_run_and_another_seed_another(root):
    again = Path(root) / "pgd-again"
    summary = pgd_training.train(_pgd_config(root), again)
    _assert_same_leaves(_pgd_run(root) / "model.npz", again / "model.npz")
    expected = _summary(_pgd_run(root))
    for key in ("dynamics_error", "dynamics_error_by_step", "invalid_rate", "final_loss"):
        assert summary[key] == expected[key], key
    other = Path(root) / "pgd-seed1"
    pgd_training.train(_pgd_config(root, seed=1), other)
    a, b = _leaves(again / "model.npz"), _leaves(other / "model.npz")
    assert any(not np.array_equal(a[k], b[k]) for k in a if k != "metadata")


def test_pgd_target_gives_a_guided_measure(root):
    """With --target (a train offline run) the summary's measures are the guided samples' and the target
    log-likelihood is a number; the unguided ones stay beside them."""
    target, _ = _offline_run(root, "td3bc", "none")
    out = Path(root) / "pgd-target"
    summary = pgd_training.train(_pgd_config(root, target=str(target)), out)
    assert summary["guided"] is not None and summary["unguided"]["target_log_likelihood"] is not None
    for key in ("dynamics_error", "invalid_rate", "target_log_likelihood"):
        assert summary[key] == summary["guided"][key], key
    assert math.isfinite(summary["target_log_likelihood"])
    assert len(summary["guided"]["dynamics_error_by_step"]) == PGD_TINY["window"] - 1


# -- train offline ---------------------------------------------------------------------------------------------
def _dataset_return(root: str) -> float:
    """Pendulum's 4 random episodes, each cut by the time limit at 200 rows: the mean of their reward sums."""
    frame = pl.read_parquet(_dataset(root) / "data.parquet")
    sums = frame.group_by("episode").agg(pl.col("reward").sum(), pl.len())
    assert sums["len"].to_list() == [200] * 4
    return float(sums["reward"].mean())


@pytest.mark.parametrize("algo", ["td3bc", "iql"])
def test_offline_real_data_only_run_directory_and_summary(root, algo):
    run, summary = _offline_run(root, algo, "none")
    for name in ("config.json", "metrics.parquet", "summary.json", "checkpoints/latest.npz", "plots/return_curve.png"):
        assert (run / name).is_file(), name
    seeds = OFFLINE_TINY["seeds"]
    assert summary["algo"] == algo and summary["synthetic"] == "none" and summary["guidance"] is None
    assert len(summary["returns_by_seed"]) == seeds
    assert summary["mean_return"] == pytest.approx(np.mean(summary["returns_by_seed"]))
    low, high = summary["mean_return_ci95"]
    half = 12.706204736174698 * np.std(summary["returns_by_seed"], ddof=1) / math.sqrt(seeds)  # t(0.975, 1 dof)
    assert low == pytest.approx(summary["mean_return"] - half) and high == pytest.approx(summary["mean_return"] + half)
    assert summary["dataset_return"] == pytest.approx(_dataset_return(root), rel=1e-5)
    for key in ("dynamics_error", "invalid_rate", "target_log_likelihood", "synthetic_measures"):
        assert summary[key] is None, key
    assert summary["updates_per_second"] > 0
    frame = pl.read_parquet(run / "metrics.parquet")
    chunks = OFFLINE_TINY["updates"] // OFFLINE_TINY["updates_per_chunk"]
    assert frame.height == chunks * seeds
    assert sorted(frame["seed"].unique().to_list()) == list(range(seeds))
    final = frame.filter(pl.col("update") == OFFLINE_TINY["updates"]).sort("seed")["mean_return"].to_list()
    assert final == pytest.approx(summary["returns_by_seed"])
    # evaluated at the end of each phase (updates 10 and 20), not after every chunk
    evaluated = frame.filter(pl.col("mean_return").is_not_null())["update"].unique().sort().to_list()
    assert evaluated == [10, 20]
    # every return is one of pendulum's: at most 0, at least -16.3 per step over 200 steps
    assert all(-16.3 * 200 <= r <= 0 for r in summary["returns_by_seed"])


@pytest.mark.parametrize("synthetic", ["unguided", "pgd"])
def test_offline_diffusion_synthetic_data_is_measured(root, synthetic):
    run, summary = _offline_run(root, "td3bc", synthetic)
    for key in ("dynamics_error", "invalid_rate", "target_log_likelihood"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]), key
        assert summary[key] == summary["synthetic_measures"][key], key
    measures = summary["synthetic_measures"]
    assert measures["phase"] == OFFLINE_TINY["regenerations"] - 1  # the last buffer's measures
    assert len(measures["dynamics_error_by_step"]) == PGD_TINY["window"] - 1
    if synthetic == "pgd":  # the first buffer unguided, every later one guided by the diffusion run's c
        assert measures["guidance"] == PGD_TINY["guidance"] > 0
        assert summary["guidance"] == PGD_TINY["guidance"]
    else:
        assert measures["guidance"] == 0 and summary["guidance"] is None
    assert len(summary["returns_by_seed"]) == OFFLINE_TINY["seeds"]


def test_offline_world_model_synthetic_data_is_measured_per_rollout_step(root):
    _, summary = _offline_run(root, "td3bc", "worldmodel")
    measures = summary["synthetic_measures"]
    assert measures["horizon"] == OFFLINE_TINY["horizon"]
    assert len(measures["dynamics_error_by_step"]) == OFFLINE_TINY["horizon"]
    assert math.isfinite(summary["dynamics_error"]) and summary["invalid_rate"] == 0  # pendulum: always valid
    assert math.isfinite(summary["target_log_likelihood"])
    assert summary["guidance"] is None


def test_offline_resume_after_the_first_chunk_equals_the_uninterrupted_run(root):
    """A pgd-synthetic run (buffer, phases, guidance) stopped after its first chunk and resumed ends with the
    uninterrupted run's metrics, final returns, measures and agents."""
    whole, expected = _offline_run(root, "td3bc", "pgd")
    part = Path(root) / "offline-part"
    config = _offline_config(root, synthetic="pgd", diffusion=str(_pgd_run(root)))
    with pytest.raises(RunInterrupted):
        offline_training.train(config, part, on_chunk=_stop_after(OFFLINE_TINY["updates_per_chunk"]))
    assert not (part / "summary.json").exists()
    resumed = offline_training.train(config, part, resume=True)
    assert _metrics(whole).equals(_metrics(part))
    assert resumed["returns_by_seed"] == expected["returns_by_seed"]
    assert resumed["synthetic_measures"] == expected["synthetic_measures"]
    _assert_same_leaves(whole / "checkpoints" / "latest.npz", part / "checkpoints" / "latest.npz")


def test_offline_seeds_are_independent(root):
    """Seed 0 of a ``--seeds 2`` run is the ``--seeds 1 --seed 0`` run (init_agents: seed ``seed + s`` from
    ``PRNGKey(seed + s)``; the per-seed update and evaluation keys ``split(key, seeds)[s]`` do not depend on
    ``seeds`` under JAX's partitionable threefry, its default)."""
    _, two = _offline_run(root, "td3bc", "none", seeds=2)
    _, one = _offline_run(root, "td3bc", "none", seeds=1)
    assert one["returns_by_seed"][0] == pytest.approx(two["returns_by_seed"][0], abs=1e-5)
    one_rows = pl.read_parquet(_offline_run(root, "td3bc", "none", seeds=1)[0] / "metrics.parquet")
    two_rows = pl.read_parquet(_offline_run(root, "td3bc", "none", seeds=2)[0] / "metrics.parquet")
    columns = [c for c in one_rows.columns if c not in TIMINGS]
    first = two_rows.filter(pl.col("seed") == 0).select(columns)
    for column in columns:
        np.testing.assert_allclose(first[column].to_numpy(), one_rows[column].to_numpy(), rtol=1e-5, err_msg=column)


# -- bad input -------------------------------------------------------------------------------------------------
def _cli(args: list[str]):
    from agentlab.cli.app import app

    return CliRunner().invoke(app, args)


@functools.cache
def _bad_datasets(root: str) -> dict[str, Path]:
    good = _dataset(root)
    base = Path(root) / "bad"
    nan, shape = base / "nan", base / "shape"
    for folder in (nan, shape):
        shutil.copytree(good, folder)
    frame = pl.read_parquet(good / "data.parquet")
    obs = np.stack(frame["obs"].to_numpy()).astype(np.float32)
    spoiled = obs.copy()
    spoiled[3, 1] = np.nan
    frame.with_columns(pl.Series("obs", spoiled, dtype=frame.schema["obs"])).write_parquet(nan / "data.parquet")
    narrow = pl.Series("obs", obs[:, :2], dtype=pl.Array(pl.Float32, 2))
    frame.with_columns(narrow).write_parquet(shape / "data.parquet")
    gems = base / "gems"
    options = (("layout", "tabular"), ("size", 3))
    collect.collect(collect.CollectConfig(env="gems", env_options=options, policy="random", steps=60), gems)
    unfinished = base / "unfinished"
    shutil.copytree(_pgd_run(root), unfinished)
    (unfinished / "model.npz").unlink()
    (unfinished / "summary.json").unlink()
    (base / "notrun").mkdir()
    (base / "notrun" / "keep.txt").write_text("not a run\n")
    return {
        "pend": good,
        "short": _dataset(root, "pendulum", (("max_steps", 20),), 2),
        "nan": nan,
        "shape": shape,
        "gems": gems,
        "unfinished": unfinished,
        "notrun": base / "notrun",
        "pgdrun": _pgd_run(root),
    }


BAD = [
    ("pgd", ["--data", "pend", "--env", "maze2d"], "holds pendulum data, not maze2d"),
    ("pgd", ["--data", "gems"], "not a single-agent continuous-action kernel"),
    ("pgd", ["--data", "nan"], "NaN"),
    ("pgd", ["--data", "shape"], "shape (2,)"),
    ("pgd", ["--data", "pend", "--guidance", "-1"], "--guidance"),
    ("pgd", ["--data", "short", "--window", "64", "--channels", "8"], "longer than every episode"),
    ("pgd", ["--data", "pend", "--window", "30", "--channels", "8,8,8"], "multiple of 4"),
    ("pgd", ["--data", "pend", "--updates", "0"], "--updates"),
    ("pgd", ["--data", "pend", "--channels", "8,x"], "--channels"),
    ("offline", ["--data", "pend", "--env", "maze2d"], "holds pendulum data, not maze2d"),
    ("offline", ["--data", "gems"], "not a single-agent continuous-action kernel"),
    ("offline", ["--data", "nan"], "NaN"),
    ("offline", ["--data", "shape"], "shape (2,)"),
    ("offline", ["--data", "pend", "--synthetic", "pgd"], "give --diffusion"),
    ("offline", ["--data", "pend", "--synthetic", "pgd", "--diffusion", "notrun"], "--diffusion"),
    ("offline", ["--data", "pend", "--synthetic", "unguided", "--diffusion", "pend"], "not of `train pgd`"),
    ("offline", ["--data", "pend", "--synthetic", "pgd", "--diffusion", "unfinished"], "has not finished"),
    ("offline", ["--data", "pend", "--algo", "nope"], "'--algo': Value error, 'nope' is not one of 'td3bc', 'iql'"),
    ("offline", ["--data", "pend", "--synthetic", "nope"], "'nope' is not one of 'none', 'unguided', 'pgd'"),
    ("offline", ["--data", "pend", "--synthetic", "worldmodel", "--real-per-batch", "256"], "no room"),
    (
        "offline",
        ["--data", "pend", "--synthetic", "pgd", "--diffusion", "pgdrun", "--real-per-batch", "256"],
        "no room",
    ),
    ("offline", ["--data", "pend", "--guidance", "2"], "--guidance applies to --synthetic pgd"),
    ("offline", ["--data", "pend", "--synthetic", "pgd", "--diffusion", "pgdrun", "--guidance", "-1"], "--guidance"),
    ("offline", ["--data", "pend", "--updates", "1", "--regenerations", "2"], "fewer than --regenerations"),
]


@pytest.mark.parametrize(("command", "args", "message"), BAD, ids=[f"{c}-{'-'.join(a)}" for c, a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(root, tmp_path, command, args, message):
    named = _bad_datasets(root)
    args = [str(named[a]) if a in named else a for a in args]
    out = tmp_path / "out"
    result = _cli(["train", command, *args, "--out", str(out), "--quiet"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_pgd_channels_the_group_norm_cannot_split_are_refused_by_validate():
    with pytest.raises(UsageError, match="--channels"):
        pgd_training.PGDRunConfig(data="anything", window=16, channels=(12,)).validate()


def test_offline_cli_end_to_end_equals_the_driver_and_refuses_a_second_run(root, tmp_path):
    """The command line writes the run directory, --json prints the summary, and its returns are the driver's
    (the same chunks here); a second run into it is refused, untouched, without --resume or --force."""
    out = tmp_path / "cli"
    flags = "--updates 20 --regenerations 2 --hidden 16,16 --batch-size 32 --eval-episodes 2 --seeds 2".split()
    args = ["train", "offline", "--data", str(_dataset(root)), *flags, "--out", str(out), "--quiet"]
    result = _cli([*args, "--json"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = orjson.loads(result.stdout)
    assert summary == _summary(out)
    _, expected = _offline_run(root, "td3bc", "none")
    assert summary["returns_by_seed"] == expected["returns_by_seed"]
    before = (out / "summary.json").read_bytes()
    again = _cli(args)
    assert again.exit_code == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert (out / "summary.json").read_bytes() == before


def test_offline_synthetic_buffer_too_large_for_memory_is_refused(root, tmp_path):
    out = tmp_path / "out"
    args = ["--data", str(_dataset(root)), "--synthetic", "worldmodel", "--synthetic-size", "100000000"]
    result = _cli(["train", "offline", *args, "--seeds", "256", "--model-updates", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


# -- sweep pgd: the trade-off study ---------------------------------------------------------------------------------
def test_matched_likelihood_pairs_each_world_model_point_with_the_nearest_pgd_point():
    from agentlab.studies.pgd import matched_likelihood

    rows = [
        {"generator": "pgd", "guidance": 0.0, "horizon": None, "target_log_likelihood": -1.2, "dynamics_error": 0.1},
        {"generator": "pgd", "guidance": 2.0, "horizon": None, "target_log_likelihood": -0.95, "dynamics_error": 0.3},
        {
            "generator": "worldmodel",
            "guidance": None,
            "horizon": 4,
            "target_log_likelihood": -0.92,
            "dynamics_error": 0.6,
        },  # fmt: skip
        {
            "generator": "worldmodel",
            "guidance": None,
            "horizon": 1,
            "target_log_likelihood": -1.1,
            "dynamics_error": 0.05,
        },  # fmt: skip
    ]
    matched = matched_likelihood(rows)
    assert [m["horizon"] for m in matched] == [4, 1]
    assert matched[0]["pgd_guidance"] == 2.0 and matched[0]["error_ratio"] == pytest.approx(0.5)
    assert matched[1]["pgd_guidance"] == 0.0 and matched[1]["error_ratio"] == pytest.approx(2.0)


def test_sweep_pgd_measures_both_generators_against_the_kernel(root, tmp_path):
    """One point per guidance strength and horizon; a world model rolled out under the target's deterministic
    policy has its maximal likelihood under Normal(mu, 1) (-0.5 ln 2 pi per action dimension), and every point's
    transition count is what was asked."""
    target, _ = _offline_run(root, "td3bc", "none")
    out = tmp_path / "tradeoff"
    args = ["sweep", "pgd", "--diffusion", str(_pgd_run(root)), "--target", str(target), "--guidance", "0,1"]
    args += ["--horizons", "1,3", "--windows", "4", "--sample-steps", "4", "--model-updates", "5", "--out", str(out)]
    result = _cli([*args, "--quiet", "--json"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    summary = orjson.loads(result.stdout)
    table = pl.read_parquet(out / "tradeoff.parquet")
    assert table["generator"].to_list() == ["pgd", "pgd", "worldmodel", "worldmodel"]
    assert table["transitions"].to_list() == [4 * 15, 4 * 15, 4 * 1, 4 * 3]
    wm = table.filter(pl.col("generator") == "worldmodel")["target_log_likelihood"].to_numpy()
    np.testing.assert_allclose(wm, -0.5 * np.log(2 * np.pi), atol=1e-5)
    assert [m["horizon"] for m in summary["matched"]] == [1, 3]
    assert (out / "plots" / "tradeoff.png").stat().st_size > 0


def test_sweep_pgd_refuses_a_target_from_another_dataset(root, tmp_path):
    other = _dataset(root, episodes=5)
    config = offline_training.OfflineRunConfig(data=str(other), **OFFLINE_TINY)
    target = Path(root) / "offline-other-data"
    if not target.exists():
        offline_training.train(config, target)
    out = tmp_path / "tradeoff"
    result = _cli(["sweep", "pgd", "--diffusion", str(_pgd_run(root)), "--target", str(target), "--out", str(out)])
    assert result.exit_code == 2 and "compare them on one dataset" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


# -- --tensorboard on train pgd and train offline -----------------------------------------------------------------
def _events_equal_metrics(run: Path, group: str | None) -> None:
    """Every numeric metrics column is a TensorBoard scalar with the row's update as its step, nothing more."""
    from agentlab.tensorboard import read_scalars

    frame = pl.read_parquet(run / "metrics.parquet")
    scalars = read_scalars(run / "tensorboard")
    folders = {f"seed-{s}" for s in frame[group].unique()} if group else {"all"}
    assert set(scalars) == folders
    for folder in folders:
        rows = frame.filter(pl.col(group) == int(folder.split("-")[1])) if group else frame
        numeric = [c for c, t in rows.schema.items() if t.is_numeric() and c not in ("update", group)]
        assert set(scalars[folder]) == {c for c in numeric if rows[c].null_count() < rows.height}
        for column in scalars[folder]:
            kept = rows.filter(pl.col(column).is_not_null())
            expected = [(int(u), float(np.float32(v))) for u, v in zip(kept["update"], kept[column])]
            assert scalars[folder][column] == expected, (folder, column)


def test_pgd_tensorboard_events_equal_the_metrics_and_a_resumed_run_keeps_writing_them(root):
    pytest.importorskip("tensorboardX")
    part = Path(root) / "pgd-board"
    config = _pgd_config(root)
    with pytest.raises(RunInterrupted):
        pgd_training.train(config, part, on_chunk=_stop_after(PGD_TINY["updates_per_chunk"]), tensorboard=True)
    _events_equal_metrics(part, None)  # the first chunk's row
    assert orjson.loads((part / "config.json").read_bytes())["config"]["tensorboard"] is True
    pgd_training.train(config, part, resume=True)  # no flag: the run recorded it
    assert pl.read_parquet(part / "metrics.parquet").height == 2
    _events_equal_metrics(part, None)
    # the events change no number: the metrics equal the uninterrupted run's without --tensorboard
    assert _metrics(_pgd_run(root)).equals(_metrics(part))


def test_offline_tensorboard_events_equal_the_metrics_one_folder_per_seed(root):
    pytest.importorskip("tensorboardX")
    out = Path(root) / "offline-board"
    offline_training.train(_offline_config(root, algo="td3bc", synthetic="none"), out, tensorboard=True)
    _events_equal_metrics(out, "seed")
    plain, _ = _offline_run(root, "td3bc", "none")
    assert _metrics(plain).equals(_metrics(out))
