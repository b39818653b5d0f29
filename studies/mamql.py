"""The MAMQL study behind `agentlab sweep mamql`: {algorithms} x {expert transitions} x seeds on one kernel.

Per seed ``k`` (``seed + k``), one dataset of ``max(expert_steps)`` rows is collected once by the expert policy
(``data/seed-K``, `agentlab.rl.collect`); every cell ``(algo, steps, k)`` trains a `train mamql` run on that
dataset's first ``steps`` rows (``runs/ALGO-STEPS-sK``) and is one unit of the generic sweep layer
(`agentlab.executors`: local or Ray, resumable, ``cells/NAME.parquet`` as each finishes). The table has one row per
cell (the run's summary figures); the summary gives, per (algo, steps), the mean over seeds with a 95% t interval,
and the return ratio of ``mamql`` to ``iq-joint`` per expert-transition budget (the paper's comparison).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import executors, limits, rundir
from agentlab.errors import UsageError
from agentlab.kernels.names import canonical_id

FIGURES = ("mean_return", "expert_return", "policy_kl", "reward_epic", "reward_pearson", "updates_per_second")
COLUMNS = ("algo", "expert_steps", "seed", *FIGURES)
SEEDS = limits.Bound("--seeds", int, low=1, high=1000)
STEPS = limits.Bound("--expert-steps", int, low=1, high=10**8, unit="expert transitions")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What a study depends on (with the seed, enough to reproduce it); the learner settings are `train mamql`'s."""

    env: str = "gems"
    env_options: tuple[tuple[str, Any], ...] = (("layout", "tabular"), ("size", 5))
    expert: str = "qre"  # the data collect --policy of the demonstrations
    algos: tuple[str, ...] = ("mamql", "iq-joint", "bc")
    expert_steps: tuple[int, ...] = (1000, 10000, 20000)
    seeds: int = 5
    seed: int = 0
    tabular: bool = True
    mode: str = "chi2"
    updates: int | None = None
    temperature: float = 1.0
    hidden: tuple[int, ...] = (1024, 1024)
    conv_channels: tuple[int, ...] = (64, 64)
    conv_kernels: tuple[int, ...] = (5, 3)
    eval_episodes: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", canonical_id(self.env))

    def run_config(self, algo: str, steps: int, k: int, data: Path):
        from agentlab.rl.mamql_training import MAMQLRunConfig

        return MAMQLRunConfig(
            env=self.env,
            data=str(data),
            expert_steps=steps,
            algo=algo,
            tabular=self.tabular,
            mode=self.mode,
            updates=self.updates,
            seed=self.seed + k,
            temperature=self.temperature,
            hidden=self.hidden,
            conv_channels=self.conv_channels,
            conv_kernels=self.conv_kernels,
            eval_episodes=self.eval_episodes,
        )

    def collect_config(self, k: int):
        from agentlab.rl.collect import CollectConfig

        return CollectConfig(
            env=self.env,
            env_options=self.env_options,
            policy=self.expert,
            steps=max(self.expert_steps),
            seed=self.seed + k,
            temperature=self.temperature,
        )

    def validate(self) -> StudyConfig:
        SEEDS.check(self.seeds)
        if not self.algos or not self.expert_steps:
            raise UsageError("--algos and --expert-steps need at least one value each")
        for steps in self.expert_steps:
            STEPS.check(steps)
        if len(set(self.algos)) != len(self.algos) or len(set(self.expert_steps)) != len(self.expert_steps):
            raise UsageError("--algos and --expert-steps must not repeat a value")
        self.collect_config(0).validate()
        for algo in self.algos:  # every learner setting through train mamql's own checks
            self.run_config(algo, self.expert_steps[0], 0, Path("data")).validate()
        return self

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "env_options": dict(self.env_options)}


def units(config: StudyConfig, out: Path) -> list[tuple[str, dict]]:
    """``(name, work)`` of every cell: ``ALGO-STEPS-sK``."""
    cells = []
    for k in range(config.seeds):
        for algo in config.algos:
            for steps in config.expert_steps:
                work = {"config": config, "algo": algo, "steps": steps, "k": k, "out": str(out)}
                cells.append((f"{algo}-{steps}-s{k}", work))
    return cells


def data_dir(out: Path, k: int) -> Path:
    return Path(out) / "data" / f"seed-{k}"


