"""Kernel throughput: environment transitions per second over a batch, random actions, auto-reset on.

One harness measures agentlab and its peers alike: ``vmap`` over the batch inside a ``lax.scan`` of
`steps` steps, carrying observations, states, summed rewards and finished episodes (so nothing the
kernel computes can be optimised away), one fresh key per lane per step. Compile time is measured
separately (``lower().compile()``); every timed call blocks on its result. Throughput is
``batch_size * steps / seconds`` (one step of one environment is one transition), the median over
`repeats` timed calls after one warm-up call.

With ``devices > 1`` (``--devices``) the batch is split into equal blocks over a one-axis mesh
(`agentlab.devices`): each step's keys and actions are drawn for the whole batch as on one device, and the
batched step runs under `jax.shard_map`, so every lane's trajectory is the one-device trajectory (tested bit for
bit on forced host devices).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from agentlab import devices as agentlab_devices
from agentlab import timing
from agentlab.errors import UsageError

GYMNAX_IDS = {
    "asterix": "Asterix-MinAtar",
    "breakout": "Breakout-MinAtar",
    "freeway": "Freeway-MinAtar",
    "seaquest": "Seaquest-MinAtar",
    "space-invaders": "SpaceInvaders-MinAtar",
}
IMPLEMENTATIONS = ("agentlab", "gymnax")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One measurement: an implementation, a kernel, a batch size, a stochasticity string."""

    impl: str
    env: str
    batch_size: int
    stochasticity: str = "plain"
    auto_reset: bool = True
    devices: int = 1  # devices the batch is split over (the same for every cell of a run)

    @property
    def key(self) -> tuple:
        return (self.impl, self.env, self.batch_size, self.stochasticity, self.auto_reset)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """What the harness needs: batched-able ``reset(key, params)`` and
    ``step(key, state, action, params) -> (obs, state, reward, done)``."""

    reset: Callable[..., Any]
    step: Callable[..., Any]
    params: Any
    num_actions: int


def agentlab_kernel(name: str, stochasticity: str = "plain", auto_reset: bool = True) -> Kernel:
    from agentlab.kernels import make

    env, params = make(name, stochasticity=stochasticity, auto_reset=auto_reset)

    def step(key, state, action, params):
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated

    return Kernel(env.reset, step, params, env.num_actions)


def gymnax_kernel(name: str) -> Kernel:
    try:
        import gymnax
    except ImportError:
        raise UsageError("--vs gymnax needs gymnax: pip install 'agentlab[bench]'") from None
    if name not in GYMNAX_IDS:
        raise UsageError(f"gymnax has no port of {name!r}")
    env, params = gymnax.make(GYMNAX_IDS[name])

    def step(key, state, action, params):  # gymnax >= 1.0: (obs, state, reward, terminated, truncated, info)
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated

    return Kernel(env.reset, step, params, env.num_actions)


def build(kernel: Kernel, batch_size: int, steps: int, devices: int = 1):
    """``(init(key) -> carry, run(carry, key) -> carry)``, both pure; `run` takes `steps` steps, with the batched
    step split over `devices` devices (`agentlab.devices.over_lanes`; 1: as it is)."""
    batched_reset = jax.vmap(kernel.reset, in_axes=(0, None))
    batched_step = agentlab_devices.over_lanes(jax.vmap(kernel.step, in_axes=(0, 0, 0, None)), devices, replicated=1)

    def init(key):
        obs, state = batched_reset(jax.random.split(key, batch_size), kernel.params)
        return obs, state, jnp.zeros(batch_size, jnp.float32), jnp.zeros(batch_size, jnp.int32)

    def run(carry, key):
        def body(carry, k):
            obs, state, returns, episodes = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.random.randint(k_act, (batch_size,), 0, kernel.num_actions)
            obs, state, reward, done = batched_step(jax.random.split(k_step, batch_size), state, actions, kernel.params)
            return (obs, state, returns + reward, episodes + done), None

        carry, _ = jax.lax.scan(body, carry, jax.random.split(key, steps))
        return carry

    return init, run


@dataclasses.dataclass
class Prepared:
    """A compiled measurement, ready to be timed."""

    compiled: Any
    carry: Any
    key: jax.Array
    work: int  # transitions per call (batch_size * steps)
    compile_seconds: float


def prepare(kernel: Kernel, batch_size: int, steps: int, seed: int = 0, devices: int = 1) -> Prepared:
    """Compile one measurement (timed separately, `agentlab.timing.compile_only`); with ``devices > 1`` the
    carry (observations, states, returns, episodes: leading axis `batch_size`) is placed in equal blocks on the
    first `devices` devices."""
    init, run = build(kernel, batch_size, steps, devices)
    key = jax.random.key(seed)
    carry = jax.block_until_ready(jax.jit(init)(key))
    if devices > 1:
        lanes = jax.sharding.NamedSharding(
            agentlab_devices.mesh(devices), jax.sharding.PartitionSpec(agentlab_devices.AXIS)
        )
        carry = jax.block_until_ready(jax.device_put(carry, lanes))
    compiled, compile_seconds = timing.compile_only(run, carry, key)
    return Prepared(compiled, carry, key, batch_size * steps, compile_seconds)


def time_interleaved(prepared: dict[Any, Prepared], repeats: int) -> dict[Any, dict[str, float]]:
    """Warm up, then time every prepared measurement `repeats` times, round-robin
    (`agentlab.timing.time_interleaved`), each round with a fresh key. Returns compile seconds, median and
    best seconds per call, and steps per second (median) for each."""
    times = timing.time_interleaved(
        {name: p.compiled for name, p in prepared.items()},
        lambda name, r: (prepared[name].carry, jax.random.fold_in(prepared[name].key, r)),
        repeats,
    )
    out = {}
    for name, p in prepared.items():
        median = statistics.median(times[name])
        out[name] = {
            "compile_seconds": p.compile_seconds,
            "seconds_median": median,
            "seconds_min": min(times[name]),
            "steps_per_second": p.work / median,
        }
    return out


def kernel_for(cell: Cell) -> Kernel:
    if cell.impl == "gymnax":
        return gymnax_kernel(cell.env)
    return agentlab_kernel(cell.env, cell.stochasticity, cell.auto_reset)


def profile_specs(name: str) -> dict[str, str]:
    """One representative profile of each taxonomy kind for `name` (an id or an alias, as older runs recorded:
    ``space_invaders``) (the overhead measurement)."""
    from agentlab.kernels.atari import GAMES
    from agentlab.kernels.names import canonical_id

    mode = next(iter(GAMES[canonical_id(name)].event_modes))
    return {
        "action": "action:p=0.3",
        "sticky": "sticky:p=0.1",
        "event": f"event:mode={mode},p=0.25",
        "drift": "drift:mode=sudden,at=300,to=(action:p=0.3)",
        "crop": "mask:kind=crop,region=left,p=0.75",
        "torch": "mask:kind=torch,radius=3,centre=agent,p=1",
        "blackout": "mask:kind=blackout,region=all,p=1",
    }
