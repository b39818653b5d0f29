"""The data-collection driver behind `agentlab data collect`: a policy plays a kernel, every step is a row of
``data.parquet`` (schema in `agentlab.rl.data`), in a run directory with resume.

Policies (``--policy``):

- ``random``: every agent uniformly over its allowed actions (the kernel's action mask, where it has one).
- ``qre``: the logit quantal-response equilibrium of the tabular gems game (`rl.mamql_tabular`), for a gems
  kernel in its tabular setting (``collect=false`` and fixed gems: ``--env-option layout=tabular``); each agent
  samples from its equilibrium policy at the joint state. `gamma` and `temperature` are the equilibrium's.
- ``RUN_DIR``: a `train ppo` run's policy (its first seed), sampled, on the kernel the run trained on.
- ``qtable:RUN_DIR``: Boltzmann play of the final Q tables a `train qlearn` run saved (calvano), at `temperature`.
- ``noisy:RUN_DIR,sigma=S`` (continuous actions): a `train ppo` run's mean action plus Gaussian noise of standard
  deviation S (D4RL's "noisy expert" style), then clipped.
- ``planner`` / ``planner,sigma=S`` (maze2d): D4RL's waypoint controller (`kernels.control.policies`): the shortest
  path over the maze's cells to the goal, a PD controller toward the next cell's centre, Gaussian noise of standard
  deviation S (default `kernels.control.policies.NOISE_STD`, 0.2).

Continuous actions are clipped to the action space before they are stored: a row holds the executed action.

Episodes run in chunks of `lanes` parallel episodes (one jitted `lax.scan` over the time limit, `vmap` over
lanes); a chunk is a deterministic function of ``(seed, chunk index)``, saved as it finishes
(``checkpoints/part-NNNNNN.parquet``), so Ctrl-C keeps the finished chunks and ``--resume`` collects only the
rest. ``--episodes N`` keeps episodes ``0..N-1``; ``--steps N`` keeps the first N rows, the last row then
marked truncated if it cut an episode.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import limits, rundir
from agentlab.errors import UsageError
from agentlab.kernels.names import canonical_id
from agentlab.rl import data

COMMAND = data.COMMAND
SEED = limits.Bound("--seed", int, low=0, high=2**31 - 1)
EPISODES = limits.Bound("--episodes", int, low=1, high=10**8, unit="episodes")
STEPS = limits.Bound("--steps", int, low=1, high=10**9, unit="rows (environment steps)")
TEMPERATURE = limits.Bound("--temperature", float, low=0, low_open=True, high=1e6, unit="Boltzmann temperature")
GAMMA = limits.Bound("--gamma", float, low=0, high=1, high_open=True, unit="discount of the equilibrium")
CHUNK_BYTES = 64 * 2**20  # the observations of one chunk (obs and next_obs), to size `lanes`
MAX_LANES = 1024


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What a collection run depends on (with the seed, enough to reproduce it)."""

    env: str = "gems"
    env_options: tuple[tuple[str, Any], ...] = ()  # the kernel's make() options, sorted pairs
    policy: str = "random"  # random | qre | RUN_DIR | qtable:RUN_DIR | noisy:RUN_DIR,sigma=S | planner[,sigma=S]
    episodes: int | None = None  # exactly one of episodes / steps
    steps: int | None = None
    seed: int = 0
    temperature: float = 1.0  # qre and qtable policies
    gamma: float = 0.9  # qre: the equilibrium's discount

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", canonical_id(self.env))

    def validate(self) -> CollectConfig:
        if (self.episodes is None) == (self.steps is None):
            raise UsageError("give exactly one of --episodes N or --steps N")
        if self.episodes is not None:
            EPISODES.check(self.episodes)
        if self.steps is not None:
            STEPS.check(self.steps)
        SEED.check(self.seed)
        TEMPERATURE.check(self.temperature)
        GAMMA.check(self.gamma)
        return self

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "env_options": dict(self.env_options)}


