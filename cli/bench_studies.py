"""`agentlab bench ppo | grid | grid-study | markets | lemons | synergy | report`: the benchmarks and studies beside
`agentlab bench kernels` (results and recorded commands in bench/README.md and docs/). Each parses and checks its
options, then calls one library function in `agentlab.bench`, `agentlab.studies` or `agentlab.synergy` and writes a
run directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agentlab.cli.common import (
    EnvOption,
    Force,
    Json,
    Out,
    Quiet,
    Seed,
    default_out,
    fail,
    handle_errors,
    print_json,
    progress_display,
)


def _finish(out: Path, summary: dict, json: bool, quiet: bool, line: str) -> None:
    if json:
        print_json(summary)
    if not quiet:
        typer.echo(f"{line}; wrote {out}", err=True)


def _interleaved_rounds(command: str, bench: Any, module: Any, rows: Any, text: Any, **flags: Any) -> None:
    """The body of a side-by-side bench against a peer process (bench mamql, bench pgd): open the run directory,
    ``module.run(bench, on_round)`` with ``metrics.parquet`` rewritten after every round from ``rows(round,
    seconds)`` and a line ``text(seconds)`` per round on stderr, summary.json, then ``module.lines(summary)``."""
    from agentlab import rundir

    out, quiet = flags["out"], flags["quiet"]
    out = Path(out or default_out(command.replace(" ", "-")))
    rundir.check_out(out, force=flags["force"])
    with rundir.open_run(out, command, bench.record(), force=flags["force"]) as work:
        import polars as pl

        table: list[dict] = []

        def on_round(r: int, seconds: dict[str, float]) -> None:
            table.extend(rows(r, seconds))
            rundir.write_parquet(work / "metrics.parquet", pl.DataFrame(table))
            if not quiet:
                typer.echo(f"round {r + 1}/{bench.rounds}: {text(seconds)}", err=True)

        if not quiet:
            typer.echo(f"{command}: {', '.join(bench.learners())}; compiling and warming up ...", err=True)
        summary = module.run(bench, on_round)
        rundir.write_json(work / "summary.json", summary)
    if not quiet:
        for line in module.lines(summary):
            typer.echo(line, err=True)
    _finish(out, summary, flags["json"], quiet, f"{command}: {bench.rounds} rounds")


# -- agentlab bench ppo -------------------------------------------------------------------------------------------


@handle_errors
def ppo(
    purejaxrl: Annotated[
        Path | None,
        typer.Option(
            "--purejaxrl",
            help="A checkout of github.com/luchris429/purejaxrl: adds PureJaxRL's PPO on "
            "gymnax's Breakout-MinAtar (needs gymnax and distrax). Without it, agentlab's learners only.",
        ),
    ] = None,  # fmt: skip
    steps: Annotated[
        int, typer.Option("--steps", help="Steps per seed of purejaxrl and agentlab-purejaxrl (PureJaxRL's settings).")
    ] = 1_000_000,
    default_steps: Annotated[
        int | None,
        typer.Option("--default-steps", help="Steps per seed of agentlab-default (default: --steps, the same budget)."),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per learner, run round-robin.")] = 4,
    seed_start: Annotated[
        int,
        typer.Option(
            "--seed-start", help="The first seed (seeds SEED_START and up; the settings were chosen on 0-11)."
        ),
    ] = 100,
    episodes: Annotated[
        int,
        typer.Option(
            "--episodes", help="Evaluation episodes per seed of each trained policy, greedy and as many sampled."
        ),
    ] = 64,
    env: Annotated[
        str, typer.Option("--env", help="agentlab's kernel for agentlab's learners (breakout with --purejaxrl).")
    ] = "breakout",
    env_option: EnvOption = None,
    peer_on_agentlab: Annotated[
        bool, typer.Option("--peer-on-agentlab", help="Also run PureJaxRL's learner on agentlab's breakout.")
    ] = False,
    peer_with_our_options: Annotated[
        bool,
        typer.Option("--peer-with-our-options", help="Also run PureJaxRL compiled with agentlab's compiler options."),
    ] = False,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """PPO beside PureJaxRL in one process (bench/ppo.py): training throughput (each run jitted end to end, compile
    and run timed separately) and each trained policy's return on separate evaluation episodes, greedy and sampled,
    on the same keys for every learner. With --purejaxrl, agentlab-default-equal-wall trains the default for
    PureJaxRL's wall time (the first seed's speeds). Writes metrics.parquet (a row per learner and seed) and
    summary.json (medians, mean returns with 95% intervals over seeds, the ratios, the commit and machine)."""
    from agentlab import rundir
    from agentlab.bench import ppo as bp
    from agentlab.kernels.names import options_record, parse_env_options
    from agentlab.rl.ppo import RESERVED_OPTIONS

    bench = bp.PPOBench(
        steps=steps,
        seeds=seeds,
        seed_start=seed_start,
        default_steps=default_steps,
        episodes=episodes,
        env=env,
        env_options=options_record(parse_env_options(env_option, RESERVED_OPTIONS)),
        purejaxrl=purejaxrl,
        peer_on_agentlab=peer_on_agentlab,
        peer_with_our_options=peer_with_our_options,
    ).validate()
    out = Path(out or default_out("bench-ppo"))
    rundir.check_out(out, force=force)
    record = {
        **bench.__dict__,
        "env_options": dict(bench.env_options),
        "purejaxrl": str(purejaxrl) if purejaxrl is not None else None,
    }
    total = seeds * len(bench.learners())
    with rundir.open_run(out, "bench ppo", record, force=force) as work, progress_display(quiet=quiet) as progress:
        import polars as pl

        task = progress.add_task("bench ppo", total=total)

        def on_row(rows: list[dict]) -> None:
            rundir.write_parquet(work / "metrics.parquet", pl.DataFrame(rows))
            row = rows[-1]
            if not quiet:
                progress.console.print(
                    f"{row['learner']} seed {row['seed']}: {row['steps']:,} steps, "
                    f"{row['steps_per_second']:,.0f} steps/s, compile {row['compile_seconds']:.1f} s, "
                    f"return greedy {row['greedy_return']:.2f}, sampled {row['stochastic_return']:.2f}, "
                    f"training {row['final_return']:.2f}",
                    markup=False,
                )
            progress.advance(task)

        rows = bp.run_bench(bench, on_row)
        summary = {**bp.summarise(pl.DataFrame(rows), steps, seeds), "machine": bp.machine()}
        rundir.write_json(work / "summary.json", summary)
    _finish(out, summary, json, quiet, f"bench ppo: {len(rows)} runs")


# -- agentlab bench grid / grid-study ---------------------------------------------------------------------------


@handle_errors
def grid(
    events: Annotated[int, typer.Option("--events", help="Parallel events (vmap) in the timed call.")] = 4096,
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds per event per timed call (a lax.scan).")] = 6,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls after a warm-up (best reported).")] = 3,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """grid-curtailment throughput: participant-rounds per second of the kernel's step (auto-reset on, random
    actions) over --events events, compile excluded, blocking on results. Writes summary.json and metrics.parquet
    (one row)."""
    from agentlab import limits, rundir
    from agentlab.bench import grid as bg

    options = {"events": events, "rounds": rounds, "repeats": repeats}
    events, rounds, repeats = (bg.BOUNDS[key].check(value) for key, value in options.items())
    limits.check_memory(
        6.0 * events * bg.event_bytes() + 64.0 * rounds * events, f"--events {events:,}", "lower --events"
    )
    out = Path(out or default_out("bench-grid"))
    rundir.check_out(out, force=force)
    with rundir.open_run(out, "bench grid", options, force=force) as work:
        import polars as pl

        if not quiet:
            typer.echo(f"bench grid: {events:,} events x {rounds} rounds, compiling and timing ...", err=True)
        summary = bg.throughput(events, rounds, repeats)
        rundir.write_parquet(work / "metrics.parquet", pl.DataFrame([summary]))
        rundir.write_json(work / "summary.json", summary)
    rate, compile_seconds = summary["participant_rounds_per_second"], summary["compile_seconds"]
    line = f"bench grid: {rate:,.0f} participant-rounds/s (compile {compile_seconds:.1f} s)"
    _finish(out, summary, json, quiet, line)


@handle_errors
def grid_study(
    events: Annotated[
        int, typer.Option("--events", help="Events simulated per (policies, shortfall, price cap).")
    ] = 256,
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """The outcome split of grid-curtailment (docs/grid.md, "Study"): compromise, authority and automatic rates
    of every policy mix over shortfall x price cap (around the classes' values of lost load). Writes
    metrics.parquet (a row per cell; docs/grid/study.parquet), study.md (the tables), plots/study.png (heat
    maps) and summary.json."""
    from agentlab import limits, rundir
    from agentlab.bench import grid as bg

    events, seed = bg.BOUNDS["events"].check(events), bg.BOUNDS["seed"].check(seed)
    from agentlab.kernels.grid.curtailment import default_grid_params

    deadline = int(default_grid_params().deadline)
    limits.check_memory(8.0 * events * deadline * bg.event_bytes(), f"--events {events:,}", "lower --events")
    out = Path(out or default_out("bench-grid-study"))
    rundir.check_out(out, force=force)
    cells = len(bg.MIXES)  # progress per mix (each mix compiles once and runs every shortfall x cap)
    started = time.perf_counter()
    with (
        rundir.open_run(out, "bench grid-study", {"events": events, "seed": seed}, force=force) as work,
        progress_display(quiet=quiet) as progress,
    ):
        task = progress.add_task("bench grid-study", total=cells)
        frame = bg.study(events, seed, on_cell=lambda: progress.advance(task))
        rundir.write_parquet(work / "metrics.parquet", frame)
        rundir.atomic_write(work / "study.md", lambda tmp: tmp.write_text(bg.study_markdown(frame)))
        rundir.save_figure(work / "plots" / "study.png", bg.study_figure(frame))
        summary = {
            "cells": frame.height,
            "events_per_cell": events,
            "seed": seed,
            **{f"{name}_mean": float(frame[name].mean()) for name in ("compromise_rate", "authority_rate",
                                                                        "automatic_rate")},
            "wall_seconds": time.perf_counter() - started,
        }  # fmt: skip
        rundir.write_json(work / "summary.json", summary)
    _finish(out, summary, json, quiet, f"bench grid-study: {frame.height} cells x {events} events")


# -- agentlab bench markets -------------------------------------------------------------------------------------


@handle_errors
def markets(
    markets: Annotated[int, typer.Option("--markets", help="Markets per cell of the crash study.")] = 128,
    throughput_markets: Annotated[
        int, typer.Option("--throughput-markets", help="Markets in the timed throughput call.")
    ] = 4096,
    days: Annotated[int, typer.Option("--days", help="Days per market.")] = 365,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """market-crash study and throughput (docs/markets.md): bankruptcy rate, collapse rate and EAS for dlc in
    {1, 3, 5} x 0..5 stabilising firms (the table on stderr, metrics.parquet), then market-steps per second over
    --throughput-markets markets, compile excluded (summary.json)."""
    from agentlab import rundir
    from agentlab.bench import markets as bm

    options = {"markets": markets, "throughput_markets": throughput_markets, "days": days}
    markets, throughput_markets, days = (bm.BOUNDS[key].check(value) for key, value in options.items())
    bm.check_memory(markets, throughput_markets, days)
    out = Path(out or default_out("bench-markets"))
    rundir.check_out(out, force=force)
    with rundir.open_run(out, "bench markets", options, force=force) as work:
        if not quiet:
            typer.echo(bm.STUDY_HEADER, err=True)
        on_cell = None if quiet else (lambda row: typer.echo(bm.study_line(row), err=True))
        frame = bm.crash_study(markets, days, on_cell=on_cell)
        rundir.write_parquet(work / "metrics.parquet", frame)
        summary = {"markets_per_cell": markets, **bm.crash_throughput(throughput_markets, days)}
        rundir.write_json(work / "summary.json", summary)
    line = (
        f"market-crash: {throughput_markets} markets x {days} days in {summary['seconds']:.2f} s = "
        f"{summary['market_steps_per_second']:,.0f} market-steps/s ({summary['firm_steps_per_second']:,.0f} "
        f"firm-steps/s), compile {summary['compile_seconds']:.1f} s"
    )
    _finish(out, summary, json, quiet, line)


# -- agentlab bench lemons --------------------------------------------------------------------------------------


@handle_errors
def lemons(
    markets: Annotated[int, typer.Option("--markets", help="Markets per cell of the lemon study.")] = 256,
    days: Annotated[int, typer.Option("--days", help="Days per market.")] = 50,
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """The lemon-market study (docs/markets.md): K in {0, 3, 6, 9} Sybil identities x buyer mixes x dlc in {1, 3, 5},
    12 sellers and 12 buyers, one compiled function for every cell (agentlab.studies.lemons.lemon_study). Writes
    metrics.parquet (a row per cell), study.md (the table, also on stderr), plots/study.png and summary.json."""
    from agentlab import rundir
    from agentlab.studies import lemons as study

    markets, days, seed = study.check_study(markets, days, seed)
    options = {"markets": markets, "days": days, "seed": seed}
    out = Path(out or default_out("bench-lemons"))
    rundir.check_out(out, force=force)
    cells = len(study.STUDY_BUYERS) * len(study.STUDY_DLC) * len(study.STUDY_SYBILS)
    started = time.perf_counter()
    with (
        rundir.open_run(out, "bench lemons", options, force=force) as work,
        progress_display(quiet=quiet) as progress,
    ):
        import polars as pl

        task = progress.add_task("bench lemons", total=cells)
        table = study.lemon_study(markets, days, seed, on_cell=lambda row: progress.advance(task))
        markdown = study.study_markdown(table)
        rundir.write_parquet(work / "metrics.parquet", pl.DataFrame(table))
        rundir.atomic_write(work / "study.md", lambda tmp: tmp.write_text(markdown))
        rundir.save_figure(work / "plots" / "study.png", study.study_figure(table))
        seconds = sum(row["seconds"] for row in table)
        market_days = len(table) * markets * days
        summary = {
            **options,
            "cells": len(table),
            "seconds": seconds,
            "market_steps_per_second": market_days / seconds,
            "wall_seconds": time.perf_counter() - started,
        }
        rundir.write_json(work / "summary.json", summary)
    if not quiet:
        typer.echo(markdown, err=True, nl=False)
    line = (
        f"bench lemons: {len(table)} cells, {market_days:,} market-days in {seconds:.2f} s after compile "
        f"({summary['market_steps_per_second']:,.0f} market-days/s)"
    )
    _finish(out, summary, json, quiet, line)


# -- agentlab bench synergy -------------------------------------------------------------------------------------


@handle_errors
def synergy(
    fan_in: Annotated[int, typer.Option("--fan-in", "-b", help="Children per aggregator b.")] = 3,
    depth: Annotated[int, typer.Option("--depth", "-L", help="Levels below the root (b^depth leaves).")] = 9,
    words: Annotated[int, typer.Option("--words", help="uint32 words per configuration (32 trials each).")] = 64,
    configs: Annotated[int, typer.Option("--configs", help="Configurations per call.")] = 8,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls after a warm-up (median reported).")] = 5,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Monte Carlo throughput of the synergy full-tree sampler: leaf evaluations per second, compile excluded,
    blocking on results (synergy/bench.py). Writes summary.json and metrics.parquet (one row)."""
    from agentlab import rundir
    from agentlab.synergy import bench as sb

    sb.check(fan_in, depth, words, configs, repeats)
    record = {"fan_in": fan_in, "depth": depth, "words": words, "configs": configs, "repeats": repeats}
    out = Path(out or default_out("bench-synergy"))
    rundir.check_out(out, force=force)
    with rundir.open_run(out, "bench synergy", record, force=force) as work:
        import polars as pl

        summary = sb.leaf_throughput(fan_in, depth, words, configs, repeats)
        rundir.write_parquet(work / "metrics.parquet", pl.DataFrame([summary]))
        rundir.write_json(work / "summary.json", summary)
    line = f"b = {fan_in}, depth {depth}: {summary['leaf_evaluations_per_second']:.3g} leaf evaluations/s"
    _finish(out, summary, json, quiet, line)


# -- agentlab bench mamql ---------------------------------------------------------------------------------------


@handle_errors
def mamql(
    ma_mql: Annotated[
        Path | None,
        typer.Option(
            "--ma-mql",
            help="A checkout of github.com/USC-Lira/ma-mql: adds the authors' PyTorch update (needs --torch-python). "
            "Without it, agentlab's update only.",
        ),
    ] = None,
    torch_python: Annotated[
        Path | None,
        typer.Option("--torch-python", help="The python of a bench-only environment with torch and numpy<2."),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved timed rounds (median and range reported).")] = 5,
    updates: Annotated[int, typer.Option("--updates", help="agentlab updates per timed round (one chunk).")] = 4,
    peer_updates: Annotated[int, typer.Option("--peer-updates", help="Peer updates per timed round.")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="PyTorch threads in the peer's process.")] = 2,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """MAMQL update speed (bench/mamql.py): agentlab's neural update (batch 256, both agents, the authors' Gems
    critic), offline and online, beside the authors' PyTorch update and iteration run from --ma-mql in a
    --torch-python process, interleaved over --rounds rounds on synthetic batches of the same shapes, compile
    excluded (reported apart). Writes summary.json (medians, ranges, ratios, machine) and metrics.parquet (a row
    per learner and round)."""
    from agentlab.bench import mamql as bm

    bench = bm.MAMQLBench(
        rounds=rounds,
        updates=updates,
        peer_updates=peer_updates,
        threads=threads,
        ma_mql=ma_mql,
        torch_python=torch_python,
    ).validate()

    def rows(r: int, seconds: dict[str, float]) -> list[dict]:
        return [
            {"learner": name, "round": r, "seconds_per_update": s, "updates_per_second": 1.0 / s}
            for name, s in seconds.items()
        ]

    def text(seconds: dict[str, float]) -> str:
        return ", ".join(f"{name} {1.0 / s:.3g}/s" for name, s in seconds.items())

    _interleaved_rounds("bench mamql", bench, bm, rows, text, out=out, force=force, json=json, quiet=quiet)


# -- agentlab bench pgd -----------------------------------------------------------------------------------------


@handle_errors
def pgd(
    pgd_repo: Annotated[
        Path | None,
        typer.Option(
            "--pgd-repo",
            help="A checkout of github.com/EmptyJackson/policy-guided-diffusion: adds the authors' denoiser training "
            "step and sampler (needs --peer-python). Without it, agentlab's only.",
        ),
    ] = None,
    peer_python: Annotated[
        Path | None,
        typer.Option("--peer-python", help="The python of a bench-only environment with the authors' JAX stack."),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved timed rounds (median and range reported).")] = 5,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per timed round (one compiled scan).")] = 8,
    windows: Annotated[int, typer.Option("--windows", help="Windows sampled per timed round (one call).")] = 256,
    sampler_steps: Annotated[int, typer.Option("--sampler-steps", help="Heun sampler steps.")] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per training step.")] = 256,
    length: Annotated[int, typer.Option("--length", help="Rows per window.")] = 32,
    obs_dim: Annotated[int, typer.Option("--obs-dim", help="Observation columns (maze2d: 4).")] = 4,
    act_dim: Annotated[int, typer.Option("--act-dim", help="Action columns (maze2d: 2); rows add reward, done.")] = 2,
    features: Annotated[
        int,
        typer.Option("--features", help="Width of the first U-Net level (their --num_features; doubled per level)."),
    ] = 32,
    blocks: Annotated[int, typer.Option("--blocks", help="U-Net levels (their --num_blocks).")] = 3,
    kernel_size: Annotated[int, typer.Option("--kernel-size", help="agentlab's conv width (theirs is 3).")] = 3,
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """PGD denoiser speed (bench/pgd.py): agentlab's EDM training step (a compiled scan of --steps updates) and
    unguided Heun sampler (--windows windows, --sampler-steps steps) beside the authors' train_step + EMA and
    sample_trajectory run from --pgd-repo in a --peer-python process, at the same U-Net widths, interleaved over
    --rounds rounds on synthetic standardised windows, compile excluded (reported apart). Writes summary.json
    (medians, ranges, ratios, parameter counts, machine) and metrics.parquet (a row per learner and round)."""
    from agentlab.bench import pgd as bp

    bench = bp.PGDBench(
        rounds=rounds,
        steps=steps,
        windows=windows,
        sampler_steps=sampler_steps,
        batch_size=batch_size,
        length=length,
        obs_dim=obs_dim,
        act_dim=act_dim,
        features=features,
        blocks=blocks,
        kernel_size=kernel_size,
        pgd_repo=pgd_repo,
        peer_python=peer_python,
        seed=seed,
    ).validate()

    def rows(r: int, seconds: dict[str, float]) -> list[dict]:
        return [
            {
                "learner": name,
                "round": r,
                "seconds": s,
                "steps_per_second": 1.0 / s if "-train" in name else None,
                "windows_per_second": (bench.batch_size if "-train" in name else bench.windows) / s,
            }
            for name, s in seconds.items()
        ]

    def text(seconds: dict[str, float]) -> str:
        return ", ".join(
            f"{name} {1.0 / s:.3g} steps/s" if "-train" in name else f"{name} {bench.windows / s:.3g} windows/s"
            for name, s in seconds.items()
        )

    _interleaved_rounds("bench pgd", bench, bp, rows, text, out=out, force=force, json=json, quiet=quiet)


# -- agentlab bench report --------------------------------------------------------------------------------------


@handle_errors
def report(
    run: Annotated[Path, typer.Argument(help="A run directory of `agentlab bench kernels`.")],
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Markdown tables of an `agentlab bench kernels` run (what bench/README.md shows): throughput beside gymnax
    per batch size, and each profile's throughput relative to the plain game. The tables go to stderr; --json
    prints {"run", "markdown"} on stdout (`--json | jq -r .markdown > tables.md`)."""
    from agentlab import rundir
    from agentlab.bench.report import kernel_tables

    rundir.load_record(run, "bench kernels")
    if not (Path(run) / "metrics.parquet").is_file():
        fail(f"{run} has no metrics.parquet (an unfinished run?)")
    text = kernel_tables(run)
    if json:
        print_json({"run": str(run), "markdown": text})
    if not quiet:
        typer.echo(text, err=True)


# The sub-commands of `agentlab bench` this module adds (cli/app.py registers them).
# -- agentlab bench gymnasium ----------------------------------------------------------------------------------


@handle_errors
def gymnasium(
    envs: Annotated[str, typer.Option("--envs", help="Comma-separated single-agent kernels.")] = "breakout,pendulum",
    lanes: Annotated[int, typer.Option("--lanes", help="Parallel environments (vector lanes).")] = 1024,
    steps: Annotated[int, typer.Option("--steps", help="Steps per timed round.")] = 200,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved timed rounds (medians reported).")] = 7,
    out: Out = None,
    force: Force = False,
    json: Json = False,
    quiet: Quiet = False,
) -> None:
    """The Gymnasium vector adapter (agentlab.adapters.gymnasium.make_vec) beside the raw jitted, vmapped kernel
    step at the same lanes, NumPy transfer included, compile excluded (bench/gymnasium.py): summary.json with
    steps/s and the ratio adapter / raw per kernel."""
    from agentlab import rundir
    from agentlab.bench import gymnasium as bg
    from agentlab.kernels.names import canonical_id

    names = [canonical_id(n.strip()) for n in envs.split(",") if n.strip()]
    if not names:
        fail("--envs needs at least one kernel, e.g. breakout,pendulum")
    lanes, steps, rounds = bg.LANES.check(lanes), bg.STEPS.check(steps), bg.ROUNDS.check(rounds)
    from agentlab.adapters.gymnasium import make as make_env

    for name in names:
        make_env(name).close()  # an unknown or multi-agent kernel is refused before anything is written
    out = Path(out or default_out("bench-gymnasium"))
    rundir.check_out(out, force=force)
    config = {"envs": names, "lanes": lanes, "steps": steps, "rounds": rounds}
    with rundir.open_run(out, "bench gymnasium", config, force=force) as work:
        results = []
        for name in names:
            results.append(bg.measure(name, lanes, steps, rounds))
            if not quiet:
                r = results[-1]
                text = f"adapter {r['adapter_per_second']:,.0f}/s, raw step {r['raw_step_per_second']:,.0f}/s"
                typer.echo(f"{name}: {text}, ratio {r['adapter_over_raw_step']:.2f}", err=True)
        summary = {"results": results, "machine": rundir.versions()}
        rundir.write_json(work / "summary.json", summary)
    _finish(out, summary, json, quiet, f"bench gymnasium: {len(names)} kernels")


COMMANDS = {
    "ppo": ppo,
    "grid": grid,
    "grid-study": grid_study,
    "markets": markets,
    "lemons": lemons,
    "synergy": synergy,
    "mamql": mamql,
    "pgd": pgd,
    "gymnasium": gymnasium,
    "report": report,
}
