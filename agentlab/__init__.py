"""agentlab: fast, reproducible environments and learners for studying agent-environment misalignment.

`import agentlab` is cheap: it reads no file and imports no backend (JAX, numba) until a
public name that needs one is used. The subpackages are

- `agentlab.kernels`: JAX environment kernels (`make`, the stochasticity taxonomy, spaces),
- `agentlab.rl`: learners and rollout helpers,
- `agentlab.bench`: the benchmark suite behind `agentlab bench`,
- `agentlab.cli`: the `agentlab` command line.
"""

from __future__ import annotations

from typing import Any

from agentlab.errors import AgentlabError, UsageError

__version__ = "0.1.0"

__all__ = ["AgentlabError", "UsageError", "__version__", "make", "registered_kernels"]


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import agentlab` free of JAX.
    if name in {"make", "registered_kernels"}:
        from agentlab import kernels

        return getattr(kernels, name)
    raise AttributeError(f"module 'agentlab' has no attribute {name!r}")