def make_env(config: CollectConfig):
    """``(env, params, time_limit)``: the kernel without auto-reset; a kernel without a time limit is refused."""
    from agentlab.kernels import make

    env, params = make(config.env, auto_reset=False, **dict(config.env_options))
    limit = getattr(params, "max_steps", None)
    if limit is None:
        raise UsageError(f"{config.env} has no time limit here: add --env-option max_steps=N")
    return env, params, int(limit)


# -- policies ------------------------------------------------------------------------------------------------
Policy = Callable[[Any, Any, Any], Any]  # (key, obs (lanes, ...), state (lanes, ...)) -> actions (lanes, ...)


def make_policy(config: CollectConfig, env, params) -> tuple[Policy, dict[str, Any]]:
    """The batched policy `config.policy` names and what the summary says about it."""
    spec = config.policy
    if spec == "random":
        return random_policy(env, params), {"policy": "random"}
    if spec == "qre":
        return qre_policy(config, env, params)
    if spec.startswith("qtable:"):
        return qtable_policy(config, env, params, Path(spec.removeprefix("qtable:")))
    continuous = not hasattr(env.action_space(params), "n")
    if spec.startswith("noisy:"):
        if not continuous:
            raise UsageError(
                f"--policy noisy:RUN_DIR,sigma=S adds Gaussian noise to continuous actions; {config.env}'s are discrete"
            )
        run, sigma = parse_sigma(spec.removeprefix("noisy:"), "noisy:RUN_DIR,sigma=S", None)
        return ppo_policy(config, run, sigma=sigma)
    if spec == "planner" or spec.startswith("planner,"):
        return planner_policy(config, env, params)
    return ppo_policy(config, Path(spec))


SIGMA = limits.Bound("sigma", float, low=0, high=10, unit="std of the Gaussian action noise")


def parse_sigma(text: str, form: str, default: float | None) -> tuple[Path, float]:
    """``"HEAD,sigma=S"`` -> ``(Path(HEAD), S)``; a missing ``sigma=`` is `default` (None: required)."""
    head, sep, value = text.partition(",sigma=")
    if not sep:
        if default is None:
            raise UsageError(f"--policy {form}: give the noise, e.g. ,sigma=0.3")
        return Path(head), default
    try:
        sigma = float(value)
    except ValueError:
        raise UsageError(f"--policy {form}: sigma={value!r} is not a number") from None
    return Path(head), SIGMA.check(sigma, "--policy ...,sigma=")


def planner_policy(config: CollectConfig, env, params) -> tuple[Policy, dict[str, Any]]:
    """maze2d's waypoint controller with Gaussian action noise (`kernels.control.policies`)."""
    if config.env != "maze2d":
        raise UsageError(f"--policy planner is maze2d's waypoint controller; {config.env} has none")
    import jax

    from agentlab.kernels.control import policies

    _, sigma = parse_sigma(config.policy, "planner,sigma=S", policies.NOISE_STD)

    def act(key, obs, state):
        keys = jax.random.split(key, obs.shape[0])
        return jax.vmap(lambda k, o: policies.planner_action(k, o, params, env, sigma))(keys, obs)

    return act, {"policy": "planner", "sigma": sigma}


def random_policy(env, params) -> Policy:
    import jax
    import jax.numpy as jnp

    space = env.action_space(params)
    if not hasattr(space, "n"):  # a Box: uniform over its bounds

        def uniform(key, obs, state):
            return jax.random.uniform(key, (obs.shape[0], *space.shape), jnp.float32, space.low, space.high)

        return uniform
    mask = env.action_mask(params)
    if mask is None:
        mask = jnp.ones((*space.shape, space.n), bool)

    def act(key, obs, state):
        lanes = obs.shape[0]
        logits = jnp.where(mask, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits, shape=(lanes, *space.shape)).astype(jnp.int32)

    return act


