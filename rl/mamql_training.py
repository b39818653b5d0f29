"""The MAMQL run driver behind `agentlab train mamql`: a dataset (`agentlab data collect`) in, a run directory out.

Two paths share the config, the run directory and the summary's names:

- **neural** (default): `agentlab.rl.mamql.MAMQL` (JAX; ``mamql``, ``iq-joint`` or ``bc``), `seeds` seeds side by
  side (`vmap`), chunks of `updates_per_chunk` updates; after each chunk a checkpoint (state and metrics rows in
  one atomic rename, as `train ppo`), and every `eval_every` chunks each seed's per-agent return on fresh episodes
  of the kernel (`eval_episodes`, Boltzmann samples as the authors evaluate). ``--resume`` continues from the last
  checkpoint.
- **tabular** (``--tabular``): `agentlab.rl.mamql_tabular_training` on the gems export (numba), exact figures
  against the known experts.

Summary (both): ``mean_return`` (mean over agents of the true per-agent episode return, averaged over seeds, with
a 95% t interval over seeds), ``agent_returns``, ``expert_return`` (the dataset's own mean return, or the experts'
exact one), ``policy_kl``, ``reward_epic`` and ``reward_pearson`` where the experts are known (a tabular gems
dataset from ``--policy qre``), ``updates_per_second``.
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
from agentlab.errors import UsageError, choices
from agentlab.kernels.names import canonical_id
from agentlab.rl import names

COMMAND = "train mamql"
CHECKPOINT = "checkpoints/latest.npz"
ALGOS = names.MAMQL_ALGOS
MODES = names.MAMQL_MODES  # phi: the paper's chi^2, or phi(x) = x ("linear" in rl.mamql)
BOUNDS = {
    "expert_steps": limits.Bound("--expert-steps", int, low=1, high=limits.MAX_INDEX, unit="dataset rows"),
    "updates": limits.Bound("--updates", int, low=1, high=10**9, unit="gradient updates per seed"),
    "seeds": limits.Bound("--seeds", int, low=1, high=1024),
    "seed": limits.Bound("--seed", int, low=0, high=2**31 - 1),
    "eval_episodes": limits.Bound("--eval-episodes", int, low=1, high=100_000, unit="episodes per evaluation"),
    "eval_every": limits.Bound("--eval-every", int, low=1, high=10**6, unit="chunks between evaluations"),
    "updates_per_chunk": limits.Bound("--updates-per-chunk", int, low=1, high=10**6),
    "batch_size": limits.Bound("--batch-size", int, low=1, high=2**20),
    "temperature": limits.Bound("--temperature", float, low=0, low_open=True, high=1e6),
    "lr": limits.Bound("--lr", float, low=0, low_open=True, high=1),
}
GAMMA = limits.Bound("--gamma", float, low=0, high=1, high_open=True)
WIDTH = limits.Bound("--hidden", int, low=1, high=2**16, unit="layer width")


@dataclasses.dataclass(frozen=True)
class MAMQLRunConfig:
    """What a `train mamql` run depends on (with the dataset and the seed, enough to reproduce it)."""

    env: str = "gems"
    data: str | None = None  # the dataset directory; tabular without data: the experts' exact occupancy
    expert_steps: int | None = None  # the dataset's first rows; None: all
    algo: str = "mamql"
    tabular: bool = False
    mode: str = "chi2"
    updates: int | None = None  # None: tabular 5000 solver steps, neural 2000 updates
    seeds: int = 1
    seed: int = 0
    gamma: float | None = None  # None: tabular the dataset's QRE gamma (else 0.9), neural 0.99
    temperature: float = 1.0
    online: bool = True  # neural: the policy term over rollouts of the current policies (else expert states)
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (1024, 1024)  # neural: the authors' Gems head
    conv_channels: tuple[int, ...] = (64, 64)  # neural, image observations: the authors' Gems torso
    conv_kernels: tuple[int, ...] = (5, 3)  # their kernel sizes (valid convolutions, stride 1)
    updates_per_chunk: int = 100
    eval_every: int = 5  # chunks
    eval_episodes: int = 64
    env_options: tuple[tuple[str, Any], ...] = ()  # only without --data (tabular exact occupancy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", canonical_id(self.env))

    @property
    def total_updates(self) -> int:
        return self.updates if self.updates is not None else (5000 if self.tabular else 2000)

    def gamma_or(self, default: float) -> float:
        return self.gamma if self.gamma is not None else default

    def validate(self) -> MAMQLRunConfig:
        if self.algo not in ALGOS:
            raise UsageError(f"unknown --algo {self.algo!r}: valid algorithms are {choices(ALGOS)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown --mode {self.mode!r}: valid modes are {choices(MODES)}")
        for name, bound in BOUNDS.items():
            value = getattr(self, name)
            if value is not None:
                bound.check(value)
        if self.gamma is not None:
            GAMMA.check(self.gamma)
        for width in (*self.hidden, *self.conv_channels):
            WIDTH.check(width)
        if len(self.conv_kernels) != len(self.conv_channels):
            raise UsageError("--conv-kernels needs one kernel size per --conv-channels layer")
        if not self.hidden:
            raise UsageError("--hidden needs at least one layer width")
        if self.data is None and not self.tabular:
            raise UsageError(
                "--data DIR is required (a dataset from `agentlab data collect`); only --tabular runs "
                "without one, on the experts' exact occupancy"
            )
        if self.data is None and self.expert_steps is not None:
            raise UsageError("--expert-steps takes the first rows of --data; give --data DIR")
        if self.data is not None and self.env_options:
            raise UsageError("--env-option: with --data the kernel and its options are the dataset's")
        if self.tabular and self.seeds != 1:
            raise UsageError("--tabular is deterministic (no sampling): use --seeds 1")
        return self

    def record(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "env_options": dict(self.env_options),
            "hidden": list(self.hidden),
            "conv_channels": list(self.conv_channels),
            "conv_kernels": list(self.conv_kernels),
            "total_updates": self.total_updates,
        }


def load_inputs(config: MAMQLRunConfig):
    """``(dataset or None, env, env_params)``: the checked dataset and its kernel (auto-reset off)."""
    from agentlab.kernels import make
    from agentlab.rl import data as datasets

    if config.data is not None:
        dataset = datasets.load(Path(config.data), config.env, config.expert_steps)
        env, params = make(dataset.env, auto_reset=False, **dataset.env_options)
    else:
        dataset = None
        env, params = make(config.env, auto_reset=False, **dict(config.env_options))
    if not env.multi_agent:
        raise UsageError(f"MAMQL learns from several agents' demonstrations; {config.env} has one agent")
    return dataset, env, params


def train(
    config: MAMQLRunConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train into the run directory `out`; return the summary. `on_chunk` gets ``{"update", "total", "return"}``
    once when the inputs are checked and after every chunk (tabular: once at the end).
    `tensorboard` (or a resumed run that recorded it) also mirrors ``metrics.parquet`` into TensorBoard events
    under ``out/tensorboard/`` (`agentlab.tensorboard.MetricsMirror`); recorded in config.json, it changes no number.
    """
    config = config.validate()
    dataset, env, params = load_inputs(config)
    started = time.perf_counter()
    if config.tabular:
        from agentlab.rl import mamql_tabular_training

        config = mamql_tabular_training.check_inputs(config, env, params, dataset)  # refuse; default gamma
        with agentlab_tensorboard.open_run(
            out, COMMAND, config.record(), tensorboard=tensorboard, resume=resume, force=force
        ) as (work, mirror):
            if on_chunk is not None:
                on_chunk({"update": 0, "total": config.total_updates, "return": float("nan")})
            summary = mamql_tabular_training.run(config, work, env, params, dataset, started)
            mirror.sync()  # the metrics, written once at the end
            if on_chunk is not None:
                on_chunk({"update": config.total_updates, "total": config.total_updates,
                          "return": summary["mean_return"]})  # fmt: skip
            return summary
    learner, data = neural_learner(config, dataset, env, params)
    with agentlab_tensorboard.open_run(
        out, COMMAND, config.record(), tensorboard=tensorboard, resume=resume, force=force, resumable=True
    ) as (work, mirror):
        return _train_neural(config, work, resume, learner, data, dataset, env, params, on_chunk, started, mirror)


