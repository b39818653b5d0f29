"""`agentlab eval` and `agentlab render` at their edges: run labels, the trained step, bad input (one line,
exit code 2, nothing written) and the stochasticity grammar's messages; the robustness matrix's grids,
common random numbers, intervals, normalised returns and drift counts (`agentlab.rl.evaluate`)."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import polars as pl
import pytest
from scipy import stats
from typer.testing import CliRunner

from agentlab import limits
from agentlab.cli.app import app
from agentlab.errors import UsageError
from agentlab.kernels.stochasticity import parse_spec
from agentlab.rl import evaluate as ev
from agentlab.rl.ppo import PPO, PPOConfig, seed_keys

runner = CliRunner()
# One update is 8 x 16 = 128 steps; chunks of 2 updates. 5 updates asked, 3 whole chunks trained: 768 steps.
SMALL = "num_envs = 8\nnum_steps = 16\nnum_minibatches = 2\nupdates_per_chunk = 2\nhidden = [16, 16]\n"
ASKED, TRAINED = 8 * 16 * 5, 8 * 16 * 6
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # permissions do not stop root


def invoke(*args: str):
    return runner.invoke(app, list(args))


def listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs both named `run` (a/run, b/run; different seeds), trained once for the module."""
    base = tmp_path_factory.mktemp("eval")
    (base / "small.toml").write_text(SMALL)
    for folder, seed in (("a", "0"), ("b", "1")):
        result = invoke(
            "train", "ppo", "--env", "catch", "--steps", str(ASKED), "--seed", seed,
            "--config", str(base / "small.toml"), "--out", str(base / folder / "run"), "--quiet",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
    (base / "plain.txt").write_text("plain\n")  # a one-column grid for the tests about runs, labels and steps
    return base


@pytest.fixture(scope="module")
def evaluated(runs):
    out = runs / "both"
    result = invoke("eval", str(runs / "a" / "run"), str(runs / "b" / "run"), "--episodes", "16", "--out", str(out),
                    "--grid", str(runs / "plain.txt"), "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout), pl.read_parquet(out / "robustness.parquet")


def test_two_runs_with_the_same_name_get_distinct_labels_and_values(runs, evaluated):
    out, summary, frame = evaluated
    assert frame.columns[:2] == ["run", "label"]
    assert frame["label"].to_list() == ["a/run", "b/run"]  # one seed each, one profile (plain.txt)
    assert frame["run"].to_list() == [str(runs / "a" / "run"), str(runs / "b" / "run")]
    assert summary["runs"] == 2
    keys = sorted(k for k in summary if k.startswith("mean_return_"))
    assert keys == ["mean_return_a_run_plain", "mean_return_b_run_plain"]
    for label, key in (("a/run", "mean_return_a_run_plain"), ("b/run", "mean_return_b_run_plain")):
        assert summary[key] == pytest.approx(frame.filter(pl.col("label") == label)["mean_return"].mean())
    assert summary == json.loads((out / "summary.json").read_text())
    assert (out / "plots" / "robustness.png").stat().st_size > 0


def test_eval_records_the_steps_the_run_trained(runs, evaluated):
    _, _, frame = evaluated
    trained = pl.read_parquet(runs / "a" / "run" / "metrics.parquet")["step"].max()
    assert trained == TRAINED != ASKED  # training runs whole chunks
    assert frame["step"].to_list() == [TRAINED, TRAINED]


def test_a_run_given_twice_is_evaluated_once(runs, monkeypatch):
    monkeypatch.chdir(runs)
    os.symlink(runs / "a" / "run", runs / "link")
    result = invoke("eval", "a/run", "a/run/", "./b/../a/run", "link", "--episodes", "2", "--out", "once",
                    "--grid", "plain.txt", "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    frame = pl.read_parquet(runs / "once" / "robustness.parquet")
    assert frame.height == 1 and frame["run"].to_list() == ["a/run"] and frame["label"].to_list() == ["run"]
    summary = json.loads(result.stdout)
    assert summary["runs"] == 1 and "mean_return_run_plain" in summary
    assert json.loads((runs / "once" / "config.json").read_text())["config"]["runs"] == ["a/run"]


@pytest.fixture(scope="module")
def broken(runs):
    """Run arguments that are not usable runs, and grid files that are not usable grids."""
    bad = runs / "bad"
    bad.mkdir()
    (bad / "not-a-run").mkdir()
    (bad / "a-file").write_text("x")
    shutil.copytree(runs / "a" / "run", bad / "corrupt-config")
    (bad / "corrupt-config" / "config.json").write_text('{"command": "train ppo", "conf')
    shutil.copytree(runs / "a" / "run", bad / "no-checkpoint")
    shutil.rmtree(bad / "no-checkpoint" / "checkpoints")
    shutil.copytree(runs / "a" / "run", bad / "corrupt-checkpoint")
    (bad / "corrupt-checkpoint" / "checkpoints" / "latest.npz").write_bytes(b"not a zip archive")
    (bad / "grid-dir").mkdir()
    (bad / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    (bad / "empty.txt").write_text("")
    (bad / "comments.txt").write_text("# nothing\n\n")
    (bad / "malformed.txt").write_text("plain\n# a comment\nmask:kind=fog\n")
    (bad / "repeated.txt").write_text("plain\nnone\n")
    (bad / "unreadable.txt").write_text("plain\n")
    (bad / "unreadable.txt").chmod(0)
    return bad


RUN = "a/run"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([RUN, "--episodes", "1000000000"], "--episodes must be an integer in [1, 1e+06]"),
        ([RUN, "--episodes", "0"], "--episodes must be"),
        ([RUN, "--episodes", "-3"], "--episodes must be"),
        ([RUN, "--stochasticity-grid", "bad/grid-dir"], "bad/grid-dir is a directory"),
        ([RUN, "--stochasticity-grid", "bad/binary.txt"], "bad/binary.txt is not a text file"),
        ([RUN, "--grid", "bad/empty.txt"], "bad/empty.txt lists no profiles"),
        ([RUN, "--stochasticity-grid", "bad/comments.txt"], "bad/comments.txt lists no profiles"),
        ([RUN, "--grid", "bad/malformed.txt"], "bad/malformed.txt line 3: unknown mask kind 'fog'"),
        ([RUN, "--stochasticity-grid", "bad/repeated.txt"], "bad/repeated.txt line 2: 'plain' repeats line 1"),
        ([RUN, "--grid", "bad/missing.txt"], "bad/missing.txt: no such file"),
        pytest.param(
            [RUN, "--stochasticity-grid", "bad/unreadable.txt"],
            "bad/unreadable.txt: permission denied",
            marks=pytest.mark.skipif(ROOT, reason="root reads any file"),
        ),
        (["bad/not-a-run"], "bad/not-a-run is not an agentlab run directory"),
        (["bad/a-file"], "bad/a-file is not a directory"),
        (["bad/nowhere"], "bad/nowhere does not exist"),
        (["bad/corrupt-config"], "bad/corrupt-config/config.json is not an agentlab run record"),
        (["bad/no-checkpoint"], "bad/no-checkpoint has no checkpoint"),
        (["bad/corrupt-checkpoint"], "bad/corrupt-checkpoint/checkpoints/latest.npz"),
        ([RUN, "bad/not-a-run"], "bad/not-a-run is not an agentlab run directory"),
    ],
)
def test_bad_eval_input_is_one_line_exit_2_and_writes_nothing(args, fragment, runs, broken, monkeypatch):
    monkeypatch.chdir(runs)
    before = listing(runs)
    result = invoke("eval", *args, "--quiet")
    one_line_error(result, fragment)
    assert listing(runs) == before


def test_eval_refuses_episodes_that_do_not_fit_in_memory(runs, monkeypatch):
    monkeypatch.chdir(runs)
    monkeypatch.setattr(limits, "available_memory", lambda: 64 << 20)
    before = listing(runs)
    result = invoke("eval", RUN, "--episodes", "1000000", "--quiet")
    one_line_error(result, "evaluating 1,000,000 episodes x 1 seed(s) of catch at once needs about")
    assert "lower --episodes" in result.stderr
    assert listing(runs) == before


def test_eval_episodes_that_are_not_an_integer_are_refused(runs, monkeypatch):
    monkeypatch.chdir(runs)
    before = listing(runs)
    result = invoke("eval", RUN, "--episodes", "1e9", "--quiet")
    assert result.exit_code == 2 and "--episodes" in result.output + result.stderr
    assert listing(runs) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fps", "nan"], "--fps must be a finite number in [0.01, 100]"),
        (["--fps", "inf"], "--fps must be a finite number"),
        (["--fps", "0"], "--fps must be"),
        (["--fps", "-1"], "--fps must be"),
        (["--steps", "100000000"], "--steps must be an integer in [1, 10000]"),
        (["--steps", "0"], "--steps must be"),
        (["--scale", "100000"], "--scale must be an integer in [1, 64]"),
        (["--actions", ",".join(["0"] * 10_001)], "--actions lists 10,001 actions; at most 10,000"),
        (["-s", "+".join(["action:p=0.1"] * 40)], "has 40 profiles (drift targets included); at most 32"),
        (["-s", "action:p=0.3+plain"], "'plain' cannot be combined with other profiles"),
        (["--out", "a-file/clip.gif"], "a-file is a file, not a directory"),
        (["--out", "a-folder"], "--out a-folder is a directory"),
        (["--out", "a-folder.gif"], "--out a-folder.gif is a directory"),
        (["--out", "a-folder.gif", "--force"], "--out a-folder.gif is a directory"),
        (["--out", "existing.gif"], "--out existing.gif already exists: pass --force"),
        (["--out", "x" * 250 + ".gif"], "the file name is 254 bytes long"),
        pytest.param(
            ["--out", "locked/deeper/clip.gif"],
            "cannot write in",
            marks=pytest.mark.skipif(ROOT, reason="root writes anywhere"),
        ),
    ],
)
def test_bad_render_input_is_one_line_exit_2_and_writes_nothing(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder.gif").mkdir()
    (tmp_path / "existing.gif").write_bytes(b"GIF89a")
    (tmp_path / "locked").mkdir(mode=0o500)
    before = listing(tmp_path)
    result = invoke("render", "breakout", *(args if "--out" in args else [*args, "--out", "new.gif"]))
    one_line_error(result, fragment)
    assert listing(tmp_path) == before


def test_plain_combined_with_other_profiles_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in ("action:p=0.3+plain", "plain+sticky", "none+action", "drift:to=(action+plain)"):
        with pytest.raises(UsageError, match="cannot be combined with other profiles") as info:
            parse_spec(text)
        assert "unknown stochasticity kind" not in str(info.value)
    result = invoke("train", "ppo", "--stochasticity", "action:p=0.3+plain", "--quiet")
    one_line_error(result, "'plain' cannot be combined with other profiles in 'action:p=0.3+plain'")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plain:p=1", "'plain' takes no keys"),
        ("action+", "empty profile in stochasticity 'action+'"),
        ("action++sticky", "empty profile"),
        ("action p=0.3", "expected action:KEY=VALUE"),
        ("action:p=0.3,", "a stray ','"),
        ("event:mode=,p=1", "mode= has no value"),
        ("action:p=nan", "p=nan in 'action:p=nan' is not a finite number"),
        ("mask:kind=torch,radius=inf", "radius=inf in 'mask:kind=torch,radius=inf' is not a finite number"),
        ("drift:at=10,to=(action)(sticky)", "must be one specification in parentheses"),
        ("drift:at=99999999999,to=(action)", "must be <= 2147483647"),
        ("drift:to=(" * 200 + "action" + ")" * 200, "a drift's to= cannot contain another drift"),
        ("action:p=0.1+" * 1000 + "sticky", "characters is too long; at most 4096"),
    ],
)
def test_grammar_messages_name_the_real_problem(text, message):
    with pytest.raises(UsageError) as info:
        parse_spec(text)
    assert message in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# The robustness matrix: grids, common random numbers, intervals, normalised returns, drift counts


