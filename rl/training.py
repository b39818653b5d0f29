"""The training driver: jitted PPO chunks in a thin Python loop that reports progress, writes the
run directory after every chunk, and resumes from it.

Resuming gives exactly the run an uninterrupted run gives: the checkpoint holds the whole learner
state (parameters, optimiser, environments, keys), and both runs make the same chunk calls.

With ``executor="ray"`` (`agentlab train ppo --executor ray`) each seed s is one Ray task training
``PPOConfig(seeds=1, seed=seed + s)`` into its own sub-run ``RUN/seeds/seed-K/`` (K = seed + s, a whole
train ppo run directory, checkpointed after every chunk); when every seed is done, the driver merges them into
the run directory a local run writes: ``metrics.parquet`` (rows in the local run's order), ``summary.json``
(with ``"executor": "ray"``), the learning curve and ``checkpoints/latest.npz`` (the seeds' states stacked,
so `eval`, `load_run` and ``data collect --policy RUN`` read it as a local run's). ``config.json`` records
``"executor": "ray"``; ``--resume`` keeps it, skips the seeds whose sub-run is finished and resumes each other
sub-run from its last checkpoint (also what a retried task does after its worker died). A seed's metrics equal
seed s of the vmapped local run to float32 rounding (XLA sums in another order with the seed axis batched):
episode statistics are equal, losses within 1e-4 of the metric's scale over the run (`tests/test_ray.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from agentlab import compiler, executors, rundir
from agentlab import tensorboard as agentlab_tensorboard
from agentlab.errors import UsageError
from agentlab.kernels.names import options_record
from agentlab.rl import checkpoint
from agentlab.rl.ppo import PPO, PPOConfig, seed_keys

CHECKPOINT = "checkpoints/latest.npz"
SEEDS = "seeds"  # a Ray run's per-seed sub-runs: RUN/seeds/seed-K/
METRIC_COLUMNS = (
    "episode_return",
    "episode_length",
    "episodes",
    "loss",
    "actor_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "learning_rate",
)


def config_record(config: PPOConfig) -> dict[str, Any]:
    record = dataclasses.asdict(config)
    record["hidden"] = list(config.hidden)
    record["env_options"] = dict(config.env_options)
    record["algorithm"] = "ppo"
    if config.devices == 1:  # as run directories from before --devices record it: they resume unchanged
        del record["devices"]
    return record


def config_from_record(record: dict[str, Any]) -> PPOConfig:
    """The PPOConfig a run recorded; a record that does not make a valid config -> `UsageError`."""
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    values = {k: v for k, v in record.items() if k in fields}
    try:
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        if "env_options" in values:
            if not isinstance(values["env_options"], dict):
                raise UsageError(f"env_options must be a table of kernel options, got {values['env_options']!r}")
            values["env_options"] = options_record(values["env_options"])
        if "shared_trunk" in record and "shared_layers" not in record:  # run directories of agentlab <= 0.1.0
            values["shared_layers"] = len(values.get("hidden", PPOConfig.hidden)) if record["shared_trunk"] else 0
        return PPOConfig(**values).validate()
    except UsageError as error:
        raise UsageError(f"the run's recorded config is not valid: {error}") from None
    except (TypeError, ValueError) as error:
        raise UsageError(f"the run's recorded config is corrupt: {error}") from None


def chunk_size(config: PPOConfig) -> int:
    return max(1, min(config.updates_per_chunk, config.num_updates))


def train(
    config: PPOConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
    executor: str | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Train `config.seeds` seeds side by side into the run directory `out`; return the summary.

    `executor`: ``local`` (the seeds `vmap`-ed in this process) or ``ray`` (one Ray task per seed, on the cluster
    at `ray_address`, else ``RAY_ADDRESS``, else a local instance: see the module docstring); None: ``local``, or
    what a resumed run recorded.

    `on_chunk` receives ``{"step", "total_steps", "steps_per_second", "episode_return"}`` once when the run
    is loaded and checked (before compiling), then after every chunk (for a progress bar, which therefore
    never appears before an error in the input). Ctrl-C leaves the last completed chunk on disk.

    `tensorboard` (or a resumed run that recorded it) also writes every metrics row as TensorBoard scalars
    under ``out/tensorboard/`` (`agentlab.tensorboard`); it is recorded in config.json and changes nothing else.
    """
    config = dataclasses.replace(config, updates_per_chunk=chunk_size(config)).validate()
    record = config_record(config)
    recorded = ((rundir.run_record(out) or {}).get("config") or {}) if resume else {}
    if resume and not tensorboard:
        tensorboard = bool(recorded.get("tensorboard"))
    if executor is None:
        executor = recorded.get("executor", "local")
    executors.check_executor(executor, ray_address)
    if executor == "ray":
        record["executor"] = "ray"  # local runs record nothing: their config.json stays as agentlab 0.1.0 wrote it
    if tensorboard:
        agentlab_tensorboard.require()
        record["tensorboard"] = True
    ignore = (*rundir.RESUME_IGNORES, "tensorboard")
    with (
        executors.session(executor, ray_address),  # a cluster it cannot join is refused before anything is written
        rundir.open_run(out, "train ppo", record, resume=resume, force=force, resumable=True, ignore=ignore) as work,
        contextlib.ExitStack() as stack,
    ):
        board = stack.enter_context(agentlab_tensorboard.ScalarWriter(work / "tensorboard")) if tensorboard else None
        if executor == "ray":
            return _train_ray(config, work, on_chunk, board, ray_address)
        return _train(config, work, resume, on_chunk, board=board)


