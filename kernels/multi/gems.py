"""`gems`: the two-agent gem-collecting grid game of MAMQL (Haynam et al. 2025).

Rules (the authors' ``gems/env.py`` as summarised in the project's reference notes):

- A ``size x size`` grid (default 15) and two agents. Per-agent actions: 0 = +y, 1 = +x, 2 = -y,
  3 = -x, 4 = stay (any other integer also stays); a move that would leave the grid is a no-op.
  Agents move one after the other, agent 0 then agent 1, within a step. Agents never block each
  other (they may share a cell) and their own gems are disjoint, so the order has no observable
  effect on these rules; the kernel still plays the moves in that order.
- Reset: both agents and every gem at independent uniform cells, coordinates in ``0..size-1``
  (overlaps allowed), unless ``params.agent_cells`` / ``params.gem_cells`` fix them.
- Gems are indexed blue (agent 0's, `num_blue`, default 3), then red (agent 1's, `num_red`, 3), then
  purple (`num_purple`, 3). An agent standing on one of its own gems after its move gets
  `own_reward` (+1) per such gem; each counts as collected and respawns at a uniform cell with
  coordinates in ``1..size-1`` (never 0, as in the authors' code).
- After both have moved, if both agents are "on purple" (on the same or different purple gems), both
  get `purple_reward` (+6), once per step, and every purple gem under either agent counts as
  collected and respawns as above.
- `purple_quirk` (default False): the authors' code also counts an agent as "on purple" when it stood
  on a purple gem at the *start* of its move (and then moved off). False plays the rule as stated;
  True reproduces the authors' behaviour, for comparing with their data. Either way the purple gems
  collected are those under an agent *after* the moves (one an agent walked off stays where it is).
- `terminated` once more than `gem_limit` (default 6) gems have been collected in the episode
  (blue, red and purple each count one); `truncated` at `max_steps` (default 45).
- ``collect=False``: gems stay where they are, are never collected or respawned, and the episode
  never terminates (only truncation); rewards are still paid on every step an agent stands on its
  own gem or both stand on purple. With fixed ``gem_cells`` this is the setting of an exact tabular
  export: `Gems.joint_reward(agents, gems, action, params)` is the pure transition of the agents and
  the rewards of one joint action (the very function `advance` uses), and is the same whatever
  `collect` is (respawns happen after the rewards they follow are paid).

Observation: float32 ``(2, 5, size, size)``, binary planes per agent, axis 2 is x and axis 3 is y
(``obs[i, p, x, y]``). With ``plane_order="ego"`` (default) agent i sees (self, other, own gems,
other's gems, purple), so one shared network serves both agents; with ``plane_order="authors"``
both agents see the authors' planes (agent 0, agent 1, blue, red, purple). Actions: int32 ``(2,)``.
Rewards: float32 ``(2,)``. ``info["action_mask"]`` is all True (both agents may take every action);
``info["episode_metrics"]["gems_collected"]`` is the episode's collected count so far.

Randomness: the counter hash (`agentlab.hashing`): a reset draws its ``2 * (2 + gems)`` coordinates,
and every step draws a candidate respawn cell per gem (used only for the gems collected), each from
the words of the key it is given (`seed_words`, `counter_words`). No threefry block per step.

`render(state, env)` gives an RGB picture of a state (NumPy); `agentlab render` draws only the
Atari-style kernels, so it is not wired to the command line.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.hashing import counter_words, seed_words
from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.limits import MAX_INDEX, Bound, check_all

NUM_AGENTS = 2
NUM_ACTIONS = 5
ACTION_NAMES = ("+y", "+x", "-y", "-x", "stay")
#: (dx, dy) of each action; index 4 (and anything outside 0..3) stays.
MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0), (0, 0))
PLANE_ORDERS = ("ego", "authors")
PLANES = {
    "ego": ("self", "other", "own gems", "other's gems", "purple"),
    "authors": ("agent0", "agent1", "blue", "red", "purple"),
}

# One declaration per numeric option or params field (`agentlab.limits`).
GEMS_BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("size", int, low=2, high=256, unit="cells per side"),
        Bound("num_blue", int, low=0, high=256, unit="gems"),
        Bound("num_red", int, low=0, high=256, unit="gems"),
        Bound("num_purple", int, low=0, high=256, unit="gems"),
        Bound("max_steps", int, low=1, high=MAX_INDEX, unit="steps"),
        Bound("gem_limit", int, low=0, high=MAX_INDEX, unit="gems collected"),
        Bound("own_reward", float, low=-1e6, high=1e6, unit="reward per own gem"),
        Bound("purple_reward", float, low=-1e6, high=1e6, unit="reward per joint purple step"),
    )
}


def _below(words: jax.Array, n: int) -> jax.Array:
    """int32 uniform in ``0..n-1`` (n <= 256) from uint32 words: the top 24 bits scaled in integers, so that
    no float rounding can reach `n`."""
    return (((words >> 8) * jnp.uint32(n)) >> 24).astype(jnp.int32)


@pytree_dataclass
class GemsState:
    agents: jax.Array  # int32 (2, 2): (x, y) of agent 0 and agent 1
    gems: jax.Array  # int32 (num_gems, 2): (x, y) of each gem, blue then red then purple
    collected: jax.Array  # int32 (): gems collected in this episode
    time: jax.Array  # int32 ()


@pytree_dataclass
class GemsParams:
    gem_limit: int = 6  # terminate once more than this many gems have been collected
    collect: bool = True  # False: gems fixed, never collected, no termination
    purple_quirk: bool = False  # True: the authors' "on purple at the start of the move also counts"
    own_reward: float = 1.0
    purple_reward: float = 6.0
    gem_cells: Any = None  # None, or int32 (num_gems, 2): the gems' cells at every reset
    agent_cells: Any = None  # None, or int32 (2, 2): the agents' cells at every reset
    max_steps: int | None = 45


class Gems(Environment[GemsState, GemsParams]):
    """The gems game on a ``size x size`` grid with `num_blue`, `num_red` and `num_purple` gems.

    `plane_order` ("ego" or "authors") chooses the observation's plane order (module docstring).
    """

    name = "gems"
    num_agents = NUM_AGENTS

    def __init__(
        self, size: int = 15, num_blue: int = 3, num_red: int = 3, num_purple: int = 3, plane_order: str = "ego"
    ):
        checked = check_all(
            {"size": size, "num_blue": num_blue, "num_red": num_red, "num_purple": num_purple}, GEMS_BOUNDS
        )
        if plane_order not in PLANE_ORDERS:
            raise UsageError(f"plane_order must be {choices(PLANE_ORDERS)}, got {plane_order!r}")
        self.size = checked["size"]
        self.num_blue = checked["num_blue"]
        self.num_red = checked["num_red"]
        self.num_purple = checked["num_purple"]
        self.num_gems = self.num_blue + self.num_red + self.num_purple
        self.plane_order = plane_order
        self.roles = (0, 0)
        self.channels = PLANES[plane_order]
        # kind of each gem: 0 blue (agent 0's), 1 red (agent 1's), 2 purple
        self.gem_kind = np.repeat(np.arange(3, dtype=np.int32), (self.num_blue, self.num_red, self.num_purple))

    # -- spaces ------------------------------------------------------------------------------------
    def default_params(self) -> GemsParams:
        return GemsParams()

    def validate_params(self, params: GemsParams) -> GemsParams:
        """`validate_gems_params` for this grid and these gem counts."""
        return validate_gems_params(params, self)

    def action_space(self, params=None) -> Discrete:
        return Discrete(NUM_ACTIONS, shape=(NUM_AGENTS,))

    def observation_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (NUM_AGENTS, 5, self.size, self.size), jnp.float32)

    # -- the game ----------------------------------------------------------------------------------
    def init(self, key, params: GemsParams) -> GemsState:
        words = counter_words(seed_words(key), jnp.arange(2 * (NUM_AGENTS + self.num_gems), dtype=jnp.uint32))
        cells = _below(words, self.size).reshape(NUM_AGENTS + self.num_gems, 2)
        agents, gems = cells[:NUM_AGENTS], cells[NUM_AGENTS:]
        if params.agent_cells is not None:
            agents = jnp.broadcast_to(jnp.asarray(params.agent_cells, jnp.int32), agents.shape)
        if params.gem_cells is not None:
            gems = jnp.broadcast_to(jnp.asarray(params.gem_cells, jnp.int32), gems.shape)
        return GemsState(agents=agents, gems=gems, collected=jnp.zeros((), jnp.int32), time=jnp.zeros((), jnp.int32))

    def respawn_cells(self, key) -> jax.Array:
        """int32 ``(num_gems, 2)``: the step's candidate respawn cell of each gem, coordinates in ``1..size-1``."""
        words = counter_words(seed_words(key), jnp.arange(2 * self.num_gems, dtype=jnp.uint32))
        return 1 + _below(words, self.size - 1).reshape(self.num_gems, 2)

    def _play(self, agents, gems, action, params):
        """The moves and rewards of one joint action: ``(next_agents, reward, own_hit, purple_hit)``,
        `own_hit` and `purple_hit` bool ``(num_gems,)``: the gems collected when ``collect`` is on."""
        agents = jnp.asarray(agents, jnp.int32)
        gems = jnp.asarray(gems, jnp.int32)
        action = jnp.asarray(action, jnp.int32)
        kind = jnp.asarray(self.gem_kind)
        is_purple = kind == 2
        moves = jnp.asarray(MOVES, jnp.int32)
        start = agents
        reward = []
        own_hit = jnp.zeros((self.num_gems,), bool)
        for i in range(NUM_AGENTS):  # agent 0 moves (and collects), then agent 1
            a = action[i]
            delta = jnp.where((a >= 0) & (a < 4), moves[jnp.clip(a, 0, 4)], 0)
            target = agents[i] + delta
            inside = jnp.all((target >= 0) & (target < self.size))
            agents = agents.at[i].set(jnp.where(inside, target, agents[i]))
            hit = (kind == i) & jnp.all(gems == agents[i], axis=1)
            own_hit = own_hit | hit
            reward.append(params.own_reward * jnp.sum(hit).astype(jnp.float32))
        on_end = is_purple[None, :] & jnp.all(gems[None, :, :] == agents[:, None, :], axis=2)  # (2, num_gems)
        on_start = is_purple[None, :] & jnp.all(gems[None, :, :] == start[:, None, :], axis=2)
        on_purple = jnp.any(on_end, axis=1) | (jnp.asarray(params.purple_quirk, bool) & jnp.any(on_start, axis=1))
        both = jnp.all(on_purple)
        bonus = jnp.where(both, jnp.asarray(params.purple_reward, jnp.float32), jnp.float32(0))
        purple_hit = both & jnp.any(on_end, axis=0)
        reward = jnp.stack(reward).astype(jnp.float32) + bonus
        return agents, reward, own_hit, purple_hit

    def joint_reward(self, agents, gems, action, params: GemsParams) -> tuple[jax.Array, jax.Array]:
        """Pure: ``(next_agents int32 (2, 2), reward float32 (2,))`` of the joint `action` (int32 ``(2,)``)
        with the agents at `agents` (``(2, 2)``, (x, y) rows) and the gems at `gems` (``(num_gems, 2)``,
        blue, red, purple). Exactly what `advance` pays and where it moves the agents; jittable and
        `vmap`-able over states and actions (the tabular export with ``collect=False``)."""
        next_agents, reward, _, _ = self._play(agents, gems, action, params)
        return next_agents, reward

    def advance(self, key, state: GemsState, action, params: GemsParams):
        agents, reward, own_hit, purple_hit = self._play(state.agents, state.gems, action, params)
        collect = jnp.asarray(params.collect, bool)
        hit = collect & (own_hit | purple_hit)
        gems = jnp.where(hit[:, None], self.respawn_cells(key), state.gems)
        collected = state.collected + jnp.sum(hit).astype(jnp.int32)
        terminated = collect & (collected > params.gem_limit)
        next_state = GemsState(agents=agents, gems=gems, collected=collected, time=state.time)
        info = {
            "action_mask": jnp.ones((NUM_AGENTS, NUM_ACTIONS), bool),
            "episode_metrics": {"gems_collected": collected.astype(jnp.float32)},
        }
        return next_state, reward, terminated, info

    # -- observation -------------------------------------------------------------------------------
    def planes(self, state: GemsState) -> jax.Array:
        """float32 ``(5, size, size)``: the authors' planes (agent 0, agent 1, blue, red, purple), ``[p, x, y]``."""
        xs = jnp.arange(self.size, dtype=jnp.int32)

        def cells(points):  # (n, 2) -> (n, size, size) one-hot
            return (points[:, 0, None, None] == xs[None, :, None]) & (points[:, 1, None, None] == xs[None, None, :])

        agent_planes = cells(state.agents)
        gem_cells = cells(state.gems)
        kind = jnp.asarray(self.gem_kind)
        gem_planes = [jnp.any(gem_cells & (kind == k)[:, None, None], axis=0) for k in range(3)]
        return jnp.concatenate([agent_planes, jnp.stack(gem_planes)], axis=0).astype(jnp.float32)

    def observe(self, key, state: GemsState, params: GemsParams) -> jax.Array:
        base = self.planes(state)
        if self.plane_order == "authors":
            return jnp.stack([base, base])
        return jnp.stack([base, base[jnp.asarray([1, 0, 3, 2, 4])]])


