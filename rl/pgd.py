"""Policy-guided diffusion (Jackson et al., RLC 2024) on agentlab's kernels: the pieces between the trajectory
diffusion model (`rl.diffusion`), the offline agents (`rl.offline`, `rl.world_model`) and the kernels.

A diffused window is float32 ``(length, dim)`` of rows ``[s_t, arctanh(a_t), r_t, done_t]`` (`rl.diffusion`'s
row layout) in raw units; row t's next state is row t + 1's state. Because every kernel here is its own exact
simulator, a generated transition ``(s_t, a_t) -> s_{t+1}`` is checked against the kernel's true next observation
``env.transition_from_observation(s_t, a_t)``:

- **dynamics error** (`measure`): ``|| project(s_{t+1}) - true_next(project(s_t), tanh(arctanh a_t)) ||_2`` in the
  observation's own units, per step t of the window (``dynamics_error_by_step``, ``length - 1`` values) and its mean
  over valid transitions. ``project`` maps a generated observation to one a state can produce
  (`valid_projection`: pendulum's (cos, sin) pair renormalised to the unit circle, i.e. the angle from atan2 and
  the speed clipped to its limit; maze2d unchanged);
- **invalid rate**: the share of generated transitions whose state or next state is not an observation of the
  kernel (maze2d: a position inside a wall or outside the maze); they are left out of the error;
- **target log-likelihood**: the mean over generated rows of the target policy's ``log pi(a_t | s_t)`` at the
  generated (unprojected) state, the one a learner trains on.

The same measures apply to a world model's rollouts (`measure_transitions`), so the paper's trade-off (dynamics
error against target likelihood) is measured exactly for both generators.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

DIFFUSION_COMMAND = "train pgd"  # the command whose run directories hold a trained denoiser
MODEL_FILE = "model.npz"  # its EMA weights, standardiser and row layout

LogProb = Callable[[Any, Any], Any]  # (obs (..., obs_dim), action (..., act_dim)) -> (...,)
PolicyLogProb = Callable[[Any, Any, Any], Any]  # (policy state, obs, action) -> (...,): `rl.offline`'s log_prob


@dataclasses.dataclass(frozen=True)
class Rows:
    """Where a row's parts lie: ``[s (obs_dim), arctanh(a) (act_dim), r, done]``."""

    obs_dim: int
    act_dim: int

    @property
    def dim(self) -> int:
        return self.obs_dim + self.act_dim + 2

    def split(self, x):
        """``(obs, pre_tanh_action, reward, done)`` of rows ``(..., dim)``."""
        o, a = self.obs_dim, self.obs_dim + self.act_dim
        return x[..., :o], x[..., o:a], x[..., a], x[..., a + 1]


def valid_projection(env, params, obs):
    """Generated observations ``(..., obs_dim)`` mapped to ones the kernel can produce: the observation of the
    state they show, ``observe(state_from_observation(obs))`` (pendulum: the angle from atan2 of the (cos, sin)
    pair, the speed clipped to its limit; maze2d: unchanged)."""
    import jax

    def one(o):
        key = jax.random.key(0)
        return env.observe(key, env.state_from_observation(o, params), params)

    flat = obs.reshape(-1, obs.shape[-1])
    return jax.vmap(one)(flat).reshape(obs.shape)


def transition_measures(env, params, obs, action, next_obs, log_prob: LogProb | None = None) -> dict[str, Any]:
    """Per-transition measures of generated transitions, all arrays of the leading shape of `obs`:
    ``error`` float32 (NaN where invalid), ``valid`` bool, ``log_prob`` float32 (or None). `action` is the executed
    action in [-1, 1]. Pure JAX."""
    import jax
    import jax.numpy as jnp

    s = valid_projection(env, params, obs)
    s_next = valid_projection(env, params, next_obs)
    flat_s = s.reshape(-1, s.shape[-1])
    flat_a = jnp.clip(action, -1.0, 1.0).reshape(-1, action.shape[-1])
    true_next, _ = jax.vmap(lambda o, a: env.transition_from_observation(o, a, params))(flat_s, flat_a)
    true_next = true_next.reshape(s.shape)
    check = jax.vmap(lambda o: env.valid_observation(o, params))
    valid = (check(obs.reshape(-1, obs.shape[-1])) & check(next_obs.reshape(-1, obs.shape[-1]))).reshape(s.shape[:-1])
    error = jnp.where(valid, jnp.linalg.norm(s_next - true_next, axis=-1), jnp.nan)
    out = {"error": error.astype(jnp.float32), "valid": valid, "log_prob": None}
    if log_prob is not None:
        out["log_prob"] = log_prob(obs, jnp.clip(action, -1.0, 1.0)).astype(jnp.float32)  # the state as generated
    return out