def seed_dir(run_dir: Path, seed: int) -> Path:
    """The sub-run of seed `seed` (``config.seed + s``) in a Ray run."""
    return Path(run_dir) / SEEDS / f"seed-{seed}"


def seed_config(config: PPOConfig, s: int) -> PPOConfig:
    """Seed s of `config` on its own: ``seeds=1, seed=config.seed + s`` (its key is ``seed_keys(config)[s]``)."""
    return dataclasses.replace(config, seeds=1, seed=config.seed + s)


def train_seed(work: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """The body of one seed's Ray task: train the sub-run ``work = (config_record(seed_config(..)), path)``, resuming
    what is on disk (a retried task after its worker died continues from the last checkpoint); its summary."""
    record, path = work
    config, path = config_from_record(record), Path(path)
    resume = rundir.run_record(path) is not None
    if not resume and path.exists():  # killed before its config.json was written: nothing to keep
        shutil.rmtree(path)
    return train(config, path, resume=resume, executor="local")


def _seed_finished(path: Path, config: PPOConfig) -> dict[str, Any] | None:
    """The summary of a finished sub-run (its checkpoint after every update), else None."""
    try:
        meta = rundir.read_json(path / CHECKPOINT.replace(".npz", ".json"))
        summary = rundir.read_json(path / "summary.json")
    except (OSError, ValueError):
        return None
    done = isinstance(meta, dict) and meta.get("update") == config.num_updates
    return summary if done and isinstance(summary, dict) else None


def _train_ray(
    config: PPOConfig,
    run_dir: Path,
    on_chunk: Callable[[dict[str, Any]], None] | None,
    board: agentlab_tensorboard.ScalarWriter | None,
    ray_address: str | None,
) -> dict[str, Any]:
    """Every seed as a Ray task into its sub-run (finished ones skipped), then the merged run directory."""
    started = time.perf_counter()
    total = config.num_updates * config.batch_size
    summaries: dict[int, dict[str, Any]] = {}
    todo = []
    for s in range(config.seeds):
        single = seed_config(config, s)
        finished = _seed_finished(seed_dir(run_dir, single.seed), single)
        if finished is not None:
            summaries[s] = finished
        else:
            todo.append((str(s), (config_record(single), str(seed_dir(run_dir, single.seed)))))

    def progress() -> None:
        if on_chunk is not None:
            done = len(summaries)
            returns = [x["mean_return"] for x in summaries.values() if x.get("mean_return") is not None]
            rates = [x["steps_per_second"] for x in summaries.values() if x.get("steps_per_second")]
            on_chunk({"step": total * done // config.seeds, "total_steps": total,  # seeds done, in steps per seed
                      "steps_per_second": float(np.mean(rates)) if rates else 0.0,
                      "episode_return": float(np.mean(returns)) if returns else float("nan")})  # fmt: skip

    progress()
    (run_dir / SEEDS).mkdir(exist_ok=True)
    results = executors.ray_map(train_seed, todo, address=ray_address)
    with contextlib.closing(results):
        for name, summary in results:
            summaries[int(name)] = summary
            progress()
    return _merge_seeds(config, run_dir, [summaries[s] for s in range(config.seeds)], board, started)


def _merge_seeds(
    config: PPOConfig,
    run_dir: Path,
    summaries: list[dict[str, Any]],
    board: agentlab_tensorboard.ScalarWriter | None,
    started: float,
) -> dict[str, Any]:
    """The run directory of a local run from the finished sub-runs: metrics rows in the local order (chunk, seed,
    update), the seeds' checkpoints stacked on the leading axis, the summary and the learning curve."""
    import polars as pl

    paths = [seed_dir(run_dir, config.seed + s) for s in range(config.seeds)]
    frame = pl.concat([pl.read_parquet(path / "metrics.parquet") for path in paths], how="diagonal_relaxed")
    order = (pl.col("update") // config.updates_per_chunk).alias("chunk")
    frame = frame.with_columns(order).sort("chunk", "seed", "update", maintain_order=True).drop("chunk")
    rundir.write_parquet(run_dir / "metrics.parquet", frame)
    if board is not None:
        board.write(frame.to_dicts())

    template = PPO(config).init_seeds(seed_keys(config))
    one = jax.tree.map(lambda leaf: leaf[:1], template)
    states = [checkpoint.load(path / CHECKPOINT, one)[0] for path in paths]
    stacked = jax.tree.map(lambda *leaves: np.concatenate([np.asarray(leaf) for leaf in leaves]), *states)
    compile_seconds = max(x["compile_seconds"] for x in summaries)
    run_seconds = max(x["train_seconds"] for x in summaries)
    wall = time.perf_counter() - started
    meta = {
        "update": config.num_updates,
        "step": config.num_updates * config.batch_size,
        "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "metrics_rows": frame.height,
    }
    checkpoint.save(run_dir / CHECKPOINT, stacked, meta)
    summary = {**summarise(frame, config, compile_seconds, run_seconds, wall), "executor": "ray"}
    rundir.write_json(run_dir / "summary.json", summary)
    plot_learning_curve(frame, run_dir / "plots" / "learning_curve.png", config)
    return summary


def _train(
    config: PPOConfig,
    run_dir: Path,
    resume: bool,
    on_chunk: Callable[[dict[str, Any]], None] | None,
    board: agentlab_tensorboard.ScalarWriter | None = None,
) -> dict[str, Any]:
    import polars as pl

    started = time.perf_counter()

    learner = PPO(config)
    chunk = compiler.jit(jax.vmap(learner.chunk))
    state = learner.init_seeds(seed_keys(config))
    rows: list[dict[str, Any]] = []
    wall_offset = compile_offset = 0.0
    metrics_path = run_dir / "metrics.parquet"
    if resume and (run_dir / CHECKPOINT).exists():
        state, meta = checkpoint.load(run_dir / CHECKPOINT, state)
        rows = committed_rows(run_dir, config, meta, int(np.asarray(state.update)[0]))
        wall_offset, compile_offset = meta["wall_seconds"], meta["compile_seconds"]
    elif resume and (run_dir / CHECKPOINT).with_suffix(".json").exists():  # written only after the .npz
        raise UsageError(f"checkpoint {run_dir / CHECKPOINT}: no such file (it was removed?); cannot resume")

    # Finish computing the state before compiling: compiling while the state's own computation is still
    # in flight deadlocks JAX 0.10's CPU client.
    state = jax.block_until_ready(state)
    if on_chunk is not None:  # the run is valid and loaded: a progress display may appear now
        start = int(np.asarray(state.update)[0]) * config.batch_size
        on_chunk({"step": start, "total_steps": config.num_updates * config.batch_size, "steps_per_second": 0.0,
                  "episode_return": float("nan")})  # fmt: skip
    compile_start = time.perf_counter()
    compiled = chunk.lower(state).compile()
    compile_seconds = compile_offset + time.perf_counter() - compile_start

    total_updates = config.num_updates  # whole chunks, at least the steps asked for
    run_seconds = 0.0
    update = int(np.asarray(state.update)[0])
    written = 0  # rows handed to `board`
    while update < total_updates:
        tick = time.perf_counter()
        state, metrics = compiled(state)
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))  # (seeds, chunk)
        elapsed = time.perf_counter() - tick
        run_seconds += elapsed
        wall = wall_offset + time.perf_counter() - started
        for seed in range(config.seeds):
            for j in range(config.updates_per_chunk):
                u = update + j
                rows.append(
                    {
                        "seed": config.seed + seed,
                        "update": u,
                        "step": (u + 1) * config.batch_size,
                        "wall_seconds": wall,
                        "steps_per_second": config.updates_per_chunk * config.batch_size / elapsed,
                        **{name: float(metrics[name][seed, j]) for name in METRIC_COLUMNS},
                        **{  # a kernel's outcome metrics (info["episode_metrics"]), e.g. grid-curtailment's
                            name: float(value[seed, j])
                            for name, value in metrics.items()
                            if name.startswith("episode/")
                        },
                    }
                )
        update += config.updates_per_chunk
        rundir.write_parquet(metrics_path, pl.DataFrame(rows))
        if board is not None:  # the rows not written yet: a resumed run's first chunk writes its committed rows too
            board.write(rows[written:])
            written = len(rows)
        meta = {
            "update": update,
            "step": update * config.batch_size,
            "wall_seconds": wall,
            "compile_seconds": compile_seconds,
            "metrics_rows": len(rows),
        }
        checkpoint.save(run_dir / CHECKPOINT, state, meta)  # the commit point: state and row count in one rename
        if on_chunk is not None:
            recent = pl.DataFrame(rows).filter(pl.col("update") >= update - config.updates_per_chunk)
            on_chunk(
                {
                    "step": update * config.batch_size,
                    "total_steps": total_updates * config.batch_size,
                    "steps_per_second": config.updates_per_chunk * config.batch_size / elapsed,
                    "episode_return": float(np.nanmean(recent["episode_return"].to_numpy()))
                    if recent.height
                    else float("nan"),
                }
            )

    frame = pl.DataFrame(rows)
    summary = summarise(frame, config, compile_seconds, run_seconds, wall_offset + time.perf_counter() - started)
    rundir.write_json(run_dir / "summary.json", summary)
    plot_learning_curve(frame, run_dir / "plots" / "learning_curve.png", config)
    return summary