def test_the_default_grid_for_breakout_is_storis_paper_profiles():
    stori = [
        "plain",  # type 3.1
        "action:p=0.3",  # type 1
        "event:mode=cancel_zero,p=0.25",  # type 2.1, STORI's Breakout mode 2
        "drift:mode=sudden,at=300,to=(mask:kind=blackout,region=all,p=1)",  # type 2.2
        "mask:kind=blackout,region=bricks,p=1",  # type 3.2
        "mask:kind=crop,region=left,p=0.75",
        "mask:kind=torch,radius=3,centre=random,p=1",
    ]
    assert ev.stori_grid("breakout") == stori
    assert ev.named_grid("stori", "breakout") == ev.named_grid("default", "breakout") == stori
    assert "sticky:p=0.25" in ev.named_grid("extended", "breakout")
    assert "event:mode=regenerate,p=0.25" in ev.extended_grid("breakout")
    for game in ("asterix", "freeway", "space-invaders", "seaquest"):  # every game's choices are valid profiles
        for spec in ev.stori_grid(game):
            make_env_for(game, spec)


def test_kernels_without_the_atari_taxonomy_get_the_generic_kinds_they_support():
    # catch: bool image observations, so no dropout; its episode has no time limit: the drift at step 100
    assert ev.stori_grid("catch") == [
        "plain", "action:p=0.3", "sticky:p=0.25", "drift:mode=sudden,at=100,to=(action:p=0.5)"
    ]  # fmt: skip
    # pendulum: float vector observations, a Box action, 200-step episodes: the drift at half of them
    assert ev.stori_grid("pendulum") == [
        "plain", "action:p=0.3", "sticky:p=0.25", "drift:mode=sudden,at=100,to=(action:p=0.5)",
        "mask:kind=dropout,p=0.25",
    ]  # fmt: skip
    assert ev.extended_grid("coordination")[-3:] == [f"mask:kind=dropout,p={p}" for p in (0.1, 0.25, 0.5)]
    assert "drift:mode=sudden,at=16,to=(action:p=0.5)" in ev.stori_grid("coordination")  # 32-step episodes
    for kernel in ("catch", "pendulum", "coordination", "market-crash"):  # every profile is valid for its kernel
        for spec in ev.extended_grid(kernel):
            make_env_for(kernel, spec)


