"""What every simulation study takes and returns: a `SimulateRequest` (policy mixes, episodes, steps, seed, numeric
params overrides, devices) and a `SimulationResult` (a tidy per-step table, a summary, figures). JAX-free: the command
line builds requests before any kernel is loaded. `over_markets` splits a study's batch of markets over devices."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agentlab import limits
from agentlab.errors import UsageError, choices
from agentlab.limits import Bound


@dataclasses.dataclass(frozen=True)
class SimulateRequest:
    """One simulation: parsed and checked for shape (`agentlab.kernels.mixes.parse_mix`), not for kernel semantics
    (each study's setup checks those and raises `UsageError`)."""

    policies: tuple[tuple[str, int], ...]  # the first role's mix (firms, sellers, participants), in order
    buyers: tuple[tuple[str, int], ...] = ()  # the second role's mix, if the kernel has one (else empty)
    dlc: int | None = None  # the discovery limit, if the kernel has one (else None)
    markets: int = 1024  # independent episodes (markets; grid events)
    steps: int = 0  # steps per episode (days; a grid event's deadline in rounds); 0: the kernel's default
    seed: int = 0
    params: dict[str, float] = dataclasses.field(default_factory=dict)  # numeric overrides of the kernel's params
    devices: int = 1  # devices the markets are split over (`over_markets`); 1: one device


@dataclasses.dataclass
class SimulationResult:
    metrics: Any  # polars DataFrame, tidy: seed, step, wall_seconds, ... (one row per step)
    summary: dict
    plots: dict[str, Any]  # file name -> matplotlib figure


def check_params(params: dict[str, float], bounds: dict[str, Bound]) -> dict[str, Any]:
    """``--param`` overrides checked against a kernel's declarations: an unknown key, or a value that is NaN,
    infinite or out of its range, is a `UsageError`; returns the values converted (ints for integer fields)."""
    for key in params:
        if key not in bounds:
            raise UsageError(f"--param {key!r}: valid keys are {choices(sorted(bounds))}")
    return limits.check_all(params, bounds, "--param")


def over_markets(fn: Callable[..., Any], request: SimulateRequest, replicated: int) -> Callable[..., Any]:
    """``fn(keys (M,), *whole) -> rows`` (every output with leading axis M, markets independent) split over
    ``request.devices`` devices in equal blocks of markets (`agentlab.devices.over_lanes`), its last `replicated`
    arguments whole on every device; each market keeps its key, so the rows are the one-device rows. Devices that
    JAX does not see or that do not divide ``request.markets``: `UsageError`. One device: `fn` itself."""
    from agentlab import devices

    count = devices.check(request.devices, request.markets, "--episodes (--markets, --events)")
    return devices.over_lanes(fn, count, replicated)


def mix_text(mix: tuple[tuple[str, int], ...]) -> str:
    """``(("undercut", 3), ("stabilise", 2))`` -> ``"undercut:3,stabilise:2"`` (as a summary records it)."""
    return ",".join(f"{name}:{count}" for name, count in mix)


def eas_figure(summary: dict, title: str):
    """The Economic Alignment Score and its components (means over markets, sd bars) of a market summary."""
    from agentlab.rundir import pyplot

    plt = pyplot()
    parts = ["stability", "integrity", "welfare", "profitability", "eas"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(parts, [summary[p] for p in parts], yerr=[summary[f"{p}_sd"] for p in parts], color="tab:green")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("score (mean over markets, sd bars)")
    return fig
