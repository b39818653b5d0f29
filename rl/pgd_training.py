"""The trajectory-diffusion driver behind `agentlab train pgd`: a continuous-action dataset (`agentlab data collect`)
in, a trained denoiser out (a run directory on the run-directory contract, with resume).

Steps: the dataset's rows ``[s, arctanh(clip(a, -0.999, 0.999)), r, terminated]`` are standardised per dimension;
every window of `window` rows with stride `stride` inside one episode is a training example (`rl.diffusion`);
`updates` EDM updates of a 1-D temporal U-Net (Adam with warm-up and cosine decay, EMA of the weights) run in
chunks of `updates_per_chunk` (one jitted `lax.scan` each), a checkpoint after each chunk, so ``--resume`` continues
from the last one. At the end the EMA denoiser samples `eval_windows` windows with the stochastic Heun sampler
(`sample_steps` steps), unguided, and, where `target` names a `train offline` run, guided toward its first seed's
policy at strength `guidance`; `rl.pgd` measures them against the kernel.

Files: ``model.npz`` (EMA weights, the standardiser, the row layout: what `train offline --diffusion RUN` loads),
``checkpoints/latest.npz``, ``metrics.parquet`` (loss per chunk), ``summary.json`` (``dynamics_error``,
``dynamics_error_by_step``, ``invalid_rate``, ``target_log_likelihood`` (null without a target), ``mean_return``
(null: no agent is trained here), ``updates_per_second``, timings), ``plots/loss.png``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import limits, rundir
from agentlab import tensorboard as agentlab_tensorboard
from agentlab.errors import UsageError
from agentlab.kernels.names import canonical_id

COMMAND = "train pgd"  # `rl.pgd.DIFFUSION_COMMAND`
CHECKPOINT = "checkpoints/latest.npz"
MODEL = "model.npz"  # `rl.pgd.MODEL_FILE`
ACTION_CLIP = 0.999  # rows hold arctanh(clip(a, -0.999, 0.999)) (the paper's choice)
BOUNDS = {
    "window": limits.Bound("--window", int, low=4, high=1024, unit="rows per diffused window"),
    "stride": limits.Bound("--stride", int, low=1, high=1024, unit="rows between window starts"),
    "updates": limits.Bound("--updates", int, low=1, high=10**8, unit="denoiser updates"),
    "batch_size": limits.Bound("--batch-size", int, low=1, high=2**16, unit="windows per update"),
    "lr": limits.Bound("--lr", float, low=0, low_open=True, high=1),
    "sample_steps": limits.Bound("--sample-steps", int, low=2, high=4096, unit="sampler steps"),
    "guidance": limits.Bound("--guidance", float, low=0, high=1e6, unit="guidance strength c"),
    "eval_windows": limits.Bound("--eval-windows", int, low=1, high=10**6, unit="windows sampled for the measures"),
    "seed": limits.Bound("--seed", int, low=0, high=2**31 - 1),
    "updates_per_chunk": limits.Bound("--updates-per-chunk", int, low=1, high=10**6),
}
WIDTH = limits.Bound("--channels", int, low=1, high=4096, unit="U-Net channels")


@dataclasses.dataclass(frozen=True)
class PGDRunConfig:
    """What a `train pgd` run depends on (with the dataset and the seed, enough to reproduce it)."""

    data: str = ""  # the dataset run directory
    env: str | None = None  # None: the dataset's kernel; else it must be the dataset's
    window: int = 32
    stride: int = 8
    updates: int = 10_000
    batch_size: int = 256
    channels: tuple[int, ...] = (32, 64, 128)  # U-Net levels (the paper's are wider: an accelerator setting)
    lr: float = 2e-3
    sample_steps: int = 32
    guidance: float = 1.0  # the guidance strength c (the measures with --target; train offline's default)
    target: str | None = None  # a train offline run whose first seed guides the measured samples
    eval_windows: int = 256
    seed: int = 0
    updates_per_chunk: int = 500

    def __post_init__(self) -> None:
        if self.env is not None:
            object.__setattr__(self, "env", canonical_id(self.env))

    def validate(self) -> PGDRunConfig:
        if not self.data:
            raise UsageError("--data DIR is required: a dataset from `agentlab data collect` on a continuous kernel")
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name))
        if not self.channels:
            raise UsageError("--channels needs at least one level width, e.g. 32,64,128")
        for width in self.channels:
            WIDTH.check(width)
        from agentlab.rl.diffusion import EDMConfig

        groups = EDMConfig.groups  # the U-Net's GroupNorm groups divide every width
        for width in self.channels:
            if width % groups:
                raise UsageError(f"--channels {width}: every width must be a multiple of {groups} (GroupNorm groups)")
        levels = len(self.channels) - 1
        if self.window % (2**levels):
            raise UsageError(
                f"--window {self.window} must be a multiple of {2**levels} (the U-Net halves it {levels} times)"
            )
        return self

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels)}


def load_dataset(config: PGDRunConfig):
    """``(dataset, env, params)``: `rl.pgd.load_dataset` of ``--data`` (and ``--env``)."""
    from agentlab.rl import pgd

    return pgd.load_dataset(Path(config.data), config.env)


def dataset_rows(dataset) -> np.ndarray:
    """float32 ``(N, obs_dim + act_dim + 2)``: ``[s, arctanh(clip(a, -0.999, 0.999)), r, terminated]``."""
    from agentlab.rl import diffusion

    return diffusion.to_rows(dataset["obs"], dataset["action"], dataset["reward"], dataset["terminated"])


def training_windows(config: PGDRunConfig, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(rows (N, dim), starts (M,))``: the rows and the first row of every training window; a window longer
    than every episode -> `UsageError` (nothing to train on)."""
    from agentlab.rl import diffusion

    rows = dataset_rows(dataset)
    starts = diffusion.window_starts(dataset["episode"], config.window, config.stride)
    if len(starts) == 0:
        longest = int(np.bincount(dataset["episode"] - dataset["episode"].min()).max())
        raise UsageError(
            f"--window {config.window} is longer than every episode of {config.data} (the longest has {longest} rows)"
        )
    return rows, starts