def collect_data(config: StudyConfig, out: Path, on_seed=None) -> None:
    """Collect each seed's dataset once (a dataset already complete is kept; a partial one resumes)."""
    from agentlab.rl import collect

    for k in range(config.seeds):
        target = data_dir(out, k)
        if not (target / "data.parquet").exists():
            collect.collect(config.collect_config(k), target, resume=target.exists(), force=False)
        if on_seed is not None:
            on_seed(k + 1)


def compute_cell(work: dict) -> dict[str, list]:
    """One cell: a `train mamql` run into ``runs/NAME`` (replacing a half-written run of a killed sweep), its
    figures as one row."""
    from agentlab.rl import mamql_training

    config, algo, steps, k = work["config"], work["algo"], work["steps"], work["k"]
    out = Path(work["out"])
    run = out / "runs" / f"{algo}-{steps}-s{k}"
    summary = mamql_training.train(
        config.run_config(algo, steps, k, data_dir(out, k)), run, force=rundir.is_run_directory(run)
    )
    row = {"algo": [algo], "expert_steps": [steps], "seed": [config.seed + k]}
    for name in FIGURES:
        value = summary.get(name)
        row[name] = [float(value) if value is not None else None]
    return row


def run(
    config: StudyConfig, out: Path, *, executor: str = "local", on_unit=None, ray_address: str | None = None
) -> executors.Counts:
    """Train every cell not yet in ``out/cells`` on `executor` (`ray_address`: the Ray cluster to join)."""
    import polars as pl

    schema = {name: pl.Float64 for name in FIGURES}
    listed = units(config, out)
    return executors.run_units(
        out / "cells", listed, compute_cell, executor=executor, columns=COLUMNS,
        rows=lambda work: 1, schema=schema, on_unit=on_unit, ray_address=ray_address,
    )  # fmt: skip


def table(config: StudyConfig, out: Path):
    return executors.collect(out / "cells", units(config, out), sort=["algo", "expert_steps", "seed"])


def summarise(frame, config: StudyConfig) -> dict[str, Any]:
    """Per (algo, steps): mean over seeds of every figure with a 95% t interval; mamql / iq-joint return ratios."""
    from agentlab.rl.evaluate import t_interval

    cells = []
    for algo in config.algos:
        for steps in config.expert_steps:
            part = frame.filter((frame["algo"] == algo) & (frame["expert_steps"] == steps))
            cell: dict[str, Any] = {"algo": algo, "expert_steps": steps, "seeds": part.height}
            for name in FIGURES:
                values = part[name].drop_nulls().to_numpy()
                if len(values) == 0:
                    cell[name] = None
                    continue
                mean = float(values.mean())
                sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                cell[name] = mean
                cell[f"{name}_ci95"] = list(t_interval(len(values), mean, sd))
            cells.append(cell)
    ratios = {}
    if {"mamql", "iq-joint"} <= set(config.algos):
        for steps in config.expert_steps:
            get = {c["algo"]: c["mean_return"] for c in cells if c["expert_steps"] == steps}
            ratios[str(steps)] = get["mamql"] / get["iq-joint"] if get.get("iq-joint") else None
    return {"command": "sweep mamql", "env": config.env, "cells": cells, "mamql_over_iq_joint_return": ratios}


def plot(frame, summary: dict, path: Path) -> None:
    """Mean return (95% interval over seeds) against expert transitions, one line per algorithm."""
    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in dict.fromkeys(c["algo"] for c in summary["cells"]):
        cells = [c for c in summary["cells"] if c["algo"] == algo and c["mean_return"] is not None]
        x = np.array([c["expert_steps"] for c in cells])
        y = np.array([c["mean_return"] for c in cells])
        low = np.array([c["mean_return_ci95"][0] for c in cells])
        high = np.array([c["mean_return_ci95"][1] for c in cells])
        ax.errorbar(x, y, yerr=[y - low, high - y], marker="o", capsize=3, label=algo)
    experts = [c["expert_return"] for c in summary["cells"] if c.get("expert_return") is not None]
    if experts:
        ax.axhline(float(np.mean(experts)), color="k", ls="--", lw=1, label="experts")
    ax.set_xscale("log")
    ax.set_xlabel("expert transitions")
    ax.set_ylabel("mean return per agent")
    ax.set_title(f"MAMQL study on {summary['env']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    rundir.save_figure(path, fig)
