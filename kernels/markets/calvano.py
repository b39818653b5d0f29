"""`calvano`: repeated Bertrand competition with logit demand (Calvano et al. 2020, AER 110(10)).

Each period every one of `n` firms posts a price from a grid of `m` prices; firm i sells

    q_i = exp((a - p_i) / mu) / (sum_j exp((a - p_j) / mu) + exp(a_0 / mu))

and earns ``pi_i = (p_i - c) q_i``. Baseline (the paper's): n = 2, c = 1, a = 2, a_0 = 0, mu = 0.25, m = 15 prices
evenly spaced on ``[p_N - xi (p_M - p_N), p_M + xi (p_M - p_N)]`` with xi = 0.1, where p_N and p_M are the
symmetric one-shot Nash and joint-monopoly prices, computed here from the demand model (`benchmarks`), not typed in.
Firms are symmetric (one `cost`, one `quality`); asymmetric firms are not modelled.

Kernel (multi-agent contract): memory k = 1, so the state is the last period's price indices.

- action: int32 ``(n,)``, each firm's price index in ``[0, m)`` (an index outside is clipped);
- observation: float32 ``(n, n)``; row i is the last period's prices (in money) with firm i's own first, then the
  others in firm order;
- reward: float32 ``(n,)``, each firm's profit this period;
- no termination; episodes end by truncation at `max_steps` (agentlab's default 100; the paper's game is infinite);
- `init` draws the first "last prices" uniformly on the grid (as Calvano's sessions start from a random state);
- ``info["action_mask"]``: all true, bool ``(n, m)``.

`payoff_table` gives the stage game for the tabular learner (`agentlab.rl.qlearn`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.kernels.environment import Environment, describe_kernel
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.limits import Bound, check_all


@pytree_dataclass
class CalvanoParams:
    """Demand model and action grid. `prices` is the grid itself (float32 ``(m,)``, money): `make` builds it by
    Calvano's rule from the benchmarks, but it is a parameter in its own right, so changing `mu` does not move it."""

    prices: jax.Array  # float32 (m,) the price grid
    cost: float = 1.0  # c, marginal cost (money per unit)
    quality: float = 2.0  # a, every firm's product quality index
    outside_quality: float = 0.0  # a_0, the outside good
    mu: float = 0.25  # horizontal differentiation
    max_steps: int | None = 100


@pytree_dataclass
class CalvanoState:
    last_action: jax.Array  # int32 (n,) last period's price index of each firm
    time: jax.Array  # int32 ()


# -- the demand model (NumPy or JAX: `xp` is the array module) --------------------------------------------------


def logit_demand(prices: Any, quality: float, outside_quality: float, mu: float, xp: Any = jnp) -> Any:
    """Market shares ``(..., n)`` for prices ``(..., n)`` (money); the last axis is the firms."""
    u = (quality - prices) / mu
    u0 = outside_quality / mu
    top = xp.maximum(xp.max(u, axis=-1, keepdims=True), u0)  # stable softmax with the outside good
    e = xp.exp(u - top)
    return e / (xp.sum(e, axis=-1, keepdims=True) + xp.exp(u0 - top))


def profits(prices: Any, cost: float, quality: float, outside_quality: float, mu: float, xp: Any = jnp) -> Any:
    """Profits ``(..., n)``: ``(p_i - c) q_i``."""
    return (prices - cost) * logit_demand(prices, quality, outside_quality, mu, xp)


def _symmetric_share(p: float, n: int, quality: float, outside_quality: float, mu: float) -> float:
    return float(logit_demand(np.full(n, p), quality, outside_quality, mu, np)[0])


