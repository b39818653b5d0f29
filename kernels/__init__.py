"""JAX environment kernels on one contract (see `agentlab.kernels.environment`).

    >>> from agentlab.kernels import make
    >>> env, params = make("breakout", stochasticity="action:p=0.3")
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`make` wraps every kernel in `AutoReset` unless ``auto_reset=False``. The registry lives in
`agentlab.kernels.registry`; this package re-exports it lazily, so the JAX-free constant modules
(`agentlab.kernels.names`, `kernels.markets.names`, `kernels.grid.names`, `kernels.mixes`) load without JAX.
"""

from __future__ import annotations

from typing import Any

# public name -> the module that defines it (loaded on first use)
_HOMES = {
    "AutoReset": "environment",
    "Environment": "environment",
    "Box": "spaces",
    "Discrete": "spaces",
    "as_spec": "stochasticity",
    "format_spec": "stochasticity",
    "parse_spec": "stochasticity",
    "with_stochasticity": "atari",
    "describe": "registry",
    "make": "registry",
    "option_defaults": "registry",
    "registered_kernels": "registry",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"agentlab.kernels.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'agentlab.kernels' has no attribute {name!r}")
