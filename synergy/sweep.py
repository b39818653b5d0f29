"""`agentlab sweep synergy`: theory and Monte Carlo side by side over a grid (the work behind the command).

A cell is one (fan-in b, rho, gamma, mu0) configuration; the level-wise sampler
(`agentlab.synergy.montecarlo.simulate_levels`) gives every depth of a cell in one pass. Cells are
computed in units (one fan-in, up to `UNIT` cells) written as ``cells/b{b}-u{k}.parquet`` by the sweep
layer (`agentlab.executors`: local or Ray, one atomic file per unit); a resumed sweep skips units already
written and recomputes nothing. A cell's draws depend only on the seed and its index in the grid, so
chunking, resuming and the executor never change the numbers.

Input boundary: every `SweepConfig` field is checked through its `agentlab.limits.Bound` (`BOUNDS`), the
work (cells x deepest level x trials) is bounded by `MAX_WORK` and the memory estimate (`sweep_bytes`) by
`agentlab.limits.check_memory`, all in `SweepConfig.validate`, before anything runs. On resume a unit
file that cannot be read back whole with the expected columns and rows (truncated, corrupt, or not a
unit of this grid) is refused by `check_cells`, naming the file: deleting it makes the resumed sweep
recompute that unit (it is never silently recomputed, since an unreadable file is a sign of a disk or
copy problem worth knowing about).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import executors, limits
from agentlab.errors import UsageError
from agentlab.limits import Bound
from agentlab.synergy import theory

UNIT = 64
MAX_WORK = 1e11  # cells x deepest level x trials: about 100 times the default sweep, hours on a CPU

# One declaration per `SweepConfig` field (named by the flag that sets it); tuple fields are checked per value.
BOUNDS: dict[str, Bound] = {
    "fan_ins": Bound("--fan-in", int, low=3, high=99, unit="odd fan-in b"),
    "rhos": Bound("--rho", float, low=0, high=1, high_open=True, unit="shared-error correlation"),
    "gammas": Bound("--gamma", float, low=0, high=1, low_open=True, unit="message fidelity"),
    "message_lengths": Bound("--message-length", float, low=0, high=1e9, low_open=True, unit="tokens"),
    "m0": Bound("--m0", float, low=0, high=1e9, low_open=True, unit="tokens"),
    "depths": Bound("--depth", int, low=0, high=1000, unit="tree levels"),
    "mu0s": Bound("--mu0", float, low=-1, high=1, unit="leaf bias 2 p - 1"),
    "betas": Bound("--beta", float, low=0, high=10, low_open=True, unit="leaf scaling exponent"),
    "kappa": Bound("--kappa", float, low=0, high=1e6, low_open=True, unit="leaf bias scale"),
    "budgets": Bound("--budget", float, low=0, high=1e15, low_open=True, unit="tokens"),
    "budget_message_length": Bound("--budget-message-length", float, low=0, high=1e9, low_open=True, unit="tokens"),
    "trials": Bound("--trials", int, low=1, high=10**10, unit="Monte Carlo trials per cell"),
    "seed": Bound("--seed", int, low=0, high=2**31 - 1),
}


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The resolved grid. `message_lengths` is set when gamma comes from ``gamma(m) = 1 - exp(-m / m0)``."""

    fan_ins: tuple[int, ...] = (3, 5, 7, 9)
    rhos: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 0.9, 19), 6).tolist())
    gammas: tuple[float, ...] = tuple(np.round(np.linspace(0.5, 1.0, 11), 6).tolist())
    message_lengths: tuple[float, ...] | None = None
    m0: float = theory.DEFAULT_M0
    depths: tuple[int, ...] = tuple(range(11))
    mu0s: tuple[float, ...] = (0.05,)
    betas: tuple[float, ...] = (0.15,)
    kappa: float = 0.02
    budgets: tuple[float, ...] = tuple(np.geomspace(1e3, 1e7, 25).tolist())
    budget_message_length: float = 200.0
    trials: int = 100_000
    seed: int = 0

    def gamma_values(self) -> tuple[float, ...]:
        if self.message_lengths is None:
            return self.gammas
        return tuple(float(theory.fidelity(m, self.m0)) for m in self.message_lengths)

    def cells(self) -> list[tuple[int, int, float, float, float, float | None]]:
        """``(index, b, rho, gamma, mu0, message_length)`` for every cell, in a fixed order."""
        lengths = self.message_lengths or (None,) * len(self.gammas)
        gammas = list(zip(self.gamma_values(), lengths))
        grid = itertools.product(self.fan_ins, self.rhos, gammas, self.mu0s)
        return [(i, b, r, g, mu0, m) for i, (b, r, (g, m), mu0) in enumerate(grid)]

    def count(self) -> int:
        """Number of cells (without building them)."""
        gammas = len(self.message_lengths) if self.message_lengths is not None else len(self.gammas)
        return len(self.fan_ins) * len(self.rhos) * gammas * len(self.mu0s)

    def validate(self) -> SweepConfig:
        """Check every field through `BOUNDS` (fan-ins also odd), then the work and the memory; `UsageError`."""
        for field, bound in BOUNDS.items():
            value = getattr(self, field)
            if (field == "gammas" and self.message_lengths is not None) or value is None:
                continue  # gamma comes from the message lengths, or there are none
            if isinstance(value, tuple):
                if not value:
                    raise UsageError(f"{bound.name} is empty: give at least one value ({bound.describe()})")
                for item in value:
                    bound.check(item)
            else:
                bound.check(value)
        theory.check_fan_in(self.fan_ins)
        theory.check_gamma(self.gamma_values())
        cells, deepest = self.count(), max(self.depths)
        work = float(cells) * max(deepest, 1) * self.trials
        if work > MAX_WORK:
            raise UsageError(
                f"the sweep's work is {cells:,} cells x {max(deepest, 1):,} levels x {self.trials:,} trials = "
                f"{work:.3g} trial-levels, more than the {MAX_WORK:.0e} a sweep may plan (hours of compute); lower "
                "--trials, --depth or the grid"
            )
        limits.check_memory(
            sweep_bytes(self), f"the sweep ({cells:,} cells x {len(self.depths)} depths)", "lower the grid or --depth"
        )
        return self


