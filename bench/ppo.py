"""PPO: agentlab beside PureJaxRL in one process: training throughput, and the return of each trained policy on
separate evaluation episodes.

    agentlab bench ppo --seeds 4 --out runs/bench-ppo                       # agentlab only
    agentlab bench ppo --purejaxrl PATH/TO/purejaxrl --seeds 10 --out ...   # side by side

PureJaxRL is not a dependency: point ``--purejaxrl`` at a checkout of github.com/luchris429/purejaxrl
(its ``purejaxrl/ppo.py`` needs gymnax and distrax). The learners of each seed run round-robin, so that a
machine that speeds up or slows down affects them alike:

- ``purejaxrl``: PureJaxRL's PPO with its MinAtar settings (64 envs x 128 steps, 4 epochs x 8
  minibatches, lr 5e-3 annealed, separate relu 64x64 actor and critic, entropy 0.01) on gymnax's
  Breakout-MinAtar for `--steps` steps (whole updates: ``steps // 8192`` of them);
- ``agentlab-purejaxrl``: agentlab's PPO with exactly those settings (`PUREJAXRL_SETTINGS`) on
  agentlab's `breakout` (another kernel with `--env`, without `--purejaxrl`) with the same 1000-step
  time limit and the same number of updates;
- ``agentlab-default``: agentlab's default PPO configuration (`PPOConfig()`) on `breakout` for
  `--default-steps` steps (default: the same budget as PureJaxRL);
- ``agentlab-default-equal-wall`` (with ``--purejaxrl``): the default for as many steps as fit in PureJaxRL's
  wall time (`equal_wall_steps`: the first seed's PureJaxRL wall time, compile included, less the default's
  compile time, times the default's training steps per second, both measured on that seed in this process);
  one budget for every seed.

agentlab's learners compile with `agentlab.compiler.options()` (on CPU: YNNPACK dot fusions off);
``--peer-with-our-options`` adds ``purejaxrl-agentlab-xla``, PureJaxRL compiled with the same
options, to show how much of a ratio is the options and how much the learner.

Each run is jitted end to end as one call; compile and run seconds are measured separately and every
result is blocked on. Seeds are ``--seed-start`` and up (default 100: the settings were chosen on seeds 0-11).

Evaluation: each trained policy plays `--episodes` episodes greedily (the most likely action) and as many
sampling its actions, each until it ends or reaches the 1000-step limit, on agentlab's kernel
(`agentlab.rl.evaluate.make_episodes`). Every learner of a seed plays the same evaluation keys
(`evaluation_key`): the same reset states and the same sampling noise. PureJaxRL's network reads gymnax's
observation, which has agentlab's layout (bool 10x10x4: paddle, ball, trail, brick; minimal actions noop, left,
right), so its policy plays agentlab's episodes too; it also plays as many on gymnax's Breakout-MinAtar, the
environment it trained on (``gymnax_*`` columns). The training return (mean episode return over the last 5% of
updates) is kept beside them.

A row per learner and seed goes to ``metrics.parquet``; ``summary.json`` has, per learner, median speed and wall
time, and the mean over seeds of each seed's evaluation return with a 95% t interval over seeds; and the
commit, CPU and versions the run used (`machine`).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
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
TIME_LIMIT = 1000  # steps per episode, in training and evaluation, for every learner
EVALUATION_STREAM = 0x0E7A1  # folded into a seed's key for its evaluation keys (training uses PRNGKey(seed))


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

    config = PPOConfig(env=env, max_episode_steps=TIME_LIMIT, updates_per_chunk=1, **overrides)
    if steps is None:
        return config
    # PureJaxRL runs total_timesteps // (num_envs x num_steps) updates; agentlab rounds up to at least the
    # steps asked for. The bench gives both learners the same budget: PureJaxRL's whole updates.
    return dataclasses.replace(config, total_steps=max(1, steps // config.batch_size) * config.batch_size)


def evaluation_key(seed: int) -> jax.Array:
    """The key of seed `seed`'s evaluation episodes, the same for every learner (not a training key)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), EVALUATION_STREAM)


def evaluate_policy(learner, params, seed: int, episodes: int) -> dict:
    """Mean return of `episodes` greedy and `episodes` sampled episodes of `learner`'s policy `params` on its
    kernel (`learner.config`'s env and time limit), both on `evaluation_key(seed)`."""
    from agentlab.rl.evaluate import make_episodes

    out = {}
    for mode, greedy in (("greedy", True), ("stochastic", False)):
        returns, _ = make_episodes(learner, "plain", episodes, greedy)(params, evaluation_key(seed))
        out[f"{mode}_return"] = float(np.mean(np.asarray(returns, np.float64)))
    return out


