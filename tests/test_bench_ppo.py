"""bench/ppo.py's arithmetic: the final-return window and the two goals' ratios (the learners
themselves are measured by the benchmark, not here)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from agentlab.bench.ppo import final_return, summarise


def test_final_return_is_the_nan_aware_mean_of_the_last_five_percent():
    returns = np.arange(100, dtype=float)
    returns[97] = np.nan  # an update in which no episode finished
    assert final_return(returns) == pytest.approx(np.mean([95, 96, 98, 99]))
    assert final_return(np.array([3.0, 5.0])) == 5.0  # at least one update


def _frame(default_wall: float, default_returns: list[float]) -> pl.DataFrame:
    rows = []
    for seed in range(4):
        rows.append(
            dict(
                learner="purejaxrl",
                seed=seed,
                steps=1000,
                steps_per_second=100.0 + seed,
                compile_seconds=10.0,
                wall_seconds=30.0 + seed,
                final_return=20.0,
            )
        )
        rows.append(
            dict(
                learner="agentlab-purejaxrl",
                seed=seed,
                steps=1000,
                steps_per_second=150.0 + 2 * seed,
                compile_seconds=5.0,
                wall_seconds=20.0,
                final_return=25.0,
            )
        )
        rows.append(
            dict(
                learner="agentlab-default",
                seed=seed,
                steps=1300,
                steps_per_second=200.0,
                compile_seconds=4.0,
                wall_seconds=default_wall + seed,
                final_return=default_returns[seed],
            )
        )
    return pl.DataFrame(rows)


def test_summary_ratios_are_of_medians_and_goal_b_needs_both_time_and_return():
    summary = summarise(_frame(18.0, [30.0, 20.0, 40.0, 26.0]), 1000, 4)
    # medians: PureJaxRL 101.5 steps/s and 31.5 s; agentlab 153 steps/s; default 19.5 s
    assert summary["goal_a_throughput_ratio"] == pytest.approx(153.0 / 101.5)
    assert summary["goal_b_wall_ratio"] == pytest.approx(19.5 / 31.5)
    assert summary["agentlab_default"]["mean_return"] == pytest.approx(29.0)
    assert summary["agentlab_default"]["mean_return_first_3_seeds"] == pytest.approx(30.0)
    assert summary["goal_b_met"]
    assert not summarise(_frame(22.0, [30.0, 20.0, 40.0, 26.0]), 1000, 4)["goal_b_met"]  # 23.5 / 31.5 > 2/3
    assert not summarise(_frame(18.0, [26.0, 27.0, 26.0, 27.0]), 1000, 4)["goal_b_met"]  # mean 26.5 < 27


def test_learners_run_in_the_recorded_order():
    from pathlib import Path

    from agentlab.bench.ppo import PPOBench

    names = [
        name for name, _ in PPOBench(purejaxrl=Path("x"), peer_on_agentlab=True, peer_with_our_options=True).learners()
    ]
    assert names == [
        "purejaxrl",
        "purejaxrl-agentlab-xla",
        "agentlab-purejaxrl",
        "agentlab-default",
        "purejaxrl-on-agentlab",
    ]
    assert [name for name, _ in PPOBench().learners()] == ["agentlab-purejaxrl", "agentlab-default"]
