"""MAMQL update speed: agentlab's neural MAMQL update beside the authors' PyTorch update (USC-Lira/ma-mql), on the
same CPU, on synthetic batches of the same shapes.

    agentlab bench mamql --out runs/bench-mamql                                            # agentlab only
    agentlab bench mamql --ma-mql PATH/TO/ma-mql --torch-python /tmp/torchbench/bin/python --out ...

Neither the authors' code nor PyTorch is a dependency: ``--ma-mql`` is a checkout of github.com/USC-Lira/ma-mql
(no licence: nothing of it is copied here; it is imported at run time) and ``--torch-python`` the python of a
bench-only environment with torch and numpy<2 (their replay buffer calls ``np.array(..., copy=False)`` on lists,
which numpy 2 refuses); gym, opencv, pillow and imageio, which their modules import, are stood in for by empty
modules where missing (the ``stubbed`` field), and only the ``peer-iteration`` timing, which plays their
environment, needs the real gym and opencv. Their replay file for Gems and their expert dataset are absent from the
repository, so their script cannot run as is: every batch here is synthetic, of the shapes their Gems setup 4 uses
(``gems/configs/setup2.json``: batch 256, capacity 16600, 5 actions, two agents).

What is timed, per update (both agents, batch 256, the authors' critic: conv 5->64 k5, conv 64->64 k3, dense
5184->1024->1024->5):

- ``agentlab-offline``: `MAMQL.update` with ``online=False``: one Adam step on both agents' losses over an expert
  batch (no environment);
- ``agentlab-online``: ``online=True``, the authors' setup: an expert batch and a replay batch, one Adam step, then
  2 x 45 joint rollout steps of the updated policies into the buffer (agentlab's default);
- ``peer-update`` (with ``--ma-mql``): their update for both agents, in their order (``random.shuffle`` of the
  agents), per agent what their ``gems/train_gem.py::OfflineSACIQLearn.learn`` does before its evaluation
  episode: sample their ``ExpertSet`` (``gems/dataset.py``), build the tensors, call their
  ``train_update.py::update_setups().mamql_online`` with their ``Replay_buffer`` (``gems/train_gem.py``) and
  their ``models.py::Critic_Gems`` critics (the agent's own and the other's), add the 1e-5 L2 term, and take one
  Adam step (lr 1e-3). ``learn`` itself cannot be called without its rollout, so the driver repeats its dozen
  lines of glue around their functions (their computation, not a reimplementation of it);
- ``peer-iteration`` (with ``--ma-mql``): their ``OfflineSACIQLearn.learn`` itself, called as their training loop
  calls it (both agents, shuffled): the update above plus one episode (at most 45 steps) of their environment
  per agent, pushed into the replay buffer. The object is built without its ``__init__`` (which loads the missing
  replay file) and given the attributes that ``__init__`` sets.

Work per update (forward passes of the critic over 256 observations, each ~20.6 MFLOP per observation at these
sizes; a backward pass costs about twice a forward): agentlab offline 2 per agent (s, s'), online 4 per agent
(expert s, s', replay s, s'); the authors' ``mamql_online`` runs *both* critics on all four batches for each
agent's step and back-propagates through both (the other critic's gradient is zero but computed, and their input
tensors carry ``requires_grad=True``), so 2 agents x 2 critics x 4 batches. ``gflop_per_update`` in the summary is
that estimate (forward + backward = 3 forwards).

Timing: agentlab's update runs as a compiled `MAMQL.chunk` of ``--updates`` updates (compile timed separately,
every result blocked on); the peer runs in a separate process with ``torch.set_num_threads(--threads)``, timed
inside that process by ``time.perf_counter`` around ``--peer-updates`` updates after one warm-up update. Rounds are
interleaved (agentlab-offline, agentlab-online, peer-update, peer-iteration, then again), so that a machine that
speeds up or slows down affects all alike; the summary has the median and range of updates/s over ``--rounds``
rounds and the ratios of medians.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentlab import limits
from agentlab.bench.peer import PeerProcess, check_checkout, environment, git_head, probe_python, spread
from agentlab.errors import UsageError

LEARNERS = ("agentlab-offline", "agentlab-online", "peer-update", "peer-iteration")
PEER_FILES = ("models.py", "train_update.py", "gems/train_gem.py", "gems/dataset.py", "gems/env.py")

BOUNDS = {
    "rounds": limits.Bound("--rounds", int, low=1, high=1000, unit="interleaved rounds"),
    "updates": limits.Bound("--updates", int, low=1, high=10_000, unit="agentlab updates per timed round"),
    "peer_updates": limits.Bound("--peer-updates", int, low=1, high=10_000, unit="peer updates per timed round"),
    "batch_size": limits.Bound("--batch-size", int, low=1, high=4096, unit="transitions per agent per batch"),
    "threads": limits.Bound("--threads", int, low=1, high=1024, unit="PyTorch threads"),
    "expert_rows": limits.Bound("expert_rows", int, low=1, high=2**20, unit="synthetic expert transitions"),
}


@dataclasses.dataclass(frozen=True)
class MAMQLBench:
    """What `agentlab bench mamql` times. The network and kernel fields default to the authors' Gems sizes; the
    tests shrink them (the peer always runs the authors' own critic at their sizes)."""

    rounds: int = 5
    updates: int = 4  # agentlab updates per timed chunk (one compiled lax.scan)
    peer_updates: int = 2  # peer updates (both agents) per timed round
    batch_size: int = 256
    threads: int = 2  # torch.set_num_threads in the peer's process
    expert_rows: int = 20_000  # synthetic expert dataset rows (the authors' ExpertSet.sample draws from 20000)
    ma_mql: Path | None = None  # a checkout of USC-Lira/ma-mql; None: agentlab's side only
    torch_python: Path | None = None  # the bench-only environment's python (torch, numpy<2)
    peer_iteration: bool = True  # also time their learn() with its rollout (needs real gym and opencv)
    env_options: tuple[tuple[str, Any], ...] = ()  # agentlab.kernels.make("gems", auto_reset=False, **options)
    conv_channels: tuple[int, ...] = (64, 64)
    conv_kernels: tuple[int, ...] = (5, 3)
    hidden: tuple[int, ...] = (1024, 1024)
    buffer_size: int = 16600
    seed: int = 0

    def validate(self) -> MAMQLBench:
        """Raise `UsageError` (one line) for a bad bound or a bad path; with ``ma_mql``, check that the torch
        python imports torch and numpy < 2 (a few seconds). Return self."""
        for name, bound in BOUNDS.items():
            bound.check(getattr(self, name))
        if self.ma_mql is None:
            if self.torch_python is not None:
                raise UsageError("--torch-python needs --ma-mql PATH (a checkout of github.com/USC-Lira/ma-mql)")
            return self
        check_checkout(self.ma_mql, "--ma-mql", PEER_FILES, "github.com/USC-Lira/ma-mql")
        if self.torch_python is None:
            raise UsageError("--ma-mql needs --torch-python PATH (the python of an environment with torch)")
        numpy_version, _ = probe_python(self.torch_python, "--torch-python", ("torch", "numpy"), timeout=120)[::-1]
        if int(numpy_version.split(".")[0]) >= 2:
            raise UsageError(
                f"--torch-python {self.torch_python}: numpy {numpy_version}; the authors' replay buffer needs "
                "numpy < 2 (pip install 'numpy<2')"
            )
        return self

    def learners(self) -> tuple[str, ...]:
        if self.ma_mql is None:
            return LEARNERS[:2]
        return LEARNERS if self.peer_iteration else LEARNERS[:3]

    def record(self) -> dict:
        record = dataclasses.asdict(self)
        record.update(
            ma_mql=None if self.ma_mql is None else str(self.ma_mql),
            torch_python=None if self.torch_python is None else str(self.torch_python),
            env_options=dict(self.env_options),
        )
        return record


# ------------------------------------------------------------------------------------------------- agentlab


def synthetic_dataset(rows: int, num_agents: int, obs_shape: tuple[int, ...], num_actions: int, seed: int) -> dict:
    """NumPy expert data of the kernel's shapes: sparse 0/1 planes (as the gems observation), uniform actions,
    ~2% terminal transitions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (rows, num_agents, *obs_shape)
    return {
        "obs": (rng.random(shape, np.float32) < 0.1).astype(np.float32),
        "next_obs": (rng.random(shape, np.float32) < 0.1).astype(np.float32),
        "action": rng.integers(0, num_actions, (rows, num_agents)).astype(np.int32),
        "terminated": rng.random(rows) < 0.02,
    }


def agentlab_timer(bench: MAMQLBench, online: bool) -> tuple[Callable[[], float], dict]:
    """``(time_one_round, info)``: agentlab's learner at the bench's sizes on the gems kernel; the chunk of
    `bench.updates` updates is compiled here (``info["compile_seconds"]``; ``info["init_seconds"]`` the initial
    state, the online buffer's pre-fill rollout included) and run once to warm up; each call of
    ``time_one_round()`` runs one chunk, blocks on it and returns seconds per update."""
    import dataclasses as dc

    import jax

    from agentlab import compiler
    from agentlab.kernels import make
    from agentlab.rl.mamql import MAMQL, MAMQLConfig, prepare_data
    from agentlab.timing import compile_only

    env, env_params = make("gems", auto_reset=False, **dict(bench.env_options))
    config = MAMQLConfig(
        online=online,
        batch_size=bench.batch_size,
        conv_channels=bench.conv_channels,
        conv_kernels=bench.conv_kernels,
        hidden=bench.hidden,
        buffer_size=bench.buffer_size,
        updates_per_chunk=bench.updates,
        total_updates=bench.updates,
        seed=bench.seed,
    )
    if online:
        config = dc.replace(config, rollout_steps=min(config.rollout_steps, bench.buffer_size // config.rollout_envs))
    learner = MAMQL(config, env, env_params)
    raw = synthetic_dataset(bench.expert_rows, learner.num_agents, learner.obs_shape, learner.num_actions, bench.seed)
    data = prepare_data(raw, learner)
    tick = time.perf_counter()
    state = jax.block_until_ready(compiler.jit(learner.init)(jax.random.PRNGKey(bench.seed)))
    init_seconds = time.perf_counter() - tick
    compiled, compile_seconds = compile_only(compiler.jit(learner.chunk), state, data)
    box = {"state": jax.block_until_ready(compiled(state, data))[0]}  # warm-up chunk

    def time_one_round() -> float:
        tick = time.perf_counter()
        box["state"] = jax.block_until_ready(compiled(box["state"], data))[0]
        return (time.perf_counter() - tick) / bench.updates

    info = {
        "compile_seconds": compile_seconds,
        "init_seconds": init_seconds,
        "obs_shape": list(learner.obs_shape),
        "num_agents": learner.num_agents,
        "num_actions": learner.num_actions,
        "rollout_steps_per_update": config.rollout_envs * config.rollout_steps if online else 0,
    }
    return time_one_round, info


def agentlab_updates_per_second(bench: MAMQLBench, online: bool, rounds: int = 1) -> dict:
    """agentlab's side alone: ``{"updates_per_second": median over rounds, "compile_seconds", ...}``."""
    time_one_round, info = agentlab_timer(bench, online)
    seconds = [time_one_round() for _ in range(rounds)]
    return {"updates_per_second": 1.0 / statistics.median(seconds), **info}


def forward_mflop(bench: MAMQLBench, obs_shape: tuple[int, ...], num_actions: int) -> float:
    """Multiply-adds x 2 of one critic forward pass on one observation (conv torso as patches x dense, then the
    dense head), in MFLOP."""
    flops = 0
    if len(obs_shape) == 3:
        channels, height, width = obs_shape
        for out, kernel in zip(bench.conv_channels, bench.conv_kernels, strict=True):
            height, width = height - kernel + 1, width - kernel + 1
            flops += 2 * height * width * kernel * kernel * channels * out
            channels = out
        features = channels * height * width
    else:
        features = math.prod(obs_shape)
    for width in (*bench.hidden, num_actions):
        flops += 2 * features * width
        features = width
    return flops / 1e6


def gflop_per_update(bench: MAMQLBench, learner: str, forward: float, num_agents: int = 2) -> float:
    """Estimated GFLOP of one update (module docstring): forward passes x 3 (forward + backward)."""
    batches = {"agentlab-offline": 2, "agentlab-online": 4}.get(learner, 4 * num_agents)  # per agent
    return 3 * num_agents * batches * bench.batch_size * forward / 1e3


# ------------------------------------------------------------------------------------------------- the peer

# The peer's driver, run by the --torch-python interpreter from a temporary file. It reads one JSON line of
# settings from stdin, builds the authors' objects, warms up, prints one JSON line, then answers each request line
# ({"mode": "update" | "iteration", "updates": N}) with {"seconds": per update}; "quit" ends it.
DRIVER = r"""
import importlib, json, random, sys, time, types
from collections import deque


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


spec = json.loads(sys.stdin.readline())
sys.path.insert(0, spec["checkout"])
import numpy as np
import torch

torch.set_num_threads(spec["threads"])
torch.manual_seed(spec["seed"])
np.random.seed(spec["seed"])
random.seed(spec["seed"])

stubbed = []
for name in ("gym", "cv2", "imageio", "PIL"):  # imported by their modules; not used by the update
    try:
        importlib.import_module(name)
    except ImportError:
        module = types.ModuleType(name)
        module.Env = type("Env", (), {})
        module.Image = types.ModuleType(name + ".Image")
        sys.modules[name] = module
        sys.modules[name + ".Image"] = module.Image
        stubbed.append(name)

from models import Critic_Gems
from train_update import update_setups
from gems.dataset import ExpertSet
import gems.train_gem as train_gem

B, N, A = spec["batch_size"], 2, 5
config = {"batch_size": B, "num_agents": N, "action_space": A, "gamma": 0.99, "critic_lr": 1e-3,
          "capacity": spec["capacity"], "test_iteration": 45, "alpha": 100}
rng = np.random.default_rng(spec["seed"])


def planes(n):  # their observation: float64 0/1 planes (gems/env.py get_obs_map)
    return (rng.random((n, 5, 15, 15)) < 0.1).astype(np.float64)


def joint_one_hot(n):  # their dataset's action: one-hot of agent 0 (0..4) then of agent 1 (5..9)
    a = rng.integers(0, A, (n, N))
    u = np.zeros((n, N * A))
    u[np.arange(n), a[:, 0]] = 1.0
    u[np.arange(n), A + a[:, 1]] = 1.0
    return u, a


rows = spec["expert_rows"]
states, next_states = planes(rows), planes(rows)
acts, _ = joint_one_hot(rows)
rewards, dones = rng.random((rows, N)), rng.random(rows) < 0.02
expert = ExpertSet("/nonexistent/gem_dataset.csv")  # loads only an existing file
expert.data = [(states[i], next_states[i], acts[i], rewards[i], bool(dones[i])) for i in range(rows)]
if rows < 20000:  # their sample() draws indices in [0, 20000)
    expert.data = [expert.data[i % rows] for i in range(20000)]

capacity = spec["capacity"]
buffer = train_gem.Replay_buffer(capacity)
b_states, b_next = planes(capacity), planes(capacity)
_, b_actions = joint_one_hot(capacity)
b_rewards, b_dones = rng.random((capacity, N)), rng.random(capacity) < 0.02
for i in range(capacity):  # their push format (OfflineSACIQLearn.learn)
    buffer.push((torch.tensor(b_states[i], dtype=torch.float32).unsqueeze(0), b_next[i],
                 [torch.tensor(int(b_actions[i, 0])), torch.tensor(int(b_actions[i, 1]))], b_rewards[i],
                 bool(b_dones[i])))
del b_states


def learner():  # OfflineSACIQLearn without its __init__ (which loads the missing replay file): its attributes
    obj = train_gem.OfflineSACIQLearn.__new__(train_gem.OfflineSACIQLearn)
    obj.config, obj.replay_buffer, obj.expert_data, obj.setup = config, buffer, expert, 4
    obj.critic = Critic_Gems().to(train_gem.device)
    obj.critic_optimizer = torch.optim.Adam(obj.critic.parameters(), lr=config["critic_lr"])
    obj.max_reward, obj.running_pred_rew, obj.mse_loss = 6, deque(maxlen=100), torch.nn.MSELoss()
    return obj


agent1, agent2 = learner(), learner()
agents = [(agent1, 0, agent2.critic), (agent2, 1, agent1.critic)]


def update_step(self, agent, critic2):  # learn() up to its evaluation episode (gems/train_gem.py)
    self.critic.train()
    critic2.eval()
    obs, next_obs, acts, r, d = self.expert_data.sample(self.config["batch_size"])
    obs = torch.tensor(obs, dtype=torch.float32, requires_grad=True)
    actions = torch.tensor(acts, dtype=torch.float32, requires_grad=True)
    r = torch.tensor(r, dtype=torch.float32, requires_grad=True)
    next_obs = torch.tensor(next_obs, dtype=torch.float32, requires_grad=True)
    d = torch.reshape(torch.tensor(d, dtype=torch.float32, requires_grad=True), (-1,))
    loss, mse = update_setups().mamql_online([self.critic, critic2], obs, next_obs, actions, self.config["gamma"],
                                             agent, d, self.config["batch_size"], self.config["num_agents"],
                                             "cpu", self.replay_buffer, self.config["action_space"])
    self.running_pred_rew.append(mse)
    l2_reg = torch.tensor(0.0)
    for param in self.critic.parameters():
        l2_reg += torch.norm(param) ** 2
    loss = loss + 0.00001 * l2_reg
    self.critic_optimizer.zero_grad()
    loss.backward()
    self.critic_optimizer.step()


def one(mode):  # one update = both agents, in their training loop's shuffled order
    random.shuffle(agents)
    for obj, idx, critic2 in agents:
        if mode == "update":
            update_step(obj, idx, critic2)
        else:
            obj.learn(idx, 0, critic2)  # episode 0: one evaluation episode, pushed into the buffer


modes = ["update"] + (["iteration"] if spec["iteration"] else [])
for mode in modes:  # warm-up
    one(mode)
reply({"ready": True, "stubbed": stubbed, "torch": torch.__version__, "numpy": np.__version__,
       "threads": torch.get_num_threads()})
for line in sys.stdin:
    request = json.loads(line)
    if request == "quit":
        break
    tick = time.perf_counter()
    for _ in range(request["updates"]):
        one(request["mode"])
    reply({"seconds": (time.perf_counter() - tick) / request["updates"]})
"""


class Peer(PeerProcess):
    """The authors' side in a child process of ``torch_python`` (a context manager): `time(mode)` runs
    ``peer_updates`` updates and returns seconds per update, measured in the child."""

    label = "ma-mql"
    driver = DRIVER
    script_name = "ma_mql_driver.py"

    def __init__(self, bench: MAMQLBench):
        super().__init__()
        self.bench = bench

    def __enter__(self) -> Peer:
        bench = self.bench
        env = environment(OMP_NUM_THREADS=str(bench.threads), MKL_NUM_THREADS=str(bench.threads))
        spec = {
            "checkout": str(Path(bench.ma_mql).resolve()),
            "threads": bench.threads,
            "seed": bench.seed,
            "batch_size": bench.batch_size,
            "capacity": bench.buffer_size,
            "expert_rows": min(bench.expert_rows, 20_000),
            "iteration": bench.peer_iteration,
        }
        self.start(bench.torch_python, bench.ma_mql, env, spec)
        return self

    def time(self, mode: str) -> float:
        return float(self.ask({"mode": mode, "updates": self.bench.peer_updates})["seconds"])


# ------------------------------------------------------------------------------------------------- the run


def summarise(seconds: Mapping[str, list[float]], gflop: Mapping[str, float]) -> dict:
    """Per learner the median and range of updates/s over rounds and the GFLOP/s they imply; the ratios of
    agentlab's medians to the peer's (``peer-update``; ``peer-iteration`` for the online update too)."""
    out: dict[str, Any] = {}
    for name, values in seconds.items():
        rates = [1.0 / s for s in values]
        out[name] = {
            "updates_per_second": spread(rates),
            "seconds_per_update": spread(list(values)),
            "gflop_per_update": gflop[name],
            "gflop_per_second": gflop[name] * statistics.median(rates),
        }
    ratios = {}
    if "peer-update" in out:
        peer = out["peer-update"]["updates_per_second"]["median"]
        for name in ("agentlab-offline", "agentlab-online"):
            ratios[f"{name}_vs_peer_update"] = out[name]["updates_per_second"]["median"] / peer
    if "peer-iteration" in out:
        ratios["agentlab-online_vs_peer_iteration"] = (
            out["agentlab-online"]["updates_per_second"]["median"]
            / out["peer-iteration"]["updates_per_second"]["median"]
        )
    out["ratios"] = ratios
    return out


def run(bench: MAMQLBench, on_round: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Time every learner of `bench` interleaved over ``bench.rounds`` rounds (after compile and warm-up) and
    return the summary: per learner medians and ranges, ``ratios``, ``compile_seconds``, ``peer`` (versions,
    stand-ins), ``machine`` (commit, CPU, cores). `on_round(r, seconds_per_update_by_learner)` after each round."""
    from agentlab.bench.ppo import machine

    bench = bench.validate()
    timers: dict[str, Callable[[], float]] = {}
    infos: dict[str, dict] = {}
    for name, online in (("agentlab-offline", False), ("agentlab-online", True)):
        timers[name], infos[name] = agentlab_timer(bench, online)
    peer = Peer(bench) if bench.ma_mql is not None else None
    try:
        if peer is not None:
            peer.__enter__()
            timers["peer-update"] = lambda: peer.time("update")
            if bench.peer_iteration:
                timers["peer-iteration"] = lambda: peer.time("iteration")
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
    info = infos["agentlab-offline"]
    forward = forward_mflop(bench, tuple(info["obs_shape"]), info["num_actions"])
    peer_forward = forward_mflop(MAMQLBench(), (5, 15, 15), 5)  # their critic is always at their sizes
    gflop = {name: gflop_per_update(bench, name, forward, info["num_agents"]) for name in LEARNERS[:2]}
    gflop.update({name: gflop_per_update(MAMQLBench(batch_size=bench.batch_size), name, peer_forward)
                  for name in LEARNERS[2:]})  # fmt: skip
    summary = summarise(seconds, gflop)
    summary.update(
        rounds=bench.rounds,
        updates_per_round={"agentlab": bench.updates, "peer": bench.peer_updates},
        batch_size=bench.batch_size,
        compile_seconds={name: infos[name]["compile_seconds"] for name in infos},
        init_seconds={name: infos[name]["init_seconds"] for name in infos},
        forward_mflop_per_observation=forward,
        peer=None if peer is None else {**peer.info, "checkout": str(bench.ma_mql), "commit": git_head(bench.ma_mql)},
        machine=machine(),
    )
    return summary


def lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per learner and one of ratios, for the terminal."""
    out = []
    for name in LEARNERS:
        if name in summary:
            rate = summary[name]["updates_per_second"]
            out.append(
                f"{name}: {rate['median']:.3g} updates/s (range {rate['min']:.3g}-{rate['max']:.3g}), "
                f"~{summary[name]['gflop_per_second']:.0f} GFLOP/s"
            )
    if summary.get("ratios"):
        out.append(", ".join(f"{key} {value:.2f}x" for key, value in summary["ratios"].items()))
    return out


__all__ = [
    "DRIVER",
    "LEARNERS",
    "MAMQLBench",
    "Peer",
    "agentlab_timer",
    "agentlab_updates_per_second",
    "forward_mflop",
    "gflop_per_update",
    "lines",
    "run",
    "summarise",
    "synthetic_dataset",
]