def run_agentlab(steps: int | None, seed: int, env: str = "breakout", episodes: int = 64, **overrides) -> dict:
    """One seed of agentlab's PPO on `env` (1000-step time limit; `steps=None`: the config's own), then its
    evaluation."""
    from agentlab.rl.ppo import PPO

    config = agentlab_config(steps, seed, env, **overrides)
    learner = PPO(config)
    (state, metrics), compile_seconds, run_seconds = compile_and_run(
        lambda k: learner.train(k), jax.random.PRNGKey(seed), compiler_options=compiler.options()
    )
    returns = np.asarray(metrics["episode_return"])
    return {
        "steps": config.num_updates * config.batch_size,
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "final_return": final_return(returns),
        **evaluate_policy(learner, state.params, seed, episodes),
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

        self.env, self.params = make("breakout", max_steps=TIME_LIMIT)

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


class PureJaxRLPolicy:
    """PureJaxRL's trained actor-critic as the learner `agentlab.rl.evaluate.make_episodes` plays: its network
    reads the flattened float32 observation (gymnax's Breakout-MinAtar has agentlab's layout and actions), and
    samples with agentlab's Gumbel-max draw, so that on one key both learners see the same noise."""

    def __init__(self, apply_fn):
        self.config = agentlab_config(None, 0)  # breakout, 1000-step limit: the episodes' kernel
        self._apply = apply_fn

    def act(self, params, key: jax.Array, obs: jax.Array, greedy: bool = False) -> jax.Array:
        from agentlab.rl.networks import categorical_sample

        pi, _ = self._apply(params, obs.reshape(obs.shape[0], -1).astype(jnp.float32))
        return jnp.argmax(pi.logits, axis=-1).astype(jnp.int32) if greedy else categorical_sample(key, pi.logits)


def gymnax_returns(policy: PureJaxRLPolicy, params, key: jax.Array, episodes: int, greedy: bool) -> np.ndarray:
    """The returns of `episodes` episodes of `policy` on gymnax's Breakout-MinAtar (1000-step limit), keys split
    as `agentlab.rl.evaluate.make_episodes` splits them (gymnax draws its own game randomness from them)."""
    import gymnax

    env, env_params = gymnax.make("Breakout-MinAtar")
    env_params = dataclasses.replace(env_params, max_steps_in_episode=TIME_LIMIT)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def run(params, key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env_params)

        def body(carry, k):
            obs, state, alive, total = carry
            k_act, k_env = jax.random.split(k)
            action = policy.act(params, k_act, obs, greedy)
            obs, state, reward, terminated, truncated, _ = step(
                jax.random.split(k_env, episodes), state, action, env_params
            )
            return (obs, state, alive & ~(terminated | truncated), total + jnp.where(alive, reward, 0.0)), None

        init = (obs, state, jnp.ones(episodes, bool), jnp.zeros(episodes, jnp.float32))
        (_, _, _, total), _ = jax.lax.scan(body, init, jax.random.split(k_steps, TIME_LIMIT))
        return total

    return np.asarray(jax.jit(run)(params, key), np.float64)


def stand_in_for_unused_imports() -> None:
    """PureJaxRL's wrappers.py imports brax and navix at the top, for its Brax and Navix wrappers only (the
    MinAtar path never touches them): where they are not installed, empty modules stand in for them, so the
    benchmark needs neither (nor mujoco)."""
    import types

    names = ("brax", "brax.envs", "brax.envs.wrappers", "brax.envs.wrappers.training", "navix")
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so that its submodules resolve to the stand-ins too
            sys.modules[name] = module
    training = sys.modules["brax.envs.wrappers.training"]
    for attribute in ("EpisodeWrapper", "AutoResetWrapper"):
        if not hasattr(training, attribute):
            setattr(training, attribute, None)
    if not hasattr(sys.modules["brax"], "envs"):
        sys.modules["brax"].envs = sys.modules["brax.envs"]


def run_purejaxrl(
    path: Path,
    steps: int,
    seed: int,
    episodes: int = 64,
    on_agentlab: bool = False,
    compiler_options: dict | None = None,
) -> dict:
    """One seed of PureJaxRL's PPO on gymnax's Breakout-MinAtar (or, `on_agentlab`, on agentlab's),
    compiled with JAX's default options unless `compiler_options` are given; then its evaluation on agentlab's
    breakout and on gymnax's."""
    for folder in (path, Path(path) / "purejaxrl"):  # its ppo.py imports its sibling wrappers.py as `wrappers`
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    stand_in_for_unused_imports()
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
    train_state = out["runner_state"][0]
    policy = PureJaxRLPolicy(train_state.apply_fn)
    gymnax_eval = {
        f"gymnax_{mode}_return": float(
            gymnax_returns(policy, train_state.params, evaluation_key(seed), episodes, greedy).mean()
        )
        for mode, greedy in (("greedy", True), ("stochastic", False))
    }
    return {
        "steps": steps
        // (REFERENCE["NUM_ENVS"] * REFERENCE["NUM_STEPS"])
        * REFERENCE["NUM_ENVS"]
        * REFERENCE["NUM_STEPS"],
        "compile_seconds": compile_seconds,
        "run_seconds": run_seconds,
        "final_return": final_return(per_update),
        **evaluate_policy(policy, train_state.params, seed, episodes),
        **gymnax_eval,
    }


LEARNERS = (
    "purejaxrl",
    "purejaxrl-agentlab-xla",
    "agentlab-purejaxrl",
    "agentlab-default",
    "agentlab-default-equal-wall",
    "purejaxrl-on-agentlab",
)
#: The returns summarised per learner: evaluation (agentlab's kernel; PureJaxRL's also on gymnax's) and training.
RETURNS = ("greedy_return", "stochastic_return", "gymnax_greedy_return", "gymnax_stochastic_return", "final_return")


def mean_interval(values) -> dict:
    """Mean over seeds of per-seed values, with the 95% Student's t interval of that mean (NaN bounds for one
    seed), the sample standard deviation and the values themselves."""
    from agentlab.rl.evaluate import t_interval

    x = np.asarray(values, np.float64)
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    low, high = t_interval(len(x), float(x.mean()), std)
    return {"mean": float(x.mean()), "ci95_low": low, "ci95_high": high, "std": std, "by_seed": x.tolist()}


def equal_wall_steps(purejaxrl: dict, default: dict, batch_size: int) -> int:
    """Steps of the default learner that take PureJaxRL's wall time, compile included: PureJaxRL's wall seconds
    less the default's compile seconds, times the default's training steps per second (rows of one seed, one
    process), in whole updates of `batch_size` steps (at least one)."""
    seconds = purejaxrl["wall_seconds"] - default["compile_seconds"]
    return max(1, int(seconds * default["steps_per_second"]) // batch_size) * batch_size


def summarise(frame, steps: int, seeds: int) -> dict:
    """Per learner: median speed, compile and wall time; mean and 95% interval over seeds of each return; and
    the ratios to PureJaxRL (of medians)."""
    import polars as pl

    summary: dict = {"steps": steps, "seeds": seeds}
    for name in LEARNERS:
        part = frame.filter(pl.col("learner") == name).sort("seed")
        if not part.height:
            continue
        entry = {
            "steps": int(part["steps"][0]),
            "seeds": part["seed"].to_list(),
            "steps_per_second": statistics.median(part["steps_per_second"].to_list()),
            "compile_seconds": statistics.median(part["compile_seconds"].to_list()),
            "wall_seconds": statistics.median(part["wall_seconds"].to_list()),
        }
        for column in RETURNS:
            if column in part.columns and part[column].null_count() < part.height:
                entry[column] = mean_interval(part[column].drop_nulls().to_list())
        summary[name.replace("-", "_")] = entry
    if "purejaxrl" in summary:
        reference = summary["purejaxrl"]
        summary["throughput_ratio_same_settings"] = (
            summary["agentlab_purejaxrl"]["steps_per_second"] / reference["steps_per_second"]
        )
        for name in ("agentlab_default", "agentlab_default_equal_wall"):
            if name in summary:
                summary[f"wall_ratio_{name}"] = summary[name]["wall_seconds"] / reference["wall_seconds"]
    return summary


def machine() -> dict:
    """What a result belongs to: the commit (and whether the work tree differed from it), the CPU model and core
    count, and the versions of agentlab, JAX and the peers' packages."""
    from importlib import metadata

    from agentlab import rundir

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    status = git("status", "--porcelain", "--untracked-files=no")
    versions = rundir.versions()
    for package in ("gymnax", "distrax", "flax", "optax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "commit": git("rev-parse", "HEAD"),
        "work_tree_modified": None if status is None else bool(status),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "versions": versions,
    }


SEEDS = limits.Bound("--seeds", int, low=1, high=10_000, unit="seeds per learner")
SEED_START = limits.Bound("--seed-start", int, low=0, high=2**31 - 10_001, unit="the first seed")
STEPS = limits.Bound("--steps", int, low=1, high=10**12, unit="environment steps per seed")
EPISODES = limits.Bound("--episodes", int, low=1, high=4096, unit="evaluation episodes per mode and seed")


@dataclasses.dataclass(frozen=True)
class PPOBench:
    """What `agentlab bench ppo` runs: seeds `seed_start`, ..., `seed_start + seeds - 1` of each learner,
    round-robin."""

    steps: int = 1_000_000  # steps of purejaxrl and agentlab-purejaxrl (and the peers' variants)
    seeds: int = 4
    seed_start: int = 100  # the settings were chosen on seeds 0-11
    default_steps: int | None = None  # steps of agentlab-default; None: `steps` (the same budget)
    episodes: int = 64  # evaluation episodes per mode (greedy, stochastic) and seed
    env: str = "breakout"  # agentlab's kernel for agentlab's learners; the peers need breakout
    env_options: tuple[tuple[str, Any], ...] = ()  # its make() options (--env-option), sorted pairs
    purejaxrl: Path | None = None  # a checkout of luchris429/purejaxrl; None: agentlab's learners only
    peer_on_agentlab: bool = False  # + purejaxrl-on-agentlab: PureJaxRL's learner on agentlab's breakout
    peer_with_our_options: bool = False  # + purejaxrl-agentlab-xla: PureJaxRL compiled with agentlab's options

    def validate(self) -> PPOBench:
        """Raise `UsageError` naming the first bad field; checks both agentlab configs (and their memory) and the
        PureJaxRL checkout before anything runs; return self."""
        SEEDS.check(self.seeds)
        SEED_START.check(self.seed_start)
        EPISODES.check(self.episodes)
        for name in ("steps", "default_steps"):
            value = getattr(self, name)
            if value is not None:
                STEPS.check(value, f"--{name.replace('_', '-')}")
        options = {"env_options": self.env_options}
        agentlab_config(self.steps, 0, self.env, **options, **PUREJAXRL_SETTINGS).validate()
        agentlab_config(self.default_steps or self.steps, 0, self.env, **options).validate()
        if self.purejaxrl is None:
            if self.peer_on_agentlab or self.peer_with_our_options:
                raise UsageError("--peer-on-agentlab and --peer-with-our-options need --purejaxrl PATH")
            return self
        if self.env != "breakout" or self.env_options:
            raise UsageError("--purejaxrl compares on Breakout-MinAtar: use --env breakout without --env-option")
        if not (Path(self.purejaxrl) / "purejaxrl" / "ppo.py").is_file():
            raise UsageError(
                f"--purejaxrl {self.purejaxrl}: no purejaxrl/ppo.py there (give a checkout of "
                "github.com/luchris429/purejaxrl)"
            )
        return self

    def learners(self) -> list[tuple[str, Callable[[int, list[dict]], dict]]]:
        """``(name, run(seed, rows) -> result)`` of every learner, in the order each round runs them (`rows`: the
        rows so far, from which the equal-wall learner takes its budget)."""
        steps, path, episodes, env = self.steps, self.purejaxrl, self.episodes, self.env
        opts = {"env_options": self.env_options}
        default_steps = self.default_steps or steps
        learners = [
            ("agentlab-purejaxrl", lambda s, _: run_agentlab(steps, s, env, episodes, **opts, **PUREJAXRL_SETTINGS)),
            ("agentlab-default", lambda s, _: run_agentlab(default_steps, s, env, episodes, **opts)),
        ]
        if path is not None:
            learners.insert(0, ("purejaxrl", lambda s, _: run_purejaxrl(path, steps, s, episodes)))
            if self.peer_with_our_options:
                options = compiler.options()
                learners.insert(
                    1,
                    (
                        "purejaxrl-agentlab-xla",
                        lambda s, _: run_purejaxrl(path, steps, s, episodes, compiler_options=options),
                    ),
                )
            learners.append(
                (
                    "agentlab-default-equal-wall",
                    lambda s, rows: run_agentlab(self.equal_wall_steps(rows), s, env, episodes, **opts),
                )
            )
            if self.peer_on_agentlab:
                learners.append(
                    ("purejaxrl-on-agentlab", lambda s, _: run_purejaxrl(path, steps, s, episodes, on_agentlab=True))
                )
        return learners

    def equal_wall_steps(self, rows: list[dict]) -> int:
        """The equal-wall learner's budget: `equal_wall_steps` of the first seed's purejaxrl and agentlab-default
        rows (the same for every seed)."""
        first = {row["learner"]: row for row in rows if row["seed"] == self.seed_start}
        return equal_wall_steps(first["purejaxrl"], first["agentlab-default"], agentlab_config(None, 0).batch_size)


def run_bench(bench: PPOBench, on_row: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Every learner for every seed, round-robin (machine drift affects every learner alike): a row per learner
    and seed (its result, wall and elapsed seconds, steps per second). `on_row(rows)` is called after each row
    (progress, and writing the rows so far)."""
    rows: list[dict] = []
    started = time.perf_counter()
    learners = bench.learners()
    for seed in range(bench.seed_start, bench.seed_start + bench.seeds):
        for name, run in learners:
            result = run(seed, rows)
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
