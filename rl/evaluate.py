"""Evaluating trained policies under every stochasticity profile: the STORI robustness matrix.

A row of the matrix is a training run (trained under one profile); a column is a test profile; a
cell is the mean undiscounted return over `episodes` episodes per seed, each episode run until it
ends or reaches the training time limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from agentlab import compiler, limits, rundir
from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.kernels.atari import GAMES
from agentlab.kernels.stochasticity import format_spec, parse_spec
from agentlab.rl.ppo import PPO, PPOConfig

#: Episodes per profile and seed (`--episodes`): a million already put the standard error at a thousandth
#: of the returns' spread, and one cell would run for a billion steps; what fits in memory is checked
#: separately (`episode_memory`).
EPISODES = limits.Bound("--episodes", int, low=1, high=10**6, unit="episodes per profile and seed")
MAX_GRID_PROFILES = 256  # columns of one robustness matrix
MAX_GRID_BYTES = 1 << 20  # a grid file larger than this is not a list of stochasticity strings


def default_grid(env: str) -> list[str]:
    """STORI's taxonomy, one column each: plain; action noise at three p; sticky; every event mode;
    a sudden drift to action noise; crop, torch and blackout masks. Kernels without the taxonomy
    get the plain game only."""
    if env not in GAMES:
        return ["plain"]
    grid = ["plain", "action:p=0.1", "action:p=0.3", "action:p=0.5", "sticky:p=0.25"]
    grid += [f"event:mode={mode},p=0.25" for mode in GAMES[env].event_modes]
    grid += [
        "drift:mode=sudden,at=100,to=(action:p=0.5)",
        "mask:kind=crop,region=left,p=0.75",
        "mask:kind=torch,radius=3,centre=agent,p=1",
        "mask:kind=blackout,region=all,p=1",
    ]
    return [format_spec(parse_spec(s)) for s in grid]


def read_grid(path: Path) -> list[str]:
    """A grid file: one stochasticity string per line; blank lines and ``#`` comments ignored.

    Everything wrong with the file is one `UsageError` naming it (and the line, for a bad line): missing,
    a directory or another non-file, unreadable, binary, larger than `MAX_GRID_BYTES`, empty, a
    malformed or repeated profile, or more than `MAX_GRID_PROFILES` profiles."""
    path = Path(path)
    what = f"--stochasticity-grid {path}"
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{what} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{what} is not a regular file")
        if info.st_size > MAX_GRID_BYTES:
            raise UsageError(
                f"{what} is {limits.format_bytes(info.st_size)}, too large for a grid file "
                f"(at most {limits.format_bytes(MAX_GRID_BYTES)}: one stochasticity string per line)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what}: no such file") from None
    except PermissionError:
        raise UsageError(f"{what}: permission denied") from None
    except OSError as error:
        raise UsageError(f"{what}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8") if b"\0" not in data else None
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise UsageError(f"{what} is not a text file (binary?): expected one stochasticity string per line")
    grid: dict[str, int] = {}  # canonical profile -> its line
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            spec = format_spec(parse_spec(line))
        except UsageError as error:
            raise UsageError(f"{what} line {number}: {error}") from None
        if spec in grid:
            raise UsageError(f"{what} line {number}: {spec!r} repeats line {grid[spec]}")
        grid[spec] = number
        if len(grid) > MAX_GRID_PROFILES:
            raise UsageError(f"{what} lists more than {MAX_GRID_PROFILES} profiles")
    if not grid:
        raise UsageError(f"{what} lists no profiles (the file is empty or only blank lines and # comments)")
    return list(grid)


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Unique names for distinct run directories: each folder's name, with as many parent folders as it
    takes to tell apart runs whose names collide (``a/run``, ``b/run``). Two labels never give the same
    `key_name`, so summary keys stay apart too."""
    parts = [Path(os.path.abspath(p)).parts[1:] or (str(p),) for p in paths]
    depth = [1] * len(parts)

    def label(i: int) -> str:
        return "/".join(parts[i][-depth[i] :])

    while True:
        groups: dict[str, list[int]] = {}
        for i in range(len(parts)):
            groups.setdefault(key_name(label(i)), []).append(i)
        clashes = [group for group in groups.values() if len(group) > 1]
        grown = False
        for group in clashes:
            for i in group:
                if depth[i] < len(parts[i]):
                    depth[i] += 1
                    grown = True
        if not grown:
            break
    labels = [label(i) for i in range(len(parts))]
    seen: dict[str, int] = {}
    for i, name in enumerate(labels):  # paths that still clash after their sanitised keys (a_b/c vs a/b_c)
        count = seen[key_name(name)] = seen.get(key_name(name), 0) + 1
        if count > 1:
            labels[i] = f"{name}#{count}"
    return labels


