"""Kernel ids and the kernel-option grammar: one vocabulary for every command that takes ``--env``.

JAX-free (plain Python), so the command line can parse and check names and options before a kernel loads.

**Ids** are kebab-case (``space-invaders``, ``market-crash``, ``grid-curtailment``). The ids of agentlab
0.1.0 that were not (``space_invaders``) stay accepted as aliases everywhere a kernel is named: `canonical_id`
maps an alias to its id, and run directories that recorded an alias keep loading.

**Kernel options** (``--env-option``) are the keyword arguments of a kernel's factory, the same ones
``agentlab.kernels.make(name, **options)`` takes, written ``key=value`` and joined by commas or given as
repeated flags::

    --env-option size=5,num_purple=1 --env-option max_steps=30

A value is read as ``true``/``false`` (bool), ``none`` (None), an integer, a float (``0.5``, ``1e-3``), else
a string. `make` checks the names against the kernel's factory and the values against its bounds; flags
that own an option (``--stochasticity``, ``--max-episode-steps``) keep it, so options cannot name those.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from agentlab.errors import UsageError

GAME_IDS = ("asterix", "breakout", "freeway", "seaquest", "space-invaders")  # the MinAtar games, sorted
KERNEL_IDS = (
    *GAME_IDS,
    "calvano",
    "catch",
    "coordination",
    "gems",
    "grid-curtailment",
    "market-crash",
    "market-lemons",
    "maze2d",
    "pendulum",
    "point",
)
ALIASES = {"space_invaders": "space-invaders"}  # ids of agentlab 0.1.0 -> today's ids
# External environments (`agentlab.kernels.external`) are named ``PREFIX:ID`` (``gymnax:CartPole-v1``), IDs as the
# library spells them; they pass through `canonical_id` unchanged.
EXTERNAL_PREFIXES = ("gymnax", "jaxmarl")

_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def canonical_id(name: str) -> str:
    """The kernel id `name` stands for (an alias mapped to its id; anything else, ``gymnax:...`` and
    ``jaxmarl:...`` ids included, unchanged)."""
    return ALIASES.get(name, name)


def split_external_id(name: str) -> tuple[str, str] | None:
    """``"gymnax:CartPole-v1"`` -> ``("gymnax", "CartPole-v1")``; None where `name` is not ``PREFIX:ID`` with a
    prefix of `EXTERNAL_PREFIXES` and a non-empty ID."""
    prefix, sep, env_id = str(name).partition(":")
    if not sep or prefix not in EXTERNAL_PREFIXES or not env_id:
        return None
    return prefix, env_id


def parse_value(text: str) -> Any:
    """One option value: bool, None, int, finite float, else the string itself (stripped)."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def parse_env_options(texts: Iterable[str] | None, reserved: dict[str, str] | None = None) -> dict[str, Any]:
    """``["size=5,num_purple=1", "max_steps=30"]`` -> ``{"size": 5, "num_purple": 1, "max_steps": 30}``.

    `reserved` maps options a command sets itself to the flag that sets them; naming one, repeating a key, a
    key that is not a lower-case identifier or an item without ``=`` -> `UsageError` (one line, naming it)."""
    options: dict[str, Any] = {}
    reserved = reserved or {}
    for text in texts or ():
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not value.strip():
                raise UsageError(f"--env-option {item.strip()!r}: write key=value, e.g. --env-option size=5")
            if not _KEY.match(key):
                raise UsageError(f"--env-option {item.strip()!r}: the key must be an option name such as size")
            if key in reserved:
                raise UsageError(f"--env-option {key}: this command sets it from {reserved[key]}")
            if key in options:
                raise UsageError(f"--env-option {key} is given twice")
            options[key] = parse_value(value)
    return options


def options_record(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as a sorted tuple of pairs: hashable, for frozen configs (the inverse is `dict`)."""
    return tuple(sorted(options.items()))
