"""`maze2d`: a damped point mass steered by a force through one of D4RL's walled mazes.

The layouts are D4RL's pointmaze strings (`LAYOUTS`: ``umaze``, ``medium``, ``large``; '#' wall, 'O' free, 'G' goal,
rows joined by '/'). The dynamics are agentlab's own, not MuJoCo's: a damped double integrator with exact
collisions against the wall cells.

Coordinates, in cell units: ``x`` runs along the columns and ``y`` down the rows of the layout string, so cell
(row r, column c) is the square ``[c, c + 1) x [r, r + 1)`` and its centre is ``(c + 0.5, r + 0.5)``. Every layout
is walled all round, so a position is always within ``[1, width - 1] x [1, height - 1]``.

One step, action ``a`` (float32 ``(2,)``, clipped to [-1, 1]) the force ``force_scale * a`` on a unit mass:

    v  = (v + dt force_scale a) / (1 + dt damping)       # semi-implicit Euler, the damping taken implicitly
    v  = v * min(1, max_speed / |v|)                      # the speed limit (keeps one step under one cell)
    x  = x + dt vx, stopped at the first wall edge crossed (EPSILON inside the free side), vx = 0 if it hit
    y  = y + dt vy, likewise, in the column reached       # the move is swept along x, then along y

The implicit damping is stable at any ``dt * damping`` and never adds energy; a collision only zeroes the velocity
component that hit, so no step is faster than the same step without walls. ``dt * max_speed <= 1`` (the bounds
below) keeps a move along one axis to at most one cell edge, so the point never enters a wall cell. With the
defaults (dt 0.1 s, damping 5 /s, force_scale 5 cells/s^2) a full push gives a terminal speed of
``force_scale / damping = 1`` cell/s: crossing a cell takes about 10 steps, as in D4RL's data.

Reward (on the state after the move): ``reward="sparse"`` (default) 1.0 within `goal_radius` (0.5 cells) of the
goal cell's centre, else 0; ``reward="dense"``: ``exp(-distance to the goal centre)``. Never terminates (as D4RL's
maze2d); truncated at `max_steps` (D4RL's episode lengths: 300 umaze, 600 medium, 800 large). Reset: the centre of a
uniformly chosen free cell ('O' or 'G', as D4RL's reset locations) plus uniform noise of +-0.1 cell per axis, zero
velocity.

Observation: float32 ``(4,)`` = ``(x, y, vx, vy)``. `transition_from_observation(obs, action, params)` is the true
``(next_obs, reward)`` of any observation, `valid_observation(obs, params)` whether it is a reachable position, and
`render(obs, params, env)` draws the maze.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.kernels.control.viewer import canvas, disc
from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass, static_field
from agentlab.kernels.spaces import Box
from agentlab.limits import Bound

LAYOUTS = {
    "umaze": "#####/#GOO#/###O#/#OOO#/#####",
    "medium": "########/#OO##OO#/#OO#OOO#/##OOO###/#OO#OOO#/#O#OO#O#/#OOO#OG#/########",
    "large": "############/#OOOO#OOOOO#/#O##O#O#O#O#/#OOOOOO#OOO#/#O####O###O#/#OO#O#OOOOO#/##O#O#O#O###/"
    "#OO#OOO#OGO#/############",
}
EPISODE_STEPS = {"umaze": 300, "medium": 600, "large": 800}  # D4RL's maze2d episode lengths
REWARDS = ("sparse", "dense")
EPSILON = 1e-4  # how far inside the free side a collision leaves the point (cells)
RESET_NOISE = 0.1  # cells, per axis, around the chosen free cell's centre

# The bounded `Maze2dParams` fields; `make`'s options of the same names are checked through them.
# dt * max_speed <= 0.1 * 10 = 1 cell, so a step crosses at most one cell edge per axis.
MAZE2D_BOUNDS: dict[str, Bound] = {
    "dt": Bound("dt", float, low=0, low_open=True, high=0.1, unit="s per step"),
    "damping": Bound("damping", float, low=0, high=100, unit="1/s"),
    "force_scale": Bound("force_scale", float, low=0, low_open=True, high=100, unit="cells/s^2 at |a| = 1"),
    "max_speed": Bound("max_speed", float, low=0, low_open=True, high=10, unit="cells/s"),
    "goal_radius": Bound("goal_radius", float, low=0, low_open=True, high=2, unit="cells"),
}


@pytree_dataclass
class Maze2dState:
    position: jax.Array  # float32 (2,): (x, y) in cells, x along columns, y down rows
    velocity: jax.Array  # float32 (2,): cells/s
    time: jax.Array  # int32 ()


@pytree_dataclass
class Maze2dParams:
    dt: float = 0.1
    damping: float = 5.0
    force_scale: float = 5.0
    max_speed: float = 2.0
    goal_radius: float = 0.5
    reward: str = static_field(default="sparse")  # "sparse" or "dense"
    max_steps: int | None = 300


def parse_layout(text: str) -> np.ndarray:
    """The layout string as a uint8 ``(rows, cols)`` grid of its characters' codes ('#', 'O', 'G')."""
    rows = text.split("/")
    if len({len(r) for r in rows}) != 1 or set(text) - set("#OG/") or text.count("G") != 1:
        raise UsageError(f"a maze layout is equal-length rows of '#', 'O' and one 'G' joined by '/', got {text!r}")
    return np.array([[ord(ch) for ch in row] for row in rows], np.uint8)


