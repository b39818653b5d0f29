"""`agentlab bench kernels`: kernel throughput over batch sizes, optionally beside gymnax (the other `agentlab bench`
sub-commands are in cli/bench_studies.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from agentlab import limits
from agentlab.cli.common import (
    Config,
    Force,
    Json,
    Out,
    Quiet,
    Resume,
    Seed,
    Stochasticity,
    apply_config_file,
    choice,
    default_out,
    fail,
    handle_errors,
    parse_int_list,
    parse_names,
    print_json,
    progress_display,
)
from agentlab.limits import Bound

app = typer.Typer(
    help="Benchmarks and studies (results and commands in bench/README.md): kernels (kernel throughput), ppo "
    "(PPO beside PureJaxRL), grid and grid-study (grid-curtailment), markets (market-crash), lemons (the lemon-market "
    "study), synergy (Monte Carlo throughput), report (tables of a kernels run).",
    no_args_is_help=True,
)

AUTO_RESET = ("on", "off", "both")
AUTO_RESET_MODES = {"on": [True], "off": [False], "both": [True, False]}
# The numeric options (flags or --config keys); batch sizes are checked one by one.
BOUNDS = {
    "steps": Bound("--steps", int, low=1, high=limits.MAX_INDEX, unit="environment steps per lane per timed call"),
    "repeats": Bound("--repeats", int, low=1, high=10_000, unit="timed calls per measurement"),
    "batch_sizes": Bound("--batch-sizes", int, low=1, high=limits.MAX_INDEX, unit="parallel environments"),
    "seed": Bound("--seed", int, low=0, high=2**31 - 1),
}


def bench_bytes(names: list[str], stochasticity: str, batch_size: int, steps: int, at_once: int) -> float:
    """Estimated peak memory of one kernel's measurements, which are compiled and held together: per lane the
    observation and state of the largest kernel (shapes from `jax.eval_shape`, nothing allocated) about 4 times
    over (carry, the step's new carry, temporaries), times the measurements held at once; plus the `steps` keys
    each timed call splits."""
    import math

    import jax

    from agentlab.kernels import make

    lane = 0
    for name in names:
        env, params = make(name, stochasticity=stochasticity)
        shapes = jax.eval_shape(env.reset, jax.random.key(0), params)
        lane = max(lane, sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes)))
    return float(at_once) * batch_size * (4 * lane + 64) + 16.0 * steps


@app.command("kernels")
@handle_errors
def kernels(
    ctx: typer.Context,
    envs: Annotated[str, typer.Option("--envs", help="Kernels to measure: 'all' or a comma-separated list.")] = "all",
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated numbers of parallel environments.")
    ] = "1,64,1024",
    steps: Annotated[int, typer.Option("--steps", help="Environment steps per lane per timed call.")] = 128,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls per measurement (median reported).")] = 3,
    stochasticity: Stochasticity = "plain",
    profiles: Annotated[
        bool,
        typer.Option("--profiles", help="Also measure one profile of each taxonomy kind at the largest batch size."),
    ] = False,
    auto_reset: Annotated[
        choice("AutoResetMode", AUTO_RESET),
        typer.Option("--auto-reset", help="on, off, or both (measures what auto-reset costs)."),
    ] = "on",
    vs: Annotated[
        choice("Peer", ("gymnax",)) | None, typer.Option("--vs", help="Measure a peer side by side: gymnax.")
    ] = None,
    devices: Annotated[
        int, typer.Option("--devices", help="Devices each batch is split over (shard_map); divides every batch size.")
    ] = 1,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
    config: Config = None,
) -> None:
    """Steps per second of each kernel over batch sizes (random actions, blocking on results,
    compile time excluded and reported separately); writes metrics.parquet, summary.json and plots."""
    values = dict(locals())
    del values["ctx"]
    values = apply_config_file(ctx, config, values)
    envs, batch_sizes, auto_reset, vs = values["envs"], values["batch_sizes"], values["auto_reset"], values["vs"]
    stochasticity, profiles = values["stochasticity"], values["profiles"]
    # Numbers from flags and from the TOML file alike pass their Bound.
    steps, repeats, seed = (BOUNDS[key].check(values[key]) for key in ("steps", "repeats", "seed"))

    from agentlab import rundir
    from agentlab.bench import kernels as bk
    from agentlab.devices import check as devices_check
    from agentlab.kernels import make
    from agentlab.kernels.atari import GAMES

    names = parse_names(envs, tuple(sorted(GAMES)), "--envs")
    sizes = [BOUNDS["batch_sizes"].check(size) for size in parse_int_list(batch_sizes, "--batch-sizes")]
    devices = values["devices"]
    for size in sizes:  # every batch splits into equal blocks
        devices = devices_check(devices, size, "--batch-sizes")
    if auto_reset not in AUTO_RESET:  # a --config file's value (flags are Typer choices)
        fail(f"unknown --auto-reset {auto_reset!r}: valid values are 'on', 'off' or 'both'")
    if vs not in (None, "gymnax"):
        fail(f"unknown --vs {vs!r}: the only peer is 'gymnax'")
    for name in names:  # validate the stochasticity string for every kernel before any work
        make(name, stochasticity=stochasticity)
    if vs == "gymnax":
        bk.gymnax_kernel(names[0])  # fails early with an install hint
    at_once = len(AUTO_RESET_MODES[auto_reset]) * len(sizes) + (len(sizes) if vs else 0) + (8 if profiles else 0)
    limits.check_memory(
        bench_bytes(names, stochasticity, max(sizes), steps, at_once),
        f"bench kernels at batch size {max(sizes):,} x {steps:,} steps",
        "lower --batch-sizes or --steps",
    )

    resets = AUTO_RESET_MODES[auto_reset]
    cells = []
    for name in names:
        for size in sizes:
            for reset in resets:
                cells.append(bk.Cell("agentlab", name, size, stochasticity, reset, devices))
            if vs == "gymnax" and stochasticity == "plain":
                cells.append(bk.Cell("gymnax", name, size, devices=devices))
        if profiles:
            for spec in bk.profile_specs(name).values():
                cells.append(bk.Cell("agentlab", name, max(sizes), spec, True, devices))

    config_record = {
        "envs": names,
        "batch_sizes": sizes,
        "steps": steps,
        "repeats": repeats,
        "stochasticity": stochasticity,
        "profiles": profiles,
        "auto_reset": auto_reset,
        "vs": vs,
        "seed": seed,
        **({"devices": devices} if devices > 1 else {}),  # run directories of one device record none
    }
    out = out or default_out("bench-kernels")
    with rundir.open_run(out, "bench kernels", config_record, resume=resume, force=force, resumable=True) as run_dir:
        _bench(run_dir, out, cells, names, sizes, steps, repeats, stochasticity, profiles, seed, resume, json, quiet)


def _bench(run_dir, out, cells, names, sizes, steps, repeats, stochasticity, profiles, seed, resume, json, quiet):
    import polars as pl

    from agentlab import rundir
    from agentlab.bench import kernels as bk

    metrics_path = run_dir / "metrics.parquet"
    rows = pl.read_parquet(metrics_path).to_dicts() if resume and metrics_path.exists() else []
    done = {(r["impl"], r["env"], r["batch_size"], r["stochasticity"], r["auto_reset"]) for r in rows}
    todo = [c for c in cells if c.key not in done]

    started = time.perf_counter()

    # Each kernel's cells are compiled together, then timed round-robin: ratios between them do not
    # depend on when during the run the machine was fast or slow.
    groups: dict[str, list] = {}
    for cell in todo:
        groups.setdefault(cell.env, []).append(cell)
    with progress_display(quiet=quiet) as progress:
        task = progress.add_task("bench kernels", total=len(cells), completed=len(cells) - len(todo))
        for env_name, group in groups.items():
            prepared = {}
            for cell in group:
                progress.update(
                    task, description=f"compile {cell.impl} {cell.env} x{cell.batch_size} {cell.stochasticity}"
                )
                prepared[cell] = bk.prepare(bk.kernel_for(cell), cell.batch_size, steps, seed, cell.devices)
            progress.update(task, description=f"time {env_name} ({len(group)} measurements, {repeats} rounds)")
            results = bk.time_interleaved(prepared, repeats)
            for cell in group:
                rows.append(
                    {
                        "impl": cell.impl,
                        "env": cell.env,
                        "batch_size": cell.batch_size,
                        "stochasticity": cell.stochasticity,
                        "auto_reset": cell.auto_reset,
                        "steps": steps,
                        "seed": seed,
                        "devices": cell.devices,
                        "step": cell.batch_size * steps,
                        **results[cell],
                        "wall_seconds": time.perf_counter() - started,
                    }
                )
                progress.advance(task)
            del prepared
            rundir.write_parquet(metrics_path, pl.DataFrame(rows))

    frame = pl.DataFrame(rows)
    summary = summarise(frame, names, max(sizes), stochasticity, profiles)
    summary["wall_seconds"] = time.perf_counter() - started
    rundir.write_json(run_dir / "summary.json", summary)
    plot(frame, run_dir / "plots")
    if json:
        print_json(summary)
    if not quiet:
        show(frame, summary, out)


def summarise(frame, names: list[str], largest: int, stochasticity: str, profiles: bool) -> dict:
    """Flat summary at the largest batch size: steps/s, the speed-up over gymnax, and throughput
    relative to the plain game with each profile (and with auto-reset relative to without)."""
    import polars as pl

    from agentlab.bench import kernels as bk

    def rate(impl: str, env: str, spec: str, auto_reset: bool = True) -> float | None:
        hit = frame.filter(
            (pl.col("impl") == impl)
            & (pl.col("env") == env)
            & (pl.col("batch_size") == largest)
            & (pl.col("stochasticity") == spec)
            & (pl.col("auto_reset") == auto_reset)
        )
        return float(hit["steps_per_second"][0]) if hit.height else None

    summary: dict = {"largest_batch_size": largest, "compile_seconds": float(frame["compile_seconds"].sum())}
    summary["devices"] = int(frame["devices"][0]) if "devices" in frame.columns else 1
    for env in names:
        ours = rate("agentlab", env, stochasticity)
        if ours is None:
            ours = rate("agentlab", env, stochasticity, False)
        summary[f"{env}_steps_per_second"] = ours
        peer = rate("gymnax", env, "plain")
        if peer is not None and ours is not None:
            summary[f"{env}_gymnax_steps_per_second"] = peer
            summary[f"{env}_speedup_vs_gymnax"] = ours / peer
        without = rate("agentlab", env, stochasticity, False)
        if without is not None and rate("agentlab", env, stochasticity, True) is not None:
            summary[f"{env}_auto_reset_relative_throughput"] = rate("agentlab", env, stochasticity, True) / without
        plain = rate("agentlab", env, "plain")
        if profiles and plain:
            for kind, spec in bk.profile_specs(env).items():
                value = rate("agentlab", env, spec)
                if value:
                    summary[f"{env}_{kind}_relative_throughput"] = value / plain
    return summary


def plot(frame, plots: Path) -> None:
    from agentlab.rundir import pyplot

    plt = pyplot()
    import polars as pl

    from agentlab.rundir import save_figure

    base = frame.filter(pl.col("stochasticity") == frame["stochasticity"][0])
    envs = sorted(set(base["env"]))
    fig, axes = plt.subplots(1, len(envs), figsize=(3.2 * len(envs), 3.0), squeeze=False, sharey=True)
    for ax, env in zip(axes[0], envs):
        for (impl, reset), group in base.filter(pl.col("env") == env).group_by(
            ["impl", "auto_reset"], maintain_order=True
        ):
            group = group.sort("batch_size")
            label = impl + ("" if reset else " (no auto-reset)")
            ax.plot(group["batch_size"], group["steps_per_second"], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(env)
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("steps per second")
    axes[0][-1].legend(fontsize=7)
    save_figure(plots / "throughput.png", fig)


def show(frame, summary: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"kernel throughput (steps/s), batch {summary['largest_batch_size']}")
    for column in ("impl", "env", "batch", "stochasticity", "auto-reset", "steps/s", "compile s"):
        table.add_column(column)
    for row in frame.sort(["env", "batch_size", "impl"]).iter_rows(named=True):
        table.add_row(
            row["impl"],
            row["env"],
            str(row["batch_size"]),
            row["stochasticity"],
            "on" if row["auto_reset"] else "off",
            f"{row['steps_per_second']:,.0f}",
            f"{row['compile_seconds']:.2f}",
        )
    console = Console(stderr=True)
    console.print(table)
    for key, value in summary.items():
        if key.endswith("speedup_vs_gymnax"):
            console.print(f"{key}: {value:.2f}x")
    console.print(f"wrote {run_dir}")
