"""Figures of `agentlab sweep synergy` and `agentlab calibrate synergy` (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np

from agentlab.synergy import theory


def _pyplot():
    from agentlab.rundir import pyplot

    return pyplot()


def phase_diagram(table):
    """Per fan-in: simulated ``mu_L / mu0`` at the deepest level over (gamma, rho), washout (< 1) in blue,
    with the theory's alpha = 1 boundary ``gamma_c(rho)``."""
    plt = _pyplot()
    deepest = table.filter(table["depth"] == table["depth"].max())
    deepest = deepest.filter(deepest["mu0"] == deepest["mu0"][0])
    fan_ins = sorted(deepest["fan_in"].unique().to_list())
    fig, axes = plt.subplots(1, len(fan_ins), figsize=(3.6 * len(fan_ins), 3.4), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], fan_ins):
        part = deepest.filter(deepest["fan_in"] == b)
        rhos = np.unique(part["rho"].to_numpy())
        gammas = np.unique(part["gamma"].to_numpy())
        grid = np.full((rhos.size, gammas.size), np.nan)
        for row in part.iter_rows(named=True):
            grid[np.searchsorted(rhos, row["rho"]), np.searchsorted(gammas, row["gamma"])] = row["mu_mc"] / row["mu0"]
        image = ax.pcolormesh(gammas, rhos, np.log10(np.clip(grid, 1e-2, None)), cmap="RdBu_r", vmin=-2, vmax=2,
                              shading="nearest")  # fmt: skip
        fine = np.linspace(rhos.min(), min(rhos.max(), 0.999), 200)
        ax.plot(np.asarray(theory.critical_fidelity(b, fine)), fine, "k-", lw=1.5, label="alpha = 1 (theory)")
        ax.set_xlim(gammas.min(), gammas.max())
        ax.set_title(f"b = {b}, depth {int(part['depth'][0])}")
        ax.set_xlabel("gamma (message fidelity)")
    axes[0][0].set_ylabel("rho (shared-error correlation)")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), label="log10(mu_L / mu0), simulated")
    return fig


