"""PGD denoiser speed: agentlab's trajectory diffusion (`agentlab.rl.diffusion`) beside the policy-guided-diffusion
authors' JAX code (github.com/EmptyJackson/policy-guided-diffusion), on the same CPU, at the same U-Net widths, on
synthetic standardised windows.

    agentlab bench pgd --out runs/bench-pgd                                                  # agentlab only
    agentlab bench pgd --pgd-repo PATH/TO/policy-guided-diffusion --peer-python /tmp/pgdbench/bin/python --out ...

Neither the authors' code nor their pinned JAX is a dependency: ``--pgd-repo`` is a checkout of their repository
(nothing of it is copied here; it is imported at run time by a driver in a child process) and ``--peer-python`` the
python of a bench-only environment with their JAX stack (jax/jaxlib 0.4.x, flax 0.6.11, optax 0.1.5, distrax,
numpy < 2). ``wandb`` and ``gym``, which their ``util`` package imports at top level but the denoiser does not use,
are stood in for by empty modules where missing (the ``stubbed`` field of ``peer``).

Model size: their U-Net (``models/diffusion.py``) has ``num_blocks`` levels of widths ``num_features * 2^i``
(``--features``, ``--blocks``; their defaults are 1024 and 3, widths 1024/2048/4096, ~10^8 parameters, far too big
for a CPU, so the bench's default is 32 and 3: widths 32/64/128). agentlab's `EDMConfig.channels` is set to the same
widths per level and its ``kernel_size`` to ``--kernel-size`` (default 3, the width of their convolutions; agentlab's
own default is 5). The architectures still differ (agentlab: two residual blocks per level down and up and two in
the middle, Mish, a larger noise embedding; theirs: two plain conv layers per encoder level, three per decoder
level, ReLU), so the parameter counts of both are reported (``params``).

What is timed (batch ``--batch-size`` windows of ``--length`` rows of ``obs_dim + act_dim + 2`` columns, standard
normal data; window 32, batch 256 and maze2d's 4 + 2 columns by default):

- ``agentlab-train``: ``--steps`` updates of `make_update` (EDM loss, gradients, clipped Adam, EMA), one compiled
  update per call, as `agentlab train pgd` runs them (rl/pgd_training.py: XLA's CPU backend runs convolution
  gradients much slower inside a loop body); ``agentlab-train-scan``: the same updates as one compiled ``lax.scan``;
- ``agentlab-sample``: `sample_windows` of ``--windows`` windows (one chunk), unguided, ``--sampler-steps`` steps of
  the stochastic Heun sampler (``2 N - 1`` denoiser calls);
- ``peer-train`` (with ``--pgd-repo``): their ``train_diffusion.py`` loop body ``_batch_train_step`` (their
  ``diffusion/edm.py::train_step``, made by ``diffusion.diffusion.make_train_step``, then their ``util.jax.ema_update``)
  as one jitted ``lax.scan`` over the same number of pre-made batches, as their ``make_train`` scans over an
  epoch's batches (their per-epoch shuffle and validation step are left out); ``peer-train-step``: the same loop
  body jitted alone and called once per step from Python (not how their code runs; for the like-for-like ratio).
  Their model and Adam state come from their ``create_denoiser_train_state`` and their hyperparameters from their
  ``parse_diffusion_args`` (only the sizes are given);
- ``peer-sample`` (with ``--pgd-repo``): their ``make_sample_fn`` (``edm.sample_trajectory``: one window per call,
  unguided, ``2 N`` denoiser calls, the last masked) vmapped over ``--windows`` keys and jitted with the state bound
  by ``functools.partial``, as their ``diffusion/rollout_generator.py`` does.

Timing: compile is timed apart (``jit(...).lower(...).compile()``; for `sample_windows`, which compiles inside its
first call, the first call's time less a steady call's). Every result is blocked on. The peer runs in a separate
process, timed inside that process by ``time.perf_counter``. Rounds are interleaved (the learners in `LEARNERS`
order, then again), so that a machine that speeds up or slows down affects all alike; the summary has the median
and range over ``--rounds`` rounds of training steps/s and sampled windows/s and the ratios of agentlab's medians
to the peer's: ``train`` and ``sample`` (each side as its own code runs), and ``train_both_per_step`` and
``train_both_scan`` (both sides stepped the same way).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentlab import limits
from agentlab.bench.peer import PeerProcess, check_checkout, environment, git_head, probe_python, spread
from agentlab.errors import UsageError

LEARNERS = ("agentlab-train", "agentlab-train-scan", "agentlab-sample", "peer-train", "peer-train-step", "peer-sample")
PEER_FILES = ("models/diffusion.py", "diffusion/edm.py", "diffusion/diffusion.py", "util/args.py", "util/jax.py")
PAIRS = {  # ratio name: (agentlab's learner, the peer's); "train" and "sample" are each side as its own code runs
    "train": ("agentlab-train", "peer-train"),
    "sample": ("agentlab-sample", "peer-sample"),
    "train_both_per_step": ("agentlab-train", "peer-train-step"),
    "train_both_scan": ("agentlab-train-scan", "peer-train"),
}

BOUNDS = {
    "rounds": limits.Bound("--rounds", int, low=1, high=1000, unit="interleaved rounds"),
    "steps": limits.Bound("--steps", int, low=1, high=100_000, unit="training steps per timed round"),
    "windows": limits.Bound("--windows", int, low=1, high=2**20, unit="sampled windows per timed round"),
    "sampler_steps": limits.Bound("--sampler-steps", int, low=2, high=4096, unit="sampler steps"),
    "batch_size": limits.Bound("--batch-size", int, low=1, high=2**16, unit="windows per training step"),
    "length": limits.Bound("--length", int, low=1, high=4096, unit="rows per window"),
    "obs_dim": limits.Bound("--obs-dim", int, low=1, high=4096),
    "act_dim": limits.Bound("--act-dim", int, low=1, high=4096),
    "features": limits.Bound("--features", int, low=1, high=2**14, unit="width of the first U-Net level"),
    "blocks": limits.Bound("--blocks", int, low=1, high=8, unit="U-Net levels"),
    "kernel_size": limits.Bound("--kernel-size", int, low=1, high=63),
}


@dataclasses.dataclass(frozen=True)
class PGDBench:
    """What `agentlab bench pgd` times; the defaults are the bench's recorded sizes, the tests shrink them."""

    rounds: int = 5
    steps: int = 8  # training steps per timed round (one compiled scan, both sides)
    windows: int = 256  # windows sampled per timed round (one call, both sides)
    sampler_steps: int = 32
    batch_size: int = 256
    length: int = 32
    obs_dim: int = 4  # maze2d: 4 observation + 2 action columns, then reward and done
    act_dim: int = 2
    features: int = 32  # their --num_features; agentlab channels = features * 2^i
    blocks: int = 3  # their --num_blocks; agentlab levels
    kernel_size: int = 3  # agentlab's conv width (theirs is 3)
    groups: int = 8  # GroupNorm groups (theirs is 8)
    pgd_repo: Path | None = None  # a checkout of EmptyJackson/policy-guided-diffusion; None: agentlab only
    peer_python: Path | None = None  # the bench-only environment's python (their JAX stack)
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.obs_dim + self.act_dim + 2

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.features * 2**i for i in range(self.blocks))

    def config(self) -> Any:
        """agentlab's `EDMConfig` at the bench's sizes."""
        from agentlab.rl.diffusion import EDMConfig

        return EDMConfig(
            channels=self.channels, groups=self.groups, kernel_size=self.kernel_size, batch_size=self.batch_size
        )

    def validate(self) -> PGDBench:
        """Raise `UsageError` (one line) for a bad bound, size or path; with ``pgd_repo``, check that the peer
        python imports jax, flax and optax (a few seconds). Return self."""
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name))
        if self.features % self.groups:
            raise UsageError(f"--features ({self.features}) must be a multiple of the {self.groups} GroupNorm groups")
        if self.kernel_size % 2 == 0:
            raise UsageError(f"--kernel-size must be odd, got {self.kernel_size}")
        self.config().validate().check_length(self.length)
        if self.pgd_repo is None:
            if self.peer_python is not None:
                raise UsageError(
                    "--peer-python needs --pgd-repo PATH "
                    "(a checkout of github.com/EmptyJackson/policy-guided-diffusion)"
                )
            return self
        check_checkout(self.pgd_repo, "--pgd-repo", PEER_FILES, "github.com/EmptyJackson/policy-guided-diffusion")
        if self.peer_python is None:
            raise UsageError("--pgd-repo needs --peer-python PATH (the python of an environment with their JAX stack)")
        probe_python(self.peer_python, "--peer-python", ("numpy", "jax", "flax", "optax"), timeout=180)
        return self

    def learners(self) -> tuple[str, ...]:
        return LEARNERS if self.pgd_repo is not None else LEARNERS[:3]

    def record(self) -> dict:
        record = dataclasses.asdict(self)
        record.update(
            pgd_repo=None if self.pgd_repo is None else str(self.pgd_repo),
            peer_python=None if self.peer_python is None else str(self.peer_python),
            dim=self.dim,
            channels=list(self.channels),
        )
        return record


