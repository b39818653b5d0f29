"""Policy mixes: ``"undercut:3,stabilise:2"``, the counts of each scripted policy in a population.

JAX-free, so the command line parses a mix without loading a kernel; the kernels' simulate functions
take the expanded policy ids (`expand`).
"""

from __future__ import annotations

from agentlab.errors import UsageError, choices


def fail(message: str) -> None:
    raise UsageError(message)


def parse_mix(text: str, valid: tuple[str, ...], option: str, limit: int = 4096) -> tuple[tuple[str, int], ...]:
    """``"undercut:3,stabilise:2"`` -> ``(("undercut", 3), ("stabilise", 2))``; a bare name counts 1; at most `limit`
    agents in all."""
    mix = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, count = part.partition(":")
        if name not in valid:
            fail(f"{option}: unknown policy {name!r}: valid policies are {choices(valid)}")
        try:
            n = int(count) if count else 1
        except ValueError:
            fail(f"{option} {text!r}: count {count!r} of {name!r} is not an integer")
        if n < 0:
            fail(f"{option} {text!r}: count of {name!r} must be >= 0, got {n}")
        mix.append((name, n))
    total = sum(n for _, n in mix)
    if total < 1:
        fail(f"{option} {text!r}: give at least one agent, e.g. {valid[0]}:3")
    if total > limit:
        fail(f"{option} {text!r}: at most {limit} agents in all, got {total}")
    return tuple(mix)


def expand(mix: tuple[tuple[str, int], ...], names: tuple[str, ...]) -> list[int]:
    """The policy id (index into `names`) of every agent of `mix`, in order."""
    return [names.index(name) for name, count in mix for _ in range(count)]