def accuracy_vs_depth(table, max_lines: int = 6):
    """Simulated accuracy (error bars: 2 se) vs depth with the exact recursion and the clipped predictor."""
    plt = _pyplot()
    cells = table["cell"].unique(maintain_order=True).to_list()
    pick = cells[:: max(1, len(cells) // max_lines)][:max_lines]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, cell in enumerate(pick):
        part = table.filter(table["cell"] == cell).sort("depth")
        color = f"C{i}"
        d = part["depth"].to_numpy()
        label = f"b={part['fan_in'][0]} rho={part['rho'][0]:.2f} gamma={part['gamma'][0]:.2f}"
        ax.errorbar(d, part["accuracy_mc"].to_numpy(), yerr=part["mu_se"].to_numpy(), fmt="o", ms=3, color=color,
                    label=label)  # fmt: skip
        ax.plot(d, (1 + part["mu_theory"].to_numpy()) / 2, "-", color=color, lw=1)
        ax.plot(d, (1 + part["mu_clipped"].to_numpy()) / 2, ":", color=color, lw=1)
    ax.set_xlabel("depth L")
    ax.set_ylabel("root accuracy")
    ax.set_title("Monte Carlo (dots), recursion (solid), clipped predictor (dotted)")
    ax.legend(fontsize=7)
    return fig


def tree_vs_single(budget, max_lines: int = 4):
    """Accuracy vs budget: one agent with the whole budget vs the tree at x* (model), with B* marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    keys = budget.select(["fan_in", "rho", "gamma", "beta"]).unique(maintain_order=True)
    synergy = keys.join(budget.filter(budget["s"] > budget["beta"]).select(["fan_in", "rho", "gamma", "beta"]).unique(),
                        on=["fan_in", "rho", "gamma", "beta"])  # fmt: skip
    keys = (synergy if synergy.height else keys).head(max_lines)
    first = True
    for i, key in enumerate(keys.iter_rows(named=True)):
        part = budget.filter(*(budget[k] == v for k, v in key.items())).sort("budget_tokens")
        x = part["budget_tokens"].to_numpy()
        if first:
            ax.plot(x, part["single_accuracy"].to_numpy(), "k-", lw=2, label=f"single agent (beta={key['beta']})")
            first = False
        label = f"tree b={key['fan_in']} rho={key['rho']:.2f} gamma={key['gamma']:.2f}, s={part['s'][0]:.3f}"
        ax.plot(x, part["tree_accuracy"].to_numpy(), "-", color=f"C{i}", label=label)
        threshold = part["budget_threshold_tokens"][0]
        if np.isfinite(threshold) and x.min() <= threshold <= x.max():
            ax.axvline(threshold, color=f"C{i}", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("total budget B (tokens)")
    ax.set_ylabel("predicted accuracy")
    ax.set_title("Equal budget: tree at x* vs one agent (dashed: B*)")
    ax.legend(fontsize=7)
    return fig


def x_star_vs_budget(budget, max_lines: int = 4):
    """x* (continuous, flat in B) and the best discrete tree's tokens per leaf vs budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    finite = budget.filter(budget["x_star_tokens"].is_finite())
    keys = finite.select(["fan_in", "rho", "gamma", "beta"]).unique(maintain_order=True).head(max_lines)
    for i, key in enumerate(keys.iter_rows(named=True)):
        part = finite.filter(*(finite[k] == v for k, v in key.items())).sort("budget_tokens")
        x = part["budget_tokens"].to_numpy()
        label = f"b={key['fan_in']} rho={key['rho']:.2f} gamma={key['gamma']:.2f}"
        ax.plot(x, part["x_star_tokens"].to_numpy(), "--", color=f"C{i}", label=f"x* {label}")
        leaf = part["best_tree_leaf_tokens"].to_numpy().astype(float)
        ax.plot(x, leaf, "o-", ms=3, color=f"C{i}", lw=0.8, label="best discrete tree")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("total budget B (tokens)")
    ax.set_ylabel("tokens per leaf")
    ax.set_title("Optimal per-leaf compute")
    ax.legend(fontsize=7)
    return fig


def calibration_fit(fit):
    """Leaf bias vs compute with the fitted power law; fidelity vs message length with the fitted curve."""
    plt = _pyplot()
    panels = 2 if fit.m0 is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    x = np.asarray(fit.compute_levels)
    ax.plot(x, fit.leaf_bias, "o", label="data: 2 mean(correct) - 1")
    grid = np.geomspace(x.min(), x.max(), 100)
    ax.plot(grid, fit.kappa.estimate * grid**fit.beta.estimate, "-",
            label=f"kappa x^beta: beta={fit.beta.estimate:.3f} [{fit.beta.low:.3f}, {fit.beta.high:.3f}]")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("compute x (tokens)")
    ax.set_ylabel("leaf bias mu0")
    ax.legend(fontsize=7)
    if fit.m0 is not None:
        ax = axes[0][1]
        m = np.asarray(fit.gamma_lengths)
        ax.plot(m, fit.gamma_values, "o", label="data: 2 P[relayed == sent] - 1")
        grid = np.linspace(0, m.max() * 1.1, 100)
        ax.plot(grid, np.asarray(theory.fidelity(grid, fit.m0.estimate)), "-",
                label=f"1 - exp(-m/m0): m0={fit.m0.estimate:.1f} [{fit.m0.low:.1f}, {fit.m0.high:.1f}]")  # fmt: skip
        ax.set_xlabel("message length m (tokens)")
        ax.set_ylabel("fidelity gamma(m)")
        ax.legend(fontsize=7)
    return fig


def majority_check(check):
    """Observed majority-of-k accuracy (2 se bars) vs the homogeneous one-level prediction."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.errorbar(check["k"], check["observed"], yerr=2 * check["standard_error"], fmt="o-", label="data")
    ax.plot(check["k"], check["predicted"], "s--", label="homogeneous theory (fitted mu, rho)")
    ax.set_xlabel("votes k (majority)")
    ax.set_ylabel("accuracy")
    ax.set_title("Where the homogeneous theory holds")
    ax.legend(fontsize=8)
    return fig


def recommendation(ranked, top: int = 12):
    """Predicted accuracy of the best organisations that fit the budget and window."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * min(top, len(ranked)) + 1.2))
    shown = ranked[:top][::-1]
    ax.barh([o.label for o in shown], [o.accuracy for o in shown], color=["C1"] * (len(shown) - 1) + ["C2"])
    ax.set_xlabel("predicted accuracy (clipped predictor)")
    lo = min(o.accuracy for o in shown)
    ax.set_xlim(max(0.0, lo - 0.05), 1.0)
    return fig