def _bisect(g, lo: float, hi: float, iterations: int = 200) -> float:
    """The root of an increasing function `g` on ``[lo, hi]``."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if g(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def nash_price(n: int, cost: float = 1.0, quality: float = 2.0, outside_quality: float = 0.0, mu: float = 0.25):
    """The symmetric one-shot Bertrand-Nash price: the root of the first-order condition
    ``1 - (p - c)(1 - q(p))/mu = 0`` (each firm's own-price derivative ``dq_i/dp_i = -q_i (1 - q_i)/mu``)."""
    g = lambda p: (p - cost) * (1 - _symmetric_share(p, n, quality, outside_quality, mu)) - mu
    return _bisect(g, cost, cost + 50 * mu + abs(quality) + abs(outside_quality))


def monopoly_price(n: int, cost: float = 1.0, quality: float = 2.0, outside_quality: float = 0.0, mu: float = 0.25):
    """The symmetric joint-profit-maximising price: the root of ``1 - (p - c)(1 - n q(p))/mu = 0`` (all prices moving
    together, ``dq_i/dp = -q_i (1 - n q_i)/mu``)."""
    g = lambda p: (p - cost) * (1 - n * _symmetric_share(p, n, quality, outside_quality, mu)) - mu
    return _bisect(g, cost, cost + 50 * mu + abs(quality) + abs(outside_quality))


def benchmarks(n: int, params: CalvanoParams | None = None) -> dict[str, float]:
    """``{"nash_price", "nash_profit", "monopoly_price", "monopoly_profit"}`` (per firm, money per period) from the
    demand model. Baseline n = 2: p_N = 1.47293, pi_N = 0.22293, p_M = 1.92498, pi_M = 0.33749 (Calvano et al.)."""
    p = params or _default_demand()
    args = (float(p.cost), float(p.quality), float(p.outside_quality), float(p.mu))
    p_n, p_m = nash_price(n, *args), monopoly_price(n, *args)
    pi = lambda price: float(profits(np.full(n, price), *args, xp=np)[0])
    return {"nash_price": p_n, "nash_profit": pi(p_n), "monopoly_price": p_m, "monopoly_profit": pi(p_m)}


def _default_demand() -> CalvanoParams:
    return CalvanoParams(prices=np.zeros(1, np.float32))


def price_grid(n: int, m: int = 15, xi: float = 0.1, **demand: float) -> np.ndarray:
    """Calvano's grid: `m` prices evenly spaced on ``[p_N - xi (p_M - p_N), p_M + xi (p_M - p_N)]`` (float64)."""
    b = benchmarks(n, _default_demand().replace(**demand))
    gap = b["monopoly_price"] - b["nash_price"]
    return np.linspace(b["nash_price"] - xi * gap, b["monopoly_price"] + xi * gap, m)


# One declaration per scalar demand field and the grid's margin (`agentlab.limits`).
CALVANO_BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("cost", float, low=0, high=1e6, unit="money per unit"),
        Bound("quality", float, low=-1e6, high=1e6, unit="quality index"),
        Bound("outside_quality", float, low=-1e6, high=1e6, unit="quality index"),
        Bound("mu", float, low=0, low_open=True, high=1e6, unit="horizontal differentiation"),
        Bound("xi", float, low=0, high=10, unit="share of the Nash-monopoly price gap"),
    )
}


DEMAND_FIELDS = ("cost", "quality", "outside_quality", "mu")  # the `CalvanoParams` fields `calvano_params` may set


def calvano_params(
    n: int = 2, m: int = 15, xi: float = 0.1, max_steps: int | None = 100, **demand: float
) -> CalvanoParams:
    """Params with Calvano's grid for `n` firms; `demand` may set cost, quality, outside_quality, mu."""
    if n < 2 or m < 2:
        raise UsageError(f"calvano needs at least 2 firms and 2 prices, got firms={n}, prices={m}")
    unknown = sorted(set(demand) - set(DEMAND_FIELDS))
    if unknown:
        raise UsageError(f"unknown demand parameter {unknown[0]!r}: valid are {choices(DEMAND_FIELDS)}")
    demand = check_all(demand, CALVANO_BOUNDS)
    xi = CALVANO_BOUNDS["xi"].check(xi)
    grid = price_grid(n, m, xi, **demand)
    return CalvanoParams(prices=jnp.asarray(grid, jnp.float32), max_steps=max_steps, **demand)


