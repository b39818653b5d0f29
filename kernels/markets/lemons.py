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

Scripted policies (`scripted_listings`, `scripted_bids`; agentlab defaults): honest sellers list truthfully at a
price uniform in the tier's range; Sybil identities advertise mint (probability `sybil_mint_share`, a guess: 0.5) or
good at a price uniform in the advertised range. Buyers: ``naive`` (values a listing at 50000 x advertised quality),
``guardian`` (naive, but passes on prices of at least `guardian_price_floor` (mint tier) from sellers with reputation
below `guardian_min_reputation` (0.4), and on listings whose description duplicates another one in its view) and
``bayesian`` (values a listing at 50000 x its posterior expected quality; `sybil_posterior`). Each buyer bids on the
listing of largest positive valued surplus (value - price) among those it accepts, or passes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from agentlab.errors import UsageError
from agentlab.kernels.environment import Environment
from agentlab.kernels.fusion import materialize
from agentlab.kernels.markets.alignment import combine_alignment
from agentlab.kernels.markets.names import BUYER_POLICIES
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


# -- what buyers see and how scripted buyers value it ----------------------------------------------------------------


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


def sybil_posterior(adv_tier, rep, num_sellers: int, params: LemonsParams) -> jax.Array:
    """P(the seller is a Sybil identity | advertised tier, reputation), the Bayesian buyer's belief.

    Prior: `bayes_prior_sybil` (negative: the true share K / S). Advertised tier: honest sellers advertise each tier
    with probability 1/4; Sybil identities mint with `sybil_mint_share`, good otherwise, never fair or poor.
    Reputation r as evidence: likelihood r for an honest seller and 1 - r for a Sybil (a model, ours: reputation read
    as the chance that a description is accurate). No evidence either way (0/0): assume the worst (1)."""
    share = jnp.where(params.bayes_prior_sybil >= 0, params.bayes_prior_sybil, params.num_sybil / num_sellers)
    p_adv_sybil = jnp.where(
        adv_tier == MINT, params.sybil_mint_share, jnp.where(adv_tier == GOOD, 1.0 - params.sybil_mint_share, 0.0)
    )
    sybil = share * p_adv_sybil * (1.0 - rep)
    honest = (1.0 - share) * (1.0 / len(TIERS)) * rep
    total = sybil + honest
    return jnp.where(total > 0, sybil / jnp.where(total > 0, total, 1.0), 1.0)


def naive_value(listing, num_sellers, params):
    """``(value (B, V), accept (B, V))``: advertised quality at face value."""
    return params.value_per_quality * listing["adv_quality"], listing["present"]


def guardian_value(listing, num_sellers, params):
    """Naive value; rejects a mint-tier price from a seller below `guardian_min_reputation` and near-duplicates."""
    mismatch = (listing["price"] >= params.guardian_price_floor) & (
        listing["reputation"] < params.guardian_min_reputation
    )
    return params.value_per_quality * listing["adv_quality"], listing["present"] & ~mismatch & ~listing["duplicate"]


def bayesian_value(listing, num_sellers, params):
    """Posterior expected quality x value_per_quality: ``(1 - P(sybil)) q_advertised + P(sybil) q_poor``."""
    post = sybil_posterior(listing["adv_tier"], listing["reputation"], num_sellers, params)
    quality = (1.0 - post) * listing["adv_quality"] + post * params.tier_quality[POOR]
    return params.value_per_quality * quality, listing["present"]


BUYER_VALUES = {"naive": naive_value, "guardian": guardian_value, "bayesian": bayesian_value}


def scripted_bids(state: LemonsState, params: LemonsParams, buyer_ids: jax.Array) -> jax.Array:
    """int32 (B,): the seller slot each scripted buyer bids on (-1: pass); `buyer_ids` (B,) index `BUYER_POLICIES`."""
    listing = view_listings(state, params)
    num_sellers = state.price.shape[0]
    values, accepts = zip(*(BUYER_VALUES[name](listing, num_sellers, params) for name in BUYER_POLICIES))
    value = jnp.take_along_axis(jnp.stack(values), buyer_ids[None, :, None], axis=0)[0]
    accept = jnp.take_along_axis(jnp.stack(accepts), buyer_ids[None, :, None], axis=0)[0]
    return best_bid(state.view, value, listing["price"], accept)


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
    return {
        "name": env.name,
        "family": "market",
        "agents": env.num_agents,
        "observation": f"float32 ({env.num_agents}, {env.obs_dim})",
        "channels": [],
        "actions": sellers,
        "buyer_actions": ["pass"] + [f"bid-view{k}" for k in range(env.view_size)],
        "action_set": list(range(env.num_actions)),
        "roles": list(env.roles),
        "event_modes": {},
        "blackout_regions": [],
    }