def make_env_for(game: str, spec: str):
    return ev.make_eval_env(PPOConfig(env=game, hidden=(16, 16)), spec)


def test_pooled_interval_equals_numpy_on_the_concatenated_episodes():
    rng = np.random.default_rng(5)
    seeds = [rng.normal(loc, 2.0, size=n) for loc, n in ((1.0, 7), (3.0, 12), (2.5, 5))]
    mean, low, high = ev.pooled_interval([len(r) for r in seeds], [r.mean() for r in seeds], [r.std() for r in seeds])
    pooled = np.concatenate(seeds)
    half = stats.t.ppf(0.975, pooled.size - 1) * pooled.std(ddof=1) / np.sqrt(pooled.size)
    assert mean == pytest.approx(pooled.mean(), rel=1e-12)
    assert (low, high) == pytest.approx((pooled.mean() - half, pooled.mean() + half), rel=1e-12)
    one = ev.t_interval(1, 4.0, float("nan"))
    assert np.isnan(one).all()  # one episode: no interval
    assert ev.t_interval(2, 0.0, 1.0) == pytest.approx((-12.706204736 / 2**0.5, 12.706204736 / 2**0.5))


def test_normalised_returns_are_cell_over_plain():
    rows = [
        {"run": r, "label": r, "trained_under": "plain", "tested_under": spec, "episodes": 4, "mean_return": m,
         "std_return": 1.0, "drift_fired_episodes": None}
        for r, values in (("a", (8.0, 2.0, 4.0)), ("b", (0.0, 1.0, 0.0)))
        for spec, m in zip(("plain", "action:p=0.3", "mask:kind=crop,region=left,p=0.75"), values)
    ]  # fmt: skip
    matrix = ev.cell_statistics(pl.DataFrame(rows))
    assert matrix.filter(pl.col("label") == "a")["normalised_return"].to_list() == [1.0, 0.25, 0.5]
    assert matrix.filter(pl.col("label") == "b")["normalised_return"].to_list() == [None] * 3  # plain return 0
    _, values = ev.matrix_values(matrix, ["action:p=0.3", "plain"], "normalised_return")
    assert values[0].tolist() == [0.25, 1.0] and np.isnan(values[1]).all()


