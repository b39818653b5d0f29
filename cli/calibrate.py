"""`agentlab calibrate synergy DATA` (fit beta, kappa, rho and gamma(m) to agent logs and recommend an organisation),
`agentlab calibrate confidence DATA` (calibration metrics and recalibration of agent confidence) and
`agentlab calibrate examples` (regenerate the shipped example data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from agentlab import limits
from agentlab.cli.common import Force, Json, Out, Quiet, Seed, default_out, fail, handle_errors, print_json
from agentlab.limits import Bound

app = typer.Typer(
    help="Fit models to agent logs: `agentlab calibrate synergy DATA`, `agentlab calibrate confidence DATA`; "
    "`agentlab calibrate examples` regenerates the shipped example data.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The numeric options of `calibrate synergy` and `calibrate confidence`.
BOUNDS = {
    "budget": Bound("--budget", float, low=0, low_open=True, high=1e15, unit="tokens"),
    "context_window": Bound("--context-window", float, low=0, low_open=True, high=1e9, unit="tokens"),
    "message_length": Bound("--message-length", float, low=0, low_open=True, high=1e9, unit="tokens"),
    "m0": Bound("--m0", float, low=0, low_open=True, high=1e9, unit="tokens"),
    "bootstrap": Bound("--bootstrap", int, low=10, high=100_000, unit="resamples"),
    "bins": Bound("--bins", int, low=1, high=10_000, unit="equal-width confidence bins"),
    "test_fraction": Bound("--test-fraction", float, low=0, high=1, low_open=True, high_open=True, unit="held out"),
    "seed": Bound("--seed", int, low=0, high=2**31 - 1),
}


@app.command("synergy")
@handle_errors
def synergy(
    data: Annotated[
        Path,
        typer.Argument(
            help="Parquet or CSV: item, agent, compute, correct [, message_length, relayed_correct]; "
            "'example:homogeneous' or 'example:agent_level' for the shipped examples."
        ),
    ],  # fmt: skip
    budget: Annotated[float, typer.Option("--budget", "-B", help="Total token budget to plan for.")] = 100_000.0,
    context_window: Annotated[
        float, typer.Option("--context-window", "-W", help="Context window W of an aggregator (tokens).")
    ] = 8_000.0,
    message_length: Annotated[
        float, typer.Option("--message-length", "-m", help="Message length m each agent sends (tokens).")
    ] = 100.0,
    m0: Annotated[
        float, typer.Option("--m0", help="gamma(m) = 1 - exp(-m / m0) scale when DATA has no relay columns.")
    ] = (100.0),
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the intervals.")] = 200,
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Fit beta and kappa (leaf bias = kappa x^beta), rho (and n_eff) and, with relay columns, gamma(m), all with
    95% bootstrap intervals; report alpha, s, the phase, x* and B* per fan-in, and the recommended organisation
    (single agent, star of N, or b-ary tree of depth L) under --budget and --context-window. Writes summary.json,
    metrics.parquet (per compute level), majority.parquet (majority-of-k: data vs theory) and plots/."""

    from agentlab import rundir
    from agentlab.synergy import calibrate
    from agentlab.synergy.examples import DATA

    options = {"budget": budget, "context_window": context_window, "message_length": message_length, "m0": m0,
               "bootstrap": bootstrap, "seed": seed}  # fmt: skip
    budget, context_window, message_length, m0, bootstrap, seed = (BOUNDS[k].check(v) for k, v in options.items())
    text = str(data)
    path = DATA / f"{text.split(':', 1)[1]}.parquet" if text.startswith("example:") else Path(data)
    if text.startswith("example:") and not path.exists():
        fail(f"DATA {text!r}: unknown example; valid: 'example:homogeneous' or 'example:agent_level'")
    frame = calibrate.load_table(path)
    # The bootstrap resamples every (item, compute) group at once: index, sums and counts, int64 / float64.
    limits.check_memory(
        8.0 * 8 * bootstrap * frame.height, f"--bootstrap {bootstrap} over {frame.height:,} rows", "lower --bootstrap"
    )
    out = Path(out or default_out("calibrate-synergy"))
    rundir.check_out(out, force=force)
    record = {"data": str(path), "budget": budget, "context_window": context_window, "message_length": message_length,
              "m0": m0, "bootstrap": bootstrap, "seed": seed}  # fmt: skip
    study = _calibrate_synergy(frame, bootstrap, seed, message_length, budget, context_window, m0)  # before writing
    summary, fit = study["summary"], study["fit"]
    with rundir.open_run(out, "calibrate synergy", record, force=force) as work:
        rundir.write_json(work / "summary.json", summary)
        rundir.write_parquet(work / "metrics.parquet", study["per_level"])
        rundir.write_parquet(work / "majority.parquet", study["majority"])
        rundir.write_json(work / "fit.json", dataclasses.asdict(fit))
        for name, figure in study["figures"].items():
            rundir.save_figure(work / "plots" / name, figure)
    if json:
        print_json(summary)
    if not quiet:
        _print_synergy(summary, fit, message_length, out)