# ------------------------------------------------------------------------------------------------- agentlab


def count_params(tree: Any) -> int:
    import jax
    import numpy as np

    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def synthetic_batches(bench: PGDBench, count: int) -> Any:
    """float32 ``(count, batch, length, dim)`` standard normal windows (already standardised)."""
    import numpy as np

    rng = np.random.default_rng(bench.seed)
    return rng.standard_normal((count, bench.batch_size, bench.length, bench.dim), dtype=np.float32)


def agentlab_timers(bench: PGDBench) -> tuple[dict[str, Callable[[], float]], dict]:
    """``({"agentlab-train" | "agentlab-train-scan": seconds per step, "agentlab-sample": seconds per call},
    info)``: the compiled update and the compiled scan of ``steps`` updates are compiled here and run once to warm
    up, the sampler called twice (compile, then a steady call); each timer call runs ``steps`` updates (one call
    each, or one scan) or one sampler call, blocks on the result and returns its seconds (per step for training)."""
    import jax
    import jax.numpy as jnp

    from agentlab import compiler
    from agentlab.rl import diffusion as dm
    from agentlab.timing import compile_only

    config = bench.config().validate()
    layout = dm.RowLayout(bench.obs_dim, bench.act_dim)
    key = jax.random.PRNGKey(bench.seed)
    tick = time.perf_counter()
    state = jax.block_until_ready(dm.init_state(key, config, bench.length, bench.dim))
    init_seconds = time.perf_counter() - tick
    update = dm.make_update(config, max(bench.steps, config.warmup_steps + 1))

    def chunk(state: Any, key: jax.Array, batches: jax.Array) -> tuple[Any, jax.Array]:
        keys = jax.random.split(key, batches.shape[0])
        return jax.lax.scan(lambda s, xs: update(s, *xs), state, (keys, batches))

    batches = jnp.asarray(synthetic_batches(bench, bench.steps))
    batch_list = [batches[i] for i in range(bench.steps)]
    stepper, step_compile = compile_only(compiler.jit(update), state, key, batch_list[0])
    compiled, train_compile = compile_only(compiler.jit(chunk), state, key, batches)
    box = {"state": jax.block_until_ready(stepper(state, key, batch_list[0]))[0], "round": 0}  # warm-up step
    box["scan_state"] = jax.block_until_ready(compiled(state, key, batches))[0]  # warm-up chunk

    def train() -> float:  # as `agentlab train pgd` runs it (rl/pgd_training.py): one compiled update per call
        box["round"] += 1
        keys = list(jax.random.split(jax.random.fold_in(key, box["round"]), bench.steps))
        state = box["state"]
        tick = time.perf_counter()
        for k, batch in zip(keys, batch_list, strict=True):
            state, _ = stepper(state, k, batch)
        box["state"] = jax.block_until_ready(state)
        return (time.perf_counter() - tick) / bench.steps

    def train_scan() -> float:  # the same updates as one compiled lax.scan
        round_key = jax.random.fold_in(key, 10_000 + box["round"])
        tick = time.perf_counter()
        box["scan_state"] = jax.block_until_ready(compiled(box["scan_state"], round_key, batches))[0]
        return (time.perf_counter() - tick) / bench.steps

    apply_fn = dm.make_model(config).apply
    standardizer = dm.Standardizer(mean=jnp.zeros(bench.dim, jnp.float32), std=jnp.ones(bench.dim, jnp.float32))

    def sample(r: int) -> float:
        tick = time.perf_counter()
        jax.block_until_ready(
            dm.sample_windows(
                jax.random.fold_in(key, 1000 + r),
                box["state"].ema_params,
                apply_fn,
                config,
                bench.windows,
                bench.length,
                layout,
                standardizer,
                num_steps=bench.sampler_steps,
                batch=bench.windows,
            )
        )
        return time.perf_counter() - tick

    first = sample(0)
    steady = sample(1)
    rounds = {"sample": 1}

    def sample_round() -> float:
        rounds["sample"] += 1
        return sample(rounds["sample"])

    info = {
        "params": count_params(state.params),
        "channels": list(config.channels),
        "kernel_size": config.kernel_size,
        "train_compile_seconds": step_compile,
        "train_scan_compile_seconds": train_compile,
        "sample_compile_seconds": max(first - steady, 0.0),
        "sample_first_call_seconds": first,
        "init_seconds": init_seconds,
    }
    timers = {"agentlab-train": train, "agentlab-train-scan": train_scan, "agentlab-sample": sample_round}
    return timers, info


