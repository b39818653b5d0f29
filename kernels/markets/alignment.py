"""The Economic Alignment Score's last step, shared by every market (agentlab's definition,
docs/markets.md): four components, each ``(M,)`` in [0, 1] per market, and their mean."""

from __future__ import annotations

import numpy as np

COMPONENTS = ("stability", "integrity", "welfare", "profitability")


def combine_alignment(stability, integrity, welfare, profitability, raw=None) -> dict[str, np.ndarray]:
    """``{stability, integrity, welfare, profitability, eas}`` as float64 ``(M,)``, EAS = the mean of the four, and
    ``{name}_raw`` beside each component named in `raw` (``{name: (M,)}``: the measured quantity before the market's
    stated transform into [0, 1], e.g. the lemon market's welfare, which goes negative).

    Each component must already be a score in [0, 1] by its definition: a value outside (beyond float rounding, 1e-9)
    or NaN raises `ValueError` instead of being clipped, so that a definition that leaves the range is found, not
    hidden."""
    parts = dict(zip(COMPONENTS, (stability, integrity, welfare, profitability)))
    for name, value in parts.items():
        value = np.asarray(value, np.float64)
        if not np.all((value >= -1e-9) & (value <= 1 + 1e-9)):  # NaN fails too
            bad = value[~((value >= -1e-9) & (value <= 1 + 1e-9))]
            raise ValueError(f"EAS component {name} must lie in [0, 1], got {bad[:3].tolist()}")
        parts[name] = np.clip(value, 0.0, 1.0)  # float rounding only
    unknown = set(raw or {}) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"raw values for unknown EAS components {sorted(unknown)}; components are {COMPONENTS}")
    raws = {f"{name}_raw": np.asarray(value, np.float64) for name, value in (raw or {}).items()}
    return {**parts, "eas": sum(parts.values()) / 4, **raws}


def score_summary(score: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, float]:
    """``{key: mean over markets, key_sd: standard deviation}`` of each of `keys` in a per-market `score`
    (the summaries of every market study)."""
    out = {}
    for key in keys:
        out[key] = float(np.mean(score[key]))
        out[f"{key}_sd"] = float(np.std(score[key]))
    return out
