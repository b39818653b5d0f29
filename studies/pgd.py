"""The PGD trade-off study behind `agentlab sweep pgd`: dynamics error against target-policy likelihood, exact.

Policy-guided diffusion (Jackson et al. 2024) claims that guiding a trajectory denoiser toward a target policy buys
on-policy samples at a lower dynamics error than rolling an autoregressive world model out under that policy. On
agentlab's kernels both sides are measured against the kernel itself (`rl.pgd`):

- **PGD**: `n` windows from the `train pgd` denoiser, guided toward the target at each strength c in `guidance`
  (c = 0: unguided);
- **world model**: the `rl.world_model` ensemble fitted to the same dataset (`model_updates` updates), rolled out
  under the target's deterministic policy from `n` dataset states for each horizon in `horizons`.

Each point is ``(target_log_likelihood, dynamics_error)`` with the invalid rate and the error per step; the target
is the first seed of a `train offline` run on the same dataset. Outputs: ``tradeoff.parquet`` (one row per point),
``summary.json`` (the rows, and the comparison at matched likelihood: for each world-model horizon, the PGD point
whose likelihood is nearest to it), ``plots/tradeoff.png`` (the paper's trade-off plot) and
``plots/error_by_step.png``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import executors, limits, rundir
from agentlab.errors import UsageError

COMMAND = "sweep pgd"
COUNT = limits.Bound("--windows", int, low=1, high=10**6, unit="windows (and world-model rollouts) per point")
GUIDANCE = limits.Bound("--guidance", float, low=0, high=1e6, unit="guidance strength c")
HORIZON = limits.Bound("--horizons", int, low=1, high=10_000, unit="world-model rollout steps")
STEPS = limits.Bound("--sample-steps", int, low=2, high=4096, unit="sampler steps")
UPDATES = limits.Bound("--model-updates", int, low=1, high=10**8, unit="world-model updates")
SEED = limits.Bound("--seed", int, low=0, high=2**31 - 1)


@dataclasses.dataclass(frozen=True)
class TradeoffConfig:
    """What the study depends on (with the runs it reads and the seed, enough to reproduce it)."""

    diffusion: str = ""  # a train pgd run
    target: str = ""  # a train offline run on the same dataset
    guidance: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    horizons: tuple[int, ...] = (1, 2, 4, 8, 16, 31)
    windows: int = 256
    sample_steps: int = 32
    model_updates: int = 10_000
    seed: int = 0

    def validate(self) -> TradeoffConfig:
        if not self.diffusion or not self.target:
            raise UsageError("give --diffusion RUN (train pgd) and --target RUN (train offline on the same data)")
        if not self.guidance and not self.horizons:
            raise UsageError("nothing to measure: give --guidance values, --horizons or both")
        for c in self.guidance:
            GUIDANCE.check(c)
        for h in self.horizons:
            HORIZON.check(h)
        COUNT.check(self.windows)
        STEPS.check(self.sample_steps)
        UPDATES.check(self.model_updates)
        SEED.check(self.seed)
        return self

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "guidance": list(self.guidance), "horizons": list(self.horizons)}


def load_inputs(config: TradeoffConfig):
    """``(dataset, env, params, diffuser, target)``, checked to belong together (one line otherwise)."""
    from agentlab.rl import offline_training, pgd

    diffuser, record = pgd.load_diffuser(Path(config.diffusion))
    dataset, env, params = pgd.load_dataset(Path(record["data"]))
    target = offline_training.load_target(Path(config.target), dataset.env, dataset.env_options)
    target_data = rundir.load_record(Path(config.target), offline_training.COMMAND)["config"]["data"]
    if Path(target_data).resolve() != Path(record["data"]).resolve():
        raise UsageError(
            f"--target {config.target} learned on {target_data}, --diffusion {config.diffusion} on {record['data']}: "
            "compare them on one dataset"
        )
    return dataset, env, params, diffuser, target


POINTS = "points"  # the run directory's folder of unit files (`agentlab.executors`)
POINT_COLUMNS = ("generator", "guidance", "horizon", "target_log_likelihood", "dynamics_error", "invalid_rate",
                 "transitions", "seconds")  # fmt: skip


def units(config: TradeoffConfig) -> list[tuple[str, tuple[str, int]]]:
    """The study's units (`agentlab.executors`): ``pgd-III`` (guidance strength ``config.guidance[III]``, one row)
    and ``worldmodel`` (one world model fitted, then rolled out at every horizon: one row per horizon). Names sort in
    the table's order: PGD by guidance index, then the world model."""
    listed: list[tuple[str, tuple[str, int]]] = [(f"pgd-{i:03d}", ("pgd", i)) for i in range(len(config.guidance))]
    if config.horizons:
        listed.append(("worldmodel", ("worldmodel", 0)))
    return listed