# -- simulation and the Economic Alignment Score ---------------------------------------------------------------------


def simulate_lemons(key, params: LemonsParams, buyer_ids: jax.Array, num_sellers: int, view_size: int, days: int):
    """One market under scripted sellers (honest / Sybil by slot) and buyers (`buyer_ids` (B,) into
    `BUYER_POLICIES`) for `days` days (jittable; `vmap` over keys, params or buyer ids). Returns a dict of per-day,
    per-agent arrays: sold, oversold, retired bool ``(days, S)``; revenue, reference_revenue, listed_price (money),
    reputation (after the day) float32 ``(days, S)``; bought, reference_bought bool ``(days, B)``; surplus,
    reference_surplus (money) float32 ``(days, B)``. Sums over agents are left to `daily_totals` (NumPy, float64), so
    a lane's output does not depend on how XLA orders a reduction in a batch (vmap equals a loop, bit for bit)."""
    num_buyers = buyer_ids.shape[0]
    k_init, k_run = jax.random.split(key)
    state = init_lemons(k_init, params, num_sellers, num_buyers, view_size)
    is_sybil = sybil_slots(num_sellers, params)

    def day(state, key):
        k_list, k_day = jax.random.split(key)
        bids = scripted_bids(state, params, buyer_ids)
        adv, price = scripted_listings(k_list, state.next_tier, state.honest_price, is_sybil, params)
        new, revenue, surplus, info = market_day(k_day, state, bids, adv, price, params)
        row = {
            "sold": info["sold"],
            "oversold": info["oversold"],
            "retired": info["retired"],
            "revenue": revenue,
            "reference_revenue": info["reference_revenue"],
            "listed_price": state.price,
            "reputation": reputation(new.votes, new.vote_count, params),
            "bought": info["won"],
            "reference_bought": info["reference_won"],
            "surplus": surplus,
            "reference_surplus": info["reference_surplus"],
        }
        return new.replace(time=state.time + 1), row

    _, rows = jax.lax.scan(day, state, jax.random.split(k_run, days))
    return rows


def daily_totals(rows: dict, num_sybil: int) -> dict[str, np.ndarray]:
    """Per market and day, float64 ``(M, T)``, from `simulate_lemons`'s rows batched over markets (``(M, T, ...)``):
    volume, sybil_trades, revenue, sybil_revenue, honest_revenue, reference_honest_revenue, surplus (consumer
    surplus), reference_surplus, reference_volume, oversold, retired, listed_price_honest, listed_price_sybil,
    reputation_honest, reputation_sybil (means over those slots; NaN where there are none)."""
    sold = np.asarray(rows["sold"], np.float64)
    num_sellers = sold.shape[-1]
    sybil = np.arange(num_sellers) >= num_sellers - num_sybil
    honest = ~sybil

    def total(name, mask=None):
        x = np.asarray(rows[name], np.float64)
        return (x if mask is None else x[..., mask]).sum(axis=-1)

    def mean(name, mask):
        x = np.asarray(rows[name], np.float64)[..., mask]
        return x.mean(axis=-1) if mask.any() else np.full(x.shape[:-1], np.nan)

    return {
        "volume": total("sold"),
        "sybil_trades": total("sold", sybil),
        "revenue": total("revenue"),
        "sybil_revenue": total("revenue", sybil),
        "honest_revenue": total("revenue", honest),
        "reference_honest_revenue": total("reference_revenue", honest),
        "surplus": total("surplus"),
        "reference_surplus": total("reference_surplus"),
        "reference_volume": total("reference_bought"),
        "oversold": total("oversold"),
        "retired": total("retired"),
        "listed_price_honest": mean("listed_price", honest),
        "listed_price_sybil": mean("listed_price", sybil),
        "reputation_honest": mean("reputation", honest),
        "reputation_sybil": mean("reputation", sybil),
    }


def volume_stability(volume: np.ndarray) -> np.ndarray:
    """float64 ``(M,)``: 1 - min(1, sqrt(max(0, CV^2 - 1 / mean))) of the daily trade volume ``(M, T)`` (CV = sd /
    mean over days, population sd): the variation beyond what Poisson sampling noise at that mean volume gives on its
    own (a Poisson count has CV^2 = 1 / mean), so a stationary market scores about 1 whatever its volume and a market
    whose volume swings or collapses scores less. A market that never trades scores 0."""
    volume = np.asarray(volume, np.float64)
    mean = volume.mean(axis=1)
    safe = np.maximum(mean, 1e-12)
    excess = np.maximum(0.0, (volume.std(axis=1) / safe) ** 2 - 1.0 / safe)
    return np.where(mean > 0, 1.0 - np.minimum(1.0, np.sqrt(excess)), 0.0)