def validate_gems_params(params: GemsParams, env: Gems) -> GemsParams:
    """`params` with its numeric fields checked (`GEMS_BOUNDS`) and the fixed cells checked against the
    grid and the gem counts; `UsageError` naming the field otherwise."""
    values = {"gem_limit": params.gem_limit, "own_reward": params.own_reward, "purple_reward": params.purple_reward}
    if params.max_steps is not None:
        values["max_steps"] = params.max_steps
    checked = check_all(values, GEMS_BOUNDS)
    for name in ("collect", "purple_quirk"):
        value = getattr(params, name)
        if not isinstance(value, (bool, np.bool_)):
            raise UsageError(f"{name} must be True or False, got {value!r}")
    fixed = {}
    for name, rows in (("gem_cells", env.num_gems), ("agent_cells", NUM_AGENTS)):
        value = getattr(params, name)
        if value is None:
            continue
        try:
            cells = np.asarray(value)
        except (TypeError, ValueError):
            cells = np.zeros(0)
        ok = cells.shape == (rows, 2) and np.issubdtype(cells.dtype, np.integer)
        if not ok or np.any(cells < 0) or np.any(cells >= env.size):
            raise UsageError(
                f"{name} must be None or {rows} (x, y) integer cells with coordinates in [0, {env.size - 1}], "
                f"got {value!r}"
            )
        fixed[name] = jnp.asarray(cells, jnp.int32)
    return params.replace(
        gem_limit=checked["gem_limit"],
        own_reward=checked["own_reward"],
        purple_reward=checked["purple_reward"],
        collect=bool(params.collect),
        purple_quirk=bool(params.purple_quirk),
        **fixed,
    )