def _unit_rows(config: TradeoffConfig):
    return lambda work: 1 if work[0] == "pgd" else len(config.horizons)


_LOADED: dict[TradeoffConfig, tuple] = {}  # `load_inputs` per config, once per process (a Ray worker loads its own)


def _inputs(config: TradeoffConfig) -> tuple:
    if config not in _LOADED:
        _LOADED.clear()
        _LOADED[config] = load_inputs(config)
    return _LOADED[config]


def compute_unit(config: TradeoffConfig, work: tuple[str, int]) -> dict[str, list]:
    """The rows of one unit (columns `POINT_COLUMNS` and ``dynamics_error_by_step``), a function of `config` and
    `work` only: the draws of guidance index i come from ``fold_in(PRNGKey(seed), i)``, horizon j's from
    ``fold_in(.., 1000 + j)`` and ``fold_in(.., 2000 + j)``, the world model from `seed`, wherever the unit runs."""
    import jax

    from agentlab.rl import offline_training, pgd

    dataset, env, params, diffuser, target = _inputs(config)
    kind, i = work
    key = jax.random.PRNGKey(config.seed)
    rows = []
    if kind == "pgd":
        tick = time.perf_counter()
        c = config.guidance[i]
        windows = diffuser.sample(
            jax.random.fold_in(key, i), config.windows, config.sample_steps, target.agent.log_prob, target.state, c
        )
        m = pgd.measure_windows(env, params, diffuser.layout, windows, target.agent.log_prob, target.state)
        rows.append(_row("pgd", c, None, m, time.perf_counter() - tick))
    else:
        real = offline_training.real_transitions(dataset)
        model = offline_training.train_world_model(real, config.seed, config.model_updates)
        for j, h in enumerate(config.horizons):
            tick = time.perf_counter()
            starts = real.obs[
                jax.random.randint(jax.random.fold_in(key, 1000 + j), (config.windows,), 0, len(real.obs))
            ]
            flat = offline_training.rollout_function(target.agent, h)(
                jax.random.fold_in(key, 2000 + j), model, starts, target.state
            )
            per = jax.tree.map(
                lambda v, h=h: jax.numpy.swapaxes(v.reshape(h, config.windows, *v.shape[1:]), 0, 1), flat
            )
            m = pgd.measure_transitions(
                env, params, per.obs, per.action, per.next_obs, target.agent.log_prob, target.state
            )
            rows.append(_row("worldmodel", None, h, m, time.perf_counter() - tick))
    columns = (*POINT_COLUMNS, "dynamics_error_by_step")
    return {name: [_plain(r[name]) for r in rows] for name in columns}


def _plain(value):
    """A JSON-able Python value (a list of floats or None for the per-step errors)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [None if v is None or not np.isfinite(v) else float(v) for v in value]
    return value


def _schema():
    import polars as pl

    return {"guidance": pl.Float64, "horizon": pl.Int64, "dynamics_error_by_step": pl.List(pl.Float64)}


def check_points(config: TradeoffConfig, out: Path) -> int:
    """A resumed study's unit files must be whole and this study's (`agentlab.executors.check_units`)."""
    return executors.check_units(Path(out) / POINTS, units(config), columns=POINT_COLUMNS, rows=_unit_rows(config))


def run(
    config: TradeoffConfig,
    out: Path,
    *,
    force: bool = False,
    resume: bool = False,
    on_point=None,
    inputs=None,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Measure every point into the run directory `out` (units in ``out/points/``, on `executor`); return the
    summary. ``on_point(done, total)`` after each unit (``done`` counts points); `inputs` are `load_inputs(config)`
    where the caller has checked them already. `resume` continues a run, computing only the units not on disk."""
    config = config.validate()
    executors.check_executor(executor, ray_address)
    if inputs is None:
        inputs = load_inputs(config)
    _LOADED.clear()
    _LOADED[config] = inputs
    if resume:
        check_points(config, out)
    with (
        executors.session(executor, ray_address),  # a cluster it cannot join is refused before anything is written
        rundir.open_run(out, COMMAND, config.record(), force=force, resume=resume, resumable=True) as work,
    ):
        return _run(config, work, inputs[0], on_point, executor, ray_address)