def sweep_bytes(config: SweepConfig) -> float:
    """Estimated peak memory of a sweep: the tidy table (about 500 bytes a row with polars' copies when collected
    and sorted), the cell list, one unit in flight (levels x `UNIT` cells, the sampler's words) and the budget table
    (combinations x budgets x tree depths, a few float64 arrays)."""
    cells, levels, deepest = config.count(), len(config.depths), max(config.depths)
    table = 500.0 * cells * levels + 300.0 * cells
    n_words, _ = _population_words(config.trials)
    unit = UNIT * (deepest + 1) * 8 * 8 + UNIT * levels * 25 * 8 + UNIT * max(config.fan_ins) * n_words * 4 * 4
    gammas = len(config.message_lengths) if config.message_lengths is not None else len(config.gammas)
    combinations = len(config.fan_ins) * min(len(config.rhos), 4) * min(gammas, 4) * len(config.betas)
    tree_depths = np.log(max(config.budgets)) / np.log(min(config.fan_ins)) + 3
    budget = combinations * len(config.budgets) * (tree_depths * 8 * 8 + 200)
    return table + unit + budget


def _population_words(trials: int, max_words: int = 4096) -> tuple[int, int]:
    """`agentlab.synergy.montecarlo.population_words` without importing JAX."""
    need = max(1, -(-trials // 32))
    n_words = min(1 << (need - 1).bit_length(), max_words)
    return n_words, -(-need // n_words)


def check_cells(out: Path, config: SweepConfig) -> int:
    """Before resuming into `out`: every unit file already in ``out/cells`` must read back whole, with the
    expected columns and one row per cell and depth; otherwise `UsageError` naming the file (delete it and
    the resumed sweep recomputes that unit). Returns the number of units found."""
    return executors.check_units(Path(out) / "cells", units(config), columns=COLUMNS, rows=_rows(config))


def _rows(config: SweepConfig) -> Callable[[list], int]:
    return functools.partial(_unit_rows, len(config.depths))


def _unit_rows(levels: int, cells: list) -> int:
    return len(cells) * levels


def units(config: SweepConfig) -> list[tuple[str, list]]:
    """Work units ``(name, cells)``: cells of one fan-in, `UNIT` at a time."""
    out = []
    for b in config.fan_ins:
        cells = [c for c in config.cells() if c[1] == b]
        for k in range(0, len(cells), UNIT):
            out.append((f"b{b}-u{k // UNIT:04d}", cells[k : k + UNIT]))
    return out


def compute_unit(config: SweepConfig, cells: list) -> dict[str, Any]:
    """Monte Carlo and theory for one unit (cells of one fan-in): columns of the tidy table (`COLUMNS`; NumPy
    arrays, int64 / float64, or lists for the string and nullable columns), one row per cell and depth,
    cell-major. Pure: a function of the config and the cells only."""
    from agentlab.synergy import montecarlo as mc

    start = time.perf_counter()
    b = cells[0][1]
    index = np.array([c[0] for c in cells])
    rho = np.array([c[2] for c in cells])
    gamma = np.array([c[3] for c in cells])
    mu0 = np.array([c[4] for c in cells])
    depth = max(config.depths)
    pad = UNIT - len(cells)  # same shapes for every unit: one compilation per fan-in
    seeds = mc.config_seeds(config.seed, np.pad(index, (0, pad), mode="edge"))
    padded = [np.pad(v, (0, pad), mode="edge") for v in (mu0, rho, gamma)]
    correct, trials = mc.simulate_levels(seeds, *padded, b=b, depth=depth, trials=config.trials)
    correct = correct[: len(cells)]
    mu_mc, _ = mc.bias_and_error(correct, trials)
    se = mc.level_standard_errors(mu_mc, trials, b, rho, gamma)
    exact = theory.trajectory(mu0, depth, b, rho, gamma).T  # (cells, depth + 1)
    alpha = np.asarray(theory.alpha_rho(b, rho, gamma))
    s = np.asarray(theory.organization_exponent(b, rho, gamma))
    mu_star = np.asarray(theory.fixed_point(b, rho, gamma))
    gamma_c = np.asarray(theory.critical_fidelity(b, rho))
    wall = time.perf_counter() - start
    levels = np.asarray(config.depths, dtype=np.int64)
    n_cells, n_levels = len(cells), levels.size
    clipped = np.asarray(theory.clipped_predictor(mu0[:, None], levels[None, :], b, rho[:, None], gamma[:, None]))
    per_cell = lambda values: np.repeat(np.asarray(values), n_levels)  # (cells,) -> (cells * levels,)
    per_row = lambda values: np.asarray(values)[:, levels].ravel()  # (cells, depth + 1) -> (cells * levels,)
    rows = {
        "cell": per_cell(index.astype(np.int64)),
        "fan_in": np.full(n_cells * n_levels, b, dtype=np.int64),
        "rho": per_cell(rho.astype(np.float64)),
        "gamma": per_cell(gamma.astype(np.float64)),
        "message_length": [cell[5] for cell in cells for _ in range(n_levels)],
        "mu0": per_cell(mu0.astype(np.float64)),
        "depth": np.tile(levels, n_cells),
        "trials": np.full(n_cells * n_levels, trials, dtype=np.int64),
        "mu_mc": per_row(mu_mc),
        "mu_se": per_row(se),
        "accuracy_mc": per_row((1 + mu_mc) / 2),
        "mu_theory": per_row(exact),
        "mu_clipped": clipped.ravel(),
        "alpha": per_cell(alpha),
        "s": per_cell(s),
        "mu_star": per_cell(mu_star),
        "gamma_c": per_cell(gamma_c),
        "phase_theory": per_cell(np.where(alpha > 1, "amplifying", "washout")).tolist(),
        "seed": np.full(n_cells * n_levels, config.seed, dtype=np.int64),
        "unit_seconds": np.full(n_cells * n_levels, wall),
        "vote_evaluations": np.int64(trials) * np.where(np.tile(levels, n_cells) > 0, b, 1).astype(np.int64),
    }
    return rows


COLUMNS = (
    "cell", "fan_in", "rho", "gamma", "message_length", "mu0", "depth", "trials",
    "mu_mc", "mu_se", "accuracy_mc", "mu_theory", "mu_clipped", "alpha", "s", "mu_star", "gamma_c",
    "phase_theory", "seed", "unit_seconds", "vote_evaluations",
)  # fmt: skip


def run_units(
    config: SweepConfig,
    out: Path,
    *,
    executor: str = "local",
    on_unit: Callable[[int], None] | None = None,
    ray_address: str | None = None,
) -> tuple[int, int]:
    """Compute every unit not yet in ``out/cells`` (`agentlab.executors.run_units`); returns ``(computed,
    skipped)``. Each unit is written atomically as soon as it is done, so an interrupted sweep loses at most the
    units in flight; ``on_unit(done)`` receives the units done so far. `ray_address`: the Ray cluster of
    ``executor="ray"`` (`agentlab.executors.ray_session`)."""
    import polars as pl

    return executors.run_units(
        Path(out) / "cells",
        units(config),
        functools.partial(compute_unit, config),
        executor=executor,
        columns=COLUMNS,
        rows=_rows(config),
        schema={"message_length": pl.Float64},
        on_unit=on_unit,
        ray_address=ray_address,
    )


def collect(out: Path, config: SweepConfig):
    """The tidy table of every written unit (polars DataFrame), sorted by cell and depth."""
    return executors.collect(Path(out) / "cells", units(config), sort=["cell", "depth"])


def budget_keys(config: SweepConfig) -> dict[str, np.ndarray]:
    """The (b, rho, gamma, beta) combinations of the budget table: every fan-in and beta, about 3-4 rhos
    and gammas (every ``len // 3``-th of the grid). Arrays of shape (K,): ``fan_in`` int64, the rest float64."""
    gamma_m = config.gamma_values()
    keys = list(itertools.product(config.fan_ins, config.rhos[:: max(1, len(config.rhos) // 3)],
                                  gamma_m[:: max(1, len(gamma_m) // 3)], config.betas))  # fmt: skip
    columns = np.array(keys, dtype=np.float64).reshape(-1, 4).T
    return {"fan_in": columns[0].astype(np.int64), "rho": columns[1], "gamma": columns[2], "beta": columns[3]}


def best_trees(kappa: float, beta: np.ndarray, b: np.ndarray, alpha: np.ndarray, mu_star: np.ndarray, m: float,
               budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The best full b-ary tree of depth L >= 2 under each budget (vectorised `calibrate.candidates`, trees of
    fan-in b only, W unbounded): leaf tokens ``x_L = (B - tree_budget(0, b, L, m)) / b**L`` (the depth must
    leave ``x_L >= 1``), bias ``min(mu0(x_L) alpha**L, mu*)`` (no clip when alpha <= 1), the shallowest
    among equals. Inputs (K,) per combination and budgets (B,); returns ``(depth, leaf_tokens, bias)``
    of shape (K, B): depth int64 (0 where no tree fits or b is not one of `calibrate.FAN_INS`), the other
    two float64 (NaN there)."""
    from agentlab.synergy.calibrate import FAN_INS

    depths = np.arange(2, int(np.log(max(budgets.max(), 1.0)) / np.log(b.min())) + 3, dtype=np.int64)  # (D,)
    bb, dd = b[:, None, None], depths[None, None, :].astype(np.float64)
    leaves = bb.astype(np.float64) ** dd  # (K, 1, D)
    overhead = np.asarray(theory.tree_budget(0.0, bb, dd, m))  # (K, 1, D)
    x = (budgets[None, :, None] - overhead) / leaves  # (K, B, D)
    fits = (x >= 1) & np.isin(b, FAN_INS)[:, None, None]
    grown = np.asarray(theory.leaf_bias(np.where(fits, x, 1.0), kappa, beta[:, None, None])) * (
        alpha[:, None, None] ** dd
    )
    bias = np.where(alpha[:, None, None] > 1, np.minimum(grown, mu_star[:, None, None]), grown)
    bias = np.where(fits, bias, -np.inf)
    pick = np.argmax(bias, axis=-1)  # first maximum: the shallowest
    found = np.take_along_axis(fits, pick[..., None], -1)[..., 0]
    depth = np.where(found, depths[pick], 0)
    leaf = np.where(found, np.take_along_axis(x, pick[..., None], -1)[..., 0], np.nan)
    best = np.where(found, np.take_along_axis(bias, pick[..., None], -1)[..., 0], np.nan)
    return depth, leaf, best


def budget_table(config: SweepConfig):
    """Theory at equal budget (model): per (b, rho, gamma, beta) and budget B, the single agent's accuracy
    ``(1 + min(kappa B**beta, 1)) / 2``, the continuous tree at x* (``min(kappa x*^beta N**s, mu*)``,
    ``N = B / (x* + c0)``), the best discrete organisation (`best_trees`), x*, B*. One row per combination
    and budget (combination-major), all computed as (K, B) arrays."""
    import polars as pl

    m = config.budget_message_length
    keys = budget_keys(config)
    b, rho, gamma, beta = keys["fan_in"], keys["rho"], keys["gamma"], keys["beta"]
    budgets = np.asarray(config.budgets, dtype=np.float64)
    s = np.asarray(theory.organization_exponent(b, rho, gamma))
    x_star = np.asarray(theory.optimal_leaf_compute(b, m, beta, s))
    b_star = np.asarray(theory.budget_threshold(b, m, beta, s))
    mu_star = np.asarray(theory.fixed_point(b, rho, gamma))
    alpha = np.asarray(theory.alpha_rho(b, rho, gamma))
    single = np.asarray(theory.leaf_bias(budgets[None, :], config.kappa, beta[:, None]))  # (K, B)
    finite = np.isfinite(x_star)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # x* = inf rows are replaced below
        n = np.asarray(theory.leaves_for_budget(budgets[None, :], x_star[:, None], b[:, None], m))
        tree = np.minimum(config.kappa * x_star[:, None] ** beta[:, None] * n ** s[:, None], mu_star[:, None])
    tree = np.where(finite & (n >= 1), tree, single)
    depth, leaf, best = best_trees(config.kappa, beta, b, alpha, mu_star, m, budgets)
    found = (depth > 0).ravel()
    per_key = lambda values: np.repeat(values, budgets.size)  # (K,) -> (K * B,)
    return pl.DataFrame({
        "fan_in": per_key(b), "rho": per_key(rho), "gamma": per_key(gamma), "beta": per_key(beta),
        "budget_tokens": np.tile(budgets, b.size), "s": per_key(s), "x_star_tokens": per_key(x_star),
        "budget_threshold_tokens": per_key(b_star), "single_accuracy": ((1 + single) / 2).ravel(),
        "tree_accuracy": ((1 + tree) / 2).ravel(),
        "best_tree_depth": pl.Series(depth.ravel(), dtype=pl.Int64).set(pl.Series(~found), None),
        "best_tree_leaf_tokens": pl.Series(leaf.ravel(), dtype=pl.Float64).set(pl.Series(~found), None),
        "best_tree_accuracy": pl.Series((1 + best.ravel()) / 2, dtype=pl.Float64).set(pl.Series(~found), None),
    })  # fmt: skip


def summarise(table, config: SweepConfig, *, computed: int, skipped: int, wall: float) -> dict[str, Any]:
    """Flat summary: agreement of Monte Carlo with the recursion, and of the simulated phase with alpha."""
    deepest = table.filter(table["depth"] == max(config.depths))
    z = ((table["mu_mc"] - table["mu_theory"]) / table["mu_se"]).to_numpy()
    mu_l, mu0, se = (deepest[c].to_numpy() for c in ("mu_mc", "mu0", "mu_se"))
    decided = np.abs(mu_l - mu0) > 4 * se
    simulated_washout = mu_l < mu0
    theory_washout = deepest["alpha"].to_numpy() <= 1
    recursion_washout = deepest["mu_theory"].to_numpy() < mu0
    votes = float(table["vote_evaluations"].sum())
    compute_seconds = float(table.unique(["unit"])["unit_seconds"].sum())
    return {
        "cells": int(table["cell"].n_unique()),
        "rows": table.height,
        "units_computed": computed,
        "units_resumed": skipped,
        "trials_per_cell": int(table["trials"][0]),
        "max_depth": max(config.depths),
        "fraction_within_4_se": float(np.mean(np.abs(z) <= 4)),
        "max_abs_z": float(np.max(np.abs(z))),
        "phase_cells_decided": int(decided.sum()),
        "phase_agreement_alpha": float(np.mean(simulated_washout[decided] == theory_washout[decided]))
        if decided.any()
        else None,
        "phase_agreement_alpha_all_cells": float(np.mean(simulated_washout == theory_washout)),
        "phase_agreement_recursion": float(np.mean(simulated_washout[decided] == recursion_washout[decided]))
        if decided.any()
        else None,
        "vote_evaluations": votes,
        "wall_seconds": wall,
        "compute_seconds": compute_seconds,
        "vote_evaluations_per_second": votes / compute_seconds if compute_seconds > 0 else None,
    }