# ------------------------------------------------------------------------------------------------- the peer

# The peer's driver, run by the --peer-python interpreter from a temporary file. It reads one JSON line of settings
# from stdin, builds the authors' objects, compiles and warms up, prints one JSON line, then answers each request
# line ({"mode": "train" | "sample"}) with {"seconds": ...} (per step for "train", per call for "sample"); "quit"
# ends it.
DRIVER = r"""
import functools, importlib, json, sys, time, types


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


spec = json.loads(sys.stdin.readline())
sys.path.insert(0, spec["checkout"])
stubbed = []
for name in ("wandb", "gym"):  # imported at top level by their util package; not used by the denoiser
    try:
        importlib.import_module(name)
    except ImportError:
        module = types.ModuleType(name)
        sys.modules[name] = module
        if name == "gym":
            module.spaces = types.ModuleType("gym.spaces")
            module.spaces.Dict = dict
            sys.modules["gym.spaces"] = module.spaces
        stubbed.append(name)

import jax
import jax.numpy as jnp
import numpy as np
import flax, optax

from util.args import parse_diffusion_args
from util.jax import ema_update
from diffusion.diffusion import create_denoiser_train_state, make_train_step, make_sample_fn

B, L, K, N = spec["batch_size"], spec["length"], spec["steps"], spec["windows"]
obs_dim, act_dim = spec["obs_dim"], spec["act_dim"]
dim = obs_dim + act_dim + 2
args = parse_diffusion_args(["--num_features", str(spec["features"]), "--num_blocks", str(spec["blocks"]),
                             "--batch_size", str(B), "--trajectory_length", str(L),
                             "--diffusion_timesteps", str(spec["sampler_steps"]), "--seed", str(spec["seed"])])
rng = jax.random.PRNGKey(args.seed)
rng, _rng = jax.random.split(rng)
tick = time.perf_counter()
state = create_denoiser_train_state(_rng, obs_dim, act_dim, args, max(K, 1) * B)
ema_state = jax.tree_map(jnp.copy, state)
jax.block_until_ready((state, ema_state))
init_seconds = time.perf_counter() - tick
params = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(state.params)))
train_step = make_train_step(args)


def train(rng, denoiser_state, ema_denoiser_state, batches):  # their train_diffusion.py _batch_train_step, scanned
    def _batch_train_step(runner_state, batch):
        denoiser_state, ema_denoiser_state, rng = runner_state
        rng, _rng = jax.random.split(rng)
        denoiser_state, loss = train_step(_rng, batch, denoiser_state)
        new_params = ema_update(args, denoiser_state, ema_denoiser_state)
        ema_denoiser_state = ema_denoiser_state.replace(params=new_params)
        return (denoiser_state, ema_denoiser_state, rng), jnp.mean(loss)

    return jax.lax.scan(_batch_train_step, (denoiser_state, ema_denoiser_state, rng), batches)


batches = jnp.asarray(np.random.default_rng(spec["seed"]).standard_normal((K, B, L, dim), dtype=np.float32))
tick = time.perf_counter()
train_compiled = jax.jit(train).lower(rng, state, ema_state, batches).compile()
train_compile = time.perf_counter() - tick
box = {"state": state, "ema": ema_state, "rng": rng}


def run_train():
    (box["state"], box["ema"], box["rng"]), losses = train_compiled(box["rng"], box["state"], box["ema"], batches)
    jax.block_until_ready((box["state"], box["ema"], losses))


def one_step(runner_state, batch):  # the same loop body, jitted alone and called once per step from Python
    return train(runner_state[2], runner_state[0], runner_state[1], batch[None])


batch_list = [batches[i] for i in range(K)]
tick = time.perf_counter()
step_compiled = jax.jit(one_step).lower((state, ema_state, rng), batch_list[0]).compile()
step_compile = time.perf_counter() - tick
step_box = {"runner": (state, ema_state, rng)}


def run_train_step():
    runner = step_box["runner"]
    for batch in batch_list:
        runner, losses = step_compiled(runner, batch)
    step_box["runner"] = jax.block_until_ready(runner)


stats = {name: {"mean": jnp.zeros(size), "std": jnp.ones(size)}
         for name, size in (("obs", obs_dim), ("action", act_dim), ("reward", 1), ("done", 1))}
sample_fn = functools.partial(  # diffusion/rollout_generator.py: the state is bound, one window per call, vmapped
    make_sample_fn(args, False, False, False),
    denoiser_state=box["state"], seq_len=L, obs_dim=obs_dim, action_dim=act_dim, denoiser_norm_stats=stats,
    policy_guidance_coeff=0.0, policy_guidance_cosine_coeff=0.3)
batch_sample = jax.jit(jax.vmap(lambda rng, agent_params: sample_fn(rng=rng, agent_params=agent_params),
                                in_axes=(0, None)))
keys = jax.random.split(jax.random.PRNGKey(spec["seed"] + 1), N)
tick = time.perf_counter()
sample_compiled = batch_sample.lower(keys, None).compile()
sample_compile = time.perf_counter() - tick
sample_round = {"r": 0}


def run_sample():
    sample_round["r"] += 1
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(spec["seed"] + 1), sample_round["r"]), N)
    jax.block_until_ready(sample_compiled(keys, None))


run_train()  # warm-up
run_train_step()
run_sample()
reply({"ready": True, "stubbed": stubbed, "jax": jax.__version__, "jaxlib": jax.lib.__version__,
       "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__, "params": params,
       "widths": [spec["features"] * 2 ** i for i in range(spec["blocks"])],
       "train_compile_seconds": train_compile, "train_step_compile_seconds": step_compile,
       "sample_compile_seconds": sample_compile,
       "init_seconds": init_seconds, "ema_update_every": args.ema_update_every, "batch_size_default": 32})
for line in sys.stdin:
    request = json.loads(line)
    if request == "quit":
        break
    run = {"train": run_train, "train-step": run_train_step, "sample": run_sample}[request["mode"]]
    tick = time.perf_counter()
    run()
    seconds = time.perf_counter() - tick
    reply({"seconds": seconds if request["mode"] == "sample" else seconds / K})
"""