def edm_config(config: PGDRunConfig):
    """`rl.diffusion.EDMConfig` of the run: the paper's EDM constants, the run's U-Net widths, learning rate and
    batch; the warm-up is a tenth of the updates, at most 1000 (the reference's)."""
    from agentlab.rl import diffusion

    warmup = max(1, min(1000, config.updates // 10))
    return diffusion.EDMConfig(
        channels=tuple(config.channels), lr=config.lr, batch_size=config.batch_size, warmup_steps=warmup
    ).validate()


def train(
    config: PGDRunConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train the denoiser into the run directory `out`; return the summary. `on_chunk` gets ``{"update",
    "total", "loss"}`` once the inputs are checked and after every chunk.
    `tensorboard` (or a resumed run that recorded it) also mirrors ``metrics.parquet`` into TensorBoard events
    under ``out/tensorboard/`` (`agentlab.tensorboard.MetricsMirror`); recorded in config.json, it changes no number.
    """
    config = config.validate()
    dataset, env, params = load_dataset(config)
    rows, starts = training_windows(config, dataset)
    target = None
    if config.target is not None:
        from agentlab.rl import offline_training

        target = offline_training.load_target(Path(config.target), dataset.env, dataset.env_options)
    limits.check_memory(len(starts) * config.window * rows.shape[1] * 4 * 3, "the training windows")
    started = time.perf_counter()
    with agentlab_tensorboard.open_run(
        out, COMMAND, config.record(), tensorboard=tensorboard, resume=resume, force=force, resumable=True
    ) as (work, mirror):
        return _train(config, work, resume, dataset, env, params, rows, starts, target, on_chunk, started, mirror)


def _train(config, run_dir: Path, resume, dataset, env, params, rows, starts, target, on_chunk, started, mirror):
    import jax
    import jax.numpy as jnp
    import polars as pl

    from agentlab import compiler
    from agentlab.rl import checkpoint, diffusion, pgd

    edm = edm_config(config)
    layout = pgd.Rows(int(dataset["obs"].shape[1]), int(dataset["action"].shape[1]))
    standardizer = diffusion.Standardizer.fit(rows)
    windows = jnp.asarray(diffusion.make_windows(np.asarray(standardizer.standardize(rows)), starts, config.window))
    update = diffusion.make_update(edm, max(config.updates, edm.warmup_steps + 1))
    per_chunk = min(config.updates_per_chunk, config.updates)

    def step(state, key, windows):
        k_batch, k_loss = jax.random.split(key)
        index = jax.random.randint(k_batch, (edm.batch_size,), 0, windows.shape[0])
        return update(state, k_loss, windows[index])

    # One compiled update called per step, not a `lax.scan` of updates: on XLA's CPU backend the gradient of a
    # convolution inside a loop body runs about 10x slower than the same step outside one (measured: 0.52 s
    # against 0.045 s per update of a 16-32-64 U-Net, batch 64; bench/README.md), and the dispatch of one call
    # (~0.1 ms) is nothing beside the step.
    def chunk(state, key):
        losses = []
        for k in jax.random.split(key, per_chunk):
            state, loss = compiled(state, k, windows)
            losses.append(loss)
        return state, jnp.stack(losses)

    key = jax.random.PRNGKey(config.seed)
    state = diffusion.init_state(jax.random.fold_in(key, 0), edm, config.window, layout.dim)
    rows_out: list[dict[str, Any]] = []
    offset = {"wall_seconds": 0.0, "compile_seconds": 0.0, "train_seconds": 0.0}
    if resume and (run_dir / CHECKPOINT).exists():
        state, meta = checkpoint.load(run_dir / CHECKPOINT, state)
        rows_out = pl.read_parquet(run_dir / "metrics.parquet").head(meta["metrics_rows"]).to_dicts()
        offset = {k: float(meta[k]) for k in offset}
    done = int(np.asarray(state.step))
    if on_chunk is not None:
        on_chunk({"update": done, "total": config.updates, "loss": float("nan")})
    tick = time.perf_counter()
    compiled = compiler.jit(step).lower(state, key, windows).compile()
    compile_seconds = offset["compile_seconds"] + time.perf_counter() - tick
    train_seconds = offset["train_seconds"]
    while done < config.updates:
        tick = time.perf_counter()
        state, losses = chunk(state, jax.random.fold_in(key, 1 + done // per_chunk))
        losses = np.asarray(jax.block_until_ready(losses))
        elapsed = time.perf_counter() - tick
        train_seconds += elapsed
        done += per_chunk
        rows_out.append(
            {
                "update": done,
                "loss": float(losses.mean()),
                "last_loss": float(losses[-1]),
                "updates_per_second": per_chunk / elapsed,
                "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
            }
        )
        rundir.write_parquet(run_dir / "metrics.parquet", pl.DataFrame(rows_out))
        mirror.sync()
        checkpoint.save(
            run_dir / CHECKPOINT,
            state,
            {
                "update": done,
                "metrics_rows": len(rows_out),
                "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
                "compile_seconds": compile_seconds,
                "train_seconds": train_seconds,
            },
        )
        if on_chunk is not None:
            on_chunk({"update": done, "total": config.updates, "loss": float(losses.mean())})
    pgd.save_model(run_dir / MODEL, state.ema_params, standardizer, layout, config.record())
    diffuser = pgd.Diffuser(edm, state.ema_params, standardizer, layout, config.window)
    sample_key = jax.random.fold_in(key, 2**30)
    tick = time.perf_counter()
    unguided = diffuser.sample(sample_key, config.eval_windows, config.sample_steps)
    sample_seconds = time.perf_counter() - tick
    policy = (None, None) if target is None else (target.agent.log_prob, target.state)
    measures = pgd.measure_windows(env, params, layout, unguided, *policy)
    summary: dict[str, Any] = {
        "env": dataset.env,
        "data": str(config.data),
        "windows": int(len(starts)),
        "window": config.window,
        "mean_return": None,
        **measures,
        "unguided": measures,
        "guided": None,
        "guidance": config.guidance,
        "updates": config.updates,
        "final_loss": rows_out[-1]["loss"] if rows_out else None,
        "updates_per_second": config.updates / train_seconds if train_seconds > 0 else None,
        "sample_seconds": sample_seconds,
        "sampled_transitions_per_second": config.eval_windows * (config.window - 1) / sample_seconds,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
    }
    if target is not None:
        guided = diffuser.sample(sample_key, config.eval_windows, config.sample_steps, *policy, config.guidance)
        summary["guided"] = pgd.measure_windows(env, params, layout, guided, *policy)
        summary.update({k: summary["guided"][k] for k in ("dynamics_error", "invalid_rate", "target_log_likelihood")})
        summary["target"] = str(config.target)
    rundir.write_json(run_dir / "summary.json", summary)
    plot_loss(pl.DataFrame(rows_out), run_dir / "plots" / "loss.png", summary)
    return summary


def plot_loss(frame, path: Path, summary: dict) -> None:
    """plots/loss.png: the EDM loss against updates."""
    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if frame.height:
        ax.plot(frame["update"].to_numpy(), frame["loss"].to_numpy(), marker="o", ms=3)
    ax.set_xlabel("updates")
    ax.set_ylabel("EDM loss (weighted)")
    ax.set_yscale("log")
    ax.set_title(f"trajectory diffusion on {summary['data']}", fontsize=9)
    fig.tight_layout()
    rundir.save_figure(path, fig)
