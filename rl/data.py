"""Demonstration datasets: the ``data.parquet`` schema that `agentlab data collect` writes and the learners read.

One row per environment step, episodes in order, steps in order within an episode:

====================  =========================================  ==================================================
column                dtype (polars)                             meaning
====================  =========================================  ==================================================
``schema_version``    UInt16                                     `SCHEMA_VERSION` (the same in every row)
``episode``           Int64                                      episode id, 0-based, consecutive
``t``                 Int32                                      time step within the episode, 0-based
``obs``               Array(Float32, obs_shape)                  observation the action was chosen from; a
                                                                 multi-agent kernel's is ``(num_agents, ...)``
``action``            Int32 or Array(Int32, (num_agents,))       discrete action index per agent (or the executed
                      or Array(Float32, (dim,))                  continuous action, clipped to the space)
``reward``            Float32 or Array(Float32, (num_agents,))   reward of the step, per agent
``next_obs``          as ``obs``                                 observation after the step (the true one, also
                                                                 on the last step of an episode)
``terminated``        Boolean                                    the episode ended in a terminal state
``truncated``         Boolean                                    it was cut: the time limit, or the dataset's
                                                                 step budget (``--steps``) on its last row
====================  =========================================  ==================================================

`load` reads a dataset run directory (its ``config.json`` names the kernel and its options) and checks the
schema, every column's dtype and shape against the kernel's spaces, the action ranges, NaNs and the row count;
whatever is wrong is one `UsageError` line, so a command refuses a bad dataset before it writes anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import rundir
from agentlab.errors import UsageError

SCHEMA_VERSION = 1
DATA_FILE = "data.parquet"
COMMAND = "data collect"
COLUMNS = ("schema_version", "episode", "t", "obs", "action", "reward", "next_obs", "terminated", "truncated")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A loaded, checked dataset: NumPy arrays with ``N`` rows.

    ``obs``/``next_obs`` float32 ``(N, *obs_shape)``; ``action`` int32 ``(N[, num_agents])`` (float32
    ``(N, dim)`` for continuous actions); ``reward`` float32 ``(N[, num_agents])``; ``terminated``,
    ``truncated`` bool ``(N,)``; ``episode`` int64 ``(N,)``; ``t`` int32 ``(N,)``. `env` and `env_options`
    rebuild the kernel (``make(env, **env_options)``); `record` is the collecting run's config."""

    env: str
    env_options: dict[str, Any]
    arrays: dict[str, np.ndarray]
    record: dict[str, Any]

    def __len__(self) -> int:
        return len(self.arrays["episode"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def head(self, rows: int) -> Dataset:
        """The first `rows` rows (the expert-transition budget of a learner)."""
        return dataclasses.replace(self, arrays={k: v[:rows] for k, v in self.arrays.items()})


def frame(arrays: dict[str, np.ndarray]) -> Any:
    """A polars DataFrame in the schema from arrays with a leading row axis (see the module docstring)."""
    import polars as pl

    rows = len(arrays["episode"])
    columns = {
        "schema_version": pl.Series("schema_version", np.full(rows, SCHEMA_VERSION, np.uint16)),
        "episode": pl.Series("episode", np.asarray(arrays["episode"], np.int64)),
        "t": pl.Series("t", np.asarray(arrays["t"], np.int32)),
    }
    for name in ("obs", "action", "reward", "next_obs"):
        columns[name] = pl.Series(name, np.ascontiguousarray(arrays[name]))
    for name in ("terminated", "truncated"):
        columns[name] = pl.Series(name, np.asarray(arrays[name], bool))
    return pl.DataFrame(columns)


def expected_shapes(env: Any, params: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per array column: (shape of one row, NumPy dtype kind) the kernel's spaces imply."""
    from agentlab.kernels.spaces import Discrete

    obs = tuple(env.observation_space(params).shape)
    space = env.action_space(params)
    action = (tuple(space.shape), "i" if isinstance(space, Discrete) else "f")
    reward = (env.num_agents,) if env.multi_agent else ()
    return {"obs": (obs, "f"), "next_obs": (obs, "f"), "action": action, "reward": (reward, "f")}


def load(path: Path, env: str | None = None, rows: int | None = None) -> Dataset:
    """The checked dataset in the run directory `path` (`UsageError`, one line, on anything wrong).

    `env`: the kernel the caller expects (an alias is fine); `rows`: keep the first `rows` rows and refuse a
    dataset with fewer."""
    from agentlab.kernels import make
    from agentlab.kernels.names import canonical_id
    from agentlab.kernels.spaces import Discrete

    path = Path(path)
    label = f"--data {path}"
    if not path.is_dir():
        raise UsageError(f"{label}: not a dataset directory (write one with `agentlab data collect`)")
    try:
        record = rundir.load_record(path, COMMAND)["config"]
    except UsageError as error:
        raise UsageError(f"{label}: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("env"), str):
        raise UsageError(f"{label}: its config.json names no kernel")
    data_env = canonical_id(record["env"])
    options = record.get("env_options") or {}
    if not isinstance(options, dict):
        raise UsageError(f"{label}: its config.json has corrupt env_options")
    if env is not None and canonical_id(env) != data_env:
        raise UsageError(f"{label} holds {data_env} data, not {canonical_id(env)}")
    kernel, params = make(data_env, auto_reset=False, **options)
    arrays = _read(path / DATA_FILE, label)
    count = len(arrays["episode"])
    if count == 0:
        raise UsageError(f"{label}: the dataset has no rows")
    if rows is not None:
        if rows > count:
            raise UsageError(f"--expert-steps {rows:,} is more than the {count:,} rows of {path}")
        arrays = {k: v[:rows] for k, v in arrays.items()}
    for name, (shape, kind) in expected_shapes(kernel, params).items():
        value = arrays[name]
        if value.shape[1:] != shape or value.dtype.kind != kind:
            raise UsageError(
                f"{label}: column {name} has rows of shape {value.shape[1:]} ({value.dtype}); {data_env} needs "
                f"{shape} ({'integer' if kind == 'i' else 'float'})"
            )
        if kind == "f" and not np.isfinite(value).all():
            bad = int(np.argwhere(~np.isfinite(value.reshape(len(value), -1)).all(axis=1))[0, 0])
            raise UsageError(f"{label}: column {name} holds NaN or infinite values (first at row {bad})")
    space = kernel.action_space(params)
    action = arrays["action"]
    if isinstance(space, Discrete):
        outside = (action < 0) | (action >= space.n)
        valid = f"0..{space.n - 1}"
    else:
        outside = (action < np.asarray(space.low)) | (action > np.asarray(space.high))
        valid = f"[{np.min(space.low):g}, {np.max(space.high):g}]"
    if outside.any():
        bad = int(np.argwhere(outside.reshape(len(action), -1).any(axis=1))[0, 0])
        raise UsageError(f"{label}: actions out of range at row {bad} (valid: {valid})")
    return Dataset(env=data_env, env_options=dict(options), arrays=finish(arrays), record=record)


def _read(file: Path, label: str) -> dict[str, np.ndarray]:
    import polars as pl

    if not file.is_file():
        raise UsageError(f"{label}: no {DATA_FILE} in it")
    try:
        table = pl.read_parquet(file)
    except OSError as error:
        raise rundir.file_error(label, error) from None
    except Exception as error:  # polars raises its own errors for corrupt files
        raise UsageError(f"{label}: {DATA_FILE} cannot be read as Parquet (corrupt or truncated?)") from error
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UsageError(f"{label}: {DATA_FILE} lacks the column(s) {', '.join(missing)}")
    versions = table["schema_version"]
    if not versions.dtype.is_integer() or versions.n_unique() > 1 or (len(versions) and versions[0] != SCHEMA_VERSION):
        raise UsageError(f"{label}: {DATA_FILE} is not schema version {SCHEMA_VERSION} (collect it again)")
    arrays = {}
    for name, kinds in (("episode", "iu"), ("t", "iu"), ("terminated", "b"), ("truncated", "b")):
        value = table[name].to_numpy()
        if value.dtype.kind not in kinds or value.ndim != 1:
            raise UsageError(
                f"{label}: column {name} has dtype {table[name].dtype}; the schema needs "
                f"{'a boolean' if kinds == 'b' else 'an integer'} column"
            )
        arrays[name] = value
    for name in ("obs", "action", "reward", "next_obs"):
        try:
            value = table[name].to_numpy()
        except Exception:  # noqa: BLE001 - a ragged or non-numeric column
            raise UsageError(f"{label}: column {name} is not a numeric array column") from None
        if value.dtype == object or value.dtype.kind not in "iuf":
            raise UsageError(f"{label}: column {name} has dtype {table[name].dtype}, not numeric arrays")
        arrays[name] = value
    arrays["episode"] = arrays["episode"].astype(np.int64)
    arrays["t"] = arrays["t"].astype(np.int32)
    for name in ("obs", "next_obs", "reward"):
        if arrays[name].dtype.kind == "f":
            arrays[name] = arrays[name].astype(np.float32, copy=False)
    if arrays["action"].dtype.kind in "iu":
        arrays["action"] = arrays["action"].astype(np.int64, copy=False)  # range checked, then int32
    return arrays


def episode_returns(reward: np.ndarray, episode: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """float64 ``(episodes, agents)``: the summed reward of every episode whose id is in `complete`, in id
    order; `reward` ``(N[, agents])`` and `episode` ``(N,)`` are rows."""
    reward = np.asarray(reward).reshape(len(reward), -1)
    keep = np.isin(episode, complete)
    ids, inverse = np.unique(episode[keep], return_inverse=True)
    return np.stack(
        [np.bincount(inverse, weights=reward[keep, i], minlength=len(ids)) for i in range(reward.shape[1])], 1
    )


def finish(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Final dtypes of checked arrays (int32 discrete actions)."""
    if arrays["action"].dtype.kind in "iu":
        arrays = {**arrays, "action": arrays["action"].astype(np.int32)}
    return arrays


def dataset_return(dataset, limit: int | None) -> float | None:
    """Mean over agents of the dataset's per-agent return over its complete episodes: those that terminated or
    reached the time limit `limit` (not one cut by a row budget); None if there is none."""
    episode = dataset["episode"]
    complete_end = dataset["terminated"] | (dataset["truncated"] & (dataset["t"] + 1 == (limit or 0)))
    returns = episode_returns(dataset["reward"], episode, episode[complete_end])
    return float(returns.mean()) if len(returns) else None