def ppo_policy(config: CollectConfig, run: Path, sigma: float | None = None) -> tuple[Policy, dict[str, Any]]:
    """A `train ppo` run's first seed: its sampled action, or (`sigma` given) its mean action plus N(0, sigma^2)."""
    import jax
    import jax.numpy as jnp

    from agentlab.rl.evaluate import load_policy

    if not run.is_dir():
        raise UsageError(
            f"--policy {config.policy!r}: valid policies are 'random', 'qre', 'planner', a train ppo RUN_DIR, "
            "qtable:RUN_DIR or noisy:RUN_DIR,sigma=S"
        )
    run_config, learner, params = load_policy(run)
    if run_config.env != config.env or dict(run_config.env_options) != dict(config.env_options):
        raise UsageError(
            f"--policy {run}: the run trained on {run_config.env} {dict(run_config.env_options) or ''}; collect on "
            f"the same kernel (--env {run_config.env} and its --env-option values)"
        )
    first = jax.tree.map(lambda x: x[0], params)
    if sigma is None:

        def act(key, obs, state):
            return learner.act(first, key, obs, False)

        return act, {"policy": "ppo", "run": str(run), "run_env": run_config.env}

    def noisy(key, obs, state):
        mean = learner.act(first, key, obs, True)
        return mean + sigma * jax.random.normal(key, mean.shape, jnp.float32)

    return noisy, {"policy": "noisy", "run": str(run), "run_env": run_config.env, "sigma": sigma}


def qre_policy(config: CollectConfig, env, params) -> tuple[Policy, dict[str, Any]]:
    """Sample each agent's action from the gems QRE at the joint state index of the agents' cells."""
    import jax
    import jax.numpy as jnp

    from agentlab.kernels.multi import gems_tabular
    from agentlab.rl import mamql_tabular

    layout = tabular_layout(config, env, params)
    next_state, reward = gems_tabular.export(layout, purple_quirk=bool(params.purple_quirk))
    eq = mamql_tabular.quantal_response_equilibrium(next_state, reward, gamma=config.gamma, lam=config.temperature)
    logits = jnp.log(jnp.asarray(np.maximum(eq.policy, 1e-300), jnp.float32))  # (2, S, A)
    size = env.size

    def act(key, obs, state):
        cells = state.agents  # (lanes, 2, 2) of (x, y)
        s = gems_tabular.state_index(cells[:, 0, 0], cells[:, 0, 1], cells[:, 1, 0], cells[:, 1, 1], size)
        lane_logits = jnp.stack([logits[0][s], logits[1][s]], axis=1)  # (lanes, 2, A)
        return jax.random.categorical(key, lane_logits).astype(jnp.int32)

    about = {
        "policy": "qre",
        "gamma": config.gamma,
        "temperature": config.temperature,
        "qre_residual": float(eq.residual),
        "qre_iterations": int(eq.iterations),
    }
    return act, about


def tabular_layout(config: CollectConfig, env, params):
    """The `gems_tabular.GemsLayout` of a gems kernel in its tabular setting (`UsageError` otherwise)."""
    from agentlab.kernels.multi import gems_tabular

    if config.env != "gems":
        raise UsageError(f"--policy qre is the tabular gems equilibrium; {config.env} has none")
    if params.collect or params.gem_cells is None:
        raise UsageError("--policy qre needs gems in its tabular setting: --env-option layout=tabular,size=5")
    return gems_tabular.layout_of(env, params)


QTABLE_COMMAND = "agentlab train qlearn"  # `rl.qlearn_training.COMMAND` (not imported: that pulls in numba)
QTABLE_FILE = "q_tables.npy"  # `rl.qlearn_training.Q_FILE`


def parse_qtable_spec(spec: str) -> tuple[Path, int]:
    """``RUN_DIR[,session=K]`` (the part after ``qtable:``) -> ``(run, session)``; session 0 unless given."""
    run, _, rest = spec.partition(",session=")
    if not rest:
        return Path(spec), 0
    try:
        session = int(rest)
    except ValueError:
        raise UsageError(f"--policy qtable:{spec}: session={rest!r} is not a session index (an integer >= 0)") from None
    if session < 0:
        raise UsageError(f"--policy qtable:{spec}: session={session} is negative")
    return Path(run), session


