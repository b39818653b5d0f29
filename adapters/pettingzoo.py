"""PettingZoo adapter: a multi-agent kernel as a `pettingzoo.ParallelEnv` (`parallel_env`).

    >>> from agentlab.adapters.pettingzoo import parallel_env
    >>> env = parallel_env("coordination", max_steps=32)
    >>> observations, infos = env.reset(seed=0)  # dicts keyed by agent: leader_0, follower_0, follower_1
    >>> actions = {agent: env.action_space(agent).sample(infos[agent].get("action_mask")) for agent in env.agents}
    >>> observations, rewards, terminations, truncations, infos = env.step(actions)

Agents: `possible_agents` lists the kernel's agents in its own order (agent i of the kernel's arrays is
``possible_agents[i]``), each named ``{role}_{k}``, k counting the agents of that role from 0: ``leader_0``,
``follower_0``, ... (coordination), ``firm_0``, ... (calvano, market-crash), ``seller_0``, ..., ``buyer_0``, ...
(market-lemons), ``critical_0``, ``residential_0``, ... (grid-curtailment: its participant classes, cycling),
``agent_0``, ``agent_1`` (gems, and any kernel whose roles have no name in `ROLE_NAMES`). The kernels end an episode
for the whole environment (one `terminated` / `truncated`), so every agent gets the same flags and all leave
`agents` together on the step that ends the episode; stepping on without `reset` is refused.

Spaces, per agent (the kernel's space without its agent axis, translated as the Gymnasium adapter does,
`agentlab.adapters.gymnasium.gymnasium_space`): ``Discrete(n)`` (int64 actions, as Gymnasium samples them) or
``Box(low, high, shape, dtype)`` with the kernel's bounds. Each agent's observation is its row of the kernel's
``(num_agents, ...)`` observation, as a NumPy array; rewards are Python floats and flags Python bools.

Action masks: where roles differ in their actions (the kernel's `action_mask` is not None: coordination's leader may
not pick the last option, market-lemons' sellers list and buyers pick a slot), ``infos[agent]["action_mask"]`` is that
agent's row of ``env.action_mask(params)`` as a read-only int8 ``(n,)`` array, on reset and on every step (the masks
depend on params only), the form ``action_space(agent).sample(mask)`` takes; elsewhere ``infos[agent]`` is ``{}``. The
observations stay plain arrays rather than PettingZoo's classic-games ``{"observation", "action_mask"}`` dicts, so a
learner sees the same observation space on every kernel; PettingZoo's test utilities read masks from either place.
The kernels' other info stays inside the jitted step, as in the Gymnasium adapter.

Keys: as the Gymnasium adapter: ``reset(seed=s)`` sets the env's key to ``jax.random.PRNGKey(s)``; every reset and
step splits the next key from it (``key, sub = split_key(key)``) and hands `sub` to the kernel (no `AutoReset`).
``reset()`` without a seed goes on with the same key (an env never seeded first draws a seed from the OS), so a
trajectory depends only on the seed and the actions.

Rendering: ``render_mode="rgb_array"`` where the kernel draws itself (gems: ``uint8 (size, size, 3)``, ``[x, y]``,
`agentlab.kernels.multi.gems.render`).

Cost: the kernel's reset and step are compiled once per kernel configuration (``name`` and ``options``; adapters
built alike share them); a step is one jitted call, one transfer of ``(obs, reward, terminated, truncated)`` to NumPy
and a dict per output built in Python over the agents.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

try:
    import gymnasium
    import pettingzoo
except ImportError:  # pragma: no cover (the extra is missing)
    raise ImportError("agentlab.adapters.pettingzoo needs pettingzoo: pip install 'agentlab[pettingzoo]'") from None

from agentlab.adapters.gymnasium import RENDER_FPS, _check_seed, _lane_reset, _lane_step, gymnasium_space, seed_key
from agentlab.errors import UsageError
from agentlab.kernels import make as make_kernel
from agentlab.kernels.environment import Environment
from agentlab.kernels.grid.names import CLASSES
from agentlab.kernels.markets.lemons.env import BUYER, SELLER

#: The name of each role id (``env.roles[i]``) of a kernel, for the agents' names; kernels not listed name theirs
#: ``agent``.
ROLE_NAMES: dict[str, dict[int, str]] = {
    "coordination": {0: "leader", 1: "follower"},
    "calvano": {0: "firm"},
    "market-crash": {0: "firm"},
    "market-lemons": {SELLER: "seller", BUYER: "buyer"},
    "grid-curtailment": dict(enumerate(CLASSES)),
}


def agent_names(kernel: Environment) -> list[str]:
    """``{role}_{k}`` per agent in the kernel's order, k counting the agents of that role (`ROLE_NAMES`)."""
    names = ROLE_NAMES.get(kernel.name, {})
    seen: dict[str, int] = {}
    out = []
    for role in kernel.roles:  # type: ignore[attr-defined]
        role_name = names.get(int(role), "agent")
        out.append(f"{role_name}_{seen.get(role_name, 0)}")
        seen[role_name] = seen.get(role_name, 0) + 1
    return out


