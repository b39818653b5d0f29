"""Gems (the MAMQL authors' two-agent game) in the tabular setting: an exact export of the joint MDP.

The tabular game keeps the rules of `gems/env.py` (see the reference notes, "Gems, rule by rule") with the
changes that make it a finite, stationary MDP:

- a square grid of side `size`; cells are ``(x, y)`` with ``0 <= x, y < size``;
- the gems sit on fixed cells (a `GemsLayout`): blue gems are agent 0's, red gems agent 1's, purple gems shared;
  gems are never collected (no respawn) and the game never terminates;
- per-agent actions ``0 = +y, 1 = +x, 2 = -y, 3 = -x, 4 = stay``; a move that would leave the grid is a no-op;
  agents do not block each other (two agents may share a cell); agent 0 moves, then agent 1 (with no blocking
  the order does not change the outcome);
- rewards, computed after both have moved: agent i gets +1 for every one of its own gems on its cell (a layout
  that lists the same cell twice pays 2 there; with distinct cells it is 0 or 1), and both agents get +6 (once,
  however many purple gems they stand on) if both stand on a purple cell (the same one or different ones).
  The authors' quirk (an agent that stood on purple *before* its move also counts as on purple) is off by default
  and available as ``purple_quirk=True``; with it off every reward is a function of the next state only
  (`landing_reward`).

State indexing (what the JAX kernel must match): with agent positions ``(x0, y0)`` and ``(x1, y1)``,

    s = ((x0 * size + y0) * size + x1) * size + y1          (size**4 states; 625 at 5 x 5)

and a joint action is the pair ``(a0, a1)``. The export (`export`) is ``next_state[s, a0, a1]`` (int32,
deterministic) and ``reward[i, s, a0, a1]`` (float64). `export` is numba; `export_reference` is the same rules as a
plain Python loop (used by the tests).
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from agentlab.errors import UsageError

ACTIONS = 5  # per agent
# (dx, dy) of actions 0..4: +y, +x, -y, -x, stay
MOVES = np.array([[0, 1], [1, 0], [0, -1], [-1, 0], [0, 0]], np.int64)
OWN_GEM_REWARD = 1.0
PURPLE_REWARD = 6.0
MAX_SIZE = 12  # 12**4 * 25 joint transitions (about 5e5) is the largest export we allow


@dataclasses.dataclass(frozen=True)
class GemsLayout:
    """Fixed gem cells: int arrays ``(k, 2)`` of ``(x, y)`` per colour (k may differ per colour, even be 0)."""

    size: int
    blue: np.ndarray  # agent 0's gems
    red: np.ndarray  # agent 1's gems
    purple: np.ndarray  # shared gems

    @property
    def num_states(self) -> int:
        return self.size**4


def make_layout(size: int, blue, red, purple) -> GemsLayout:
    """A validated layout (`UsageError` for a size outside [2, MAX_SIZE] or a cell outside the grid)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 2 <= size <= MAX_SIZE:
        raise UsageError(f"gems size must be an integer in [2, {MAX_SIZE}], got {size!r}")
    cells = []
    for name, raw in (("blue", blue), ("red", red), ("purple", purple)):
        arr = np.asarray(raw, np.int64).reshape(-1, 2)
        if arr.size and (arr.min() < 0 or arr.max() >= size):
            raise UsageError(f"{name} gem cells must lie in [0, {size}) x [0, {size}), got {arr.tolist()}")
        cells.append(arr)
    return GemsLayout(int(size), *cells)


def layout_of(env, params) -> GemsLayout:
    """The layout of a gems kernel whose gems are fixed (``params.gem_cells``: blue, then red, then purple)."""
    cells = np.asarray(params.gem_cells)
    blue, red = env.num_blue, env.num_red
    return make_layout(env.size, cells[:blue], cells[blue : blue + red], cells[blue + red :])


def default_layout(size: int = 5) -> GemsLayout:
    """One blue gem at ``(0, size-1)``, one red at ``(size-1, 0)`` and two purple at the centre
    ``(size//2, size//2)`` and the corner ``(size-1, size-1)`` (agentlab's choice; the authors' 15 x 15 game draws
    three of each at random)."""
    from agentlab.kernels.multi.gems import tabular_cells  # the kernel's ``layout=tabular``

    cells = tabular_cells(size)
    return make_layout(size, cells[:1], cells[1:2], cells[2:])


def state_index(x0, y0, x1, y1, size: int):
    """The joint state index of the two positions (works on ints and integer arrays)."""
    return ((x0 * size + y0) * size + x1) * size + y1