def _calibrate_synergy(frame, bootstrap, seed, message_length, budget, context_window, m0) -> dict:
    """Fit and report (nothing written): ``{summary, fit, per_level, majority, figures}``. A fit that the data
    cannot support is bad input, refused before the run directory is opened."""
    import polars as pl

    from agentlab.synergy import calibrate, plots

    fit = calibrate.fit_synergy(frame, bootstrap=bootstrap, seed=seed)
    summary = calibrate.report(fit, m=message_length, budget=budget, window=context_window, m0_default=m0)
    check = calibrate.majority_check(frame, fit)
    worst = float(abs(check["z"]).max())
    summary["majority_check_max_abs_z"] = worst
    summary["homogeneous_theory_holds"] = bool(worst <= 4)
    summary["rows"] = frame.height
    gamma = summary["gamma"]
    rho = min(max(fit.rho.estimate, 0.0), 0.999)
    ranked = calibrate.candidates(fit.kappa.estimate, fit.beta.estimate, rho, gamma, m=message_length, budget=budget,
                                  window=context_window)  # fmt: skip
    return {
        "summary": summary,
        "fit": fit,
        "per_level": pl.DataFrame({"compute": fit.compute_levels, "leaf_bias": fit.leaf_bias, "items": fit.items}),
        "majority": pl.DataFrame({k: v for k, v in check.items()}),
        "figures": {
            "fit.png": plots.calibration_fit(fit),
            "majority_check.png": plots.majority_check(check),
            "recommendation.png": plots.recommendation(ranked),
        },
    }


def _print_synergy(summary: dict, fit, message_length: float, out: Path) -> None:
    gamma, worst = summary["gamma"], summary["majority_check_max_abs_z"]
    fit_line = (
        f"beta {fit.beta.estimate:.3f} [{fit.beta.low:.3f}, {fit.beta.high:.3f}], kappa {fit.kappa.estimate:.4f}, "
        f"rho {fit.rho.estimate:.3f} [{fit.rho.low:.3f}, {fit.rho.high:.3f}] (n_eff {fit.n_eff:.2f} of "
        f"{fit.n_agents}), gamma({message_length:g}) = {gamma:.3f} ({summary['gamma_source']})"
    )
    typer.echo(fit_line, err=True)
    typer.echo(
        f"alpha b=3: {summary['alpha_b3']:.3f} ({summary['phase_b3']}), s = {summary['s_b3']:.3f} vs beta; "
        f"recommend {summary['recommendation']} (accuracy {summary['recommended_accuracy']:.3f}, "
        f"{summary['recommended_leaf_compute_tokens']:,.0f} tokens per agent), runner-up {summary['runner_up']} "
        f"(margin {summary['margin_accuracy']:.3f})",
        err=True,
    )
    if not summary["homogeneous_theory_holds"]:
        typer.echo(
            f"warning: majority votes in the data deviate from the homogeneous theory by up to {worst:.1f} "
            "standard errors (item heterogeneity?): see plots/majority_check.png",
            err=True,
        )
    typer.echo(f"wrote {out}", err=True)


