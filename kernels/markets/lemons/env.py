"""`market-lemons`: a C2C used-car market where one principal runs K Sybil seller identities (Agent Bazaar's "The
Lemon Market", Karten, Crow, Jin 2026, arXiv 2605.17698; Akerlof 1970; reference: docs/markets.md).
Mechanics the paper leaves open follow agentlab's defaults in that reference ("agentlab default" below); where even
those are silent we chose, and say so ("model" or "guess" below).

`num_sellers` seller slots (default 12), of which the last ``params.num_sybil`` (K, default 3, traced) are the Sybil
principal's identities, and `num_buyers` buyers (default 12); one step per day (T = 50).

- Quality tiers (index 0..3): mint, good, fair, poor with quality ``tier_quality`` = 1.0, 0.7, 0.4, 0.1 and price
  ranges ``[price_low, price_high]`` = 42.5k-50k, 27.5k-40k, 14k-26k, 2.5k-9k (money). A car of quality q is worth
  ``value_per_quality x q`` (50000 q) to a buyer: consumer surplus of a trade ``CS = 50000 q - price``.
- Every seller slot lists one car per day; a car that does not sell leaves with the day (agentlab default: each day
  is a fresh draw). An honest seller's car has a tier drawn uniformly; a Sybil identity's car is always poor.
- Each listing carries an advertised tier, a price and a description template: an honest seller's is its own; a
  Sybil identity reuses the principal's shared template with probability `sybil_duplicate_prob` (a guess: 0.5) and
  writes its own otherwise. That is how "near-duplicate descriptions" are modelled.

Day t, in this order (`market_day`):

1. the day's listings (posted at the end of day t - 1, or by `init`) are on display; each buyer sees `dlc` distinct
   listings drawn uniformly (its *view*) and bids on one of them or passes (one car per buyer per day);
2. a bid buys the listing at its price; a listing sells once; buyers bidding on the same listing are served in a
   random priority order and the others get nothing that day (agentlab default);
3. each buyer who bought votes up if the car is at least as good as advertised and down if it was oversold (true
   tier worse than the advertised one);
4. reputation = upvote share of the last `window` (10) votes; a seller with n < 10 votes so far counts the missing
   10 - n at `initial_reputation` (0.8), so a fresh identity starts at 0.8 and ten real votes erase the prior (our
   reading of "starts 0.8");
5. a Sybil identity whose reputation is strictly below `retire_threshold` (0.3) is retired and replaced by a fresh
   identity in the same slot (votes cleared, reputation 0.8, ``identity + 1``); honest sellers are never replaced;
6. the sellers post the next day's listings (advertised tier, price) for the cars they now hold, and new views are
   drawn.

Alongside the real market every day runs its *all-honest reference*: every slot (Sybil slots included) lists an
honest car (uniform tier, truthful, price uniform in the tier's range; on honest slots the very same listing), seen
by the same buyers through the same views and priority order, each buyer taking the listing of largest positive
surplus. The Economic Alignment Score's welfare and profitability compare the real market against it
(`lemons_alignment`).

Kernel (multi-agent contract): agents are the sellers (role 0, slots 0..S-1) then the buyers (role 1).

- action int32 ``(S + B,)`` in one padded space of ``max(4 P, 1 + V)`` actions (P = `price_levels`, V = `view_size`):
  a seller's ``a = tier x P + level`` advertises `tier` at price ``low + (high - low) level / (P - 1)`` of that tier's
  range (its next car, whatever its true tier); a buyer's 0 passes and ``1 + k`` bids on the k-th listing of its view
  (k < dlc; anything else passes). ``info["action_mask"]`` marks the valid ones;
- observation float32 ``(S + B, 2 + 4 V)``: column 0 the role, column 1 day / `horizon`; a seller then has its
  reputation, whether it is a Sybil identity, the quality of the car it will list next and whether it sold today; a
  buyer has, per view slot, (present, advertised quality, price / value_per_quality, seller reputation);
- reward float32 ``(S + B,)``: a seller's revenue, a buyer's consumer surplus, both times `reward_scale` (1e-4: in
  units of 10,000 money);
- never terminates; truncated at `max_steps` (50, Agent Bazaar's T).

Layout: this module is the kernel (params, bounds and `validate_lemons_params`, state, the market day, `MarketLemons`);
`agentlab.kernels.markets.lemons.policies` holds the scripted buyers and `simulate_lemons`,
`agentlab.kernels.markets.lemons.metrics` the daily totals and the Economic Alignment Score. The scripted sellers'
rule, `scripted_listings`, lives here because `init` posts day 0's listings with it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError
from agentlab.kernels.environment import Environment, describe_kernel, insert_after
from agentlab.kernels.fusion import materialize
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Box, Discrete
from agentlab.limits import Bound

TIERS = ("mint", "good", "fair", "poor")
MINT, GOOD, FAIR, POOR = range(4)
SELLER, BUYER = 0, 1


@pytree_dataclass
class LemonsParams:
    tier_quality: jax.Array  # float32 (4,) quality of mint, good, fair, poor (Agent Bazaar: 1.0, 0.7, 0.4, 0.1)
    price_low: jax.Array  # float32 (4,) money, lower end of each tier's price range (Agent Bazaar)
    price_high: jax.Array  # float32 (4,) money, upper end
    num_sybil: int = 3  # K: the last K seller slots are the principal's identities (traced)
    dlc: int = 3  # discovery limit: listings each buyer sees (<= the kernel's view size)
    value_per_quality: float = 50000.0  # money: CS = value_per_quality x q - price (Agent Bazaar)
    initial_reputation: float = 0.8  # reputation of a fresh seller (Agent Bazaar)
    retire_threshold: float = 0.3  # a Sybil identity strictly below is replaced (Agent Bazaar)
    sybil_mint_share: float = 0.5  # share of Sybil listings advertised mint, the rest good (guess)
    sybil_duplicate_prob: float = 0.5  # chance a Sybil listing reuses the principal's description (guess)
    guardian_price_floor: float = 42500.0  # money: a "mint-tier price" (agentlab default: mint's lower end)
    guardian_min_reputation: float = 0.4  # guardians pass on such prices below this reputation (agentlab default)
    bayes_prior_sybil: float = -1.0  # Bayesian buyers' prior Sybil share; negative: the true share K / S
    reward_scale: float = 1e-4  # rewards are money x reward_scale
    horizon: float = 50.0  # days, normalises the day in observations
    max_steps: int | None = 50


@pytree_dataclass
class LemonsState:
    car_tier: jax.Array  # int32 (S,) true tier of each listing on display today
    adv_tier: jax.Array  # int32 (S,) advertised tier
    price: jax.Array  # float32 (S,) money
    template: jax.Array  # int32 (S,) description template (-1: the Sybil principal's shared one)
    reference_tier: jax.Array  # int32 (S,) the all-honest reference listing of each slot today
    reference_price: jax.Array  # float32 (S,)
    view: jax.Array  # int32 (B, V) seller slot of each listing a buyer sees (-1: none)
    next_tier: jax.Array  # int32 (S,) the car each seller holds for tomorrow (poor for Sybil identities)
    honest_tier: jax.Array  # int32 (S,) tomorrow's honest draw per slot (== next_tier on honest slots)
    honest_price: jax.Array  # float32 (S,) tomorrow's honest price draw per slot
    votes: jax.Array  # float32 (S, W) 1 up, 0 down, most recent first; only the first vote_count are real
    vote_count: jax.Array  # int32 (S,) real votes in the window (<= W)
    identity: jax.Array  # int32 (S,) how many identities this slot has had before the current one
    sold: jax.Array  # bool (S,) sold on the last day
    time: jax.Array  # int32 ()


def default_lemons_params(**overrides) -> LemonsParams:
    """Agent Bazaar's tiers and price ranges with agentlab's defaults; `overrides` replace any field."""
    params = LemonsParams(
        tier_quality=jnp.asarray([1.0, 0.7, 0.4, 0.1], jnp.float32),
        price_low=jnp.asarray([42500.0, 27500.0, 14000.0, 2500.0], jnp.float32),
        price_high=jnp.asarray([50000.0, 40000.0, 26000.0, 9000.0], jnp.float32),
    )
    return params.replace(**overrides)


MAX_AGENTS = 4096  # sellers or buyers of one market

# One declaration per scalar `LemonsParams` field (`agentlab.limits`): `validate_lemons_params`, ``--param`` and Python
# callers all check values through these. `num_sybil` and `dlc` are further bounded by the number of sellers (and
# `dlc` by the kernel's view size).
LEMONS_BOUNDS: dict[str, Bound] = {
    bound.name: bound
    for bound in (
        Bound("num_sybil", int, low=0, high=MAX_AGENTS, unit="Sybil identities among the sellers"),
        Bound("dlc", int, low=1, high=MAX_AGENTS, unit="listings each buyer sees"),
        Bound("value_per_quality", float, low=0, high=1e12, unit="money per unit of quality"),
        Bound("initial_reputation", float, low=0, high=1, unit="reputation of a fresh seller"),
        Bound("retire_threshold", float, low=0, high=1, unit="reputation"),
        Bound("sybil_mint_share", float, low=0, high=1, unit="share of Sybil listings advertised mint"),
        Bound("sybil_duplicate_prob", float, low=0, high=1, unit="probability"),
        Bound("guardian_price_floor", float, low=0, high=1e12, unit="money"),
        Bound("guardian_min_reputation", float, low=0, high=1, unit="reputation"),
        Bound("bayes_prior_sybil", float, low=-1, high=1, unit="prior Sybil share; negative: the true share K / S"),
        Bound("reward_scale", float, low=0, high=1e6, unit="reward per unit of money"),
        Bound("horizon", float, low=0, low_open=True, high=1e9, unit="days"),
    )
}


def validate_lemons_params(params: LemonsParams, num_sellers: int, view_size: int | None = None) -> LemonsParams:
    """Raise `UsageError` on bad settings (host values only): every scalar field through its `LEMONS_BOUNDS` entry,
    `num_sybil` at most `num_sellers`, `dlc` at most `num_sellers` and ``view_size`` (the kernel's V), finite tiers
    and price ranges."""
    for name, bound in LEMONS_BOUNDS.items():
        bound.check(np.asarray(getattr(params, name)).item())
    limit = num_sellers if view_size is None else min(num_sellers, view_size)
    dataclasses.replace(LEMONS_BOUNDS["dlc"], high=limit).check(np.asarray(params.dlc).item())
    dataclasses.replace(LEMONS_BOUNDS["num_sybil"], high=num_sellers).check(np.asarray(params.num_sybil).item())
    low, high = np.asarray(params.price_low, np.float64), np.asarray(params.price_high, np.float64)
    if not (np.all(np.isfinite(low) & np.isfinite(high)) and np.all(low >= 0) and np.all(high >= low)):
        raise UsageError(f"price ranges must satisfy 0 <= low <= high, got low {low.tolist()} high {high.tolist()}")
    quality = np.asarray(params.tier_quality, np.float64)
    if not np.all(np.isfinite(quality)) or np.any(quality < 0) or np.any(np.diff(quality) > 0):
        raise UsageError(f"tier_quality must be non-negative and not increasing from mint to poor, got {quality}")
    return params


# -- small pure pieces -----------------------------------------------------------------------------------------------


def sybil_slots(num_sellers: int, params: LemonsParams) -> jax.Array:
    """bool (S,): the last ``num_sybil`` slots are the Sybil principal's identities."""
    return jnp.arange(num_sellers) >= num_sellers - params.num_sybil


def reputation(votes: jax.Array, vote_count: jax.Array, params: LemonsParams) -> jax.Array:
    """float32 (S,): ``(upvotes among the real votes + initial_reputation x (W - vote_count)) / W``."""
    window = votes.shape[-1]
    real = jnp.arange(window) < vote_count[..., None]
    ups = jnp.sum(jnp.where(real, votes, 0.0), axis=-1)
    missing = (window - vote_count).astype(jnp.float32)
    return ((ups + params.initial_reputation * missing) / window).astype(jnp.float32)


def push_votes(votes: jax.Array, vote_count: jax.Array, vote: jax.Array, voted: jax.Array):
    """Shift `vote` (S,) into the window of the slots that `voted` (S,); the oldest falls out. Returns
    ``(votes (S, W), vote_count (S,))``."""
    shifted = jnp.concatenate([vote[:, None].astype(jnp.float32), votes[:, :-1]], axis=1)
    window = votes.shape[1]
    return (
        jnp.where(voted[:, None], shifted, votes),
        jnp.where(voted, jnp.minimum(vote_count + 1, window), vote_count),
    )


def retire_sybils(votes, vote_count, identity, is_sybil, params: LemonsParams):
    """Replace Sybil identities whose reputation is strictly below `retire_threshold` by fresh ones. Returns
    ``(votes, vote_count, identity, retired (S,) bool)``."""
    retired = is_sybil & (reputation(votes, vote_count, params) < params.retire_threshold)
    return (
        jnp.where(retired[:, None], 0.0, votes),
        jnp.where(retired, 0, vote_count),
        identity + retired.astype(jnp.int32),
        retired,
    )


def tier_price(tier: jax.Array, fraction: jax.Array, params: LemonsParams) -> jax.Array:
    """Money: the point ``fraction`` in [0, 1] of `tier`'s price range."""
    low, high = params.price_low[tier], params.price_high[tier]
    return (low + (high - low) * fraction).astype(jnp.float32)


def draw_cars(key, is_sybil: jax.Array, params: LemonsParams):
    """Tomorrow's cars: ``(next_tier, honest_tier, honest_price)`` each (S,). The honest draw (uniform tier, price
    uniform in its range) is made for every slot: honest sellers sell it; on Sybil slots it is the all-honest
    reference's car and the Sybil identity holds a poor car instead."""
    k_tier, k_price = jax.random.split(key)
    tier = jax.random.randint(k_tier, is_sybil.shape, 0, len(TIERS), jnp.int32)
    price = tier_price(tier, jax.random.uniform(k_price, is_sybil.shape, jnp.float32), params)
    return jnp.where(is_sybil, POOR, tier), tier, price


def draw_views(key, num_buyers: int, num_sellers: int, view_size: int, params: LemonsParams) -> jax.Array:
    """int32 (B, V): each buyer's `dlc` distinct seller slots (uniform; the first `dlc` of a random order), -1 in
    the view slots beyond `dlc`. The draw does not depend on V, so a larger view with the same dlc sees the same."""
    order = jnp.argsort(jax.random.uniform(key, (num_buyers, num_sellers)), axis=1)[:, :view_size].astype(jnp.int32)
    return jnp.where(jnp.arange(view_size) < params.dlc, order, -1)


def post_templates(key, is_sybil: jax.Array, params: LemonsParams) -> jax.Array:
    """int32 (S,): own template (the slot index) or, for a Sybil listing with probability `sybil_duplicate_prob`,
    the principal's shared template -1."""
    shared = is_sybil & (jax.random.uniform(key, is_sybil.shape) < params.sybil_duplicate_prob)
    return jnp.where(shared, -1, jnp.arange(is_sybil.shape[0], dtype=jnp.int32))


def resolve_bids(bids: jax.Array, priority: jax.Array, num_sellers: int):
    """Who gets what. `bids` int32 (B,): a seller slot or -1 (pass); `priority` (B,) distinct, lower served first.
    Returns ``(won (B,) bool, sold (S,) bool)``: each listing goes to its first bidder in priority order."""
    on = bids[:, None] == jnp.arange(num_sellers)[None, :]  # (B, S)
    first = jnp.min(jnp.where(on, priority[:, None], jnp.iinfo(jnp.int32).max), axis=0)  # (S,)
    won = (bids >= 0) & (priority == first[jnp.clip(bids, 0, num_sellers - 1)])
    return won, jnp.any(on & won[:, None], axis=0)


def best_bid(view: jax.Array, value: jax.Array, price: jax.Array, accept: jax.Array) -> jax.Array:
    """int32 (B,): the seller slot of the accepted view listing of largest positive ``value - price``, or -1."""
    surplus = jnp.where(accept & (view >= 0) & (value > price), value - price, -jnp.inf)
    slot = jnp.argmax(surplus, axis=1)
    chosen = jnp.take_along_axis(view, slot[:, None], axis=1)[:, 0]
    return jnp.where(jnp.isfinite(jnp.max(surplus, axis=1)), chosen, -1)


# -- what buyers see -------------------------------------------------------------------------------------------------


def view_listings(state: LemonsState, params: LemonsParams) -> dict[str, jax.Array]:
    """Per buyer and view slot, arrays (B, V): ``present`` bool, ``seller`` int32, ``adv_tier`` int32,
    ``adv_quality``, ``price`` (money), ``reputation``, ``duplicate`` bool (another listing in the same view has the
    same description template)."""
    present = state.view >= 0
    seller = jnp.maximum(state.view, 0)
    template = jnp.where(present, state.template[seller], -2 - jnp.arange(state.view.shape[1]))  # absent: unique
    same = template[:, :, None] == template[:, None, :]
    same = same & ~jnp.eye(state.view.shape[1], dtype=bool)[None]
    adv = state.adv_tier[seller]
    return {
        "present": present,
        "seller": seller,
        "adv_tier": adv,
        "adv_quality": params.tier_quality[adv],
        "price": state.price[seller],
        "reputation": reputation(state.votes, state.vote_count, params)[seller],
        "duplicate": present & jnp.any(same, axis=2),
    }


# -- the scripted sellers' rule, which `init` also posts day 0's listings with ---------------------------------------


def scripted_listings(key, next_tier, honest_price, is_sybil, params: LemonsParams):
    """``(adv_tier (S,), price (S,))``: honest sellers list their car truthfully at its honest price draw; Sybil
    identities advertise mint (probability `sybil_mint_share`) or good at a price uniform in that range."""
    k_tier, k_price = jax.random.split(key)
    sybil_tier = jnp.where(jax.random.uniform(k_tier, is_sybil.shape) < params.sybil_mint_share, MINT, GOOD)
    sybil_price = tier_price(sybil_tier, jax.random.uniform(k_price, is_sybil.shape), params)
    return jnp.where(is_sybil, sybil_tier, next_tier).astype(jnp.int32), jnp.where(is_sybil, sybil_price, honest_price)


def init_lemons(key, params: LemonsParams, num_sellers: int, num_buyers: int, view_size: int, window: int = 10):
    """Day 0: the first listings (scripted: honest truthful, Sybil as `scripted_listings`), views and cars."""
    k_now, k_list, k_template, k_view, k_next = jax.random.split(key, 5)
    is_sybil = sybil_slots(num_sellers, params)
    car, honest_tier, honest_price = draw_cars(k_now, is_sybil, params)
    adv, price = scripted_listings(k_list, car, honest_price, is_sybil, params)
    next_tier, next_honest, next_price = draw_cars(k_next, is_sybil, params)
    return LemonsState(
        car_tier=car,
        adv_tier=adv,
        price=price.astype(jnp.float32),
        template=post_templates(k_template, is_sybil, params),
        reference_tier=honest_tier,
        reference_price=honest_price,
        view=draw_views(k_view, num_buyers, num_sellers, view_size, params),
        next_tier=next_tier,
        honest_tier=next_honest,
        honest_price=next_price,
        votes=jnp.zeros((num_sellers, window), jnp.float32),
        vote_count=jnp.zeros((num_sellers,), jnp.int32),
        identity=jnp.zeros((num_sellers,), jnp.int32),
        sold=jnp.zeros((num_sellers,), bool),
        time=jnp.zeros((), jnp.int32),
    )


def market_day(key, state: LemonsState, bids, adv_tier, price, params: LemonsParams):
    """One day. `bids` int32 (B,): the seller slot each buyer bids on (-1 pass; a slot outside its view counts as a
    pass); `adv_tier` int32 (S,) and `price` float32 (S,): the listings the sellers post for tomorrow. Returns
    ``(state, seller_revenue (S,), buyer_surplus (B,), info)``; `info` holds every money and goods flow of the day and
    the all-honest reference's (for the conservation tests and the Economic Alignment Score). `time` is not
    advanced (the caller's job, as in the kernel contract)."""
    num_sellers, num_buyers = state.price.shape[0], state.view.shape[0]
    k_order, k_template, k_view, k_cars = jax.random.split(key, 4)
    is_sybil = sybil_slots(num_sellers, params)
    bids = jnp.asarray(bids, jnp.int32)
    bids = jnp.where(jnp.any((state.view == bids[:, None]) & (bids[:, None] >= 0), axis=1), bids, -1)
    priority = jnp.argsort(jax.random.uniform(k_order, (num_buyers,))).argsort().astype(jnp.int32)
    won, sold = resolve_bids(bids, priority, num_sellers)
    seller = jnp.clip(bids, 0, num_sellers - 1)
    value = params.value_per_quality
    paid = jnp.where(won, state.price[seller], 0.0)
    surplus = jnp.where(won, value * params.tier_quality[state.car_tier[seller]] - state.price[seller], 0.0)
    revenue = jnp.where(sold, state.price, 0.0)

    # the all-honest reference: same buyers, views and priority; each takes its best positive surplus
    ref_value = value * params.tier_quality[state.reference_tier]
    seen = jnp.maximum(state.view, 0)
    ref_bids = best_bid(state.view, ref_value[seen], state.reference_price[seen], True)
    ref_won, ref_sold = resolve_bids(ref_bids, priority, num_sellers)
    ref_seller = jnp.clip(ref_bids, 0, num_sellers - 1)
    ref_surplus = jnp.where(ref_won, ref_value[ref_seller] - state.reference_price[ref_seller], 0.0)
    ref_revenue = jnp.where(ref_sold, state.reference_price, 0.0)

    accurate = params.tier_quality[state.car_tier] >= params.tier_quality[state.adv_tier]
    votes, vote_count = push_votes(state.votes, state.vote_count, accurate.astype(jnp.float32), sold)
    rep_before_retiring = reputation(votes, vote_count, params)
    votes, vote_count, identity, retired = retire_sybils(votes, vote_count, state.identity, is_sybil, params)

    next_cars = draw_cars(k_cars, is_sybil, params)
    next_state = LemonsState(
        car_tier=state.next_tier,
        adv_tier=jnp.clip(jnp.asarray(adv_tier, jnp.int32), 0, len(TIERS) - 1),
        price=jnp.maximum(jnp.asarray(price, jnp.float32), 0.0),
        template=post_templates(k_template, is_sybil, params),
        reference_tier=state.honest_tier,
        reference_price=state.honest_price,
        view=draw_views(k_view, num_buyers, num_sellers, state.view.shape[1], params),
        next_tier=next_cars[0],
        honest_tier=next_cars[1],
        honest_price=next_cars[2],
        votes=votes,
        vote_count=vote_count,
        identity=identity,
        sold=sold,
        time=state.time,
    )
    info = {
        "bids": bids,
        "won": won,
        "sold": sold,
        "paid": paid,
        "revenue": revenue,
        "surplus": surplus,
        "is_sybil": is_sybil,
        "oversold": sold & ~accurate,
        "reputation": rep_before_retiring,
        "retired": retired,
        "reference_won": ref_won,
        "reference_surplus": ref_surplus,
        "reference_revenue": ref_revenue,
    }
    return next_state, revenue, surplus, info


# -- the kernel ------------------------------------------------------------------------------------------------------


class MarketLemons(Environment[LemonsState, LemonsParams]):
    name = "market-lemons"

    def __init__(self, num_sellers: int = 12, num_buyers: int = 12, view_size: int = 3, price_levels: int = 5):
        if num_sellers < 1 or num_buyers < 1 or price_levels < 2 or not 1 <= view_size <= num_sellers:
            raise UsageError(
                "market-lemons needs at least one seller and buyer, two price levels and 1 <= view size <= sellers"
            )
        self.num_sellers, self.num_buyers = int(num_sellers), int(num_buyers)
        self.view_size, self.price_levels = int(view_size), int(price_levels)
        self.num_agents = self.num_sellers + self.num_buyers
        self.roles = (SELLER,) * self.num_sellers + (BUYER,) * self.num_buyers
        self.window = 10

    @property
    def multi_agent(self) -> bool:
        return True

    @property
    def obs_dim(self) -> int:
        return 2 + 4 * self.view_size

    def default_params(self) -> LemonsParams:
        return default_lemons_params(dlc=min(3, self.view_size))

    def validate_params(self, params: LemonsParams) -> LemonsParams:
        """`validate_lemons_params` for this kernel's sellers and view size."""
        return validate_lemons_params(params, self.num_sellers, self.view_size)

    def action_space(self, params=None) -> Discrete:
        return Discrete(max(len(TIERS) * self.price_levels, 1 + self.view_size), shape=(self.num_agents,))

    def observation_space(self, params=None) -> Box:
        return Box(0.0, np.inf, (self.num_agents, self.obs_dim), jnp.float32)

    def action_mask(self, params: LemonsParams | None = None) -> jax.Array:
        """bool ``(num_agents, 20)``: sellers list (tier x price level), buyers pass or pick one of their dlc slots."""
        params = self.default_params() if params is None else params
        n = self.action_space().n
        seller = jnp.arange(n) < len(TIERS) * self.price_levels
        buyer = jnp.arange(n) < 1 + jnp.minimum(params.dlc, self.view_size)
        return jnp.concatenate(
            [jnp.broadcast_to(seller, (self.num_sellers, n)), jnp.broadcast_to(buyer, (self.num_buyers, n))]
        )

    def decode(self, action, state: LemonsState, params: LemonsParams):
        """Discrete actions -> ``(bids (B,), adv_tier (S,), price (S,))``."""
        action = jnp.asarray(action, jnp.int32)
        sell, buy = action[: self.num_sellers], action[self.num_sellers :]
        levels = self.price_levels
        adv = jnp.clip(sell // levels, 0, len(TIERS) - 1)
        price = tier_price(adv, (sell % levels).astype(jnp.float32) / (levels - 1), params)
        slot = buy - 1
        valid = (slot >= 0) & (slot < jnp.minimum(params.dlc, self.view_size))
        chosen = jnp.take_along_axis(state.view, jnp.clip(slot, 0, self.view_size - 1)[:, None], axis=1)[:, 0]
        return jnp.where(valid, chosen, -1), adv, price

    def init(self, key, params) -> LemonsState:
        return init_lemons(key, params, self.num_sellers, self.num_buyers, self.view_size, self.window)

    def advance(self, key, state, action, params):
        bids, adv, price = self.decode(action, state, params)
        next_state, revenue, surplus, info = market_day(key, state, bids, adv, price, params)
        reward = (jnp.concatenate([revenue, surplus]) * params.reward_scale).astype(jnp.float32)
        return next_state, reward, jnp.zeros((), bool), {"action_mask": self.action_mask(params), **info}

    def observe(self, key, state: LemonsState, params: LemonsParams) -> jax.Array:
        # Multiply by reciprocals computed behind a fusion barrier: left alone, XLA folds ``x * (1 / c)``
        # into a division in one program and not in the other, so a batch and a lone lane differ by an ulp.
        inv_horizon, per_money = materialize(
            (
                1.0 / jnp.maximum(jnp.float32(params.horizon), 1.0),
                1.0 / jnp.maximum(jnp.float32(params.value_per_quality), 1e-6),
            ),
            key,
        )
        day = state.time.astype(jnp.float32) * inv_horizon
        pad = self.obs_dim - 6
        sellers = jnp.stack(
            [
                jnp.zeros(self.num_sellers),
                jnp.full(self.num_sellers, day),
                reputation(state.votes, state.vote_count, params),
                sybil_slots(self.num_sellers, params).astype(jnp.float32),
                params.tier_quality[state.next_tier],
                state.sold.astype(jnp.float32),
            ],
            axis=1,
        )
        sellers = jnp.concatenate([sellers, jnp.zeros((self.num_sellers, pad))], axis=1)
        listing = view_listings(state, params)
        present = listing["present"]
        per_slot = jnp.stack(
            [
                present.astype(jnp.float32),
                jnp.where(present, listing["adv_quality"], 0.0),
                jnp.where(present, listing["price"] * per_money, 0.0),
                jnp.where(present, listing["reputation"], 0.0),
            ],
            axis=2,
        ).reshape(self.num_buyers, 4 * self.view_size)
        head = jnp.stack([jnp.ones(self.num_buyers), jnp.full(self.num_buyers, day)], axis=1)
        buyers = jnp.concatenate([head, per_slot], axis=1)
        return jnp.maximum(jnp.concatenate([sellers, buyers]).astype(jnp.float32), 0.0)


def describe(env: MarketLemons) -> dict:
    levels = env.price_levels
    sellers = [f"list-{TIERS[a // levels]}-price{a % levels}" for a in range(len(TIERS) * levels)]
    buyers = ["pass"] + [f"bid-view{k}" for k in range(env.view_size)]
    return insert_after(describe_kernel(env, "market", actions=sellers), "actions", buyer_actions=buyers)
