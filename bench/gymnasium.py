"""The Gymnasium vector adapter's speed beside the raw kernel: `agentlab bench gymnasium`.

For each kernel, at `lanes` lanes: **raw-step**, the `AutoReset` kernel's step under `vmap`, one jitted call per step
(keys split inside, actions drawn beforehand on the device), blocked after each step; **adapter**,
`agentlab.adapters.gymnasium.make_vec(name, lanes).step(actions)` with the same number of NumPy actions drawn
beforehand (NumPy in, NumPy out every step: the transfer is included); and for the Atari-style games **raw-scan**,
the `agentlab bench kernels` harness (100 steps in one `lax.scan`). Rounds alternate, and the medians of environment
steps per second give ``adapter / raw-step`` and ``adapter / raw-scan`` (the issue's goal: at least 0.5). Compile
time is excluded.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from agentlab import limits

LANES = limits.Bound("--lanes", int, low=1, high=2**20, unit="parallel environments")
STEPS = limits.Bound("--steps", int, low=1, high=100_000, unit="steps per timed round")
ROUNDS = limits.Bound("--rounds", int, low=1, high=1000, unit="timed rounds")


def raw_stepper(name: str, lanes: int):
    """``(step, keys, state)``: one jitted ``step(keys, state, actions) -> (keys, obs, state, reward, done)`` of the
    auto-reset kernel over `lanes` lanes, and its first keys and states."""
    import jax

    from agentlab.hashing import split_key
    from agentlab.kernels import make

    env, params = make(name)
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def step(keys, state, actions):
        pair = jax.vmap(split_key)(keys)
        obs, state, reward, terminated, truncated, _ = vstep(pair[:, 1], state, actions, params)
        return pair[:, 0], obs, state, reward, terminated | truncated

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(np.arange(lanes))
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    return step, keys, state


def measure(name: str, lanes: int = 1024, steps: int = 200, rounds: int = 7) -> dict[str, Any]:
    """Medians of steps/s for raw-step, adapter (and raw-scan for a discrete kernel) and their ratios."""
    import jax
    import jax.numpy as jnp

    from agentlab.adapters.gymnasium import make_vec

    vec = make_vec(name, lanes)
    vec.reset(seed=0)
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(steps)]
    on_device = [jnp.asarray(a) for a in actions]
    step, keys, state = raw_stepper(name, lanes)
    jax.block_until_ready(step(keys, state, on_device[0]))  # compile
    vec.step(actions[0])  # compile
    raw, adapter = [], []
    for _ in range(rounds):
        tick = time.perf_counter()
        for a in on_device:
            keys, obs, state, reward, done = step(keys, state, a)
            jax.block_until_ready((obs, reward, done))
        raw.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        for a in actions:
            vec.step(a)
        adapter.append(time.perf_counter() - tick)
    out: dict[str, Any] = {
        "env": name,
        "lanes": lanes,
        "raw_step_per_second": lanes * steps / statistics.median(raw),
        "adapter_per_second": lanes * steps / statistics.median(adapter),
    }
    out["adapter_over_raw_step"] = out["adapter_per_second"] / out["raw_step_per_second"]
    from agentlab.kernels.names import GAME_IDS

    if name in GAME_IDS:  # the harness of `agentlab bench kernels` (the Atari-style games)
        from agentlab.bench.kernels import agentlab_kernel, prepare, time_interleaved

        scan = time_interleaved({"scan": prepare(agentlab_kernel(name), lanes, 100)}, rounds)["scan"]
        out["raw_scan_per_second"] = scan["steps_per_second"]
        out["adapter_over_raw_scan"] = out["adapter_per_second"] / scan["steps_per_second"]
    return out