@app.command("confidence")
@handle_errors
def confidence(
    data: Annotated[
        Path,
        typer.Argument(
            help="Parquet or CSV, one row per trajectory: outcome (0/1) and confidence in [0, 1] (or feature "
            "columns, see --features); 'example:confidence' for the shipped over-confident example."
        ),
    ],  # fmt: skip
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Comma-separated numeric columns; a logistic model fitted on the train split "
            "maps them to a confidence (the confidence column is then ignored).",
        ),
    ] = None,  # fmt: skip
    bins: Annotated[int, typer.Option("--bins", help="Equal-width confidence bins of the ECE and the diagram.")] = 15,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Share of rows held out (seeded permutation) to evaluate on.")
    ] = 0.3,
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Calibration of agent confidence: ECE (sum over equal-width bins of (n_k / n) |accuracy_k -
    mean confidence_k|), Brier, AUROC (Mann-Whitney, ties count 1/2) and NLL, before and after temperature,
    Platt and isotonic recalibration fitted on a train split and scored on the held-out rows. Writes
    summary.json (held-out metrics, fitted parameters), metrics.parquet (method x split), reliability.parquet
    (per bin), plots/reliability.png and config.json."""
    from agentlab import rundir
    from agentlab.synergy import confidence as conf

    options = {"bins": bins, "test_fraction": test_fraction, "seed": seed}
    bins, test_fraction, seed = (BOUNDS[k].check(v) for k, v in options.items())
    names = tuple(n.strip() for n in (features or "").split(",") if n.strip())
    if features is not None and not names:
        fail("--features is empty: give comma-separated column names like 'a,b,c'")
    text = str(data)
    if text.startswith("example:"):
        if text != "example:confidence":
            fail(f"DATA {text!r}: unknown example; valid: 'example:confidence'")
        path = conf.EXAMPLE
    else:
        path = Path(data)
    table = conf.validate(conf.read_table(path), names, f"DATA {path}")
    out = Path(out or default_out("calibrate-confidence"))
    rundir.check_out(out, force=force)
    study = conf.recalibrate(table, test_fraction=test_fraction, seed=seed, bins=bins)
    record = {"data": str(path), "features": list(names), "bins": bins, "test_fraction": test_fraction, "seed": seed}
    with rundir.open_run(out, "calibrate confidence", record, force=force) as work:
        summary = {"rows": int(table.outcome.size), **conf.summary(study)}
        rundir.write_json(work / "summary.json", summary)
        rundir.write_parquet(work / "metrics.parquet", conf.metrics_frame(study, seed))
        rundir.write_parquet(work / "reliability.parquet", conf.reliability_frame(study))
        rundir.save_figure(work / "plots" / "reliability.png", conf.reliability_figure(study))
    if json:
        print_json(summary)
    if not quiet:
        typer.echo(conf.table_text(study), err=True)
        typer.echo(
            f"temperature {study.temperature:.3f}, platt a {study.platt_a:.3f} b {study.platt_b:.3f}, "
            f"isotonic {study.isotonic_blocks} blocks; best held-out ECE: {summary['best_method_by_ece']}",
            err=True,
        )
        typer.echo(f"wrote {out}", err=True)


@app.command("examples")
@handle_errors
def examples(
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Regenerate the example data sets shipped in synergy/data/ (homogeneous, agent_level and confidence_example,
    each a Parquet file with a JSON sidecar of its generator and parameters) into a run directory; summary.json and
    metrics.parquet say whether each equals the shipped file. Copy them into synergy/data/ to update the package."""
    import polars as pl

    from agentlab import rundir
    from agentlab.synergy import examples as ex

    out = Path(out or default_out("calibrate-examples"))
    rundir.check_out(out, force=force)
    with rundir.open_run(out, "calibrate examples", {"data": str(ex.DATA)}, force=force) as work:
        written = ex.regenerate(work)
        rows = [ex.compare_with_shipped(path) for path in written if path.suffix == ".parquet"]
        rundir.write_parquet(work / "metrics.parquet", pl.DataFrame(rows))
        summary = {
            "files": [row["file"] for row in rows],
            "rows": sum(row["rows"] for row in rows),
            "all_match_shipped": all(row["matches_shipped"] for row in rows),
            **{f"{Path(row['file']).stem}_matches_shipped": row["matches_shipped"] for row in rows},
        }
        rundir.write_json(work / "summary.json", summary)
    if json:
        print_json(summary)
    if not quiet:
        for row in rows:
            same = "equals" if row["matches_shipped"] else "DIFFERS from"
            typer.echo(f"{row['file']}: {row['rows']:,} rows, {same} the shipped file", err=True)
        typer.echo(f"wrote {out}", err=True)
