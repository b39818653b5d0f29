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