def state_positions(s, size: int):
    """``(x0, y0, x1, y1)`` of joint state index `s` (inverse of `state_index`)."""
    y1 = s % size
    x1 = (s // size) % size
    y0 = (s // size**2) % size
    x0 = s // size**3
    return x0, y0, x1, y1


def _count_grid(size: int, cells: np.ndarray) -> np.ndarray:
    grid = np.zeros((size, size), np.int64)
    for x, y in cells:
        grid[x, y] += 1
    return grid


@numba.njit(cache=True)
def _export(size, blue, red, purple, moves, quirk, own_reward, purple_reward):
    n = size**4
    nxt = np.empty((n, 5, 5), np.int32)
    rew = np.zeros((2, n, 5, 5))
    for x0 in range(size):
        for y0 in range(size):
            for x1 in range(size):
                for y1 in range(size):
                    s = ((x0 * size + y0) * size + x1) * size + y1
                    for a0 in range(5):
                        nx0 = x0 + moves[a0, 0]
                        ny0 = y0 + moves[a0, 1]
                        if nx0 < 0 or nx0 >= size or ny0 < 0 or ny0 >= size:
                            nx0, ny0 = x0, y0
                        for a1 in range(5):
                            nx1 = x1 + moves[a1, 0]
                            ny1 = y1 + moves[a1, 1]
                            if nx1 < 0 or nx1 >= size or ny1 < 0 or ny1 >= size:
                                nx1, ny1 = x1, y1
                            nxt[s, a0, a1] = ((nx0 * size + ny0) * size + nx1) * size + ny1
                            r0 = own_reward * blue[nx0, ny0]
                            r1 = own_reward * red[nx1, ny1]
                            on0 = purple[nx0, ny0] > 0 or (quirk and purple[x0, y0] > 0)
                            on1 = purple[nx1, ny1] > 0 or (quirk and purple[x1, y1] > 0)
                            if on0 and on1:
                                r0 += purple_reward
                                r1 += purple_reward
                            rew[0, s, a0, a1] = r0
                            rew[1, s, a0, a1] = r1
    return nxt, rew


def export(layout: GemsLayout, purple_quirk: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(next_state int32 (S, 5, 5), reward float64 (2, S, 5, 5))`` with ``S = size**4`` (numba)."""
    size = layout.size
    return _export(
        size,
        _count_grid(size, layout.blue),
        _count_grid(size, layout.red),
        _count_grid(size, layout.purple),
        MOVES,
        bool(purple_quirk),
        OWN_GEM_REWARD,
        PURPLE_REWARD,
    )


def export_reference(layout: GemsLayout, purple_quirk: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The same export as a plain Python loop over joint states and joint actions (slow; for tests)."""
    size = layout.size
    blue = [tuple(c) for c in layout.blue.tolist()]
    red = [tuple(c) for c in layout.red.tolist()]
    purple = {tuple(c) for c in layout.purple.tolist()}

    def move(x, y, a):
        dx, dy = MOVES[a]
        nx, ny = x + int(dx), y + int(dy)
        return (nx, ny) if 0 <= nx < size and 0 <= ny < size else (x, y)

    n = size**4
    nxt = np.empty((n, ACTIONS, ACTIONS), np.int32)
    rew = np.zeros((2, n, ACTIONS, ACTIONS))
    for s in range(n):
        x0, y0, x1, y1 = state_positions(s, size)
        for a0 in range(ACTIONS):
            p0 = move(x0, y0, a0)
            for a1 in range(ACTIONS):
                p1 = move(x1, y1, a1)
                nxt[s, a0, a1] = state_index(p0[0], p0[1], p1[0], p1[1], size)
                r = [OWN_GEM_REWARD * blue.count(p0), OWN_GEM_REWARD * red.count(p1)]
                on0 = p0 in purple or (purple_quirk and (x0, y0) in purple)
                on1 = p1 in purple or (purple_quirk and (x1, y1) in purple)
                if on0 and on1:
                    r = [r[0] + PURPLE_REWARD, r[1] + PURPLE_REWARD]
                rew[:, s, a0, a1] = r
    return nxt, rew


def landing_reward(layout: GemsLayout) -> np.ndarray:
    """float64 ``(2, S)``: each agent's reward for arriving in state s' (quirk off: ``reward[i, s, a0, a1] ==
    landing_reward[i, next_state[s, a0, a1]]``)."""
    size = layout.size
    x0, y0, x1, y1 = state_positions(np.arange(size**4), size)
    blue = _count_grid(size, layout.blue)
    red = _count_grid(size, layout.red)
    purple = _count_grid(size, layout.purple) > 0
    both = (purple[x0, y0] & purple[x1, y1]) * PURPLE_REWARD
    return np.stack([OWN_GEM_REWARD * blue[x0, y0] + both, OWN_GEM_REWARD * red[x1, y1] + both]).astype(np.float64)
