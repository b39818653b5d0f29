"""One boundary for input: a declaration per numeric field (type, finiteness, range, unit) and a memory
check before anything large is allocated.

A field is declared once, next to what it configures, and every entry point (a flag, a ``--config``
TOML key, a ``--param key=value``, a Python caller) checks values through it, so the messages agree:

    SHORTFALL = Bound("shortfall", float, low=0, high=1, high_open=True, unit="share of load")
    SHORTFALL.check(0.06)            # -> 0.06
    SHORTFALL.check(float("nan"))    # UsageError: shortfall must be a finite number in [0, 1) (share of load), got nan

Sizes are checked against the machine's memory (`check_memory`): a run whose estimate exceeds what
is available is refused with the estimate and the limit instead of failing minutes later.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from agentlab.errors import UsageError

MEMORY_FRACTION = 0.8  # of physical memory a single run may plan to use
MAX_INDEX = 2**31 - 1  # counters that JAX keeps as int32 (steps, updates, episodes, cells)


@dataclasses.dataclass(frozen=True)
class Bound:
    """A numeric field: `kind` (int or float), finite, within [low, high] (either end open or absent)."""

    name: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {self.high:g}"
        return what + (f" ({self.unit})" if self.unit else "")

    def check(self, value: Any, label: str | None = None) -> Any:
        """`value` converted to `kind` if it is valid; otherwise `UsageError` naming the field (or `label`,
        e.g. ``--steps``), what is valid and what was given."""
        name = label or self.name
        bad = UsageError(f"{name} must be {self.describe()}, got {value!r}")
        if isinstance(value, bool):
            raise bad
        if isinstance(value, str):
            try:
                value = float(value) if self.kind is float else int(value)
            except ValueError:
                raise bad from None
        if self.kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                value = int(value)
            if not isinstance(value, int):
                raise bad
        else:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad
            value = float(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad
        return value


def check_all(values: dict[str, Any], bounds: dict[str, Bound], source: str = "") -> dict[str, Any]:
    """Check every value that has a bound; returns the converted values. `source` prefixes messages
    (``--param``, ``--config FILE``)."""
    out = dict(values)
    for key, value in values.items():
        if key in bounds:
            out[key] = bounds[key].check(value, f"{source} {key}".strip())
    return out


def available_memory() -> int:
    """Bytes of memory this process may plan on: MemAvailable where Linux reports it, else physical."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux or macOS
        return 1 << 40


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_memory(estimate: float, what: str, hint: str = "") -> None:
    """Refuse (`UsageError`) a run whose estimated memory exceeds `MEMORY_FRACTION` of what is available;
    the message gives the estimate, the limit and, with `hint`, what to lower."""
    limit = MEMORY_FRACTION * available_memory()
    if not math.isfinite(estimate) or estimate > limit:
        raise UsageError(
            f"{what} needs about {format_bytes(estimate)} of memory, more than the {format_bytes(limit)} this "
            f"machine can give{f'; {hint}' if hint else ''}"
        )
