"""The offline-RL driver behind `agentlab train offline`: TD3+BC or IQL on a continuous-action dataset, on real data
alone or mixed with synthetic experience, `seeds` seeds side by side (`vmap`), in a run directory with resume.

Synthetic experience (``synthetic``):

- ``none``: every batch is `batch_size` real transitions.
- ``unguided``: transitions of windows the `train pgd` denoiser samples without guidance (SynthER-style).
- ``pgd``: policy-guided diffusion (Jackson et al. 2024): the first buffer unguided, every later one guided toward
  the current agent's policy at strength `guidance` (the diffusion run's ``--guidance`` unless given).
- ``worldmodel``: an ensemble MLP of ``(s, a) -> (s' - s, r)`` trained on the dataset (`rl.world_model`), rolled
  out `horizon` steps under the current agent's actions from dataset states (a random member per step; no
  uncertainty penalty: the plain autoregressive baseline the paper compares against).

With synthetic data a batch is `real_per_batch` real + ``batch_size - real_per_batch`` synthetic transitions (the
paper: 16 + 240). The run is split into `regenerations` phases; at the start of each the synthetic buffer
(`synthetic_size` transitions per seed) is rebuilt with the current agent. After each chunk of `updates_per_chunk`
updates a checkpoint holds the agents, the buffer and the world model, so ``--resume`` continues exactly; after
each phase every seed's deterministic policy plays `eval_episodes` fresh episodes of the kernel.

Summary: ``mean_return`` (mean over seeds, 95% t interval over seeds), ``returns_by_seed``, ``dataset_return``,
``dynamics_error`` / ``invalid_rate`` / ``target_log_likelihood`` of the last synthetic buffer against the kernel
and the agent it was built for (`rl.pgd`; null without synthetic data), ``updates_per_second``, timings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import limits, rundir
from agentlab import tensorboard as agentlab_tensorboard
from agentlab.errors import UsageError, choices
from agentlab.kernels.names import canonical_id
from agentlab.rl import names

COMMAND = "train offline"
CHECKPOINT = "checkpoints/latest.npz"
AGENTS_FILE = "agents.npz"  # the final agents of every seed (what `--target RUN` loads)
ALGOS = names.OFFLINE_ALGOS
SYNTHETIC = names.SYNTHETIC
BOUNDS = {
    "seeds": limits.Bound("--seeds", int, low=1, high=256),
    "seed": limits.Bound("--seed", int, low=0, high=2**31 - 1),
    "updates": limits.Bound("--updates", int, low=1, high=10**9, unit="agent updates per seed"),
    "regenerations": limits.Bound("--regenerations", int, low=1, high=10_000, unit="synthetic buffers per run"),
    "synthetic_size": limits.Bound("--synthetic-size", int, low=1, high=10**8, unit="transitions per buffer"),
    "sample_steps": limits.Bound("--sample-steps", int, low=2, high=4096, unit="sampler steps"),
    "batch_size": limits.Bound("--batch-size", int, low=2, high=2**16),
    "real_per_batch": limits.Bound("--real-per-batch", int, low=1, high=2**16, unit="real transitions per batch"),
    "horizon": limits.Bound("--horizon", int, low=1, high=10_000, unit="world-model rollout steps"),
    "model_updates": limits.Bound("--model-updates", int, low=1, high=10**8, unit="world-model updates"),
    "eval_episodes": limits.Bound("--eval-episodes", int, low=1, high=100_000),
    "updates_per_chunk": limits.Bound("--updates-per-chunk", int, low=1, high=10**7),
}
WIDTH = limits.Bound("--hidden", int, low=1, high=2**14, unit="layer width")
GUIDANCE = limits.Bound("--guidance", float, low=0, high=1e6, unit="guidance strength c")


@dataclasses.dataclass(frozen=True)
class OfflineRunConfig:
    """What a `train offline` run depends on (with the dataset, the diffusion run and the seed)."""

    data: str = ""
    env: str | None = None  # None: the dataset's kernel
    algo: str = "td3bc"
    synthetic: str = "none"
    diffusion: str | None = None  # a train pgd run (unguided, pgd)
    guidance: float | None = None  # pgd: None = the diffusion run's --guidance
    seeds: int = 3
    seed: int = 0
    updates: int = 100_000
    regenerations: int = 4
    synthetic_size: int = 50_000
    sample_steps: int = 32
    batch_size: int = 256
    real_per_batch: int = 16
    horizon: int = 5
    hidden: tuple[int, ...] = (256, 256)  # the agents' MLP widths (the published 256, 256)
    model_updates: int = 10_000
    eval_episodes: int = 10
    updates_per_chunk: int = 5_000

    def __post_init__(self) -> None:
        if self.env is not None:
            object.__setattr__(self, "env", canonical_id(self.env))

    def validate(self) -> OfflineRunConfig:
        if not self.data:
            raise UsageError("--data DIR is required: a dataset from `agentlab data collect` on a continuous kernel")
        if self.algo not in ALGOS:
            raise UsageError(f"unknown --algo {self.algo!r}: valid algorithms are {choices(ALGOS)}")
        if self.synthetic not in SYNTHETIC:
            raise UsageError(f"unknown --synthetic {self.synthetic!r}: valid values are {choices(SYNTHETIC)}")
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name))
        if self.guidance is not None:
            GUIDANCE.check(self.guidance)
        if not self.hidden:
            raise UsageError("--hidden needs at least one layer width, e.g. 256,256")
        for width in self.hidden:
            WIDTH.check(width)
        if self.synthetic in ("unguided", "pgd") and self.diffusion is None:
            raise UsageError(
                f"--synthetic {self.synthetic} samples a trained denoiser: give --diffusion RUN (train pgd)"
            )
        if self.synthetic not in ("unguided", "pgd") and self.diffusion is not None:
            raise UsageError(f"--diffusion is used by --synthetic unguided or pgd, not {self.synthetic}")
        if self.guidance is not None and self.synthetic != "pgd":
            raise UsageError("--guidance applies to --synthetic pgd")
        if self.synthetic != "none" and self.real_per_batch >= self.batch_size:
            raise UsageError(
                f"--real-per-batch {self.real_per_batch} leaves no room for synthetic transitions in a batch of "
                f"{self.batch_size}"
            )
        if self.updates < self.regenerations:
            raise UsageError(f"--updates {self.updates} is fewer than --regenerations {self.regenerations}")
        return self

    @property
    def phase_updates(self) -> int:
        """Updates between two synthetic buffers (the last phase takes the remainder)."""
        return math.ceil(self.updates / self.regenerations)

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}


# -- inputs -------------------------------------------------------------------------------------------------
def real_transitions(dataset):
    """The dataset as an `rl.offline.Batch` of device arrays: obs, action (executed, in [-1, 1]), reward,
    next_obs, done (terminated; a time-limit cut is not an end)."""
    import jax.numpy as jnp

    from agentlab.rl.offline import Batch

    return Batch(
        obs=jnp.asarray(dataset["obs"], jnp.float32),
        action=jnp.asarray(dataset["action"], jnp.float32),
        reward=jnp.asarray(dataset["reward"], jnp.float32),
        next_obs=jnp.asarray(dataset["next_obs"], jnp.float32),
        done=jnp.asarray(dataset["terminated"], jnp.float32),
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """One agent of a `train offline` run as a guidance target: ``log_prob(obs, action)``."""

    agent: Any
    state: Any

    def log_prob(self, obs, action):
        return self.agent.log_prob(self.state, obs, action)


def load_target(run: Path, env: str, env_options: dict[str, Any]) -> Target:
    """The first seed of a finished `train offline` run, checked to have learned on kernel `env`."""
    import jax

    from agentlab.rl import checkpoint

    try:
        record = rundir.load_record(run, COMMAND)["config"]
    except UsageError as error:
        raise UsageError(f"--target {run}: {error}") from None
    summary_file = run / "summary.json"
    if not summary_file.is_file() or not (run / AGENTS_FILE).is_file():
        raise UsageError(f"--target {run}: the run has not finished (no {AGENTS_FILE}); --resume it first")
    summary = rundir.read_json_file(summary_file, "summary")
    if summary.get("env") != env or summary.get("env_options", {}) != env_options:
        raise UsageError(f"--target {run}: its agents learned {summary.get('env')}, not {env}")
    config = OfflineRunConfig(**{**record, "hidden": tuple(record["hidden"])}).validate()
    dataset, kernel, params = load_dataset(config)
    agent, state = init_agents(config, dataset)
    state, _ = checkpoint.load(run / AGENTS_FILE, state)
    return Target(agent, jax.tree.map(lambda x: x[0], state))


def load_dataset(config: OfflineRunConfig):
    """``(dataset, env, params)`` of a single-agent continuous-action kernel (`rl.pgd.load_dataset`)."""
    from agentlab.rl import pgd

    return pgd.load_dataset(Path(config.data), config.env)


def agent_config(config: OfflineRunConfig):
    """The algorithm's config (`rl.offline`): its published defaults, with the run's network widths and batch
    size (IQL: its actor's cosine decay over the run's updates)."""
    from agentlab.rl import offline

    extra = {"total_updates": config.updates} if config.algo == "iql" else {}
    return offline.AGENTS[config.algo].config(hidden=tuple(config.hidden), batch_size=config.batch_size, **extra)


def init_agents(config: OfflineRunConfig, dataset):
    """``(agent, state)``: the algorithm's `rl.offline.Agent` and its state for `seeds` seeds (a leading seed
    axis; seed ``seed + s`` from ``PRNGKey(seed + s)``), observation statistics from the dataset."""
    import jax

    from agentlab.rl import offline

    agent = offline.AGENTS[config.algo]
    cfg = agent_config(config).validate()
    obs = np.asarray(dataset["obs"], np.float32)
    mean, std = obs.mean(axis=0), obs.std(axis=0) + 1e-3
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in range(config.seed, config.seed + config.seeds)])
    act_dim = int(dataset["action"].shape[1])
    state = jax.vmap(lambda k: agent.init(k, cfg, obs.shape[1], act_dim, mean, std))(keys)
    return agent, state


# -- the driver ---------------------------------------------------------------------------------------------
def train(
    config: OfflineRunConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train into the run directory `out`; return the summary. `on_chunk` gets ``{"update", "total", "return"}``
    once the inputs are checked and after every chunk.
    `tensorboard` (or a resumed run that recorded it) also mirrors ``metrics.parquet`` into TensorBoard events
    under ``out/tensorboard/`` (`agentlab.tensorboard.MetricsMirror`); recorded in config.json, it changes no number.
    """
    config = config.validate()
    dataset, env, params = load_dataset(config)
    diffuser, guidance = None, 0.0
    if config.diffusion is not None:
        from agentlab.rl import pgd

        diffuser, record = pgd.load_diffuser(Path(config.diffusion), dataset.env)
        if (diffuser.layout.obs_dim, diffuser.layout.act_dim) != (dataset["obs"].shape[1], dataset["action"].shape[1]):
            raise UsageError(f"--diffusion {config.diffusion}: its rows do not match {config.data}'s")
        guidance = config.guidance if config.guidance is not None else float(record.get("guidance", 1.0))
    if config.synthetic != "none":
        row = 2 * dataset["obs"].shape[1] + dataset["action"].shape[1] + 2
        limits.check_memory(
            2 * config.seeds * config.synthetic_size * row * 4,
            f"the synthetic buffers ({config.seeds} seeds x {config.synthetic_size:,} transitions)",
            "lower --synthetic-size or --seeds",
        )
    started = time.perf_counter()
    with agentlab_tensorboard.open_run(
        out, COMMAND, config.record(), tensorboard=tensorboard, resume=resume, force=force, resumable=True
    ) as (work, mirror):
        return _train(config, work, resume, dataset, env, params, diffuser, guidance, on_chunk, started, mirror)