@functools.cache
def _measure_function(env, log_prob):
    """One compiled measure per kernel and target-policy function: ``(params, obs, action, next_obs, policy)``."""
    import jax

    def measure(params, obs, action, next_obs, policy):
        target = None if log_prob is None else functools.partial(log_prob, policy)
        return transition_measures(env, params, obs, action, next_obs, target)

    return jax.jit(measure)


def summarise_measures(error: np.ndarray, valid: np.ndarray, log_prob: np.ndarray | None) -> dict[str, Any]:
    """``dynamics_error`` (mean over valid transitions), ``dynamics_error_by_step`` (mean over the leading axis,
    where `error` is ``(windows, steps)``), ``invalid_rate``, ``target_log_likelihood`` (None without a target),
    ``transitions``."""
    error = np.asarray(error, np.float64)
    valid = np.asarray(valid, bool)
    out: dict[str, Any] = {
        "dynamics_error": float(np.nanmean(error)) if valid.any() else None,
        "invalid_rate": float(1.0 - valid.mean()) if valid.size else None,
        "target_log_likelihood": None if log_prob is None else float(np.mean(log_prob)),
        "transitions": int(valid.size),
    }
    if error.ndim == 2:
        counts = valid.sum(axis=0)
        totals = np.where(valid, error, 0.0).sum(axis=0)
        by_step = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
        out["dynamics_error_by_step"] = [None if not np.isfinite(x) else float(x) for x in by_step]
    return out


def window_transitions(rows: Rows, windows):
    """``(obs, action, reward, next_obs, done)`` of every consecutive pair of rows in each window: leading shape
    ``(windows, length - 1)``; the action is ``tanh`` of the diffused pre-tanh action, done is ``done_t > 0.5``."""
    import jax.numpy as jnp

    obs, pre, reward, done = rows.split(windows)
    return obs[:, :-1], jnp.tanh(pre[:, :-1]), reward[:, :-1], obs[:, 1:], (done[:, :-1] > 0.5).astype(jnp.float32)


def measure_transitions(
    env, params, obs, action, next_obs, log_prob: PolicyLogProb | None = None, policy: Any = None
) -> dict[str, Any]:
    """`summarise_measures` of generated transitions with a leading ``(rollouts, steps)`` or ``(n,)`` shape;
    the target likelihood is ``log_prob(policy, obs, action)`` (a function of a policy's state, so that one
    compiled measure serves every state of it)."""
    m = _measure_function(env, log_prob)(params, obs, action, next_obs, policy)
    log_p = None if m["log_prob"] is None else np.asarray(m["log_prob"])
    return summarise_measures(np.asarray(m["error"]), np.asarray(m["valid"]), log_p)


def measure_windows(env, params, rows: Rows, windows, log_prob: PolicyLogProb | None = None, policy: Any = None):
    """`measure_transitions` of diffused windows ``(n, length, dim)`` (raw units): ``(n, length - 1)`` steps."""
    obs, action, _, next_obs, _ = window_transitions(rows, windows)
    return measure_transitions(env, params, obs, action, next_obs, log_prob, policy)