def key_name(text: str) -> str:
    """`text` as part of a summary key: every character other than a letter or a digit becomes ``_``."""
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def trained_step(run_dir: Path) -> int:
    """The environment steps per seed the run `run_dir` trained (its checkpoint's ``step``; the last
    ``step`` of metrics.parquet for a checkpoint that does not say)."""
    run_dir = Path(run_dir)
    meta = None
    try:
        meta = rundir.read_json_file(run_dir / "checkpoints" / "latest.json", "checkpoint metadata")
    except UsageError:
        pass
    step = meta.get("step") if isinstance(meta, dict) else None
    if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        return step
    try:
        import polars as pl

        steps = pl.read_parquet(run_dir / "metrics.parquet", columns=["step"])["step"]
        if steps.len():
            return int(steps.max())
    except Exception:  # noqa: BLE001 - any unreadable metrics file ends in the one message below
        pass
    raise UsageError(
        f"{run_dir}: cannot tell how many steps it trained (no 'step' in checkpoints/latest.json and no "
        "readable metrics.parquet)"
    )


def episode_memory(config: PPOConfig, spec: str, episodes: int) -> int:
    """Bytes the rollout of `make_episode_returns` (vmapped over `seeds`) holds at once: per episode the
    observation (as stored, then as the network's float32 input, and the next one), the kernel state
    (current and next), the network's activations and a few scalars; per seed the step keys of the
    time limit. The scan keeps only its carry, so the time limit does not multiply the episodes."""
    env, env_params = make_eval_env(config, spec)
    obs, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0), env_params)
    obs_bytes = obs.size * obs.dtype.itemsize
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
    rows = env.num_agents if getattr(env, "multi_agent", False) else 1  # multi-agent: a network row per agent
    per_episode = 2 * obs_bytes + 4 * obs.size + 2 * state_bytes + rows * (2 * 4 * sum(config.hidden) + 256) + 64
    return int(config.seeds * (episodes * per_episode + 16 * config.time_limit))


def check_memory(configs: Sequence[PPOConfig], grid: Sequence[str], episodes: int) -> None:
    """Refuse (`UsageError`) an evaluation whose largest rollout (`episode_memory`) cannot fit."""
    estimate, config = max(
        ((episode_memory(c, spec, episodes), c) for c in configs for spec in grid), key=lambda pair: pair[0]
    )
    limits.check_memory(
        estimate,
        f"evaluating {episodes:,} episodes x {config.seeds} seed(s) of {config.env} at once",
        "lower --episodes",
    )


def make_eval_env(config: PPOConfig, spec: str):
    """``(env, params)`` a run trained with `config` is tested in under `spec`: no auto-reset, the
    training time limit; a bad or game-invalid `spec` -> `UsageError`."""
    options: dict[str, Any] = {"max_steps": config.time_limit, "auto_reset": False}
    if config.env in GAMES:
        options["stochasticity"] = spec
    elif spec != "plain":
        raise UsageError(f"{config.env} has no stochasticity profiles: only 'plain' can be tested")
    return make(config.env, **options)


def make_episode_returns(learner: PPO, spec: str, episodes: int, greedy: bool = False):
    """A jitted ``(params, key) -> float32 (episodes,)``: the returns of `episodes` episodes of one
    seed's policy under `spec`, each run until it ends or reaches the training time limit."""
    config = learner.config
    limit = config.time_limit
    env, env_params = make_eval_env(config, spec)
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def run(params, key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env_params)

        def body(carry, k):
            obs, state, alive, total = carry
            k_act, k_env = jax.random.split(k)
            action = learner.act(params, k_act, obs, greedy)
            obs, state, reward, terminated, truncated, _ = batched_step(
                jax.random.split(k_env, episodes), state, action, env_params
            )
            if reward.ndim > 1:
                reward = reward.mean(axis=-1)  # multi-agent: the team's mean return
            total = total + jnp.where(alive, reward, 0.0)
            return (obs, state, alive & ~(terminated | truncated), total), None

        init = (obs, state, jnp.ones(episodes, bool), jnp.zeros(episodes, jnp.float32))
        (_, _, _, total), _ = jax.lax.scan(body, init, jax.random.split(k_steps, limit))
        return total

    return compiler.jit(run)


def evaluate(learner: PPO, params: Any, grid: list[str], episodes: int, seed: int = 0, greedy: bool = False):
    """Mean, standard deviation and standard error of the return under each profile of `grid`, per
    trained seed (`params` has a leading seed axis). Yields one dict per (profile, seed)."""
    seeds = jax.tree.leaves(params)[0].shape[0]
    for column, spec in enumerate(grid):
        run = jax.vmap(make_episode_returns(learner, spec, episodes, greedy))
        keys = jnp.stack([jax.random.PRNGKey(seed * 7919 + 31 * column + s) for s in range(seeds)])
        returns = jax.device_get(run(params, keys))  # (seeds, episodes)
        for s in range(seeds):
            r = returns[s]
            yield {
                "tested_under": spec,
                "seed_index": s,
                "episodes": episodes,
                "mean_return": float(r.mean()),
                "std_return": float(r.std()),
                "stderr_return": float(r.std() / max(episodes, 1) ** 0.5),
            }