def _train(config, run_dir: Path, resume, dataset, env, params, diffuser, guidance, on_chunk, started, mirror):
    import jax
    import jax.numpy as jnp
    import polars as pl

    from agentlab import compiler
    from agentlab.rl import checkpoint, offline

    agent, agents = init_agents(config, dataset)
    real = real_transitions(dataset)
    size = config.synthetic_size if config.synthetic != "none" else 1
    buffer = jax.tree.map(lambda v: jnp.zeros((config.seeds, size, *v.shape[1:]), jnp.float32), real)
    model = None
    if config.synthetic == "worldmodel":
        model = train_world_model(real, config.seed, config.model_updates)
    carry = {"agents": agents, "buffer": buffer}
    if model is not None:
        carry["model"] = model
    rows: list[dict[str, Any]] = []
    offset = {"wall_seconds": 0.0, "compile_seconds": 0.0, "train_seconds": 0.0, "generate_seconds": 0.0}
    done, built = 0, -1  # updates finished; the phase whose buffer `carry` holds
    last_measures: dict[str, Any] = {}
    if resume and (run_dir / CHECKPOINT).exists():
        carry, meta = checkpoint.load(run_dir / CHECKPOINT, carry)
        rows = pl.read_parquet(run_dir / "metrics.parquet").head(meta["metrics_rows"]).to_dicts()
        offset = {k: float(meta[k]) for k in offset}
        done, built = int(meta["update"]), int(meta["phase"])
        last_measures = meta.get("measures", {})
    if on_chunk is not None:
        on_chunk({"update": done, "total": config.updates, "return": float("nan")})
    synthetic = config.synthetic != "none"
    n_real = config.real_per_batch if synthetic else config.batch_size
    n_fake = config.batch_size - n_real

    def updates(carry, key, count):
        def body(state, k):
            k_real, k_fake, k_update = jax.random.split(k, 3)
            batch = offline.sample_batch(k_real, real, n_real)
            return agent.update(state, batch, k_update)

        def body_mixed(state_buffer, k):
            state, buf = state_buffer
            k_real, k_fake, k_update = jax.random.split(k, 3)
            batch = offline.mixed_batch(k_real, real, buf, n_real, n_fake)
            state, metrics = agent.update(state, batch, k_update)
            return (state, buf), metrics

        def one_seed(state, buf, k):
            keys = jax.random.split(k, count)
            if synthetic:
                (state, _), metrics = jax.lax.scan(body_mixed, (state, buf), keys)
            else:
                state, metrics = jax.lax.scan(body, state, keys)
            return state, jax.tree.map(lambda m: m[-1], metrics)

        keys = jax.random.split(key, config.seeds)
        agents, metrics = jax.vmap(one_seed)(carry["agents"], carry["buffer"], keys)
        return {**carry, "agents": agents}, metrics

    base = jax.random.PRNGKey(config.seed)
    evaluate = compiler.jit(jax.vmap(lambda k, s: evaluate_agent(k, agent, s, env, params, config.eval_episodes)))
    compiled: dict[int, Any] = {}
    compile_seconds, train_seconds = offset["compile_seconds"], offset["train_seconds"]
    generate_seconds = offset["generate_seconds"]
    phase_len = config.phase_updates
    while done < config.updates:
        phase = done // phase_len
        if synthetic and built != phase:
            tick = time.perf_counter()
            carry, last_measures = regenerate(config, carry, phase, agent, diffuser, guidance, model, real, env, params)
            generate_seconds += time.perf_counter() - tick
            built = phase
        count = min(config.updates_per_chunk, (phase + 1) * phase_len - done, config.updates - done)
        key = jax.random.fold_in(jax.random.fold_in(base, 1), done)
        if count not in compiled:
            tick = time.perf_counter()
            compiled[count] = compiler.jit(lambda c, k, n=count: updates(c, k, n)).lower(carry, key).compile()
            compile_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        carry, metrics = compiled[count](carry, key)
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))
        elapsed = time.perf_counter() - tick
        train_seconds += elapsed
        done += count
        returns = None
        if done % phase_len == 0 or done >= config.updates:
            returns = np.asarray(evaluate(jax.random.split(jax.random.fold_in(base, 2), config.seeds), carry["agents"]))
        for s in range(config.seeds):
            row = {"seed": config.seed + s, "update": done, "phase": phase, "updates_per_second": count / elapsed}
            row.update({name: float(value[s]) for name, value in metrics.items() if np.ndim(value[s]) == 0})
            row["mean_return"] = float(returns[s]) if returns is not None else None
            rows.append(row)
        rundir.write_parquet(run_dir / "metrics.parquet", pl.DataFrame(rows))
        mirror.sync()
        meta = {
            "update": done,
            "phase": built,
            "metrics_rows": len(rows),
            "measures": last_measures,
            "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "generate_seconds": generate_seconds,
        }
        checkpoint.save(run_dir / CHECKPOINT, carry, meta)
        if on_chunk is not None:
            on_chunk(
                {
                    "update": done,
                    "total": config.updates,
                    "return": float(np.mean(returns)) if returns is not None else float("nan"),
                }
            )
    frame = pl.DataFrame(rows)
    final = frame.filter(pl.col("update") == config.updates)["mean_return"].to_numpy()
    from agentlab.rl.data import dataset_return
    from agentlab.rl.evaluate import return_summary

    summary = {
        "env": dataset.env,
        "env_options": dataset.env_options,
        "data": str(config.data),
        "algo": config.algo,
        "synthetic": config.synthetic,
        "guidance": guidance if config.synthetic == "pgd" else None,
        **{k: v for k, v in return_summary(final[:, None]).items() if k != "agent_returns"},
        "dataset_return": dataset_return(dataset, getattr(params, "max_steps", None)),
        "dynamics_error": last_measures.get("dynamics_error"),
        "invalid_rate": last_measures.get("invalid_rate"),
        "target_log_likelihood": last_measures.get("target_log_likelihood"),
        "synthetic_measures": last_measures or None,
        "updates": config.updates,
        "updates_per_second": config.updates * config.seeds / train_seconds if train_seconds > 0 else None,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "generate_seconds": generate_seconds,
        "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
    }
    checkpoint.save(run_dir / AGENTS_FILE, carry["agents"], {"update": config.updates, "seeds": config.seeds})
    rundir.write_json(run_dir / "summary.json", summary)
    plot_returns(frame, run_dir / "plots" / "return_curve.png", summary)
    return summary