def _run(config, out: Path, dataset, on_point, executor: str, ray_address: str | None) -> dict[str, Any]:
    import functools

    import polars as pl

    started = time.perf_counter()
    listed = units(config)
    total = len(config.guidance) + len(config.horizons)
    sizes = [1 if work[0] == "pgd" else len(config.horizons) for _, work in listed]

    def on_unit(done: int) -> None:  # units done -> points done
        if on_point is not None:
            on_point(sum(sizes[:done]), total)

    counts = executors.run_units(
        out / POINTS, listed, functools.partial(compute_unit, config), executor=executor, columns=POINT_COLUMNS,
        rows=_unit_rows(config), schema=_schema(), on_unit=on_unit, ray_address=ray_address,
    )  # fmt: skip
    points = executors.collect(out / POINTS, listed)
    rows = [{k: r[k] for k in (*POINT_COLUMNS, "dynamics_error_by_step")} for r in points.to_dicts()]
    table = pl.DataFrame([{k: v for k, v in r.items() if k != "dynamics_error_by_step"} for r in rows])
    rundir.write_parquet(out / "tradeoff.parquet", table)
    summary = {
        "env": dataset.env,
        "diffusion": config.diffusion,
        "target": config.target,
        "points": rows,
        "matched": matched_likelihood(rows),
        "units_computed": counts.computed,
        "units_resumed": counts.skipped,
        "wall_seconds": time.perf_counter() - started,
    }
    rundir.write_json(out / "summary.json", summary)
    plot_tradeoff(rows, out / "plots" / "tradeoff.png", summary)
    plot_error_by_step(rows, out / "plots" / "error_by_step.png")
    return summary


def _row(generator: str, guidance: float | None, horizon: int | None, m: dict[str, Any], seconds: float):
    return {
        "generator": generator,
        "guidance": guidance,
        "horizon": horizon,
        "target_log_likelihood": m["target_log_likelihood"],
        "dynamics_error": m["dynamics_error"],
        "invalid_rate": m["invalid_rate"],
        "transitions": m["transitions"],
        "seconds": seconds,
        "dynamics_error_by_step": m.get("dynamics_error_by_step"),
    }


def matched_likelihood(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each world-model point, the PGD point whose target likelihood is nearest, and the error ratio
    ``pgd / world model`` (below 1: PGD's samples are more faithful at that likelihood)."""
    pgd_rows = [r for r in rows if r["generator"] == "pgd" and r["dynamics_error"] is not None]
    out = []
    for wm in (r for r in rows if r["generator"] == "worldmodel" and r["dynamics_error"] is not None):
        if not pgd_rows:
            break
        best = min(pgd_rows, key=lambda r: abs(r["target_log_likelihood"] - wm["target_log_likelihood"]))
        out.append(
            {
                "horizon": wm["horizon"],
                "worldmodel_log_likelihood": wm["target_log_likelihood"],
                "worldmodel_error": wm["dynamics_error"],
                "pgd_guidance": best["guidance"],
                "pgd_log_likelihood": best["target_log_likelihood"],
                "pgd_error": best["dynamics_error"],
                "error_ratio": best["dynamics_error"] / wm["dynamics_error"] if wm["dynamics_error"] else None,
            }
        )
    return out


def plot_tradeoff(rows: list[dict[str, Any]], path: Path, summary: dict[str, Any]) -> None:
    """plots/tradeoff.png: dynamics error (log) against target log-likelihood, PGD by guidance, the world model by
    horizon, each point labelled."""
    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for generator, marker, label, key in (
        ("pgd", "o", "PGD (c)", "guidance"),
        ("worldmodel", "s", "world model (H)", "horizon"),
    ):
        points = [r for r in rows if r["generator"] == generator and r["dynamics_error"] is not None]
        if not points:
            continue
        x = [r["target_log_likelihood"] for r in points]
        y = [r["dynamics_error"] for r in points]
        ax.plot(x, y, marker=marker, label=label)
        for r, xi, yi in zip(points, x, y):
            ax.annotate(f"{r[key]:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("target-policy log-likelihood of synthetic actions")
    ax.set_ylabel("dynamics error (vs the kernel's true next state)")
    ax.set_title(f"{summary['env']}: {summary['diffusion']} / {summary['target']}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    rundir.save_figure(path, fig)


def plot_error_by_step(rows: list[dict[str, Any]], path: Path) -> None:
    """plots/error_by_step.png: the dynamics error at each step of a window or rollout."""
    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        steps = r.get("dynamics_error_by_step") or []
        if not steps:
            continue
        label = f"PGD c={r['guidance']:g}" if r["generator"] == "pgd" else f"world model H={r['horizon']}"
        ax.plot(np.arange(1, len(steps) + 1), [np.nan if v is None else v for v in steps], label=label,
                ls="-" if r["generator"] == "pgd" else "--")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("step of the window / rollout")
    ax.set_ylabel("dynamics error")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    rundir.save_figure(path, fig)
