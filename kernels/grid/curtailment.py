"""`grid-curtailment`: an emergency negotiation over who curtails load after a large generator trips.

Sources: ../shared/reference/grid-curtailment.md (Andric 2026, arXiv 2604.11840, for the setting and the outcome
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
- **Physics** (not an agent): the aggregate swing equation with droop and load damping, spinning reserves with an
  energy budget, and ERCOT's three under-frequency load-shedding (UFLS) relay stages.

An event: a generation loss ``L = shortfall x D`` (MW; ``D = sum_i d_i``, the pre-event demand, which is also the
per-unit base), ``shortfall ~ U(shortfall_min, shortfall_max)``. Spinning reserves hold
``reserve_energy_h x D`` MWh.

One step = one negotiation round (``round_seconds`` = 60 s of system time), in this order:

1. Every participant sees its observation (below) and offers ``action[i] = (x_i, a_i)``, both clipped to [0, 1]: a
   curtailment of ``x_i d_i`` MW and a compensation ask of ``a_i x price_cap`` $/MWh (pay-as-bid).
2. The authority ranks offers by ask (ties: lower index first) and accepts the cheapest up to the shortfall ``L``
   (the last one partly). If the offers cover L (``sum_i x_i d_i >= L - cover_tolerance x D``) the event ends in a
   **compromise**: the accepted curtailments hold for ``settlement_hours``.
3. Otherwise, in the deadline round (round ``deadline``, counting from 1) the authority discards the offers and imposes
   rotating pro-rata shedding ``s_i = L d_i / D`` for ``settlement_hours``: an **authority decision**.
4. Otherwise every offer is accepted as interim curtailment (``C = sum_i x_i d_i < L``) for the round, and the round's
   physics runs in ``substeps`` steps of ``round_seconds / substeps`` (0.1 s): the reserves cover the uncovered
   imbalance ``U = L - C - (relay shed)`` until their energy is spent; then frequency follows the swing equation
   (exact exponential step of the linear ODE, `swing_step`); at the end of each sub-step every relay stage whose
   threshold the frequency has reached (``f <= relay_hz[k]``) trips for good and sheds ``relay_shed[k]``
   (cumulative) of every participant's remaining load from the next sub-step on (a relay delay of at most one
   sub-step).
5. After the round: if a relay tripped, the event ends in **automatic shedding** (the relay shed, the interim
   curtailments and a pro-rata imposition of any deficit the relays left hold for ``settlement_hours``); else if the
   frequency reached ``emergency_hz`` the authority imposes pro-rata shedding (an **authority decision**, as in 3);
   else the next round starts.

So every event terminates within ``deadline`` rounds; `max_steps` (default None) is only a safety limit.

Swing equation (per unit on base D, reference): ``2H d(df/f0)/dt = -u - K df/f0`` with the uncovered imbalance
``u = (U - reserve delivery) / D`` and ``K = damping + governor_share / droop``; steady state ``df = -u f0 / K``,
initial RoCoF ``-u f0 / (2H)``. While reserves last they deliver the whole uncovered deficit, so frequency stays put
(agentlab framing).

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
from agentlab.kernels.environment import Environment
from agentlab.kernels.fusion import materialize
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box
from agentlab.limits import Bound

CLASSES = ("critical", "residential", "commercial", "industrial", "interruptible")
OBS_DIM = 17
ACTION_DIM = 2
OFFER_BINS = 10  # action entropy: offers binned into 10 bins of width 0.1

# Outcome codes (`GridState.outcome`, ``info["episode_metrics"]["outcome"]``).
ONGOING, COMPROMISE, AUTHORITY, AUTOMATIC = 0, 1, 2, 3
OUTCOMES = ("ongoing", "compromise", "authority_decision", "automatic_shedding")


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
    # Physics (per unit on the pre-event demand).
    nominal_hz: float = 60.0  # f0 (ERCOT, 60 Hz system)
    inertia_h: float = 6.0  # H, s: 2H = 12 s, inside the reference's 10-18 s
    droop: float = 0.05  # R, per unit (reference: 3-6%)
    governor_share: float = 0.05  # share of capacity on droop with headroom once reserves are spent. agentlab guess
    damping: float = 1.0  # D, load damping, pu load per pu frequency. agentlab guess (commonly 1-2)
    reserve_energy_h: float = 0.005  # spinning-reserve energy budget, MWh per MW of demand. agentlab guess
    emergency_hz: float = 59.5  # authority acts when frequency reaches it. agentlab guess (above UFLS stage 1)
    # Negotiation.
    round_seconds: float = 60.0  # system time per round (agentlab framing)
    deadline: int = 6  # rounds before the authority imposes. agentlab guess
    settlement_hours: float = 0.5  # how long the outcome holds (reference: EEA3 rotating outages 15-45 min)
    price_cap: float = 5000.0  # $/MWh, the highest ask (reference: administrative 5,000-9,000 $/MWh)
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
        Bound("inertia_h", float, low=0, low_open=True, high=100, unit="s"),
        Bound("droop", float, low=0, low_open=True, high=1, unit="per unit"),
        Bound("governor_share", float, low=0, high=1, unit="share of capacity"),
        Bound("damping", float, low=0, high=100, unit="pu load per pu frequency"),
        Bound("reserve_energy_h", float, low=0, high=100, unit="MWh per MW of demand"),
        Bound("emergency_hz", float, low=0, low_open=True, high=1000, unit="Hz, at most nominal_hz"),
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


def _phi(x: jax.Array) -> jax.Array:
    """(1 - exp(-x)) / x, 1 at x = 0."""
    small = x < 1e-4
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-safe) / safe)


def _psi(x: jax.Array) -> jax.Array:
    """(x - 1 + exp(-x)) / x^2, 1/2 at x = 0."""
    small = x < 1e-3
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 0.5 - x / 6.0, (safe + jnp.expm1(-safe)) / (safe * safe))


def swing_step(df_hz, u_pu, dt, params: GridParams):
    """One exact step of the linear swing equation ``2H d(df/f0)/dt = -u - K df/f0`` with constant `u`.

    Returns ``(df after dt (Hz), integral of df over the step (Hz s))``. Exact for constant input: the closed form
    ``df(t) = df_ss + (df0 - df_ss) exp(-K t / 2H)``, ``df_ss = -u f0 / K``, written so that K = 0 (no damping or
    droop: a ramp at the RoCoF ``-u f0 / 2H``) needs no special case.
    """
    two_h = 2.0 * params.inertia_h
    k = params.damping + params.governor_share / params.droop
    x = k * dt / two_h
    rocof = -u_pu * params.nominal_hz / two_h  # Hz/s at df = 0
    df_next = df_hz * jnp.exp(-x) + rocof * dt * _phi(x)
    integral = df_hz * dt * _phi(x) + rocof * dt * dt * _psi(x)
    return df_next, integral


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
    reserve_mwh: jax.Array  # () reserve energy left
    stage: jax.Array  # int32 () relay stages tripped
    min_df_hz: jax.Array  # () most negative deviation in the round (sub-step ends)
    max_abs_df_hz: jax.Array  # () largest |deviation| in the round
    shed_share_h: jax.Array  # () integral of the relays' shed share over the round, hours
    reserve_used_mwh: jax.Array  # () energy the reserves delivered
    governor_mwh: jax.Array  # () energy from droop response
    damping_mwh: jax.Array  # () load not drawn because of low frequency (damping; not unserved energy)
    df_integral_hz_s: jax.Array  # () integral of df dt
    abs_df_hz_s: jax.Array  # () integral of |df| dt (per sub-step |integral|)


def round_physics(
    df_hz, reserve_mwh, stage, loss_mw, curtailed_mw, demand_mw, params: GridParams, substeps: int
) -> RoundPhysics:
    """One round of system time in `substeps` exact swing steps (see the module docstring, step 4).

    Power balance per sub-step (MW): generation ``D - L + reserve + governor`` against consumption
    ``served - damping``, with ``served = (D - C)(1 - relay share)``; the difference changes the kinetic energy
    ``2H D df / f0`` (MW s). Relays latch; a stage trips at the end of the sub-step in which ``f <= threshold``.
    """
    dt = params.round_seconds / substeps
    dt_h = dt / 3600.0
    f32 = jnp.float32
    remaining = demand_mw - curtailed_mw

    def body(_, carry):
        df, reserve, stage, min_df, max_abs, shed_h, used, integral, absint = carry
        share = shed_share(stage, params.relay_shed)
        deficit = loss_mw - curtailed_mw - share * remaining
        delivered = jnp.clip(deficit, 0.0, reserve / dt_h)
        df_next, step_integral = swing_step(df, (deficit - delivered) / demand_mw, dt, params)
        stage = jnp.maximum(stage, relay_stage(params.nominal_hz + df_next, params.relay_hz))
        return (
            df_next,
            jnp.maximum(reserve - delivered * dt_h, 0.0),
            stage,
            jnp.minimum(min_df, df_next),
            jnp.maximum(max_abs, jnp.abs(df_next)),
            shed_h + share * dt_h,
            used + delivered * dt_h,
            integral + step_integral,
            absint + jnp.abs(step_integral),
        )

    zero = jnp.zeros((), f32)
    init = (f32(df_hz), f32(reserve_mwh), jnp.int32(stage), f32(df_hz), jnp.abs(f32(df_hz)), zero, zero, zero, zero)
    df, reserve, stage, min_df, max_abs, shed_h, used, integral, absint = jax.lax.fori_loop(0, substeps, body, init)
    to_mwh = -demand_mw / params.nominal_hz / 3600.0  # MW s per Hz s of -df, in MWh
    return RoundPhysics(
        df_hz=df,
        reserve_mwh=reserve,
        stage=stage,
        min_df_hz=min_df,
        max_abs_df_hz=max_abs,
        shed_share_h=shed_h,
        reserve_used_mwh=used,
        governor_mwh=params.governor_share / params.droop * to_mwh * integral,
        damping_mwh=params.damping * to_mwh * integral,
        df_integral_hz_s=integral,
        abs_df_hz_s=absint,
    )


# -- the authority ---------------------------------------------------------------------------------------------------


def clear_offers(offered_mw: jax.Array, ask: jax.Array, required_mw: jax.Array) -> jax.Array:
    """Accepted MW per participant: offers ranked by ask (ties: lower index first), accepted until `required_mw`."""
    n = offered_mw.shape[0]
    index = jnp.arange(n)
    before = (ask[None, :] < ask[:, None]) | ((ask[None, :] == ask[:, None]) & (index[None, :] < index[:, None]))
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
    accepted = jnp.where(covered, clear_offers(offered, ask, loss), offered)
    at_deadline = state.time + 1 >= params.deadline

    phys = round_physics(
        state.df_hz, state.reserve_mwh, state.stage, loss, agent_sum(offered), demand, params, substeps
    )
    negotiating = ~covered & ~at_deadline
    tripped = negotiating & (phys.stage > 0)
    emergency = negotiating & ~tripped & (params.nominal_hz + phys.min_df_hz <= params.emergency_hz)
    outcome = jnp.where(
        covered,
        COMPROMISE,
        jnp.where(at_deadline | emergency, AUTHORITY, jnp.where(tripped, AUTOMATIC, ONGOING)),
    ).astype(jnp.int32)

    # Energy over the round's physics (only when negotiating: a compromise or a deadline decision acts at once).
    run = negotiating.astype(f32)
    interim = offered * run  # (N,) MW, interim curtailment during the round
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
    return {
        "name": env.name,
        "family": "multi-agent",
        "agents": env.num_agents,
        "observation": f"float32 ({env.num_agents}, {OBS_DIM})",
        "channels": [],
        "actions": [f"continuous ({env.num_agents}, {ACTION_DIM}) in [0, 1]: curtailment fraction, ask / price_cap"],
        "action_set": [],
        "roles": list(env.roles),
        "classes": list(env.class_names),
        "event_modes": {},
        "blackout_regions": [],
    }


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
