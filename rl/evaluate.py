"""Evaluating trained policies under stochasticity profiles: the STORI robustness matrix.

A row of the matrix is a training run (trained under one profile); a column is a test profile; a
cell is the mean undiscounted return over all episodes of all the run's trained seeds (`episodes` per
seed), each episode run until it ends or reaches the training time limit, with a 95% interval.

Common random numbers: every column (and every run) plays the same episode keys (`episode_keys`), so
the reset states, the game's own draws and the policy's sampling keys agree across columns and two
columns differ only by their profile. A profile that changes nothing (two spellings of one profile,
or p = 0) gives the same episodes, return for return.

`evaluate_runs` is the whole driver (what `agentlab eval` calls); `evaluate` the rollouts of one run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import stat
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentlab import compiler, limits, rundir
from agentlab.errors import UsageError
from agentlab.kernels import make
from agentlab.kernels.atari import GAMES
from agentlab.kernels.stochasticity import ConceptDrift, format_spec, parse_spec
from agentlab.rl.ppo import PPO, PPOConfig

#: Episodes per profile and seed (`--episodes`): a million already put the standard error at a thousandth
#: of the returns' spread, and one cell would run for a billion steps; what fits in memory is checked
#: separately (`episode_memory`).
EPISODES = limits.Bound("--episodes", int, low=1, high=10**6, unit="episodes per profile and seed")
MAX_GRID_PROFILES = 256  # columns of one robustness matrix
MAX_GRID_BYTES = 1 << 20  # a grid file larger than this is not a list of stochasticity strings
CONFIDENCE = 0.95  # of every interval

#: The named grids of `--grid`: ``stori`` (STORI's paper profiles; ``default`` is its old spelling) and
#: ``extended`` (a wider sweep). Anything else names a grid file.
GRIDS = ("stori", "extended")
GRID_ALIASES = {"default": "stori"}

#: STORI type 2.1 per game: the event mode that cancels the effect of the agent's action and scores 0,
#: STORI's Breakout mode 2 ("block hit cancelled, reward 0"). Every game has such a mode.
CANCEL_MODE = {
    "breakout": "cancel_zero",  # a brick hit is cancelled (the brick stays), reward 0: STORI's mode 2
    "asterix": "cancel_zero",  # a gold pickup is cancelled (the gold stays), reward 0
    "freeway": "cancel_zero",  # a crossing is cancelled (the chicken goes back to the start), reward 0
    "space-invaders": "cancel_zero",  # alien hits are cancelled (the aliens survive), reward 0
    "seaquest": "cancel_zero",  # kills are cancelled (the enemy survives), reward 0
}

#: STORI type 3.2 blackout per game: the game's main region, the objects the game is about. Where the agent
#: scores by hitting or collecting something, that something; Freeway, which scores by crossing, the cars
#: it has to avoid.
MAIN_REGION = {
    "breakout": "bricks",  # the brick channel
    "asterix": "gold",  # the gold channel (the only thing that scores)
    "freeway": "cars",  # the car channel
    "space-invaders": "aliens",  # the alien channel and both direction channels
    "seaquest": "enemies",  # fish, enemy subs and their trails
}


def stori_grid(env: str) -> list[str]:
    """STORI's paper profiles (Barsainyan, Lim and Liu 2025), one column each: plain (type 3.1); type 1
    action noise at p = 0.3; type 2.1 the game's `CANCEL_MODE` event at p = 0.25; type 2.2 a sudden drift at
    step 300 to a full blackout; type 3.2 a blackout of the game's `MAIN_REGION` at p = 1, the left half
    cropped at p = 0.75 and a torch (radius 3) around a random centre at p = 1. Other kernels get the generic
    kinds they support (`generic_grid`)."""
    if env not in GAMES:
        return generic_grid(env)
    grid = [
        "plain",
        "action:p=0.3",
        f"event:mode={CANCEL_MODE[env]},p=0.25",
        "drift:mode=sudden,at=300,to=(mask:kind=blackout,region=all,p=1)",
        f"mask:kind=blackout,region={MAIN_REGION[env]},p=1",
        "mask:kind=crop,region=left,p=0.75",
        "mask:kind=torch,radius=3,centre=random,p=1",
    ]
    return [format_spec(parse_spec(s)) for s in grid]


def extended_grid(env: str) -> list[str]:
    """A wider sweep than STORI's: plain; action noise at three p; sticky actions; every event mode; a
    sudden drift at step 100 to action noise; crop, torch (around the agent) and blackout masks. Other kernels
    get the generic kinds they support at more strengths (`generic_grid` with ``extended=True``)."""
    if env not in GAMES:
        return generic_grid(env, extended=True)
    grid = ["plain", "action:p=0.1", "action:p=0.3", "action:p=0.5", "sticky:p=0.25"]
    grid += [f"event:mode={mode},p=0.25" for mode in GAMES[env].event_modes]
    grid += [
        "drift:mode=sudden,at=100,to=(action:p=0.5)",
        "mask:kind=crop,region=left,p=0.75",
        "mask:kind=torch,radius=3,centre=agent,p=1",
        "mask:kind=blackout,region=all,p=1",
    ]
    return [format_spec(parse_spec(s)) for s in grid]


def generic_grid(env: str, extended: bool = False) -> list[str]:
    """The profiles of a kernel without the Atari taxonomy, from the generic kinds `kernels.wrappers.Stochastic`
    applies to it (`supported_kinds`): plain; action noise at p = 0.3 (STORI type 1); sticky actions at p = 0.25;
    a sudden drift to action noise at p = 0.5 at half the kernel's default episode (type 2.2; step 100 without a
    time limit); features dropped at p = 0.25 where observations are float vectors (the vector analogue of type
    3.2). `extended` adds action noise at p = 0.1 and 0.5 and dropout at p = 0.1 and 0.5."""
    from agentlab.kernels.wrappers import supported_kinds

    kernel, params = make(env, auto_reset=False)
    kinds = supported_kinds(kernel, params)
    limit = getattr(params, "max_steps", None)
    at = max(1, int(limit) // 2) if limit else 100
    grid = ["plain"]
    if "action" in kinds:
        grid += ["action:p=0.1", "action:p=0.3", "action:p=0.5"] if extended else ["action:p=0.3"]
    grid.append("sticky:p=0.25")
    if "action" in kinds:
        grid.append(f"drift:mode=sudden,at={at},to=(action:p=0.5)")
    if "mask:kind=dropout" in kinds:
        grid += [f"mask:kind=dropout,p={p}" for p in ((0.1, 0.25, 0.5) if extended else (0.25,))]
    return [format_spec(parse_spec(s)) for s in grid]


def named_grid(name: str, env: str) -> list[str]:
    """The profiles of the named grid `name` (`GRIDS`, or an alias) for the kernel `env`."""
    name = GRID_ALIASES.get(name, name)
    if name == "stori":
        return stori_grid(env)
    if name == "extended":
        return extended_grid(env)
    raise UsageError(f"unknown grid {name!r}: valid grids are {', '.join(GRIDS)} or a file")


def read_grid(path: Path, what: str | None = None) -> list[str]:
    """A grid file: one stochasticity string per line; blank lines and ``#`` comments ignored.

    Everything wrong with the file is one `UsageError` naming it (and the line, for a bad line): missing,
    a directory or another non-file, unreadable, binary, larger than `MAX_GRID_BYTES`, empty, a
    malformed or repeated profile, or more than `MAX_GRID_PROFILES` profiles."""
    path = Path(path)
    what = what or f"--grid {path}"
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
    except OSError as error:
        raise rundir.file_error(what, error) from None
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
    options: dict[str, Any] = {**dict(config.env_options), "max_steps": config.time_limit, "auto_reset": False}
    return make(config.env, **options, stochasticity=spec)  # other kernels than the Atari games: the generic kinds


def episode_keys(seed: int, seeds: int) -> jax.Array:
    """uint32 ``(seeds, 2)``: the key of each trained seed's episodes, ``fold_in(PRNGKey(seed), s)`` for
    seed index ``s``. The same in every column and for every run (common random numbers)."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), s) for s in range(seeds)])


