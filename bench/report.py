"""Markdown tables from an `agentlab bench kernels` run directory (what bench/README.md shows).

agentlab bench report runs/bench-cpu
"""

from __future__ import annotations

from pathlib import Path


def _rate(frame, impl: str, auto_reset: bool) -> float | None:
    import polars as pl

    hit = frame.filter((pl.col("impl") == impl) & (pl.col("auto_reset") == auto_reset))
    return float(hit["steps_per_second"][0]) if hit.height else None


def kernel_tables(run_dir: Path) -> str:
    """A throughput table (agentlab beside gymnax per batch size) and a profile-overhead table."""
    import polars as pl

    from agentlab.bench.kernels import profile_specs

    frame = pl.read_parquet(Path(run_dir) / "metrics.parquet")
    plain = frame.filter(pl.col("stochasticity") == "plain")
    lines = [
        "| game | batch | agentlab (steps/s) | gymnax (steps/s) | speed-up | agentlab, no auto-reset |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (env, batch), group in plain.group_by(["env", "batch_size"], maintain_order=True):
        ours, peer, bare = _rate(group, "agentlab", True), _rate(group, "gymnax", True), _rate(group, "agentlab", False)
        ratio = f"{ours / peer:.2f}x" if ours and peer else "-"
        fmt = lambda v: f"{v:,.0f}" if v else "-"  # noqa: E731
        lines.append(f"| {env} | {batch} | {fmt(ours)} | {fmt(peer)} | {ratio} | {fmt(bare)} |")
    profiles = frame.filter((pl.col("stochasticity") != "plain") & (pl.col("impl") == "agentlab"))
    if profiles.height:
        largest = int(profiles["batch_size"].max())
        lines += ["", f"Throughput with one profile, relative to the plain game (batch {largest}, auto-reset on):", ""]
        kinds = list(profile_specs("breakout"))
        lines += ["| game | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
        for env in sorted(set(profiles["env"])):
            here = frame.filter((pl.col("env") == env) & (pl.col("batch_size") == largest) & pl.col("auto_reset"))
            base = _rate(here.filter(pl.col("stochasticity") == "plain"), "agentlab", True)
            cells = []
            for spec in profile_specs(env).values():
                value = _rate(here.filter(pl.col("stochasticity") == spec), "agentlab", True)
                cells.append(f"{value / base:.2f}" if value and base else "-")
            lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