# -- datasets and trained denoisers (shared by `train pgd` and `train offline`) ---------------------------------
def load_dataset(path, env: str | None = None):
    """``(dataset, env, params)``: a checked `agentlab data collect` dataset of a single-agent continuous-action
    kernel that can rebuild a state from an observation (pendulum, maze2d), and its kernel without auto-reset."""
    from pathlib import Path

    from agentlab.errors import UsageError
    from agentlab.kernels import make
    from agentlab.kernels.spaces import Box
    from agentlab.rl import data as datasets

    dataset = datasets.load(Path(path), env)
    kernel, params = make(dataset.env, auto_reset=False, **dataset.env_options)
    if kernel.multi_agent or not isinstance(kernel.action_space(params), Box):
        raise UsageError(
            f"--data {path}: {dataset.env} is not a single-agent continuous-action kernel; policy-guided "
            "diffusion runs on pendulum or maze2d datasets"
        )
    if not hasattr(kernel, "transition_from_observation"):
        raise UsageError(f"--data {path}: {dataset.env} cannot rebuild a state from an observation")
    return dataset, kernel, params


@dataclasses.dataclass(frozen=True)
class Diffuser:
    """A trained trajectory denoiser: `sample` draws windows float32 ``(n, window, dim)`` in raw units."""

    edm: Any  # the `rl.diffusion.EDMConfig` (its U-Net: `diffusion.make_model(edm)`)
    params: Any  # EMA weights
    standardizer: Any
    layout: Rows
    window: int

    def sample(self, key, n: int, steps: int, log_prob: PolicyLogProb | None = None, policy: Any = None,
               guidance: float = 0.0):  # fmt: skip
        """`n` windows by the stochastic Heun sampler in `steps` steps, guided toward ``log_prob(policy, s, a)``
        at strength `guidance` (unguided where `log_prob` is None or `guidance` is 0)."""
        from agentlab.rl import diffusion

        return diffusion.sample_windows(
            key,
            self.params,
            diffusion.make_model(self.edm).apply,
            self.edm,
            n,
            self.window,
            diffusion.RowLayout(self.layout.obs_dim, self.layout.act_dim),
            self.standardizer,
            steps,
            log_prob_fn=None if guidance == 0 else log_prob,
            guidance=float(guidance),
            policy=policy,
        )


def save_model(path, ema_params, standardizer, layout: Rows, record: dict[str, Any]) -> None:
    """``model.npz``: the EMA weights and the standardiser, with the row layout and the run's config."""
    from agentlab.rl import checkpoint

    tree = {"params": ema_params, "mean": standardizer.mean, "std": standardizer.std}
    checkpoint.save(path, tree, {"obs_dim": layout.obs_dim, "act_dim": layout.act_dim, **record})


def load_diffuser(run, env: str | None = None) -> tuple[Diffuser, dict[str, Any]]:
    """``(Diffuser, record)`` of a finished `train pgd` run (`UsageError`, one line, if it is not one, is
    unfinished, or learned another kernel than `env`); `record` is its config plus the row layout."""
    from pathlib import Path

    import jax
    import jax.numpy as jnp

    from agentlab import rundir
    from agentlab.errors import UsageError
    from agentlab.kernels.names import canonical_id
    from agentlab.rl import checkpoint, diffusion

    run = Path(run)
    try:
        config = rundir.load_record(run, DIFFUSION_COMMAND)["config"]
    except UsageError as error:
        raise UsageError(f"--diffusion {run}: {error}") from None
    if not (run / MODEL_FILE).is_file() or not (run / "summary.json").is_file():
        raise UsageError(f"--diffusion {run}: the run has not finished (no {MODEL_FILE}); --resume it first")
    summary = rundir.read_json_file(run / "summary.json", "summary")
    if env is not None and summary.get("env") != canonical_id(env):
        raise UsageError(f"--diffusion {run}: it learned {summary.get('env')} data, not {env}")
    meta = rundir.read_json_file((run / MODEL_FILE).with_suffix(".json"), "model metadata")
    layout = Rows(int(meta["obs_dim"]), int(meta["act_dim"]))
    edm = diffusion.EDMConfig(channels=tuple(config["channels"]))
    state = diffusion.init_state(jax.random.PRNGKey(0), edm, int(config["window"]), layout.dim)
    template = {"params": state.ema_params, "mean": jnp.zeros(layout.dim), "std": jnp.zeros(layout.dim)}
    tree, _ = checkpoint.load(run / MODEL_FILE, template)
    standardizer = diffusion.Standardizer(tree["mean"], tree["std"])
    return Diffuser(edm, tree["params"], standardizer, layout, int(config["window"])), {**config, **meta}