def make_episodes(learner: PPO, spec: str, episodes: int, greedy: bool = False):
    """A jitted ``(params, key) -> (returns float32 (episodes,), lengths int32 (episodes,))``: the returns
    and lengths (steps taken) of `episodes` episodes of one seed's policy under `spec`, each run until it
    ends or reaches the training time limit.

    `key` splits into the episodes' reset keys and one key per time step, which splits into the policy's
    action key and the episodes' step keys. Nothing depends on `spec`, so under common keys two profiles
    see the same reset states, game draws and action draws (the kernels draw each profile's randomness
    from its own stream).

    Cached per (configuration, `spec`, `episodes`, `greedy`), the seed aside (the policy's network does not
    depend on it), so evaluating many seeds, runs or benchmark rounds of one configuration compiles once."""
    return _episodes_function(dataclasses.replace(learner.config, seed=0, seeds=1), spec, episodes, greedy)


@functools.lru_cache(maxsize=64)
def _episodes_function(config: PPOConfig, spec: str, episodes: int, greedy: bool):
    learner = PPO(config)
    limit = config.time_limit
    env, env_params = make_eval_env(config, spec)
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def run(params, key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env_params)

        def body(carry, k):
            obs, state, alive, total, length = carry
            k_act, k_env = jax.random.split(k)
            action = learner.act(params, k_act, obs, greedy)
            obs, state, reward, terminated, truncated, _ = batched_step(
                jax.random.split(k_env, episodes), state, action, env_params
            )
            if reward.ndim > 1:
                reward = reward.mean(axis=-1)  # multi-agent: the team's mean return
            total = total + jnp.where(alive, reward, 0.0)
            length = length + alive.astype(jnp.int32)
            return (obs, state, alive & ~(terminated | truncated), total, length), None

        init = (obs, state, jnp.ones(episodes, bool), jnp.zeros(episodes, jnp.float32), jnp.zeros(episodes, jnp.int32))
        (_, _, _, total, length), _ = jax.lax.scan(body, init, jax.random.split(k_steps, limit))
        return total, length

    return compiler.jit(run)