def load_qtable(spec: str, firms: int, prices: int) -> dict[str, Any]:
    """The Q tables of one session of a `train qlearn` run, checked against a calvano kernel of `firms` firms and
    `prices` prices: ``{"q" float64 (n, m**n, m), "run", "session", "converged", "delta", "sessions", "discount"
    (the run's delta)}`` (`UsageError`, one line, on anything wrong)."""
    run, session = parse_qtable_spec(spec)
    label = f"--policy qtable:{spec}"
    try:
        record = rundir.load_record(run, QTABLE_COMMAND)["config"]
    except UsageError as error:
        raise UsageError(f"{label}: {error}") from None
    n, m = record.get("firms"), record.get("prices")
    if (n, m) != (firms, prices):
        raise UsageError(
            f"{label}: the run learned {n} firms x {m} prices; the kernel has {firms} x {prices} "
            f"(--env-option firms={n},prices={m})"
        )
    file = run / QTABLE_FILE
    if not file.is_file():
        raise UsageError(
            f"{label}: no {QTABLE_FILE} in the run (an unfinished run, or one from before Q tables were saved)"
        )
    try:
        tables = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{label}: {QTABLE_FILE} cannot be read ({error})") from None
    if tables.ndim != 4 or tables.shape[1:] != (n, m**n, m):
        raise UsageError(f"{label}: {QTABLE_FILE} has shape {tables.shape}, not (sessions, {n}, {m**n}, {m})")
    if session >= tables.shape[0]:
        raise UsageError(f"{label}: the run has sessions 0..{tables.shape[0] - 1}")
    q = np.array(tables[session], np.float64)
    if not np.isfinite(q).all():
        raise UsageError(f"{label}: session {session}'s Q tables hold NaN or infinite values")
    converged, delta = None, None
    try:
        import polars as pl

        row = pl.read_parquet(run / "metrics.parquet").filter(pl.col("session") == session)
        if len(row):
            converged, delta = bool(row["converged"][0]), float(row["delta"][0])
    except Exception:  # noqa: BLE001 - the facts are informative only
        pass
    return {
        "q": q,
        "run": str(run),
        "session": session,
        "sessions": int(tables.shape[0]),
        "converged": converged,
        "delta": delta,
        "discount": float(record.get("delta", 0.95)),
    }


def boltzmann(q: np.ndarray, temperature: float) -> np.ndarray:
    """``log softmax(q / temperature)`` over the last axis, float64 (stable for Q values far above T)."""
    z = (q - q.max(axis=-1, keepdims=True)) / temperature
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def qtable_policy(config: CollectConfig, env, params, run: Path) -> tuple[Policy, dict[str, Any]]:
    """Each firm samples its price from ``softmax(Q_i(s, .) / T)`` of one session's final Q table, with ``s`` the
    Q-learner's state index of the kernel's last prices, ``s = sum_i a_i m**(n-1-i)`` (`rl.qlearn`'s encoding).

    ``qtable:RUN_DIR`` plays session 0 of the run, ``qtable:RUN_DIR,session=K`` session K."""
    import jax
    import jax.numpy as jnp

    spec = config.policy.removeprefix("qtable:")
    if config.env != "calvano":
        raise UsageError(f"--policy qtable:{spec} plays a train qlearn run's Q tables on calvano, not {config.env}")
    n, m = env.num_agents, env.num_prices
    table = load_qtable(spec, n, m)
    logits = jnp.asarray(boltzmann(table["q"], config.temperature), jnp.float32)  # (n, m**n, m)
    place = jnp.asarray(m ** np.arange(n - 1, -1, -1), jnp.int32)

    def act(key, obs, state):
        s = jnp.sum(state.last_action * place, axis=-1)  # (lanes,)
        lane_logits = jnp.moveaxis(logits[:, s], 0, 1)  # (lanes, n, m)
        return jax.random.categorical(key, lane_logits).astype(jnp.int32)

    greedy = np.exp(boltzmann(table["q"], config.temperature)).max(axis=-1)  # (n, m**n)
    about = {
        "policy": "qtable",
        "run": table["run"],
        "session": table["session"],
        "session_converged": table["converged"],
        "session_delta": table["delta"],
        "temperature": config.temperature,
        "q_range": float(table["q"].max() - table["q"].min()),
        "mean_greedy_probability": float(greedy.mean()),
    }
    return act, about


