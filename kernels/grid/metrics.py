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
``concession_arc_rate`` and the mean and standard deviation of every other metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.kernels.grid.curtailment import AUTHORITY, AUTOMATIC, COMPROMISE, GridParams, GridState, agent_sum, gini

EPISODE_METRICS = (
    "outcome",
    "rounds",
    "unserved_energy_mwh",
    "shed_energy_mwh",
    "imposed_energy_mwh",
    "voll_cost_musd",
    "compensation_musd",
    "authority_cost_musd",
    "max_frequency_deviation_hz",
    "burden_gini",
    "action_entropy_nats",
    "concession_arc",
)


def offer_entropy(counts: jax.Array) -> jax.Array:
    """Shannon entropy (nats) of a histogram; 0 for an empty one."""
    counts = counts.astype(jnp.float32)
    p = counts / jnp.maximum(agent_sum(counts), 1.0)[..., None]
    return -agent_sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def episode_metrics(state: GridState, params: GridParams) -> dict[str, jax.Array]:
    """The per-episode metrics (module docstring) of `state`, whose `time` counts the rounds played."""
    lost = state.curtailed_mwh + state.shed_mwh
    demanded = state.load_mw * jnp.maximum(state.elapsed_h, 1e-9)
    scale = params.reward_scale
    f32 = jnp.float32
    return {
        "outcome": state.outcome,
        "rounds": state.time,
        "unserved_energy_mwh": agent_sum(lost),
        "shed_energy_mwh": agent_sum(state.shed_mwh),
        "imposed_energy_mwh": agent_sum(state.imposed_mwh),
        "voll_cost_musd": (state.voll_cost_usd / scale).astype(f32),
        "compensation_musd": (agent_sum(state.compensation_usd) / scale).astype(f32),
        "authority_cost_musd": (state.authority_cost_usd / scale).astype(f32),
        "max_frequency_deviation_hz": state.max_abs_df_hz,
        "burden_gini": gini(lost / demanded).astype(f32),
        "action_entropy_nats": offer_entropy(state.offer_counts),
        "concession_arc": ((state.time >= 2) & (state.last_offer > state.first_offer + 1e-6)).astype(f32),
        # Indicators of the outcome, so that a mean over episodes is the outcome's rate (`agentlab train ppo`).
        "compromise": (state.outcome == COMPROMISE).astype(f32),
        "authority_decision": (state.outcome == AUTHORITY).astype(f32),
        "automatic_shedding": (state.outcome == AUTOMATIC).astype(f32),
    }


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
