"""`agentlab sweep synergy`: map where trees of agents amplify or wash out a signal (theory vs Monte Carlo)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer

from agentlab.cli.common import (
    EnvOption,
    Force,
    Json,
    Out,
    Quiet,
    RayAddress,
    Resume,
    Seed,
    choice,
    counted_columns,
    default_out,
    fail,
    handle_errors,
    parse_grid,
    parse_int_list,
    progress_display,
)
from agentlab.cli.common import print_json as print_summary
from agentlab.executors import EXECUTORS
from agentlab.rl import names

app = typer.Typer(
    help="Parameter sweeps and studies into a run directory: `agentlab sweep synergy`, `agentlab sweep mamql`, "
    "`agentlab sweep pgd`.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
GRID = "a list (3,5,7) or a range start:stop:count"
ExecutorOption = Annotated[
    choice("Executor", EXECUTORS),
    typer.Option("--executor", help="Where the units run: local (in process) or ray (one Ray task per unit)."),
]


@app.command("synergy")
@handle_errors
def synergy(
    fan_in: Annotated[str, typer.Option("--fan-in", "-b", help=f"Fan-ins b (odd, >= 3): {GRID}.")] = "3,5,7,9",
    rho: Annotated[str, typer.Option("--rho", help=f"Shared-error correlations in [0, 1): {GRID}.")] = "0:0.9:19",
    gamma: Annotated[str, typer.Option("--gamma", help=f"Message fidelities in (0, 1]: {GRID}.")] = "0.5:1:11",
    message_length: Annotated[
        str | None,
        typer.Option(
            "--message-length",
            "-m",
            help=f"Instead of --gamma: message lengths (tokens), {GRID}; gamma(m) = 1 - exp(-m / m0).",
        ),
    ] = None,  # fmt: skip
    m0: Annotated[float, typer.Option("--m0", help="Scale of the fidelity curve gamma(m) (tokens).")] = 100.0,
    depth: Annotated[str, typer.Option("--depth", "-L", help=f"Tree depths (0 = one leaf): {GRID}.")] = "0:10:11",
    mu0: Annotated[str, typer.Option("--mu0", help=f"Leaf biases mu0 = 2 p - 1 in [-1, 1]: {GRID}.")] = "0.05",
    beta: Annotated[str, typer.Option("--beta", help=f"Leaf scaling exponents for the budget plots: {GRID}.")] = "0.15",
    kappa: Annotated[float, typer.Option("--kappa", help="Leaf bias scale: mu0(x) = kappa x^beta.")] = 0.02,
    budget: Annotated[str, typer.Option("--budget", help=f"Total budgets (tokens) for the budget plots: {GRID}.")] = (
        "1000:10000000:25"
    ),
    budget_message_length: Annotated[
        float, typer.Option("--budget-message-length", help="Message length m (tokens) in the budget accounting.")
    ] = 200.0,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Monte Carlo trials per cell.")] = 100_000,
    executor: ExecutorOption = "local",
    ray_address: RayAddress = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Theory and Monte Carlo side by side for every (fan-in, rho, gamma, mu0) cell and depth: metrics.parquet
    (one row per cell and depth: mu_mc +- mu_se beside the recursion mu_theory and the clipped predictor),
    budget.parquet (x*, B*, tree vs single agent at equal budget), summary.json (phase agreement, speed) and
    plots/ (phase diagram, accuracy vs depth, tree vs single agent, x* vs budget)."""
    from agentlab import executors, rundir
    from agentlab.synergy.sweep import SweepConfig, check_cells

    executor = executor.value
    executors.check_executor(executor, ray_address)
    config = SweepConfig(
        fan_ins=tuple(parse_grid(fan_in, "--fan-in", int)),
        rhos=tuple(parse_grid(rho, "--rho")),
        gammas=tuple(parse_grid(gamma, "--gamma")) if message_length is None else (),
        message_lengths=tuple(parse_grid(message_length, "--message-length")) if message_length is not None else None,
        m0=m0,
        depths=tuple(sorted(parse_grid(depth, "--depth", int))),
        mu0s=tuple(parse_grid(mu0, "--mu0")),
        betas=tuple(parse_grid(beta, "--beta")),
        kappa=kappa,
        budgets=tuple(parse_grid(budget, "--budget")),
        budget_message_length=budget_message_length,
        trials=trials,
        seed=seed,
    ).validate()  # every field through its Bound, the work and the memory: before anything is written
    record = orjson.loads(orjson.dumps(dataclasses.asdict(config)))  # as config.json stores it (lists)
    out = Path(out or default_out("sweep-synergy"))
    rundir.check_out(out, resume=resume, force=force)
    if resume:
        rundir.check_resume_config(out, record)
        check_cells(out, config)  # a truncated or corrupt unit file: one line naming it, nothing touched
    with (
        executors.session(executor, ray_address),  # a cluster it cannot join is refused before anything is written
        rundir.open_run(out, "sweep synergy", record, resume=resume, force=force, resumable=True) as work,
    ):
        summary = _run(config, work, executor=executor, ray_address=ray_address, quiet=quiet)
    if json:
        print_summary(summary)
    if not quiet:
        typer.echo(
            f"wrote {out}: {summary['cells']} cells x {len(config.depths)} depths, {summary['trials_per_cell']:,} "
            f"trials each; within 4 se of the recursion: {summary['fraction_within_4_se']:.1%}; phase agreement "
            f"with alpha: {summary['phase_agreement_alpha']}",
            err=True,
        )