def payoff_table(n: int, params: CalvanoParams, dtype: Any = np.float64) -> np.ndarray:
    """The stage game: profits ``(m**n, n)`` for every joint action, row ``s = sum_i a_i m**(n-1-i)`` (firm 0 is the
    most significant digit; `rl.qlearn` indexes states the same way). NumPy, float64 by default (the tabular
    learner's precision)."""
    grid = np.asarray(params.prices, np.float64)
    m = grid.shape[0]
    joint = np.stack(np.meshgrid(*([np.arange(m)] * n), indexing="ij"), axis=-1).reshape(-1, n)
    demand = (float(params.cost), float(params.quality), float(params.outside_quality), float(params.mu))
    return profits(grid[joint], *demand, xp=np).astype(dtype)


def static_best_response(n: int, params: CalvanoParams, firm: int, actions: np.ndarray) -> int:
    """The grid index that maximises `firm`'s one-period profit against the others' `actions` (first on ties)."""
    grid = np.asarray(params.prices, np.float64)
    joint = np.repeat(np.asarray(actions, np.int64)[None, :], grid.shape[0], axis=0)
    joint[:, firm] = np.arange(grid.shape[0])
    demand = (float(params.cost), float(params.quality), float(params.outside_quality), float(params.mu))
    return int(np.argmax(profits(grid[joint], *demand, xp=np)[:, firm]))


# -- the kernel ---------------------------------------------------------------------------------------------------


class Calvano(Environment[CalvanoState, CalvanoParams]):
    name = "calvano"

    def __init__(self, num_firms: int = 2, num_prices: int = 15):
        if num_firms < 2 or num_prices < 2:
            raise UsageError(f"calvano needs at least 2 firms and 2 prices, got {num_firms}, {num_prices}")
        self.num_agents = int(num_firms)
        self.num_prices = int(num_prices)
        self.roles = (0,) * self.num_agents

    def default_params(self) -> CalvanoParams:
        return calvano_params(self.num_agents, self.num_prices)

    def validate_params(self, params: CalvanoParams) -> CalvanoParams:
        """The demand fields through `CALVANO_BOUNDS` and the price grid (``(num_prices,)``, finite); `params`
        unchanged, or `UsageError` naming the field. (`calvano_params` checks the same when it builds them.)"""
        check_all({name: np.asarray(getattr(params, name)).item() for name in DEMAND_FIELDS}, CALVANO_BOUNDS)
        grid = np.asarray(params.prices, np.float64)
        if grid.shape != (self.num_prices,) or not np.all(np.isfinite(grid)):
            raise UsageError(f"prices must be {self.num_prices} finite prices (money), got {grid.tolist()}")
        return params

    def action_space(self, params=None) -> Discrete:
        return Discrete(self.num_prices, shape=(self.num_agents,))

    def observation_space(self, params=None) -> Box:
        return Box(0.0, math.inf, (self.num_agents, self.num_agents), jnp.float32)

    def init(self, key, params) -> CalvanoState:
        last = jax.random.randint(key, (self.num_agents,), 0, self.num_prices, jnp.int32)
        return CalvanoState(last_action=last, time=jnp.zeros((), jnp.int32))

    def observe(self, key, state: CalvanoState, params: CalvanoParams) -> jax.Array:
        n = self.num_agents
        prices = params.prices[state.last_action].astype(jnp.float32)
        order = (jnp.arange(n)[:, None] + jnp.arange(n)[None, :]) % n  # row i: i, i+1, ... (own first)
        return jnp.maximum(prices[order], 0.0)

    def advance(self, key, state, action, params):
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_prices - 1)
        prices = params.prices[action].astype(jnp.float32)
        reward = profits(prices, params.cost, params.quality, params.outside_quality, params.mu).astype(jnp.float32)
        mask = jnp.ones((self.num_agents, self.num_prices), bool)
        info = {"action_mask": mask, "prices": prices}
        return CalvanoState(last_action=action, time=state.time), reward, jnp.asarray(False), info


def describe(env: Calvano) -> dict:
    actions = [f"price{i}" for i in range(env.num_prices)]
    return describe_kernel(env, "market", actions=actions, observation_note="last prices, own first")
