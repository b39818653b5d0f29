"""Budgeted multi-agent synergy: when a tree of weak agents beats one strong agent at equal budget.

Theory after Liu, Kong and Pei (2026, arXiv 2601.17311) and agentlab's model of it
(``docs/synergy.md``): closed forms (`agentlab.synergy.theory`, NumPy), bit-packed Monte Carlo
(`agentlab.synergy.montecarlo`, JAX, imported only when used), a numba cross-check
(`agentlab.synergy.reference`), the agent-level model (`agentlab.synergy.agents`) and calibration to
agent logs (`agentlab.synergy.calibrate`).
"""

from __future__ import annotations

from agentlab.synergy.theory import (
    alpha_rho,
    budget_threshold,
    chain_risk,
    clipped_predictor,
    critical_fidelity,
    effective_votes,
    fidelity,
    fits_context,
    fixed_point,
    fixed_point_slope,
    leaf_bias,
    leaf_overhead,
    leaves_for_budget,
    level_map,
    level_map_derivative,
    majority_map,
    majority_slope,
    mixing_depth,
    optimal_leaf_compute,
    organization_exponent,
    star_capacity,
    star_risk,
    trajectory,
    tree_budget,
    tree_risk,
    tree_risk_floor,
)

__all__ = [
    "alpha_rho",
    "budget_threshold",
    "chain_risk",
    "clipped_predictor",
    "critical_fidelity",
    "effective_votes",
    "fidelity",
    "fits_context",
    "fixed_point",
    "fixed_point_slope",
    "leaf_bias",
    "leaf_overhead",
    "leaves_for_budget",
    "level_map",
    "level_map_derivative",
    "majority_map",
    "majority_slope",
    "mixing_depth",
    "optimal_leaf_compute",
    "organization_exponent",
    "star_capacity",
    "star_risk",
    "trajectory",
    "tree_budget",
    "tree_risk",
    "tree_risk_floor",
]