def _run(config, out: Path, *, executor: str, ray_address: str | None, quiet: bool) -> dict:
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from agentlab import rundir
    from agentlab.synergy import plots
    from agentlab.synergy import sweep as work

    start = time.perf_counter()
    total = len(work.units(config))
    columns = (
        TextColumn("[bold]sweep synergy[/bold]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} units"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with progress_display(*columns, quiet=quiet) as progress:
        task = progress.add_task("units", total=total)
        computed, skipped = work.run_units(
            config,
            out,
            executor=executor,
            ray_address=ray_address,
            on_unit=lambda done: progress.update(task, completed=done),
        )
    table = work.collect(out, config)
    rundir.write_parquet(out / "metrics.parquet", table)
    budget = work.budget_table(config)
    rundir.write_parquet(out / "budget.parquet", budget)
    summary = work.summarise(table, config, computed=computed, skipped=skipped, wall=time.perf_counter() - start)
    rundir.write_json(out / "summary.json", summary)
    rundir.save_figure(out / "plots" / "phase_diagram.png", plots.phase_diagram(table))
    rundir.save_figure(out / "plots" / "accuracy_vs_depth.png", plots.accuracy_vs_depth(table))
    rundir.save_figure(out / "plots" / "tree_vs_single.png", plots.tree_vs_single(budget))
    rundir.save_figure(out / "plots" / "x_star_vs_budget.png", plots.x_star_vs_budget(budget))
    return summary


@app.command("mamql")
@handle_errors
def mamql(
    env: Annotated[str, typer.Option("--env", "-e", help="The kernel of the demonstrations.")] = "gems",
    env_option: EnvOption = None,
    expert: Annotated[
        str, typer.Option("--expert", help="The experts: a `data collect --policy` (qre, a train ppo RUN_DIR, ...).")
    ] = "qre",
    algos: Annotated[str, typer.Option("--algos", help="Comma-separated: mamql, iq-joint, bc.")] = "mamql,iq-joint,bc",
    expert_steps: Annotated[
        str, typer.Option("--expert-steps", help="Comma-separated expert-transition budgets.")
    ] = "1000,10000,20000",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per cell (each its own dataset).")] = 5,
    tabular: Annotated[bool, typer.Option("--tabular/--neural", help="Tabular (gems layout=tabular) or neural.")] = (
        True
    ),
    mode: Annotated[
        choice("MAMQLMode", names.MAMQL_MODES), typer.Option("--mode", help="chi2 or exact (phi(x) = x).")
    ] = "chi2",
    updates: Annotated[int | None, typer.Option("--updates", help="Updates per run (train mamql's default).")] = None,
    hidden: Annotated[str, typer.Option("--hidden", help="Neural head widths.")] = "1024,1024",
    conv_channels: Annotated[str, typer.Option("--conv-channels", help="Neural conv torso channels.")] = "64,64",
    conv_kernels: Annotated[str, typer.Option("--conv-kernels", help="Neural conv kernel sizes.")] = "5,3",
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", help="Neural: episodes per evaluation.")] = 64,
    executor: ExecutorOption = "local",
    ray_address: RayAddress = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """The MAMQL study: {algorithms} x {expert transitions} x seeds, one dataset per seed, one train mamql run
    per cell (runs/), resumable, local or Ray: metrics.parquet (a row per cell), summary.json (per algorithm and
    budget the mean over seeds with 95% intervals, and MAMQL's return over joint-critic IQ-Learn's) and
    plots/return_vs_expert_steps.png."""
    from agentlab import executors, rundir
    from agentlab.kernels.names import options_record, parse_env_options
    from agentlab.studies import mamql as study

    executor = executor.value
    executors.check_executor(executor, ray_address)
    config = study.StudyConfig(
        env=env,
        env_options=options_record(parse_env_options(env_option)),
        expert=expert,
        algos=tuple(a.strip() for a in algos.split(",") if a.strip()),
        expert_steps=tuple(parse_int_list(expert_steps, "--expert-steps", minimum=1)),
        seeds=seeds,
        seed=seed,
        tabular=tabular,
        mode=mode.value,
        updates=updates,
        hidden=tuple(parse_int_list(hidden, "--hidden", minimum=1)),
        conv_channels=tuple(parse_int_list(conv_channels, "--conv-channels", minimum=1)),
        conv_kernels=tuple(parse_int_list(conv_kernels, "--conv-kernels", minimum=1)),
        eval_episodes=eval_episodes,
    ).validate()
    record = orjson.loads(orjson.dumps(config.record()))
    out = Path(out or default_out("sweep-mamql"))
    rundir.check_out(out, resume=resume, force=force)
    if resume:
        rundir.check_resume_config(out, record)
    started = time.perf_counter()
    with (
        executors.session(executor, ray_address),
        rundir.open_run(out, "sweep mamql", record, resume=resume, force=force, resumable=True) as work,
    ):
        with progress_display(*counted_columns("[bold]sweep mamql[/bold]", "units"), quiet=quiet) as progress:
            data_task = progress.add_task("datasets", total=config.seeds)
            study.collect_data(config, work, on_seed=lambda done: progress.update(data_task, completed=done))
            task = progress.add_task("cells", total=len(study.units(config, work)))
            computed, skipped = study.run(
                config,
                work,
                executor=executor,
                ray_address=ray_address,
                on_unit=lambda done: progress.update(task, completed=done),
            )
        frame = study.table(config, work)
        rundir.write_parquet(work / "metrics.parquet", frame)
        summary = {**study.summarise(frame, config), "computed": computed, "skipped": skipped,
                   "wall_seconds": time.perf_counter() - started}  # fmt: skip
        rundir.write_json(work / "summary.json", summary)
        study.plot(frame, summary, work / "plots" / "return_vs_expert_steps.png")
    if json:
        print_summary(summary)
    if not quiet:
        ratios = ", ".join(f"{k}: {v:.2f}" for k, v in summary["mamql_over_iq_joint_return"].items() if v is not None)
        typer.echo(f"wrote {out}: {len(frame)} cells" + (f"; mamql / iq-joint return {ratios}" if ratios else ""),
                   err=True)  # fmt: skip


@app.command("pgd")
@handle_errors
def pgd(
    diffusion: Annotated[Path | None, typer.Option("--diffusion", help="A train pgd run (the denoiser).")] = None,
    target: Annotated[
        Path | None, typer.Option("--target", help="A train offline run on the same dataset (its first seed guides).")
    ] = None,
    guidance: Annotated[
        str, typer.Option("--guidance", help="Comma-separated guidance strengths c (0: unguided); empty: none.")
    ] = "0,0.5,1,2,4,8",
    horizons: Annotated[
        str, typer.Option("--horizons", help="Comma-separated world-model rollout lengths; empty: no world model.")
    ] = "1,2,4,8,16,31",
    windows: Annotated[int, typer.Option("--windows", help="Windows (and rollouts) sampled per point.")] = 256,
    sample_steps: Annotated[int, typer.Option("--sample-steps", help="Diffusion sampler steps.")] = 32,
    model_updates: Annotated[int, typer.Option("--model-updates", help="World-model training updates.")] = 10_000,
    executor: ExecutorOption = "local",
    ray_address: RayAddress = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """The PGD trade-off (Jackson et al. 2024, exact here): dynamics error of synthetic transitions against the
    kernel's true next state, against the target policy's log-likelihood of their actions, for policy-guided
    diffusion at each guidance strength and an autoregressive world model at each rollout horizon:
    tradeoff.parquet, summary.json (with the comparison at matched likelihood) and plots/tradeoff.png. Each
    guidance strength is one unit, the world model (all horizons) another (points/), resumable, local or Ray.

    Example: agentlab sweep pgd --diffusion runs/pgd-umaze --target runs/td3bc-umaze --out runs/tradeoff-umaze"""
    from agentlab import executors, rundir
    from agentlab.studies import pgd as study

    executor = executor.value
    executors.check_executor(executor, ray_address)
    config = study.TradeoffConfig(
        diffusion=str(diffusion) if diffusion is not None else "",
        target=str(target) if target is not None else "",
        guidance=tuple(parse_float_list(guidance, "--guidance")),
        horizons=tuple(parse_int_list(horizons, "--horizons", minimum=1)) if horizons.strip() else (),
        windows=windows,
        sample_steps=sample_steps,
        model_updates=model_updates,
        seed=seed,
    ).validate()
    out = Path(out or default_out("sweep-pgd"))
    rundir.check_out(out, resume=resume, force=force)
    if resume:
        rundir.check_resume_config(out, config.record())
        study.check_points(config, out)  # a truncated or corrupt unit file: one line naming it, nothing touched
    inputs = study.load_inputs(config)  # checked before anything is shown or written
    total = len(config.guidance) + len(config.horizons)
    with progress_display(*counted_columns("[bold]sweep pgd[/bold]", "points"), quiet=quiet) as progress:
        task = progress.add_task("points", total=total)
        summary = study.run(
            config,
            out,
            force=force,
            resume=resume,
            inputs=inputs,
            executor=executor,
            ray_address=ray_address,
            on_point=lambda done, _: progress.update(task, completed=done),
        )
    if json:
        print_summary(summary)
    if not quiet:
        for m in summary["matched"]:
            typer.echo(
                f"H={m['horizon']}: world model error {m['worldmodel_error']:.4g} at log-likelihood "
                f"{m['worldmodel_log_likelihood']:.3f}; PGD c={m['pgd_guidance']:g} {m['pgd_error']:.4g} at "
                f"{m['pgd_log_likelihood']:.3f}",
                err=True,
            )
        typer.echo(f"wrote {out}", err=True)


def parse_float_list(text: str, flag: str) -> list[float]:
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]`` (empty text: ``[]``); a value that is not a finite number -> one line."""
    import math

    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            fail(f"{flag}: {item!r} is not a number")
        if not math.isfinite(value):
            fail(f"{flag}: {item!r} is not a finite number")
        values.append(value)
    return values
