"""One defaults-and-validation path per kernel: ``env.default_params()`` and ``env.validate_params(params)``.

Every registered kernel's defaults pass its own validation unchanged (through the `AutoReset` wrapper too), the
params `make` returns pass it again, and every bounded params field set outside its `agentlab.limits.Bound`
raises `UsageError` naming the field.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentlab.errors import UsageError
from agentlab.kernels import make, registered_kernels
from agentlab.kernels.atari import GAMES
from agentlab.kernels.control.maze2d import MAZE2D_BOUNDS
from agentlab.kernels.control.pendulum import PENDULUM_BOUNDS
from agentlab.kernels.grid.curtailment import GRID_BOUNDS
from agentlab.kernels.markets.calvano import CALVANO_BOUNDS, DEMAND_FIELDS
from agentlab.kernels.markets.crash import CRASH_BOUNDS
from agentlab.kernels.markets.lemons.env import LEMONS_BOUNDS
from agentlab.kernels.multi.coordination import COORDINATION_BOUNDS
from agentlab.kernels.multi.gems import GEMS_BOUNDS
from agentlab.kernels.toy.point import POINT_BOUNDS

# The bounds each kernel's `validate_params` checks, by params field. Kernels absent here have no bounded field
# (catch: only max_steps; the Atari games: the game's constants and a stochasticity checked by `make_atari`).
PARAM_BOUNDS = {
    "market-crash": CRASH_BOUNDS,
    "market-lemons": LEMONS_BOUNDS,
    "grid-curtailment": GRID_BOUNDS,
    "calvano": {name: CALVANO_BOUNDS[name] for name in DEMAND_FIELDS},
    "gems": {name: GEMS_BOUNDS[name] for name in ("gem_limit", "own_reward", "purple_reward", "max_steps")},
    "point": POINT_BOUNDS,
    "pendulum": PENDULUM_BOUNDS,
    "maze2d": MAZE2D_BOUNDS,
    "coordination": COORDINATION_BOUNDS,
}
UNBOUNDED = {"catch", *GAMES}
CASES = [(kernel, name) for kernel, bounds in PARAM_BOUNDS.items() for name in sorted(bounds)]


def same(a, b) -> bool:
    """Equal pytrees: the same structure (static fields included) and equal leaves."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_every_kernel_is_covered():
    assert set(PARAM_BOUNDS) | UNBOUNDED == set(registered_kernels())
    assert not set(PARAM_BOUNDS) & UNBOUNDED


@pytest.mark.parametrize("kernel", registered_kernels())
def test_defaults_validate_unchanged(kernel):
    env, params = make(kernel, auto_reset=False)
    defaults = env.default_params()
    assert same(env.validate_params(defaults), defaults)
    assert same(env.validate_params(params), params)  # what make returns is validated already
    wrapped, _ = make(kernel)
    assert same(wrapped.validate_params(wrapped.default_params()), defaults)  # AutoReset delegates


def _outside(bound):
    """A value above `bound`'s high end, of the bound's kind."""
    value = bound.high * 10 + 1
    return int(value) if bound.kind is int else float(value)


@pytest.mark.parametrize(("kernel", "name"), CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_a_field_outside_its_bound_is_refused(kernel, name):
    env, _ = make(kernel, auto_reset=False)
    bound = PARAM_BOUNDS[kernel][name]
    bad = env.default_params().replace(**{name: _outside(bound)})
    with pytest.raises(UsageError, match=f"^{name} must be"):
        env.validate_params(bad)
    with pytest.raises(UsageError, match=f"^{name} must be"):
        make(kernel)[0].validate_params(bad)
