"""`grid-curtailment`: an emergency negotiation over who curtails load after a large generator trips.

Sources: docs/grid.md (Andric 2026, arXiv 2604.11840, for the setting and the outcome
categories; ERCOT/PJM facts for the physics). The study does not publish its roles or protocol; the ones below are
agentlab's (the reference's "agentlab framing"), and every number is a `GridParams` field marked with its source or as
an agentlab guess.

Roles
-----
- **Participants** (the agents, ``num_agents``, default 5): load aggregates of one customer class each, cycling through
  `CLASSES` = critical services, residential utility, commercial, industrial, interruptible large load
  (``env.roles[i] = i % 5``). Participant i has a load ``d_i`` (MW, drawn at reset: its class's load split evenly
  among the participants of that class, times U(1 - load_spread, 1 + load_spread)) and a value of lost load ``v_i``
  ($/MWh, its class's VoLL).
- **The authority** (not an agent; a fixed rule): clears offers, or imposes rotating pro-rata shedding.
- **Physics** (not an agent): the standard system-frequency-response (SFR) model in sub-second steps (inertia and
  load damping; MW-limited primary response with droop, a governor lag and a ramp; MW-limited secondary/tertiary
  reserves with a deployment delay, a ramp and an energy budget) and ERCOT's three under-frequency load-shedding
  (UFLS) relay stages.

An event: a generation loss ``L = shortfall x D`` (MW; ``D = sum_i d_i``, the pre-event demand, which is also the
per-unit base), ``shortfall ~ U(shortfall_min, shortfall_max)``, announced at once (the authority publishes L) but in
effect gradually: ``L x min(1, t / onset_s)`` at t seconds after the event starts. agentlab's choice: by default a
*capacity shortfall developing over minutes* (``onset_s`` = 300 s, units failing one after another as on 15 Feb
2021), because an instantaneous loss of 5-15 % of demand is far beyond any design contingency (ERCOT's is 2,750 MW
of 50-70 GW, about 4-5 %) and would trip the UFLS relays within seconds, before any negotiation; ``onset_s = 0`` is
an instantaneous trip (what the physics tests use). Reserves hold ``reserve_energy_h x D`` MWh.

One step = one negotiation round (``round_seconds`` = 60 s of system time), in this order:

1. Every participant sees its observation (below) and offers ``action[i] = (x_i, a_i)``, both clipped to [0, 1]: a
   curtailment of ``x_i d_i`` MW and a compensation ask of ``a_i x price_cap`` $/MWh (pay-as-bid).
2. The authority ranks offers by ask (ties: lower index first) and accepts the cheapest up to the shortfall ``L``
   (the last one partly). If the offers cover L (``sum_i x_i d_i >= L - cover_tolerance x D``) the event ends in a
   **compromise**: the accepted curtailments hold for ``settlement_hours``.
3. Otherwise, in the deadline round (round ``deadline``, counting from 1) the authority discards the offers and imposes
   rotating pro-rata shedding ``s_i = L d_i / D`` for ``settlement_hours``: an **authority decision**.
4. Otherwise the cheapest offers up to the loss in effect at the round's end are accepted as interim curtailment C
   for the round (same ranking; more would push a still-developing event above nominal frequency), and the round's
   physics runs in ``substeps`` Heun steps of ``round_seconds / substeps`` (0.1 s) of the SFR model (below); at the
   end of each sub-step every relay stage whose threshold the frequency has reached (``f <= relay_hz[k]``) trips for
   good and sheds ``relay_shed[k]`` (cumulative) of every participant's remaining load from the next sub-step on (a
   relay delay of at most one sub-step).
5. After the round: if a relay tripped, the event ends in **automatic shedding** (the relay shed, the interim
   curtailments and a pro-rata imposition of any deficit the relays left hold for ``settlement_hours``); else if the
   frequency has stayed at or below ``emergency_hz`` (59.5 Hz) for the last ``emergency_s`` (30 s) without a break,
   the authority imposes pro-rata shedding (an **authority decision**, as in 3): it acts on sustained frequency, not
   on the nadir of a transient; else the next round starts.

So every event terminates within ``deadline`` rounds; `max_steps` (default None) is only a safety limit.

The SFR model (per unit on base D, ``w = df / f0``; `sfr_rates`): ``2H dw/dt = p + r + relief - L(t) - damping w``
with relief = accepted curtailment + relay shedding. Primary response p: a first-order lag (``governor_time_s``, 2 s)
toward the droop target ``-governor_share w / droop``, clipped to ``+-primary_headroom`` (5 % of demand) and ramping
at most ``primary_headroom / governor_ramp_s`` per s (full headroom in 5 s). ``governor_share`` = 0.25 of generation
is frequency-responsive, so ``K = damping + governor_share / droop = 6`` pu (about 1 % of load per 0.1 Hz, the order
of large interconnections' measured response; the former 5 % share gave K = 2, which settles a 10 % loss near
-3 Hz). Reserves r (secondary/tertiary): integral control ``dr/dt = -K w / agc_time_s`` (60 s), from
``reserve_delay_s`` (30 s) after the event starts, ramping at most ``reserve_share / reserve_ramp_s`` per s (full 5 %
of demand in 300 s), within ``[-reserve_share, reserve_share]`` and never spending more than their energy left. So a
trip falls at the initial RoCoF ``-L f0 / (2H)``, the governors arrest it at a nadir within seconds and hold
``-L f0 / K`` if the headroom suffices (a trip up to about 5 % of demand stays above the relays), the reserves then
restore nominal frequency over minutes until their energy runs out, and what the negotiation buys relieves them.

Observation, float32 ``(num_agents, OBS_DIM)`` (each participant's own view; public event data plus its own):
``[0]`` own load / D, ``[1]`` log10(own VoLL / price_cap), ``[2:7]`` own class one-hot, ``[7]`` shortfall L / D,
``[8]`` reserves left / initial reserves, ``[9]`` frequency deviation (Hz), ``[10]`` relay stages tripped / 3,
``[11]`` round / deadline, ``[12]`` rounds left / deadline, ``[13]`` own last offer x, ``[14]`` own last ask a,
``[15]`` the others' last offered MW / L (aggregate only: a participant never sees another's individual offer),
``[16]`` last round's accepted MW / L. Every entry is clipped to [-10, 10].

Action, float32 ``(num_agents, 2)`` in [0, 1]: (curtailment fraction, ask / price_cap); out-of-range values are
clipped, NaN acts as 0. ``info["action_mask"]`` is all true ``(num_agents, 2)`` (every class may offer and ask).

Reward, float32 ``(num_agents,)``, in ``reward_scale`` $ (default M$) per round: compensation received minus the value
of the participant's own lost load (``v_i`` x its curtailed and shed MWh), the settlement included in the terminal
round. The authority's cost (VoLL of involuntarily shed energy + compensation paid + ``frequency_cost`` x the
integral of |df|) is ``info["authority_cost"]``.

``info["episode_metrics"]`` (scalars, the episode so far; the episode's values where ``terminated``): see
`agentlab.kernels.grid.metrics.EPISODE_METRICS`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError
from agentlab.kernels.environment import Environment, describe_kernel, insert_after
from agentlab.kernels.fusion import materialize
from agentlab.kernels.grid.names import CLASSES
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box
from agentlab.limits import Bound

OBS_DIM = 17
ACTION_DIM = 2
OFFER_BINS = 10  # action entropy: offers binned into 10 bins of width 0.1

# Outcome codes (`GridState.outcome`, ``info["episode_metrics"]["outcome"]``; their names: `names.OUTCOMES`).
ONGOING, COMPROMISE, AUTHORITY, AUTOMATIC = 0, 1, 2, 3


@pytree_dataclass
class GridParams:
    # Participants (per class, in `CLASSES` order).
    class_load_mw: jax.Array  # float32 (5,) MW, the class's total load. agentlab guess: a 10 GW area.
    class_voll: jax.Array  # float32 (5,) $/MWh. agentlab guess, ordered as the reference says (critical >>
    # residential >> interruptible) around ERCOT's 35,685 $/MWh (2024) and the earlier 5,000-9,000.
    relay_hz: jax.Array  # float32 (3,) UFLS thresholds, Hz (ERCOT: 59.3, 58.9, 58.5)
    relay_shed: jax.Array  # float32 (3,) cumulative share of load shed per stage (ERCOT: 5%, 15%, 25%)
    load_spread: float = 0.2  # loads drawn in d x U(1 - spread, 1 + spread). agentlab guess
    # The event.
    shortfall_min: float = 0.05  # generation loss / demand. agentlab guess ("a large generator")
    shortfall_max: float = 0.15
    onset_s: float = 300.0  # s over which the loss grows linearly to L; 0 = an instantaneous trip. agentlab choice: a
    # shortfall developing over minutes (as units failed on 15 Feb 2021), see the module docstring
    # Physics: the system-frequency-response model, per unit on the pre-event demand (reference, "Timeline").
    nominal_hz: float = 60.0  # f0 (ERCOT, 60 Hz system)
    inertia_h: float = 6.0  # H, s: 2H = 12 s, inside the reference's 10-18 s
    damping: float = 1.0  # D, load damping, pu load per pu frequency. agentlab guess (commonly 1-2)
    droop: float = 0.05  # R, per unit (reference: 3-6%)
    governor_share: float = 0.25  # frequency-responsive share of generation: D + share / R = 6 pu, about 1 % of load
    # per 0.1 Hz, the order of large interconnections' measured frequency response. agentlab guess
    primary_headroom: float = 0.05  # MW limit of primary response, share of demand (ERCOT holds about 4-5 %). guess
    governor_time_s: float = 2.0  # first-order lag of the governors, s. agentlab guess (turbines: 1-10 s)
    governor_ramp_s: float = 5.0  # primary response ramps from 0 to the full headroom in no less than this, s. guess
    reserve_share: float = 0.05  # MW limit of secondary/tertiary reserves (up and down), share of demand. guess
    reserve_delay_s: float = 30.0  # reserves start this long after the event starts, s. agentlab guess
    reserve_ramp_s: float = 300.0  # reserves ramp from 0 to reserve_share in no less than this, s. agentlab guess
    agc_time_s: float = 60.0  # integral time of the reserves' control (restores f0 with this time constant), s. guess
    reserve_energy_h: float = 0.005  # reserves' energy budget, MWh per MW of demand. agentlab guess
    emergency_hz: float = 59.5  # the authority imposes when frequency stays at or below this ... agentlab guess
    emergency_s: float = 30.0  # ... for this many seconds without a break (sustained, not a transient nadir). guess
    # Negotiation.
    round_seconds: float = 60.0  # system time per round (agentlab framing)
    deadline: int = 6  # rounds before the authority imposes. agentlab guess
    settlement_hours: float = 0.5  # how long the outcome holds (reference: EEA3 rotating outages 15-45 min)
    price_cap: float = 5000.0  # $/MWh, the highest ask (reference: administrative 5,000-9,000 $/MWh; the study varies
    # it against the classes' VoLL, since it decides which classes a cost-minimising participant can ever accept)
    frequency_cost: float = 1000.0  # $ per Hz s of |df| in the authority's cost. agentlab guess
    cover_tolerance: float = 1e-5  # offers within this share of demand of L count as covering (float32 sums)
    reward_scale: float = 1e6  # rewards and costs in units of this many $ (M$)
    max_steps: int | None = None


@pytree_dataclass
class GridState:
    load_mw: jax.Array  # float32 (N,) d_i
    voll: jax.Array  # float32 (N,) v_i, $/MWh
    loss_mw: jax.Array  # float32 () L
    reserve_mwh: jax.Array  # float32 () reserve energy left
    df_hz: jax.Array  # float32 () frequency deviation from nominal, Hz
    primary_pu: jax.Array  # float32 () primary (governor) response, per unit of the pre-event demand
    reserve_pu: jax.Array  # float32 () secondary/tertiary reserve output, per unit of the pre-event demand
    below_s: jax.Array  # float32 () seconds the frequency has been at or below emergency_hz without a break
    stage: jax.Array  # int32 () relay stages tripped (0-3)
    offer: jax.Array  # float32 (N,) last offered fraction x
    ask: jax.Array  # float32 (N,) last ask / price_cap
    accepted_mw: jax.Array  # float32 (N,) curtailment accepted last round
    curtailed_mwh: jax.Array  # float32 (N,) voluntary curtailment so far
    shed_mwh: jax.Array  # float32 (N,) involuntary shedding so far (relays and imposed)
    imposed_mwh: jax.Array  # float32 (N,) of which imposed by the authority
    served_mwh: jax.Array  # float32 (N,) energy served so far
    compensation_usd: jax.Array  # float32 (N,) compensation received
    elapsed_h: jax.Array  # float32 () hours of system time covered by the energy accounts
    outcome: jax.Array  # int32 () ONGOING, COMPROMISE, AUTHORITY or AUTOMATIC
    min_df_hz: jax.Array  # float32 () most negative deviation so far
    max_abs_df_hz: jax.Array  # float32 () largest |deviation| so far
    abs_df_hz_s: jax.Array  # float32 () integral of |df| dt, Hz s
    authority_cost_usd: jax.Array  # float32 ()
    voll_cost_usd: jax.Array  # float32 () value of all unserved energy (curtailed and shed) at each VoLL
    offer_counts: jax.Array  # int32 (OFFER_BINS,) histogram of offers over agents and rounds
    first_offer: jax.Array  # float32 () mean offer of round 1
    last_offer: jax.Array  # float32 () mean offer of the latest round
    time: jax.Array  # int32 () rounds played


def default_grid_params(**overrides) -> GridParams:
    """The default params (see the field comments for sources and guesses), with `overrides` applied."""
    params = GridParams(
        class_load_mw=jnp.asarray([800.0, 4000.0, 2500.0, 2000.0, 700.0], jnp.float32),
        class_voll=jnp.asarray([150_000.0, 12_000.0, 40_000.0, 20_000.0, 500.0], jnp.float32),
        relay_hz=jnp.asarray([59.3, 58.9, 58.5], jnp.float32),
        relay_shed=jnp.asarray([0.05, 0.15, 0.25], jnp.float32),
    )
    return params.replace(**overrides)


# One declaration per scalar `GridParams` field (`agentlab.limits`): `validate_grid_params`, ``--param`` and Python
# callers all check values through these.
GRID_BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("load_spread", float, low=0, high=1, high_open=True, unit="share of load"),
        Bound("shortfall_min", float, low=0, high=1, unit="generation loss / demand"),
        Bound("shortfall_max", float, low=0, high=1, unit="generation loss / demand"),
        Bound("nominal_hz", float, low=0, low_open=True, high=1000, unit="Hz"),
        Bound("inertia_h", float, low=0.5, high=100, unit="s"),
        Bound("droop", float, low=0, low_open=True, high=1, unit="per unit"),
        Bound("onset_s", float, low=0, high=86400, unit="s over which the loss grows; 0 = a trip"),
        Bound("governor_share", float, low=0, high=1, unit="frequency-responsive share of generation"),
        Bound("damping", float, low=0, high=100, unit="pu load per pu frequency"),
        Bound("primary_headroom", float, low=0, high=1, unit="share of demand"),
        Bound("governor_time_s", float, low=0, low_open=True, high=3600, unit="s"),
        Bound("governor_ramp_s", float, low=0, low_open=True, high=3600, unit="s from 0 to full headroom"),
        Bound("reserve_share", float, low=0, high=1, unit="share of demand"),
        Bound("reserve_delay_s", float, low=0, high=86400, unit="s"),
        Bound("reserve_ramp_s", float, low=0, low_open=True, high=86400, unit="s from 0 to reserve_share"),
        Bound("agc_time_s", float, low=0, low_open=True, high=86400, unit="s"),
        Bound("reserve_energy_h", float, low=0, high=100, unit="MWh per MW of demand"),
        Bound("emergency_hz", float, low=0, low_open=True, high=1000, unit="Hz, at most nominal_hz"),
        Bound("emergency_s", float, low=0, high=86400, unit="s of sustained low frequency"),
        Bound("round_seconds", float, low=0, low_open=True, high=86400, unit="s of system time per round"),
        Bound("deadline", int, low=1, high=10_000, unit="rounds"),
        Bound("settlement_hours", float, low=0, low_open=True, high=8760, unit="h"),
        Bound("price_cap", float, low=0, low_open=True, high=1e7, unit="$/MWh"),
        Bound("frequency_cost", float, low=0, high=1e12, unit="$ per Hz s"),
        Bound("cover_tolerance", float, low=0, high=1, unit="share of demand"),
        Bound("reward_scale", float, low=0, low_open=True, high=1e12, unit="$ per reward unit"),
    )
}
# The per-class entries of `class_load_mw` and `class_voll` (``--param load_<class>``, ``voll_<class>``).
CLASS_BOUNDS: dict[str, Bound] = {
    **{f"load_{c}": Bound(f"load_{c}", float, low=0, high=1e6, unit="MW") for c in CLASSES},
    **{f"voll_{c}": Bound(f"voll_{c}", float, low=0, high=1e7, unit="$/MWh") for c in CLASSES},
}
# ``--param shortfall`` sets both ends of the shortfall range.
SHORTFALL = Bound("shortfall", float, low=0, high=1, unit="generation loss / demand")


def validate_grid_params(params: GridParams) -> GridParams:
    """Raise `UsageError` (a `ValueError`) on physically meaningless settings (host values only): every scalar field
    through its `GRID_BOUNDS` entry, each class's load and VoLL through `CLASS_BOUNDS`, and the relations between
    fields (a positive total load, shortfall_min <= shortfall_max, emergency_hz <= nominal_hz, relay stages)."""
    loads = np.asarray(params.class_load_mw, np.float64)
    voll = np.asarray(params.class_voll, np.float64)
    if loads.shape != (len(CLASSES),) or voll.shape != (len(CLASSES),):
        raise UsageError(f"class_load_mw and class_voll need one value per class {CLASSES}")
    for i, c in enumerate(CLASSES):
        CLASS_BOUNDS[f"load_{c}"].check(float(loads[i]), f"class_load_mw[{i}] (load_{c})")
        CLASS_BOUNDS[f"voll_{c}"].check(float(voll[i]), f"class_voll[{i}] (voll_{c})")
    if loads.sum() <= 0:
        raise UsageError("the total load must be positive (MW), got class_load_mw all 0")
    for name, bound in GRID_BOUNDS.items():
        bound.check(np.asarray(getattr(params, name)).item())
    lo, hi = float(params.shortfall_min), float(params.shortfall_max)
    if hi < lo:
        raise UsageError(f"need shortfall_min <= shortfall_max (generation loss / demand), got {lo:g} and {hi:g}")
    if float(params.emergency_hz) > float(params.nominal_hz):
        raise UsageError(f"emergency_hz {params.emergency_hz} is above nominal {params.nominal_hz} (Hz)")
    relay_hz = np.asarray(params.relay_hz, np.float64)
    relay_shed = np.asarray(params.relay_shed, np.float64)
    if (
        not np.all(np.isfinite(relay_hz))
        or np.any(np.diff(relay_hz) > 0)
        or np.any(np.diff(relay_shed) < 0)
        or not np.all((relay_shed >= 0) & (relay_shed <= 1))
    ):
        raise UsageError("relay_hz must descend and relay_shed (cumulative shares in [0, 1]) ascend")
    return params


# -- physics ---------------------------------------------------------------------------------------------------------


def agent_sum(x: jax.Array) -> jax.Array:
    """Sum over the last axis in a fixed left-to-right order.

    ``jnp.sum`` may reassociate differently under `vmap` than for one lane, which breaks the contract's bit-for-bit
    equality of a batch and a loop; chained adds are never reassociated.
    """
    total = x[..., 0]
    for i in range(1, x.shape[-1]):
        total = total + x[..., i]
    return total


def lost_share(t_s, params: GridParams) -> jax.Array:
    """The share of the loss L in effect `t_s` seconds after the event starts: a linear ramp over ``onset_s`` (all of
    it from t = 0 for a trip, ``onset_s = 0``)."""
    onset = jnp.asarray(params.onset_s, jnp.float32)
    return jnp.where(onset > 0, jnp.clip(t_s / jnp.maximum(onset, 1e-9), 0.0, 1.0), 1.0)


def sfr_rates(w, primary, reserve, t_s, loss_pu, relief_pu, params: GridParams):
    """Time derivatives (per s) of the system-frequency-response model at one instant, per unit on the pre-event
    demand D: ``w = df / f0``, `primary` (governor) and `reserve` (secondary/tertiary) output. ``relief_pu`` is the
    load not served (accepted curtailment and relay shedding). Returns ``(dw, dprimary, dreserve)``:

    - swing: ``2H dw/dt = primary + reserve + relief - loss x lost_share(t) - damping w``;
    - primary: ``dp/dt = (clip(-governor_share w / droop, +-headroom) - p) / governor_time_s``, at most
      ``headroom / governor_ramp_s`` per s either way;
    - reserves: integral control ``dr/dt = -(damping + governor_share / droop) w / agc_time_s`` (the area's
      frequency bias; with the primary settled this restores f0 with time constant ``agc_time_s``), at most
      ``reserve_share / reserve_ramp_s`` per s, nothing before ``reserve_delay_s``.
    """
    headroom = params.primary_headroom
    stiffness = params.governor_share / params.droop
    imbalance = primary + reserve + relief_pu - loss_pu * lost_share(t_s, params) - params.damping * w
    target = jnp.clip(-stiffness * w, -headroom, headroom)
    ramp = headroom / params.governor_ramp_s
    dprimary = jnp.clip((target - primary) / params.governor_time_s, -ramp, ramp)
    ramp_r = params.reserve_share / params.reserve_ramp_s
    dreserve = jnp.clip(-(params.damping + stiffness) * w / params.agc_time_s, -ramp_r, ramp_r)
    dreserve = jnp.where(t_s >= params.reserve_delay_s, dreserve, 0.0)
    return imbalance / (2.0 * params.inertia_h), dprimary, dreserve


def sfr_step(w, primary, reserve, t_s, dt, loss_pu, relief_pu, reserve_cap, params: GridParams):
    """One Heun (explicit trapezoid) step of `sfr_rates` over `dt` seconds from time `t_s`; `reserve` stays in
    ``[-reserve_share, reserve_cap]`` and `primary` in ``+-primary_headroom``.

    Returns ``(w, primary, reserve)`` after the step and the step's means of `w`, `primary`, `reserve` and the lost
    share (the trapezoid weights, so that the energy terms sum exactly to the change of ``w``: the kinetic-energy
    balance closes). Second order in dt; accurate while ``dt (damping + governor_share / droop) / 2H`` and
    ``dt / governor_time_s`` are well below 1 (defaults: 0.05 at dt = 0.1 s).
    """
    headroom = params.primary_headroom
    dw1, dp1, dr1 = sfr_rates(w, primary, reserve, t_s, loss_pu, relief_pu, params)
    w2 = w + dt * dw1
    p2 = jnp.clip(primary + dt * dp1, -headroom, headroom)
    r2 = jnp.clip(reserve + dt * dr1, -params.reserve_share, reserve_cap)
    dw2, dp2, dr2 = sfr_rates(w2, p2, r2, t_s + dt, loss_pu, relief_pu, params)
    # The swing's change, written as the mean of its terms at both ends (what the energy accounts integrate).
    mean_w, mean_p, mean_r = 0.5 * (w + w2), 0.5 * (primary + p2), 0.5 * (reserve + r2)
    mean_lost = 0.5 * (lost_share(t_s, params) + lost_share(t_s + dt, params))
    w_next = w + dt * (mean_p + mean_r + relief_pu - loss_pu * mean_lost - params.damping * mean_w) / (
        2.0 * params.inertia_h
    )
    p_next = jnp.clip(primary + 0.5 * dt * (dp1 + dp2), -headroom, headroom)
    r_next = jnp.clip(reserve + 0.5 * dt * (dr1 + dr2), -params.reserve_share, reserve_cap)
    return (w_next, p_next, r_next), (mean_w, mean_p, mean_r, mean_lost)


def relay_stage(freq_hz: jax.Array, relay_hz: jax.Array) -> jax.Array:
    """int32: how many relay stages a frequency of `freq_hz` trips (a stage trips at ``f <= threshold``)."""
    return jnp.sum(freq_hz <= relay_hz).astype(jnp.int32)


def shed_share(stage: jax.Array, relay_shed: jax.Array) -> jax.Array:
    """The cumulative share of load the relays shed after `stage` stages tripped (0 for none)."""
    padded = jnp.concatenate([jnp.zeros((1,), relay_shed.dtype), relay_shed])
    return padded[stage]


@pytree_dataclass
class RoundPhysics:
    df_hz: jax.Array  # () deviation at the end of the round
    primary_pu: jax.Array  # () primary (governor) output at the end, per unit of D
    reserve_pu: jax.Array  # () secondary/tertiary reserve output at the end, per unit of D
    reserve_mwh: jax.Array  # () reserve energy left
    stage: jax.Array  # int32 () relay stages tripped
    below_s: jax.Array  # () seconds the frequency has been at or below emergency_hz without a break, at the end
    min_df_hz: jax.Array  # () most negative deviation in the round (sub-step ends)
    max_abs_df_hz: jax.Array  # () largest |deviation| in the round
    shed_share_h: jax.Array  # () integral of the relays' shed share over the round, hours
    lost_mwh: jax.Array  # () generation lost over the round (L x the lost share, integrated)
    reserve_used_mwh: jax.Array  # () net energy the reserves delivered
    governor_mwh: jax.Array  # () energy from primary response
    damping_mwh: jax.Array  # () load not drawn because of low frequency (damping; not unserved energy)
    df_integral_hz_s: jax.Array  # () integral of df dt
    abs_df_hz_s: jax.Array  # () integral of |df| dt (per sub-step |integral|)


def round_physics(
    df_hz,
    primary_pu,
    reserve_pu,
    reserve_mwh,
    stage,
    below_s,
    start_s,
    loss_mw,
    curtailed_mw,
    demand_mw,
    params: GridParams,
    substeps: int,
) -> RoundPhysics:
    """One round of system time from `start_s` (seconds since the event began) in `substeps` `sfr_step`s.

    Power balance per sub-step (MW): generation ``D - L lost_share + primary + reserve`` against consumption
    ``served - damping``, with ``served = (D - C)(1 - relay share)``; the difference changes the kinetic energy
    ``2H D df / f0`` (MW s). The reserves' output is capped so that it never spends more than their energy left.
    Relays latch; a stage trips at the end of the sub-step in which ``f <= threshold``.
    """
    dt = params.round_seconds / substeps
    dt_h = dt / 3600.0
    f32 = jnp.float32
    remaining = demand_mw - curtailed_mw
    per_mw = 1.0 / demand_mw
    loss_pu = loss_mw * per_mw

    def body(i, carry):
        w, primary, reserve, energy, stage, below, min_df, max_abs, shed_h, lost_h, used, gov, integral, absint = carry
        share = shed_share(stage, params.relay_shed)
        relief = (curtailed_mw + share * remaining) * per_mw
        cap = jnp.minimum(params.reserve_share, jnp.maximum(energy, 0.0) * per_mw / dt_h)
        reserve = jnp.minimum(reserve, cap)
        t = start_s + i.astype(f32) * dt
        (w, primary, reserve), (mean_w, mean_p, mean_r, mean_lost) = sfr_step(
            w, primary, reserve, t, dt, loss_pu, relief, cap, params
        )
        df = w * params.nominal_hz
        freq = params.nominal_hz + df
        stage = jnp.maximum(stage, relay_stage(freq, params.relay_hz))
        step_integral = mean_w * params.nominal_hz * dt
        return (
            w,
            primary,
            reserve,
            jnp.maximum(energy - jnp.maximum(mean_r, 0.0) * demand_mw * dt_h, 0.0),
            stage,
            jnp.where(freq <= params.emergency_hz, below + dt, 0.0),
            jnp.minimum(min_df, df),
            jnp.maximum(max_abs, jnp.abs(df)),
            shed_h + share * dt_h,
            lost_h + mean_lost * dt_h,
            used + mean_r * demand_mw * dt_h,
            gov + mean_p * demand_mw * dt_h,
            integral + step_integral,
            absint + jnp.abs(step_integral),
        )

    zero = jnp.zeros((), f32)
    df0 = f32(df_hz)
    init = (
        df0 / params.nominal_hz,
        f32(primary_pu),
        f32(reserve_pu),
        f32(reserve_mwh),
        jnp.int32(stage),
        f32(below_s),
        df0,
        jnp.abs(df0),
        *(zero,) * 6,
    )
    out = jax.lax.fori_loop(0, substeps, body, init)
    w, primary, reserve, energy, stage, below, min_df, max_abs, shed_h, lost_h, used, gov, integral, absint = out
    to_mwh = -demand_mw / params.nominal_hz / 3600.0  # MW s per Hz s of -df, in MWh
    return RoundPhysics(
        df_hz=w * params.nominal_hz,
        primary_pu=primary,
        reserve_pu=reserve,
        reserve_mwh=energy,
        stage=stage,
        below_s=below,
        min_df_hz=min_df,
        max_abs_df_hz=max_abs,
        shed_share_h=shed_h,
        lost_mwh=loss_mw * lost_h,
        reserve_used_mwh=used,
        governor_mwh=gov,
        damping_mwh=params.damping * to_mwh * integral,
        df_integral_hz_s=integral,
        abs_df_hz_s=absint,
    )


# -- the authority ---------------------------------------------------------------------------------------------------


def clear_offers(offered_mw: jax.Array, ask: jax.Array, required_mw: jax.Array, voll: jax.Array) -> jax.Array:
    """Accepted MW per participant: offers ranked by ask, accepted until `required_mw`. Equal asks go in ascending
    value of lost load (the published `voll`; the reference's cost-minimising order), then by index: at equal asks
    the authority takes the load that is cheapest to lose first, never the critical services first."""
    n = offered_mw.shape[0]
    index = jnp.arange(n)
    tie = ask[None, :] == ask[:, None]
    cheaper = (voll[None, :] < voll[:, None]) | ((voll[None, :] == voll[:, None]) & (index[None, :] < index[:, None]))
    before = (ask[None, :] < ask[:, None]) | (tie & cheaper)
    ahead = agent_sum(jnp.where(before, offered_mw[None, :], 0.0))
    return jnp.clip(required_mw - ahead, 0.0, offered_mw)


def pro_rata(amount_mw: jax.Array, base_mw: jax.Array) -> jax.Array:
    """Rotating pro-rata shedding: ``s_i = amount b_i / sum b`` (reference), at most `base_mw`."""
    total = agent_sum(base_mw)
    # Multiply by the reciprocal: XLA divides a batch of vectors by per-lane scalars that way under `vmap`, and the
    # contract wants one lane to equal the batch bit for bit.
    return jnp.minimum(amount_mw * base_mw * (1.0 / jnp.maximum(total, 1e-9)), base_mw)


def gini(values: jax.Array) -> jax.Array:
    """The Gini coefficient of non-negative `values` (0 when all are zero)."""
    n = values.shape[-1]
    diff = agent_sum(agent_sum(jnp.abs(values[..., :, None] - values[..., None, :])))
    total = agent_sum(values)
    return jnp.where(total > 0, diff / (2.0 * n * jnp.maximum(total, 1e-30)), 0.0)


# -- the kernel ------------------------------------------------------------------------------------------------------


class GridCurtailment(Environment[GridState, GridParams]):
    """See the module docstring. ``num_agents`` participants; ``substeps`` swing sub-steps per round (static)."""

    name = "grid-curtailment"

    def __init__(self, num_agents: int = 5, substeps: int = 600):
        if num_agents < 2:
            raise UsageError(f"grid-curtailment needs at least 2 participants, got {num_agents}")
        if substeps < 1:
            raise UsageError(f"substeps must be at least 1, got {substeps}")
        self.num_agents = int(num_agents)
        self.substeps = int(substeps)
        self.roles = tuple(i % len(CLASSES) for i in range(self.num_agents))
        self.class_names = tuple(CLASSES[r] for r in self.roles)

    @property
    def multi_agent(self) -> bool:
        return True

    def default_params(self) -> GridParams:
        return default_grid_params()

    def validate_params(self, params: GridParams) -> GridParams:
        """`validate_grid_params`."""
        return validate_grid_params(params)

    def action_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (self.num_agents, ACTION_DIM), jnp.float32)

    def observation_space(self, params=None) -> Box:
        return Box(-10.0, 10.0, (self.num_agents, OBS_DIM), jnp.float32)

    def participant_loads(self, key, params: GridParams) -> jax.Array:
        roles = jnp.asarray(self.roles)
        per_class = jnp.bincount(roles, length=len(CLASSES)).astype(jnp.float32)
        base = params.class_load_mw[roles] / per_class[roles]
        spread = jax.random.uniform(key, (self.num_agents,), jnp.float32, -1.0, 1.0) * params.load_spread
        return (base * (1.0 + spread)).astype(jnp.float32)

    def init(self, key, params: GridParams) -> GridState:
        k_load, k_loss = jax.random.split(key)
        # A fusion boundary: recomputed inside other fusions, the loads could round differently (FMA contraction)
        # under `vmap` than for one lane.
        load = materialize(self.participant_loads(k_load, params), k_load)
        demand = agent_sum(load)
        share = jax.random.uniform(k_loss, (), jnp.float32, params.shortfall_min, params.shortfall_max)
        n = self.num_agents
        zeros, zero = jnp.zeros((n,), jnp.float32), jnp.zeros((), jnp.float32)
        return GridState(
            load_mw=load,
            voll=params.class_voll[jnp.asarray(self.roles)].astype(jnp.float32),
            loss_mw=(share * demand).astype(jnp.float32),
            reserve_mwh=jnp.asarray(params.reserve_energy_h * demand, jnp.float32),
            df_hz=zero,
            primary_pu=zero,
            reserve_pu=zero,
            below_s=zero,
            stage=jnp.zeros((), jnp.int32),
            offer=zeros,
            ask=zeros,
            accepted_mw=zeros,
            curtailed_mwh=zeros,
            shed_mwh=zeros,
            imposed_mwh=zeros,
            served_mwh=zeros,
            compensation_usd=zeros,
            elapsed_h=zero,
            outcome=jnp.zeros((), jnp.int32),
            min_df_hz=zero,
            max_abs_df_hz=zero,
            abs_df_hz_s=zero,
            authority_cost_usd=zero,
            voll_cost_usd=zero,
            offer_counts=jnp.zeros((OFFER_BINS,), jnp.int32),
            first_offer=zero,
            last_offer=zero,
            time=jnp.zeros((), jnp.int32),
        )

    def advance(self, key, state: GridState, action, params: GridParams):
        action = jnp.nan_to_num(jnp.asarray(action, jnp.float32).reshape(self.num_agents, ACTION_DIM))
        offer = jnp.clip(action[:, 0], 0.0, 1.0)
        ask = jnp.clip(action[:, 1], 0.0, 1.0)
        next_state, reward, terminated, info = negotiation_round(state, offer, ask, params, self.substeps)
        info["action_mask"] = jnp.ones((self.num_agents, ACTION_DIM), bool)
        return next_state, reward, terminated, info

    def observe(self, key, state: GridState, params: GridParams) -> jax.Array:
        n = self.num_agents
        demand = agent_sum(state.load_mw)
        loss = jnp.maximum(state.loss_mw, 1e-6)
        deadline = jnp.asarray(params.deadline, jnp.float32)
        offered = state.offer * state.load_mw
        public = jnp.stack(
            [
                state.loss_mw / demand,
                state.reserve_mwh / jnp.maximum(params.reserve_energy_h * demand, 1e-6),
                state.df_hz,
                state.stage.astype(jnp.float32) / 3.0,
                state.time.astype(jnp.float32) / deadline,
                (deadline - state.time.astype(jnp.float32)) / deadline,
            ]
        )
        own = jnp.stack(
            [state.load_mw * (1.0 / demand), jnp.log10(jnp.maximum(state.voll, 1e-3) / params.price_cap)], axis=1
        )
        roles = jax.nn.one_hot(jnp.asarray(self.roles), len(CLASSES), dtype=jnp.float32)
        last = jnp.stack(
            [
                state.offer,
                state.ask,
                (agent_sum(offered) - offered) * (1.0 / loss),
                jnp.broadcast_to(agent_sum(state.accepted_mw) / loss, (n,)),
            ],
            axis=1,
        )
        obs = jnp.concatenate([own, roles, jnp.broadcast_to(public, (n, public.shape[0])), last], axis=1)
        return jnp.clip(obs, -10.0, 10.0).astype(jnp.float32)


def negotiation_round(state: GridState, offer, ask, params: GridParams, substeps: int):
    """One round (module docstring, steps 2-5) for clipped offers and asks. ``(state, reward, terminated, info)``.

    Stepping an event that already ended (``outcome != ONGOING``) is undefined, as the contract says; the scripted
    simulations freeze finished events themselves.
    """
    f32 = jnp.float32
    load, voll = state.load_mw, state.voll
    demand = agent_sum(load)
    loss = state.loss_mw
    round_h = params.round_seconds / 3600.0
    settle_h = jnp.asarray(params.settlement_hours, f32)
    offered = offer * load
    covered = agent_sum(offered) >= loss - params.cover_tolerance * demand
    # Interim curtailment while negotiating: the cheapest offers up to the loss in effect by the round's end (more
    # would push the frequency above nominal while a shortfall is still developing).
    round_end_s = (state.time + 1).astype(f32) * params.round_seconds
    interim_mw = clear_offers(offered, ask, loss * lost_share(round_end_s, params), voll)
    accepted = jnp.where(covered, clear_offers(offered, ask, loss, voll), interim_mw)
    at_deadline = state.time + 1 >= params.deadline

    phys = round_physics(
        state.df_hz,
        state.primary_pu,
        state.reserve_pu,
        state.reserve_mwh,
        state.stage,
        state.below_s,
        state.time.astype(f32) * params.round_seconds,
        loss,
        agent_sum(interim_mw),
        demand,
        params,
        substeps,
    )
    negotiating = ~covered & ~at_deadline
    tripped = negotiating & (phys.stage > 0)
    # The authority acts on sustained low frequency (at or below emergency_hz for emergency_s without a break, at the
    # round's end), not on the transient nadir of the first seconds.
    sustained = (phys.below_s > 0) & (phys.below_s >= params.emergency_s)
    emergency = negotiating & ~tripped & sustained
    outcome = jnp.where(
        covered,
        COMPROMISE,
        jnp.where(at_deadline | emergency, AUTHORITY, jnp.where(tripped, AUTOMATIC, ONGOING)),
    ).astype(jnp.int32)

    # Energy over the round's physics (only when negotiating: a compromise or a deadline decision acts at once).
    run = negotiating.astype(f32)
    interim = interim_mw * run  # (N,) MW, interim curtailment during the round
    relay_mwh = (load - interim) * phys.shed_share_h * run
    round_curtailed = interim * round_h
    round_served = (load * round_h - round_curtailed - relay_mwh) * run
    # The settlement: what holds for `settlement_hours` after an outcome.
    share_end = shed_share(phys.stage, params.relay_shed) * tripped
    relay_settle = (load - interim) * share_end
    deficit = jnp.maximum(loss - agent_sum(interim) - agent_sum(relay_settle), 0.0)
    imposed_mw = jnp.where(
        outcome == AUTHORITY,
        pro_rata(loss, load),
        jnp.where(outcome == AUTOMATIC, pro_rata(deficit, load - interim - relay_settle), 0.0),
    )
    settle_curtail_mw = jnp.where(outcome == COMPROMISE, accepted, jnp.where(outcome == AUTOMATIC, interim, 0.0))
    ended = (outcome != ONGOING).astype(f32)
    settle_curtailed = settle_curtail_mw * settle_h * ended
    settle_shed = (relay_settle + imposed_mw) * settle_h * ended
    settle_served = (
        load * settle_h - settle_curtail_mw * settle_h - relay_settle * settle_h - imposed_mw * settle_h
    ) * ended

    price = ask * params.price_cap
    compensation = price * (round_curtailed + settle_curtailed)
    curtailed = round_curtailed + settle_curtailed
    shed = relay_mwh + settle_shed
    reward = (compensation - voll * (curtailed + shed)) / params.reward_scale

    df_after = jnp.where(negotiating, phys.df_hz, state.df_hz)
    abs_dev = jnp.where(negotiating, phys.abs_df_hz_s, 0.0)
    cost = agent_sum(voll * shed) + agent_sum(compensation) + params.frequency_cost * abs_dev

    counts = state.offer_counts + jnp.bincount(
        jnp.minimum((offer * OFFER_BINS).astype(jnp.int32), OFFER_BINS - 1), length=OFFER_BINS
    )
    mean_offer = agent_sum(offer) / offer.shape[0]
    next_state = state.replace(
        reserve_mwh=jnp.where(negotiating, phys.reserve_mwh, state.reserve_mwh),
        df_hz=df_after,
        primary_pu=jnp.where(negotiating, phys.primary_pu, state.primary_pu),
        reserve_pu=jnp.where(negotiating, phys.reserve_pu, state.reserve_pu),
        below_s=jnp.where(negotiating, phys.below_s, state.below_s),
        stage=jnp.where(negotiating, phys.stage, state.stage),
        offer=offer,
        ask=ask,
        accepted_mw=jnp.where(covered, accepted, interim),
        curtailed_mwh=state.curtailed_mwh + curtailed,
        shed_mwh=state.shed_mwh + shed,
        imposed_mwh=state.imposed_mwh + imposed_mw * settle_h * ended,
        served_mwh=state.served_mwh + round_served + settle_served,
        compensation_usd=state.compensation_usd + compensation,
        elapsed_h=state.elapsed_h + round_h * run + settle_h * ended,
        outcome=outcome,
        min_df_hz=jnp.minimum(state.min_df_hz, jnp.where(negotiating, phys.min_df_hz, 0.0)),
        max_abs_df_hz=jnp.maximum(state.max_abs_df_hz, jnp.where(negotiating, phys.max_abs_df_hz, 0.0)),
        abs_df_hz_s=state.abs_df_hz_s + abs_dev,
        authority_cost_usd=state.authority_cost_usd + cost,
        voll_cost_usd=state.voll_cost_usd + agent_sum(voll * shed) + agent_sum(voll * curtailed),
        offer_counts=counts,
        first_offer=jnp.where(state.time == 0, mean_offer, state.first_offer),
        last_offer=mean_offer,
    )
    info = {
        "authority_cost": (cost / params.reward_scale).astype(f32),
        "episode_metrics": episode_metrics(next_state.replace(time=state.time + 1), params),
    }
    return next_state, reward.astype(f32), outcome != ONGOING, info


def describe(env: GridCurtailment) -> dict:
    entry = describe_kernel(env, "multi-agent", action_note="curtailment fraction, ask / price_cap")
    return insert_after(entry, "roles", classes=list(env.class_names))


__all__ = [
    "CLASS_BOUNDS",
    "GRID_BOUNDS",
    "SHORTFALL",
    "GridCurtailment",
    "GridParams",
    "GridState",
    "default_grid_params",
    "validate_grid_params",
]


# -- per-episode metrics (`agentlab.kernels.grid.metrics` documents them and aggregates over episodes) --------

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
