"""Scripted participants for `grid-curtailment` and the simulation `agentlab simulate` runs (`simulate`, one event in
the shape every scripted-policy kernel shares; `simulate_events`, a batch of them).

Scripted policies read the event's state (loads, VoLLs, the shortfall: the authority's published emergency data) and
return the kernel's action ``(x, a)`` per participant: offered fraction of own load, ask / price_cap. Learned policies
see only the observation.

Families (`POLICIES`):

- ``solver``: a myopic best response to the others' *expected* offers, holding out. It expects every other participant
  j to offer its willingness ``w_j`` (the largest curtailment j prefers to its imposed pro-rata share at the price cap:
  ``(v_j - cap) w_j = v_j L d_j / D``, or all of ``d_j`` when ``v_j <= cap``). If the others' expected offers cover
  the shortfall it holds out (offers nothing unless curtailing is profitable by itself, ``v_i < cap``, when it offers
  all its load); otherwise it offers the gap up to its own willingness. It always asks the cap. Re-solved each round
  from the same model, it never learns that the others hold out too.
- ``bounded``: a concession schedule with a satisficing threshold and a memory of past offers. Round t (from 0) it
  offers ``max(initial_offer + concession_step t, reciprocity m)``, capped at its satisficing ceiling
  ``min(1, satisficing w_i(ask) / d_i)`` (its willingness at its current ask); ``m`` is an exponential memory
  (weight ``memory_decay`` on the past) of the others' mean offered fraction. Its ask falls from ``initial_ask`` by
  ``ask_step`` a round to ``ask_floor``.
- ``sampler``: quantal response over the solver's utilities: offers a fraction from an 11-point grid {0, 0.1, .., 1}
  with probabilities ``softmax(u / temperature)``, ``u(x) = (cap / v_i - 1) x d_i / (L d_i / D)`` (the utility of
  curtailing x at the cap, in units of its imposed loss); asks the cap.
- ``prorata``: cooperation: offers exactly the pro-rata share ``L / D`` of its load and asks nothing.

These are agentlab's readings of the issue's families (the study publishes no policy code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError, choices
from agentlab.kernels.grid.curtailment import ONGOING, GridCurtailment, GridParams, GridState
from agentlab.kernels.grid.metrics import episode_metrics
from agentlab.kernels.grid.names import POLICIES
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.limits import Bound

SAMPLER_GRID = 11


@pytree_dataclass
class PolicyParams:
    temperature: float = 0.5  # sampler: quantal-response temperature (utility in units of the imposed loss)
    initial_offer: float = 0.0  # bounded: first offer (fraction of own load)
    concession_step: float = 0.03  # bounded: offer increase per round
    satisficing: float = 1.0  # bounded: ceiling = satisficing x willingness
    reciprocity: float = 1.0  # bounded: weight of the remembered others' offers
    memory_decay: float = 0.5  # bounded: weight of the past in the memory
    initial_ask: float = 0.8  # bounded: first ask / price_cap
    ask_step: float = 0.1  # bounded: ask decrease per round
    ask_floor: float = 0.2  # bounded: lowest ask / price_cap


POLICY_PARAM_NAMES = tuple(PolicyParams.__dataclass_fields__)
MAX_PARTICIPANTS = 4096

# One declaration per `PolicyParams` field (`agentlab.limits`): `validate_policy_params`, ``--param`` and Python callers
# all check values through these.
POLICY_BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("temperature", float, low=0, low_open=True, high=1e6, unit="utility in units of the imposed loss"),
        Bound("initial_offer", float, low=0, high=1, unit="fraction of own load"),
        Bound("concession_step", float, low=0, high=1, unit="fraction of own load per round"),
        Bound("satisficing", float, low=0, high=100, unit="multiple of the willingness"),
        Bound("reciprocity", float, low=0, high=100, unit="weight of the others' remembered offers"),
        Bound("memory_decay", float, low=0, high=1, unit="weight of the past"),
        Bound("initial_ask", float, low=0, high=1, unit="share of price_cap"),
        Bound("ask_step", float, low=0, high=1, unit="share of price_cap per round"),
        Bound("ask_floor", float, low=0, high=1, unit="share of price_cap"),
    )
}
assert set(POLICY_BOUNDS) == set(POLICY_PARAM_NAMES)


def validate_policy_params(pp: PolicyParams) -> PolicyParams:
    """Raise `UsageError` on bad settings (host values only): every field through its `POLICY_BOUNDS` entry."""
    for name, bound in POLICY_BOUNDS.items():
        bound.check(np.asarray(getattr(pp, name)).item())
    return pp


def policy_ids(mix: tuple[tuple[str, int], ...]) -> tuple[int, ...]:
    """``(("solver", 2), ("bounded", 3))`` -> ``(0, 0, 1, 1, 1)``; unknown names raise `UsageError`."""
    for name, count in mix:
        if name not in POLICIES:
            raise UsageError(f"unknown policy {name!r}: valid policies are {choices(POLICIES)}")
        if count < 0:
            raise UsageError(f"count of {name!r} must be >= 0, got {count}")
    total = sum(count for _, count in mix)
    if not 2 <= total <= MAX_PARTICIPANTS:
        raise UsageError(f"grid-curtailment needs 2 to {MAX_PARTICIPANTS} participants, got {total}")
    return tuple(POLICIES.index(name) for name, count in mix for _ in range(count))


def willingness(state: GridState, price: jax.Array) -> jax.Array:
    """MW each participant prefers to curtail at `price` ($/MWh) rather than take its imposed pro-rata share."""
    load, voll = state.load_mw, state.voll
    share = state.loss_mw * load / jnp.sum(load)
    gain = jnp.maximum(voll - price, 1e-9)
    return jnp.where(voll <= price, load, jnp.minimum(load, voll * share / gain))


def solver_action(state: GridState, params: GridParams) -> jax.Array:
    load = state.load_mw
    will = willingness(state, params.price_cap)
    others = jnp.sum(will) - will
    profitable = state.voll < params.price_cap
    gap = jnp.maximum(state.loss_mw - others, 0.0)
    offer_mw = jnp.where(profitable, load, jnp.where(others >= state.loss_mw, 0.0, jnp.minimum(gap, will)))
    return jnp.stack([offer_mw / load, jnp.ones_like(load)], axis=1)


def bounded_action(state: GridState, params: GridParams, pp: PolicyParams, memory: jax.Array) -> jax.Array:
    t = state.time.astype(jnp.float32)
    ask = jnp.clip(pp.initial_ask - pp.ask_step * t, pp.ask_floor, 1.0)
    ceiling = jnp.minimum(1.0, pp.satisficing * willingness(state, ask * params.price_cap) / state.load_mw)
    offer = jnp.minimum(jnp.maximum(pp.initial_offer + pp.concession_step * t, pp.reciprocity * memory), ceiling)
    return jnp.stack([jnp.clip(offer, 0.0, 1.0), jnp.broadcast_to(ask, offer.shape)], axis=1)


def sampler_action(key, state: GridState, params: GridParams, pp: PolicyParams) -> jax.Array:
    grid = jnp.linspace(0.0, 1.0, SAMPLER_GRID)
    demand = jnp.sum(state.load_mw)
    scale = jnp.maximum(state.loss_mw / demand, 1e-6)
    slope = (params.price_cap / jnp.maximum(state.voll, 1e-6) - 1.0) / scale  # (N,)
    logits = slope[:, None] * grid[None, :] / pp.temperature
    pick = jax.random.categorical(key, logits, axis=-1)
    return jnp.stack([grid[pick], jnp.ones_like(state.load_mw)], axis=1)


def prorata_action(state: GridState) -> jax.Array:
    share = state.loss_mw / jnp.sum(state.load_mw)
    return jnp.stack([jnp.broadcast_to(share, state.load_mw.shape), jnp.zeros_like(state.load_mw)], axis=1)


def scripted_actions(key, state: GridState, params: GridParams, ids: jax.Array, pp: PolicyParams, memory):
    """float32 ``(N, 2)``: participant i acts by family ``POLICIES[ids[i]]``; `memory` (N,) is the bounded memory."""
    candidates = jnp.stack(
        [
            solver_action(state, params),
            bounded_action(state, params, pp, memory),
            sampler_action(key, state, params, pp),
            prorata_action(state),
        ]
    )  # (4, N, 2)
    return jnp.take_along_axis(candidates, ids[None, :, None], axis=0)[0].astype(jnp.float32)


def update_memory(memory: jax.Array, offer: jax.Array, pp: PolicyParams) -> jax.Array:
    """Each participant's memory of the others' mean offered fraction."""
    n = offer.shape[0]
    others = (jnp.sum(offer) - offer) / (n - 1)
    return pp.memory_decay * memory + (1.0 - pp.memory_decay) * others


def simulate_event(key, env: GridCurtailment, params: GridParams, ids: jax.Array, pp: PolicyParams, rounds: int):
    """One event under scripted participants, `rounds` (static, >= ``params.deadline``) rounds; a finished event is
    frozen. Returns ``(metrics, trace)``: the episode metrics (scalars) and per-round arrays ``(rounds, ...)``:
    ``offer`` and ``ask`` (N,), ``df_hz``, ``reserve_mwh``, ``active`` (the event was still negotiating)."""
    k_init, k_run = jax.random.split(key)
    state = env.init(k_init, params)
    memory = jnp.zeros((env.num_agents,), jnp.float32)

    def body(carry, step_key):
        state, memory = carry
        k_act, k_env = jax.random.split(step_key)
        active = state.outcome == ONGOING
        action = scripted_actions(k_act, state, params, ids, pp, memory)
        _, new_state, _, _, _, _ = env.step(k_env, state, action, params)
        state = jax.tree.map(lambda new, old: jnp.where(active, new, old), new_state, state)
        memory = jnp.where(active, update_memory(memory, action[:, 0], pp), memory)
        trace = {
            "offer": action[:, 0],
            "ask": action[:, 1],
            "df_hz": state.df_hz,
            "reserve_mwh": state.reserve_mwh,
            "active": active,
        }
        return (state, memory), trace

    (state, _), trace = jax.lax.scan(body, (state, memory), jax.random.split(k_run, rounds))
    return episode_metrics(state, params), trace


def simulate(
    key, env: GridCurtailment, params: GridParams, policy_ids, steps: int, *, policy_params: PolicyParams | None = None
):
    """One event in the shape every scripted-policy kernel shares (`agentlab.kernels.markets.crash.simulate`,
    `agentlab.kernels.markets.lemons.policies.simulate`): `env` carries the participants (``num_agents``, one per
    entry of `policy_ids` into `POLICIES`), `steps` the rounds (static, >= ``params.deadline``) and `policy_params`
    the grid's own extra, the families' `PolicyParams` (default `PolicyParams()`). Returns `simulate_event`'s
    ``(metrics, trace)`` (the same numbers for the same key)."""
    ids = jnp.asarray(policy_ids, jnp.int32)
    if ids.shape != (env.num_agents,):
        raise ValueError(f"{ids.shape[0]} participant policies for a grid-curtailment kernel of {env.num_agents}")
    pp = PolicyParams() if policy_params is None else policy_params
    return simulate_event(key, env, params, ids, pp, steps)


def simulate_events(key, env: GridCurtailment, params: GridParams, ids, pp: PolicyParams, events: int, rounds: int):
    """`simulate_event` over `events` keys split from `key` (`vmap`); jit it with ``env``, ``events``, ``rounds``
    static."""
    keys = jax.random.split(key, events)
    ids = jnp.asarray(ids, jnp.int32)
    return jax.vmap(lambda k: simulate_event(k, env, params, ids, pp, rounds))(keys)


def outcome_split(
    seed: int,
    mixes: tuple[tuple[tuple[str, int], ...], ...],
    shortfalls: tuple[float, ...],
    price_caps: tuple[float, ...],
    events: int,
    params: GridParams,
    pp: PolicyParams | None = None,
) -> list[dict]:
    """The outcome split over policy mix x shortfall x price cap: one row per cell, ``policies``, ``shortfall``,
    ``price_cap`` and `aggregate` of `events` events (seed `seed`, the same keys in every cell). One compilation per
    mix: the shortfall and the cap are traced params."""
    from agentlab.kernels.grid.metrics import aggregate

    pp = PolicyParams() if pp is None else pp
    rows = []
    for mix in mixes:
        ids = policy_ids(mix)
        env = GridCurtailment(num_agents=len(ids))
        run = jax.jit(
            lambda key, p, env=env, ids=ids: simulate_events(key, env, p, ids, pp, events, int(params.deadline))
        )
        for shortfall in shortfalls:
            for cap in price_caps:
                cell = params.replace(shortfall_min=shortfall, shortfall_max=shortfall, price_cap=cap)
                metrics, _ = run(jax.random.key(seed), cell)
                summary = aggregate({k: np.asarray(v) for k, v in metrics.items()})
                name = ",".join(f"{n}:{c}" for n, c in mix)
                rows.append({"policies": name, "shortfall": shortfall, "price_cap": cap, **summary})
    return rows
