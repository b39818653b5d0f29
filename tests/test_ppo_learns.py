"""PPO learns a MinAtar game: the default configuration trained on Breakout for a small budget plays far better
than chance on separate evaluation episodes.

Seed 0 trains `PPOConfig()` on `breakout` (1000-step time limit) for 250k steps (31 updates; about 10-20 s on
two CPU cores) and plays 32 greedy episodes on evaluation keys of its own. The threshold was set from runs on
seeds 1-4 (same budget, same evaluation; 2026-11-29, 2-core AMD EPYC): greedy returns 18.6, 17.3, 8.3 and 9.9,
while the untrained network sampling its near-uniform policy scored 0.34-0.53 on the same episodes. The bar,
4.0, is under half the lowest trained seed and several times the random policy's best; a run is bit-reproducible
on one machine but not across machines (bench/README.md), hence the margin. The untrained policy must score
under the bar, so the test can fail.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentlab import compiler
from agentlab.rl.evaluate import make_episodes
from agentlab.rl.ppo import PPO, PPOConfig

STEPS = 250_000
EPISODES = 32
THRESHOLD = 4.0  # greedy mean return over EPISODES episodes


@pytest.mark.slow
def test_default_ppo_learns_breakout_in_250k_steps():
    learner = PPO(PPOConfig(env="breakout", total_steps=STEPS, max_episode_steps=1000, updates_per_chunk=1))
    key = jax.random.PRNGKey(0)
    state, _ = compiler.jit(learner.train)(key)
    evaluation_key = jax.random.fold_in(key, 1)
    trained, _ = make_episodes(learner, "plain", EPISODES, greedy=True)(state.params, evaluation_key)
    untrained, _ = make_episodes(learner, "plain", EPISODES, greedy=False)(learner.init(key).params, evaluation_key)
    assert float(np.mean(untrained)) < THRESHOLD
    assert float(np.mean(trained)) > THRESHOLD
