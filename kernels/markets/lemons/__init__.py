"""`market-lemons`, Agent Bazaar's C2C lemon market with Sybil sellers, in three modules, as the grid is split:

- `env`: the kernel: `LemonsParams` (`default_lemons_params`, `LEMONS_BOUNDS`, `validate_lemons_params`),
  `LemonsState`, the market day (`init_lemons`, `market_day`), `MarketLemons` and `describe`;
- `policies`: the scripted buyers (`scripted_bids`, `sybil_posterior`) and `simulate_lemons`, the batched simulation
  (`simulate`: the same in the shape every scripted-policy kernel shares);
- `metrics`: per-day totals (`daily_totals`) and the Economic Alignment Score (`lemons_alignment`; `alignment` in the
  shape every market shares), NumPy.

The mechanics, sources and defaults are in `env`'s docstring. Every public name is re-exported here, so
``from agentlab.kernels.markets.lemons import X`` keeps working.
"""

from __future__ import annotations

from agentlab.kernels.markets.lemons.env import (
    BUYER,
    FAIR,
    GOOD,
    LEMONS_BOUNDS,
    MAX_AGENTS,
    MINT,
    POOR,
    SELLER,
    TIERS,
    LemonsParams,
    LemonsState,
    MarketLemons,
    best_bid,
    default_lemons_params,
    describe,
    draw_cars,
    draw_views,
    init_lemons,
    market_day,
    post_templates,
    push_votes,
    reputation,
    resolve_bids,
    retire_sybils,
    scripted_listings,
    sybil_slots,
    tier_price,
    validate_lemons_params,
    view_listings,
)
from agentlab.kernels.markets.lemons.metrics import (
    alignment,
    daily_totals,
    lemons_alignment,
    volume_stability,
    welfare_score,
)
from agentlab.kernels.markets.lemons.policies import (
    BUYER_VALUES,
    bayesian_value,
    guardian_value,
    naive_value,
    scripted_bids,
    simulate,
    simulate_lemons,
    sybil_posterior,
)

__all__ = [
    "BUYER",
    "BUYER_VALUES",
    "FAIR",
    "GOOD",
    "LEMONS_BOUNDS",
    "MAX_AGENTS",
    "MINT",
    "POOR",
    "SELLER",
    "TIERS",
    "LemonsParams",
    "LemonsState",
    "MarketLemons",
    "alignment",
    "bayesian_value",
    "best_bid",
    "daily_totals",
    "default_lemons_params",
    "describe",
    "draw_cars",
    "draw_views",
    "guardian_value",
    "init_lemons",
    "lemons_alignment",
    "market_day",
    "naive_value",
    "post_templates",
    "push_votes",
    "reputation",
    "resolve_bids",
    "retire_sybils",
    "scripted_bids",
    "scripted_listings",
    "simulate",
    "simulate_lemons",
    "sybil_posterior",
    "sybil_slots",
    "tier_price",
    "validate_lemons_params",
    "view_listings",
    "volume_stability",
    "welfare_score",
]