def committed_rows(run_dir: Path, config: PPOConfig, meta: dict, update: int) -> list[dict[str, Any]]:
    """The metrics rows the checkpoint of `run_dir` committed, its learner state being after `update`
    updates: every seed's rows of updates ``0 .. update - 1``, in file order.

    ``metrics.parquet`` is written before the checkpoint, so it may hold rows of a chunk whose
    checkpoint a crash never committed; they are dropped and computed again. Fewer rows than that, or
    a checkpoint whose metadata disagrees with its state, is a `UsageError`. (Checkpoints of agentlab
    <= 0.1.0 kept their metadata in a second file that a crash could leave one chunk behind the state;
    the state's own update counter is what counts.)"""
    import polars as pl

    path = run_dir / CHECKPOINT
    for key in ("update", "wall_seconds", "compile_seconds"):
        if not isinstance(meta.get(key), (int, float)) or isinstance(meta.get(key), bool):
            raise UsageError(f"checkpoint {path}: its metadata has no number {key!r} (corrupt or foreign)")
    expected = update * config.seeds
    if "metrics_rows" in meta and (meta["update"] != update or meta["metrics_rows"] != expected):
        raise UsageError(
            f"checkpoint {path}: its metadata (update {meta['update']}, {meta['metrics_rows']!r} metrics rows) "
            f"disagrees with its state ({update} updates of {config.seeds} seed(s)) (corrupt?)"
        )
    if expected == 0:
        return []
    metrics = run_dir / "metrics.parquet"
    try:
        frame = pl.read_parquet(metrics)
    except FileNotFoundError:
        raise UsageError(f"{metrics}: no such file, but checkpoint {path} is after {update} update(s)") from None
    except (OSError, pl.exceptions.PolarsError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"{metrics} is truncated or corrupt: {first}") from None
    if not {"seed", "update"} <= set(frame.columns):
        raise UsageError(f"{metrics} has no seed and update columns (corrupt or foreign)")
    rows = [r for r in frame.to_dicts() if r["update"] is not None and r["update"] < update]
    for seed in range(config.seed, config.seed + config.seeds):
        done = sorted(r["update"] for r in rows if r["seed"] == seed)
        if done != list(range(update)):
            raise UsageError(
                f"{metrics} is missing rows: seed {seed} has {len(done)} of the {update} update(s) "
                f"that checkpoint {path} committed (truncated or edited?)"
            )
    if len(rows) != expected:
        raise UsageError(f"{metrics} has {len(rows)} rows before update {update}, expected {expected} (corrupt?)")
    return rows


