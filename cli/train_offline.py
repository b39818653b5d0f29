"""`agentlab train offline`: TD3+BC or IQL on a continuous-action dataset, alone or with synthetic experience
(unguided diffusion, policy-guided diffusion, or world-model rollouts).

The run driver is `agentlab.rl.offline_training.train`; this module parses and checks the options, shows the
progress bar and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import (
    Config,
    Force,
    Json,
    Out,
    Quiet,
    Resume,
    Seed,
    Tensorboard,
    apply_config_file,
    checked_out,
    choice,
    handle_errors,
    parse_int_list,
    print_json,
    run_with_progress,
)
from agentlab.rl import names


@handle_errors
def offline(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option("--data", help="A dataset run directory (`agentlab data collect`).")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="The dataset's kernel (checked against it; default: the data's).")
    ] = None,
    algo: Annotated[
        choice("OfflineAlgo", names.OFFLINE_ALGOS),
        typer.Option("--algo", help="td3bc (Fujimoto & Gu 2021) or iql (Kostrikov et al. 2021)."),
    ] = "td3bc",
    synthetic: Annotated[
        choice("Synthetic", names.SYNTHETIC),
        typer.Option(
            "--synthetic",
            help="none (real data only) | unguided (diffused windows) | pgd (guided by the current agent) | "
            "worldmodel (ensemble rollouts under the current agent).",
        ),
    ] = "none",
    diffusion: Annotated[
        Path | None, typer.Option("--diffusion", help="A train pgd run (for --synthetic unguided or pgd).")
    ] = None,
    guidance: Annotated[
        float | None, typer.Option("--guidance", help="Guidance strength c (default: the diffusion run's).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds trained side by side (vmap).")] = 3,
    updates: Annotated[int, typer.Option("--updates", help="Agent updates per seed.")] = 100_000,
    regenerations: Annotated[
        int, typer.Option("--regenerations", help="Times the synthetic buffer is rebuilt with the current agent.")
    ] = 4,
    synthetic_size: Annotated[
        int, typer.Option("--synthetic-size", help="Synthetic transitions per buffer and seed.")
    ] = 50_000,
    sample_steps: Annotated[int, typer.Option("--sample-steps", help="Diffusion sampler steps.")] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Transitions per update.")] = 256,
    real_per_batch: Annotated[
        int, typer.Option("--real-per-batch", help="Real transitions per batch with synthetic data (the paper: 16).")
    ] = 16,
    horizon: Annotated[int, typer.Option("--horizon", help="World-model rollout length.")] = 5,
    hidden: Annotated[str, typer.Option("--hidden", help="The agents' MLP widths (published: 256,256).")] = "256,256",
    model_updates: Annotated[int, typer.Option("--model-updates", help="World-model training updates.")] = 10_000,
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", help="Evaluation episodes per seed.")] = 10,
    seed: Seed = 0,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    tensorboard: Tensorboard = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train an offline agent on a dataset, optionally mixed with synthetic experience (16 real + 240 synthetic
    per batch): a run directory with config.json, metrics.parquet, plots/return_curve.png and summary.json
    (mean_return with a 95% interval over seeds, dataset_return, dynamics_error / invalid_rate /
    target_log_likelihood of the last synthetic buffer, updates_per_second).

    Example: agentlab train offline --algo td3bc --data runs/maze-umaze --synthetic pgd --diffusion runs/pgd-umaze
    --seeds 3 --out runs/td3bc-pgd"""
    values = apply_config_file(ctx, config, {k: v for k, v in locals().items() if k != "ctx"})
    from agentlab.rl import offline_training as driver

    run_config = driver.OfflineRunConfig(
        data=str(values["data"]) if values["data"] is not None else "",
        env=values["env"],
        algo=values["algo"],
        synthetic=values["synthetic"],
        diffusion=str(values["diffusion"]) if values["diffusion"] is not None else None,
        guidance=values["guidance"],
        seeds=values["seeds"],
        seed=values["seed"],
        updates=values["updates"],
        regenerations=values["regenerations"],
        synthetic_size=values["synthetic_size"],
        sample_steps=values["sample_steps"],
        batch_size=values["batch_size"],
        real_per_batch=values["real_per_batch"],
        horizon=values["horizon"],
        hidden=tuple(parse_int_list(values["hidden"], "--hidden", minimum=1)),
        model_updates=values["model_updates"],
        eval_episodes=values["eval_episodes"],
    ).validate()
    name = f"train-offline-{run_config.algo}-{run_config.synthetic}"
    out = checked_out(out, name, record=run_config.record(), resume=resume, force=force)
    summary = run_with_progress(
        lambda on_chunk: driver.train(
            run_config, out, resume=resume, force=force, on_chunk=on_chunk, tensorboard=values["tensorboard"]
        ),
        title=f"[bold]{run_config.algo}[/bold] + {run_config.synthetic}",
        unit="updates",
        total=run_config.updates,
        figure=("return", "return", ".2f"),
        quiet=quiet,
    )
    if not quiet:
        low, high = summary["mean_return_ci95"]
        figures = [f"mean return {summary['mean_return']:.2f} (95% CI {low:.2f} to {high:.2f})"]
        if summary.get("dataset_return") is not None:
            figures.append(f"dataset {summary['dataset_return']:.2f}")
        if summary.get("dynamics_error") is not None:
            figures.append(f"synthetic dynamics error {summary['dynamics_error']:.4g}")
        typer.echo(f"{run_config.algo} + {run_config.synthetic}: " + ", ".join(figures) + f"; wrote {out}", err=True)
    if json:
        print_json(summary)