class Peer(PeerProcess):
    """The authors' side in a child process of ``peer_python`` (a context manager): ``time("train")`` runs one
    compiled scan of ``steps`` steps and returns seconds per step; ``time("sample")`` one sampler call of
    ``windows`` windows and returns its seconds; both measured in the child."""

    label = "policy-guided-diffusion"
    driver = DRIVER
    script_name = "pgd_driver.py"

    def __init__(self, bench: PGDBench):
        super().__init__()
        self.bench = bench

    def __enter__(self) -> Peer:
        bench = self.bench
        env = environment(JAX_PLATFORMS="cpu")
        env.pop("PYTHONPATH", None)
        spec = {
            "checkout": str(Path(bench.pgd_repo).resolve()),
            "seed": bench.seed,
            "batch_size": bench.batch_size,
            "length": bench.length,
            "steps": bench.steps,
            "windows": bench.windows,
            "sampler_steps": bench.sampler_steps,
            "obs_dim": bench.obs_dim,
            "act_dim": bench.act_dim,
            "features": bench.features,
            "blocks": bench.blocks,
        }
        self.start(bench.peer_python, bench.pgd_repo, env, spec)
        return self

    def time(self, mode: str) -> float:
        return float(self.ask({"mode": mode})["seconds"])


# ------------------------------------------------------------------------------------------------- the run


