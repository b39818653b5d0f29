"""PPO training throughput and return: agentlab beside PureJaxRL, in one process.

    python -m agentlab.bench.ppo --seeds 4 --out runs/bench-ppo                       # agentlab only
    python -m agentlab.bench.ppo --purejaxrl PATH/TO/purejaxrl --seeds 4 --out ...    # side by side

PureJaxRL is not a dependency: point ``--purejaxrl`` at a checkout of github.com/luchris429/purejaxrl
(its ``purejaxrl/ppo.py`` needs gymnax and distrax). Both learners run PureJaxRL's MinAtar settings
(64 envs x 128 steps, 4 epochs x 8 minibatches, lr 5e-3 annealed, relu 64x64 actor and critic) for
`--steps` environment steps on Breakout (gymnax's port for PureJaxRL, agentlab's kernel with the same
1000-step time limit for agentlab), each seed jitted end to end as one call; compile and run seconds
are measured separately and every result is blocked on. A row per learner and seed goes to
``metrics.parquet``; ``summary.json`` has the throughput ratio and the mean returns.
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


def timed(fn, *args):
    """``(result, compile_seconds, run_seconds)`` of a jitted call, blocking on the result."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    return result, compile_seconds, time.perf_counter() - start


def final_return(returns: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the last `fraction` of per-update episode returns (NaN-aware)."""
    window = max(1, int(len(returns) * fraction))
    return float(np.nanmean(returns[-window:]))


def run_agentlab(steps: int, seed: int, **overrides) -> dict:
    from agentlab.rl.ppo import PPO, PPOConfig

    config = PPOConfig(env="breakout", total_steps=steps, max_episode_steps=1000, updates_per_chunk=1, **overrides)
    learner = PPO(config)
    (_, metrics), compile_seconds, run_seconds = timed(lambda k: learner.train(k), jax.random.PRNGKey(seed))
    returns = np.asarray(metrics["episode_return"])
    return {"compile_seconds": compile_seconds, "run_seconds": run_seconds, "final_return": final_return(returns)}


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


def run_purejaxrl(path: Path, steps: int, seed: int) -> dict:
    sys.path.insert(0, str(path))
    module = importlib.import_module("purejaxrl.ppo")
    make = module.gymnax.make
    module.gymnax.make = lambda name, **kw: (lambda env, params: (FiveTupleStep(env), params))(*make(name, **kw))
    try:
        train = module.make_train({**REFERENCE, "TOTAL_TIMESTEPS": steps})
    finally:
        module.gymnax.make = make
    out, compile_seconds, run_seconds = timed(train, jax.random.PRNGKey(seed))
    info = out["metrics"]
    done = np.asarray(info["returned_episode"])  # (updates, steps, envs)
    returns = np.asarray(info["returned_episode_returns"])
    per_update = np.array([r[d].mean() if d.any() else np.nan for r, d in zip(returns, done)])
    return {"compile_seconds": compile_seconds, "run_seconds": run_seconds, "final_return": final_return(per_update)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--purejaxrl", type=Path, default=None, help="a checkout of luchris429/purejaxrl")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import polars as pl

    from agentlab import rundir

    run_dir = rundir.prepare(args.out, force=True)
    rundir.write_config(
        run_dir, "bench ppo", {"steps": args.steps, "seeds": args.seeds, "purejaxrl": str(args.purejaxrl)}
    )
    rows = []
    started = time.perf_counter()
    for seed in range(args.seeds):  # alternate the learners so that machine drift affects both
        learners = [("agentlab", lambda s: run_agentlab(args.steps, s))]
        if args.purejaxrl is not None:
            learners.append(("purejaxrl", lambda s: run_purejaxrl(args.purejaxrl, args.steps, s)))
        for name, run in learners:
            result = run(seed)
            rows.append(
                {
                    "learner": name,
                    "seed": seed,
                    "step": args.steps,
                    **result,
                    "steps_per_second": args.steps / result["run_seconds"],
                    "wall_seconds": time.perf_counter() - started,
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
            rundir.write_parquet(run_dir / "metrics.parquet", pl.DataFrame(rows))
    frame = pl.DataFrame(rows)
    summary: dict = {"steps": args.steps, "seeds": args.seeds}
    for name in ("agentlab", "purejaxrl"):
        part = frame.filter(pl.col("learner") == name)
        if part.height:
            summary[f"{name}_steps_per_second"] = statistics.median(part["steps_per_second"].to_list())
            summary[f"{name}_compile_seconds"] = statistics.median(part["compile_seconds"].to_list())
            summary[f"{name}_mean_return"] = float(np.nanmean(part["final_return"].to_numpy()))
            summary[f"{name}_returns_by_seed"] = part["final_return"].to_list()
    if "purejaxrl_steps_per_second" in summary:
        summary["throughput_ratio"] = summary["agentlab_steps_per_second"] / summary["purejaxrl_steps_per_second"]
    rundir.write_json(run_dir / "summary.json", summary)
    print(summary)
    return summary


if __name__ == "__main__":
    main()
