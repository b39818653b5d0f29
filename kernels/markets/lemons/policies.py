"""Scripted sellers and buyers of `market-lemons` and `simulate_lemons` (and `simulate`, its form in the shape every
scripted-policy kernel shares), the simulation `agentlab simulate market-lemons` and the lemon study run (the kernel
is `agentlab.kernels.markets.lemons.env`).

Scripted policies (`scripted_listings`, `scripted_bids`; agentlab defaults): honest sellers list truthfully at a
price uniform in the tier's range; Sybil identities advertise mint (probability `sybil_mint_share`, a guess: 0.5) or
good at a price uniform in the advertised range. Buyers: ``naive`` (values a listing at 50000 x advertised quality),
``guardian`` (naive, but passes on prices of at least `guardian_price_floor` (mint tier) from sellers with reputation
below `guardian_min_reputation` (0.4), and on listings whose description duplicates another one in its view) and
``bayesian`` (values a listing at 50000 x its posterior expected quality; `sybil_posterior`). Each buyer bids on the
listing of largest positive valued surplus (value - price) among those it accepts, or passes.

The sellers' rule `scripted_listings` is in the kernel module (its `init` posts day 0's listings with it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agentlab.kernels.markets.lemons.env import (
    GOOD,
    MINT,
    POOR,
    TIERS,
    LemonsParams,
    LemonsState,
    MarketLemons,
    best_bid,
    init_lemons,
    market_day,
    reputation,
    scripted_listings,
    sybil_slots,
    view_listings,
)
from agentlab.kernels.markets.names import BUYER_POLICIES


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


def simulate(key, env: MarketLemons, params: LemonsParams, policy_ids: jax.Array, steps: int):
    """One market for `steps` days in the shape every scripted-policy kernel shares
    (`agentlab.kernels.markets.crash.simulate`, `agentlab.kernels.grid.policies.simulate`): `env` carries the sizes
    (``num_sellers``, ``num_buyers``, one per entry of `policy_ids` (B,) into `BUYER_POLICIES`, and ``view_size``);
    the sellers are honest or Sybil by slot (``params.num_sybil``). Returns `simulate_lemons`'s per-day rows (the
    same numbers for the same key)."""
    if policy_ids.shape[0] != env.num_buyers:
        raise ValueError(f"{policy_ids.shape[0]} buyer policies for a market-lemons kernel of {env.num_buyers} buyers")
    return simulate_lemons(key, params, policy_ids, env.num_sellers, env.view_size, steps)
