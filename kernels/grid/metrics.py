"""Outcome metrics of `grid-curtailment` events: per episode (JAX, in ``info["episode_metrics"]``) and aggregated
over a batch of episodes (NumPy, `aggregate`).

Per episode (scalars; the values of the episode so far, final where the step ``terminated``):

- ``outcome``: int32, 1 compromise, 2 authority decision, 3 automatic shedding (0 still negotiating);
- ``rounds``: rounds played until the outcome;
- ``unserved_energy_mwh``: curtailed + shed energy, all participants (MWh);
- ``shed_energy_mwh``: involuntary shedding (relays and imposed), ``imposed_energy_mwh`` the imposed part;
- ``voll_cost_musd``: the value of all unserved energy at each participant's VoLL (M$);
- ``compensation_musd``, ``authority_cost_musd``: compensation paid; the authority's cost (see the kernel);
- ``max_frequency_deviation_hz``: the largest |f - f0| seen at a sub-step end;
- ``burden_gini``: Gini coefficient of the participants' burdens, each the share of its own demanded energy that it
  curtailed or lost (0: everyone carries the same share, as under pro-rata shedding);
- ``action_entropy_nats``: Shannon entropy of the offers (fractions binned into 10 bins of width 0.1) over all
  participants and rounds of the episode;
- ``concession_arc``: 1.0 when the mean offer rose from the first to the last round (two rounds or more), else 0.0;
- ``compromise``, ``authority_decision``, ``automatic_shedding``: float32 indicators of the outcome (their mean over
  episodes is the outcome's rate; `agentlab train ppo` reports them that way).

Aggregated (`aggregate`): the rates of each outcome (``compromise_rate``, ``authority_rate``, ``automatic_rate``),
``concession_arc_rate`` and the mean and standard deviation of every other metric. The grid is not an EAS market, so
it has no ``alignment(rows, env, params)`` as the markets have: `aggregate` over `simulate`'s episode metrics is its
summary.
"""

from __future__ import annotations

import numpy as np

# The per-episode metrics are computed by the kernel's step (its info), so they live beside it; re-exported here.
from agentlab.kernels.grid.curtailment import (  # noqa: F401
    AUTHORITY,
    AUTOMATIC,
    COMPROMISE,
    EPISODE_METRICS,
    episode_metrics,
    offer_entropy,
)


def aggregate(metrics: dict) -> dict[str, float]:
    """Summary over a batch: ``metrics`` maps each name of `EPISODE_METRICS` to an array ``(episodes,)`` of
    finished episodes. Returns flat float keys: outcome rates, ``concession_arc_rate``, ``mean_*`` and ``sd_*``."""
    outcome = np.asarray(metrics["outcome"])
    if outcome.size == 0:
        raise ValueError("aggregate needs at least one episode")
    out = {
        "episodes": float(outcome.size),
        "compromise_rate": float(np.mean(outcome == COMPROMISE)),
        "authority_rate": float(np.mean(outcome == AUTHORITY)),
        "automatic_rate": float(np.mean(outcome == AUTOMATIC)),
        "concession_arc_rate": float(np.mean(np.asarray(metrics["concession_arc"]))),
    }
    for name in EPISODE_METRICS:
        if name in ("outcome", "concession_arc"):
            continue
        values = np.asarray(metrics[name], np.float64)
        out[f"mean_{name}"] = float(values.mean())
        out[f"sd_{name}"] = float(values.std())
    return out
