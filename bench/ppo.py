"""PPO training throughput and return: agentlab beside PureJaxRL, in one process.

    agentlab bench ppo --seeds 4 --out runs/bench-ppo                       # agentlab only
    agentlab bench ppo --purejaxrl PATH/TO/purejaxrl --seeds 4 --out ...    # side by side

PureJaxRL is not a dependency: point ``--purejaxrl`` at a checkout of github.com/luchris429/purejaxrl
(its ``purejaxrl/ppo.py`` needs gymnax and distrax). Three learners per seed, round-robin so that a
machine that speeds up or slows down affects them alike:

- ``purejaxrl``: PureJaxRL's PPO with its MinAtar settings (64 envs x 128 steps, 4 epochs x 8
  minibatches, lr 5e-3 annealed, separate relu 64x64 actor and critic, entropy 0.01) on gymnax's
  Breakout-MinAtar for `--steps` steps;
- ``agentlab-purejaxrl``: agentlab's PPO with exactly those settings (`PUREJAXRL_SETTINGS`) on
  agentlab's `breakout` (another kernel with `--env`, without `--purejaxrl`) with the same 1000-step
  time limit, for `--steps` steps (goal a: throughput ratio >= 1 and the same return);
- ``agentlab-default``: agentlab's default PPO configuration (`PPOConfig()`) on `breakout` for
  `--default-steps` steps (default: its `total_steps`); goal b: mean return >= 27 over the seeds
  in at most 2/3 of PureJaxRL's wall time for `--steps` steps, compile included.

agentlab's learners compile with `agentlab.compiler.options()` (on CPU: YNNPACK dot fusions off);
``--peer-with-our-options`` adds ``purejaxrl-agentlab-xla``, PureJaxRL compiled with the same
options, to show how much of a ratio is the options and how much the learner.

Each run is jitted end to end as one call; compile and run seconds are measured separately and every
result is blocked on. The return of a run is the mean episode return over its last 5% of updates. A
row per learner and seed goes to ``metrics.parquet``; ``summary.json`` has the ratios and returns.
"""

from __future__ import annotations

import dataclasses
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from agentlab import compiler, limits
from agentlab.errors import UsageError
from agentlab.timing import compile_and_run

REFERENCE = {
    "LR": 5e-3,
    "NUM_ENVS": 64,
    "NUM_STEPS": 128,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 8,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "relu",
    "ENV_NAME": "Breakout-MinAtar",
    "ANNEAL_LR": True,
    "DEBUG": False,
}


