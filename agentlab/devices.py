"""More than one device: the ``--devices N`` option of `train ppo`, `bench kernels` and `simulate`.

A run on N devices splits its batch of environments (markets, events) into N equal blocks, one per device, on a
one-axis `jax.sharding.Mesh` of the first N of ``jax.devices()`` (axis name `AXIS`), and runs its per-lane work
under `jax.shard_map`. Every lane keeps the keys it has on one device, so the lanes' results are the one-device
results; only a reduction over lanes across devices (PPO's gradients, losses and episode statistics) sums in
another order. ``devices=1`` builds no mesh and leaves the one-device code path as it is.

On the CPU, XLA sees one device unless told otherwise before JAX starts:
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` gives four host devices sharing the machine's cores (for
tests; it is not faster). JAX is imported only when a mesh is built or the devices are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentlab import limits
from agentlab.errors import UsageError

#: The mesh's one axis: the batch of environments (lanes, markets, events).
AXIS = "devices"
DEVICES = limits.Bound("--devices", int, low=1, high=4096, unit="devices the batch is split over")


def available() -> int:
    """The number of devices JAX sees on its default backend."""
    import jax

    return len(jax.devices())


def check(devices: Any, batch: int, what: str) -> int:
    """`devices` as an int if a run may split `batch` lanes (`what`, e.g. ``"num_envs"``) over that many devices;
    else `UsageError` in one line: not a positive integer, more than JAX sees, or not a divisor of the batch."""
    devices = DEVICES.check(devices)
    if devices == 1:
        return devices
    seen = available()
    if devices > seen:
        import jax

        raise UsageError(
            f"--devices {devices}: JAX sees {seen} {jax.default_backend()} device(s); valid values are 1 to {seen} "
            "(on the CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts gives N)"
        )
    if batch % devices:
        divisors = [d for d in range(1, seen + 1) if batch % d == 0]
        raise UsageError(
            f"--devices {devices} does not divide {what} = {batch}: valid values are {', '.join(map(str, divisors))}"
        )
    return devices


def mesh(devices: int):
    """A one-axis `jax.sharding.Mesh` (axis `AXIS`, `Auto` axis type) of the first `devices` devices."""
    import jax
    import numpy as np

    return jax.sharding.Mesh(np.array(jax.devices()[:devices]), (AXIS,))


def over_lanes(fn: Callable[..., Any], devices: int, replicated: int = 0) -> Callable[..., Any]:
    """`fn` split over `devices` devices along the leading (lane) axis of its first ``n - replicated`` arguments
    and of every output; its last `replicated` arguments are whole on every device. `fn` must treat lanes
    independently (a `vmap` over them), so the result is ``fn``'s own; ``devices == 1`` returns `fn` itself."""
    if devices == 1:
        return fn
    import jax
    from jax.sharding import PartitionSpec

    grid = mesh(devices)
    lanes = PartitionSpec(AXIS)

    def sharded(*args):
        specs = (lanes,) * (len(args) - replicated) + (PartitionSpec(),) * replicated
        # No collectives: every output is per lane. (JAX's varying-axis check would ask every kernel to mark
        # the constants its scans start from as varying.)
        return jax.shard_map(fn, mesh=grid, in_specs=specs, out_specs=lanes, check_vma=False)(*args)

    return sharded