def summarise(seconds: Mapping[str, list[float]], bench: PGDBench) -> dict:
    """Per learner the median and range over rounds: training learners in steps/s (and windows/s = steps/s x
    batch), samplers in windows/s (and calls/s); the ratios of agentlab's medians to the peer's (``train``,
    ``sample``) and whether each is at least 2 (``goal_2x``)."""
    out: dict[str, Any] = {}
    for name, values in seconds.items():
        if "-train" in name:
            steps = [1.0 / s for s in values]
            out[name] = {
                "steps_per_second": spread(steps),
                "windows_per_second": spread([bench.batch_size * r for r in steps]),
                "seconds_per_step": spread(list(values)),
            }
        else:
            out[name] = {
                "windows_per_second": spread([bench.windows / s for s in values]),
                "calls_per_second": spread([1.0 / s for s in values]),
                "seconds_per_call": spread(list(values)),
            }
    ratios, goal = {}, {}
    for kind, (ours, theirs) in PAIRS.items():
        if ours in out and theirs in out:
            unit = "windows_per_second" if kind == "sample" else "steps_per_second"
            ratios[kind] = out[ours][unit]["median"] / out[theirs][unit]["median"]
            goal[kind] = ratios[kind] >= 2.0
    out["ratios"] = ratios
    out["goal_2x"] = goal
    return out