def _window(frame, fraction: float = 0.1) -> int:
    """The number of final updates summarised: `fraction` of them, at least one."""
    return max(1, int(round(fraction * (frame["update"].max() + 1))))


def final_returns(frame, config: PPOConfig, fraction: float = 0.1):
    """Per seed, the mean episode return over the last `fraction` of updates (at least one)."""
    import polars as pl

    recent = frame.filter(pl.col("update") > frame["update"].max() - _window(frame, fraction))
    return recent.group_by("seed").agg(pl.col("episode_return").fill_nan(None).mean()).sort("seed")


def summarise(frame, config: PPOConfig, compile_seconds: float, run_seconds: float, wall: float) -> dict[str, Any]:
    import polars as pl

    per_seed = final_returns(frame, config)
    returns = [r for r in per_seed["episode_return"].to_list() if r is not None]
    steps = int(frame["step"].max()) if frame.height else 0
    rate = float(frame["steps_per_second"].median()) if frame.height else 0.0
    recent = frame.filter(pl.col("update") > frame["update"].max() - _window(frame)) if frame.height else frame
    outcome = {  # a kernel's outcome metrics over the same final window as the returns
        name: float(np.nanmean(recent[name].to_numpy())) for name in frame.columns if name.startswith("episode/")
    }
    return {
        "algorithm": "ppo",
        "env": config.env,
        "stochasticity": config.stochasticity,
        "seeds": config.seeds,
        "steps_per_seed": steps,
        "steps_requested_per_seed": config.total_steps,  # --steps; training runs whole chunks, at least this many
        "mean_return": float(np.mean(returns)) if returns else None,
        "std_return": float(np.std(returns)) if returns else None,
        "returns_by_seed": returns,
        "steps_per_second": rate,
        "aggregate_steps_per_second": rate * config.seeds,
        "compile_seconds": compile_seconds,
        "train_seconds": run_seconds,
        "wall_seconds": wall,
        **outcome,
    }


