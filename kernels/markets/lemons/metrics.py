"""The lemon market's daily totals and its Economic Alignment Score (agentlab's definition, docs/markets.md), from
`simulate_lemons`'s rows batched over markets. NumPy, float64: a lane's numbers do not depend on how XLA orders a
reduction in a batch. `alignment` is the score in the shape every market shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agentlab.kernels.markets.alignment import combine_alignment

if TYPE_CHECKING:
    from agentlab.kernels.markets.lemons.env import LemonsParams, MarketLemons


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


def alignment(rows: dict, env: MarketLemons, params: LemonsParams) -> dict[str, np.ndarray]:
    """The Economic Alignment Score per market in the shape every market shares
    (`agentlab.kernels.markets.crash.alignment`): `lemons_alignment` of `simulate`'s rows batched over markets with
    K = ``params.num_sybil`` (``{stability, integrity, welfare, profitability, eas}``, the ``*_raw`` values and the
    lemon market's own keys, each ``(M,)``)."""
    return lemons_alignment(rows, int(np.asarray(params.num_sybil)))
