"""`agentlab envs`: the kernels, their action sets and their stochasticity options."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agentlab.cli.common import handle_errors, print_json

GRAMMAR = {
    "spec": 'PROFILE ("+" PROFILE)*',
    "profile": 'KIND [":" KEY "=" VALUE ("," KEY "=" VALUE)*]',
    "kinds": {
        "action": "action:p=P  (STORI type 1: replace the action by a uniform one with prob. P; default p=0.3)",
        "sticky": "sticky:p=P  (repeat the last executed action with prob. P; default p=0.1)",
        "event": "event:mode=NAME,p=P  (STORI type 2.1: a game-specific event; default p=0.25)",
        "drift": "drift:mode=sudden|cyclic,at=T,to=(SPEC)  (STORI type 2.2; default sudden, at=300)",
        "mask": "mask:kind=crop,region=left|right|top|bottom,p=P | mask:kind=torch,radius=R,centre=agent|random,p=P"
        " | mask:kind=blackout,region=NAME,p=P  (STORI type 3.2; Atari-style games)"
        " | mask:kind=dropout,p=P  (each feature of a vector observation hidden with prob. P; default p=0.1;"
        " every other kernel)",
        "plain": "plain  (STORI type 3.1: the unmodified game)",
    },
}


def external_environments() -> list[dict[str, Any]]:
    """The external environment families (`agentlab.kernels.external`): prefix, whether the library is installed
    (found, not imported), how to install it and an example id."""
    import importlib.util

    from agentlab.kernels.names import EXTERNAL_PREFIXES

    examples = {"gymnax": "gymnax:CartPole-v1", "jaxmarl": "jaxmarl:MPE_simple_spread_v3"}
    return [
        {
            "prefix": prefix,
            "installed": importlib.util.find_spec(prefix) is not None,
            "install": f"pip install 'agentlab[{prefix}]'",
            "example": examples[prefix],
        }
        for prefix in EXTERNAL_PREFIXES
    ]


@handle_errors
def envs(
    json: Annotated[bool, typer.Option("--json", help="Print the list as JSON on stdout.")] = False,
) -> None:
    """List the kernels: observation, action set, event modes and mask regions, and the stochasticity grammar."""
    from agentlab.kernels import describe, registered_kernels

    rows = [describe(name) for name in registered_kernels()]
    external = external_environments()
    if json:
        print_json({"kernels": rows, "stochasticity": GRAMMAR, "external": external})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="agentlab kernels", show_lines=True)
    columns = ("kernel", "observation", "actions (full-set index)", "event modes", "blackout regions", "stochasticity",
               "options")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        actions = ", ".join(f"{a} ({i})" for a, i in zip(row["actions"], row["action_set"]))
        agents = f" x{row['agents']} agents" if row["agents"] > 1 else ""
        table.add_row(
            row["name"],
            row["observation"] + agents,
            actions,
            ", ".join(row["event_modes"]) or "-",
            ", ".join(row["blackout_regions"]) or "-",
            ", ".join(row["stochasticity"]),
            ", ".join(f"{k}={v}" for k, v in row["options"].items()),
        )
    console = Console(stderr=True)
    console.print(table)
    console.print("Options (--env-option key=value on train, bench ppo, data collect) are make()'s, with defaults.")
    for entry in external:
        state = "installed" if entry["installed"] else f"not installed: {entry['install']}"
        console.print(f"External: --env {entry['prefix']}:ID, e.g. {entry['example']} ({state})", markup=False)
    console.print("Event modes are described in `agentlab envs --json` and each game's docstring.")
    console.print(
        "[bold]Stochasticity[/bold] (--stochasticity): " + GRAMMAR["spec"] + ", PROFILE := " + GRAMMAR["profile"]
    )
    for text in GRAMMAR["kinds"].values():
        console.print("  " + text, markup=False)
