"""bench/ppo.py's arithmetic: the final-return window, the equal-wall budget, the summary's intervals and
ratios, the learners' order and the evaluation keys (the learners themselves are measured by the benchmark,
not here)."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import polars as pl
import pytest

from agentlab.bench.ppo import PPOBench, equal_wall_steps, evaluation_key, final_return, machine, summarise


def test_final_return_is_the_nan_aware_mean_of_the_last_five_percent():
    returns = np.arange(100, dtype=float)
    returns[97] = np.nan  # an update in which no episode finished
    assert final_return(returns) == pytest.approx(np.mean([95, 96, 98, 99]))
    assert final_return(np.array([3.0, 5.0])) == 5.0  # at least one update


def test_equal_wall_steps_fill_purejaxrls_wall_time_less_the_compile_in_whole_updates():
    purejaxrl = {"wall_seconds": 40.0}
    default = {"compile_seconds": 6.0, "steps_per_second": 80_000.0}
    # (40 - 6) s x 80k steps/s = 2.72M steps = 332.03 updates of 8192 -> 332 updates
    assert equal_wall_steps(purejaxrl, default, 8192) == 332 * 8192
    assert equal_wall_steps({"wall_seconds": 1.0}, default, 8192) == 8192  # at least one update


def _frame() -> pl.DataFrame:
    rows = []
    for seed in range(100, 104):
        common = dict(seed=seed, compile_seconds=10.0, final_return=20.0)
        rows.append(dict(learner="purejaxrl", steps=1000, steps_per_second=100.0 + seed, wall_seconds=30.0 + seed,
                         greedy_return=10.0 + seed, stochastic_return=5.0, gymnax_greedy_return=1.0,
                         **common))  # fmt: skip
        rows.append(dict(learner="agentlab-purejaxrl", steps=1000, steps_per_second=150.0 + 2 * seed,
                         wall_seconds=20.0, greedy_return=30.0, stochastic_return=6.0, **common))  # fmt: skip
        rows.append(dict(learner="agentlab-default", steps=1000, steps_per_second=200.0, wall_seconds=15.0 + seed,
                         greedy_return=[2.0, 4.0, 6.0, 8.0][seed - 100], stochastic_return=7.0, **common))  # fmt: skip
    return pl.DataFrame(rows)


def test_summary_has_medians_means_with_t_intervals_over_seeds_and_ratios_of_medians():
    summary = summarise(_frame(), 1000, 4)
    default = summary["agentlab_default"]
    assert default["seeds"] == [100, 101, 102, 103]
    # greedy returns 2, 4, 6, 8: mean 5, sd 2.582, t_{3, 0.975} = 3.1824 -> half-width 4.108
    assert default["greedy_return"]["mean"] == pytest.approx(5.0)
    assert default["greedy_return"]["ci95_high"] - 5.0 == pytest.approx(3.182446 * np.std([2, 4, 6, 8], ddof=1) / 2)
    assert default["greedy_return"]["ci95_low"] == pytest.approx(10.0 - default["greedy_return"]["ci95_high"])
    assert default["stochastic_return"]["std"] == 0.0
    assert "gymnax_greedy_return" not in default  # only PureJaxRL plays gymnax's episodes
    assert summary["purejaxrl"]["gymnax_greedy_return"]["mean"] == 1.0
    # medians: PureJaxRL 201.5 steps/s and 131.5 s; agentlab with its settings 353 steps/s; default 116.5 s
    assert summary["throughput_ratio_same_settings"] == pytest.approx(353.0 / 201.5)
    assert summary["wall_ratio_agentlab_default"] == pytest.approx(116.5 / 131.5)


def test_learners_run_in_the_recorded_order():
    bench = PPOBench(purejaxrl=Path("x"), peer_on_agentlab=True, peer_with_our_options=True)
    assert [name for name, _ in bench.learners()] == [
        "purejaxrl",
        "purejaxrl-agentlab-xla",
        "agentlab-purejaxrl",
        "agentlab-default",
        "agentlab-default-equal-wall",
        "purejaxrl-on-agentlab",
    ]
    assert [name for name, _ in PPOBench().learners()] == ["agentlab-purejaxrl", "agentlab-default"]


def test_the_equal_wall_budget_comes_from_the_first_seed_only():
    bench = PPOBench(purejaxrl=Path("x"), seed_start=100)
    rows = [
        {"learner": "purejaxrl", "seed": 100, "wall_seconds": 40.0},
        {"learner": "agentlab-default", "seed": 100, "compile_seconds": 6.0, "steps_per_second": 80_000.0},
        {"learner": "purejaxrl", "seed": 101, "wall_seconds": 80.0},
        {"learner": "agentlab-default", "seed": 101, "compile_seconds": 1.0, "steps_per_second": 10.0},
    ]
    assert bench.equal_wall_steps(rows) == 332 * 8192


def test_evaluation_keys_are_per_seed_and_not_the_training_key():
    assert not np.array_equal(evaluation_key(100), jax.random.PRNGKey(100))
    assert not np.array_equal(evaluation_key(100), evaluation_key(101))
    assert np.array_equal(evaluation_key(7), evaluation_key(7))


def test_machine_records_the_commit_cpu_and_versions():
    record = machine()
    assert set(record) == {"commit", "work_tree_modified", "cpu", "cores", "versions"}
    assert record["cores"] >= 1 and "jax" in record["versions"] and "gymnax" in record["versions"]