def plot_learning_curve(frame, path: Path, config: PPOConfig) -> None:
    from agentlab.rundir import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if frame.height:
        wide = frame.pivot(on="seed", index="step", values="episode_return").sort("step")
        steps = wide["step"].to_numpy()
        values = wide.drop("step").to_numpy().astype(float)
        window = max(1, len(steps) // 50)
        kernel = np.ones(window) / window
        smooth = np.stack(
            [
                np.convolve(np.nan_to_num(col, nan=np.nanmean(col) if np.isfinite(col).any() else 0.0), kernel, "same")
                for col in values.T
            ],
            axis=1,
        )
        mean = smooth.mean(axis=1)
        ax.plot(steps, mean, label=f"mean of {values.shape[1]} seed(s)")
        if values.shape[1] > 1:
            ax.fill_between(steps, smooth.min(axis=1), smooth.max(axis=1), alpha=0.25, label="min-max over seeds")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("episode return")
    ax.set_title(f"PPO on {config.env} ({config.stochasticity})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    rundir.save_figure(path, fig)


def load_run(run_dir: Path) -> tuple[PPOConfig, PPO, Any]:
    """``(config, learner, params)`` of a finished (or interrupted) training run; params have a
    leading seed axis. The config's ``devices`` is 1: a policy trained over several devices is the same policy,
    evaluated (or played) on one device of any machine."""
    run_dir = Path(run_dir)
    config = config_from_record({**rundir.load_record(run_dir, "train ppo")["config"], "devices": 1})
    if not (run_dir / CHECKPOINT).exists():
        raise UsageError(f"{run_dir} has no checkpoint yet ({CHECKPOINT})")
    learner = PPO(config)
    template = learner.init_seeds(seed_keys(config))
    state, _ = checkpoint.load(run_dir / CHECKPOINT, template)
    return config, learner, state.params