def agent_space(space: Any) -> gymnasium.spaces.Space:
    """One agent's Gymnasium space: the kernel's ``(num_agents, ...)`` space without its agent axis."""
    return gymnasium_space(dataclasses.replace(space, shape=tuple(space.shape[1:])))


# ------------------------------------------------------------------------------------- the jitted pieces
@dataclasses.dataclass(frozen=True)
class Compiled:
    """One multi-agent kernel configuration: the kernel (no auto-reset), its params, its jitted reset and step and
    its action mask (int8 ``(num_agents, n)`` on the host, or None where every agent may take every action)."""

    kernel: Environment
    params: Any
    reset: Callable  # (key, params) -> (key, obs, state)
    step: Callable  # (key, state, action, params) -> (key, obs, state, reward, terminated, truncated)
    action_mask: np.ndarray | None


def _build(name: str, options: dict[str, Any]) -> Compiled:
    kernel, params = make_kernel(name, auto_reset=False, **options)
    if not kernel.multi_agent:
        raise UsageError(
            f"{kernel.name} is a single-agent kernel: the PettingZoo adapter takes multi-agent kernels; use the "
            "Gymnasium adapter (agentlab.adapters.gymnasium.make)"
        )
    mask = kernel.action_mask(params)
    if mask is not None:
        mask = np.asarray(mask).astype(np.int8)
        mask.flags.writeable = False
    return Compiled(
        kernel=kernel,
        params=params,
        reset=jax.jit(functools.partial(_lane_reset, kernel)),
        step=jax.jit(functools.partial(_lane_step, kernel)),
        action_mask=mask,
    )


@functools.lru_cache(maxsize=64)
def _cached(name: str, options: tuple[tuple[str, Any], ...]) -> Compiled:
    return _build(name, dict(options))


def compiled(name: str, **options: Any) -> Compiled:
    """The multi-agent kernel `name` with `options` and its jitted functions, shared by every adapter built alike
    (options that cannot be hashed get their own)."""
    try:
        return _cached(name, tuple(sorted(options.items())))
    except TypeError:  # an unhashable option value
        return _build(name, options)


def _renderer(kernel: Environment) -> Callable[[Any], np.ndarray] | None:
    """``draw(state) -> uint8 (H, W, 3)`` where the kernel draws itself, else None."""
    from agentlab.kernels.multi.gems import Gems

    if isinstance(kernel, Gems):
        from agentlab.kernels.multi.gems import render

        return lambda state: render(state, kernel)
    return None


