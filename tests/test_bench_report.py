"""bench/report.py turns a run directory into the tables of bench/README.md."""

from __future__ import annotations

import polars as pl

from agentlab.bench.kernels import profile_specs
from agentlab.bench.report import kernel_tables


def test_tables_give_the_speed_up_and_the_profile_overheads(tmp_path):
    rows = [
        {
            "impl": "agentlab",
            "env": "breakout",
            "batch_size": 8,
            "stochasticity": "plain",
            "auto_reset": True,
            "steps_per_second": 300.0,
        },
        {
            "impl": "agentlab",
            "env": "breakout",
            "batch_size": 8,
            "stochasticity": "plain",
            "auto_reset": False,
            "steps_per_second": 360.0,
        },
        {
            "impl": "gymnax",
            "env": "breakout",
            "batch_size": 8,
            "stochasticity": "plain",
            "auto_reset": True,
            "steps_per_second": 120.0,
        },
    ]
    for i, spec in enumerate(profile_specs("breakout").values()):
        rows.append(
            {
                "impl": "agentlab",
                "env": "breakout",
                "batch_size": 8,
                "stochasticity": spec,
                "auto_reset": True,
                "steps_per_second": 300.0 - 30 * i,
            }
        )
    pl.DataFrame(rows).write_parquet(tmp_path / "metrics.parquet")
    text = kernel_tables(tmp_path)
    assert "| breakout | 8 | 300 | 120 | 2.50x | 360 |" in text
    assert "| breakout | 1.00 | 0.90 | 0.80 | 0.70 | 0.60 | 0.50 | 0.40 |" in text


def test_the_shipped_run_recorded_under_the_old_ids_still_makes_its_tables(tmp_path):
    """bench/results/ holds a run from before the kebab-case ids (``space_invaders``): the report reads it, and
    its figures are the run's own summary's."""
    import json
    import shutil
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "bench" / "results"
    shutil.copy(results / "kernels-cpu-2core.parquet", tmp_path / "metrics.parquet")
    summary = json.loads((results / "kernels-cpu-2core.summary.json").read_text())
    frame = pl.read_parquet(tmp_path / "metrics.parquet")
    assert "space_invaders" in frame["env"].to_list()  # the old id, as recorded
    text = kernel_tables(tmp_path)
    speedup = summary["breakout_speedup_vs_gymnax"]
    assert f"| breakout | {summary['largest_batch_size']} |" in text and f"{speedup:.2f}x" in text
    assert "space_invaders" in text or "space-invaders" in text