def drift_at(spec: str) -> int | None:
    """The step at which `spec`'s concept drift first switches to its secondary concept (the earliest, if
    several); None without a drift."""
    steps = [profile.at for profile in parse_spec(spec) if isinstance(profile, ConceptDrift)]
    return int(min(steps)) if steps else None


def drift_fired(lengths: np.ndarray, at: int) -> int:
    """How many episodes lived long enough for a drift at step `at` to fire: took an action at time `at`
    (length > at), so the secondary concept changed what the agent acted under (contract: the action taken
    at time `at` and the observation of the state at time `at` are the secondary concept's)."""
    return int(np.count_nonzero(np.asarray(lengths) > at))


def t_interval(count: int, mean: float, std: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of a mean of `count` values with sample standard deviation `std` (ddof = 1):
    mean +- t_{count-1} std / sqrt(count). One value gives no interval (NaN bounds)."""
    if count < 2:
        return math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, count - 1)) * std / math.sqrt(count)
    return mean - half, mean + half


def return_summary(per_seed: np.ndarray) -> dict[str, Any]:
    """``per_seed (seeds, agents)`` returns -> mean over agents and seeds with a 95% t interval over seeds."""
    team = per_seed.mean(axis=1)
    low, high = t_interval(len(team), float(team.mean()), float(team.std(ddof=1)) if len(team) > 1 else 0.0)
    return {
        "mean_return": float(team.mean()),
        "mean_return_ci95": [low, high],
        "agent_returns": [float(x) for x in per_seed.mean(axis=0)],
        "returns_by_seed": [float(x) for x in team],
    }


def pooled_interval(counts, means, stds, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, low, high)`` over all episodes of several seeds, from each seed's episode count, mean and
    population standard deviation (ddof = 0, as the rows store them): the pooled mean M, the sum of
    squares sum_i n_i (s_i^2 + (m_i - M)^2) of all N episodes about it, and `t_interval` with their sample
    standard deviation. Equals the same computation on the concatenated returns."""
    n = np.asarray(counts, np.float64)
    m = np.asarray(means, np.float64)
    s = np.asarray(stds, np.float64)
    total = float(n.sum())
    mean = float((n * m).sum() / total)
    squares = float((n * (s**2 + (m - mean) ** 2)).sum())
    std = math.sqrt(squares / (total - 1)) if total > 1 else math.nan
    return (mean, *t_interval(int(total), mean, std, confidence))


def evaluate(learner: PPO, params: Any, grid: list[str], episodes: int, seed: int = 0, greedy: bool = False):
    """Per trained seed (`params` has a leading seed axis) and profile of `grid`: the mean, standard
    deviation (ddof = 0), standard error and 95% t interval of the return over `episodes` episodes, the
    mean length and, for a drift, how many episodes lived long enough for it to fire. Every profile plays
    the same keys (`episode_keys(seed, seeds)`). Yields one dict per (profile, seed)."""
    seeds = jax.tree.leaves(params)[0].shape[0]
    keys = episode_keys(seed, seeds)
    for spec in grid:
        run = jax.vmap(make_episodes(learner, spec, episodes, greedy))
        returns, lengths = jax.device_get(run(params, keys))  # (seeds, episodes) each
        at = drift_at(spec)
        for s in range(seeds):
            r = np.asarray(returns[s], np.float64)
            std = float(r.std(ddof=1)) if episodes > 1 else math.nan
            low, high = t_interval(episodes, float(r.mean()), std)
            yield {
                "tested_under": spec,
                "seed_index": s,
                "episodes": episodes,
                "mean_return": float(r.mean()),
                "std_return": float(r.std()),
                "stderr_return": float(r.std() / max(episodes, 1) ** 0.5),
                "ci95_low_return": low,
                "ci95_high_return": high,
                "mean_length": float(np.mean(lengths[s])),
                "drift_at": at,
                "drift_fired_episodes": None if at is None else drift_fired(lengths[s], at),
            }


def cell_statistics(frame):
    """One row per (run, profile) cell of the per-seed rows `frame` (a polars DataFrame of `evaluate`'s
    rows): the mean return over all episodes of all the run's seeds with its 95% interval, the return
    relative to the run's plain return (`normalised_return`, cell / plain; null without a plain column
    or when the plain return is 0) and the drift's fired episodes summed over seeds.

    The interval is Student's t over the episodes pooled across seeds (`pooled_interval`): a cell asks
    how these trained policies fare under a profile, so the episodes are its sampling noise. A run has
    one to a few seeds, too few for an interval over seeds, and training's spread between seeds is not
    what a robustness cell measures (the pooled spread still includes the seeds' differing means). With
    tens of episodes t and normal agree to a few percent; t stays honest for a handful."""
    import polars as pl

    cells = []
    keys = ["label", "run", "trained_under", "tested_under"]
    for (label, run, trained, tested), group in frame.group_by(keys, maintain_order=True):
        mean, low, high = pooled_interval(group["episodes"], group["mean_return"], group["std_return"])
        fired = group["drift_fired_episodes"] if "drift_fired_episodes" in group.columns else None
        at = drift_at(tested)
        cells.append(
            {
                "label": label,
                "run": run,
                "trained_under": trained,
                "tested_under": tested,
                "seeds": group.height,
                "episodes": int(group["episodes"].sum()),
                "mean_return": mean,
                "ci95_low_return": low,
                "ci95_high_return": high,
                "drift_at": at,
                "drift_fired_episodes": None if at is None or fired is None else int(fired.sum()),
            }
        )
    plain = {cell["label"]: cell["mean_return"] for cell in cells if cell["tested_under"] == "plain"}
    for cell in cells:
        base = plain.get(cell["label"])
        cell["normalised_return"] = cell["mean_return"] / base if base else None
    return pl.DataFrame(cells, infer_schema_length=None)


# ----------------------------------------------------------------------------------------------
# Runs


def distinct_runs(runs: Sequence[Path]) -> list[Path]:
    """`runs` without repeats (the same folder by resolved path: also through another path or a link), in
    the order given."""
    seen: dict[str, Path] = {}
    for run in runs:
        seen.setdefault(os.path.realpath(run), Path(run))
    return list(seen.values())


def _about(run: Path, error: Exception) -> UsageError:
    """`error` as a one-line `UsageError` that names the run."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return UsageError(message if str(run) in message else f"{run}: {message}")


def run_config(run: Path) -> PPOConfig:
    """The PPOConfig the run recorded, on one device (a policy trained over several is evaluated on one device of
    any machine): not a run directory, not a `train ppo` run or a corrupt config.json -> one line naming the run."""
    from agentlab.rl import training

    try:
        return training.config_from_record({**rundir.load_record(run, "train ppo")["config"], "devices": 1})
    except UsageError as error:
        raise _about(run, error) from None


def load_policy(run: Path):
    """``(config, learner, params)`` of the run; a missing or unreadable checkpoint -> one line."""
    from agentlab.rl import training

    try:
        return training.load_run(run)
    except UsageError as error:
        raise _about(run, error) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        raise UsageError(
            f"{run}: its checkpoint cannot be read (corrupt or truncated?): {type(error).__name__}: {detail}"
        ) from None


OnCell = Callable[[int, int, "tuple[str, str] | None"], None]


def evaluate_runs(
    runs: Sequence[Path],
    grid: str | Sequence[str] = "stori",
    episodes: int = 32,
    seed: int = 0,
    greedy: bool = False,
    out: Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    on_cell: OnCell | None = None,
) -> dict:
    """The robustness matrix of the training runs `runs` (one kernel) under `grid`, written to the run
    directory `out` (default: RUN/eval for one run); returns summary.json's dict.

    `grid`: a named grid (`GRIDS`: ``stori``, ``extended``; ``default`` = ``stori``), a grid file's path,
    or a list of stochasticity strings. Writes robustness.parquet (one row per run, profile and seed),
    matrix.parquet (one row per cell: `cell_statistics`), summary.json, plots/robustness.png (means with
    95% intervals) and, with a plain column, plots/robustness_normalised.png (return / plain return).
    `resume` continues `out` without recomputing a finished cell; `force` replaces an old run there.
    `on_cell(done, total, cell)` is called before each cell is computed (`cell` = ``(label, profile)``)
    and once at the end (`cell` None).

    Every input is checked (one-line `UsageError`) before anything is loaded, compiled or written."""
    import polars as pl

    episodes = EPISODES.check(episodes)
    if isinstance(grid, str | os.PathLike):
        name = GRID_ALIASES.get(str(grid), str(grid))
        profiles = None if name in GRIDS else read_grid(Path(grid))
        name = name if name in GRIDS else "file"
    else:
        name, profiles = "list", [format_spec(parse_spec(s)) for s in grid]
    runs = distinct_runs([rundir.check_text(Path(run), "RUN") for run in runs])
    if not runs:
        raise UsageError("no runs to evaluate")
    labels = run_labels(runs)
    configs = [run_config(run) for run in runs]
    envs = {config.env for config in configs}
    if len(envs) > 1:
        raise UsageError(
            f"the runs were trained on different kernels ({', '.join(sorted(envs))}): evaluate one kernel at a time"
        )
    env = envs.pop()
    profiles = profiles or named_grid(name, env)
    for spec in profiles:  # every profile must be valid for this kernel
        try:
            make_eval_env(configs[0], spec)
        except UsageError as error:
            raise UsageError(f"grid profile {spec!r}: {error}") from None
    check_memory(configs, profiles, episodes)
    out = Path(out) if out is not None else runs[0] / "eval" if len(runs) == 1 else None
    if out is None:
        raise UsageError("several runs need an output folder (out=)")
    rundir.check_out(out, resume=resume, force=force)
    loaded = [(run, label, *load_policy(run), _step(run)) for run, label in zip(runs, labels)]

    record = {
        "runs": [str(r) for r in runs],
        "grid_name": name,
        "grid": profiles,
        "episodes": episodes,
        "greedy": greedy,
        "seed": seed,
    }
    with rundir.open_run(out, "eval", record, resume=resume, force=force, resumable=True) as run_dir:
        return _evaluate(run_dir, loaded, name, profiles, env, episodes, seed, greedy, resume, on_cell, pl)


def _step(run: Path) -> int:
    try:
        return trained_step(run)
    except UsageError as error:
        raise _about(run, error) from None


ROW_DEFAULTS = {"ci95_low_return": None, "ci95_high_return": None, "mean_length": None, "drift_at": None}


def _evaluate(run_dir, loaded, name, grid, env, episodes, seed, greedy, resume, on_cell, pl) -> dict:
    path = run_dir / "robustness.parquet"
    rows = pl.read_parquet(path).to_dicts() if resume and path.exists() else []
    label_of = {str(run): label for run, label, *_ in loaded}
    for row in rows:  # a run directory written by an older agentlab
        row.setdefault("label", label_of.get(row["run"], Path(row["run"]).name))
        for key, value in ROW_DEFAULTS.items():
            row.setdefault(key, value)
        row.setdefault("drift_fired_episodes", None)
    done = {(r["run"], r["tested_under"]) for r in rows}
    total = len(loaded) * len(grid)
    started = time.perf_counter()
    for run, label, config, learner, params, step in loaded:
        for spec in grid:
            if (str(run), spec) in done:
                continue
            if on_cell is not None:
                on_cell(len(done), total, (label, spec))
            for row in evaluate(learner, params, [spec], episodes, seed, greedy):
                rows.append(
                    {
                        "run": str(run),
                        "label": label,
                        "trained_under": config.stochasticity,
                        "seed": config.seed + row.pop("seed_index"),
                        "step": step,
                        "wall_seconds": time.perf_counter() - started,
                        **row,
                    }
                )
            rundir.write_parquet(path, pl.DataFrame(rows, infer_schema_length=None))
            done.add((str(run), spec))
    if on_cell is not None:
        on_cell(len(done), total, None)

    matrix = cell_statistics(pl.DataFrame(rows, infer_schema_length=None))
    rundir.write_parquet(run_dir / "matrix.parquet", matrix)
    summary: dict[str, Any] = {
        "env": env,
        "grid": name,
        "runs": len(loaded),
        "profiles": len(grid),
        "episodes_per_profile_and_seed": episodes,
        "confidence": CONFIDENCE,
    }
    for cell in matrix.iter_rows(named=True):
        key = f"{key_name(cell['label'])}_{key_name(cell['tested_under'])}"
        summary[f"mean_return_{key}"] = cell["mean_return"]
        summary[f"ci95_low_return_{key}"] = _finite(cell["ci95_low_return"])
        summary[f"ci95_high_return_{key}"] = _finite(cell["ci95_high_return"])
        if cell["normalised_return"] is not None:
            summary[f"normalised_return_{key}"] = cell["normalised_return"]
        if cell["drift_fired_episodes"] is not None:
            summary[f"drift_fired_episodes_{key}"] = cell["drift_fired_episodes"]
            summary[f"episodes_{key}"] = cell["episodes"]
    summary["wall_seconds"] = time.perf_counter() - started
    rundir.write_json(run_dir / "summary.json", summary)
    heatmap(matrix, grid, run_dir / "plots" / "robustness.png", env)
    if "plain" in grid:
        normalised_heatmap(matrix, grid, run_dir / "plots" / "robustness_normalised.png", env)
    return summary


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


# ----------------------------------------------------------------------------------------------
# The matrix as a table and heat maps


def matrix_values(matrix, grid: Sequence[str], column: str) -> tuple[list[str], np.ndarray]:
    """``(row names, float (runs, profiles))``: `column` of the cells of `matrix` (`cell_statistics`), a
    row per run (named ``label (trained under)``), a column per profile of `grid`; NaN where null."""
    runs = matrix.select("label", "trained_under").unique(maintain_order=True)
    index = {(c["label"], c["tested_under"]): c[column] for c in matrix.iter_rows(named=True)}
    values = np.array(
        [
            [np.nan if index.get((label, spec)) is None else index[(label, spec)] for spec in grid]
            for label in runs["label"]
        ],
        float,
    ).reshape(runs.height, len(grid))
    names = [f"{label} ({t})" for label, t in zip(runs["label"], runs["trained_under"])]
    return names, values


def _draw(data, text, names, grid, path, title, **imshow) -> None:
    from agentlab.rundir import pyplot

    plt = pyplot()

    from agentlab.rundir import save_figure

    fig, ax = plt.subplots(figsize=(1.0 + 0.85 * len(grid), 1.6 + 0.55 * len(names)))
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", **imshow)
    ax.set_xticks(range(len(grid)), grid, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6, color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.6, "lw": 0})  # fmt: skip
    ax.set_xlabel("tested under")
    ax.set_ylabel("trained under")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    save_figure(path, fig)


def heatmap(matrix, grid: Sequence[str], path: Path, env: str) -> None:
    """plots/robustness.png: each cell's mean return and the half-width of its 95% interval (and, for a
    drift, the episodes it fired in)."""
    names, means = matrix_values(matrix, grid, "mean_return")
    _, low = matrix_values(matrix, grid, "ci95_low_return")
    _, high = matrix_values(matrix, grid, "ci95_high_return")
    text = [[_mean_pm(m, lo, hi, "\n") for m, lo, hi in zip(*rows)] for rows in zip(means, low, high)]
    _add_fired(text, matrix, grid)
    _draw(means, text, names, grid, path, f"{env}: mean return (95% interval)", cmap="viridis")


def normalised_heatmap(matrix, grid: Sequence[str], path: Path, env: str) -> None:
    """plots/robustness_normalised.png: each cell's mean return divided by the run's plain mean return
    (1 = as on the plain game), on a diverging scale fixed at [0, 2] so that no one column sets it."""
    names, values = matrix_values(matrix, grid, "normalised_return")
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in values]
    _add_fired(text, matrix, grid)
    _draw(values, text, names, grid, path, f"{env}: return / plain return", cmap="RdBu", vmin=0.0, vmax=2.0)


def _add_fired(text: list[list[str]], matrix, grid: Sequence[str]) -> None:
    """Append "fired k/n" (episodes the drift fired in) to the text of each drift cell."""
    _, fired = matrix_values(matrix, grid, "drift_fired_episodes")
    _, count = matrix_values(matrix, grid, "episodes")
    for i, row in enumerate(text):
        for j in range(len(row)):
            if not np.isnan(fired[i, j]):
                row[j] += f"\nfired {int(fired[i, j])}/{int(count[i, j])}"


def _mean_pm(mean: float, low: float, high: float, sep: str = " ") -> str:
    if np.isnan(mean):
        return ""
    if np.isnan(low) or np.isnan(high):
        return f"{mean:.2f}"
    return f"{mean:.2f}{sep}± {(high - low) / 2:.2f}"


def table_cells(matrix, grid: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """``(column names, rows)`` of the printed table: a row per profile, a column per run; each cell the
    mean return ± the half-width of its 95% interval, the share of the plain return (not on the plain row)
    and, for a drift, how many episodes it fired in."""
    names, means = matrix_values(matrix, grid, "mean_return")
    _, low = matrix_values(matrix, grid, "ci95_low_return")
    _, high = matrix_values(matrix, grid, "ci95_high_return")
    _, ratio = matrix_values(matrix, grid, "normalised_return")
    _, fired = matrix_values(matrix, grid, "drift_fired_episodes")
    _, count = matrix_values(matrix, grid, "episodes")
    rows = []
    for j, spec in enumerate(grid):
        row = []
        for i in range(len(names)):
            text = _mean_pm(means[i, j], low[i, j], high[i, j])
            if spec != "plain" and not np.isnan(ratio[i, j]):
                text += f" ({ratio[i, j]:.0%})"
            if not np.isnan(fired[i, j]):
                text += f" fired {int(fired[i, j])}/{int(count[i, j])}"
            row.append(text)
        rows.append(row)
    return names, rows