def neural_learner(config: MAMQLRunConfig, dataset, env, params):
    """``(MAMQL learner, device data)`` with the run's settings (checked, memory included)."""
    from agentlab.rl import mamql

    mconfig = mamql.MAMQLConfig(
        algo=config.algo,
        online=config.online,
        gamma=config.gamma_or(0.99),
        lr=config.lr,
        batch_size=config.batch_size,
        temperature=config.temperature,
        phi="linear" if config.mode == "exact" else "chi2",
        hidden=tuple(config.hidden),
        conv_channels=tuple(config.conv_channels),
        conv_kernels=tuple(config.conv_kernels),
        total_updates=config.total_updates,
        updates_per_chunk=min(config.updates_per_chunk, config.total_updates),
        seeds=config.seeds,
        seed=config.seed,
    ).validate()
    shape = tuple(env.observation_space(params).shape[1:])
    if len(shape) == 3:  # (channels, height, width): every valid convolution must leave at least one cell
        side = min(shape[1:]) - sum(k - 1 for k in mconfig.conv_kernels)
        if side < 1:
            raise UsageError(
                f"--conv-kernels {','.join(map(str, mconfig.conv_kernels))} do not fit a {shape[1]}x{shape[2]} grid "
                "(valid convolutions shrink it by kernel - 1 each): use smaller or fewer kernels"
            )
    learner = mamql.MAMQL(mconfig, env, params)
    mamql.check_memory(learner)
    return learner, mamql.prepare_data(dataset.arrays, learner)