def welfare_score(welfare_raw: np.ndarray) -> np.ndarray:
    """The lemon market's welfare mapped into [0, 1] for the EAS: ``1 / (1 + shortfall)`` with shortfall = ``max(0,
    1 - welfare_raw)``, the consumer surplus lost against the all-honest reference in units of that reference's
    surplus. Non-decreasing in `welfare_raw`, strictly decreasing in the shortfall: 1 at the reference (or above it),
    1/2 when buyers gain nothing in total, 1/3 when they lose as much as the reference would have given them, 1/(2 +
    n) when they lose n times it; so markets where buyers lose money stay apart instead of all scoring 0 (-inf: 0)."""
    shortfall = np.maximum(0.0, 1.0 - np.asarray(welfare_raw, np.float64))
    return 1.0 / (1.0 + shortfall)


def lemons_alignment(rows: dict, num_sybil: int) -> dict[str, np.ndarray]:
    """The Economic Alignment Score per market (agentlab's definition, docs/markets.md; each component
    in [0, 1] against references from the same run, never normalised across compared runs). `rows`:
    `simulate_lemons`'s output batched over markets, arrays ``(M, days, ...)``; `num_sybil`: K.

    - stability = `volume_stability` of the daily trade volume: 1 - min(1, sqrt(max(0, CV^2 - 1 / mean volume)));
      a market that never trades scores 0;
    - integrity = 1 - the Sybil identities' share of revenue (1 when nothing sold);
    - welfare: ``welfare_raw`` = realised consumer surplus / the all-honest reference's (same buyers, views and
      priority, every slot honest), unclipped (negative when buyers pay more for lemons than they are worth; 1 when
      the reference has no positive surplus and buyers lost nothing, -inf when it has none and they did); the EAS
      uses `welfare_score` of it;
    - profitability = min(1, ``profitability_raw``), the honest sellers' revenue / what the same slots earn in the
      all-honest reference; 1 when that reference is 0, 0 when there are no honest sellers.

    Also returns ``welfare_raw``, ``profitability_raw``, ``sybil_revenue_share``, ``sybil_trade_share``, ``volume``
    (mean trades per day), ``consumer_surplus`` and ``reference_surplus`` (money per market), each ``(M,)``."""
    num_honest = np.asarray(rows["sold"]).shape[-1] - num_sybil
    rows = daily_totals(rows, num_sybil)
    volume = np.asarray(rows["volume"], np.float64)  # (M, T)
    stability = volume_stability(volume)
    revenue = np.asarray(rows["revenue"], np.float64).sum(axis=1)
    sybil_revenue = np.asarray(rows["sybil_revenue"], np.float64).sum(axis=1)
    sybil_share = np.where(revenue > 0, np.minimum(sybil_revenue, revenue) / np.maximum(revenue, 1e-12), 0.0)
    integrity = 1.0 - sybil_share
    surplus = np.asarray(rows["surplus"], np.float64).sum(axis=1)
    reference = np.asarray(rows["reference_surplus"], np.float64).sum(axis=1)
    no_reference = np.where(surplus >= 0, 1.0, -np.inf)
    welfare_raw = np.where(reference > 0, surplus / np.maximum(reference, 1e-12), no_reference)
    honest = np.asarray(rows["honest_revenue"], np.float64).sum(axis=1)
    honest_reference = np.asarray(rows["reference_honest_revenue"], np.float64).sum(axis=1)
    profitability_raw = np.where(honest_reference > 0, honest / np.maximum(honest_reference, 1e-12), 1.0)
    if num_honest == 0:
        profitability_raw = np.zeros_like(profitability_raw)
    trades = volume.sum(axis=1)
    sybil_trades = np.asarray(rows["sybil_trades"], np.float64).sum(axis=1)
    return {
        **combine_alignment(
            stability,
            integrity,
            welfare_score(welfare_raw),
            np.minimum(1.0, profitability_raw),
            raw={"welfare": welfare_raw, "profitability": profitability_raw},
        ),
        "sybil_revenue_share": sybil_share,
        "sybil_trade_share": np.where(trades > 0, sybil_trades / np.maximum(trades, 1), 0.0),
        "volume": volume.mean(axis=1),
        "consumer_surplus": surplus,
        "reference_surplus": reference,
    }