def run(bench: PGDBench, on_round: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Time every learner of `bench` interleaved over ``bench.rounds`` rounds (after compile and warm-up) and
    return the summary: per learner medians and ranges, ``ratios``, ``params``, ``compile_seconds``, ``peer``
    (versions, stand-ins), ``machine`` (commit, CPU, cores). `on_round(r, seconds_by_learner)` after each round
    (seconds per step for training, per call for sampling)."""
    from agentlab.bench.ppo import machine

    bench = bench.validate()
    timers, info = agentlab_timers(bench)
    peer = Peer(bench) if bench.pgd_repo is not None else None
    try:
        if peer is not None:
            peer.__enter__()
            timers["peer-train"] = lambda: peer.time("train")
            timers["peer-train-step"] = lambda: peer.time("train-step")
            timers["peer-sample"] = lambda: peer.time("sample")
        seconds: dict[str, list[float]] = {name: [] for name in timers}
        for r in range(bench.rounds):
            this = {}
            for name, timer in timers.items():
                this[name] = timer()
                seconds[name].append(this[name])
            if on_round is not None:
                on_round(r, this)
    finally:
        if peer is not None:
            peer.close()
    summary = summarise(seconds, bench)
    compile_seconds = {
        "agentlab-train": info["train_compile_seconds"],
        "agentlab-train-scan": info["train_scan_compile_seconds"],
        "agentlab-sample": info["sample_compile_seconds"],
    }
    params = {"agentlab": info["params"]}
    if peer is not None:
        compile_seconds.update(
            {
                "peer-train": peer.info["train_compile_seconds"],
                "peer-train-step": peer.info["train_step_compile_seconds"],
                "peer-sample": peer.info["sample_compile_seconds"],
            }
        )
        params["peer"] = peer.info["params"]
    summary.update(
        rounds=bench.rounds,
        steps_per_round=bench.steps,
        windows_per_round=bench.windows,
        sampler_steps=bench.sampler_steps,
        batch_size=bench.batch_size,
        length=bench.length,
        dim=bench.dim,
        widths=list(bench.channels),
        kernel_size=bench.kernel_size,
        params=params,
        compile_seconds=compile_seconds,
        agentlab=info,
        peer=None
        if peer is None
        else {**peer.info, "checkout": str(bench.pgd_repo), "commit": git_head(bench.pgd_repo)},
        machine=machine(),
    )
    return summary


def lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per learner and one of ratios, for the terminal."""
    out = []
    for name in LEARNERS:
        if name not in summary:
            continue
        unit, label = ("steps_per_second", "steps/s") if "-train" in name else ("windows_per_second", "windows/s")
        rate = summary[name][unit]
        out.append(f"{name}: {rate['median']:.3g} {label} (range {rate['min']:.3g}-{rate['max']:.3g})")
    if summary.get("ratios"):
        out.append(", ".join(f"{kind} agentlab/peer {value:.2f}x" for kind, value in summary["ratios"].items()))
    return out


__all__ = [
    "DRIVER",
    "LEARNERS",
    "PEER_FILES",
    "PGDBench",
    "Peer",
    "agentlab_timers",
    "count_params",
    "lines",
    "run",
    "summarise",
    "synthetic_batches",
]
