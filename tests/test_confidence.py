"""`agentlab.synergy.confidence` and `agentlab calibrate confidence`: metrics against hand values and
brute force, recalibration recovering known parameters, bad input."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentlab.cli.app import app
from agentlab.synergy import confidence as conf

runner = CliRunner()


def _error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.output
    return lines[0]


# --- metrics ------------------------------------------------------------------------------------------------


def test_ece_of_a_calibrated_set_is_near_zero():
    rng = np.random.default_rng(1)
    c = rng.random(200_000)
    y = (rng.random(c.size) < c).astype(np.int8)
    # Sampling noise alone: sum_k (n_k/n) E|acc_k - conf_k| ~ sqrt(2/pi) mean_k sqrt(p(1-p)/n_k) ~ 0.003.
    assert conf.expected_calibration_error(c, y, bins=15) < 0.01
    # The same set made over-confident is far from 0.
    assert conf.expected_calibration_error(conf.sigmoid(3 * conf.logit(c)), y, bins=15) > 0.1


def test_ece_equals_the_hand_computed_value():
    # 10 bins. Bin 9: ten rows at 0.92, 7 correct -> |0.7 - 0.92| = 0.22. Bin 1: ten rows at 0.12,
    # 2 correct -> |0.2 - 0.12| = 0.08. ECE = 0.5 * 0.22 + 0.5 * 0.08 = 0.15. Bin 9 is spread over
    # [0.91, 0.93] (mean 0.92); a per-row mean |y - c| would give 0.41.
    c = np.r_[np.full(5, 0.91), np.full(5, 0.93), np.full(10, 0.12)]
    y = np.r_[1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert conf.expected_calibration_error(c, y, bins=10) == pytest.approx(0.15, abs=1e-12)
    # Moving bin 1's rows to 0.19 keeps them in bin 1: |0.2 - 0.19| -> ECE 0.5 * 0.22 + 0.5 * 0.01
    # (bin midpoints 0.95 and 0.15 would give 0.15 for both sets).
    c2 = np.r_[c[:10], np.full(10, 0.19)]
    assert conf.expected_calibration_error(c2, y, bins=10) == pytest.approx(0.115, abs=1e-12)
    # Confidence 1.0 falls in the last bin, 0.0 in the first.
    assert conf.bin_index(np.array([0.0, 0.5, 0.999, 1.0]), 10).tolist() == [0, 5, 9, 9]
    assert conf.expected_calibration_error(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 0, 0]), bins=4) == 0.25


def test_brier_matches_numpy():
    rng = np.random.default_rng(2)
    c, y = rng.random(1000), rng.integers(0, 2, 1000)
    assert conf.brier_score(c, y) == pytest.approx(np.mean((c - y) ** 2), rel=1e-12)


def _pairwise_auroc(score, y):
    pos, neg = score[y == 1], score[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_auroc_matches_the_pairwise_count_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    score = rng.integers(0, 7, 600) + y  # many ties, informative
    assert conf.auroc(score, y) == pytest.approx(_pairwise_auroc(score, y), abs=1e-12)
    assert conf.auroc(np.ones(10), np.r_[np.zeros(5), np.ones(5)]) == 0.5
    assert np.isnan(conf.auroc(np.arange(4.0), np.ones(4)))


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40))
def test_auroc_pairwise_property(rows):
    score = np.array([r[0] for r in rows], dtype=float) / 5
    y = np.array([r[1] for r in rows], dtype=np.int8)
    if y.min() == y.max():
        assert np.isnan(conf.auroc(score, y))
    else:
        assert conf.auroc(score, y) == pytest.approx(_pairwise_auroc(score, y), abs=1e-12)


# --- isotonic ---------------------------------------------------------------------------------------------------


def test_pav_hand_example():
    assert conf.pool_adjacent_violators([1, 3, 2, 4, 3, 5]).tolist() == [1, 2.5, 2.5, 3.5, 3.5, 5]
    assert conf.pool_adjacent_violators([3, 2, 1]).tolist() == [2, 2, 2]
    # weights: (4 * 1 + 1 * 0) / 5 = 0.8
    assert conf.pool_adjacent_violators([1, 0], [4, 1]).tolist() == pytest.approx([0.8, 0.8])


@settings(deadline=None, max_examples=60)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=50))
def test_pav_is_monotone_and_preserves_the_mean(values):
    fitted = conf.pool_adjacent_violators(values)
    assert np.all(np.diff(fitted) >= -1e-9)
    assert fitted.mean() == pytest.approx(np.mean(values), abs=1e-9)
    # Already sorted input is its own fit.
    assert conf.pool_adjacent_violators(sorted(values)) == pytest.approx(sorted(values))


def test_isotonic_pools_tied_confidences():
    c = np.array([0.2, 0.2, 0.4, 0.6, 0.6])
    y = np.array([1, 0, 0, 1, 1])
    fitted = conf.fit_isotonic(c, y)
    # distinct 0.2 (mean 0.5, weight 2), 0.4 (0), 0.6 (1) -> pool first two: (1 + 0) / 3 = 1/3
    assert fitted.knots.tolist() == [0.2, 0.4, 0.6]
    assert fitted.values.tolist() == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert fitted(np.array([0.0, 0.5, 1.0])).tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


# --- parametric recalibration ----------------------------------------------------------------------------------


def test_temperature_scaling_recovers_the_temperature():
    # True logit z ~ N(0, 1.5^2), y ~ Bernoulli(sigmoid(z)); reported confidence sigmoid(T z) with T = 2.5.
    # With n = 100,000 the MLE of 1/T has a standard error of ~0.3%; tolerance 2% (> 4 se).
    rng = np.random.default_rng(4)
    z = 1.5 * rng.standard_normal(100_000)
    y = (rng.random(z.size) < conf.sigmoid(z)).astype(np.int8)
    assert conf.fit_temperature(conf.sigmoid(2.5 * z), y) == pytest.approx(2.5, rel=0.02)
    assert conf.fit_temperature(conf.sigmoid(0.5 * z), y) == pytest.approx(0.5, rel=0.02)


def test_platt_recovers_a_and_b():
    # Reported logit u ~ N(0, 2^2); true logit 0.6 u - 0.4. n = 100,000: se(a) ~ 0.005, se(b) ~ 0.008.
    rng = np.random.default_rng(5)
    u = 2.0 * rng.standard_normal(100_000)
    y = (rng.random(u.size) < conf.sigmoid(0.6 * u - 0.4)).astype(np.int8)
    a, b = conf.fit_platt(conf.sigmoid(u), y)
    assert a == pytest.approx(0.6, abs=0.03)
    assert b == pytest.approx(-0.4, abs=0.04)


def test_logistic_feature_model_recovers_weights():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((50_000, 2)) * [1.0, 3.0] + [0.0, 5.0]
    y = (rng.random(50_000) < conf.sigmoid(1.0 * x[:, 0] - 0.5 * x[:, 1] + 2.0)).astype(np.int8)
    _, slopes, intercept = conf.feature_model(x, y, np.arange(50_000))
    assert slopes == pytest.approx([1.0, -0.5], abs=0.05)
    assert intercept == pytest.approx(2.0, abs=0.15)


def test_recalibration_lowers_held_out_ece_on_the_example():
    frame = pl.read_parquet(conf.EXAMPLE)
    study = conf.recalibrate(conf.validate(frame), test_fraction=0.3, seed=0, bins=15)
    before = study.scores["uncalibrated", "test"]
    assert before["ece"] > 0.1  # the example is over-confident
    for method in ("temperature", "platt", "isotonic"):
        after = study.scores[method, "test"]
        assert after["ece"] < before["ece"] / 2, method
        assert after["nll"] < before["nll"], method
    assert study.temperature == pytest.approx(conf.OverconfidentGenerator().overconfidence, rel=0.15)


def test_example_is_regenerable_and_small():
    shipped = pl.read_parquet(conf.EXAMPLE)
    assert shipped.equals(conf.generate_example())
    assert conf.EXAMPLE.stat().st_size < 200_000
    meta = json.loads(conf.EXAMPLE.with_suffix(".json").read_text())
    assert meta["parameters"]["seed"] == conf.OverconfidentGenerator().seed


# --- command line -------------------------------------------------------------------------------------------------


def test_cli_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["calibrate", "confidence", "example:confidence", "--out", str(out), "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 4000 and summary["test_rows"] == 1200
    assert summary["ece_temperature"] < summary["ece_uncalibrated"]
    for name in ("config.json", "summary.json", "metrics.parquet", "reliability.parquet", "plots/reliability.png"):
        assert (out / name).exists(), name
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == 8 and set(metrics.columns) >= {"method", "split", "ece", "brier", "auroc", "nll"}


def test_cli_features_mode(tmp_path):
    frame = pl.read_parquet(conf.EXAMPLE).drop("confidence")
    data = tmp_path / "features.csv"
    frame.write_csv(data)
    out = tmp_path / "run"
    args = ["calibrate", "confidence", str(data), "--features", "self_consistency,tool_errors,log_steps",
            "--out", str(out), "--json", "-q"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["confidence_source"] == "features"
    assert summary["feature_weight_self_consistency"] == pytest.approx(2.5, abs=0.5)


@pytest.mark.parametrize(
    ("columns", "extra", "needle"),
    [
        ({"confidence": [0.1, 0.9, 0.5, 0.4]}, [], "'outcome'"),
        ({"confidence": [0.1, 0.9, 0.5, 0.4], "outcome": [0, 1, 2, 1]}, [], "0/1"),
        ({"confidence": [0.1, 1.3, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, [], "[0, 1]"),
        ({"confidence": [0.1, -0.1, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, [], "[0, 1]"),
        ({"a": [0.1, 0.2, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, ["--features", "a,b"], "'b'"),
        ({"a": [0.1, 0.2, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, [], "'confidence'"),
        ({"confidence": [0.1, 0.9, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, ["--test-fraction", "1.5"], "--test-fraction"),
        ({"confidence": [0.1, 0.9, 0.5, 0.4], "outcome": [0, 1, 0, 1]}, ["--bins", "0"], "--bins"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, columns, extra, needle):
    data = tmp_path / "data.csv"
    pl.DataFrame(columns).write_csv(data)
    result = runner.invoke(app, ["calibrate", "confidence", str(data), "--out", str(tmp_path / "run"), *extra])
    line = _error_line(result)
    assert needle in line, line


def test_unknown_example_and_missing_file(tmp_path):
    assert "example:confidence" in _error_line(runner.invoke(app, ["calibrate", "confidence", "example:nope"]))
    assert "no such file" in _error_line(runner.invoke(app, ["calibrate", "confidence", str(tmp_path / "x.csv")]))
