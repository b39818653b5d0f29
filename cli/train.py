"""`agentlab train ppo`: train a policy on any kernel into a run directory (one sub-command per learner)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from agentlab.cli.common import (
    Config,
    EnvOption,
    Force,
    Json,
    Out,
    Quiet,
    RayAddress,
    Resume,
    Seed,
    Stochasticity,
    choice,
    config_value,
    default_out,
    deferred_progress,
    fail,
    handle_errors,
    load_toml,
    print_json,
)
from agentlab.errors import choices
from agentlab.executors import EXECUTORS

app = typer.Typer(
    help="Train a learner into a run directory: `agentlab train ppo` (any kernel).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
FLAG_FIELDS = {
    "env": "env",
    "env_option": "env_options",
    "stochasticity": "stochasticity",
    "steps": "total_steps",
    "seeds": "seeds",
    "seed": "seed",
    "devices": "devices",
}


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    """A TOML value for a config field, checked against the field's default's type."""
    if key == "hidden":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            fail(f"{source}: hidden must be a list of layer widths, e.g. [64, 64], got {value!r}")
        return tuple(value)
    if key == "env_options":
        from agentlab.kernels.names import options_record

        if not isinstance(value, dict):
            fail(f"{source}: env_options must be a table of kernel options, e.g. env_options = {{size = 5}}")
        return options_record(value)
    if key == "max_episode_steps":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            fail(f"{source}: max_episode_steps must be an integer, got {type(value).__name__} {value!r}")
        return value
    return config_value(key, value, default, source)


def resolve_config(ctx: typer.Context, flags: dict[str, Any], config_file: Path | None, base=None):
    """PPOConfig from `base` (defaults, or a run's recorded config when resuming), then the TOML file,
    then the flags given on the command line (default flag values only apply without a base)."""
    from agentlab.kernels.names import options_record, parse_env_options
    from agentlab.rl.ppo import RESERVED_OPTIONS, PPOConfig

    values = (
        dataclasses.asdict(base) if base is not None else {f.name: f.default for f in dataclasses.fields(PPOConfig)}
    )
    values["hidden"] = tuple(values["hidden"])
    if config_file is not None:
        source = f"--config {config_file}"
        data = load_toml(config_file)
        valid = sorted(set(values) | set(FLAG_FIELDS))
        for key, value in data.items():
            field = FLAG_FIELDS.get(key, key)
            if field not in values:
                fail(f"{source}: unknown key {key!r}: valid keys are {choices(valid)}")
            values[field] = _check_type(field, value, values[field], source)
    for flag, field in FLAG_FIELDS.items():
        source = ctx.get_parameter_source(flag)
        given = source is not None and source.name == "COMMANDLINE"
        if given or (base is None and config_file is None):
            values[field] = flags[flag]
    if isinstance(values["env_options"], list):  # --env-option texts
        values["env_options"] = options_record(parse_env_options(values["env_options"], RESERVED_OPTIONS))
    return PPOConfig(**values).validate()


@app.command("ppo")
@handle_errors
def ppo(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", "-e", help="A kernel (see `agentlab envs`).")] = "breakout",
    env_option: EnvOption = None,
    stochasticity: Stochasticity = "plain",
    steps: Annotated[int, typer.Option("--steps", help="Environment steps per seed.")] = 1_000_000,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Seeds trained side by side in one call (vmap), or as Ray tasks.")
    ] = 1,
    seed: Seed = 0,
    devices: Annotated[int, typer.Option("--devices", help="Devices the environments are split over (shard_map).")] = 1,
    config: Config = None,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help="Also write the metrics as TensorBoard scalars under RUN/tensorboard/ (one folder per seed); "
            "needs the tensorboard extra.",
        ),
    ] = False,
    executor: Annotated[
        choice("Executor", EXECUTORS) | None,
        typer.Option(
            "--executor",
            help="local: the seeds vmapped in this process; ray: one Ray task per seed, each into RUN/seeds/seed-K/, "
            "merged into RUN when all are done (--resume continues the unfinished seeds). Default: local, or what "
            "the resumed run recorded.",
        ),
    ] = None,
    ray_address: RayAddress = None,
) -> None:
    """Train a policy (PPO) on a kernel: a run directory with config.json, metrics.parquet (one row per seed
    and update), summary.json, plots/learning_curve.png and checkpoints/ (npz, no pickle). --config takes
    a TOML file with any PPO field (num_envs, num_steps, lr, update_epochs, hidden = [64, 64], ...)."""
    from agentlab import executors, rundir
    from agentlab.rl import training

    executor = executor.value if executor is not None else None
    if executor is not None:  # else the resumed run's recorded executor, checked by training.train
        executors.check_executor(executor, ray_address)
    if tensorboard:
        from agentlab import tensorboard as agentlab_tensorboard

        agentlab_tensorboard.require()
    flags = {
        "env": env,
        "env_option": list(env_option or []),
        "stochasticity": stochasticity,
        "steps": steps,
        "seeds": seeds,
        "seed": seed,
        "devices": devices,
    }
    base = None
    if resume:
        if out is None:
            fail("--resume needs --out: the run directory to continue")
        rundir.check_out(out, resume=True)
        base = training.config_from_record(rundir.load_record(out, "train ppo")["config"])
    ppo_config = resolve_config(ctx, flags, config, base)
    out = out or default_out(f"train-{ppo_config.env.replace(':', '-')}")
    rundir.check_out(out, resume=resume, force=force)  # before the progress bar: errors come first

    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]ppo[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[rate]:,.0f} steps/s"),
        TextColumn("return {task.fields[ret]:.2f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with deferred_progress(*columns, quiet=quiet) as progress:
        task = progress.add_task(
            ppo_config.env, total=ppo_config.num_updates * ppo_config.batch_size, rate=0.0, ret=float("nan")
        )

        def on_chunk(info: dict) -> None:
            progress.start()  # idempotent; the first call comes once the run is loaded and checked
            progress.update(
                task,
                completed=info["step"],
                total=info["total_steps"],
                rate=info["steps_per_second"],
                ret=info["episode_return"],
            )

        summary = training.train(
            ppo_config,
            Path(out),
            resume=resume,
            force=force,
            on_chunk=on_chunk,
            tensorboard=tensorboard,
            executor=executor,
            ray_address=ray_address,
        )
    if json:
        print_json(summary)
    if not quiet:
        typer.echo(
            f"wrote {out}: mean return {summary['mean_return']} over {summary['seeds']} seed(s), "
            f"{summary['steps_per_second']:,.0f} steps/s per seed, compile {summary['compile_seconds']:.1f} s",
            err=True,
        )