def final_return(returns: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the last `fraction` of per-update episode returns (NaN-aware)."""
    window = max(1, int(len(returns) * fraction))
    return float(np.nanmean(returns[-window:]))


#: PureJaxRL's MinAtar settings as agentlab PPOConfig fields (agentlab's defaults differ).
PUREJAXRL_SETTINGS = {
    "num_envs": 64,
    "num_steps": 128,
    "update_epochs": 4,
    "num_minibatches": 8,
    "lr": 5e-3,
    "anneal_lr": True,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "hidden": (64, 64),
    "activation": "relu",
    "shared_layers": 0,
}


def agentlab_config(steps: int | None, seed: int, env: str = "breakout", **overrides):
    """The `PPOConfig` of one agentlab learner's seed: `env` with a 1000-step time limit; `steps=None`: the
    config's own `total_steps`."""
    from agentlab.rl.ppo import PPOConfig

    config = PPOConfig(env=env, max_episode_steps=1000, updates_per_chunk=1, **overrides)
    if steps is None:
        return config
    # PureJaxRL runs total_timesteps // (num_envs x num_steps) updates; agentlab rounds up to at least the
    # steps asked for. The bench gives both learners the same budget: PureJaxRL's whole updates.
    return dataclasses.replace(config, total_steps=max(1, steps // config.batch_size) * config.batch_size)


def run_agentlab(steps: int | None, seed: int, env: str = "breakout", **overrides) -> dict:
    """One seed of agentlab's PPO on `env` (1000-step time limit); `steps=None`: the config's own."""
    from agentlab.rl.ppo import PPO

    config = agentlab_config(steps, seed, env, **overrides)
    learner = PPO(config)
    (_, metrics), compile_seconds, run_seconds = compile_and_run(
        lambda k: learner.train(k), jax.random.PRNGKey(seed), compiler_options=compiler.options()
    )
    returns = np.asarray(metrics["episode_return"])
    return {
        "steps": config.num_updates * config.batch_size,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "final_return": final_return(returns),
    }


class FiveTupleStep:
    """gymnax >= 1.0 returns ``(obs, state, reward, terminated, truncated, info)``; PureJaxRL was
    written for gymnax 0.0.x's ``(obs, state, reward, done, info)``. Same environment, same
    auto-reset, only the tuple differs."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated, info


class AgentlabAsGymnax:
    """agentlab's `breakout` (1000-step limit, auto-reset) behind gymnax's interface, so that
    PureJaxRL's learner can train on agentlab's kernel: float32 observations, a Box space, and the
    five-tuple step with ``done = terminated | truncated``."""

    def __init__(self):
        from agentlab.kernels import make

        self.env, self.params = make("breakout", max_steps=1000)

    @property
    def default_params(self):
        return self.params

    def reset(self, key, params=None):
        obs, state = self.env.reset(key, self.params)
        return obs.astype(np.float32), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, _ = self.env.step(key, state, action, self.params)
        return obs.astype(np.float32), state, reward.astype(np.float32), terminated | truncated, {}

    def observation_space(self, params=None):
        from gymnax.environments import spaces

        return spaces.Box(0, 1, self.env.observation_space(self.params).shape, np.float32)

    def action_space(self, params=None):
        return self.env.action_space(self.params)


def run_purejaxrl(
    path: Path, steps: int, seed: int, on_agentlab: bool = False, compiler_options: dict | None = None
) -> dict:
    """One seed of PureJaxRL's PPO on gymnax's Breakout-MinAtar (or, `on_agentlab`, on agentlab's),
    compiled with JAX's default options unless `compiler_options` are given."""
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    module = importlib.import_module("purejaxrl.ppo")
    make = module.gymnax.make
    if on_agentlab:
        module.gymnax.make = lambda name, **kw: (AgentlabAsGymnax(), None)
    else:
        module.gymnax.make = lambda name, **kw: (lambda env, params: (FiveTupleStep(env), params))(*make(name, **kw))
    try:
        train = module.make_train({**REFERENCE, "TOTAL_TIMESTEPS": steps})
    finally:
        module.gymnax.make = make
    out, compile_seconds, run_seconds = compile_and_run(
        train, jax.random.PRNGKey(seed), compiler_options=compiler_options
    )
    info = out["metrics"]
    done = np.asarray(info["returned_episode"])  # (updates, steps, envs)
    returns = np.asarray(info["returned_episode_returns"])
    per_update = np.array([r[d].mean() if d.any() else np.nan for r, d in zip(returns, done)])
    return {
        "steps": steps,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "final_return": final_return(per_update),
    }


def summarise(frame, steps: int, seeds: int) -> dict:
    """Medians of speed and wall time, mean returns, and the two goals' ratios."""
    import polars as pl

    summary: dict = {"steps": steps, "seeds": seeds}
    learners = (
        "purejaxrl",
        "purejaxrl-agentlab-xla",
        "agentlab-purejaxrl",
        "agentlab-default",
        "purejaxrl-on-agentlab",
    )
    for name in learners:
        part = frame.filter(pl.col("learner") == name)
        if part.height:
            key = name.replace("-", "_")
            summary[key] = {
                "steps": int(part["steps"][0]),
                "steps_per_second": statistics.median(part["steps_per_second"].to_list()),
                "compile_seconds": statistics.median(part["compile_seconds"].to_list()),
                "wall_seconds": statistics.median(part["wall_seconds"].to_list()),
                "mean_return": float(np.nanmean(part["final_return"].to_numpy())),
                "mean_return_first_3_seeds": float(np.nanmean(part.sort("seed")["final_return"].to_numpy()[:3])),
                "returns_by_seed": part["final_return"].to_list(),
            }
    if "purejaxrl" in summary:
        reference = summary["purejaxrl"]
        same = summary["agentlab_purejaxrl"]
        default = summary["agentlab_default"]
        summary["goal_a_throughput_ratio"] = same["steps_per_second"] / reference["steps_per_second"]
        summary["goal_b_wall_ratio"] = default["wall_seconds"] / reference["wall_seconds"]
        summary["goal_b_met"] = bool(summary["goal_b_wall_ratio"] <= 2 / 3 and default["mean_return"] >= 27)
    return summary


SEEDS = limits.Bound("--seeds", int, low=1, high=10_000, unit="seeds per learner")
STEPS = limits.Bound("--steps", int, low=1, high=10**12, unit="environment steps per seed")


@dataclasses.dataclass(frozen=True)
class PPOBench:
    """What `agentlab bench ppo` runs: `seeds` seeds of each learner, round-robin."""

    steps: int = 1_000_000  # steps of purejaxrl and agentlab-purejaxrl (and the peers' variants)
    seeds: int = 4
    default_steps: int | None = None  # steps of agentlab-default; None: PPOConfig's total_steps
    env: str = "breakout"  # agentlab's kernel for agentlab's learners; the peers need breakout
    purejaxrl: Path | None = None  # a checkout of luchris429/purejaxrl; None: agentlab's learners only
    peer_on_agentlab: bool = False  # + purejaxrl-on-agentlab: PureJaxRL's learner on agentlab's breakout
    peer_with_our_options: bool = False  # + purejaxrl-agentlab-xla: PureJaxRL compiled with agentlab's options

    def validate(self) -> PPOBench:
        """Raise `UsageError` naming the first bad field; checks both agentlab configs (and their memory) and the
        PureJaxRL checkout before anything runs; return self."""
        SEEDS.check(self.seeds)
        for name in ("steps", "default_steps"):
            value = getattr(self, name)
            if value is not None:
                STEPS.check(value, f"--{name.replace('_', '-')}")
        agentlab_config(self.steps, 0, self.env, **PUREJAXRL_SETTINGS).validate()
        agentlab_config(self.default_steps, 0, self.env).validate()
        if self.purejaxrl is None:
            if self.peer_on_agentlab or self.peer_with_our_options:
                raise UsageError("--peer-on-agentlab and --peer-with-our-options need --purejaxrl PATH")
            return self
        if self.env != "breakout":
            raise UsageError(f"--purejaxrl compares on Breakout-MinAtar: use --env breakout, not {self.env!r}")
        if not (Path(self.purejaxrl) / "purejaxrl" / "ppo.py").is_file():
            raise UsageError(
                f"--purejaxrl {self.purejaxrl}: no purejaxrl/ppo.py there (give a checkout of "
                "github.com/luchris429/purejaxrl)"
            )
        return self

    def learners(self) -> list[tuple[str, Callable[[int], dict]]]:
        """``(name, run(seed) -> result)`` of every learner, in the order each round runs them."""
        steps, path = self.steps, self.purejaxrl
        learners = [
            ("agentlab-purejaxrl", lambda s: run_agentlab(steps, s, self.env, **PUREJAXRL_SETTINGS)),
            ("agentlab-default", lambda s: run_agentlab(self.default_steps, s, self.env)),
        ]
        if path is not None:
            learners.insert(0, ("purejaxrl", lambda s: run_purejaxrl(path, steps, s)))
            if self.peer_with_our_options:
                options = compiler.options()
                learners.insert(
                    1, ("purejaxrl-agentlab-xla", lambda s: run_purejaxrl(path, steps, s, compiler_options=options))
                )
            if self.peer_on_agentlab:
                learners.append(("purejaxrl-on-agentlab", lambda s: run_purejaxrl(path, steps, s, on_agentlab=True)))
        return learners


def run_bench(bench: PPOBench, on_row: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Every learner for every seed, round-robin (machine drift affects every learner alike): a row per learner
    and seed (its result, wall and elapsed seconds, steps per second). `on_row(rows)` is called after each row
    (progress, and writing the rows so far)."""
    rows: list[dict] = []
    started = time.perf_counter()
    learners = bench.learners()
    for seed in range(bench.seeds):
        for name, run in learners:
            result = run(seed)
            rows.append(
                {
                    "learner": name,
                    "seed": seed,
                    **result,
                    "wall_seconds": result["compile_seconds"] + result["run_seconds"],
                    "steps_per_second": result["steps"] / result["run_seconds"],
                    "elapsed_seconds": time.perf_counter() - started,
                }
            )
            if on_row is not None:
                on_row(rows)
    return rows
