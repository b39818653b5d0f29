"""Stable-Baselines3 bridge: the Gymnasium adapter's vector env (`agentlab.adapters.gymnasium.make_vec`) as a
Stable-Baselines3 `VecEnv`, so SB3's learners train on an agentlab kernel with every lane stepped in one jitted `vmap`.

    >>> from stable_baselines3 import PPO
    >>> from agentlab.adapters.sb3 import make_vec
    >>> venv = make_vec("breakout", 16, max_steps=1000)  # the options of agentlab.kernels.make
    >>> model = PPO("MlpPolicy", venv, seed=0).learn(100_000)

The two vector APIs differ in when a finished lane starts over. Gymnasium 1.x's `AutoresetMode.NEXT_STEP` (the
adapter's) returns the episode's last observation with the flags and the new episode's first observation on the *next*
step, which ignores its action (reward 0, flags False). SB3's `VecEnv` (Stable-Baselines3 2.x, `DummyVecEnv`'s
contract) resets within the step: ``step`` returns ``(obs, rewards, dones, infos)`` with ``dones = terminated |
truncated``, the new episode's first observation in `obs` where a lane is done, and the finished episode's last one in
``infos[i]["terminal_observation"]``; ``infos[i]["TimeLimit.truncated"]`` is ``truncated and not terminated`` (SB3
bootstraps from the terminal observation there). `SB3VecEnv.step_wait` makes one adapter step and, where a lane
finished, one masked reset (``reset(options={"reset_mask": done})``: those lanes start over from their own key
chains, the others and their keys are left as they were), so no step is spent on NEXT_STEP's empty transition.

Shapes and dtypes: `obs` is the adapter's, ``(num_envs, *observation_shape)`` in the kernel's dtype (bool
``(num_envs, 10, 10, C)`` for the MinAtar games: SB3's `MlpPolicy` flattens it to float; its `CnnPolicy` expects
uint8 images of at least 36x36 and does not fit), `rewards` float32 ``(num_envs,)``, `dones` bool ``(num_envs,)``,
`infos` a list of ``num_envs`` dicts. Actions: SB3's ``(num_envs,)`` int64 for `Discrete` kernels, ``(num_envs,
act_dim)`` float32 for `Box` ones, cast to the kernel's dtype by the adapter.

Seeding: SB3's ``seed(s)`` (called by ``PPO(..., seed=s)``) gives lane i the seed ``s + i`` at the next ``reset()``,
as for a `DummyVecEnv` of ``agentlab.adapters.gymnasium.make`` envs; since a lane of `make_vec` equals that env reset
with the same seed, and a masked reset continues the lane's key chain as ``env.reset()`` does, this `VecEnv` gives the
`DummyVecEnv`'s arrays bit for bit (tested), one jitted call (two where a lane finished) per step instead of
``num_envs``.

The lanes share one vector env: `get_attr` and `env_method` answer from it for every index, `set_attr` sets it for all
lanes (an index list that is not every lane is refused), and `env_is_wrapped` is False (no Gymnasium wrappers; wrap
with SB3's `VecMonitor` to log episode returns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError:  # pragma: no cover (stable-baselines3 is not installed)
    raise ImportError(
        "agentlab.adapters.sb3 needs stable-baselines3 (and torch): pip install stable-baselines3"
    ) from None

from gymnasium.vector import AutoresetMode

from agentlab.adapters.gymnasium import GymnasiumVectorEnv
from agentlab.adapters.gymnasium import make_vec as make_gymnasium_vec
from agentlab.errors import UsageError


class SB3VecEnv(VecEnv):
    """An agentlab `GymnasiumVectorEnv` (`AutoresetMode.NEXT_STEP`) as a Stable-Baselines3 `VecEnv` that resets
    finished lanes within the step (see the module docstring)."""

    def __init__(self, envs: GymnasiumVectorEnv):
        if not isinstance(envs, GymnasiumVectorEnv):
            raise UsageError(
                f"SB3VecEnv takes a vector env of agentlab.adapters.gymnasium.make_vec, got {type(envs).__name__}"
            )
        if envs.metadata.get("autoreset_mode") != AutoresetMode.NEXT_STEP:
            raise UsageError(f"SB3VecEnv needs AutoresetMode.NEXT_STEP, got {envs.metadata.get('autoreset_mode')}")
        self.envs = envs
        self._actions: np.ndarray | None = None
        self._started = False
        super().__init__(envs.num_envs, envs.single_observation_space, envs.single_action_space)

    # ------------------------------------------------------------------------------------- stepping
    def reset(self) -> np.ndarray:
        """Every lane starts a new episode: from the seeds of the last `seed` call (lane i: ``seed + i``), else from
        each lane's key chain. Returns the observations ``(num_envs, *observation_shape)``."""
        seeds = None if all(seed is None for seed in self._seeds) else list(self._seeds)
        obs, _ = self.envs.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """One step of every lane with the actions of `step_async`: ``(obs, rewards, dones, infos)`` in SB3's form,
        finished lanes already reset."""
        if not self._started or self._actions is None:
            raise UsageError("SB3VecEnv: call reset() and then step_async(actions) before step_wait()")
        obs, rewards, terminated, truncated, _ = self.envs.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [
            {"TimeLimit.truncated": bool(truncated[i] and not terminated[i])} for i in range(self.num_envs)
        ]
        if dones.any():
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = obs[i]
            obs, _ = self.envs.reset(options={"reset_mask": dones})  # lanes not done keep their observation
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.envs.close()

    # ------------------------------------------------------------------------------ attributes
    def _count(self, indices: None | int | Sequence[int]) -> int:
        return len(list(self._get_indices(indices)))

    def get_attr(self, attr_name: str, indices: None | int | Sequence[int] = None) -> list[Any]:
        """The vector env's attribute `attr_name`, once per index (the lanes share it)."""
        return [getattr(self.envs, attr_name)] * self._count(indices)

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Sequence[int] = None) -> None:
        """Sets `attr_name` on the vector env, so for every lane; refuses an index list that is not every lane."""
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise UsageError(f"SB3VecEnv: the lanes share one vector env; set_attr takes every lane, got {indices!r}")
        setattr(self.envs, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Sequence[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        """Calls the vector env's method once and returns its result once per index (the lanes share it)."""
        result = getattr(self.envs, method_name)(*method_args, **method_kwargs)
        return [result] * self._count(indices)

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Sequence[int] = None) -> list[bool]:
        """False for every index: the lanes are no Gymnasium env and carry no wrapper."""
        return [False] * self._count(indices)


def make_vec(name: str, num_envs: int, **options: Any) -> SB3VecEnv:
    """`num_envs` lanes of the single-agent kernel `name` (the options of `agentlab.kernels.make`) as a
    Stable-Baselines3 `VecEnv`: ``SB3VecEnv(agentlab.adapters.gymnasium.make_vec(name, num_envs, **options))``.

    Raises `UsageError` (a `ValueError`) as the Gymnasium adapter does (multi-agent or unknown kernel, unknown
    option, ``num_envs`` not a positive integer)."""
    return SB3VecEnv(make_gymnasium_vec(name, num_envs, **options))