EPISODES, EVAL_SEED, LIMIT = 12, 3, 40


@pytest.fixture(scope="module")
def breakout_policy():
    """An untrained two-seed Breakout policy (the rollouts, not the policy, are under test) with a short
    time limit, and the plain column's episodes rolled out directly with the documented keys."""
    config = PPOConfig(env="breakout", hidden=(16, 16), seeds=2, max_episode_steps=LIMIT)
    learner = PPO(config)
    params = learner.init_seeds(seed_keys(config)).params
    keys = ev.episode_keys(EVAL_SEED, 2)
    assert keys.tolist() == [jax.random.fold_in(jax.random.PRNGKey(EVAL_SEED), s).tolist() for s in range(2)]
    plain = jax.device_get(jax.vmap(ev.make_episodes(learner, "plain", EPISODES))(params, keys))
    return learner, params, keys, plain


def test_every_column_plays_the_same_episodes(breakout_policy):
    learner, params, keys, (plain_returns, plain_lengths) = breakout_policy
    assert 0 < plain_lengths.min() and plain_lengths.max() <= LIMIT
    at = int(np.median(plain_lengths))  # some episodes reach the drift, some do not
    drift = f"drift:mode=sudden,at={at},to=(mask:kind=blackout,region=all,p=1)"
    grid = ["plain", "action:p=0.3", "action", drift]  # "action" is action:p=0.3 spelled with its default
    rows = list(ev.evaluate(learner, params, grid, EPISODES, seed=EVAL_SEED))
    by = {(r["tested_under"], r["seed_index"]): r for r in rows}
    for s in range(2):
        plain = by["plain", s]  # the plain column = the direct rollout with episode_keys(seed, seeds)
        r = np.asarray(plain_returns[s], np.float64)
        assert plain["mean_return"] == pytest.approx(r.mean()) and plain["std_return"] == pytest.approx(r.std())
        half = stats.t.ppf(0.975, EPISODES - 1) * r.std(ddof=1) / np.sqrt(EPISODES)
        assert (plain["ci95_low_return"], plain["ci95_high_return"]) == pytest.approx(
            (r.mean() - half, r.mean() + half)
        )
        assert plain["mean_length"] == pytest.approx(plain_lengths[s].mean()) and plain["drift_fired_episodes"] is None
        assert by["action:p=0.3", s] | {"tested_under": "action"} == by["action", s]  # two spellings, same episodes
    returns, lengths = jax.device_get(jax.vmap(ev.make_episodes(learner, "action", EPISODES))(params, keys))
    again, again_lengths = jax.device_get(jax.vmap(ev.make_episodes(learner, "action:p=0.3", EPISODES))(params, keys))
    assert np.array_equal(returns, again) and np.array_equal(lengths, again_lengths)
    assert not np.array_equal(lengths, plain_lengths)  # action noise does change the episodes
    # The drift fires in the episodes that lived past step `at`; under common keys its column agrees with
    # the plain one until then, so the count is the plain column's own.
    fired = [int(np.sum(plain_lengths[s] > at)) for s in range(2)]
    assert 0 < sum(fired) < 2 * EPISODES
    assert [by[drift, s]["drift_fired_episodes"] for s in range(2)] == fired
    assert [by[drift, s]["drift_at"] for s in range(2)] == [at, at]
    _, drift_lengths = jax.device_get(jax.vmap(ev.make_episodes(learner, drift, EPISODES))(params, keys))
    assert np.array_equal(np.minimum(drift_lengths, at + 1), np.minimum(plain_lengths, at + 1))


def test_evaluate_runs_is_a_library_call_with_progress_and_resume(runs, tmp_path):
    calls = []
    out = tmp_path / "lib"
    summary = ev.evaluate_runs([runs / "a" / "run"], "default", 2, 0, False, out, on_cell=lambda *a: calls.append(a))
    grid = ev.stori_grid("catch")  # the generic kinds catch supports: plain, action noise, sticky, drift
    assert len(grid) == 4
    assert calls == [(i, 4, ("run", spec)) for i, spec in enumerate(grid)] + [(4, 4, None)]
    assert summary["grid"] == "stori" and summary == json.loads((out / "summary.json").read_text())
    assert json.loads((out / "config.json").read_text())["config"]["grid_name"] == "stori"
    calls.clear()
    again = ev.evaluate_runs(
        [runs / "a" / "run"], "stori", 2, 0, False, out, resume=True, on_cell=lambda *a: calls.append(a)
    )
    assert calls == [(4, 4, None)]  # nothing recomputed
    assert again["mean_return_run_plain"] == summary["mean_return_run_plain"]