# -- the driver --------------------------------------------------------------------------------------------
def lanes_for(config: CollectConfig, env, params, limit: int) -> int:
    """Parallel episodes per chunk (a power of two): what keeps a chunk's observations near `CHUNK_BYTES`, and no
    more than the episodes the run needs (``--steps``: at least one row per episode step)."""
    obs = math.prod(env.observation_space(params).shape) * 4 * 2
    lanes = min(MAX_LANES, max(1, CHUNK_BYTES // max(1, obs * limit)))
    needed = config.episodes if config.episodes is not None else -(-config.steps // limit)
    return 2 ** int(math.log2(min(lanes, 2 ** math.ceil(math.log2(max(1, needed))))))


def chunk_function(env, params, policy: Policy, lanes: int, limit: int):
    """A jitted ``key -> arrays``: `lanes` episodes of at most `limit` steps, outputs ``(lanes, limit, ...)`` and
    ``alive`` bool ``(lanes, limit)`` (the step belongs to the episode)."""
    import jax
    import jax.numpy as jnp

    from agentlab import compiler, hashing

    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    space = env.action_space(params)
    clip = None if hasattr(space, "n") else (space.low, space.high)  # a row holds the executed (clipped) action

    def run(key):
        k_reset, k_steps = hashing.split_key(key, 2)
        obs, state = reset(hashing.split_key(k_reset, lanes), params)

        def body(carry, k):
            obs, state, alive = carry
            k_act, k_env = hashing.split_key(k, 2)
            action = policy(k_act, obs, state)
            if clip is not None:
                action = jnp.clip(action.astype(jnp.float32), *clip)
            next_obs, next_state, reward, terminated, truncated, _ = step(
                hashing.split_key(k_env, lanes), state, action, params
            )
            row = {
                "obs": obs.astype(jnp.float32),
                "action": action,
                "reward": reward.astype(jnp.float32),
                "next_obs": next_obs.astype(jnp.float32),
                "terminated": terminated,
                "truncated": truncated,
                "alive": alive,
            }
            return (next_obs, next_state, alive & ~(terminated | truncated)), row

        init = (obs, state, jnp.ones(lanes, bool))
        _, rows = jax.lax.scan(body, init, hashing.split_key(k_steps, limit))
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rows)

    return compiler.jit(run)


def chunk_rows(out: dict[str, np.ndarray], first_episode: int, lanes: int, limit: int) -> dict[str, np.ndarray]:
    """The rows of one chunk's outputs, episode by episode (episode ids from `first_episode`)."""
    alive = out["alive"].reshape(-1)
    rows = {k: v.reshape(lanes * limit, *v.shape[2:])[alive] for k, v in out.items() if k != "alive"}
    episode = np.repeat(np.arange(first_episode, first_episode + lanes, dtype=np.int64), limit)
    t = np.tile(np.arange(limit, dtype=np.int32), lanes)
    rows["episode"], rows["t"] = episode[alive], t[alive]
    return rows


def part_path(out: Path, index: int) -> Path:
    return out / "checkpoints" / f"part-{index:06d}.parquet"


def collect(
    config: CollectConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Collect the dataset `config` describes into the run directory `out`; return the summary.

    `on_chunk` gets ``{"rows", "total", "unit"}`` after each chunk (``unit``: "episodes" or "rows")."""
    config = config.validate()
    env, params, limit = make_env(config)
    policy, about = make_policy(config, env, params)
    lanes = lanes_for(config, env, params, limit)
    limits.check_memory(
        lanes * limit * (math.prod(env.observation_space(params).shape) * 8 + 64) * 3,
        f"collecting {lanes} episodes x {limit} steps at once",
    )
    with rundir.open_run(out, COMMAND, config.record(), resume=resume, force=force, resumable=True) as work:
        return _collect(config, work, env, params, limit, policy, about, lanes, on_chunk)


def _collect(config, out, env, params, limit, policy, about, lanes, on_chunk) -> dict[str, Any]:
    import jax
    import polars as pl

    (out / "checkpoints").mkdir(exist_ok=True)
    started = time.perf_counter()
    run = chunk_function(env, params, policy, lanes, limit)
    compile_started = time.perf_counter()
    compiled = run.lower(jax.random.PRNGKey(0)).compile()
    compile_seconds = time.perf_counter() - compile_started
    unit, total = ("episodes", config.episodes) if config.episodes is not None else ("rows", config.steps)
    frames, have, index, compute = [], 0, 0, 0.0
    while have < total:
        path = part_path(out, index)
        if not path.exists():
            tick = time.perf_counter()
            key = jax.random.fold_in(jax.random.PRNGKey(config.seed), index)
            result = jax.tree.map(np.asarray, jax.block_until_ready(compiled(key)))
            frame = data.frame(chunk_rows(result, index * lanes, lanes, limit))
            compute += time.perf_counter() - tick
            rundir.write_parquet(path, frame)
        else:  # a chunk a resumed run finished before
            frame = pl.read_parquet(path)
        frames.append(frame)
        have += lanes if unit == "episodes" else len(frame)
        index += 1
        if on_chunk is not None:
            on_chunk({"rows": min(have, total), "total": total, "unit": unit})
    table = pl.concat(frames)
    cut = False
    if unit == "episodes":
        table = table.filter(pl.col("episode") < total)
    else:
        table = table.head(total)
        last = table.tail(1)
        cut = not (last["terminated"][0] or last["truncated"][0])
        if cut:  # the budget cut an episode: its last row says so, and its return is not counted
            table = table.with_columns(
                truncated=pl.when(pl.int_range(pl.len()) == len(table) - 1).then(True).otherwise(pl.col("truncated"))
            )
    rundir.write_parquet(out / data.DATA_FILE, table)
    summary = summarise(config, table, cut, about, compile_seconds, compute, time.perf_counter() - started)
    rundir.write_json(out / "summary.json", summary)
    return summary


def summarise(config, table, cut: bool, about, compile_seconds: float, compute: float, wall: float) -> dict[str, Any]:
    """Rows, episodes, per-agent mean return over the complete episodes (not one the ``--steps`` budget `cut`),
    and timings."""
    reward = table["reward"].to_numpy()
    episode = table["episode"].to_numpy()
    ends = (table["terminated"] | table["truncated"]).to_numpy()
    done = np.unique(episode[ends])
    if cut:
        done = done[done != episode[-1]]
    ids = np.unique(episode)
    returns = data.episode_returns(reward, episode, done)
    agent_returns = returns.mean(axis=0) if len(returns) else np.full(returns.shape[1], np.nan)
    return {
        "command": COMMAND,
        "env": config.env,
        "env_options": dict(config.env_options),
        **about,
        "rows": len(table),
        "episodes": int(len(ids)),
        "complete_episodes": int(len(done)),
        "mean_return": float(np.mean(agent_returns)),
        "agent_returns": [float(x) for x in agent_returns],
        "terminated_share": float(table["terminated"].mean()) if len(table) else 0.0,
        "compile_seconds": compile_seconds,
        "collect_seconds": compute,
        "rows_per_second": len(table) / compute if compute > 0 else None,
        "wall_seconds": wall,
    }
