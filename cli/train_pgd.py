"""`agentlab train pgd`: train the trajectory denoiser of policy-guided diffusion on a continuous-action dataset.

The run driver is `agentlab.rl.pgd_training.train`; this module parses and checks the options, shows the progress
bar and prints the summary.
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
    handle_errors,
    parse_int_list,
    print_json,
    run_with_progress,
)


@handle_errors
def pgd(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option("--data", help="A dataset run directory (`agentlab data collect`, pendulum/maze2d).")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="The dataset's kernel (checked against it; default: the data's).")
    ] = None,
    window: Annotated[int, typer.Option("--window", help="Rows per diffused window (a multiple of 4).")] = 32,
    stride: Annotated[int, typer.Option("--stride", help="Rows between the starts of training windows.")] = 8,
    updates: Annotated[int, typer.Option("--updates", help="Denoiser (EDM) updates.")] = 10_000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per update.")] = 256,
    channels: Annotated[
        str, typer.Option("--channels", help="U-Net channels per level (the window halves per extra level).")
    ] = "32,64,128",
    lr: Annotated[float, typer.Option("--lr", help="Adam peak learning rate (warm-up, then cosine decay).")] = 2e-3,
    sample_steps: Annotated[
        int, typer.Option("--sample-steps", help="Stochastic Heun steps when sampling (the paper: 256).")
    ] = 32,
    guidance: Annotated[
        float,
        typer.Option(
            "--guidance",
            help="Guidance strength c >= 0 (0: unguided): used for the --target measures and as train offline's "
            "default.",
        ),
    ] = 1.0,
    target: Annotated[
        Path | None,
        typer.Option("--target", help="A train offline run whose first seed's policy guides the measured samples."),
    ] = None,
    eval_windows: Annotated[
        int, typer.Option("--eval-windows", help="Windows sampled at the end to measure dynamics error.")
    ] = 256,
    seed: Seed = 0,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    tensorboard: Tensorboard = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Train an EDM trajectory denoiser (a 1-D temporal U-Net over windows of [s, arctanh a, r, done]) on a
    dataset: a run directory with config.json, model.npz (what `train offline --diffusion RUN` loads),
    metrics.parquet, plots/loss.png and summary.json (dynamics_error of sampled windows against the kernel's true
    next state, per step too; invalid_rate; target_log_likelihood with --target; updates_per_second).

    Example: agentlab train pgd --data runs/maze-umaze --updates 5000 --out runs/pgd-umaze"""
    values = apply_config_file(ctx, config, {k: v for k, v in locals().items() if k != "ctx"})
    from agentlab.rl import pgd_training as driver

    run_config = driver.PGDRunConfig(
        data=str(values["data"]) if values["data"] is not None else "",
        env=values["env"],
        window=values["window"],
        stride=values["stride"],
        updates=values["updates"],
        batch_size=values["batch_size"],
        channels=tuple(parse_int_list(values["channels"], "--channels", minimum=1)),
        lr=values["lr"],
        sample_steps=values["sample_steps"],
        guidance=values["guidance"],
        target=str(values["target"]) if values["target"] is not None else None,
        eval_windows=values["eval_windows"],
        seed=values["seed"],
    ).validate()
    out = checked_out(out, "train-pgd", record=run_config.record(), resume=resume, force=force)
    summary = run_with_progress(
        lambda on_chunk: driver.train(
            run_config, out, resume=resume, force=force, on_chunk=on_chunk, tensorboard=values["tensorboard"]
        ),
        title="[bold]pgd[/bold] denoiser",
        unit="updates",
        total=run_config.updates,
        figure=("loss", "loss", ".4f"),
        quiet=quiet,
    )
    if not quiet:
        figures = [f"final loss {summary['final_loss']:.4f}"]
        if summary.get("dynamics_error") is not None:
            figures.append(f"dynamics error {summary['dynamics_error']:.4g}")
        figures.append(f"invalid {summary['invalid_rate']:.1%}")
        if summary.get("target_log_likelihood") is not None:
            figures.append(f"target log-likelihood {summary['target_log_likelihood']:.3f}")
        typer.echo("pgd: " + ", ".join(figures) + f"; wrote {out}", err=True)
    if json:
        print_json(summary)
