"""The `agentlab` Typer app: one module per sub-command, registered here."""

from __future__ import annotations

from typing import Annotated

import typer

from agentlab import __version__
from agentlab.cli import bench, envs, render

app = typer.Typer(
    name="agentlab",
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


app.command("envs")(envs.envs)
app.command("render")(render.render)
app.add_typer(bench.app, name="bench")


def main() -> None:
    app()


if __name__ == "__main__":  # python -m agentlab.cli.app
    main()