def _train_neural(config, run_dir: Path, resume: bool, learner, data, dataset, env, params, on_chunk, started, mirror):
    import jax
    import polars as pl

    from agentlab import compiler
    from agentlab.rl import checkpoint, mamql

    mconfig = learner.config
    chunk = compiler.jit(jax.vmap(learner.chunk, in_axes=(0, None)))
    episodes = config.eval_episodes
    evaluate = compiler.jit(
        jax.vmap(lambda key, p: learner.evaluate(key, p, env, params, episodes), in_axes=(0, 0)),
    )
    state = learner.init_seeds(mamql.seed_keys(mconfig))
    rows: list[dict[str, Any]] = []
    offset = {"wall_seconds": 0.0, "compile_seconds": 0.0, "run_seconds": 0.0}
    if resume and (run_dir / CHECKPOINT).exists():
        state, meta = checkpoint.load(run_dir / CHECKPOINT, state)
        rows = pl.read_parquet(run_dir / "metrics.parquet").head(meta["metrics_rows"]).to_dicts()
        offset = {k: float(meta[k]) for k in offset}
    state = jax.block_until_ready(state)
    update = int(np.asarray(state.update)[0])
    total = mconfig.num_updates
    if on_chunk is not None:
        on_chunk({"update": update, "total": total, "return": float("nan")})
    tick = time.perf_counter()
    compiled = chunk.lower(state, data).compile()
    compile_seconds = offset["compile_seconds"] + time.perf_counter() - tick
    run_seconds = offset["run_seconds"]
    eval_keys = lambda u: jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(10**6 + s), u))(  # noqa: E731
        np.arange(config.seed, config.seed + config.seeds)
    )
    chunks_done = update // mconfig.updates_per_chunk
    while update < total:
        tick = time.perf_counter()
        state, metrics = compiled(state, data)
        metrics = jax.tree.map(np.asarray, jax.block_until_ready(metrics))  # (seeds, chunk, agents)
        elapsed = time.perf_counter() - tick
        run_seconds += elapsed
        update += mconfig.updates_per_chunk
        chunks_done += 1
        returns = None
        if chunks_done % config.eval_every == 0 or update >= total:
            returns = np.asarray(evaluate(eval_keys(update), state.params))  # (seeds, agents)
        for s in range(config.seeds):
            row = {
                "seed": config.seed + s,
                "update": update,
                "updates_per_second": mconfig.updates_per_chunk / elapsed,
                "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
            }
            for name, value in metrics.items():
                if value.ndim >= 2:
                    row[name] = float(np.mean(value[s, -1]))  # the chunk's last update, mean over agents
            if returns is not None:
                row["mean_return"] = float(returns[s].mean())
                for i, r in enumerate(returns[s]):
                    row[f"return_agent{i}"] = float(r)
            rows.append(row)
        rundir.write_parquet(run_dir / "metrics.parquet", pl.DataFrame(rows))
        mirror.sync()
        meta = {
            "update": update,
            "metrics_rows": len(rows),
            "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
            "compile_seconds": compile_seconds,
            "run_seconds": run_seconds,
        }
        checkpoint.save(run_dir / CHECKPOINT, state, meta)
        if on_chunk is not None:
            last = returns.mean() if returns is not None else float("nan")
            on_chunk({"update": update, "total": total, "return": float(last)})
    from agentlab.rl.data import dataset_return
    from agentlab.rl.evaluate import return_summary

    frame = pl.DataFrame(rows)
    final = frame.filter(pl.col("update") == frame["update"].max())
    per_seed = np.stack([final[f"return_agent{i}"].to_numpy() for i in range(env.num_agents)], axis=1)
    summary = {
        "algorithm": config.algo,
        "tabular": False,
        "mode": config.mode,
        "online": config.online,
        "data": str(config.data),
        "expert_steps": len(dataset),
        **return_summary(per_seed),
        "expert_return": dataset_return(dataset, getattr(params, "max_steps", None)),
        **known_expert_figures(config, learner, state.params, dataset, env, params),
        "updates": total,
        "updates_per_second": total * config.seeds / run_seconds if run_seconds > 0 else None,
        "compile_seconds": compile_seconds,
        "train_seconds": run_seconds,
        "wall_seconds": offset["wall_seconds"] + time.perf_counter() - started,
    }
    rundir.write_json(run_dir / "summary.json", summary)
    plot_curve(frame, run_dir / "plots" / "return_curve.png", summary)
    return summary