# ----------------------------------------------------------------------------------------- the adapter
class PettingZooParallelEnv(pettingzoo.ParallelEnv):
    """One multi-agent kernel as a `pettingzoo.ParallelEnv` (see the module docstring for agents, spaces, masks and
    keys)."""

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": RENDER_FPS}

    def __init__(self, name: str, render_mode: str | None = None, **options: Any):
        self._compiled = compiled(name, **options)
        kernel, params = self._compiled.kernel, self._compiled.params
        self.kernel_name = kernel.name
        self.possible_agents = agent_names(kernel)
        self.agents: list[str] = []
        # One space object per agent (PettingZoo seeds an agent's space through it).
        self.observation_spaces = {a: agent_space(kernel.observation_space(params)) for a in self.possible_agents}
        self.action_spaces = {a: agent_space(kernel.action_space(params)) for a in self.possible_agents}
        self._draw = _renderer(kernel)
        self.metadata = {
            **self.metadata,
            "name": f"agentlab/{kernel.name}",
            "render_modes": ["rgb_array"] if self._draw is not None else [],
        }
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"] or "none"
            raise UsageError(f"render_mode of {kernel.name} must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self._action_dtype = np.dtype(kernel.action_space(params).dtype)
        mask = self._compiled.action_mask
        self._infos = {a: {} if mask is None else {"action_mask": mask[i]} for i, a in enumerate(self.possible_agents)}
        self._key: np.ndarray | jax.Array | None = None  # uint32 (2,): the key chain
        self._state: Any = None

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    def _by_agent(self, values: np.ndarray) -> dict[str, Any]:
        return dict(zip(self.possible_agents, values))

    def _infos_copy(self) -> dict[str, dict[str, Any]]:
        return {agent: dict(info) for agent, info in self._infos.items()}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None):
        """A new episode with every agent: from ``PRNGKey(seed)`` when `seed` is given, else from the env's key chain
        (a seed drawn from the OS when the env was never seeded). `options` is accepted and unused."""
        if seed is not None:
            self._key = seed_key(_check_seed(seed, "seed"))
        elif self._key is None:
            self._key = seed_key(int(np.random.default_rng().integers(2**63)))
        c = self._compiled
        self._key, obs, self._state = c.reset(self._key, c.params)
        self.agents = list(self.possible_agents)
        return self._by_agent(np.array(obs)), self._infos_copy()

    def _joint_action(self, actions: Mapping[str, Any]) -> np.ndarray:
        """The kernel's ``(num_agents, ...)`` action from one action per live agent."""
        missing = [a for a in self.agents if a not in actions]
        unknown = [a for a in actions if a not in self.agents]
        if missing or unknown:
            raise UsageError(
                f"actions must name every agent of {self.kernel_name} once: missing {missing}, unknown {unknown}"
            )
        return np.stack([np.asarray(actions[a], self._action_dtype) for a in self.possible_agents])

    def step(self, actions: Mapping[str, Any]):
        """One step of every agent: ``(observations, rewards, terminations, truncations, infos)``, dicts keyed by
        agent; all agents leave `agents` when the episode ends."""
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset before step")
        if not self.agents:
            raise gymnasium.error.ResetNeeded("the episode has ended: call reset before step")
        c = self._compiled
        action = self._joint_action(actions)
        self._key, obs, self._state, reward, terminated, truncated = c.step(self._key, self._state, action, c.params)
        obs, reward, terminated, truncated = jax.device_get((obs, reward, terminated, truncated))
        terminated, truncated = bool(terminated), bool(truncated)
        out = (
            self._by_agent(np.array(obs)),
            self._by_agent([float(r) for r in reward]),
            dict.fromkeys(self.possible_agents, terminated),
            dict.fromkeys(self.possible_agents, truncated),
            self._infos_copy(),
        )
        if terminated or truncated:
            self.agents = []
        return out

    def render(self) -> np.ndarray | None:
        """uint8 ``(H, W, 3)`` of the current state with ``render_mode="rgb_array"``; None without one."""
        if self.render_mode is None:
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset before render")
        return self._draw(self._state)


def parallel_env(name: str, render_mode: str | None = None, **options: Any) -> PettingZooParallelEnv:
    """The multi-agent kernel `name` (the options of `agentlab.kernels.make`) as a `pettingzoo.ParallelEnv`.

    Raises `UsageError` (a `ValueError`) for a single-agent kernel, an unknown kernel or option, or a `render_mode`
    the kernel does not draw."""
    return PettingZooParallelEnv(name, render_mode=render_mode, **options)
