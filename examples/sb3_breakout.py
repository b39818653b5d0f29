"""Stable-Baselines3's PPO on agentlab's `breakout` through the Gymnasium adapter (`agentlab.adapters.sb3`).

A worked example, not part of the package or of CI (it needs torch): it trains SB3's PPO with an MLP policy on
`breakout` (MinAtar's rules, bool ``(10, 10, 4)`` observations, 3 actions) with 16 lanes stepped in one jitted `vmap`,
and prints one JSON line per seed: wall seconds, steps/s and the mean return of the training episodes that ended in
the last 10% of the steps (`agentlab train ppo`'s `summary.json` `mean_return` averages its last 10% of updates), then
the mean and spread over seeds.

    python3 -m venv /tmp/sb3 && /tmp/sb3/bin/pip install torch stable-baselines3 -e '.[gymnasium]'
    /tmp/sb3/bin/python examples/sb3_breakout.py            # seeds 0, 1, 2 at 500k steps each

Edit `SEEDS`, `TOTAL_STEPS` and `NUM_ENVS` below to change the run. Hyperparameters are `agentlab train ppo`'s defaults
(PureJaxRL's MinAtar settings: 128-step rollouts, 4 epochs of 8 minibatches, learning rate 5e-3 annealed linearly to
0, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01, gradient norm 0.5, two ReLU layers of 64) where SB3 has
them; SB3's actor and critic are separate MLPs, so the value coefficient is PureJaxRL's 0.5 (agentlab's 0.25 goes with
its shared trunk). Episodes are cut at 1000 steps, as `agentlab train ppo` cuts them. SB3's `CnnPolicy` (NatureCNN)
needs uint8 images of at least 36x36 and does not fit a 10x10 grid.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from agentlab.adapters.sb3 import make_vec

SEEDS = (0, 1, 2)
TOTAL_STEPS = 500_000  # environment steps per seed
NUM_ENVS = 16
MAX_EPISODE_STEPS = 1000  # as `agentlab train ppo` sets for breakout
FINAL_FRACTION = 0.1  # the return is the mean over episodes that ended in the last 10% of the steps


class EpisodeLog(BaseCallback):
    """Records ``(step, return, length)`` of every finished training episode (from `VecMonitor`'s infos)."""

    def __init__(self):
        super().__init__()
        self.episodes: list[tuple[int, float, int]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"]), int(info["episode"]["l"])))
        return True


def train(seed: int, total_steps: int = TOTAL_STEPS, num_envs: int = NUM_ENVS) -> dict:
    """One SB3 PPO run on `breakout`; returns the seed's figures (wall seconds include building the model and the
    adapter's compile, a second or two)."""
    torch.set_num_threads(1)  # the layers are tiny: one thread is faster than two on a shared 2-core machine
    start = time.perf_counter()
    venv = VecMonitor(make_vec("breakout", num_envs, max_steps=MAX_EPISODE_STEPS))
    num_steps, num_minibatches = 128, 8
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=num_steps,
        batch_size=num_envs * num_steps // num_minibatches,
        n_epochs=4,
        learning_rate=lambda remaining: 5e-3 * remaining,  # linear anneal to 0
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
    )
    log = EpisodeLog()
    model.learn(total_steps, callback=log)
    wall = time.perf_counter() - start
    cutoff = model.num_timesteps * (1 - FINAL_FRACTION)
    final = [r for step, r, _ in log.episodes if step > cutoff]
    return {
        "seed": seed,
        "steps": int(model.num_timesteps),
        "wall_seconds": round(wall, 1),
        "steps_per_second": round(model.num_timesteps / wall, 1),
        "episodes": len(log.episodes),
        "final_episodes": len(final),
        "mean_return": float(np.mean(final)) if final else None,
    }


def main(seeds=SEEDS, total_steps: int = TOTAL_STEPS, num_envs: int = NUM_ENVS) -> dict:
    """Trains every seed in turn, prints one JSON line per seed and one for the whole; returns the whole."""
    runs = []
    for seed in seeds:
        runs.append(train(seed, total_steps, num_envs))
        print(json.dumps(runs[-1]), flush=True)
    returns = [run["mean_return"] for run in runs if run["mean_return"] is not None]
    whole = {
        "seeds": list(seeds),
        "steps_per_seed": total_steps,
        "num_envs": num_envs,
        "wall_seconds": round(sum(run["wall_seconds"] for run in runs), 1),
        "steps_per_second": round(float(np.mean([run["steps_per_second"] for run in runs])), 1),
        "mean_return": float(np.mean(returns)) if returns else None,
        "std_return": float(np.std(returns)) if returns else None,
        "returns_by_seed": returns,
    }
    print(json.dumps(whole), flush=True)
    return whole


if __name__ == "__main__":
    main()
