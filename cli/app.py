"""The `agentlab` Typer app: one module per sub-command, registered here."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agentlab import __version__
from agentlab.cli import (
    bench,
    bench_studies,
    calibrate,
    data,
    envs,
    render,
    runs,
    simulate,
    simulate_grid,
    simulate_lemons,
    sweep,
    train,
    train_mamql,
    train_offline,
    train_pgd,
    train_qlearn,
)
from agentlab.cli import eval as eval_command
from agentlab.cli.common import one_line


class OneLineErrors(typer.core.TyperGroup):
    """The root command group: a usage error (an unknown command or option, a value of the wrong type, a value
    outside an option's choices) is one line on stderr and exit code 2 instead of Click's multi-line usage block;
    Ctrl-C is exit code 130. Being the group's `main`, this holds for the console script and for
    `typer.testing.CliRunner` alike."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as error:  # noqa: BLE001 - Click's exception classes live in a private module
            if type(error).__name__ == "NoArgsIsHelpError":  # the help was shown already
                sys.exit(0)
            if getattr(error, "exit_code", None) == 2 and hasattr(error, "format_message"):
                command = error.ctx.command_path if getattr(error, "ctx", None) else "agentlab"
                typer.echo(f"error: {one_line(error.format_message())} (see `{command} --help`)", err=True)
                sys.exit(2)
            if type(error).__name__ == "Abort":
                sys.exit(130)
            raise
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="agentlab",
    cls=OneLineErrors,
    help="Fast, reproducible stochastic environments and learners for studying agent-environment misalignment.\n\n"
    "Stdout carries only JSON (with --json); tables, progress and messages go to stderr. Exit codes: 0 success, "
    "1 failure while computing, 2 bad input, 130 interrupted. Set AGENTLAB_DEBUG=1 for tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentlab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """agentlab: stochastic Atari-style kernels (MinAtar rules x the STORI taxonomy) and more."""


app.add_typer(train.app, name="train")
train.app.command("qlearn")(train_qlearn.qlearn)
train.app.command("mamql")(train_mamql.mamql)
train.app.command("pgd")(train_pgd.pgd)
train.app.command("offline")(train_offline.offline)
# `agentlab simulate KERNEL`: market-crash (cli/simulate.py) and the plug-ins imported above (each registers its
# kernel's simulator when imported) become sub-commands.
assert {"market-crash", "market-lemons", "grid-curtailment"} <= set(simulate.SIMULATORS), (
    simulate_grid,
    simulate_lemons,
)
simulate.install(simulate.app)
app.add_typer(simulate.app, name="simulate")
app.command("eval")(eval_command.evaluate)
app.command("envs")(envs.envs)
app.command("render")(render.render)
# `agentlab bench kernels` (cli/bench.py) and the other benchmarks and studies (cli/bench_studies.py).
for name, command in bench_studies.COMMANDS.items():
    bench.app.command(name)(command)
app.add_typer(bench.app, name="bench")
app.add_typer(sweep.app, name="sweep")
app.add_typer(calibrate.app, name="calibrate")
app.add_typer(data.app, name="data")
app.add_typer(runs.app, name="runs")


def main() -> None:
    """The console script: ``app()`` (usage errors are one line and exit 2: `OneLineErrors`)."""
    app()


if __name__ == "__main__":  # python -m agentlab.cli.app
    main()