def known_expert_figures(config, learner, params, dataset, env, env_params) -> dict[str, Any]:
    """policy_kl / reward_epic / reward_pearson of the first seed where the experts are known (a tabular gems
    dataset of the QRE); None otherwise."""
    import jax
    import jax.numpy as jnp

    from agentlab.rl import mamql_tabular_training as tt

    empty = {"policy_kl": None, "reward_epic": None, "reward_pearson": None}
    if dataset.record.get("policy") != "qre":
        return empty
    gamma = float(dataset.record.get("gamma", 0.9))
    problem = tt.tabular_problem(env, env_params, gamma, float(dataset.record.get("temperature", 1.0)))
    obs = all_state_observations(env, env_params)  # (S, agents, ...)
    first = jax.tree.map(lambda x: x[0], params)
    q = np.asarray(jax.jit(learner.q_values)(first, jnp.asarray(obs)), np.float64)  # (S, agents, outputs)
    policy = np.exp(np.asarray(jax.jit(learner.log_probs)(first, jnp.asarray(obs)), np.float64))
    learned = {"policy": np.moveaxis(policy, 1, 0), "q": None, "reward": None}
    if config.algo == "mamql":
        from agentlab.rl import mamql_tabular

        qbar = np.moveaxis(q, 1, 0)  # (agents, S, A)
        rewards = []
        for i in range(2):
            succ, prob, _ = mamql_tabular.marginal_mdp(
                problem.next_state, problem.reward, problem.expert.policy[1 - i], i
            )
            rewards.append(
                mamql_tabular.recovered_reward(qbar[i], succ, prob, learner.config.gamma, config.temperature)
            )
        learned.update(q=qbar, reward=np.stack(rewards))
    visited = np.unique(tt.states_of(dataset["obs"], problem.size))
    figures = tt.measure(problem, learned, visited, learner.config.gamma, config.temperature)
    return {k: figures[k] for k in ("policy_kl", "reward_epic", "reward_pearson")}


def all_state_observations(env, params) -> np.ndarray:
    """float32 ``(S, 2, 5, size, size)``: the observation of every joint state of the tabular gems game, in the
    export's state order."""
    import jax
    import jax.numpy as jnp

    from agentlab.kernels.multi.gems_tabular import state_positions

    x0, y0, x1, y1 = state_positions(np.arange(env.size**4), env.size)
    agents = jnp.asarray(np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1), jnp.int32)  # (S, 2, 2)
    state = env.init(jax.random.PRNGKey(0), params)

    def observe(cells):
        return env.observe(jax.random.PRNGKey(0), state.replace(agents=cells), params)

    return np.asarray(jax.jit(jax.vmap(observe))(agents))


def plot_curve(frame, path: Path, summary: dict) -> None:
    """plots/return_curve.png: mean return over agents against updates, one line per seed."""
    import polars as pl

    plt = rundir.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    evaluated = frame.filter(pl.col("mean_return").is_not_null()) if "mean_return" in frame.columns else frame.head(0)
    for seed in evaluated["seed"].unique().sort().to_list() if evaluated.height else []:
        part = evaluated.filter(pl.col("seed") == seed)
        ax.plot(part["update"].to_numpy(), part["mean_return"].to_numpy(), marker="o", ms=3, label=f"seed {seed}")
    if summary.get("expert_return") is not None:
        ax.axhline(summary["expert_return"], color="k", ls="--", lw=1, label="experts (dataset)")
    ax.set_xlabel("updates")
    ax.set_ylabel("mean return per agent")
    ax.set_title(f"{summary['algorithm']} on {summary['data']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    rundir.save_figure(path, fig)
