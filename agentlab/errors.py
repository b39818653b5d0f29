"""The exceptions agentlab raises on purpose.

`UsageError` is bad input (an unknown game, a malformed stochasticity string, a probability outside
[0, 1], ...). It subclasses `ValueError`, so Python callers can catch either; the command line turns
it into one line on stderr and exit code 2.
"""

from __future__ import annotations


class AgentlabError(Exception):
    """Base class of every error agentlab raises deliberately."""


class UsageError(AgentlabError, ValueError):
    """Bad input: the message names what is wrong and what is valid."""


def choices(valid: object) -> str:
    """Format a collection of valid choices for an error message: ``'a', 'b' or 'c'``."""
    items = [repr(v) for v in valid]  # type: ignore[attr-defined]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what became of its run directory (`message`) for the command line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
