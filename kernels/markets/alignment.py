"""The Economic Alignment Score's last step, shared by every market (agentlab's definition,
../shared/reference/markets.md): four components, each ``(M,)`` in [0, 1] per market, and their mean."""

from __future__ import annotations

import numpy as np


def combine_alignment(stability, integrity, welfare, profitability) -> dict[str, np.ndarray]:
    """``{stability, integrity, welfare, profitability, eas}``: the components clipped to [0, 1] as float64
    ``(M,)`` and EAS = their mean, reported beside them."""
    parts = {"stability": stability, "integrity": integrity, "welfare": welfare, "profitability": profitability}
    parts = {k: np.clip(np.asarray(v, np.float64), 0.0, 1.0) for k, v in parts.items()}
    return {**parts, "eas": sum(parts.values()) / 4}