def train_world_model(real, seed: int, updates: int):
    """The world-model ensemble (`rl.world_model`, its defaults) fitted to the real transitions: `updates` updates
    from ``PRNGKey(seed)``-derived keys (deterministic, so a resumed run refits the same model)."""
    import jax

    from agentlab.rl import world_model as wm

    key = jax.random.fold_in(jax.random.PRNGKey(seed), 7_919)
    state = wm.init(key, wm.WorldModelConfig(), real)
    fit = jax.jit(lambda s, k: wm.fit(k, s, real, updates)[0])
    return fit(state, jax.random.fold_in(key, 1))


def regenerate(config, carry, phase: int, agent, diffuser, guidance: float, model, real, env, params):
    """The synthetic buffer of `phase` for every seed (built with that seed's current agent), and the measures of
    the first seed's buffer against the kernel and that agent (`rl.pgd`)."""
    import jax
    import jax.numpy as jnp

    buffers, measures = [], {}
    for s in range(config.seeds):
        state = jax.tree.map(lambda x, s=s: x[s], carry["agents"])
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed + s), 3), phase)
        if config.synthetic == "worldmodel":
            buffer, about = world_model_buffer(key, config, carry["model"], agent, state, real, env, params, s == 0)
        else:
            guide = guidance if (config.synthetic == "pgd" and phase > 0) else 0.0  # the first buffer unguided
            buffer, about = diffusion_buffer(key, config, diffuser, agent, state, guide, env, params, s == 0)
        buffers.append(buffer)
        measures = measures or about
    return {**carry, "buffer": jax.tree.map(lambda *v: jnp.stack(v), *buffers)}, {**measures, "phase": phase}