LAYOUTS = ("random", "tabular")


def tabular_cells(size: int) -> np.ndarray:
    """int32 ``(4, 2)``: the tabular layout's gem cells, blue ``(0, size-1)``, red ``(size-1, 0)``, purple at
    the centre ``(size//2, size//2)`` and the corner ``(size-1, size-1)`` (agentlab's choice)."""
    return np.array([[0, size - 1], [size - 1, 0], [size // 2, size // 2], [size - 1, size - 1]], np.int32)


def make_gems(
    size: int = 15,
    num_blue: int = 3,
    num_red: int = 3,
    num_purple: int = 3,
    max_steps: int | None = 45,
    gem_limit: int = 6,
    collect: bool = True,
    purple_quirk: bool = False,
    plane_order: str = "ego",
    gem_cells: Any = None,
    agent_cells: Any = None,
    layout: str = "random",
) -> tuple[Gems, GemsParams]:
    """``(env, params)`` of the gems game; every option is checked (`UsageError` naming it).

    `layout`: ``"random"`` (the authors' game: gems drawn at reset, collected and respawned) or ``"tabular"``
    (agentlab's exact-recovery setting, `tabular_cells`: one blue, one red and two purple gems at fixed cells,
    never collected, no termination; it sets the gem counts, `gem_cells` and ``collect=False``, so the game
    is the export of `kernels.multi.gems_tabular` with ``size**4`` joint states)."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be {choices(LAYOUTS)}, got {layout!r}")
    if layout == "tabular":
        num_blue, num_red, num_purple = 1, 1, 2
        gem_cells, collect = tabular_cells(GEMS_BOUNDS["size"].check(size)), False
    env = Gems(size=size, num_blue=num_blue, num_red=num_red, num_purple=num_purple, plane_order=plane_order)
    params = env.default_params().replace(
        gem_limit=gem_limit,
        collect=collect,
        purple_quirk=purple_quirk,
        gem_cells=gem_cells,
        agent_cells=agent_cells,
        max_steps=max_steps,
    )
    return env, env.validate_params(params)


#: RGB of the agents (0, 1) and the gem kinds (blue, red, purple) in `render`.
COLOURS = {
    "agent0": (0, 200, 255),
    "agent1": (255, 140, 0),
    "blue": (0, 0, 255),
    "red": (255, 0, 0),
    "purple": (150, 50, 200),
}


def render(state: GemsState, env: Gems) -> np.ndarray:
    """uint8 ``(size, size, 3)`` RGB, ``[x, y]``: gems in their colours, agents drawn over them (agent 1 last)."""
    image = np.zeros((env.size, env.size, 3), np.uint8)
    for (x, y), kind in zip(np.asarray(state.gems), env.gem_kind):
        image[x, y] = COLOURS[("blue", "red", "purple")[kind]]
    for i, (x, y) in enumerate(np.asarray(state.agents)):
        image[x, y] = COLOURS[f"agent{i}"]
    return image


def describe(env: Gems) -> dict:
    return describe_kernel(env, "multi-agent", actions=list(ACTION_NAMES))
