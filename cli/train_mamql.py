"""`agentlab train mamql`: multi-agent inverse soft-Q learning (MAMQL) and its baselines from demonstrations.

The run driver is `agentlab.rl.mamql_training.train`; this module parses and checks the options, shows the progress
bar and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentlab.cli.common import (
    Config,
    EnvOption,
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
    fail,
    handle_errors,
    parse_int_list,
    print_json,
    run_with_progress,
)
from agentlab.rl import names


@handle_errors
def mamql(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="The kernel the demonstrations come from.")] = "gems",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="A dataset run directory (`agentlab data collect`). Optional with --tabular."),
    ] = None,
    env_option: EnvOption = None,
    expert_steps: Annotated[
        int | None, typer.Option("--expert-steps", help="Use the dataset's first N rows (expert transitions).")
    ] = None,
    algo: Annotated[
        choice("MAMQLAlgo", names.MAMQL_ALGOS),
        typer.Option(
            "--algo", help="mamql (marginal critics), iq-joint (IQ-Learn, joint-action critic) or bc (cloning)."
        ),
    ] = "mamql",
    tabular: Annotated[
        bool, typer.Option("--tabular", help="Exact tabular learners on the gems export (layout=tabular).")
    ] = False,
    mode: Annotated[
        choice("MAMQLMode", names.MAMQL_MODES),
        typer.Option("--mode", help="chi2 (the paper's phi) or exact (phi(x) = x: recovers the soft Q)."),
    ] = "chi2",
    updates: Annotated[
        int | None, typer.Option("--updates", help="Gradient updates per seed (default: tabular 5000, neural 2000).")
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds trained side by side (vmap).")] = 1,
    gamma: Annotated[
        float | None, typer.Option("--gamma", help="Discount (default: tabular the QRE's, else 0.99).")
    ] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="Boltzmann temperature lambda.")] = 1.0,
    offline: Annotated[
        bool, typer.Option("--offline", help="Neural: the policy term over expert states (no rollouts).")
    ] = False,
    hidden: Annotated[str, typer.Option("--hidden", help="Neural head widths (the authors': 1024,1024).")] = (
        "1024,1024"
    ),
    conv_channels: Annotated[
        str, typer.Option("--conv-channels", help="Neural conv torso channels for image observations.")
    ] = "64,64",
    conv_kernels: Annotated[
        str, typer.Option("--conv-kernels", help="Kernel size of each conv layer (the authors': 5,3).")
    ] = "5,3",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Expert transitions per update.")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", help="Episodes per evaluation.")] = 64,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Chunks (of 100 updates) between evaluations.")] = 5,
    seed: Seed = 0,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    tensorboard: Tensorboard = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Learn each agent's policy and reward from demonstrations (Haynam et al. 2025): a run directory with
    config.json, summary.json (mean_return with a 95% interval over seeds, expert_return, policy_kl, reward_epic,
    reward_pearson where the experts are known, updates_per_second), metrics.parquet and plots (return vs
    updates; tabular: recovered vs true reward and the gems reward heat map).

    Example: agentlab train mamql --env gems --data runs/gems-qre --tabular --mode exact --out runs/mamql-exact"""
    values = apply_config_file(ctx, config, {k: v for k, v in locals().items() if k != "ctx"})
    from agentlab.kernels.names import options_record, parse_env_options
    from agentlab.rl import mamql_training as driver

    run_config = driver.MAMQLRunConfig(
        env=values["env"],
        data=str(values["data"]) if values["data"] is not None else None,
        expert_steps=values["expert_steps"],
        algo=values["algo"],
        tabular=values["tabular"],
        mode=values["mode"],
        updates=values["updates"],
        seeds=values["seeds"],
        seed=values["seed"],
        gamma=values["gamma"],
        temperature=values["temperature"],
        online=not values["offline"],
        batch_size=values["batch_size"],
        lr=values["lr"],
        hidden=tuple(parse_int_list(values["hidden"], "--hidden", minimum=1)),
        conv_channels=tuple(parse_int_list(values["conv_channels"], "--conv-channels", minimum=1)),
        conv_kernels=tuple(parse_int_list(values["conv_kernels"], "--conv-kernels", minimum=1)),
        eval_every=values["eval_every"],
        eval_episodes=values["eval_episodes"],
        env_options=options_record(parse_env_options(values["env_option"])),
    ).validate()
    if resume and run_config.tabular:
        fail("--resume: a tabular run takes seconds and keeps no checkpoint; rerun it with --force")
    out = checked_out(out, f"train-mamql-{run_config.algo}", record=run_config.record(), resume=resume, force=force)
    summary = run_with_progress(
        lambda on_chunk: driver.train(
            run_config, out, resume=resume, force=force, on_chunk=on_chunk, tensorboard=values["tensorboard"]
        ),
        title=f"[bold]{run_config.algo}[/bold] {run_config.env}",
        unit="updates",
        total=run_config.total_updates,
        figure=("return", "return", ".2f"),
        quiet=quiet,
    )
    if not quiet:
        figures = [f"mean return {summary['mean_return']:.2f}"]
        if summary.get("expert_return") is not None:
            figures.append(f"experts {summary['expert_return']:.2f}")
        for key in ("policy_kl", "reward_epic", "reward_pearson"):
            if summary.get(key) is not None:
                figures.append(f"{key} {summary[key]:.4g}")
        typer.echo(f"{run_config.algo}: " + ", ".join(figures) + f"; wrote {out}", err=True)
    if json:
        print_json(summary)