def world_model_buffer(key, config, model, agent, state, real, env, params, measure: bool):
    """`synthetic_size` transitions of `horizon`-step world-model rollouts under the agent's deterministic policy
    from uniformly drawn dataset states; the measures (per rollout step) where `measure`."""
    import jax
    import jax.numpy as jnp

    from agentlab.rl import pgd

    count = -(-config.synthetic_size // config.horizon)
    starts = real.obs[jax.random.randint(key, (count,), 0, real.obs.shape[0])]

    flat = rollout_function(agent, config.horizon)(jax.random.fold_in(key, 1), model, starts, state)
    about = {}
    if measure:  # rows are time-major: (horizon * count) -> per rollout (count, horizon)
        per = jax.tree.map(lambda v: jnp.swapaxes(v.reshape(config.horizon, count, *v.shape[1:]), 0, 1), flat)
        about = {**pgd.measure_transitions(env, params, per.obs, per.action, per.next_obs, agent.log_prob, state)}
        about["horizon"] = config.horizon
    return jax.tree.map(lambda v: v[: config.synthetic_size], flat), about


@functools.cache
def rollout_function(agent, horizon: int):
    """One compiled world-model rollout per algorithm and horizon: ``(key, model, start_obs, agent_state)``."""
    import jax

    from agentlab.rl import world_model as wm

    def run(key, model, start, agent_state):
        return wm.rollout(key, model, lambda o: agent.act(agent_state, o), start, horizon)

    return jax.jit(run)


def diffusion_buffer(key, config, diffuser, agent, state, guidance: float, env, params, measure: bool):
    """`synthetic_size` transitions of diffused windows, guided toward the agent's policy at `guidance` (0:
    unguided); the measures (per window step) where `measure`."""
    import jax

    from agentlab.rl import pgd
    from agentlab.rl.offline import Batch

    count = -(-config.synthetic_size // (diffuser.window - 1))
    windows = diffuser.sample(key, count, config.sample_steps, agent.log_prob, state, guidance)
    obs, action, reward, next_obs, done = pgd.window_transitions(diffuser.layout, windows)
    flat = Batch(
        obs=obs.reshape(-1, obs.shape[-1]),
        action=action.reshape(-1, action.shape[-1]),
        reward=reward.reshape(-1),
        next_obs=next_obs.reshape(-1, next_obs.shape[-1]),
        done=done.reshape(-1),
    )
    about = {}
    if measure:
        measured = pgd.measure_windows(env, params, diffuser.layout, windows, agent.log_prob, state)
        about = {**measured, "guidance": guidance}
    return jax.tree.map(lambda v: v[: config.synthetic_size], flat), about


def evaluate_agent(key, agent, state, env, params, episodes: int):
    """Mean return of `episodes` fresh episodes of the deterministic policy (the kernel's time limit)."""
    import jax
    import jax.numpy as jnp

    limit = int(params.max_steps)

    def episode(k):
        obs, s = env.reset(k, params)

        def body(carry, k_step):
            obs, s, total, alive = carry
            action = agent.act(state, obs)
            obs, s, reward, terminated, truncated, _ = env.step(k_step, s, action, params)
            total = total + jnp.where(alive, reward, 0.0)
            return (obs, s, total, alive & ~(terminated | truncated)), None

        init = (obs, s, jnp.float32(0.0), jnp.bool_(True))
        (_, _, total, _), _ = jax.lax.scan(body, init, jax.random.split(k, limit))
        return total

    return jnp.mean(jax.vmap(episode)(jax.random.split(key, episodes)))


def plot_returns(frame, path: Path, summary: dict) -> None:
    """plots/return_curve.png: each seed's evaluation return against updates, the dataset's return dashed."""
    import polars as pl

    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    evaluated = frame.filter(pl.col("mean_return").is_not_null())
    for seed in evaluated["seed"].unique().sort().to_list():
        part = evaluated.filter(pl.col("seed") == seed)
        ax.plot(part["update"].to_numpy(), part["mean_return"].to_numpy(), marker="o", ms=3, label=f"seed {seed}")
    if summary.get("dataset_return") is not None:
        ax.axhline(summary["dataset_return"], color="k", ls="--", lw=1, label="dataset")
    ax.set_xlabel("updates")
    ax.set_ylabel("return (deterministic policy)")
    ax.set_title(f"{summary['algo']} + {summary['synthetic']} on {summary['data']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    rundir.save_figure(path, fig)