class Maze2d(Environment[Maze2dState, Maze2dParams]):
    """The maze of `layout` (a `LAYOUTS` name). Static: `walls` (bool ``(rows, cols)``), `goal_cell` (row, col),
    `free_cells` (int32 ``(n, 2)`` (row, col) of every 'O' and 'G' cell, in reading order)."""

    name = "maze2d"

    def __init__(self, layout: str = "umaze"):
        if layout not in LAYOUTS:
            raise UsageError(f"layout must be {choices(LAYOUTS)}, got {layout!r}")
        self.layout = layout
        grid = parse_layout(LAYOUTS[layout])
        self.walls = grid == ord("#")
        self.goal_cell = tuple(int(i) for i in np.argwhere(grid == ord("G"))[0])
        self.free_cells = np.argwhere(~self.walls).astype(np.int32)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the layout."""
        return self.walls.shape

    def goal(self) -> jax.Array:
        """float32 (2,): the goal cell's centre (x, y)."""
        row, col = self.goal_cell
        return jnp.asarray([col + 0.5, row + 0.5], jnp.float32)

    def default_params(self) -> Maze2dParams:
        return Maze2dParams(max_steps=EPISODE_STEPS[self.layout])

    def validate_params(self, params: Maze2dParams) -> Maze2dParams:
        """Every field of `MAZE2D_BOUNDS` and `reward`; `params` unchanged, or `UsageError` naming the field."""
        for name, bound in MAZE2D_BOUNDS.items():
            bound.check(np.asarray(getattr(params, name)).item())
        if params.reward not in REWARDS:
            raise UsageError(f"reward must be {choices(REWARDS)}, got {params.reward!r}")
        return params

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        params = self.default_params() if params is None else params
        high = float(max(*self.shape, params.max_speed))
        return Box(-float(params.max_speed), high, (4,), jnp.float32)

    # -- the physics -------------------------------------------------------------------------------
    def init(self, key, params) -> Maze2dState:
        k_cell, k_noise = jax.random.split(key)
        cell = jnp.asarray(self.free_cells)[jax.random.randint(k_cell, (), 0, len(self.free_cells))]
        centre = cell[::-1].astype(jnp.float32) + 0.5
        noise = jax.random.uniform(k_noise, (2,), jnp.float32, -RESET_NOISE, RESET_NOISE)
        return Maze2dState(position=centre + noise, velocity=jnp.zeros(2, jnp.float32), time=jnp.zeros((), jnp.int32))

    def is_wall(self, row: jax.Array, col: jax.Array) -> jax.Array:
        """bool: whether cell (row, col) is a wall; cells outside the layout count as walls."""
        rows, cols = self.shape
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        walls = jnp.asarray(self.walls)
        return ~inside | walls[jnp.clip(row, 0, rows - 1), jnp.clip(col, 0, cols - 1)]

    def _sweep(self, start: jax.Array, move: jax.Array, wall_ahead) -> tuple[jax.Array, jax.Array]:
        """``(end, hit)`` of a move of at most one cell along one axis: `wall_ahead(cell)` tells whether the cell
        the move ends in is a wall; a move into a wall stops EPSILON before the edge it crosses."""
        target = start + move
        here, there = jnp.floor(start), jnp.floor(target)
        hit = (there != here) & wall_ahead(there.astype(jnp.int32))
        stop = jnp.where(move > 0, there - EPSILON, here + EPSILON)
        return jnp.where(hit, stop, target), hit

    def move(self, state: Maze2dState, action: jax.Array, params: Maze2dParams) -> Maze2dState:
        """The state after one step of the physics (position, velocity; `time` unchanged)."""
        force = params.force_scale * jnp.clip(jnp.asarray(action, jnp.float32).reshape(2), -1.0, 1.0)
        velocity = (state.velocity + params.dt * force) / (1.0 + params.dt * params.damping)
        speed = jnp.sqrt(jnp.sum(velocity**2))
        velocity = velocity * jnp.minimum(1.0, params.max_speed / jnp.maximum(speed, 1e-12))
        x, y = state.position[0], state.position[1]
        row = jnp.floor(y).astype(jnp.int32)
        x, hit_x = self._sweep(x, params.dt * velocity[0], lambda col: self.is_wall(row, col))
        col = jnp.floor(x).astype(jnp.int32)
        y, hit_y = self._sweep(y, params.dt * velocity[1], lambda row: self.is_wall(row, col))
        velocity = jnp.where(jnp.stack([hit_x, hit_y]), 0.0, velocity)
        position = jnp.stack([x, y]).astype(jnp.float32)
        return state.replace(position=position, velocity=velocity.astype(jnp.float32))

    def reward(self, position: jax.Array, params: Maze2dParams) -> jax.Array:
        """float32 (): the reward of being at `position` (sparse or dense, see the module docstring)."""
        distance = jnp.sqrt(jnp.sum((position - self.goal()) ** 2))
        if params.reward == "dense":
            return jnp.exp(-distance).astype(jnp.float32)
        return (distance <= params.goal_radius).astype(jnp.float32)

    def advance(self, key, state, action, params):
        next_state = self.move(state, action, params)
        return next_state, self.reward(next_state.position, params), jnp.asarray(False), {}

    def observe(self, key, state, params) -> jax.Array:
        return jnp.concatenate([state.position, state.velocity]).astype(jnp.float32)

    # -- for models of the dynamics ---------------------------------------------------------------
    def state_from_observation(self, obs: jax.Array, params: Maze2dParams) -> Maze2dState:
        """The state an observation shows: ``(x, y)`` and ``(vx, vy)`` as they are."""
        obs = jnp.asarray(obs, jnp.float32)
        return Maze2dState(position=obs[:2], velocity=obs[2:], time=jnp.zeros((), jnp.int32))

    def transition_from_observation(
        self, obs: jax.Array, action: jax.Array, params: Maze2dParams
    ) -> tuple[jax.Array, jax.Array]:
        """``(next_obs, reward)``: the true step from the state `obs` shows (pure; `vmap` it for a batch)."""
        state = self.state_from_observation(obs, params)
        next_state, reward, _, _ = self.advance(jax.random.key(0), state, action, params)
        return self.observe(jax.random.key(0), next_state, params), reward

    def valid_observation(self, obs: jax.Array, params: Maze2dParams) -> jax.Array:
        """bool (): the observation is finite and its position lies inside the layout and outside every wall cell."""
        obs = jnp.asarray(obs, jnp.float32)
        finite = jnp.all(jnp.isfinite(obs))
        cell = jnp.floor(jnp.where(finite, obs[:2], -1.0)).astype(jnp.int32)
        return finite & ~self.is_wall(cell[1], cell[0])


def render(obs, params: Maze2dParams, env: Maze2d, scale: int = 16) -> np.ndarray:
    """uint8 ``(rows * scale, cols * scale, 3)``: walls dark, free cells light, the goal disc (radius `goal_radius`)
    green and the point red."""
    walls = np.asarray(env.walls).repeat(scale, 0).repeat(scale, 1)
    image = canvas(*walls.shape, (235, 235, 235))
    image[walls] = (50, 50, 50)
    row, col = env.goal_cell
    disc(image, (col + 0.5) * scale, (row + 0.5) * scale, float(params.goal_radius) * scale, (120, 200, 120))
    x, y = (float(v) for v in np.asarray(obs, np.float64)[:2])
    disc(image, x * scale, y * scale, 0.2 * scale, (210, 40, 40))
    return image


def describe(env: Maze2d) -> dict:
    return describe_kernel(
        env, "control", observation_note="(x, y, vx, vy) in cells", action_note="force = force_scale * a"
    )
