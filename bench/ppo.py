"""PPO training throughput and return: agentlab beside PureJaxRL, in one process.

    python -m agentlab.bench.ppo --seeds 4 --out runs/bench-ppo                       # agentlab only
    python -m agentlab.bench.ppo --purejaxrl PATH/TO/purejaxrl --seeds 4 --out ...    # side by side

PureJaxRL is not a dependency: point ``--purejaxrl`` at a checkout of github.com/luchris429/purejaxrl
(its ``purejaxrl/ppo.py`` needs gymnax and distrax). Three learners per seed, round-robin so that a
machine that speeds up or slows down affects them alike:

- ``purejaxrl``: PureJaxRL's PPO with its MinAtar settings (64 envs x 128 steps, 4 epochs x 8
  minibatches, lr 5e-3 annealed, separate relu 64x64 actor and critic, entropy 0.01) on gymnax's
  Breakout-MinAtar for `--steps` steps;
- ``agentlab-purejaxrl``: agentlab's PPO with exactly those settings (`PUREJAXRL_SETTINGS`) on
  agentlab's `breakout` with the same 1000-step time limit, for `--steps` steps (goal a: throughput
  ratio >= 1 and the same return);
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

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

from agentlab import compiler
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


def run_agentlab(steps: int | None, seed: int, **overrides) -> dict:
    """One seed of agentlab's PPO on breakout (1000-step time limit); `steps=None`: the config's own."""
    from agentlab.rl.ppo import PPO, PPOConfig

    if steps is not None:
        overrides["total_steps"] = steps
    config = PPOConfig(env="breakout", max_episode_steps=1000, updates_per_chunk=1, **overrides)
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument(
        "--peer-on-agentlab",
        action="store_true",
        help="also run PureJaxRL's learner on agentlab's breakout (learner purejaxrl-on-agentlab)",
    )
    parser.add_argument(
        "--peer-with-our-options",
        action="store_true",
        help="also run PureJaxRL compiled with agentlab's compiler options (learner purejaxrl-agentlab-xla)",
    )
    parser.add_argument(
        "--default-steps", type=int, default=None, help="steps of the agentlab-default run (default: PPOConfig's)"
    )
    parser.add_argument("--purejaxrl", type=Path, default=None, help="a checkout of luchris429/purejaxrl")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import polars as pl

    from agentlab import rundir

    record = {**vars(args), "out": str(args.out), "purejaxrl": str(args.purejaxrl)}
    with rundir.open_run(args.out, "bench ppo", record, force=True) as run_dir:
        rows = []
        started = time.perf_counter()
        learners = [
            ("agentlab-purejaxrl", lambda s: run_agentlab(args.steps, s, **PUREJAXRL_SETTINGS)),
            ("agentlab-default", lambda s: run_agentlab(args.default_steps, s)),
        ]
        if args.purejaxrl is not None:
            learners.insert(0, ("purejaxrl", lambda s: run_purejaxrl(args.purejaxrl, args.steps, s)))
            if args.peer_with_our_options:
                learners.insert(
                    1,
                    (
                        "purejaxrl-agentlab-xla",
                        lambda s: run_purejaxrl(args.purejaxrl, args.steps, s, compiler_options=compiler.options()),
                    ),
                )
            if args.peer_on_agentlab:
                learners.append(
                    ("purejaxrl-on-agentlab", lambda s: run_purejaxrl(args.purejaxrl, args.steps, s, on_agentlab=True))
                )
        for seed in range(args.seeds):  # round-robin: machine drift affects every learner alike
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
                print(rows[-1], file=sys.stderr, flush=True)
                rundir.write_parquet(run_dir / "metrics.parquet", pl.DataFrame(rows))
        summary = summarise(pl.DataFrame(rows), args.steps, args.seeds)
        rundir.write_json(run_dir / "summary.json", summary)
    print(summary)
    return summary


if __name__ == "__main__":
    main()
