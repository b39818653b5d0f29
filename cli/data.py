"""`agentlab data collect`: demonstration datasets (``data.parquet``) for the imitation learners.

The driver (policies, chunks, resume, summary) is `agentlab.rl.collect.collect`; the schema and its checks are
`agentlab.rl.data`. This module parses the options, shows the progress bar and prints the summary.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentlab.cli.common import (
    EnvOption,
    Force,
    Json,
    Out,
    Quiet,
    Resume,
    Seed,
    checked_out,
    counted_columns,
    deferred_progress,
    handle_errors,
    print_json,
)

app = typer.Typer(
    help="Datasets of demonstrations: `agentlab data collect` (data.parquet, one row per environment step).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("collect")
@handle_errors
def collect(
    env: Annotated[str, typer.Option("--env", "-e", help="A kernel (see `agentlab envs`).")] = "gems",
    env_option: EnvOption = None,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="random | qre (the tabular gems equilibrium; --env-option layout=tabular) | a train ppo RUN_DIR | "
            "qtable:RUN_DIR (a train qlearn run's Q tables, Boltzmann at --temperature) | noisy:RUN_DIR,sigma=S "
            "(continuous actions: a train ppo run's mean action plus Gaussian noise) | planner[,sigma=S] (maze2d's "
            "shortest-path waypoint controller, as D4RL collected its maze2d data). Continuous actions are stored "
            "as executed (clipped to the action space).",
        ),
    ] = "random",
    episodes: Annotated[int | None, typer.Option("--episodes", help="Whole episodes to collect.")] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Rows (environment steps) to collect, instead of --episodes.")
    ] = None,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Boltzmann temperature of the qre and qtable policies.")
    ] = 1.0,
    gamma: Annotated[float, typer.Option("--gamma", help="Discount of the qre equilibrium.")] = 0.9,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Let a policy play a kernel and write every step as a row of data.parquet (episode, t, obs, action,
    reward, next_obs, terminated, truncated, schema_version), with config.json and summary.json (rows,
    episodes, per-agent mean return of the complete episodes, the policy's facts such as the QRE residual).

    Example: agentlab data collect --env gems --env-option layout=tabular,size=5 --policy qre --steps 20000
    --out runs/gems-qre

    Example (continuous): agentlab data collect --env maze2d --env-option layout=umaze --policy planner
    --steps 100000 --out runs/maze-umaze"""
    from agentlab.kernels.names import options_record, parse_env_options
    from agentlab.rl import collect as driver

    config = driver.CollectConfig(
        env=env,
        env_options=options_record(parse_env_options(env_option)),
        policy=policy,
        episodes=episodes,
        steps=steps,
        seed=seed,
        temperature=temperature,
        gamma=gamma,
    ).validate()
    out = checked_out(out, f"data-{config.env}", record=config.record(), resume=resume, force=force)
    columns = counted_columns(f"[bold]collect[/bold] {config.env}", "{task.fields[unit]}")
    with deferred_progress(*columns, quiet=quiet) as progress:
        task = progress.add_task("collect", total=config.episodes or config.steps, unit="")

        def on_chunk(info: dict) -> None:
            progress.start()
            progress.update(task, completed=info["rows"], unit=info["unit"])

        summary = driver.collect(config, out, resume=resume, force=force, on_chunk=on_chunk)
    if not quiet:
        returns = ", ".join(f"{r:.2f}" for r in summary["agent_returns"])
        typer.echo(
            f"{summary['rows']:,} rows in {summary['episodes']:,} episodes; mean return per agent {returns}; "
            f"wrote {out}",
            err=True,
        )
    if json:
        print_json(summary)
